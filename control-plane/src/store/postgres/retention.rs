//! Snapshot retention on a database several replicas share: each runs it on
//! its own schedule, and they take turns batch by batch, so two replicas never
//! rank and delete the same snapshots at once.

use sqlx::{PgPool, Postgres, QueryBuilder};

use crate::store::{Pruned, StoreResult};

/// The transaction-level advisory lock a retention batch holds (any number,
/// the same in every replica; it reads "keyhole" and a 2).
const RETENTION_LOCK: i64 = 0x6b65_7968_6f6c_6502;

/// Runs one batch of `delete` (a `DELETE` statement) while holding the
/// retention lock; if another replica holds it, deletes nothing. The lock is
/// a transaction's, so a replica that dies mid-batch releases it.
pub(super) async fn prune(pool: &PgPool, mut delete: QueryBuilder<'_, Postgres>) -> StoreResult<Pruned> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RETENTION_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(Pruned::Elsewhere);
    }
    let deleted = delete.build().execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Pruned::Deleted(deleted.rows_affected()))
}
