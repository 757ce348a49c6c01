//! Who may call what: bearer tokens with roles.
//!
//! A token is `kh_<id>_<secret>`; the control plane keeps only a SHA-256 of
//! the secret and compares it in constant time. Roles: `agent` (register,
//! watch, upload), `viewer` (read), `debugger` (viewer, plus sessions and
//! breakpoints), `admin` (everything, including tokens).
//!
//! Agents upload hundreds of batches a second, each with its token: a token
//! the store vouched for is trusted for [`VERIFIED_TOKEN_TTL`] without asking
//! the store again. Revoking it through this replica ends that at once; a
//! revocation through another replica takes effect here within the TTL.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::ids;
use crate::store::{ApiTokenRecord, Store};

/// Prefix of every API token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "kh_";
/// How long a token the store vouched for is trusted without reading the
/// store again: the longest a token revoked through another replica keeps
/// working on this one.
pub const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(2);
/// Verified tokens remembered at most; beyond that, checks read the store.
const VERIFIED_TOKEN_CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Agent,
    Viewer,
    Debugger,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Agent, Role::Viewer, Role::Debugger, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Debugger => "debugger",
            Role::Admin => "admin",
        }
    }

    /// "an agent", "a viewer", ...
    pub fn with_article(self) -> String {
        match self {
            Role::Agent | Role::Admin => format!("an {self}"),
            Role::Viewer | Role::Debugger => format!("a {self}"),
        }
    }

    /// Whether a token of this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        match self {
            Role::Admin => true,
            Role::Debugger => matches!(needed, Role::Debugger | Role::Viewer),
            Role::Viewer => needed == Role::Viewer,
            Role::Agent => needed == Role::Agent,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}; roles are agent, viewer, debugger and admin"))
    }
}

/// The caller of an RPC, once its token checked out.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

impl Principal {
    /// How the caller is named in records it creates.
    pub fn display_name(&self) -> String {
        display_name(&self.name, &self.token_id)
    }
}

/// How the holder of token `token_id` named `name` is shown: `name (id)`, or
/// the id alone when the token has no name.
pub fn display_name(name: &str, token_id: &str) -> String {
    if name.is_empty() {
        token_id.to_owned()
    } else {
        format!("{name} ({token_id})")
    }
}

/// A freshly minted token: the record to store and the secret to show once.
pub struct MintedToken {
    pub record: ApiTokenRecord,
    pub bearer: String,
}

fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A new token of `role`, to be shown to its owner once.
pub fn mint_token(role: Role, name: &str, creator: &str, now: i64) -> MintedToken {
    let id = ids::random_hex(8);
    let secret = ids::random_hex(32);
    MintedToken {
        bearer: format!("{TOKEN_PREFIX}{id}_{secret}"),
        record: ApiTokenRecord {
            id,
            name: name.to_owned(),
            role,
            secret_hash: hash_secret(&secret),
            creator: creator.to_owned(),
            created_at: now,
            revoked_at: None,
        },
    }
}

/// Checks the bearer token of each request against the store, or against
/// what the store said of it less than [`VERIFIED_TOKEN_TTL`] ago.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
    verified: Arc<Mutex<VerifiedTokens>>,
}

/// Tokens the store recently vouched for, by token id.
#[derive(Default)]
struct VerifiedTokens {
    by_id: HashMap<String, Verified>,
    /// Counts revocations, so that a check which read the store before a
    /// revocation does not remember the token after it.
    revocations: u64,
}

struct Verified {
    secret_hash: Vec<u8>,
    principal: Principal,
    at: Instant,
}

impl VerifiedTokens {
    /// The holder of token `id` whose secret hashes to `secret_hash`, if the
    /// store vouched for exactly that within the TTL.
    fn principal(&mut self, id: &str, secret_hash: &[u8], now: Instant) -> Option<Principal> {
        let verified = self.by_id.get(id)?;
        if now.duration_since(verified.at) >= VERIFIED_TOKEN_TTL {
            self.by_id.remove(id);
            return None;
        }
        let matches: bool = verified.secret_hash.ct_eq(secret_hash).into();
        matches.then(|| verified.principal.clone())
    }

    /// Remembers what the store said of token `id`, unless a token was
    /// revoked since the store was read (`revocations` was then read).
    fn remember(&mut self, id: &str, verified: Verified, revocations: u64) {
        if revocations != self.revocations {
            return;
        }
        if self.by_id.len() >= VERIFIED_TOKEN_CAPACITY {
            let now = verified.at;
            self.by_id
                .retain(|_, old| now.duration_since(old.at) < VERIFIED_TOKEN_TTL);
            if self.by_id.len() >= VERIFIED_TOKEN_CAPACITY {
                return;
            }
        }
        self.by_id.insert(id.to_owned(), verified);
    }
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            verified: Arc::default(),
        }
    }

    /// The caller of `request`, if its token is valid and its role allows `needed`.
    pub async fn check<T>(&self, request: &Request<T>, needed: Role) -> Result<Principal, Status> {
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated(
                "no API token: send `authorization: Bearer <token>` (the CLI reads KEYHOLE_TOKEN)",
            )
        })?;
        let bearer = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| Status::unauthenticated("the authorization header is not `Bearer <token>`"))?;
        self.authenticate(bearer.trim(), needed).await
    }

    /// The caller holding `bearer` (the token itself, without `Bearer `), if
    /// it is valid and its role allows `needed`.
    pub async fn authenticate(&self, bearer: &str, needed: Role) -> Result<Principal, Status> {
        let principal = self.principal(bearer).await?;
        if !principal.role.allows(needed) {
            return Err(Status::permission_denied(format!(
                "{} token cannot do this; it needs the {needed} role",
                principal.role.with_article()
            )));
        }
        Ok(principal)
    }

    /// Stops trusting token `id` at once; call it once its revocation is stored.
    pub fn forget(&self, id: &str) {
        let mut verified = self.verified();
        verified.revocations += 1;
        verified.by_id.remove(id);
    }

    fn verified(&self) -> MutexGuard<'_, VerifiedTokens> {
        // Entries are replaced whole: a panic elsewhere cannot leave one half-written.
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn principal(&self, bearer: &str) -> Result<Principal, Status> {
        let invalid = || Status::unauthenticated("the API token is not valid (unknown, revoked or mistyped)");
        let (id, secret) = bearer
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(invalid)?;
        let secret_hash = hash_secret(secret);
        // Taken before the store is read: the TTL then bounds how long after
        // a revocation elsewhere its answer is trusted, however slow the read.
        let asked = Instant::now();
        let revocations = {
            let mut verified = self.verified();
            if let Some(principal) = verified.principal(id, &secret_hash, asked) {
                return Ok(principal);
            }
            verified.revocations
        };
        let record = self
            .store
            .get_token(id)
            .await
            .map_err(|e| crate::storage_status(&e))?
            .ok_or_else(invalid)?;
        let matches: bool = record.secret_hash.ct_eq(&secret_hash).into();
        if !matches || record.revoked_at.is_some() {
            return Err(invalid());
        }
        let principal = Principal {
            token_id: record.id,
            name: record.name,
            role: record.role,
        };
        let verified = Verified {
            secret_hash,
            principal: principal.clone(),
            at: asked,
        };
        self.verified().remember(id, verified, revocations);
        Ok(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_allow_what_their_description_says() {
        assert!(Role::Admin.allows(Role::Agent));
        assert!(Role::Admin.allows(Role::Debugger));
        assert!(Role::Debugger.allows(Role::Viewer));
        assert!(!Role::Debugger.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Debugger));
        assert!(!Role::Agent.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Agent));
    }

    #[test]
    fn role_names_round_trip_and_unknown_ones_are_explained() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root"
            .parse::<Role>()
            .unwrap_err()
            .contains("agent, viewer, debugger and admin"));
    }

    #[test]
    fn a_minted_token_keeps_only_a_hash_of_its_secret() {
        let minted = mint_token(Role::Viewer, "ci", "admin", 0);
        let secret = minted.bearer.rsplit('_').next().unwrap();
        assert_eq!(minted.record.secret_hash, hash_secret(secret));
        assert!(!minted.bearer.contains(&hex_of(&minted.record.secret_hash)));
        assert!(minted.bearer.starts_with(TOKEN_PREFIX));
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A store with one agent token in it, and the token.
    async fn store_with_agent_token(dir: &tempfile::TempDir) -> (Arc<dyn Store>, MintedToken) {
        let store = crate::store::SqliteStore::open(dir.path()).await.unwrap();
        let minted = mint_token(Role::Agent, "shop", "admin", 0);
        store.insert_token(&minted.record).await.unwrap();
        (Arc::new(store), minted)
    }

    #[tokio::test]
    async fn a_token_revoked_through_this_replica_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (store, minted) = store_with_agent_token(&dir).await;
        let auth = Authenticator::new(store.clone());
        let principal = auth.authenticate(&minted.bearer, Role::Agent).await.unwrap();
        assert_eq!(principal.token_id, minted.record.id);

        store.revoke_token(&minted.record.id, 1).await.unwrap();
        auth.forget(&minted.record.id);
        let refused = auth.authenticate(&minted.bearer, Role::Agent).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }

    #[tokio::test]
    async fn a_token_revoked_through_another_replica_is_refused_here_within_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let (store, minted) = store_with_agent_token(&dir).await;
        let here = Authenticator::new(store.clone());
        let elsewhere = Authenticator::new(store.clone());
        here.authenticate(&minted.bearer, Role::Agent).await.unwrap();

        let revoked_at = Instant::now();
        store.revoke_token(&minted.record.id, 1).await.unwrap();
        elsewhere.forget(&minted.record.id);
        assert!(
            elsewhere.authenticate(&minted.bearer, Role::Agent).await.is_err(),
            "the replica that revoked it refuses it at once"
        );
        // Until the TTL runs out this replica trusts what the store told it,
        // without reading the store on every call.
        while here.authenticate(&minted.bearer, Role::Agent).await.is_ok() {
            assert!(
                revoked_at.elapsed() < VERIFIED_TOKEN_TTL,
                "still trusted {:?} after the revocation",
                revoked_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_remembered_token_id_with_another_secret_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (store, minted) = store_with_agent_token(&dir).await;
        let auth = Authenticator::new(store);
        auth.authenticate(&minted.bearer, Role::Agent).await.unwrap();
        let forged = format!("{TOKEN_PREFIX}{}_{}", minted.record.id, "0".repeat(64));
        assert!(auth.authenticate(&forged, Role::Agent).await.is_err());
        assert!(
            auth.authenticate(&minted.bearer, Role::Viewer).await.is_err(),
            "a remembered token keeps its role"
        );
    }

    #[test]
    fn what_the_store_said_before_a_revocation_is_not_remembered_after_it() {
        let mut verified = VerifiedTokens::default();
        let read_before = verified.revocations;
        verified.revocations += 1;
        let principal = Principal {
            token_id: "t1".into(),
            name: String::new(),
            role: Role::Agent,
        };
        let now = Instant::now();
        let answer = || Verified {
            secret_hash: hash_secret("secret"),
            principal: principal.clone(),
            at: now,
        };
        verified.remember("t1", answer(), read_before);
        assert!(verified.principal("t1", &hash_secret("secret"), now).is_none());
        verified.remember("t1", answer(), verified.revocations);
        assert!(verified.principal("t1", &hash_secret("secret"), now).is_some());
        assert!(
            verified
                .principal("t1", &hash_secret("secret"), now + VERIFIED_TOKEN_TTL)
                .is_none(),
            "trusted no longer than the TTL"
        );
    }
}
