//! What both shop services share: the agent's start and stop, the inbound
//! layer, and serving with a clean shutdown.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::Router;
use keyhole::{Agent, KeyholeLayer};
use tokio::net::TcpListener;

/// Starts the agent for `service` from `KEYHOLE_ADDR` / `KEYHOLE_TOKEN`
/// (`KEYHOLE_SERVICE` overrides the name). Without a token the service runs
/// without one: a demo should still serve.
pub fn start_agent(service: &str) -> Option<Agent> {
    match Agent::builder()
        .service(service)
        .version(env!("CARGO_PKG_VERSION"))
        .with_default_env()
        .init()
    {
        Ok(agent) => Some(agent),
        Err(e) => {
            eprintln!("{service}: running without keyhole: {e}");
            None
        }
    }
}

/// The inbound layer, reading the peer's address from axum's `ConnectInfo`.
pub fn keyhole_layer() -> KeyholeLayer {
    KeyholeLayer::new()
        .peer_address(|extensions| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
}

/// Serves `app` on `listen` until SIGINT or SIGTERM, then flushes the agent.
pub async fn serve(name: &str, listen: SocketAddr, app: Router, agent: Option<Agent>) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    eprintln!("{name} listening on http://{address}");
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    if let Some(agent) = agent {
        let report = agent.shutdown().await;
        eprintln!(
            "{name}: keyhole flushed {} of {} snapshots",
            report.uploaded, report.accepted
        );
    }
    served.map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}

/// Logs to stderr at `info` unless `RUST_LOG`-style filtering is needed.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
}
