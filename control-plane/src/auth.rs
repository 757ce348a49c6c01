//! Who may call what: bearer tokens with roles.
//!
//! A token is `kh_<id>_<secret>`; the control plane keeps only a SHA-256 of
//! the secret and compares it in constant time. Roles: `agent` (register,
//! watch, upload), `viewer` (read), `debugger` (viewer, plus sessions and
//! breakpoints), `admin` (everything, including tokens).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::ids;
use crate::store::{ApiTokenRecord, Store};

/// Prefix of every API token, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "kh_";

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

/// Checks the bearer token of each request against the store.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn Store>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
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

    async fn principal(&self, bearer: &str) -> Result<Principal, Status> {
        let invalid = || Status::unauthenticated("the API token is not valid (unknown, revoked or mistyped)");
        let (id, secret) = bearer
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .ok_or_else(invalid)?;
        let record = self
            .store
            .get_token(id)
            .await
            .map_err(|e| crate::storage_status(&e))?
            .ok_or_else(invalid)?;
        let matches: bool = record.secret_hash.ct_eq(&hash_secret(secret)).into();
        if !matches || record.revoked_at.is_some() {
            return Err(invalid());
        }
        Ok(Principal {
            token_id: record.id,
            name: record.name,
            role: record.role,
        })
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
}
