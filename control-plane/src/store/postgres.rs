//! The PostgreSQL backend, for several control-plane replicas on one
//! database. Same semantics as SQLite; in addition, every change agents must
//! learn about is announced with `pg_notify` in the transaction that makes
//! it, so each replica hears of it on commit (see [`listener`]).

mod listener;
mod retention;
pub(super) mod snapshots;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keyhole_proto::v1::{Breakpoint, DropCount, InstanceStatus, ProbeSite, Snapshot, SnapshotFilter};
use prost::Message;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, PgExecutor, PgPool, Postgres, Row};
use tokio::sync::mpsc;

use super::rows::{
    audit_from_row, breakpoint_from_row, decode, delete_beyond_query, delete_received_before_query,
    insert_audit_query, instance_from_row, list_audit_query, list_snapshots_query, migrator,
    readable_snapshots, service_probe_from_row, session_from_row, signing_key_from_row, token_from_row,
    EmbeddedMigration,
};
use super::{
    ApiTokenRecord, AuditFilter, AuditRecord, IngestOutcome, InstanceRecord, Pruned, ServiceProbeRecord,
    SessionRecord, SigningKeyRecord, SnapshotRow, Store, StoreChange, StoreError, StoreResult, Upload,
};

/// Connections in each replica's pool (PostgreSQL allows 100 by default, for every replica together).
const MAX_CONNECTIONS: u32 = 10;
/// How long connecting to the database, or waiting for a free connection, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The `NOTIFY` channel of breakpoint version bumps; the payload is the new version.
const BREAKPOINTS_CHANNEL: &str = "keyhole_breakpoints";
/// The `NOTIFY` channel of stored snapshots; the payload is the newest position.
const SNAPSHOTS_CHANNEL: &str = "keyhole_snapshots";
/// How each replica's query connections name themselves to PostgreSQL
/// (in `pg_stat_activity`), unless the URL names them otherwise.
const APPLICATION_NAME: &str = "keyhole";
/// How each replica's listening connection names itself to PostgreSQL.
pub(super) const LISTENER_APPLICATION_NAME: &str = "keyhole-listener";

pub(super) const MIGRATIONS: &[EmbeddedMigration] = &[
    (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
    (
        2,
        "audit",
        include_str!("../../migrations/postgres/0002_audit.sql"),
    ),
    (
        3,
        "retention",
        include_str!("../../migrations/postgres/0003_retention.sql"),
    ),
    (
        4,
        "snapshot positions",
        include_str!("../../migrations/postgres/0004_snapshot_positions.sql"),
    ),
];

/// Reads the breakpoint version.
const READ_VERSION: &str = "SELECT value FROM meta WHERE key = 'breakpoint_version'";

/// Bumps the breakpoint version and announces it on the channel bound as `$1`
/// (PostgreSQL delivers the notification when the transaction commits, and
/// not at all if it rolls back).
const BUMP_VERSION: &str = "WITH bumped AS (\
     UPDATE meta SET value = value + 1 WHERE key = 'breakpoint_version' RETURNING value) \
     SELECT value, pg_notify($1, value::text) FROM bumped";

pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    location: String,
    /// Positions each transaction has for its snapshots (see [`snapshots`]).
    pub(super) positions_per_transaction: usize,
}

/// Where `options` point, as `postgres://user@host:port/database`: never the password.
fn location(options: &PgConnectOptions) -> String {
    let host = match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => options.get_host().to_owned(),
    };
    format!(
        "postgres://{}@{host}:{}/{}",
        options.get_username(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

async fn bump_version(executor: impl PgExecutor<'_>) -> StoreResult<u64> {
    let version: i64 = sqlx::query_scalar(BUMP_VERSION)
        .bind(BREAKPOINTS_CHANNEL)
        .fetch_one(executor)
        .await?;
    Ok(version.max(0) as u64)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`)
    /// and migrates it. Errors name the database without its password.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError(
                "the database URL must start with postgres:// (e.g. postgres://user:password@host:5432/keyhole); \
                 without one the server keeps its data in SQLite in its data directory"
                    .into(),
            ));
        }
        // The parser's messages describe the fault, never quote the URL.
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError(format!(
                "the database URL does not parse: {e}; write it as postgres://user:password@host:5432/database"
            ))
        })?;
        Self::connect_with(options).await
    }

    /// Connects to the database `options` describe and migrates it.
    pub(super) async fn connect_with(mut options: PgConnectOptions) -> StoreResult<Self> {
        if options.get_application_name().is_none() {
            options = options.application_name(APPLICATION_NAME);
        }
        // Notices ("relation _sqlx_migrations already exists, skipping" on
        // every start) are not worth the operator's attention; warnings are.
        options = options.options([("client_min_messages", "warning")]);
        let location = location(&options);
        let unreachable = |reason: String| {
            StoreError(format!(
                "cannot connect to the database at {location}: {reason}; check that PostgreSQL runs there \
                 and that the user, password and database are right"
            ))
        };
        // One connection first, so a refusal is reported as it is rather than
        // as a pool that timed out retrying it.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The migrator holds an advisory lock: replicas starting together migrate once.
        migrator(MIGRATIONS)
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("migrating the database at {location} failed: {e}")))?;
        let positions: i64 = sqlx::query_scalar(snapshots::READ_POSITIONS_PER_TRANSACTION)
            .fetch_one(&pool)
            .await?;
        Ok(Self {
            pool,
            options,
            location,
            positions_per_transaction: usize::try_from(positions).unwrap_or(0),
        })
    }

    /// The database, as `postgres://user@host:port/database` (no password).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Follows every change any replica commits to this database (this one
    /// included) on a connection of its own, until the receiver is dropped.
    /// After each (re)connection it first reports the current versions, so
    /// what was committed while it was not listening is not missed.
    pub fn watch_changes(&self) -> mpsc::Receiver<StoreChange> {
        let options = self.options.clone().application_name(LISTENER_APPLICATION_NAME);
        listener::spawn(options, self.location.clone())
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT key_id, secret, created_at, retired_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (key_id, secret, created_at, retired_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.key_id)
        .bind(key.secret.as_slice())
        .bind(key.created_at)
        .bind(key.retired_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn retire_signing_keys_except(&self, keep: &str, at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE key_id <> $2 AND retired_at IS NULL")
            .bind(at)
            .bind(keep)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn bump_breakpoint_version(&self) -> StoreResult<u64> {
        bump_version(&self.pool).await
    }

    async fn token_count(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.pool)
            .await?;
        Ok(count.max(0) as u64)
    }

    async fn insert_token(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, secret_hash, creator, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(&token.secret_hash)
        .bind(&token.creator)
        .bind(token.created_at)
        .bind(token.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
        sqlx::query("SELECT * FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn list_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: i64) -> StoreResult<Option<ApiTokenRecord>> {
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_token(id).await
    }

    async fn register_instance(&self, record: &InstanceRecord, probes: &[ProbeSite]) -> StoreResult<()> {
        // One row per label, the last of equal labels winning, as SQLite's INSERT OR REPLACE does.
        let by_label: BTreeMap<&str, Vec<u8>> = probes
            .iter()
            .map(|probe| (probe.label.as_str(), probe.encode_to_vec()))
            .collect();
        let (labels, bodies): (Vec<&str>, Vec<Vec<u8>>) = by_label.into_iter().unzip();
        let instance = &record.instance;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO instances (agent_id, service, last_seen, body) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (agent_id) DO UPDATE SET service = EXCLUDED.service, \
             last_seen = EXCLUDED.last_seen, body = EXCLUDED.body",
        )
        .bind(&instance.agent_id)
        .bind(&record.service)
        .bind(instance.last_seen_unix_ms)
        .bind(instance.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM probes WHERE agent_id = $1")
            .bind(&instance.agent_id)
            .execute(&mut *tx)
            .await?;
        // The whole catalogue in one statement: an instance may register thousands of probes.
        sqlx::query(
            "INSERT INTO probes (agent_id, label, body) \
             SELECT $1, label, body FROM UNNEST($2::text[], $3::bytea[]) AS catalogue (label, body)",
        )
        .bind(&instance.agent_id)
        .bind(labels)
        .bind(bodies)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_instance(&self, agent_id: &str) -> StoreResult<Option<InstanceRecord>> {
        sqlx::query("SELECT * FROM instances WHERE agent_id = $1")
            .bind(agent_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(instance_from_row)
            .transpose()
    }

    async fn list_instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY service, agent_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn list_probes(&self, service: Option<&str>) -> StoreResult<Vec<ServiceProbeRecord>> {
        let rows = sqlx::query(
            "SELECT i.service, p.agent_id, p.body FROM probes p JOIN instances i ON i.agent_id = p.agent_id \
             WHERE $1::text IS NULL OR i.service = $1 ORDER BY i.service, p.label, p.agent_id",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(service_probe_from_row).collect()
    }

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, name, creator, key_id, created_at, expires_at, closed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&session.id)
        .bind(&session.name)
        .bind(&session.creator)
        .bind(&session.key_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.closed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query("SELECT * FROM sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query("SELECT * FROM sessions ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn close_session(&self, id: &str, at: i64) -> StoreResult<Option<SessionRecord>> {
        let mut tx = self.pool.begin().await?;
        let closed = sqlx::query("UPDATE sessions SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if closed.rows_affected() > 0 {
            bump_version(&mut *tx).await?;
        }
        tx.commit().await?;
        self.get_session(id).await
    }

    async fn breakpoint_version(&self) -> StoreResult<u64> {
        let version: i64 = sqlx::query_scalar(READ_VERSION).fetch_one(&self.pool).await?;
        Ok(version.max(0) as u64)
    }

    async fn insert_breakpoint(&self, breakpoint: &Breakpoint) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO breakpoints (id, service, session_id, created_at, expires_at, deleted_at, body) \
             VALUES ($1, $2, $3, $4, $5, NULL, $6)",
        )
        .bind(&breakpoint.id)
        .bind(&breakpoint.service)
        .bind(&breakpoint.session_id)
        .bind(breakpoint.created_at_unix_ms)
        .bind(breakpoint.expires_at_unix_ms)
        .bind(breakpoint.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut *tx).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn get_breakpoint(&self, id: &str) -> StoreResult<Option<Breakpoint>> {
        sqlx::query("SELECT body, deleted_at FROM breakpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(breakpoint_from_row)
            .transpose()
    }

    async fn list_breakpoints(&self) -> StoreResult<Vec<Breakpoint>> {
        let rows = sqlx::query("SELECT body, deleted_at FROM breakpoints ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(breakpoint_from_row).collect()
    }

    async fn delete_breakpoint(&self, id: &str, at: i64) -> StoreResult<Option<Breakpoint>> {
        let mut tx = self.pool.begin().await?;
        let deleted =
            sqlx::query("UPDATE breakpoints SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if deleted.rows_affected() == 0 {
            return Ok(None);
        }
        bump_version(&mut *tx).await?;
        tx.commit().await?;
        self.get_breakpoint(id).await
    }

    async fn active_breakpoints(&self, service: &str, now: i64) -> StoreResult<Vec<Breakpoint>> {
        let rows = sqlx::query(
            "SELECT b.body, b.deleted_at FROM breakpoints b LEFT JOIN sessions s ON s.id = b.session_id \
             WHERE b.service = $1 AND b.deleted_at IS NULL AND b.expires_at > $2 \
             AND (b.session_id = '' OR (s.closed_at IS NULL AND s.expires_at > $2)) \
             ORDER BY b.created_at, b.id",
        )
        .bind(service)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(breakpoint_from_row).collect()
    }

    async fn upsert_status(&self, status: &InstanceStatus) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO breakpoint_status (breakpoint_id, agent_id, body) VALUES ($1, $2, $3) \
             ON CONFLICT (breakpoint_id, agent_id) DO UPDATE SET body = EXCLUDED.body",
        )
        .bind(&status.breakpoint_id)
        .bind(&status.agent_id)
        .bind(status.encode_to_vec())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn statuses(&self, breakpoint_id: &str) -> StoreResult<Vec<InstanceStatus>> {
        let rows =
            sqlx::query("SELECT body FROM breakpoint_status WHERE breakpoint_id = $1 ORDER BY agent_id")
                .bind(breakpoint_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|row| decode(row, "body")).collect()
    }

    async fn drop_counts(&self, breakpoint_id: &str) -> StoreResult<Vec<DropCount>> {
        // SUM of BIGINT is NUMERIC in PostgreSQL; the cast keeps it an i64.
        let rows = sqlx::query(
            "SELECT reason, SUM(count)::BIGINT AS total FROM drop_counts WHERE breakpoint_id = $1 \
             GROUP BY reason ORDER BY reason",
        )
        .bind(breakpoint_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let total: i64 = row.try_get("total")?;
                Ok(DropCount {
                    breakpoint_id: breakpoint_id.to_owned(),
                    reason: row.try_get("reason")?,
                    count: total.max(0) as u64,
                })
            })
            .collect()
    }

    async fn store_upload(&self, upload: Upload) -> StoreResult<Option<IngestOutcome>> {
        let mut tx = self.pool.begin().await?;
        let outcome = snapshots::store_upload(&mut tx, &upload, self.positions_per_transaction).await?;
        if outcome.is_some() {
            tx.commit().await?;
        }
        Ok(outcome)
    }

    async fn insert_snapshots(&self, snapshots: &[Snapshot]) -> StoreResult<IngestOutcome> {
        let rows: Vec<SnapshotRow> = snapshots.iter().map(SnapshotRow::of).collect();
        let mut tx = self.pool.begin().await?;
        let outcome = snapshots::insert_rows(&mut tx, &rows, self.positions_per_transaction).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn get_snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>> {
        sqlx::query("SELECT body FROM snapshots WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(|row| decode(row, "body"))
            .transpose()
    }

    async fn list_snapshots(&self, filter: &SnapshotFilter, limit: u32) -> StoreResult<Vec<Snapshot>> {
        let mut query = list_snapshots_query::<Postgres>(filter, limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        let listed = readable_snapshots(&rows)?;
        Ok(listed.into_iter().map(|(_, snapshot)| snapshot).collect())
    }

    async fn snapshots_after(&self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Snapshot)>> {
        let rows = sqlx::query(snapshots::READ_AFTER)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        readable_snapshots(&rows)
    }

    async fn last_snapshot_seq(&self) -> StoreResult<i64> {
        let seq: Option<i64> = sqlx::query_scalar(snapshots::READ_NEWEST_POSITION)
            .fetch_one(&self.pool)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    async fn delete_snapshots_received_before(&self, cutoff: i64, limit: u32) -> StoreResult<Pruned> {
        retention::prune(&self.pool, delete_received_before_query(cutoff, limit)).await
    }

    async fn delete_snapshots_beyond(&self, keep: u32, limit: u32) -> StoreResult<Pruned> {
        retention::prune(&self.pool, delete_beyond_query(keep, limit)).await
    }

    async fn insert_audit(&self, entry: &AuditRecord) -> StoreResult<()> {
        let mut query = insert_audit_query::<Postgres>(entry);
        query.build().execute(&self.pool).await?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let mut query = list_audit_query::<Postgres>(filter, limit);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
    }
}
