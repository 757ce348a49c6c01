//! A verified debug session follows the request downstream through Keyhole's propagation, and stays
//! out of the application's OpenTelemetry baggage, which tracing pipelines may copy into spans and logs.

use http::HeaderMap;
use keyhole::propagation::Baggage;
use keyhole::testing::{session_token, OfflineAgent};
use keyhole::{inbound_context, inject_context, TrustedSession, SESSION_BAGGAGE_KEY};
use keyhole_proto::token::SessionSigner;
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::{Context, KeyValue};

/// How long the test's session stays valid.
const SESSION_SECONDS: u64 = 600;

#[test]
fn a_verified_session_goes_on_downstream_and_never_into_the_applications_baggage() {
    let signer = SessionSigner::new("k-propagation", &[9; 32]).expect("key");
    let _agent = OfflineAgent::trusting("propagation", &signer).expect("offline agent");
    let token = session_token(&signer, "ses-propagation", SESSION_SECONDS).expect("token");

    let mut incoming = HeaderMap::new();
    let header = format!("{SESSION_BAGGAGE_KEY}={token},tenant.id=acme");
    incoming.insert("baggage", header.parse().expect("header"));
    let cx = inbound_context(&Context::new(), &incoming, false);
    assert_eq!(
        TrustedSession::in_context(&cx).map(TrustedSession::session_id),
        Some("ses-propagation")
    );
    assert_eq!(
        cx.baggage().len(),
        0,
        "neither the token nor an untrusted caller's baggage is the application's"
    );

    // The application's own baggage goes on beside the session; an entry it set under the session's
    // key does not take the verified token's place.
    let cx = cx.with_baggage([
        KeyValue::new("tenant.id", "acme"),
        KeyValue::new(SESSION_BAGGAGE_KEY, "not-a-token"),
    ]);
    let mut outgoing = HeaderMap::new();
    inject_context(&cx, &mut outgoing);
    let sent = Baggage::from_headers([outgoing["baggage"].as_bytes()]);
    assert_eq!(sent.get(SESSION_BAGGAGE_KEY), Some(token.as_str()));
    assert_eq!(sent.get("tenant.id"), Some("acme"));
    assert!(sent.get("keyhole.span").is_some(), "the caller's span is named");

    // A session made current in-process (as tests and workers do) goes on just the same.
    let session = TrustedSession::from_token(&token).expect("verifies");
    let mut outgoing = HeaderMap::new();
    inject_context(&session.context(), &mut outgoing);
    let sent = Baggage::from_headers([outgoing["baggage"].as_bytes()]);
    assert_eq!(sent.get(SESSION_BAGGAGE_KEY), Some(token.as_str()));
}
