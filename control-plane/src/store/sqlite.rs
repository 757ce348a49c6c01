//! The embedded SQLite backend: one file under the data directory, WAL
//! journal and `synchronous = FULL`, so a committed batch survives a crash
//! (of the process, and of the machine) and an ack is only sent for what is
//! on disk.
//!
//! Every write goes through one connection and waits its turn for it in the
//! pool's queue; reads have connections of their own, which WAL lets read
//! while the writer writes. SQLite takes one writer at a time anyway: with
//! several writing connections, the losers of each race for its lock sleep
//! in the busy handler (up to 100 ms a nap), which made the tail of upload
//! latency. Uploads queue for a writer task that writes those waiting
//! together ([`uploads`]).

mod uploads;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use keyhole_proto::v1::{Breakpoint, DropCount, InstanceStatus, ProbeSite, Snapshot, SnapshotFilter};
use prost::Message;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool};

use uploads::{insert_rows, Uploads};

use super::rows::{
    audit_from_row, breakpoint_from_row, decode, delete_beyond_query, delete_received_before_query,
    insert_audit_query, instance_from_row, list_audit_query, list_snapshots_query, migrator,
    readable_snapshots, service_probe_from_row, session_from_row, signing_key_from_row, token_from_row,
    EmbeddedMigration,
};
use super::{
    ApiTokenRecord, AuditFilter, AuditRecord, IngestOutcome, InstanceRecord, Pruned, ServiceProbeRecord,
    SessionRecord, SigningKeyRecord, SnapshotRow, Store, StoreError, StoreResult, Upload,
};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "keyhole.db";
/// Connections that read.
const READERS: u32 = 8;
/// How long a write waits for the writing connection, or a writer of another
/// process for the lock, before failing.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

const MIGRATIONS: &[EmbeddedMigration] = &[
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "audit", include_str!("../../migrations/sqlite/0002_audit.sql")),
    (
        3,
        "retention",
        include_str!("../../migrations/sqlite/0003_retention.sql"),
    ),
];

pub struct SqliteStore {
    /// One connection: every write.
    writer: SqlitePool,
    readers: SqlitePool,
    uploads: Uploads,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and migrates it.
    pub async fn open(data_dir: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(data_dir.join(DATABASE_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(WRITE_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(WRITE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        migrator(MIGRATIONS)
            .run(&writer)
            .await
            .map_err(|e| StoreError(format!("migrating the database failed: {e}")))?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        Ok(Self {
            uploads: Uploads::start(writer.clone()),
            writer,
            readers,
        })
    }
}

const BUMP_VERSION: &str =
    "UPDATE meta SET value = value + 1 WHERE key = 'breakpoint_version' RETURNING value";

#[async_trait]
impl Store for SqliteStore {
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        let rows = sqlx::query(
            "SELECT key_id, secret, created_at, retired_at FROM signing_keys ORDER BY created_at",
        )
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (key_id, secret, created_at, retired_at) VALUES (?, ?, ?, ?)")
            .bind(&key.key_id)
            .bind(key.secret.as_slice())
            .bind(key.created_at)
            .bind(key.retired_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn retire_signing_keys_except(&self, keep: &str, at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE key_id <> ? AND retired_at IS NULL")
            .bind(at)
            .bind(keep)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn bump_breakpoint_version(&self) -> StoreResult<u64> {
        let version: i64 = sqlx::query_scalar(BUMP_VERSION).fetch_one(&self.writer).await?;
        Ok(version.max(0) as u64)
    }

    async fn token_count(&self) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
            .fetch_one(&self.readers)
            .await?;
        Ok(count.max(0) as u64)
    }

    async fn insert_token(&self, token: &ApiTokenRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, secret_hash, creator, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&token.id)
        .bind(&token.name)
        .bind(token.role.as_str())
        .bind(&token.secret_hash)
        .bind(&token.creator)
        .bind(token.created_at)
        .bind(token.revoked_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
        sqlx::query("SELECT * FROM api_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn list_tokens(&self) -> StoreResult<Vec<ApiTokenRecord>> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: i64) -> StoreResult<Option<ApiTokenRecord>> {
        sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.writer)
            .await?;
        self.get_token(id).await
    }

    async fn register_instance(&self, record: &InstanceRecord, probes: &[ProbeSite]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        let instance = &record.instance;
        sqlx::query(
            "INSERT INTO instances (agent_id, service, last_seen, body) VALUES (?, ?, ?, ?) \
             ON CONFLICT (agent_id) DO UPDATE SET service = excluded.service, \
             last_seen = excluded.last_seen, body = excluded.body",
        )
        .bind(&instance.agent_id)
        .bind(&record.service)
        .bind(instance.last_seen_unix_ms)
        .bind(instance.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM probes WHERE agent_id = ?")
            .bind(&instance.agent_id)
            .execute(&mut *tx)
            .await?;
        for probe in probes {
            sqlx::query("INSERT OR REPLACE INTO probes (agent_id, label, body) VALUES (?, ?, ?)")
                .bind(&instance.agent_id)
                .bind(&probe.label)
                .bind(probe.encode_to_vec())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_instance(&self, agent_id: &str) -> StoreResult<Option<InstanceRecord>> {
        sqlx::query("SELECT * FROM instances WHERE agent_id = ?")
            .bind(agent_id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(instance_from_row)
            .transpose()
    }

    async fn list_instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY service, agent_id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn list_probes(&self, service: Option<&str>) -> StoreResult<Vec<ServiceProbeRecord>> {
        let rows = sqlx::query(
            "SELECT i.service, p.agent_id, p.body FROM probes p JOIN instances i ON i.agent_id = p.agent_id \
             WHERE ?1 IS NULL OR i.service = ?1 ORDER BY i.service, p.label, p.agent_id",
        )
        .bind(service)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(service_probe_from_row).collect()
    }

    async fn insert_session(&self, session: &SessionRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, name, creator, key_id, created_at, expires_at, closed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.id)
        .bind(&session.name)
        .bind(&session.creator)
        .bind(&session.key_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.closed_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_session(&self, id: &str) -> StoreResult<Option<SessionRecord>> {
        sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        let rows = sqlx::query("SELECT * FROM sessions ORDER BY created_at DESC, id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(session_from_row).collect()
    }

    async fn close_session(&self, id: &str, at: i64) -> StoreResult<Option<SessionRecord>> {
        let mut tx = self.writer.begin().await?;
        let closed = sqlx::query("UPDATE sessions SET closed_at = ? WHERE id = ? AND closed_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if closed.rows_affected() > 0 {
            sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.get_session(id).await
    }

    async fn breakpoint_version(&self) -> StoreResult<u64> {
        let version: i64 = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'breakpoint_version'")
            .fetch_one(&self.readers)
            .await?;
        Ok(version.max(0) as u64)
    }

    async fn insert_breakpoint(&self, breakpoint: &Breakpoint) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO breakpoints (id, service, session_id, created_at, expires_at, deleted_at, body) \
             VALUES (?, ?, ?, ?, ?, NULL, ?)",
        )
        .bind(&breakpoint.id)
        .bind(&breakpoint.service)
        .bind(&breakpoint.session_id)
        .bind(breakpoint.created_at_unix_ms)
        .bind(breakpoint.expires_at_unix_ms)
        .bind(breakpoint.encode_to_vec())
        .execute(&mut *tx)
        .await?;
        let version: i64 = sqlx::query_scalar(BUMP_VERSION).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(version.max(0) as u64)
    }

    async fn get_breakpoint(&self, id: &str) -> StoreResult<Option<Breakpoint>> {
        sqlx::query("SELECT body, deleted_at FROM breakpoints WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(breakpoint_from_row)
            .transpose()
    }

    async fn list_breakpoints(&self) -> StoreResult<Vec<Breakpoint>> {
        let rows = sqlx::query("SELECT body, deleted_at FROM breakpoints ORDER BY created_at DESC, id")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(breakpoint_from_row).collect()
    }

    async fn delete_breakpoint(&self, id: &str, at: i64) -> StoreResult<Option<Breakpoint>> {
        let mut tx = self.writer.begin().await?;
        let deleted =
            sqlx::query("UPDATE breakpoints SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if deleted.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query(BUMP_VERSION).execute(&mut *tx).await?;
        tx.commit().await?;
        self.get_breakpoint(id).await
    }

    async fn active_breakpoints(&self, service: &str, now: i64) -> StoreResult<Vec<Breakpoint>> {
        let rows = sqlx::query(
            "SELECT b.body, b.deleted_at FROM breakpoints b LEFT JOIN sessions s ON s.id = b.session_id \
             WHERE b.service = ?1 AND b.deleted_at IS NULL AND b.expires_at > ?2 \
             AND (b.session_id = '' OR (s.closed_at IS NULL AND s.expires_at > ?2)) \
             ORDER BY b.created_at, b.id",
        )
        .bind(service)
        .bind(now)
        .fetch_all(&self.readers)
        .await?;
        rows.iter().map(breakpoint_from_row).collect()
    }

    async fn upsert_status(&self, status: &InstanceStatus) -> StoreResult<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO breakpoint_status (breakpoint_id, agent_id, body) VALUES (?, ?, ?)",
        )
        .bind(&status.breakpoint_id)
        .bind(&status.agent_id)
        .bind(status.encode_to_vec())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn statuses(&self, breakpoint_id: &str) -> StoreResult<Vec<InstanceStatus>> {
        let rows =
            sqlx::query("SELECT body FROM breakpoint_status WHERE breakpoint_id = ? ORDER BY agent_id")
                .bind(breakpoint_id)
                .fetch_all(&self.readers)
                .await?;
        rows.iter().map(|row| decode(row, "body")).collect()
    }

    async fn drop_counts(&self, breakpoint_id: &str) -> StoreResult<Vec<DropCount>> {
        let rows = sqlx::query(
            "SELECT reason, SUM(count) AS total FROM drop_counts WHERE breakpoint_id = ? \
             GROUP BY reason ORDER BY reason",
        )
        .bind(breakpoint_id)
        .fetch_all(&self.readers)
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
        self.uploads.store(upload).await
    }

    async fn insert_snapshots(&self, snapshots: &[Snapshot]) -> StoreResult<IngestOutcome> {
        let rows: Vec<SnapshotRow> = snapshots.iter().map(SnapshotRow::of).collect();
        let mut tx = self.writer.begin().await?;
        let outcome = insert_rows(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn get_snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>> {
        sqlx::query("SELECT body FROM snapshots WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.readers)
            .await?
            .as_ref()
            .map(|row| decode(row, "body"))
            .transpose()
    }

    async fn list_snapshots(&self, filter: &SnapshotFilter, limit: u32) -> StoreResult<Vec<Snapshot>> {
        let mut query = list_snapshots_query::<Sqlite>(filter, limit);
        let rows = query.build().fetch_all(&self.readers).await?;
        let listed = readable_snapshots(&rows)?;
        Ok(listed.into_iter().map(|(_, snapshot)| snapshot).collect())
    }

    async fn snapshots_after(&self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Snapshot)>> {
        let rows = sqlx::query("SELECT seq, body FROM snapshots WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        readable_snapshots(&rows)
    }

    async fn last_snapshot_seq(&self) -> StoreResult<i64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM snapshots")
            .fetch_one(&self.readers)
            .await?;
        Ok(seq.unwrap_or(0))
    }

    // One process owns the file: nobody else deletes at the same time.
    async fn delete_snapshots_received_before(&self, cutoff: i64, limit: u32) -> StoreResult<Pruned> {
        let mut query = delete_received_before_query::<Sqlite>(cutoff, limit);
        let deleted = query.build().execute(&self.writer).await?;
        Ok(Pruned::Deleted(deleted.rows_affected()))
    }

    async fn delete_snapshots_beyond(&self, keep: u32, limit: u32) -> StoreResult<Pruned> {
        let mut query = delete_beyond_query::<Sqlite>(keep, limit);
        let deleted = query.build().execute(&self.writer).await?;
        Ok(Pruned::Deleted(deleted.rows_affected()))
    }

    async fn insert_audit(&self, entry: &AuditRecord) -> StoreResult<()> {
        let mut query = insert_audit_query::<Sqlite>(entry);
        query.build().execute(&self.writer).await?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let mut query = list_audit_query::<Sqlite>(filter, limit);
        let rows = query.build().fetch_all(&self.readers).await?;
        rows.iter().map(audit_from_row).collect()
    }
}
