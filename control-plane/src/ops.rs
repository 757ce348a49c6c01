//! What operators and their tooling need beside the product, on the same
//! port: `/readyz` (can this replica reach its storage?), `/metrics`
//! (Prometheus text), the RPC timing every gRPC call passes through, and the
//! background task that enforces snapshot retention.
//!
//! `/readyz` and `/metrics`, like `/healthz`, need no token: load balancers
//! and scrapers call them. They expose counts, latencies and storage
//! reachability, never captured data, ids or names.

pub mod metrics;
pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::state::ControlPlane;

/// How long `/readyz` waits for the storage's answer before calling it unreachable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// The content type of the Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `app` with `/readyz` and `/metrics` beside its routes, and every gRPC call
/// it serves timed once, by path.
pub fn instrument(app: Router, plane: Arc<ControlPlane>) -> Router {
    let operations = Router::new()
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(plane.clone());
    app.merge(operations)
        .layer(middleware::from_fn_with_state(plane, time_rpc))
}

/// `GET /readyz`: 200 when a cheap query on the storage answers in time, 503
/// saying why when it does not.
async fn ready(State(plane): State<Arc<ControlPlane>>) -> Response {
    let answer = tokio::time::timeout(READY_TIMEOUT, plane.store.breakpoint_version()).await;
    let (status, body) = match answer {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(error)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the storage failed a query: {error}\n"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the storage did not answer within {READY_TIMEOUT:?}\n"),
        ),
    };
    (status, [(CACHE_CONTROL, "no-store")], body).into_response()
}

/// `GET /metrics`: this replica's metrics in the Prometheus text format.
async fn metrics(State(plane): State<Arc<ControlPlane>>) -> Response {
    let text = plane.metrics.render(plane.connected_agents());
    (
        [(CONTENT_TYPE, METRICS_CONTENT_TYPE), (CACHE_CONTROL, "no-store")],
        text,
    )
        .into_response()
}

/// Times each gRPC call from its arrival to its response head (for a
/// stream, until the stream opens), labelled by its path.
async fn time_rpc(State(plane): State<Arc<ControlPlane>>, request: Request, next: Next) -> Response {
    let grpc = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !grpc {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let started = tokio::time::Instant::now();
    let response = next.run(request).await;
    plane.metrics.observe_rpc(&path, started.elapsed());
    response
}
