//! A thread remembers the sessions it was granted, and forgets them as soon as the keys that
//! granted them change or the agent stops: remembering saves work, it never extends trust.

use keyhole::testing::{session_token, OfflineAgent};
use keyhole::{SessionError, TrustedSession};
use keyhole_proto::token::SessionSigner;

/// How long the test's session stays valid.
const SESSION_SECONDS: u64 = 600;

fn granted(token: &str) -> Option<String> {
    TrustedSession::from_token(token)
        .ok()
        .map(|session| session.session_id().to_owned())
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
