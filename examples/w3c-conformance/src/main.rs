//! The service side of the W3C trace-context test harness
//! (`w3c/trace-context`, `test/test.py`), built with Keyhole's inbound layer
//! and outbound propagation. `POST /test` takes a JSON list of
//! `{"url": ..., "arguments": [...]}` and, for each, POSTs `arguments` to
//! `url` carrying the propagated `traceparent` and `tracestate`.
//!
//! Loopback is a trusted peer here, so a valid caller's trace is continued,
//! as the harness expects.
//!
//! ```sh
//! cargo run -p w3c-conformance -- --listen 127.0.0.1:7777
//! # in a checkout of w3c/trace-context/test (its own callback server needs another port):
//! STRICT_LEVEL=2 SPEC_LEVEL=2 HARNESS_HOST=127.0.0.1 HARNESS_PORT=7778 python3 test.py http://127.0.0.1:7777/test
//! ```

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use keyhole::{KeyholeLayer, RequestBuilderExt as _};
use serde::Deserialize;

#[derive(Parser)]
#[command(about = "W3C trace-context harness service using Keyhole's propagation")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7777")]
    listen: SocketAddr,
}

#[derive(Deserialize)]
struct Case {
    url: String,
    arguments: serde_json::Value,
}

async fn test(State(http): State<reqwest::Client>, Json(cases): Json<Vec<Case>>) -> StatusCode {
    for case in cases {
        let sent = http
            .post(&case.url)
            .propagate_context()
            .json(&case.arguments)
            .send()
            .await;
        if let Err(e) = sent {
            eprintln!("w3c-conformance: calling {}: {e}", case.url);
        }
    }
    StatusCode::OK
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let layer = KeyholeLayer::new()
        .peer_address(|extensions| extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))
        .trust_cidrs(["127.0.0.0/8", "::1"])
        .expect("loopback networks are valid CIDRs");
    let app = Router::new()
        .route("/test", post(test))
        .with_state(reqwest::Client::new())
        .layer(layer);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("w3c-conformance: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Ok(address) = listener.local_addr() {
        eprintln!("w3c-conformance listening on http://{address}");
    }
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match axum::serve(listener, service).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("w3c-conformance: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
