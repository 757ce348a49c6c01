//! Snapshot ingest on the shared database: a batch in one statement, and the
//! order in which batches' positions become visible to watchers.

use sqlx::{PgConnection, Postgres};

use super::SNAPSHOTS_CHANNEL;
use crate::store::rows::{add_drop_count_query, touch_instance_query};
use crate::store::{IngestOutcome, SnapshotRow, StoreResult, Upload};

/// The transaction-level advisory lock snapshot ingest holds (any number, the
/// same in every replica; it reads "keyhole" and a 1).
const SNAPSHOT_INGEST_LOCK: i64 = 0x6b65_7968_6f6c_6501;

/// Stores `upload` in the transaction `tx` is in; `None` (and nothing
/// written) when the agent is not registered with the upload's service.
pub(super) async fn store_upload(
    tx: &mut PgConnection,
    upload: &Upload<'_>,
) -> StoreResult<Option<IngestOutcome>> {
    let touched = touch_instance_query::<Postgres>(upload)
        .build()
        .execute(&mut *tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Ok(None);
    }
    let outcome = insert_rows(tx, upload.snapshots).await?;
    for drop in upload.drops {
        let mut add = add_drop_count_query::<Postgres>(upload.agent_id, drop);
        add.build().execute(&mut *tx).await?;
    }
    Ok(Some(outcome))
}

/// Stores `rows` in the transaction `tx` is in, in one statement.
pub(super) async fn insert_rows<'a>(
    tx: &mut PgConnection,
    rows: &[SnapshotRow<'a>],
) -> StoreResult<IngestOutcome> {
    if rows.is_empty() {
        return Ok(IngestOutcome::default());
    }
    let column = |field: fn(&SnapshotRow<'a>) -> &'a str| rows.iter().map(field).collect::<Vec<_>>();
    // Positions come from a sequence, handed out before commit. Were two
    // batches to commit out of order, a watcher that already read past the
    // later one's positions would never see the earlier one: so ingest
    // takes turns, and positions become visible in order.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SNAPSHOT_INGEST_LOCK)
        .execute(&mut *tx)
        .await?;
    let stored: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO snapshots (id, breakpoint_id, session_id, service, trace_id, received_at, body) \
         SELECT id, breakpoint_id, session_id, service, trace_id, received_at, body \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bytea[]) \
         WITH ORDINALITY AS batch (id, breakpoint_id, session_id, service, trace_id, received_at, body, n) \
         ORDER BY n ON CONFLICT (id) DO NOTHING RETURNING seq",
    )
    .bind(column(|row| row.id))
    .bind(column(|row| row.breakpoint_id))
    .bind(column(|row| row.session_id))
    .bind(column(|row| row.service))
    .bind(column(|row| row.trace_id))
    .bind(rows.iter().map(|row| row.received_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|row| row.body).collect::<Vec<_>>())
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
