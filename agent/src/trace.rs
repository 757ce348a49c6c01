//! Trace identity of the request being served: the span the agent opens for
//! it (so snapshots from several services order by parent and child), and
//! the caller's trace when it came from a peer that was not trusted.

use std::cell::Cell;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;

use crate::propagation::{lower_hex_bytes, TraceParent, TRACE_FLAG_RANDOM_TRACE_ID, TRACE_FLAG_SAMPLED};
use crate::session::TrustedSession;

/// The baggage entry that names the caller's request span on calls made for
/// a debug session. Each outbound call has its own `parent-id` (as W3C Trace
/// Context asks), so without this a downstream snapshot could not name the
/// upstream request it belongs under in the session timeline.
pub const SPAN_BAGGAGE_KEY: &str = "keyhole.span";

/// The span a request is served in, as the agent's inbound layer opened it, with what else of the
/// request's Keyhole keeps: its verified debug session and the `tracestate` it continues.
///
/// They are one entry of the request's `Context`, not one each: every entry added to a `Context`
/// copies its map and allocates three times, and a session's request would pay that in every
/// service it passes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The caller's span, when the caller is trusted and sent one.
    pub parent_span_id: Option<SpanId>,
    /// The session the request carried, once verified ([`TrustedSession::in_context`] reads it).
    pub(crate) session: Option<TrustedSession>,
    /// The `tracestate` received with a continued trace, exactly as it will be sent on (the strict
    /// parser's output, which may keep what other SDKs drop).
    pub(crate) trace_state: Option<String>,
}

/// The trace of an untrusted caller: not continued, only remembered as a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedTrace(pub SpanContext);

thread_local! {
    static RANDOM: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = (crate::budget::monotonic_nanos() ^ 0x9e37_79b9_7f4a_7c15).to_le_bytes();
    }
    u64::from_le_bytes(bytes) | 1
}

/// A random, non-zero 64-bit value (xorshift64* per thread, seeded by the OS):
/// ids must be unpredictable enough not to collide, not secret.
fn random_u64() -> u64 {
    RANDOM.with(|state| {
        let mut x = state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d).max(1)
    })
}

pub fn new_trace_id() -> TraceId {
    TraceId::from_bytes(((u128::from(random_u64()) << 64) | u128::from(random_u64())).to_be_bytes())
}

pub fn new_span_id() -> SpanId {
    SpanId::from_bytes(random_u64().to_be_bytes())
}

/// Opens the request's span: a child of `parent` when there is one to
/// continue, else the root of a new trace (whose id is random, as the
/// random-trace-id flag then says). The request's verified `session`, if
/// any, goes into the context with it.
pub fn open_span(
    cx: Context,
    parent: Option<(&TraceParent, Option<String>)>,
    caller_span: Option<SpanId>,
    session: Option<TrustedSession>,
) -> Context {
    let known_flags = TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM_TRACE_ID;
    let (trace_id, parent_span_id, flags, state) = match parent {
        Some((parent, state)) => (
            TraceId::from_bytes(parent.trace_id),
            Some(SpanId::from_bytes(parent.parent_id)),
            // Flags other than the known ones are not ours to carry on.
            TraceFlags::new(parent.flags & known_flags),
            state,
        ),
        None => (
            new_trace_id(),
            None,
            TraceFlags::new(TRACE_FLAG_RANDOM_TRACE_ID),
            None,
        ),
    };
    let otel_state = state
        .as_deref()
        .and_then(|header| header.parse::<TraceState>().ok())
        .unwrap_or_default();
    let span = RequestSpan {
        trace_id,
        span_id: new_span_id(),
        // The caller's request span, when it named one, is the parent that
        // snapshots can be ordered by; else the caller's call span.
        parent_span_id: caller_span
            .filter(|_| parent_span_id.is_some())
            .or(parent_span_id),
        session,
        trace_state: state,
    };
    let context = SpanContext::new(trace_id, span.span_id, flags, true, otel_state);
    cx.with_remote_span_context(context).with_value(span)
}

/// The trace id, span id and parent span id of the current request, as hex,
/// empty where unknown.
pub fn current_ids(cx: &Context) -> (String, String, String) {
    let span = cx.span();
    let context = span.span_context();
    if !context.is_valid() {
        return (String::new(), String::new(), String::new());
    }
    let parent = cx
        .get::<RequestSpan>()
        .filter(|request| request.span_id == context.span_id())
        .and_then(|request| request.parent_span_id)
        .map(|id| id.to_string())
        .unwrap_or_default();
    (
        context.trace_id().to_string(),
        context.span_id().to_string(),
        parent,
    )
}

/// A span id in its W3C form, 16 lowercase hex digits, not all zero.
pub fn parse_span_id(text: &str) -> Option<SpanId> {
    let id = SpanId::from_bytes(lower_hex_bytes(text.as_bytes())?);
    (id != SpanId::INVALID).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_are_sixteen_lowercase_hex_digits_not_all_zero() {
        assert_eq!(
            parse_span_id("00f067aa0ba902b7"),
            Some(SpanId::from_bytes([
                0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7
            ]))
        );
        for bad in [
            "00F067AA0BA902B7",
            "00f067aa0ba902b",
            "00f067aa0ba902b70",
            "0000000000000000",
            "",
            "00f067aa0ba902bg",
        ] {
            assert_eq!(parse_span_id(bad), None, "{bad:?}");
        }
    }
}
