//! The audit log and snapshot retention, the same for SQLite and PostgreSQL.

use std::collections::BTreeMap;

use super::*;

fn entry(at: i64, action: &str, actor_name: &str, token_id: &str, target: &str) -> AuditRecord {
    AuditRecord {
        seq: 0,
        at,
        action: action.into(),
        actor_name: actor_name.into(),
        token_id: token_id.into(),
        address: "127.0.0.1:50000".into(),
        target: target.into(),
        detail: format!("{action} of {target}"),
    }
}

/// A snapshot of `breakpoint_id` received at `received_at`.
fn received(id: &str, breakpoint_id: &str, received_at: i64) -> Snapshot {
    Snapshot {
        received_at_unix_ms: received_at,
        ..snapshot(id, breakpoint_id, "s1", "t1")
    }
}

/// The ids of every stored snapshot, oldest first.
async fn stored_ids(store: &dyn Store) -> Vec<String> {
    store
        .snapshots_after(0, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, s)| s.id)
        .collect()
}

#[tokio::test]
async fn the_audit_log_lists_newest_first_and_filters_by_action_actor_and_time() {
    for Backend { name, store, .. } in backends().await {
        let written = [
            entry(10, "session.open", "alice", "tok-a", "ses-1"),
            entry(20, "breakpoint.set", "alice", "tok-a", "bp-1"),
            entry(30, "snapshot.view", "", "tok-b", "snap-1"),
            entry(40, "breakpoint.set", "bob", "tok-c", "bp-2"),
        ];
        for entry in &written {
            store.insert_audit(entry).await.unwrap();
        }
        let targets = |entries: Vec<AuditRecord>| entries.into_iter().map(|e| e.target).collect::<Vec<_>>();

        let all = store.list_audit(&AuditFilter::default(), 10).await.unwrap();
        assert_eq!(
            targets(all.clone()),
            ["bp-2", "snap-1", "bp-1", "ses-1"],
            "{name}: newest first"
        );
        assert!(all.windows(2).all(|pair| pair[0].seq > pair[1].seq), "{name}");
        let newest = AuditRecord {
            seq: all[0].seq,
            ..written[3].clone()
        };
        assert_eq!(all[0], newest, "{name}: every field round-trips");

        let limited = store.list_audit(&AuditFilter::default(), 2).await.unwrap();
        assert_eq!(targets(limited), ["bp-2", "snap-1"], "{name}");
        let sets = AuditFilter {
            action: Some("breakpoint.set".into()),
            ..Default::default()
        };
        assert_eq!(
            targets(store.list_audit(&sets, 10).await.unwrap()),
            ["bp-2", "bp-1"],
            "{name}"
        );
        for actor in ["alice", "tok-a"] {
            let by_alice = AuditFilter {
                actor: Some(actor.into()),
                ..Default::default()
            };
            assert_eq!(
                targets(store.list_audit(&by_alice, 10).await.unwrap()),
                ["bp-1", "ses-1"],
                "{name}: by name or token id"
            );
        }
        let alice_since_20 = AuditFilter {
            actor: Some("alice".into()),
            since: Some(20),
            action: None,
        };
        assert_eq!(
            targets(store.list_audit(&alice_since_20, 10).await.unwrap()),
            ["bp-1"],
            "{name}"
        );
        let nobody = AuditFilter {
            actor: Some("mallory".into()),
            ..Default::default()
        };
        assert!(store.list_audit(&nobody, 10).await.unwrap().is_empty(), "{name}");
    }
}

#[tokio::test]
async fn retention_deletes_snapshots_received_before_the_cutoff_oldest_first_a_batch_at_a_time() {
    for Backend { name, store, .. } in backends().await {
        let batch: Vec<Snapshot> = (1..=7)
            .map(|n| received(&format!("old-{n}"), "bp1", n * 10))
            .chain([received("new", "bp1", 1_000)])
            .collect();
        store.insert_snapshots(&batch).await.unwrap();

        assert_eq!(
            store.delete_snapshots_received_before(500, 3).await.unwrap(),
            Pruned::Deleted(3),
            "{name}"
        );
        assert_eq!(
            stored_ids(store.as_ref()).await,
            ["old-4", "old-5", "old-6", "old-7", "new"],
            "{name}: the oldest went first"
        );
        assert_eq!(
            store.delete_snapshots_received_before(500, 3).await.unwrap(),
            Pruned::Deleted(3),
            "{name}"
        );
        assert_eq!(
            store.delete_snapshots_received_before(500, 3).await.unwrap(),
            Pruned::Deleted(1),
            "{name}: fewer than the batch: done"
        );
        assert_eq!(
            store.delete_snapshots_received_before(500, 3).await.unwrap(),
            Pruned::Deleted(0),
            "{name}"
        );
        assert_eq!(stored_ids(store.as_ref()).await, ["new"], "{name}");
    }
}

#[tokio::test]
async fn retention_keeps_the_newest_snapshots_of_each_breakpoint() {
    for Backend { name, store, .. } in backends().await {
        let mut batch: Vec<Snapshot> = (1..=6)
            .map(|n| received(&format!("busy-{n}"), "bp1", 1))
            .collect();
        batch.extend((1..=2).map(|n| received(&format!("quiet-{n}"), "bp2", 1)));
        store.insert_snapshots(&batch).await.unwrap();

        assert_eq!(
            store.delete_snapshots_beyond(3, 2).await.unwrap(),
            Pruned::Deleted(2),
            "{name}"
        );
        assert_eq!(
            store.delete_snapshots_beyond(3, 2).await.unwrap(),
            Pruned::Deleted(1),
            "{name}"
        );
        assert_eq!(
            store.delete_snapshots_beyond(3, 2).await.unwrap(),
            Pruned::Deleted(0),
            "{name}"
        );
        assert_eq!(
            stored_ids(store.as_ref()).await,
            ["busy-4", "busy-5", "busy-6", "quiet-1", "quiet-2"],
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_pruning_one_database_together_delete_each_snapshot_once() {
    const BREAKPOINTS: usize = 3;
    const PER_BREAKPOINT: usize = 30;
    const KEEP: u32 = 10;
    const BATCH: u32 = 7;
    const PRUNERS: usize = 4;
    for backend in backends().await {
        let name = backend.name;
        let batch: Vec<Snapshot> = (0..PER_BREAKPOINT)
            .flat_map(|n| {
                (0..BREAKPOINTS).map(move |b| received(&format!("bp{b}-{n}"), &format!("bp{b}"), 1))
            })
            .collect();
        backend.store.insert_snapshots(&batch).await.unwrap();

        let mut pruners = Vec::new();
        for _ in 0..PRUNERS {
            let store = backend.open_again().await;
            pruners.push(tokio::spawn(async move {
                let mut deleted = 0;
                loop {
                    match store.delete_snapshots_beyond(KEEP, BATCH).await.unwrap() {
                        Pruned::Deleted(n) if n < u64::from(BATCH) => return deleted + n,
                        Pruned::Deleted(n) => deleted += n,
                        // Another store holds the turn: come back once it may have finished.
                        Pruned::Elsewhere => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                    }
                }
            }));
        }
        let mut deleted = 0;
        for pruner in pruners {
            deleted += pruner.await.unwrap();
        }
        let expected = BREAKPOINTS * (PER_BREAKPOINT - KEEP as usize);
        assert_eq!(deleted, expected as u64, "{name}: each snapshot deleted once");

        let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, snapshot) in backend.store.snapshots_after(0, 10_000).await.unwrap() {
            kept.entry(snapshot.breakpoint_id).or_default().push(snapshot.id);
        }
        assert_eq!(kept.len(), BREAKPOINTS, "{name}: every breakpoint keeps some");
        for (breakpoint, ids) in kept {
            let newest: Vec<String> = (PER_BREAKPOINT - KEEP as usize..PER_BREAKPOINT)
                .map(|n| format!("{breakpoint}-{n}"))
                .collect();
            assert_eq!(ids, newest, "{name}: {breakpoint} keeps its newest {KEEP}");
        }
    }
}
