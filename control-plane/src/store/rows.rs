//! What both SQL backends share: turning a row into a record (the schemas
//! name their columns alike), the one query built at run time, and a migrator
//! for migrations embedded in the binary.

use std::borrow::Cow;

use keyhole_proto::v1::{Breakpoint, DropCount, Instance, Snapshot, SnapshotFilter};
use prost::Message;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::{
    ApiTokenRecord, AuditFilter, AuditRecord, InstanceRecord, ServiceProbeRecord, SessionRecord,
    SigningKeyRecord, StoreError, StoreResult, Upload,
};

/// A migration compiled into the binary: version, name, SQL.
pub(super) type EmbeddedMigration = (i64, &'static str, &'static str);

/// A migrator for `migrations`, which need no files at run time.
pub(super) fn migrator(migrations: &'static [EmbeddedMigration]) -> Migrator {
    Migrator {
        migrations: Cow::Owned(
            migrations
                .iter()
                .map(|(version, name, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(name),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect(),
        ),
        ..Migrator::DEFAULT
    }
}

/// The query of [`super::Store::list_snapshots`]: positions and bodies of the snapshots
/// matching every non-empty field of `filter`, newest first, at most `limit`.
pub(super) fn list_snapshots_query<'a, DB>(filter: &'a SnapshotFilter, limit: u32) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT seq, body FROM snapshots WHERE 1 = 1");
    for (column, value) in [
        ("session_id", &filter.session_id),
        ("breakpoint_id", &filter.breakpoint_id),
        ("service", &filter.service),
        ("trace_id", &filter.trace_id),
    ] {
        if !value.is_empty() {
            query
                .push(format_args!(" AND {column} = "))
                .push_bind(value.as_str());
        }
    }
    query
        .push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(limit));
    query
}

/// The statement that marks `upload`'s instance seen at the upload's time
/// (never earlier than it was), if it is registered with the upload's service.
pub(super) fn touch_instance_query<'a, DB>(upload: &'a Upload) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("UPDATE instances SET last_seen = CASE WHEN last_seen < ");
    query
        .push_bind(upload.at)
        .push(" THEN ")
        .push_bind(upload.at)
        .push(" ELSE last_seen END WHERE agent_id = ")
        .push_bind(upload.agent_id.as_str())
        .push(" AND service = ")
        .push_bind(upload.service.as_str());
    query
}

/// The statement that adds `drop` to `agent_id`'s count of its breakpoint and reason.
pub(super) fn add_drop_count_query<'a, DB>(agent_id: &'a str, drop: &'a DropCount) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i32: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("INSERT INTO drop_counts (agent_id, breakpoint_id, reason, count) ");
    query.push_values([drop], |mut values, drop| {
        values
            .push_bind(agent_id)
            .push_bind(drop.breakpoint_id.as_str())
            .push_bind(drop.reason)
            .push_bind(i64::try_from(drop.count).unwrap_or(i64::MAX));
    });
    query.push(
        " ON CONFLICT (agent_id, breakpoint_id, reason) \
         DO UPDATE SET count = drop_counts.count + excluded.count",
    );
    query
}

/// The statement of [`super::Store::delete_snapshots_received_before`].
pub(super) fn delete_received_before_query<'a, DB>(cutoff: i64, limit: u32) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "DELETE FROM snapshots WHERE seq IN (SELECT seq FROM snapshots WHERE received_at < ",
    );
    query
        .push_bind(cutoff)
        .push(" ORDER BY received_at, seq LIMIT ")
        .push_bind(i64::from(limit))
        .push(")");
    query
}

/// The statement of [`super::Store::delete_snapshots_beyond`]: ranks each
/// breakpoint's snapshots newest first and deletes the oldest of those ranked
/// past `keep`. Snapshots stored meanwhile rank before all of these, so a
/// snapshot once past `keep` stays past it.
pub(super) fn delete_beyond_query<'a, DB>(keep: u32, limit: u32) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "DELETE FROM snapshots WHERE seq IN (SELECT seq FROM (\
         SELECT seq, ROW_NUMBER() OVER (PARTITION BY breakpoint_id ORDER BY seq DESC) AS newer \
         FROM snapshots) ranked WHERE newer > ",
    );
    query
        .push_bind(i64::from(keep))
        .push(" ORDER BY seq LIMIT ")
        .push_bind(i64::from(limit))
        .push(")");
    query
}

/// The statement of [`super::Store::insert_audit`].
pub(super) fn insert_audit_query<'a, DB>(entry: &'a AuditRecord) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(
        "INSERT INTO audit_log (at, action, actor_name, token_id, address, target, detail) VALUES (",
    );
    let mut values = query.separated(", ");
    values.push_bind(entry.at);
    for text in [
        &entry.action,
        &entry.actor_name,
        &entry.token_id,
        &entry.address,
        &entry.target,
        &entry.detail,
    ] {
        values.push_bind(text.as_str());
    }
    query.push(")");
    query
}

/// The query of [`super::Store::list_audit`]: entries matching every set
/// field of `filter`, newest first, at most `limit`.
pub(super) fn list_audit_query<'a, DB>(filter: &'a AuditFilter, limit: u32) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT * FROM audit_log WHERE 1 = 1");
    if let Some(action) = &filter.action {
        query.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(actor) = &filter.actor {
        query
            .push(" AND (actor_name = ")
            .push_bind(actor.as_str())
            .push(" OR token_id = ")
            .push_bind(actor.as_str())
            .push(")");
    }
    if let Some(since) = filter.since {
        query.push(" AND at >= ").push_bind(since);
    }
    query
        .push(" ORDER BY seq DESC LIMIT ")
        .push_bind(i64::from(limit));
    query
}

/// The column types records are made of, read by name from a row of either backend.
pub(super) trait Columns {
    fn text(&self, column: &str) -> StoreResult<String>;
    fn int(&self, column: &str) -> StoreResult<i64>;
    fn optional_int(&self, column: &str) -> StoreResult<Option<i64>>;
    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>>;
}

impl<R> Columns for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> StoreResult<String> {
        Ok(self.try_get(column)?)
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        Ok(self.try_get(column)?)
    }

    fn optional_int(&self, column: &str) -> StoreResult<Option<i64>> {
        Ok(self.try_get(column)?)
    }

    fn bytes(&self, column: &str) -> StoreResult<Vec<u8>> {
        Ok(self.try_get(column)?)
    }
}

/// The protocol message stored whole in `column`.
pub(super) fn decode<M: Message + Default>(row: &impl Columns, column: &str) -> StoreResult<M> {
    Ok(M::decode(row.bytes(column)?.as_slice())?)
}

/// The snapshots stored in `rows` (a `seq` and a `body` each), with their
/// positions, in the order read. Snapshots are stored as agents sent them
/// (see `crate::ingest`): one that does not decode is logged and passed
/// over, and hides no other from lists and watchers.
pub(super) fn readable_snapshots<R: Columns>(rows: &[R]) -> StoreResult<Vec<(i64, Snapshot)>> {
    let mut snapshots = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.int("seq")?;
        match Snapshot::decode(row.bytes("body")?.as_slice()) {
            Ok(snapshot) => snapshots.push((seq, snapshot)),
            Err(error) => tracing::warn!(
                position = seq,
                %error,
                "a stored snapshot does not decode; it is left out of lists and watches"
            ),
        }
    }
    Ok(snapshots)
}

pub(super) fn signing_key_from_row(row: &impl Columns) -> StoreResult<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        key_id: row.text("key_id")?,
        secret: row
            .bytes("secret")?
            .try_into()
            .map_err(|_| StoreError("stored signing key is not 32 bytes".into()))?,
        created_at: row.int("created_at")?,
        retired_at: row.optional_int("retired_at")?,
    })
}

pub(super) fn session_from_row(row: &impl Columns) -> StoreResult<SessionRecord> {
    Ok(SessionRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        creator: row.text("creator")?,
        key_id: row.text("key_id")?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        closed_at: row.optional_int("closed_at")?,
    })
}

pub(super) fn token_from_row(row: &impl Columns) -> StoreResult<ApiTokenRecord> {
    let role = row.text("role")?;
    Ok(ApiTokenRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        role: role
            .parse()
            .map_err(|_| StoreError(format!("stored token has unknown role {role:?}")))?,
        secret_hash: row.bytes("secret_hash")?,
        creator: row.text("creator")?,
        created_at: row.int("created_at")?,
        revoked_at: row.optional_int("revoked_at")?,
    })
}

/// A stored breakpoint, with the deletion time kept in its own column.
pub(super) fn breakpoint_from_row(row: &impl Columns) -> StoreResult<Breakpoint> {
    let mut breakpoint: Breakpoint = decode(row, "body")?;
    breakpoint.deleted_at_unix_ms = row.optional_int("deleted_at")?.unwrap_or(0);
    Ok(breakpoint)
}

pub(super) fn instance_from_row(row: &impl Columns) -> StoreResult<InstanceRecord> {
    let mut instance: Instance = decode(row, "body")?;
    instance.last_seen_unix_ms = row.int("last_seen")?;
    Ok(InstanceRecord {
        service: row.text("service")?,
        instance,
    })
}

pub(super) fn service_probe_from_row(row: &impl Columns) -> StoreResult<ServiceProbeRecord> {
    Ok(ServiceProbeRecord {
        service: row.text("service")?,
        agent_id: row.text("agent_id")?,
        probe: decode(row, "body")?,
    })
}

pub(super) fn audit_from_row(row: &impl Columns) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        seq: row.int("seq")?,
        at: row.int("at")?,
        action: row.text("action")?,
        actor_name: row.text("actor_name")?,
        token_id: row.text("token_id")?,
        address: row.text("address")?,
        target: row.text("target")?,
        detail: row.text("detail")?,
    })
}
