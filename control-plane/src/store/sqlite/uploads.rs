//! Snapshot ingest into SQLite: an upload's statements.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::store::rows::{add_drop_count_query, touch_instance_query};
use crate::store::{IngestOutcome, SnapshotRow, StoreResult, Upload};

/// Snapshots per `INSERT` statement: 7 parameters each, far below SQLite's
/// limit of 32,766 per statement.
const ROWS_PER_INSERT: usize = 1_000;

type Answer = StoreResult<Option<IngestOutcome>>;

/// Writes `upload` in the transaction `tx` is in; `None` (and nothing
/// written) when the agent is not registered with the upload's service.
pub(super) async fn write_upload(tx: &mut SqliteConnection, upload: &Upload) -> Answer {
    let touched = touch_instance_query::<Sqlite>(upload)
        .build()
        .execute(&mut *tx)
        .await?;
    if touched.rows_affected() == 0 {
        return Ok(None);
    }
    let outcome = insert_rows(tx, &upload.snapshots).await?;
    for drop in &upload.drops {
        let mut add = add_drop_count_query::<Sqlite>(&upload.agent_id, drop);
        add.build().execute(&mut *tx).await?;
    }
    Ok(Some(outcome))
}

/// Stores `rows`, one statement per [`ROWS_PER_INSERT`] rather than one per
/// row: each statement is a round trip to the connection's thread.
pub(super) async fn insert_rows(
    connection: &mut SqliteConnection,
    rows: &[SnapshotRow],
) -> StoreResult<IngestOutcome> {
    let mut outcome = IngestOutcome::default();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO snapshots (id, breakpoint_id, session_id, service, trace_id, received_at, body) ",
        );
        insert.push_values(chunk, |mut values, row| {
            values
                .push_bind(row.id.as_str())
                .push_bind(row.breakpoint_id.as_str())
                .push_bind(row.session_id.as_str())
                .push_bind(row.service.as_str())
                .push_bind(row.trace_id.as_str())
                .push_bind(row.received_at)
                .push_bind(row.body.as_slice());
        });
        insert.push(" ON CONFLICT (id) DO NOTHING RETURNING seq");
        let positions: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *connection).await?;
        outcome = outcome.and(IngestOutcome::of(chunk.len(), &positions));
    }
    Ok(outcome)
}
