//! Snapshot ingest on the shared database, and reading snapshots in the
//! order of their positions without missing one that commits late.
//!
//! Replicas store batches concurrently, and a batch may commit after a batch
//! that began later. A position drawn from a sequence would then become
//! visible after higher ones a watcher may already have read past. So a
//! snapshot's position is derived from the id of the transaction that stores
//! it, and readers only read below the *horizon*: the positions of the oldest
//! transaction that may still commit (migration 0004 holds the arithmetic and
//! the argument). Batches never wait for each other; a watcher may wait for a
//! batch in flight before it reads those that began after it.

use sqlx::{PgConnection, Postgres};

use super::SNAPSHOTS_CHANNEL;
use crate::store::rows::{add_drop_count_query, touch_instance_query};
use crate::store::{IngestOutcome, SnapshotRow, StoreError, StoreResult, Upload};

/// Reads how many positions each transaction has (the migration chose it).
pub(super) const READ_POSITIONS_PER_TRANSACTION: &str =
    "SELECT value FROM meta WHERE key = 'positions_per_transaction'";
/// Reads the position of the newest snapshot below the horizon (NULL when there is none).
pub(super) const READ_NEWEST_POSITION: &str = "SELECT MAX(seq) FROM snapshots WHERE seq < snapshot_horizon()";
/// Reads the snapshots after position `$1` and below the horizon, oldest
/// first, at most `$2`. One statement: the horizon is that of the database
/// as the rows are read.
pub(super) const READ_AFTER: &str =
    "SELECT seq, body FROM snapshots WHERE seq > $1 AND seq < snapshot_horizon() ORDER BY seq LIMIT $2";

/// Stores `upload` in the transaction `tx` is in; `None` (and nothing
/// written) when the agent is not registered with the upload's service.
/// `positions` is the number of positions each transaction has.
pub(super) async fn store_upload(
    tx: &mut PgConnection,
    upload: &Upload,
    positions: usize,
) -> StoreResult<Option<IngestOutcome>> {
    let touched = touch_instance_query::<Postgres>(upload)
        .build()
        .execute(&mut *tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Ok(None);
    }
    let outcome = insert_rows(tx, &upload.snapshots, positions).await?;
    for drop in &upload.drops {
        let mut add = add_drop_count_query::<Postgres>(&upload.agent_id, drop);
        add.build().execute(&mut *tx).await?;
    }
    Ok(Some(outcome))
}

/// Stores `rows` in the transaction `tx` is in, in one statement; a
/// transaction may do this once, with fewer than `positions` rows (the
/// positions each transaction has).
pub(in crate::store) async fn insert_rows(
    tx: &mut PgConnection,
    rows: &[SnapshotRow],
    positions: usize,
) -> StoreResult<IngestOutcome> {
    if rows.is_empty() {
        return Ok(IngestOutcome::default());
    }
    if rows.len() >= positions {
        return Err(StoreError(format!(
            "{} snapshots in one transaction; the database has positions for {} at most",
            rows.len(),
            positions - 1
        )));
    }
    let column = |field: fn(&SnapshotRow) -> &str| rows.iter().map(field).collect::<Vec<_>>();
    let stored: Vec<i64> = sqlx::query_scalar(
        "WITH start AS (SELECT snapshot_positions_start() AS position) \
         INSERT INTO snapshots (seq, id, breakpoint_id, session_id, service, trace_id, received_at, body) \
         SELECT start.position + n, id, breakpoint_id, session_id, service, trace_id, received_at, body \
         FROM start, UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bytea[]) \
         WITH ORDINALITY AS batch (id, breakpoint_id, session_id, service, trace_id, received_at, body, n) \
         ORDER BY n ON CONFLICT (id) DO NOTHING RETURNING seq",
    )
    .bind(column(|row| &row.id))
    .bind(column(|row| &row.breakpoint_id))
    .bind(column(|row| &row.session_id))
    .bind(column(|row| &row.service))
    .bind(column(|row| &row.trace_id))
    .bind(rows.iter().map(|row| row.received_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.body.as_slice()).collect::<Vec<_>>())
    .fetch_all(&mut *tx)
    .await?;
    let outcome = IngestOutcome::of(rows.len(), &stored);
    if let Some(newest) = outcome.newest {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(SNAPSHOTS_CHANNEL)
            .bind(newest.to_string())
            .execute(&mut *tx)
            .await?;
    }
    Ok(outcome)
}
