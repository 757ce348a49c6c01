//! Outbound propagation: the current request's trace and its debug session
//! travel on with the calls it makes, so the next service can verify the
//! session again and its snapshots join the same trace.

use http::{HeaderMap, HeaderValue};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::{SpanId, TraceContextExt as _};
use opentelemetry::Context;

use crate::propagation::{push_hex, Baggage, TraceParent, BAGGAGE, TRACEPARENT, TRACESTATE};
use crate::session::{TrustedSession, SESSION_BAGGAGE_KEY};
use crate::trace::{new_span_id, RequestSpan, SPAN_BAGGAGE_KEY};

/// Writes `traceparent`, `tracestate` and `baggage` for `cx` into `headers`,
/// replacing any there. Each call gets its own span id as the callee's
/// `parent-id`; for a debug session's requests the current span is also
/// named in baggage, so the callee's snapshots order under this request's.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// keyhole::inject_context(&opentelemetry::Context::new(), &mut headers);
/// assert!(headers.is_empty(), "nothing to propagate outside a request");
/// ```
pub fn inject_context(cx: &Context, headers: &mut HeaderMap) {
    let (traceparent, tracestate, baggage) = outbound_headers(cx);
    // Each name is looked up once: set when there is a value, else cleared of what was there.
    for (name, value) in [
        (TRACEPARENT, traceparent),
        (TRACESTATE, tracestate),
        (BAGGAGE, baggage),
    ] {
        match value.and_then(|value| HeaderValue::try_from(value).ok()) {
            // The string becomes the header's bytes without a copy.
            Some(value) => headers.insert(name, value),
            None => headers.remove(name),
        };
    }
}

/// The `traceparent`, `tracestate` and `baggage` that calls made in `cx` carry.
fn outbound_headers(cx: &Context) -> (Option<String>, Option<String>, Option<String>) {
    let span = cx.span();
    let context = span.span_context();
    let mut traceparent = None;
    let mut tracestate = None;
    if context.is_valid() {
        let parent = TraceParent::new(
            context.trace_id().to_bytes(),
            new_span_id().to_bytes(),
            context.trace_flags().to_u8(),
        );
        if let Ok(parent) = parent {
            traceparent = Some(parent.to_header());
            // Our own span keeps the tracestate exactly as received; another
            // tracer's span carries its own.
            let ours = cx
                .get::<RequestSpan>()
                .filter(|span| span.span_id == context.span_id());
            let state = match ours.and_then(|span| span.trace_state.as_ref()) {
                Some(state) => state.clone(),
                None => context.trace_state().header(),
            };
            tracestate = Some(state).filter(|state| !state.is_empty());
        }
    }
    let application = cx.baggage();
    let session = TrustedSession::in_context(cx);
    let span_id = context.is_valid().then(|| context.span_id());
    if application.is_empty() {
        // Nothing to merge: the session's member was encoded when its token was verified.
        let baggage = session.map(|session| session_only(session, span_id));
        return (traceparent, tracestate, baggage);
    }
    let mut baggage = Baggage::new();
    for (key, (value, _)) in application.iter() {
        // Entries that would break the limits are left out rather than cut.
        let _ = baggage.insert(key.as_str(), value.as_str().as_ref());
    }
    if let Some(session) = session {
        // The verified session goes on, and in place of any entry of its key the application set.
        let _ = baggage.insert(SESSION_BAGGAGE_KEY, session.token());
        if let Some(span_id) = span_id {
            let _ = baggage.insert(SPAN_BAGGAGE_KEY, &span_id.to_string());
        }
    }
    (traceparent, tracestate, baggage.to_header())
}

/// The `baggage` of a request whose only entries are Keyhole's: the session and, when the request
/// has a span, the span that makes the call (what [`Baggage::to_header`] makes of the same two entries).
fn session_only(session: &TrustedSession, span: Option<SpanId>) -> String {
    let member = session.baggage_member();
    let mut header = String::with_capacity(member.len() + SPAN_MEMBER_LEN);
    header.push_str(member);
    if let Some(span) = span {
        header.push(',');
        header.push_str(SPAN_BAGGAGE_KEY);
        header.push('=');
        push_hex(&mut header, &span.to_bytes());
    }
    header
}

/// `,keyhole.span=` and 16 hex digits.
const SPAN_MEMBER_LEN: usize = 2 + SPAN_BAGGAGE_KEY.len() + 16;

/// [`inject_context`] with the current context.
pub fn inject_current(headers: &mut HeaderMap) {
    Context::map_current(|cx| inject_context(cx, headers));
}

/// A tonic interceptor that propagates the current context on gRPC calls.
///
/// ```
/// # fn wrap(channel: tonic::transport::Channel) {
/// use keyhole::PropagateContext;
/// let service = tonic::service::interceptor::InterceptedService::new(channel, PropagateContext);
/// # let _ = service;
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PropagateContext;

impl tonic::service::Interceptor for PropagateContext {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut headers = HeaderMap::new();
        inject_current(&mut headers);
        for (name, value) in &headers {
            if let Ok(value) = tonic::metadata::AsciiMetadataValue::try_from(value.as_bytes()) {
                request.metadata_mut().insert(
                    tonic::metadata::AsciiMetadataKey::from_static(static_name(name.as_str())),
                    value,
                );
            }
        }
        Ok(request)
    }
}

fn static_name(name: &str) -> &'static str {
    match name {
        "traceparent" => "traceparent",
        "tracestate" => "tracestate",
        _ => "baggage",
    }
}

/// Propagation on reqwest calls (feature `reqwest`).
#[cfg(feature = "reqwest")]
pub trait RequestBuilderExt {
    /// Adds the current request's `traceparent`, `tracestate` and `baggage`.
    fn propagate_context(self) -> Self;
}

#[cfg(feature = "reqwest")]
impl RequestBuilderExt for reqwest::RequestBuilder {
    fn propagate_context(self) -> Self {
        let mut headers = HeaderMap::new();
        inject_current(&mut headers);
        self.headers(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::inbound_context;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceId, TraceState};
    use opentelemetry::KeyValue;

    /// A context with a verified session and a span, as the inbound layer makes for a session's request.
    fn session_context() -> (Context, TrustedSession, SpanId) {
        let session = crate::session::tests::verified("ses-outbound");
        let span = SpanId::from_bytes([0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        let context = SpanContext::new(
            TraceId::from_bytes([0x4b; 16]),
            span,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        let cx = Context::new()
            .with_remote_span_context(context)
            .with_value(session.clone());
        (cx, session, span)
    }

    #[test]
    fn a_sessions_baggage_is_what_the_general_encoder_makes_of_its_entries() {
        let (cx, session, span) = session_context();
        let mut outgoing = HeaderMap::new();
        inject_context(&cx, &mut outgoing);
        let mut expected = Baggage::new();
        expected.insert(SESSION_BAGGAGE_KEY, session.token()).unwrap();
        expected.insert(SPAN_BAGGAGE_KEY, &span.to_string()).unwrap();
        assert_eq!(outgoing["baggage"], expected.to_header().unwrap().as_str());
        assert_eq!(
            outgoing["baggage"].to_str().unwrap(),
            format!(
                "keyhole.session={},keyhole.span=00f067aa0ba902b7",
                session.token()
            )
        );
    }

    #[test]
    fn the_applications_baggage_goes_first_and_the_verified_session_replaces_any_it_set() {
        let (cx, session, _) = session_context();
        let cx = cx.with_baggage([
            KeyValue::new("tenant.id", "acme corp"),
            KeyValue::new(SESSION_BAGGAGE_KEY, "forged"),
        ]);
        let mut outgoing = HeaderMap::new();
        inject_context(&cx, &mut outgoing);
        let baggage = Baggage::from_headers_with_report([outgoing["baggage"].as_bytes()]).0;
        assert_eq!(baggage.get("tenant.id"), Some("acme corp"));
        assert_eq!(baggage.get(SESSION_BAGGAGE_KEY), Some(session.token()));
        assert_eq!(baggage.get(SPAN_BAGGAGE_KEY), Some("00f067aa0ba902b7"));
        assert_eq!(baggage.len(), 3, "{baggage:?}");
    }

    #[test]
    fn a_trusted_callers_trace_and_baggage_go_on_with_this_service_as_the_parent() {
        let mut incoming = HeaderMap::new();
        incoming.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        incoming.insert("tracestate", "congo=t61rcWkgMzE".parse().unwrap());
        incoming.insert("baggage", "tenant.id=acme".parse().unwrap());
        let cx = inbound_context(&Context::new(), &incoming, true);
        let mut outgoing = HeaderMap::new();
        inject_context(&cx, &mut outgoing);
        let traceparent = outgoing["traceparent"].to_str().unwrap();
        assert!(
            traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{traceparent}"
        );
        assert!(
            !traceparent.contains("00f067aa0ba902b7"),
            "the callee's parent is a span of this service"
        );
        assert!(traceparent.ends_with("-01"));
        assert_eq!(outgoing["tracestate"], "congo=t61rcWkgMzE");
        assert_eq!(
            outgoing["baggage"], "tenant.id=acme",
            "no span is named outside a debug session"
        );
        let mut again = HeaderMap::new();
        inject_context(&cx, &mut again);
        assert_ne!(
            again["traceparent"], outgoing["traceparent"],
            "each call has its own parent-id"
        );
    }

    #[test]
    fn headers_already_there_are_replaced_or_cleared_never_doubled() {
        let stale = |headers: &mut HeaderMap| {
            for name in ["traceparent", "tracestate", "baggage"] {
                headers.append(name, "stale".parse().unwrap());
                headers.append(name, "stale too".parse().unwrap());
            }
        };
        let mut outgoing = HeaderMap::new();
        stale(&mut outgoing);
        inject_context(&Context::new(), &mut outgoing);
        assert!(
            outgoing.is_empty(),
            "nothing of a request's own goes on: {outgoing:?}"
        );

        let (cx, _, _) = session_context();
        stale(&mut outgoing);
        inject_context(&cx, &mut outgoing);
        assert_eq!(outgoing.get_all("traceparent").iter().count(), 1);
        assert_ne!(outgoing["traceparent"], "stale");
        assert!(outgoing.get("tracestate").is_none(), "the span has no tracestate");
        assert_eq!(outgoing.get_all("baggage").iter().count(), 1);
        assert!(outgoing["baggage"]
            .to_str()
            .unwrap()
            .starts_with("keyhole.session="));
    }
}
