//! `keyhole`: `keyhole server` runs the control plane; every other
//! subcommand is the CLI. Exit codes: 0 ok, 1 error, 2 usage.

use std::process::ExitCode;

use clap::Parser;
use keyhole_control_plane::cli::{self, Cli, Command};
use keyhole_control_plane::server;

/// The server's log level comes from here (error, warn, info, debug, trace).
const LOG_LEVEL_ENV: &str = "KEYHOLE_LOG";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(cli.command, Command::Server(_));
    let runtime = if is_server {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                init_logging();
                server::run(args.config()).await
            }
            command => cli::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let level = std::env::var(LOG_LEVEL_ENV)
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}
