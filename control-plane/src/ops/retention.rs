//! Snapshot retention: every [`Retention::interval`] the server deletes the
//! snapshots received longer ago than the retention period, then those beyond
//! the newest N of their breakpoint. It deletes in batches of
//! [`Retention::batch_size`] with a pause between them, so a large backlog
//! never holds the database in one long statement while agents upload.
//!
//! Only snapshots are deleted: expired sessions and breakpoints, and the
//! audit log, are kept, so the log's targets stay explainable. Replicas on one
//! PostgreSQL database may all run this: they take turns (see the store).

use std::sync::Arc;

use tokio::time::MissedTickBehavior;

use crate::config::Retention;
use crate::ids::now_ms;
use crate::ops::metrics::RetentionRule;
use crate::state::ControlPlane;
use crate::store::{Pruned, StoreResult};

/// Applies `retention` for as long as the process runs; the first pass starts at once.
pub async fn run(plane: Arc<ControlPlane>, retention: Retention) {
    let mut passes = tokio::time::interval(retention.interval);
    passes.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        passes.tick().await;
        if let Err(error) = pass(&plane, &retention).await {
            tracing::warn!(
                %error,
                retry_in = ?retention.interval,
                "snapshot retention failed; snapshots it did not delete are deleted by the next pass"
            );
        }
    }
}

/// One pass: the age rule, then the count rule.
async fn pass(plane: &ControlPlane, retention: &Retention) -> StoreResult<()> {
    let max_age_ms = i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms().saturating_sub(max_age_ms);
    let by_age = prune(plane, retention, RetentionRule::Age, cutoff).await?;
    let by_count = prune(plane, retention, RetentionRule::Count, cutoff).await?;
    if by_age + by_count > 0 {
        tracing::info!(
            by_age,
            by_count,
            max_age = ?retention.max_age,
            per_breakpoint = retention.max_per_breakpoint,
            "snapshot retention deleted snapshots"
        );
    }
    Ok(())
}

/// Deletes by `rule` a batch at a time until none is left, or another
/// replica is at it; returns how many this replica deleted.
async fn prune(
    plane: &ControlPlane,
    retention: &Retention,
    rule: RetentionRule,
    cutoff: i64,
) -> StoreResult<u64> {
    let store = &plane.store;
    let limit = retention.batch_size;
    let mut total = 0;
    loop {
        let batch = match rule {
            RetentionRule::Age => store.delete_snapshots_received_before(cutoff, limit).await?,
            RetentionRule::Count => {
                store
                    .delete_snapshots_beyond(retention.max_per_breakpoint, limit)
                    .await?
            }
        };
        let Pruned::Deleted(deleted) = batch else {
            return Ok(total);
        };
        if deleted > 0 {
            plane.metrics.retention_batch(rule, deleted);
        }
        total += deleted;
        if deleted < u64::from(limit) {
            return Ok(total);
        }
        tokio::time::sleep(retention.batch_pause).await;
    }
}
