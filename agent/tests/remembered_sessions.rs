//! A thread remembers the sessions it was granted, and forgets them as soon as the keys that
//! granted them change or the agent stops: remembering saves work, it never extends trust.

use http::HeaderMap;
use keyhole::testing::{session_token, OfflineAgent};
use keyhole::{inbound_context, SessionError, TrustedSession, SESSION_BAGGAGE_KEY};
use keyhole_proto::token::SessionSigner;
use opentelemetry::Context;

/// How long the test's session stays valid.
const SESSION_SECONDS: u64 = 600;

/// The session `token` grants, asked directly and as the inbound layer asks for a request that
/// carries it in its baggage (from an untrusted and from a trusted peer); all three must agree.
fn granted(token: &str) -> Option<String> {
    let direct = TrustedSession::from_token(token)
        .ok()
        .map(|session| session.session_id().to_owned());
    let mut headers = HeaderMap::new();
    let baggage = format!("{SESSION_BAGGAGE_KEY}={token}");
    headers.insert("baggage", baggage.parse().expect("header"));
    for trusted in [false, true] {
        let cx = inbound_context(&Context::new(), &headers, trusted);
        let carried = TrustedSession::in_context(&cx).map(|session| session.session_id().to_owned());
        assert_eq!(carried, direct, "a request's session, trusted peer: {trusted}");
    }
    direct
}

#[test]
fn a_remembered_session_is_refused_once_its_keys_are_replaced_or_the_agent_stops() {
    let signer = SessionSigner::new("k-remembered", &[5; 32]).expect("key");
    let replacement = SessionSigner::new("k-replacement", &[6; 32]).expect("key");
    let token = session_token(&signer, "ses-remembered", SESSION_SECONDS).expect("token");

    let agent = OfflineAgent::trusting("remembered", &signer).expect("offline agent");
    assert_eq!(granted(&token).as_deref(), Some("ses-remembered"));
    assert_eq!(
        granted(&token).as_deref(),
        Some("ses-remembered"),
        "found again on the thread that was granted it"
    );

    agent.set_keys(&[replacement.verification_key()]);
    assert_eq!(
        granted(&token),
        None,
        "its key is retired: refused on this thread too"
    );
    let elsewhere = std::thread::spawn({
        let token = token.clone();
        move || granted(&token)
    });
    assert_eq!(elsewhere.join().expect("thread"), None, "and on any other");

    agent.set_keys(&[signer.verification_key()]);
    assert_eq!(
        granted(&token).as_deref(),
        Some("ses-remembered"),
        "its key is back"
    );

    drop(agent);
    assert!(
        matches!(TrustedSession::from_token(&token), Err(SessionError::NoAgent)),
        "nothing is trusted without a running agent, whatever a thread remembers"
    );

    let _again = OfflineAgent::trusting("remembered", &replacement).expect("offline agent");
    assert_eq!(
        granted(&token),
        None,
        "an agent with other keys does not inherit what the last one granted"
    );
}
