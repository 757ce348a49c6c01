//! Session tokens: a token verifies only if it is, byte for byte, the token the signer mints for the
//! session and expiry it claims. The input is tried twice: as a token of its own, and as edits to a
//! genuine token (each pair of bytes sets one byte), so that near-misses of a real signature are explored.

#![no_main]

use std::sync::OnceLock;

use keyhole_proto::token::{
    self, is_valid_id, SessionSigner, SessionVerifier, TokenError, MAX_TOKEN_LEN, TOKEN_VERSION,
};
use libfuzzer_sys::fuzz_target;

/// The verifier's clock.
const NOW: u64 = 1_800_000_000;

struct Keys {
    signer: SessionSigner,
    verifier: SessionVerifier,
    /// A token the signer minted, valid at [`NOW`].
    genuine: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let signer = SessionSigner::new("fuzz", &[7; 32]).expect("a valid key id");
        let verifier =
            SessionVerifier::from_keys(&[signer.verification_key()]).expect("the signer's own key");
        let genuine = signer
            .sign("ses-fuzz", 2_000_000_000)
            .expect("a valid session id");
        Keys {
            signer,
            verifier,
            genuine,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let keys = keys();
    if let Ok(token) = std::str::from_utf8(data) {
        check(keys, token);
    }

    let mut edited = keys.genuine.clone().into_bytes();
    for pair in data.chunks_exact(2) {
        let at = usize::from(pair[0]) % edited.len();
        edited[at] = pair[1];
    }
    if let Ok(token) = String::from_utf8(edited) {
        if token == keys.genuine {
            assert!(
                keys.verifier.verify(&token, NOW).is_ok(),
                "the genuine token was refused"
            );
        }
        check(keys, &token);
    }
});

fn check(keys: &Keys, token: &str) {
    let parsed = token::parse(token);
    if let Ok(parsed) = &parsed {
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert!(is_valid_id(parsed.key_id) && is_valid_id(parsed.session_id));
        let signed = format!(
            "{TOKEN_VERSION}.{}.{}.{}.",
            parsed.key_id, parsed.session_id, parsed.expires_at_unix
        );
        assert!(
            token.starts_with(&signed),
            "the parts do not spell the token: {token:?}"
        );
    }

    match keys.verifier.verify(token, NOW) {
        Ok(claims) => {
            let parsed = parsed.expect("a token that verifies parses");
            assert_eq!(claims.key_id, keys.signer.key_id());
            assert_eq!(claims.session_id, parsed.session_id);
            assert_eq!(claims.expires_at_unix, parsed.expires_at_unix);
            assert!(claims.expires_at_unix > NOW, "an expired token was accepted");
            let minted = keys
                .signer
                .sign(&claims.session_id, claims.expires_at_unix)
                .expect("a verified session id is valid");
            assert_eq!(token, minted, "a token the signer did not mint was accepted");
        }
        Err(error) => {
            if parsed.is_err() {
                assert!(
                    matches!(error, TokenError::Malformed(_)),
                    "a token that does not parse was refused as {error:?}"
                );
            }
        }
    }
}
