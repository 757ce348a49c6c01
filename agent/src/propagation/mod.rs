//! Context propagation headers: strict parsers and formatters for W3C Trace Context Level 2
//! (`traceparent`, `tracestate`) and W3C Baggage (`baggage`), with hard limits.
//!
//! Every byte here comes from whoever sent the request, so the parsers never panic, work in one pass
//! linear in the input, and allocate only for what they keep: the limits (see [`limits`]) are applied
//! while scanning, over all headers of a kind together, and scanning itself allocates nothing. Errors
//! say what was wrong without echoing the header, and [`MalformedReports`] keeps a flood of bad headers
//! from becoming a flood of log lines.
//!
//! The caller's order of work, as the Trace Context spec requires: parse `traceparent` with
//! [`TraceParent::from_headers`]; only when it is valid parse `tracestate` with
//! [`TraceState::from_headers`] (an invalid `traceparent` starts a new trace and drops `tracestate`).
//! `baggage` is independent of both: [`Baggage::from_headers`].
//!
//! ```
//! use keyhole::propagation::{Baggage, TraceParent, TraceState};
//!
//! let parent = TraceParent::from_headers([&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..]])
//!     .unwrap()
//!     .expect("one traceparent header");
//! let state = TraceState::from_headers([&b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"[..]]).unwrap();
//! let baggage = Baggage::from_headers([&b"userId=alice, serverNode=DF%2028"[..]]);
//!
//! assert!(parent.sampled());
//! assert_eq!(state.get("congo"), Some("t61rcWkgMzE"));
//! assert_eq!(baggage.get("serverNode"), Some("DF 28"));
//! ```

// The parsers face untrusted input: make the panicking shortcuts a compile error here.
#![forbid(unsafe_code)]
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod baggage;
pub mod limits;
mod percent;
mod report;
mod syntax;
mod traceparent;
mod tracestate;

#[cfg(test)]
mod properties;

use std::fmt;

pub(crate) use baggage::{only_members, plain_value, visit_members};
pub use baggage::{Baggage, BaggageEntry, BaggageReport};
pub use limits::*;
pub(crate) use percent::is_plain_text;
pub use report::{MalformedReports, Report};
pub(crate) use syntax::{lower_hex_bytes, push_hex};
pub use traceparent::{TraceParent, TRACE_FLAG_RANDOM_TRACE_ID, TRACE_FLAG_SAMPLED};
pub use tracestate::TraceState;

/// The propagation headers' names, made once: looking a header up by a `&str` parses the name again on
/// every request.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");
pub const BAGGAGE: http::HeaderName = http::HeaderName::from_static("baggage");

/// Which propagation header something is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderKind {
    /// `traceparent`
    TraceParent,
    /// `tracestate`
    TraceState,
    /// `baggage`
    Baggage,
}

impl HeaderKind {
    /// The header's name as it is sent (lowercase).
    ///
    /// ```
    /// use keyhole::propagation::HeaderKind;
    /// assert_eq!(HeaderKind::TraceState.name(), "tracestate");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            HeaderKind::TraceParent => "traceparent",
            HeaderKind::TraceState => "tracestate",
            HeaderKind::Baggage => "baggage",
        }
    }
}

impl fmt::Display for HeaderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A field of a `traceparent` header, named in [`HeaderError::TraceParentField`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceParentField {
    /// The 32 hex digits after the version.
    TraceId,
    /// The 16 hex digits after the trace-id.
    ParentId,
    /// The 2 hex digits after the parent-id.
    Flags,
}

/// Why a propagation header was refused. It names the rule that was broken and at most a position, never
/// the header's text: headers come from untrusted peers and may carry secrets or log-injection payloads.
///
/// ```
/// use keyhole::propagation::{HeaderError, HeaderKind, TraceParent};
///
/// let err = TraceParent::parse(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap_err();
/// assert_eq!(err, HeaderError::TraceParentVersion);
/// assert_eq!(err.kind(), HeaderKind::TraceParent);
/// assert!(!err.to_string().contains("4bf92f"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderError {
    /// `traceparent`: the version is not two lowercase hex digits followed by `-`, or it is the forbidden `ff`.
    TraceParentVersion,
    /// `traceparent`: a field is not lowercase hex of its exact width followed by the right delimiter.
    TraceParentField(TraceParentField),
    /// `traceparent`: characters after the flags where the version allows none (version 00 is exactly 55
    /// characters; a higher version may only continue with `-`).
    TraceParentTrailingData,
    /// `traceparent`: the trace-id is all zeros.
    TraceParentZeroTraceId,
    /// `traceparent`: the parent-id is all zeros.
    TraceParentZeroParentId,
    /// `traceparent`: the request carried more than one `traceparent` header.
    TraceParentDuplicated,
    /// `tracestate`: more than [`MAX_TRACESTATE_MEMBERS`] list-members.
    TraceStateTooManyMembers,
    /// `tracestate`: a list-member is not `key=value`.
    TraceStateMissingEquals {
        /// The list-member's 1-based position among the non-empty list-members of all `tracestate` headers.
        position: usize,
    },
    /// `tracestate`: a key breaks the key grammar.
    TraceStateKey {
        /// The list-member's 1-based position among the non-empty list-members of all `tracestate` headers.
        position: usize,
    },
    /// `tracestate`: a value breaks the value grammar.
    TraceStateValue {
        /// The list-member's 1-based position among the non-empty list-members of all `tracestate` headers.
        position: usize,
    },
    /// `baggage`: a key is not an HTTP token.
    BaggageKey,
    /// `baggage`: adding the entry would exceed [`MAX_BAGGAGE_MEMBERS`] or [`MAX_BAGGAGE_BYTES`].
    BaggageFull,
}

impl HeaderError {
    /// The header the error is about.
    pub const fn kind(&self) -> HeaderKind {
        match self {
            HeaderError::TraceParentVersion
            | HeaderError::TraceParentField(_)
            | HeaderError::TraceParentTrailingData
            | HeaderError::TraceParentZeroTraceId
            | HeaderError::TraceParentZeroParentId
            | HeaderError::TraceParentDuplicated => HeaderKind::TraceParent,
            HeaderError::TraceStateTooManyMembers
            | HeaderError::TraceStateMissingEquals { .. }
            | HeaderError::TraceStateKey { .. }
            | HeaderError::TraceStateValue { .. } => HeaderKind::TraceState,
            HeaderError::BaggageKey | HeaderError::BaggageFull => HeaderKind::Baggage,
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TraceParentVersion => {
                f.write_str("traceparent version is not two lowercase hex digits and '-', or is the invalid ff")
            }
            HeaderError::TraceParentField(TraceParentField::TraceId) => {
                f.write_str("traceparent trace-id is not 32 lowercase hex digits followed by '-'")
            }
            HeaderError::TraceParentField(TraceParentField::ParentId) => {
                f.write_str("traceparent parent-id is not 16 lowercase hex digits followed by '-'")
            }
            HeaderError::TraceParentField(TraceParentField::Flags) => {
                f.write_str("traceparent trace-flags are not 2 lowercase hex digits")
            }
            HeaderError::TraceParentTrailingData => f.write_str(
                "traceparent has characters after trace-flags (version 00 allows none; later versions only '-...')",
            ),
            HeaderError::TraceParentZeroTraceId => f.write_str("traceparent trace-id is all zeros"),
            HeaderError::TraceParentZeroParentId => f.write_str("traceparent parent-id is all zeros"),
            HeaderError::TraceParentDuplicated => f.write_str("request has more than one traceparent header"),
            HeaderError::TraceStateTooManyMembers => {
                write!(f, "tracestate has more than {MAX_TRACESTATE_MEMBERS} list-members")
            }
            HeaderError::TraceStateMissingEquals { position } => {
                write!(f, "tracestate list-member {position} is not key=value")
            }
            HeaderError::TraceStateKey { position } => write!(
                f,
                "tracestate list-member {position} has a key that is not 1 to {MAX_TRACESTATE_KEY_LEN} of \
                 [a-z0-9_-*/@] starting with [a-z0-9]"
            ),
            HeaderError::TraceStateValue { position } => write!(
                f,
                "tracestate list-member {position} has a value that is not 1 to {MAX_TRACESTATE_VALUE_LEN} \
                 printable ASCII characters other than ',' and '=' ending in a non-space"
            ),
            HeaderError::BaggageKey => f.write_str("baggage key is not an HTTP token"),
            HeaderError::BaggageFull => write!(
                f,
                "baggage would exceed {MAX_BAGGAGE_MEMBERS} members or {MAX_BAGGAGE_BYTES} bytes; remove \
                 entries first"
            ),
        }
    }
}

impl std::error::Error for HeaderError {}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_error_names_its_header_and_the_broken_rule() {
        let errors = [
            HeaderError::TraceParentVersion,
            HeaderError::TraceParentField(TraceParentField::TraceId),
            HeaderError::TraceParentField(TraceParentField::ParentId),
            HeaderError::TraceParentField(TraceParentField::Flags),
            HeaderError::TraceParentTrailingData,
            HeaderError::TraceParentZeroTraceId,
            HeaderError::TraceParentZeroParentId,
            HeaderError::TraceParentDuplicated,
            HeaderError::TraceStateTooManyMembers,
            HeaderError::TraceStateMissingEquals { position: 2 },
            HeaderError::TraceStateKey { position: 3 },
            HeaderError::TraceStateValue { position: 4 },
            HeaderError::BaggageKey,
            HeaderError::BaggageFull,
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.contains(error.kind().name()), "{message}");
        }
    }

    #[test]
    fn errors_never_echo_the_header_they_refuse() {
        let secret = "s3cr3t\r\nX-Injected: yes";
        let traceparent = format!("00-{secret}");
        let tracestate = format!("ok=1,{secret}=1");
        let errors = [
            TraceParent::parse(traceparent.as_bytes()).err(),
            TraceState::from_headers([tracestate.as_bytes()]).err(),
            Baggage::new().insert(secret, "v").err(),
        ];
        for error in errors {
            let error = error.expect("each header above is invalid");
            let message = error.to_string();
            assert!(
                !message.contains("s3cr3t") && !message.contains('\n'),
                "{message}"
            );
            let _: &dyn std::error::Error = &error;
        }
    }
}
