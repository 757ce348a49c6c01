//! Outbound propagation: the current request's trace and its debug session
//! travel on with the calls it makes, so the next service can verify the
//! session again and its snapshots join the same trace.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::Context;

use crate::propagation::{Baggage, TraceParent, BAGGAGE, TRACEPARENT, TRACESTATE};
use crate::session::{TrustedSession, SESSION_BAGGAGE_KEY};
use crate::trace::{new_span_id, RequestSpan, TraceStateHeader, SPAN_BAGGAGE_KEY};

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
    for name in [TRACEPARENT, TRACESTATE, BAGGAGE] {
        headers.remove(name);
    }
    let span = cx.span();
    let context = span.span_context();
    let mut baggage = Baggage::new();
    if context.is_valid() {
        let parent = TraceParent::new(
            context.trace_id().to_bytes(),
            new_span_id().to_bytes(),
            context.trace_flags().to_u8(),
        );
        if let Ok(parent) = parent {
            insert(headers, TRACEPARENT, parent.to_header());
            // Our own span keeps the tracestate exactly as received; another
            // tracer's span carries its own.
            let ours = cx
                .get::<RequestSpan>()
                .is_some_and(|span| span.span_id == context.span_id());
            let state = match cx.get::<TraceStateHeader>() {
                Some(TraceStateHeader(state)) if ours => state.clone(),
                _ => context.trace_state().header(),
            };
            if !state.is_empty() {
                insert(headers, TRACESTATE, state);
            }
        }
    }
    for (key, (value, _)) in cx.baggage().iter() {
        // Entries that would break the limits are left out rather than cut.
        let _ = baggage.insert(key.as_str(), value.as_str().as_ref());
    }
    if let Some(session) = cx.get::<TrustedSession>() {
        // The verified session goes on, and in place of any entry of its key the application set.
        let _ = baggage.insert(SESSION_BAGGAGE_KEY, session.token());
        if context.is_valid() {
            let _ = baggage.insert(SPAN_BAGGAGE_KEY, &context.span_id().to_string());
        }
    }
    if let Some(header) = baggage.to_header() {
        insert(headers, BAGGAGE, header);
    }
}

/// [`inject_context`] with the current context.
pub fn inject_current(headers: &mut HeaderMap) {
    Context::map_current(|cx| inject_context(cx, headers));
}

/// Sets `name` to `value`, which becomes the header's bytes without a copy.
fn insert(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(name, value);
    }
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
}
