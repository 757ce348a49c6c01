//! Keyhole's wire protocol and the rules both ends of it must agree on.
//!
//! - [`v1`]: the `keyhole.v1` messages, with tonic client stubs (feature
//!   `client`) and server traits (feature `server`).
//! - [`token`]: signed debug-session tokens, minted by the control plane and
//!   verified by agents.
//! - [`condition`]: the breakpoint condition language, checked by the control
//!   plane when a breakpoint is set and evaluated by agents when a probe fires.
//! - [`redaction`]: the identifiers whose values are never captured.
//! - [`limits`]: capture limits and budgets with their defaults.
//! - [`static_memo`]: answers remembered for `'static` names, shared by every
//!   thread without a lock.
//! - `bearer`: the API token interceptor for clients (feature `client`).
//! - `tls`: how clients trust an `https://` control plane (feature `client`).

#[cfg(feature = "client")]
pub mod bearer;
pub mod condition;
pub mod limits;
pub mod redaction;
pub mod static_memo;
#[cfg(feature = "client")]
pub mod tls;
pub mod token;

#[cfg(feature = "serde")]
mod serde_support;

/// The `keyhole.v1` protocol.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("keyhole.v1");
}
