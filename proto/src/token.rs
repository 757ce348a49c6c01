//! Debug-session tokens: `v1.<key-id>.<session-id>.<expiry>.<signature>`.
//!
//! The control plane signs (Ed25519) with a private key only it holds; agents
//! get the public keys, by key id, so a compromised service can verify a
//! session but never mint one, and keys can rotate. `<expiry>` is unix
//! seconds; `<signature>` is base64url (no padding) over everything before the
//! last dot.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::v1::VerificationKey;

/// The only token version this crate reads and writes.
pub const TOKEN_VERSION: &str = "v1";
/// Longer tokens are refused before any other work.
pub const MAX_TOKEN_LEN: usize = 256;
/// Longest key id and session id.
pub const MAX_ID_LEN: usize = 64;
/// The algorithm name carried with each [`VerificationKey`].
pub const ALGORITHM: &str = "ed25519";

/// What a token says, once its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    pub key_id: String,
    pub session_id: String,
    pub expires_at_unix: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Not of the form `v1.<key-id>.<session-id>.<expiry>.<signature>`.
    Malformed(&'static str),
    /// Signed with a key this verifier does not have (unknown or rotated out).
    UnknownKey,
    /// The signature does not match.
    BadSignature,
    /// Past its expiry.
    Expired,
    /// A key or id given to the signer or verifier is not usable.
    InvalidKey(&'static str),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Malformed(why) => write!(f, "malformed session token: {why}"),
            TokenError::UnknownKey => f.write_str("session token signed with an unknown key"),
            TokenError::BadSignature => f.write_str("session token signature does not verify"),
            TokenError::Expired => f.write_str("session token has expired"),
            TokenError::InvalidKey(why) => write!(f, "invalid session key: {why}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// A key id or session id: 1 to [`MAX_ID_LEN`] characters of `[a-z0-9-]`,
/// which keeps tokens baggage-safe and free of the `.` separator.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Mints session tokens. Lives only in the control plane.
pub struct SessionSigner {
    key_id: String,
    key: SigningKey,
}

impl SessionSigner {
    /// A signer for key `key_id` from its 32-byte Ed25519 secret.
    pub fn new(key_id: &str, secret: &[u8; 32]) -> Result<Self, TokenError> {
        if !is_valid_id(key_id) {
            return Err(TokenError::InvalidKey(
                "key id must be 1-64 characters of [a-z0-9-]",
            ));
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            key: SigningKey::from_bytes(secret),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public half, as sent to agents.
    pub fn verification_key(&self) -> VerificationKey {
        VerificationKey {
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.to_owned(),
            public_key: self.key.verifying_key().to_bytes().to_vec(),
        }
    }

    /// A token for `session_id` valid until `expires_at_unix`.
    ///
    /// ```
    /// use keyhole_proto::token::{SessionSigner, SessionVerifier};
    /// let signer = SessionSigner::new("k1", &[7; 32]).unwrap();
    /// let token = signer.sign("ses-1", 2_000_000_000).unwrap();
    /// let verifier = SessionVerifier::from_keys(&[signer.verification_key()]).unwrap();
    /// let claims = verifier.verify(&token, 1_900_000_000).unwrap();
    /// assert_eq!(claims.session_id, "ses-1");
    /// ```
    pub fn sign(&self, session_id: &str, expires_at_unix: u64) -> Result<String, TokenError> {
        if !is_valid_id(session_id) {
            return Err(TokenError::InvalidKey(
                "session id must be 1-64 characters of [a-z0-9-]",
            ));
        }
        let signed = format!("{TOKEN_VERSION}.{}.{session_id}.{expires_at_unix}", self.key_id);
        let signature = self.key.sign(signed.as_bytes());
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// A token split into its parts; the signature is not checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    pub key_id: &'a str,
    pub session_id: &'a str,
    pub expires_at_unix: u64,
    signed: &'a str,
    signature: [u8; 64],
}

/// Splits a token, checking its shape only.
pub fn parse(token: &str) -> Result<ParsedToken<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("longer than 256 bytes"));
    }
    let (signed, signature) = token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("expected 5 dot-separated parts"))?;
    let mut parts = signed.split('.');
    let (Some(version), Some(key_id), Some(session_id), Some(expiry), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed("expected 5 dot-separated parts"));
    };
    if version != TOKEN_VERSION {
        return Err(TokenError::Malformed("unknown version (expected v1)"));
    }
    if !is_valid_id(key_id) || !is_valid_id(session_id) {
        return Err(TokenError::Malformed("bad key id or session id"));
    }
    let canonical_number = !expiry.is_empty()
        && expiry.len() <= 20
        && expiry.bytes().all(|b| b.is_ascii_digit())
        && (expiry == "0" || !expiry.starts_with('0'));
    let expires_at_unix = canonical_number
        .then(|| expiry.parse::<u64>().ok())
        .flatten()
        .ok_or(TokenError::Malformed("expiry is not a unix time"))?;
    let mut signature_bytes = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut signature_bytes) {
        Ok(64) if signature.len() == 86 => {}
        _ => return Err(TokenError::Malformed("signature is not 64 base64url bytes")),
    }
    Ok(ParsedToken {
        key_id,
        session_id,
        expires_at_unix,
        signed,
        signature: signature_bytes,
    })
}

/// Checks tokens against the control plane's public keys. Lives in agents.
#[derive(Debug, Clone, Default)]
pub struct SessionVerifier {
    keys: HashMap<String, VerifyingKey>,
}

impl SessionVerifier {
    /// A verifier for the keys the control plane sent.
    pub fn from_keys(keys: &[VerificationKey]) -> Result<Self, TokenError> {
        let mut verifier = Self::default();
        for key in keys {
            if key.algorithm != ALGORITHM {
                return Err(TokenError::InvalidKey("unsupported algorithm"));
            }
            if !is_valid_id(&key.key_id) {
                return Err(TokenError::InvalidKey("bad key id"));
            }
            let bytes: &[u8; 32] = key
                .public_key
                .as_slice()
                .try_into()
                .map_err(|_| TokenError::InvalidKey("public key is not 32 bytes"))?;
            let public = VerifyingKey::from_bytes(bytes)
                .map_err(|_| TokenError::InvalidKey("public key is not a curve point"))?;
            verifier.keys.insert(key.key_id.clone(), public);
        }
        Ok(verifier)
    }

    /// Whether it holds a key with this id.
    pub fn has_key(&self, key_id: &str) -> bool {
        self.keys.contains_key(key_id)
    }

    /// Whether both hold exactly the same keys.
    pub fn same_keys(&self, other: &SessionVerifier) -> bool {
        self.keys.len() == other.keys.len()
            && self
                .keys
                .iter()
                .all(|(id, key)| other.keys.get(id).is_some_and(|o| o.as_bytes() == key.as_bytes()))
    }

    /// Whether it has no keys at all (nothing verifies).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The session a token grants at `now_unix`, if its signature verifies
    /// and it has not expired.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<SessionClaims, TokenError> {
        let parsed = parse(token)?;
        let key = self.keys.get(parsed.key_id).ok_or(TokenError::UnknownKey)?;
        key.verify_strict(
            parsed.signed.as_bytes(),
            &Signature::from_bytes(&parsed.signature),
        )
        .map_err(|_| TokenError::BadSignature)?;
        if parsed.expires_at_unix <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(SessionClaims {
            key_id: parsed.key_id.to_owned(),
            session_id: parsed.session_id.to_owned(),
            expires_at_unix: parsed.expires_at_unix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn signer(key_id: &str, seed: u8) -> SessionSigner {
        SessionSigner::new(key_id, &[seed; 32]).unwrap()
    }

    fn verifier(signers: &[&SessionSigner]) -> SessionVerifier {
        let keys: Vec<_> = signers.iter().map(|s| s.verification_key()).collect();
        SessionVerifier::from_keys(&keys).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_and_names_its_session() {
        let signer = signer("k1", 1);
        let token = signer.sign("ses-abc", NOW + 60).unwrap();
        assert!(token.starts_with("v1.k1.ses-abc."));
        let claims = verifier(&[&signer]).verify(&token, NOW).unwrap();
        assert_eq!(claims.session_id, "ses-abc");
        assert_eq!(claims.expires_at_unix, NOW + 60);
    }

    #[test]
    fn an_expired_token_is_refused() {
        let signer = signer("k1", 1);
        let token = signer.sign("ses-abc", NOW).unwrap();
        assert_eq!(verifier(&[&signer]).verify(&token, NOW), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_with_any_part_changed_is_refused() {
        let signer = signer("k1", 1);
        let token = signer.sign("ses-abc", NOW + 60).unwrap();
        let verifier = verifier(&[&signer]);
        let other_session = token.replace("ses-abc", "ses-abd");
        assert_eq!(
            verifier.verify(&other_session, NOW),
            Err(TokenError::BadSignature)
        );
        let later = token.replace(&(NOW + 60).to_string(), &(NOW + 6000).to_string());
        assert_eq!(verifier.verify(&later, NOW), Err(TokenError::BadSignature));
        let mut flipped = token.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == 'A' { 'B' } else { 'A' });
        assert!(verifier.verify(&flipped, NOW).is_err());
    }

    #[test]
    fn a_token_from_another_key_or_a_rotated_out_key_is_refused() {
        let current = signer("k2", 2);
        let retired = signer("k1", 1);
        let forged_with_same_id = signer("k2", 9);
        let verifier = verifier(&[&current]);
        let old = retired.sign("ses-abc", NOW + 60).unwrap();
        assert_eq!(verifier.verify(&old, NOW), Err(TokenError::UnknownKey));
        let forged = forged_with_same_id.sign("ses-abc", NOW + 60).unwrap();
        assert_eq!(verifier.verify(&forged, NOW), Err(TokenError::BadSignature));
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        let signer = signer("k1", 1);
        let good = signer.sign("ses-abc", NOW + 60).unwrap();
        let verifier = verifier(&[&signer]);
        let cases = [
            String::new(),
            "v1".into(),
            "v1.k1.ses-abc.123".into(),
            good.replace("v1.", "v2."),
            good.replace("ses-abc", "SES-ABC"),
            good.replace("ses-abc", "ses.abc"),
            good[..good.len() - 1].to_string(),
            format!("{good}A"),
            format!("{good}.extra"),
            good.replace(&(NOW + 60).to_string(), &format!("0{}", NOW + 60)),
            good.replace(&(NOW + 60).to_string(), "-5"),
            "x".repeat(MAX_TOKEN_LEN + 1),
            "v1.k1.s.99999999999999999999999.AAAA".into(),
        ];
        for case in cases {
            assert!(
                matches!(
                    verifier.verify(&case, NOW),
                    Err(TokenError::Malformed(_)) | Err(TokenError::BadSignature)
                ),
                "{case:?} was not refused as malformed"
            );
        }
    }

    #[test]
    fn ids_outside_the_token_alphabet_cannot_be_signed() {
        assert!(SessionSigner::new("K1", &[1; 32]).is_err());
        assert!(signer("k1", 1).sign("a.b", NOW).is_err());
        assert!(signer("k1", 1).sign("", NOW).is_err());
    }
}
