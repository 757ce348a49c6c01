//! The Keyhole control plane (`keyhole server`) and the `keyhole` CLI.
//!
//! One process serves the gRPC `AgentService` (for embedded agents) and
//! `DebuggerService` (for people, through the CLI and the UI) and the HTTP UI
//! on one address, and keeps its state behind the [`store::Store`] trait.

pub mod agents;
pub mod audit;
pub mod auth;
pub mod breakpoints;
pub mod cli;
pub mod config;
pub mod debugger;
pub mod ids;
pub mod ingest;
pub mod ops;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod ui;

/// A storage failure as the caller sees it: logged in full here, reported
/// briefly there.
pub fn storage_status(error: &store::StoreError) -> tonic::Status {
    tracing::error!(%error, "storage error");
    tonic::Status::unavailable(format!("the control plane's storage failed: {error}"))
}

/// Refuses text a caller sent that is longer than `max_len` bytes or holds
/// control characters (it ends up in tables and logs).
pub fn check_text(what: &str, value: &str, max_len: usize) -> Result<(), tonic::Status> {
    if value.len() > max_len || value.chars().any(char::is_control) {
        return Err(tonic::Status::invalid_argument(format!(
            "{what} must be at most {max_len} bytes of printable text"
        )));
    }
    Ok(())
}

/// Like [`check_text`], and refuses empty text.
pub fn check_required(what: &str, value: &str, max_len: usize) -> Result<(), tonic::Status> {
    if value.is_empty() {
        return Err(tonic::Status::invalid_argument(format!("{what} is empty")));
    }
    check_text(what, value, max_len)
}
