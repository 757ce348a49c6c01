//! The inbound layer: turns a request's `traceparent`, `tracestate` and
//! `baggage` into the `opentelemetry::Context` it is served in, and decides
//! what of it to trust.
//!
//! Only a session token that verifies against the control plane's keys
//! becomes a [`TrustedSession`]; nothing else a caller sends can make a probe
//! capture. By default every peer is untrusted (public-endpoint mode): its
//! trace is not continued (a new one starts, remembering the caller's as a
//! link) and its baggage is not put in the context, except a valid session
//! token, which is kept so the session follows the request downstream.
//! Trusted peers (internal hops) keep their full context.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{HeaderMap, HeaderName, Request};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::context::{FutureExt as _, WithContext};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};

use crate::propagation::{
    only_members, plain_value, visit_members, HeaderError, MalformedReports, Report, TraceParent, BAGGAGE,
    TRACEPARENT, TRACESTATE,
};
use crate::session::{TrustedSession, SESSION_BAGGAGE_KEY};
use crate::trace::{open_span, parse_span_id, LinkedTrace, SPAN_BAGGAGE_KEY};

/// Malformed headers are logged at most once per interval per kind.
static MALFORMED: MalformedReports = MalformedReports::new();

/// An IP network, `10.0.0.0/8` or `::1/128` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not an IP network like 10.0.0.0/8 or ::1/128", self.0)
    }
}

impl std::error::Error for CidrError {}

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || CidrError(text.to_owned());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| error())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(error)?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            let keep = u32::from(prefix);
            let shift = u32::from(width) - keep;
            if keep == 0 {
                0
            } else {
                bits >> shift
            }
        }
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                masked(u128::from(u32::from(net)), self.prefix, 32)
                    == masked(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                masked(u128::from(net), self.prefix, 128) == masked(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

type PeerPredicate = dyn Fn(&http::request::Parts) -> bool + Send + Sync;
type PeerAddress = dyn Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync;

/// Which callers' trace context and baggage to keep.
#[derive(Clone)]
struct PeerTrust {
    cidrs: Vec<Cidr>,
    predicate: Option<Arc<PeerPredicate>>,
    peer_address: Arc<PeerAddress>,
}

/// The peer's address as servers commonly record it: a `SocketAddr` in the
/// request's extensions.
fn socket_addr_extension(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions.get::<SocketAddr>().map(SocketAddr::ip)
}

/// The inbound `tower::Layer`; see the module documentation.
///
/// ```
/// use keyhole::KeyholeLayer;
///
/// // An edge service: no caller is trusted (the default).
/// let public = KeyholeLayer::new();
/// // An internal service: calls from the cluster network keep their context.
/// let internal = KeyholeLayer::new().trust_cidrs(["10.0.0.0/8", "127.0.0.1"]).unwrap();
/// # let _ = (public, internal);
/// ```
#[derive(Clone)]
pub struct KeyholeLayer {
    trust: PeerTrust,
}

impl Default for KeyholeLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for KeyholeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyholeLayer")
            .field("trusted_cidrs", &self.trust.cidrs)
            .field("trust_predicate", &self.trust.predicate.is_some())
            .finish()
    }
}

impl KeyholeLayer {
    /// Public-endpoint mode: no peer is trusted.
    pub fn new() -> Self {
        Self {
            trust: PeerTrust {
                cidrs: Vec::new(),
                predicate: None,
                peer_address: Arc::new(socket_addr_extension),
            },
        }
    }

    /// Trusts peers whose address is in one of `cidrs`.
    pub fn trust_cidrs<I, S>(mut self, cidrs: I) -> Result<Self, CidrError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for cidr in cidrs {
            self.trust.cidrs.push(cidr.as_ref().parse()?);
        }
        Ok(self)
    }

    /// Trusts the peers for which `predicate` says so (in addition to any CIDRs).
    pub fn trust_peers_when(
        mut self,
        predicate: impl Fn(&http::request::Parts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.trust.predicate = Some(Arc::new(predicate));
        self
    }

    /// Where to find the peer's address in a request's extensions. The default
    /// reads a `std::net::SocketAddr`; with axum's `ConnectInfo` use
    /// `|ext| ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())`.
    pub fn peer_address(
        mut self,
        find: impl Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.trust.peer_address = Arc::new(find);
        self
    }
}

impl<S> tower::Layer<S> for KeyholeLayer {
    type Service = KeyholeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        KeyholeService {
            inner,
            trust: self.trust.clone(),
        }
    }
}

/// The service [`KeyholeLayer`] wraps around yours.
#[derive(Clone)]
pub struct KeyholeService<S> {
    inner: S,
    trust: PeerTrust,
}

impl<S, B> tower::Service<Request<B>> for KeyholeService<S>
where
    S: tower::Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = WithContext<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let trusted = self.trust.trusts(&parts);
        let context = inbound_context(&Context::current(), &parts.headers, trusted);
        let request = Request::from_parts(parts, body);
        let _entered = context.clone().attach();
        self.inner.call(request).with_context(context)
    }
}

impl PeerTrust {
    fn trusts(&self, parts: &http::request::Parts) -> bool {
        if self.predicate.as_ref().is_some_and(|predicate| predicate(parts)) {
            return true;
        }
        !self.cidrs.is_empty()
            && (self.peer_address)(&parts.extensions)
                .is_some_and(|address| self.cidrs.iter().any(|cidr| cidr.contains(address)))
    }
}

fn log_malformed(report: Option<Report>) {
    if let Some(report) = report {
        tracing::warn!(target: "keyhole", "{report}");
    }
}

fn values<'a>(headers: &'a HeaderMap, name: HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers.get_all(name).iter().map(|value| value.as_bytes())
}

/// What the inbound layer takes from a request's `baggage`.
#[derive(Debug, Default, PartialEq)]
struct BaggageRead<'a> {
    /// The last `keyhole.session` entry's value (later entries override earlier ones, as
    /// `Baggage::get` answers).
    token: Option<Cow<'a, str>>,
    /// The last `keyhole.span` entry's value.
    caller_span: Option<Cow<'a, str>>,
    /// The application's entries, from a trusted peer only.
    entries: Vec<KeyValue>,
}

/// The raw session token and caller's span of a request whose only baggage is what Keyhole itself
/// sends on (one header, `keyhole.session=TOKEN` and perhaps `,keyhole.span=ID`), without the
/// general reader; `None` for any other baggage.
fn keyholes_own_baggage(headers: &HeaderMap) -> Option<(&[u8], Option<&[u8]>)> {
    let mut all = headers.get_all(BAGGAGE).iter();
    let value = all.next()?;
    if all.next().is_some() {
        return None;
    }
    only_members(value.as_bytes(), SESSION_BAGGAGE_KEY, SPAN_BAGGAGE_KEY)
}

/// The session and caller's span that Keyhole's own baggage gives (its raw values), or `None` when a
/// value is not plain text, for the general reader to read and report.
fn own_session<'a>(
    token: &'a [u8],
    span: Option<&'a [u8]>,
) -> Option<(Option<TrustedSession>, Option<&'a str>)> {
    let span = match span {
        Some(raw) => Some(plain_value(raw)?),
        None => None,
    };
    // Compared as it lies in the header, before any check: a value equal to a remembered token is
    // plain text, so the check could only pass.
    let session = match TrustedSession::remembered(token) {
        Some(session) => Some(session),
        None => TrustedSession::from_token(plain_value(token)?).ok(),
    };
    Some((session, span))
}

/// The verified session, the caller's span and (from a trusted peer) the application's entries
/// that a request's baggage gives.
fn from_baggage(
    headers: &HeaderMap,
    trusted: bool,
    now: Instant,
) -> (Option<TrustedSession>, Option<Cow<'_, str>>, Vec<KeyValue>) {
    if let Some((session, span)) =
        keyholes_own_baggage(headers).and_then(|(token, span)| own_session(token, span))
    {
        return (session, span.map(Cow::Borrowed), Vec::new());
    }
    let read = read_baggage(headers, trusted, now);
    let session = read
        .token
        .and_then(|token| TrustedSession::from_token(&token).ok());
    (session, read.caller_span, read.entries)
}

/// Reads every `baggage` header with the general reader. Members are read where they lie in the
/// header: only what is kept is copied. An untrusted peer's baggage is dropped, so there that is the
/// session token alone, and a token is plain text, never copied.
fn read_baggage(headers: &HeaderMap, trusted: bool, now: Instant) -> BaggageRead<'_> {
    let mut read = BaggageRead::default();
    let (_, report) = visit_members(values(headers, BAGGAGE), |member| match member.key() {
        SESSION_BAGGAGE_KEY => read.token = Some(member.value()),
        SPAN_BAGGAGE_KEY => read.caller_span = Some(member.value()),
        key if trusted => read
            .entries
            .push(KeyValue::new(key.to_owned(), member.value().into_owned())),
        _ => {}
    });
    if report.malformed > 0 {
        log_malformed(MALFORMED.note(crate::propagation::HeaderKind::Baggage, now));
    }
    read
}

/// The context a request with `headers` is served in, from a peer that is
/// `trusted` or not, on top of `base`.
pub fn inbound_context(base: &Context, headers: &HeaderMap, trusted: bool) -> Context {
    let now = Instant::now();
    let parent = match TraceParent::from_headers(values(headers, TRACEPARENT)) {
        Ok(parent) => parent,
        Err(error) => {
            log_malformed(MALFORMED.note_error(error, now));
            None
        }
    };
    // An invalid traceparent drops tracestate with it.
    let state = parent.as_ref().map(|_| {
        crate::propagation::TraceState::from_headers(values(headers, TRACESTATE))
            .map_err(|error: HeaderError| log_malformed(MALFORMED.note_error(error, now)))
            .ok()
            .and_then(|state| state.to_header())
    });
    // It carries its token, so the session follows the request to downstream services.
    let (session, caller_span, entries) = from_baggage(headers, trusted, now);

    let mut cx = base.clone();
    if trusted {
        let caller_span = caller_span.as_deref().and_then(parse_span_id);
        cx = open_span(cx, parent.as_ref().zip(state), caller_span, session);
        if !entries.is_empty() {
            cx = cx.with_baggage(entries);
        }
    } else {
        if let Some(parent) = &parent {
            let caller = SpanContext::new(
                TraceId::from_bytes(parent.trace_id),
                SpanId::from_bytes(parent.parent_id),
                TraceFlags::default(),
                true,
                TraceState::default(),
            );
            cx = cx.with_value(LinkedTrace(caller));
        }
        cx = open_span(cx, None, None, session);
    }
    cx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_match_addresses_inside_them_only() {
        let cidr: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(cidr.contains("10.1.200.3".parse().unwrap()));
        assert!(!cidr.contains("10.2.0.1".parse().unwrap()));
        assert!(!cidr.contains("::1".parse().unwrap()));
        let host: Cidr = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(
            host.contains("::ffff:127.0.0.1".parse().unwrap()),
            "v4-mapped v6 is the v4 address"
        );
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::1/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn an_untrusted_caller_starts_a_new_trace_linked_to_its_own_and_its_baggage_is_dropped() {
        let cx = inbound_context(
            &Context::new(),
            &headers(&[
                ("traceparent", CALLER),
                ("baggage", "session.id=alice,tenant.id=acme"),
            ]),
            false,
        );
        let (trace_id, span_id, parent) = crate::trace::current_ids(&cx);
        assert_ne!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace_id.len(), 32);
        assert_eq!(span_id.len(), 16);
        assert!(parent.is_empty());
        let link = cx.get::<LinkedTrace>().expect("the caller's trace is linked");
        assert_eq!(link.0.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(cx.baggage().len(), 0, "untrusted baggage is not in the context");
        assert!(TrustedSession::in_context(&cx).is_none());
    }

    #[test]
    fn a_trusted_caller_continues_its_trace_and_keeps_its_baggage() {
        let cx = inbound_context(
            &Context::new(),
            &headers(&[
                ("traceparent", CALLER),
                ("tracestate", "congo=t61rcWkgMzE"),
                ("baggage", "tenant.id=acme"),
            ]),
            true,
        );
        let (trace_id, span_id, parent) = crate::trace::current_ids(&cx);
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent, "00f067aa0ba902b7", "the caller's span is the parent");
        assert_ne!(span_id, "00f067aa0ba902b7", "this request has its own span");
        assert_eq!(
            cx.baggage().get("tenant.id").map(|v| v.as_str().to_owned()),
            Some("acme".into())
        );
    }

    #[test]
    fn a_trusted_callers_baggage_is_decoded_into_the_context_without_keyholes_own_entries() {
        let cx = inbound_context(
            &Context::new(),
            &headers(&[
                ("traceparent", CALLER),
                (
                    "baggage",
                    "tenant.id=acme%20corp;p=1,keyhole.span=1111111111111111",
                ),
                (
                    "baggage",
                    "keyhole.span=2222222222222222, keyhole.session=v1.k.s.1.x,bad",
                ),
            ]),
            true,
        );
        assert_eq!(
            cx.baggage().get("tenant.id").map(|v| v.as_str().to_owned()),
            Some("acme corp".into())
        );
        assert_eq!(
            cx.baggage().len(),
            1,
            "keyhole's entries are not the application's"
        );
        let span = cx.get::<crate::RequestSpan>().expect("a span is opened");
        assert_eq!(
            span.parent_span_id.map(|id| id.to_string()),
            Some("2222222222222222".into()),
            "the last keyhole.span names the caller's request span"
        );
    }

    #[test]
    fn plain_session_baggage_never_makes_a_trusted_session_even_from_a_trusted_peer() {
        for trusted in [false, true] {
            let cx = inbound_context(
                &Context::new(),
                &headers(&[(
                    "baggage",
                    "session.id=alice,keyhole.session=v1.k.ses-1.9999999999.AAAA",
                )]),
                trusted,
            );
            assert!(TrustedSession::in_context(&cx).is_none());
            assert!(
                cx.baggage().get(SESSION_BAGGAGE_KEY).is_none(),
                "an unverified token is not passed on"
            );
        }
    }

    #[test]
    fn the_baggage_keyhole_sends_on_is_read_without_the_general_reader() {
        let session = crate::session::tests::verified("ses-own-baggage");
        let within = open_span(Context::new(), None, None, Some(session.clone()));
        let mut sent = HeaderMap::new();
        crate::outbound::inject_context(&within, &mut sent);
        let span = within
            .get::<crate::RequestSpan>()
            .expect("span")
            .span_id
            .to_string();
        assert_eq!(
            keyholes_own_baggage(&sent),
            Some((session.token().as_bytes(), Some(span.as_bytes()))),
            "a session's call, with the span that makes it"
        );
        let mut sent = HeaderMap::new();
        crate::outbound::inject_context(&session.context(), &mut sent);
        assert_eq!(
            keyholes_own_baggage(&sent),
            Some((session.token().as_bytes(), None)),
            "a session made current outside a request"
        );
        let header = format!("keyhole.session={}", session.token());
        for declined in [
            format!("{header},tenant.id=acme"),
            format!("tenant.id=acme,{header}"),
            format!("{header};p=1"),
            format!("{header} "),
            format!("{header},keyhole.span=00f067aa0ba902b7,keyhole.span=00f067aa0ba902b7"),
            format!("{header}%41"),
        ] {
            let sent = headers(&[("baggage", &declined)]);
            let read = keyholes_own_baggage(&sent).and_then(|(token, span)| own_session(token, span));
            assert!(read.is_none(), "{declined}");
        }
        assert_eq!(
            keyholes_own_baggage(&headers(&[("baggage", &header), ("baggage", "a=b")])),
            None,
            "more than one header"
        );
    }

    mod own_baggage {
        use super::*;
        use proptest::prelude::*;

        /// Baggage near Keyhole's own: its keys, plain and unplain bytes, separators, spaces.
        fn near_keyholes() -> impl Strategy<Value = Vec<String>> {
            let piece = prop_oneof![
                Just("keyhole.session=".to_owned()),
                Just("keyhole.span=".to_owned()),
                Just("keyhole.session =".to_owned()),
                Just(",keyhole.span=".to_owned()),
                Just("Keyhole.session=".to_owned()),
                "[a-zA-Z0-9._~=-]{0,40}",
                "[ ,;%=\t\x22a-f0-9]{1,3}",
            ];
            proptest::collection::vec(
                proptest::collection::vec(piece, 1..6).prop_map(|p| p.concat()),
                1..3,
            )
        }

        /// Both raw values as members' values read, if both are plain.
        fn plain<'a>((token, span): (&'a [u8], Option<&'a [u8]>)) -> Option<(&'a str, Option<&'a str>)> {
            let span = match span {
                Some(span) => Some(plain_value(span)?),
                None => None,
            };
            Some((plain_value(token)?, span))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn what_the_short_reader_finds_the_general_reader_finds_too(
                values in near_keyholes(), trusted in any::<bool>()
            ) {
                let mut map = HeaderMap::new();
                for value in &values {
                    let Ok(value) = value.parse() else { return Ok(()) };
                    map.append(BAGGAGE, value);
                }
                if let Some((token, caller_span)) = keyholes_own_baggage(&map).and_then(plain) {
                    let general = read_baggage(&map, trusted, Instant::now());
                    prop_assert_eq!(general, BaggageRead {
                        token: Some(Cow::Borrowed(token)),
                        caller_span: caller_span.map(Cow::Borrowed),
                        entries: Vec::new(),
                    });
                }
            }
        }
    }

    #[test]
    fn an_invalid_traceparent_starts_a_new_trace_and_drops_tracestate() {
        let cx = inbound_context(
            &Context::new(),
            &headers(&[
                (
                    "traceparent",
                    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", "a=b"),
            ]),
            true,
        );
        let (trace_id, _, parent) = crate::trace::current_ids(&cx);
        assert_ne!(trace_id.to_lowercase(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(parent.is_empty());
    }
}
