//! Every limit the propagation parsers enforce, written once. The W3C figures are the current
//! (2022 and later) texts of Trace Context Level 2 and Baggage; see `shared/reference/README.md`.

use std::time::Duration;

/// Most list-members a `tracestate` may hold; a 33rd makes the whole header invalid.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Longest `tracestate` key, in characters (the multi-tenant `tenant@system` form included).
pub const MAX_TRACESTATE_KEY_LEN: usize = 256;

/// Longest `tracestate` value, in characters.
pub const MAX_TRACESTATE_VALUE_LEN: usize = 256;

/// Longest `tracestate` this crate sends on; the spec asks every participant to pass on at least this much.
pub const MAX_TRACESTATE_HEADER_LEN: usize = 512;

/// `tracestate` list-members longer than this are the first ones dropped when the header must be truncated.
pub const TRACESTATE_LARGE_MEMBER_LEN: usize = 128;

/// Most `baggage` list-members kept, counted over all `baggage` headers of a request together.
pub const MAX_BAGGAGE_MEMBERS: usize = 64;

/// Most bytes of `baggage` kept, counted over all `baggage` headers together, as this crate would send them
/// (`key=value;properties` with values percent-encoded, plus one `,` between members).
pub const MAX_BAGGAGE_BYTES: usize = 8192;

/// Malformed headers of one kind are reported at most once per this interval.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(60);
