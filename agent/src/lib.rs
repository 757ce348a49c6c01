//! The Keyhole agent: live snapshots of a running service, for signed debug
//! sessions only.
//!
//! Mark places with [`probe!`]; start the agent once with
//! [`Agent::builder`]. A probe with no breakpoint costs one relaxed atomic
//! load. When a breakpoint is set on it (from the `keyhole` CLI) and a request
//! carrying that breakpoint's debug session hits it, the probe captures its
//! variables (bounded, redacted) and a stack trace, and the agent's own
//! thread uploads them.
//!
//! ```no_run
//! #[derive(serde::Serialize)]
//! struct Cart { items: Vec<String>, coupon: Option<String> }
//!
//! fn apply_discount(cart: &Cart, user_id: u64) -> u64 {
//!     let total = 4200;
//!     keyhole::probe!("checkout.discount", cart, user_id, total);
//!     total
//! }
//!
//! # async fn run() -> Result<(), keyhole::AgentError> {
//! let agent = keyhole::Agent::builder().service("shop").with_default_env().init()?;
//! apply_discount(&Cart { items: vec![], coupon: None }, 7);
//! agent.shutdown().await;
//! # Ok(()) }
//! ```
// The host service must never panic because of the agent: nothing outside tests unwraps or
// indexes a slice in a way that can panic.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

mod agent;
mod backoff;
mod budget;
pub mod callsite;
pub mod capture;
mod connection;
mod fire;
mod inbound;
mod install;
mod macros;
mod outbound;
pub mod propagation;
mod queue;
mod session;
mod specialize;
mod stack;
mod task;
#[doc(hidden)]
pub mod testing;
mod trace;

pub use agent::{Agent, AgentBuilder, AgentConfig, AgentError, ShutdownReport};
pub use capture::Secret;
pub use inbound::{inbound_context, Cidr, CidrError, KeyholeLayer, KeyholeService};
#[cfg(feature = "reqwest")]
pub use outbound::RequestBuilderExt;
pub use outbound::{inject_context, inject_current, PropagateContext};
pub use session::{SessionError, TrustedSession, SESSION_BAGGAGE_KEY};
pub use task::spawn;
pub use trace::{LinkedTrace, RequestSpan};

/// What the `probe!` macro expands to; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::callsite::{Callsite, ProbeMeta, CALLSITES};
    pub use crate::capture::Capturer;
    pub use crate::specialize::{CaptureBest, CaptureDebugOnly, CaptureTypeName, Wrap};
    pub use linkme;
}
