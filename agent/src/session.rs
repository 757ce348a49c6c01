//! Debug sessions as the agent trusts them.
//!
//! A [`TrustedSession`] can only be made by verifying a session token signed
//! by the control plane; its fields are private to this crate, so nothing that
//! parses a header can forge one. It travels in the `opentelemetry::Context`
//! of the request, which is where probes look for it.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use keyhole_proto::token::{SessionVerifier, TokenError};
use opentelemetry::{Context, ContextGuard};

/// A debug session whose token was verified by this agent.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedSession {
    session_id: Arc<str>,
    expires_at_unix: u64,
}

impl fmt::Debug for TrustedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedSession")
            .field("session_id", &self.session_id)
            .field("expires_at_unix", &self.expires_at_unix)
            .finish()
    }
}

/// Why a token did not become a trusted session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// No agent is running (or it has not received keys yet).
    NoAgent,
    /// The token did not verify.
    Token(TokenError),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::NoAgent => f.write_str("no keyhole agent is running with session keys yet"),
            SessionError::Token(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for SessionError {}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TrustedSession {
    /// Verifies `token` with the control plane's keys.
    pub(crate) fn verify(
        verifier: &SessionVerifier,
        token: &str,
        now_unix: u64,
    ) -> Result<Self, SessionError> {
        let claims = verifier.verify(token, now_unix).map_err(SessionError::Token)?;
        Ok(Self {
            session_id: claims.session_id.into(),
            expires_at_unix: claims.expires_at_unix,
        })
    }

    /// Verifies a session token (the value of the `keyhole.session` baggage
    /// entry) with the running agent's keys.
    ///
    /// ```
    /// // Without a running agent nothing can be trusted.
    /// assert!(keyhole::TrustedSession::from_token("v1.k.s.1.sig").is_err());
    /// ```
    pub fn from_token(token: &str) -> Result<Self, SessionError> {
        let agent = crate::agent::running().ok_or(SessionError::NoAgent)?;
        let verifier = agent.verifier();
        TrustedSession::verify(&verifier, token, unix_now())
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn expires_at_unix(&self) -> u64 {
        self.expires_at_unix
    }

    /// The current context with this session in it.
    pub fn context(&self) -> Context {
        Context::current_with_value(self.clone())
    }

    /// Makes this session current on this thread until the guard is dropped.
    /// Across `.await`s, use [`TrustedSession::context`] with
    /// `opentelemetry::context::FutureExt::with_context`.
    pub fn attach(&self) -> ContextGuard {
        self.context().attach()
    }

    /// The session of the current request, if it has a trusted one that has
    /// not expired.
    pub fn current() -> Option<TrustedSession> {
        Context::map_current(|cx| cx.get::<TrustedSession>().cloned())
            .filter(|session| session.expires_at_unix > unix_now())
    }
}
