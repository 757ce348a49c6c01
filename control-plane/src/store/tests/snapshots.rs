//! What every backend promises of snapshots: each stored once, an upload
//! stored whole or not at all, and a reader that follows positions missing
//! none, however the writers race.

use super::*;

#[tokio::test]
async fn a_snapshot_batch_is_stored_once_by_id_however_often_it_is_sent() {
    for Backend { name, store, .. } in backends().await {
        let a = snapshot("a", "bp1", "s1", "t1");
        let b = snapshot("b", "bp2", "s1", "t2");
        let c = snapshot("c", "bp1", "s2", "t1");
        let first = store
            .insert_snapshots(&[a.clone(), b.clone(), a.clone()])
            .await
            .unwrap();
        assert_eq!((first.stored, first.duplicates), (2, 1), "{name}");
        let again = store
            .insert_snapshots(&[a.clone(), b.clone(), c.clone()])
            .await
            .unwrap();
        assert_eq!((again.stored, again.duplicates), (1, 2), "{name}");
        assert_eq!(
            store.insert_snapshots(&[]).await.unwrap(),
            IngestOutcome::default(),
            "{name}"
        );
        assert_eq!(store.get_snapshot("b").await.unwrap(), Some(b), "{name}");

        let after = store.snapshots_after(0, 10).await.unwrap();
        assert_eq!(
            ids_of(after.iter().map(|(_, s)| s)),
            ["a", "b", "c"],
            "{name}: oldest first"
        );
        assert_eq!(store.last_snapshot_seq().await.unwrap(), after[2].0, "{name}");
        let next = store.snapshots_after(after[0].0, 1).await.unwrap();
        assert_eq!(ids_of(next.iter().map(|(_, s)| s)), ["b"], "{name}");

        let all = SnapshotFilter::default();
        assert_eq!(
            ids_of(&store.list_snapshots(&all, 10).await.unwrap()),
            ["c", "b", "a"],
            "{name}"
        );
        assert_eq!(
            ids_of(&store.list_snapshots(&all, 1).await.unwrap()),
            ["c"],
            "{name}"
        );
        let of_bp1_in_s1 = SnapshotFilter {
            breakpoint_id: "bp1".into(),
            session_id: "s1".into(),
            ..Default::default()
        };
        assert_eq!(
            ids_of(&store.list_snapshots(&of_bp1_in_s1, 10).await.unwrap()),
            ["a"],
            "{name}"
        );
        let of_t1 = SnapshotFilter {
            trace_id: "t1".into(),
            service: "shop".into(),
            ..Default::default()
        };
        assert_eq!(
            ids_of(&store.list_snapshots(&of_t1, 10).await.unwrap()),
            ["c", "a"],
            "{name}"
        );
    }
}

#[tokio::test]
async fn an_upload_is_stored_whole_and_only_for_the_service_its_agent_registered_with() {
    for Backend { name, store, .. } in backends().await {
        store
            .register_instance(&instance("shop", "1", 100), &[])
            .await
            .unwrap();
        let drops = [DropCount {
            breakpoint_id: "bp1".into(),
            reason: 1,
            count: 4,
        }];
        let upload = |agent_id: &str, service: &str| Upload {
            snapshots: [snapshot("a", "bp1", "s1", "t1"), snapshot("b", "bp1", "s1", "t1")]
                .iter()
                .map(SnapshotRow::of)
                .collect(),
            ..empty_upload(agent_id, service, 200, &drops)
        };

        for (agent_id, service) in [("shop/1", "cart"), ("shop/2", "shop")] {
            assert_eq!(
                store.store_upload(upload(agent_id, service)).await.unwrap(),
                None,
                "{name}: {agent_id} is not registered with {service}"
            );
        }
        assert!(store.snapshots_after(0, 10).await.unwrap().is_empty(), "{name}");
        assert!(store.drop_counts("bp1").await.unwrap().is_empty(), "{name}");
        let instance = store.get_instance("shop/1").await.unwrap().expect("registered");
        assert_eq!(instance.instance.last_seen_unix_ms, 100, "{name}: not seen since");

        let stored = store
            .store_upload(upload("shop/1", "shop"))
            .await
            .unwrap()
            .expect("registered");
        let after = store.snapshots_after(0, 10).await.unwrap();
        assert_eq!(ids_of(after.iter().map(|(_, s)| s)), ["a", "b"], "{name}");
        assert_eq!(
            stored,
            IngestOutcome {
                stored: 2,
                duplicates: 0,
                newest: Some(after[1].0),
            },
            "{name}: the newest position comes back with the outcome"
        );
        assert_eq!(store.drop_counts("bp1").await.unwrap().len(), 1, "{name}");
        let instance = store.get_instance("shop/1").await.unwrap().expect("registered");
        assert_eq!(instance.instance.last_seen_unix_ms, 200, "{name}");

        let again = store.store_upload(upload("shop/1", "shop")).await.unwrap();
        assert_eq!(
            again,
            Some(IngestOutcome {
                stored: 0,
                duplicates: 2,
                newest: None,
            }),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_stored_snapshot_that_does_not_decode_hides_no_other() {
    for Backend { name, store, .. } in backends().await {
        let malformed = SnapshotRow {
            // A field 15 (a variable) that claims more bytes than follow.
            body: vec![0x7a, 0x05, 0x01],
            ..SnapshotRow::of(&snapshot("malformed", "bp1", "s1", "t1"))
        };
        let rows = vec![
            SnapshotRow::of(&snapshot("before", "bp1", "s1", "t1")),
            malformed,
            SnapshotRow::of(&snapshot("after", "bp1", "s1", "t1")),
        ];
        store
            .register_instance(&instance("shop", "1", 100), &[])
            .await
            .unwrap();
        let upload = Upload {
            snapshots: rows,
            ..empty_upload("shop/1", "shop", 200, &[])
        };
        let stored = store.store_upload(upload).await.unwrap().expect("registered");
        assert_eq!(stored.stored, 3, "{name}");

        let after = store.snapshots_after(0, 10).await.unwrap();
        assert_eq!(
            ids_of(after.iter().map(|(_, s)| s)),
            ["before", "after"],
            "{name}"
        );
        let listed = store
            .list_snapshots(&SnapshotFilter::default(), 10)
            .await
            .unwrap();
        assert_eq!(ids_of(&listed), ["after", "before"], "{name}");
        assert!(store.get_snapshot("malformed").await.is_err(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_arriving_together_are_each_answered_for_themselves() {
    const UPLOADERS: usize = 24;
    for Backend { name, store, .. } in backends().await {
        store
            .register_instance(&instance("shop", "1", 100), &[])
            .await
            .unwrap();
        // Every third names the wrong service; the others send one snapshot
        // of their own and one that every upload sends.
        let uploads = (0..UPLOADERS).map(|n| {
            let service = if n % 3 == 0 { "cart" } else { "shop" };
            let snapshots = [format!("own-{n}"), "shared".to_owned()]
                .iter()
                .map(|id| SnapshotRow::of(&snapshot(id, "bp1", "s1", "t1")))
                .collect();
            let store = store.clone();
            let upload = Upload {
                snapshots,
                ..empty_upload("shop/1", service, 200, &[])
            };
            tokio::spawn(async move { store.store_upload(upload).await })
        });
        let mut shared = 0;
        for (n, answer) in uploads.collect::<Vec<_>>().into_iter().enumerate() {
            let answer = answer.await.unwrap().unwrap();
            if n % 3 == 0 {
                assert_eq!(answer, None, "{name}: upload {n} names the wrong service");
                continue;
            }
            let outcome = answer.expect("registered");
            assert_eq!(outcome.stored + outcome.duplicates, 2, "{name}: upload {n}");
            shared += outcome.stored - 1;
        }
        assert_eq!(shared, 1, "{name}: the shared snapshot is stored by one upload");
        let stored = store.snapshots_after(0, 100).await.unwrap().len();
        assert_eq!(stored, UPLOADERS - UPLOADERS / 3 + 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_racing_from_several_stores_store_each_snapshot_once() {
    const WRITERS: usize = 4;
    const BATCH: usize = 50;
    for backend in backends().await {
        let batch: Vec<Snapshot> = (0..BATCH)
            .map(|n| snapshot(&format!("snap-{n}"), "bp1", "s1", "t1"))
            .collect();
        let mut writers = Vec::new();
        for _ in 0..WRITERS {
            let store = backend.open_again().await;
            let batch = batch.clone();
            writers.push(tokio::spawn(async move { store.insert_snapshots(&batch).await }));
        }
        let mut stored = 0;
        for writer in writers {
            let outcome = writer.await.unwrap().unwrap();
            assert_eq!(
                outcome.stored + outcome.duplicates,
                BATCH as u32,
                "{}",
                backend.name
            );
            stored += outcome.stored;
        }
        assert_eq!(stored, BATCH as u32, "{}", backend.name);
        let positions: Vec<i64> = backend
            .store
            .snapshots_after(0, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|(seq, _)| seq)
            .collect();
        assert_eq!(positions.len(), BATCH, "{}", backend.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_batches_stored_concurrently_by_several_stores_misses_none() {
    const WRITERS: usize = 4;
    const BATCHES: usize = 25;
    const BATCH: usize = 8;
    for backend in backends().await {
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let store = backend.open_again().await;
            writers.push(tokio::spawn(async move {
                for b in 0..BATCHES {
                    let batch: Vec<Snapshot> = (0..BATCH)
                        .map(|n| snapshot(&format!("w{w}-b{b}-{n}"), "bp1", "s1", "t1"))
                        .collect();
                    store.insert_snapshots(&batch).await.unwrap();
                }
            }));
        }
        // A watcher: reads what follows its cursor, moves the cursor to the
        // last it read, and goes on until the writers are done and nothing is left.
        let mut cursor = 0;
        let mut read = Vec::new();
        loop {
            let writing = writers.iter().any(|writer| !writer.is_finished());
            let page = backend.store.snapshots_after(cursor, 50).await.unwrap();
            if let Some((last, _)) = page.last() {
                cursor = *last;
            }
            if page.is_empty() && !writing {
                break;
            }
            read.extend(page.into_iter().map(|(_, snapshot)| snapshot.id));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let stored = WRITERS * BATCHES * BATCH;
        assert_eq!(read.len(), stored, "{}: each read once", backend.name);
        let distinct: std::collections::HashSet<&String> = read.iter().collect();
        assert_eq!(distinct.len(), stored, "{}: none missed", backend.name);
    }
}
