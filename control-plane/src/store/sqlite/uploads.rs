//! Snapshot ingest into SQLite: uploads that arrive while another is being
//! written are written together, in one transaction and so one `fsync`.
//!
//! With `synchronous = FULL` each commit waits for the disk, and SQLite takes
//! one writer at a time: one upload per transaction left the writer waiting
//! on the disk for about a fifth of the time. The store's writer task takes
//! every upload waiting when it begins a transaction (at most
//! [`UPLOADS_PER_COMMIT`]) and answers each once that transaction has
//! committed, so an upload is still acknowledged only once it is on disk.

use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::store::rows::{add_drop_count_query, touch_instance_query};
use crate::store::{IngestOutcome, SnapshotRow, StoreError, StoreResult, Upload};

/// Uploads written in one transaction at most.
const UPLOADS_PER_COMMIT: usize = 32;
/// Uploads waiting for the writer task at most; beyond it, uploaders wait to queue.
const QUEUED_UPLOADS: usize = 64;
/// Snapshots per `INSERT` statement: 7 parameters each, far below SQLite's
/// limit of 32,766 per statement.
const ROWS_PER_INSERT: usize = 1_000;

type Answer = StoreResult<Option<IngestOutcome>>;

/// The queue of uploads to the store's writer task.
pub(super) struct Uploads {
    queue: mpsc::Sender<(Upload, oneshot::Sender<Answer>)>,
}

impl Uploads {
    /// Starts the writer task, which writes through `writer`; it ends once
    /// this is dropped and every upload queued is answered.
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (queue, waiting) = mpsc::channel(QUEUED_UPLOADS);
        tokio::spawn(write(writer, waiting));
        Self { queue }
    }

    /// Stores `upload` as [`crate::store::Store::store_upload`] says.
    pub(super) async fn store(&self, upload: Upload) -> Answer {
        let stopped = || StoreError("the database's writer stopped; restart the server".into());
        let (answer, answered) = oneshot::channel();
        self.queue.send((upload, answer)).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

async fn write(writer: SqlitePool, mut waiting: mpsc::Receiver<(Upload, oneshot::Sender<Answer>)>) {
    let mut group = Vec::with_capacity(UPLOADS_PER_COMMIT);
    while waiting.recv_many(&mut group, UPLOADS_PER_COMMIT).await > 0 {
        match write_group(&writer, group.iter().map(|(upload, _)| upload)).await {
            Ok(outcomes) => {
                for ((_, answer), outcome) in group.drain(..).zip(outcomes) {
                    let _ = answer.send(Ok(outcome));
                }
            }
            Err(error) => {
                for (_, answer) in group.drain(..) {
                    let _ = answer.send(Err(StoreError(error.0.clone())));
                }
            }
        }
    }
}

/// Writes `uploads` in one transaction; each one's outcome, in order.
async fn write_group(
    writer: &SqlitePool,
    uploads: impl Iterator<Item = &Upload>,
) -> StoreResult<Vec<Option<IngestOutcome>>> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(UPLOADS_PER_COMMIT);
    for upload in uploads {
        outcomes.push(write_upload(&mut tx, upload).await?);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Writes `upload` in the transaction `tx` is in; `None` (and nothing
/// written) when the agent is not registered with the upload's service.
async fn write_upload(tx: &mut SqliteConnection, upload: &Upload) -> Answer {
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
