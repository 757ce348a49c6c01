//! Storage: one trait for everything the control plane keeps, so the embedded
//! SQLite backend and a PostgreSQL backend for several replicas are
//! interchangeable. Protocol messages are stored whole; the backend indexes
//! the fields queries filter on.

mod postgres;
mod rows;
mod sqlite;
#[cfg(test)]
mod tests;

use std::fmt;

use async_trait::async_trait;
use keyhole_proto::v1::{
    Breakpoint, DropCount, Instance, InstanceStatus, ProbeSite, Snapshot, SnapshotFilter,
};
use prost::Message as _;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::auth::Role;

/// A storage failure: the database is unreachable, full, or corrupt.
#[derive(Debug)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<prost::DecodeError> for StoreError {
    fn from(e: prost::DecodeError) -> Self {
        StoreError(format!("stored record does not decode: {e}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A session-signing key pair (the secret never leaves the control plane).
#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub key_id: String,
    pub secret: [u8; 32],
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

/// A bearer token of the control plane's API; only a hash of its secret is kept.
#[derive(Debug, Clone)]
pub struct ApiTokenRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub secret_hash: Vec<u8>,
    pub creator: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A debug session (its token is not stored: only returned when opened).
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: String,
    pub name: String,
    pub creator: String,
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub closed_at: Option<i64>,
}

impl SessionRecord {
    /// Open, and not past its expiry at `now` (unix ms).
    pub fn is_active(&self, now: i64) -> bool {
        self.closed_at.is_none() && self.expires_at > now
    }
}

/// A registered agent instance, with the service it belongs to.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub service: String,
    pub instance: Instance,
}

/// One probe of a service, as registered by one instance.
#[derive(Debug, Clone)]
pub struct ServiceProbeRecord {
    pub service: String,
    pub agent_id: String,
    pub probe: ProbeSite,
}

/// A snapshot as the stores keep it: the columns queries filter on, beside
/// the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub id: String,
    pub breakpoint_id: String,
    pub session_id: String,
    pub service: String,
    pub trace_id: String,
    pub received_at: i64,
    /// The whole `Snapshot`, protobuf-encoded.
    pub body: Vec<u8>,
}

impl SnapshotRow {
    /// The row of `snapshot`.
    pub fn of(snapshot: &Snapshot) -> Self {
        Self {
            id: snapshot.id.clone(),
            breakpoint_id: snapshot.breakpoint_id.clone(),
            session_id: snapshot.session_id.clone(),
            service: snapshot.service.clone(),
            trace_id: snapshot.trace_id.clone(),
            received_at: snapshot.received_at_unix_ms,
            body: snapshot.encode_to_vec(),
        }
    }
}

/// What one `UploadSnapshots` call stores, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub agent_id: String,
    /// The service the uploader believes `agent_id` registered with.
    pub service: String,
    /// When the upload arrived; the instance was last seen then.
    pub at: i64,
    pub snapshots: Vec<SnapshotRow>,
    pub drops: Vec<DropCount>,
}

/// How an insert of a snapshot batch went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    pub stored: u32,
    pub duplicates: u32,
    /// The position of the newest snapshot stored (see [`Store::snapshots_after`]),
    /// if any was.
    pub newest: Option<i64>,
}

impl IngestOutcome {
    /// The outcome of sending `sent` snapshots of which those at `positions` were stored.
    fn of(sent: usize, positions: &[i64]) -> Self {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Self {
            stored: count(positions.len()),
            duplicates: count(sent.saturating_sub(positions.len())),
            newest: positions.iter().copied().max(),
        }
    }

    /// This outcome followed by `later`'s, in the same transaction.
    fn and(self, later: IngestOutcome) -> Self {
        Self {
            stored: self.stored.saturating_add(later.stored),
            duplicates: self.duplicates.saturating_add(later.duplicates),
            newest: self.newest.max(later.newest),
        }
    }
}

/// One entry of the audit log: who did what to which target, when, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Its position in the log, given by the store; ignored when inserting.
    pub seq: i64,
    pub at: i64,
    /// What was done, e.g. `breakpoint.set` (see [`crate::audit::AuditAction`]).
    pub action: String,
    /// The name of the actor's token (may be empty) and its id.
    pub actor_name: String,
    pub token_id: String,
    /// Where the call came from.
    pub address: String,
    /// The id of what was acted on.
    pub target: String,
    pub detail: String,
}

/// Which audit entries to list; `None` matches every entry.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    /// A token's name or its id.
    pub actor: Option<String>,
    /// Only entries at or after this time.
    pub since: Option<i64>,
}

/// What one batch of snapshot retention did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruned {
    /// This many snapshots were deleted; fewer than the batch allowed means
    /// none is left to delete.
    Deleted(u64),
    /// Another replica sharing the store is deleting right now; this one
    /// deleted nothing and leaves the work to it.
    Elsewhere,
}

/// A change committed to a store that several replicas share, as the store
/// reports it to each of them (see [`PostgresStore::watch_changes`]). A store
/// only one process uses reports nothing: that process made every change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChange {
    /// The breakpoint state (breakpoints, sessions or signing keys) moved to `version`.
    Breakpoints { version: u64 },
    /// Snapshots were stored, up to position `seq`.
    Snapshots { seq: i64 },
}

/// Everything the control plane keeps. Times are unix milliseconds.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>>;
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()>;
    /// Retires every unretired key other than `keep` (the caller bumps the
    /// breakpoint version so agents get the new key list).
    async fn retire_signing_keys_except(&self, keep: &str, at: i64) -> StoreResult<()>;
    /// Bumps the breakpoint version (agents are sent their set again).
    async fn bump_breakpoint_version(&self) -> StoreResult<u64>;

    async fn token_count(&self) -> StoreResult<u64>;
    async fn insert_token(&self, token: &ApiTokenRecord) -> StoreResult<()>;
    async fn get_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>>;
    async fn list_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>>;
    /// Marks a token revoked; returns it, or `None` if there is no such token.
    async fn revoke_token(&self, id: &str, at: i64) -> StoreResult<Option<ApiTokenRecord>>;

    /// Inserts or replaces an instance and its whole probe catalogue.
    async fn register_instance(&self, record: &InstanceRecord, probes: &[ProbeSite]) -> StoreResult<()>;
    async fn get_instance(&self, agent_id: &str) -> StoreResult<Option<InstanceRecord>>;
    async fn list_instances(&self) -> StoreResult<Vec<InstanceRecord>>;
    /// Every instance's probes, of one service or (with `None`) of all.
    async fn list_probes(&self, service: Option<&str>) -> StoreResult<Vec<ServiceProbeRecord>>;

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// Closes a session and bumps the breakpoint version (its breakpoints stop
    /// being sent). Returns the session, or `None` if there is no such session.
    async fn close_session(&self, id: &str, at: i64) -> StoreResult<Option<SessionRecord>>;

    /// The version of the breakpoint state; it grows with every change.
    async fn breakpoint_version(&self) -> StoreResult<u64>;
    /// Stores a new breakpoint; returns the new breakpoint version.
    async fn insert_breakpoint(&self, breakpoint: &Breakpoint) -> StoreResult<u64>;
    async fn get_breakpoint(&self, id: &str) -> StoreResult<Option<Breakpoint>>;
    /// All breakpoints, newest first, deleted ones included.
    async fn list_breakpoints(&self) -> StoreResult<Vec<Breakpoint>>;
    /// Marks a breakpoint deleted; returns it, or `None` if there is no such
    /// breakpoint or it was already deleted.
    async fn delete_breakpoint(&self, id: &str, at: i64) -> StoreResult<Option<Breakpoint>>;
    /// The breakpoints to send to agents of `service` at `now`: not deleted, not
    /// expired, and their session (if any) open and unexpired.
    async fn active_breakpoints(&self, service: &str, now: i64) -> StoreResult<Vec<Breakpoint>>;

    async fn upsert_status(&self, status: &InstanceStatus) -> StoreResult<()>;
    async fn statuses(&self, breakpoint_id: &str) -> StoreResult<Vec<InstanceStatus>>;
    /// Refusals of one breakpoint, summed over instances, by reason.
    async fn drop_counts(&self, breakpoint_id: &str) -> StoreResult<Vec<DropCount>>;

    /// Stores `upload` in one transaction, durably, before returning: its
    /// snapshots (ids already stored are skipped), its drop counts (added to
    /// the instance's), and the instance's last-seen time (which never moves
    /// back). Stores nothing and returns `None` when `upload.agent_id` is not
    /// registered with `upload.service`.
    async fn store_upload(&self, upload: Upload) -> StoreResult<Option<IngestOutcome>>;
    /// Stores a batch in one transaction, durably, before returning. Snapshot
    /// ids already stored are skipped.
    async fn insert_snapshots(&self, snapshots: &[Snapshot]) -> StoreResult<IngestOutcome>;
    async fn get_snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>>;
    /// Newest first, at most `limit`.
    async fn list_snapshots(&self, filter: &SnapshotFilter, limit: u32) -> StoreResult<Vec<Snapshot>>;
    /// Snapshots stored after position `after` (see [`Store::last_snapshot_seq`]),
    /// oldest first, at most `limit`, each with its position. A reader that
    /// moves `after` to the last position it read never misses a snapshot:
    /// none is ever stored behind a position this returned (on PostgreSQL,
    /// snapshots of a batch still in flight, and of batches that began after
    /// it, are held back until it ends).
    async fn snapshots_after(&self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Snapshot)>>;
    /// The position of the newest snapshot [`Store::snapshots_after`] can
    /// return now: a reader starting from it reads everything stored later.
    async fn last_snapshot_seq(&self) -> StoreResult<i64>;

    /// Deletes at most `limit` of the snapshots received before `cutoff`, oldest first.
    async fn delete_snapshots_received_before(&self, cutoff: i64, limit: u32) -> StoreResult<Pruned>;
    /// Deletes at most `limit` of the snapshots that are not among the newest
    /// `keep` of their breakpoint, oldest first.
    async fn delete_snapshots_beyond(&self, keep: u32, limit: u32) -> StoreResult<Pruned>;

    /// Appends an entry to the audit log, durably, before returning.
    async fn insert_audit(&self, entry: &AuditRecord) -> StoreResult<()>;
    /// Audit entries matching `filter`, newest first, at most `limit`.
    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditRecord>>;
}
