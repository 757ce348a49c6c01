//! The HTTP side of the control plane. The web UI's pages are served from
//! here; for now it answers health checks and says where the UI will be.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::state::ControlPlane;

/// The HTTP routes; gRPC services are added beside them by the server.
pub fn router(_plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
}
