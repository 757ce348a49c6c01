//! The `Store` trait's semantics, the same for SQLite and PostgreSQL.

use super::*;

#[tokio::test]
async fn a_new_store_is_empty_at_version_zero() {
    for Backend { name, store, .. } in backends().await {
        assert_eq!(store.breakpoint_version().await.unwrap(), 0, "{name}");
        assert_eq!(store.last_snapshot_seq().await.unwrap(), 0, "{name}");
        assert_eq!(store.token_count().await.unwrap(), 0, "{name}");
        assert!(store.signing_keys().await.unwrap().is_empty(), "{name}");
        assert!(store.list_breakpoints().await.unwrap().is_empty(), "{name}");
        assert!(store.get_snapshot("nope").await.unwrap().is_none(), "{name}");
        assert!(store.get_session("nope").await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn signing_keys_come_oldest_first_and_retiring_spares_the_kept_and_the_retired() {
    for Backend { name, store, .. } in backends().await {
        for (key_id, created_at, retired_at) in [("k1", 1, None), ("k2", 2, None), ("k3", 3, Some(2))] {
            let key = SigningKeyRecord {
                key_id: key_id.into(),
                secret: [created_at as u8; 32],
                created_at,
                retired_at,
            };
            store.insert_signing_key(&key).await.unwrap();
        }
        store.retire_signing_keys_except("k2", 10).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        let summary: Vec<_> = keys.iter().map(|k| (k.key_id.as_str(), k.retired_at)).collect();
        assert_eq!(
            summary,
            [("k1", Some(10)), ("k2", None), ("k3", Some(2))],
            "{name}"
        );
        assert_eq!(keys[1].secret, [2; 32], "{name}: the secret round-trips");
        assert_eq!(store.bump_breakpoint_version().await.unwrap(), 1, "{name}");
        assert_eq!(store.bump_breakpoint_version().await.unwrap(), 2, "{name}");
    }
}

#[tokio::test]
async fn tokens_are_counted_listed_in_creation_order_and_revoked_once() {
    for Backend { name, store, .. } in backends().await {
        store.insert_token(&token("t2", Role::Viewer, 20)).await.unwrap();
        store.insert_token(&token("t1", Role::Admin, 10)).await.unwrap();
        assert_eq!(store.token_count().await.unwrap(), 2, "{name}");
        let listed: Vec<_> = store
            .list_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed, ["t1", "t2"], "{name}");
        let fetched = store.get_token("t2").await.unwrap().expect("stored token");
        assert_eq!(
            (fetched.role, fetched.secret_hash),
            (Role::Viewer, vec![7; 32]),
            "{name}"
        );

        let revoked = store.revoke_token("t2", 30).await.unwrap().expect("known token");
        assert_eq!(revoked.revoked_at, Some(30), "{name}");
        let again = store.revoke_token("t2", 40).await.unwrap().expect("known token");
        assert_eq!(again.revoked_at, Some(30), "{name}: the first revocation stands");
        assert!(store.revoke_token("t9", 40).await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn registering_again_replaces_the_instance_and_its_whole_probe_catalogue() {
    for Backend { name, store, .. } in backends().await {
        let shop = instance("shop", "1", 100);
        store
            .register_instance(&shop, &[probe("a", 1), probe("b", 2)])
            .await
            .unwrap();
        store
            .register_instance(&shop, &[probe("b", 20), probe("c", 3), probe("c", 30)])
            .await
            .unwrap();
        store
            .register_instance(&instance("cart", "1", 100), &[probe("x", 9)])
            .await
            .unwrap();
        let catalogue: Vec<_> = store
            .list_probes(Some("shop"))
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.agent_id, p.probe.label, p.probe.line))
            .collect();
        let expected = [("shop/1", "b", 20), ("shop/1", "c", 30)].map(|(a, l, n)| (a.into(), l.into(), n));
        assert_eq!(catalogue, expected, "{name}: the last of equal labels wins");
        let services: Vec<_> = store
            .list_probes(None)
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.service)
            .collect();
        assert_eq!(services, ["cart", "shop", "shop"], "{name}");

        for at in [500, 300] {
            store
                .store_upload(empty_upload("shop/1", "shop", at, &[]))
                .await
                .unwrap()
                .expect("registered");
        }
        let touched = store.get_instance("shop/1").await.unwrap().expect("registered");
        assert_eq!(
            touched.instance.last_seen_unix_ms, 500,
            "{name}: last seen never goes back"
        );
        let listed: Vec<_> = store
            .list_instances()
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.instance.agent_id)
            .collect();
        assert_eq!(listed, ["cart/1", "shop/1"], "{name}");
        assert!(store.get_instance("shop/2").await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn closing_a_session_bumps_the_breakpoint_version_once() {
    for Backend { name, store, .. } in backends().await {
        store.insert_session(&session("s1", 10, 1_000)).await.unwrap();
        store.insert_session(&session("s2", 20, 1_000)).await.unwrap();
        let listed: Vec<_> = store
            .list_sessions()
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, ["s2", "s1"], "{name}: newest first");

        let closed = store
            .close_session("s1", 50)
            .await
            .unwrap()
            .expect("known session");
        assert_eq!(closed.closed_at, Some(50), "{name}");
        assert!(!closed.is_active(60), "{name}");
        assert_eq!(store.breakpoint_version().await.unwrap(), 1, "{name}");
        let again = store
            .close_session("s1", 70)
            .await
            .unwrap()
            .expect("known session");
        assert_eq!(again.closed_at, Some(50), "{name}");
        assert_eq!(
            store.breakpoint_version().await.unwrap(),
            1,
            "{name}: closing twice changes nothing"
        );
        assert!(store.close_session("s9", 70).await.unwrap().is_none(), "{name}");
    }
}

#[tokio::test]
async fn breakpoints_bump_the_version_and_are_deleted_once() {
    for Backend { name, store, .. } in backends().await {
        let first = breakpoint("bp1", "shop", "", 10, 1_000);
        assert_eq!(store.insert_breakpoint(&first).await.unwrap(), 1, "{name}");
        assert_eq!(
            store
                .insert_breakpoint(&breakpoint("bp2", "shop", "", 20, 1_000))
                .await
                .unwrap(),
            2,
            "{name}"
        );
        assert_eq!(store.get_breakpoint("bp1").await.unwrap(), Some(first), "{name}");

        let deleted = store
            .delete_breakpoint("bp1", 30)
            .await
            .unwrap()
            .expect("live breakpoint");
        assert_eq!(deleted.deleted_at_unix_ms, 30, "{name}");
        assert_eq!(store.breakpoint_version().await.unwrap(), 3, "{name}");
        assert!(
            store.delete_breakpoint("bp1", 40).await.unwrap().is_none(),
            "{name}"
        );
        assert!(
            store.delete_breakpoint("bp9", 40).await.unwrap().is_none(),
            "{name}"
        );
        assert_eq!(
            store.breakpoint_version().await.unwrap(),
            3,
            "{name}: nothing deleted, no bump"
        );

        let listed: Vec<_> = store
            .list_breakpoints()
            .await
            .unwrap()
            .into_iter()
            .map(|b| (b.id, b.deleted_at_unix_ms))
            .collect();
        assert_eq!(listed, [("bp2".into(), 0), ("bp1".into(), 30)], "{name}");
    }
}

#[tokio::test]
async fn agents_are_sent_only_live_breakpoints_of_their_service_and_of_open_sessions() {
    for Backend { name, store, .. } in backends().await {
        store.insert_session(&session("open", 1, 1_000)).await.unwrap();
        store.insert_session(&session("closed", 1, 1_000)).await.unwrap();
        store.insert_session(&session("expired", 1, 50)).await.unwrap();
        store.close_session("closed", 5).await.unwrap();
        for (id, service, session_id, expires_at) in [
            ("live", "shop", "open", 1_000),
            ("sessionless", "shop", "", 1_000),
            ("deleted", "shop", "open", 1_000),
            ("expired", "shop", "open", 50),
            ("of-closed-session", "shop", "closed", 1_000),
            ("of-expired-session", "shop", "expired", 1_000),
            ("other-service", "cart", "open", 1_000),
        ] {
            store
                .insert_breakpoint(&breakpoint(id, service, session_id, 10, expires_at))
                .await
                .unwrap();
        }
        store.delete_breakpoint("deleted", 20).await.unwrap();
        let active: Vec<_> = store
            .active_breakpoints("shop", 100)
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.id)
            .collect();
        assert_eq!(active, ["live", "sessionless"], "{name}");
    }
}

#[tokio::test]
async fn statuses_are_kept_per_instance_and_drop_counts_add_up_per_reason() {
    for Backend { name, store, .. } in backends().await {
        let status = |agent_id: &str, message: &str| InstanceStatus {
            breakpoint_id: "bp1".into(),
            agent_id: agent_id.into(),
            message: message.into(),
            ..Default::default()
        };
        store.upsert_status(&status("shop/2", "installed")).await.unwrap();
        store.upsert_status(&status("shop/1", "pending")).await.unwrap();
        store.upsert_status(&status("shop/1", "installed")).await.unwrap();
        let statuses: Vec<_> = store
            .statuses("bp1")
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.agent_id, s.message))
            .collect();
        let expected = [("shop/1", "installed"), ("shop/2", "installed")].map(|(a, m)| (a.into(), m.into()));
        assert_eq!(statuses, expected, "{name}");

        for instance_id in ["1", "2"] {
            store
                .register_instance(&instance("shop", instance_id, 1), &[])
                .await
                .unwrap();
        }
        let drop = |reason: i32, count: u64| DropCount {
            breakpoint_id: "bp1".into(),
            reason,
            count,
        };
        for (agent_id, drops) in [
            ("shop/1", vec![drop(1, 2), drop(2, 5)]),
            ("shop/1", vec![drop(1, 3)]),
            ("shop/2", vec![drop(1, 10)]),
        ] {
            store
                .store_upload(empty_upload(agent_id, "shop", 2, &drops))
                .await
                .unwrap()
                .expect("registered");
        }
        let counts: Vec<_> = store
            .drop_counts("bp1")
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.reason, d.count))
            .collect();
        assert_eq!(counts, [(1, 15), (2, 5)], "{name}");
        assert!(store.drop_counts("bp2").await.unwrap().is_empty(), "{name}");
    }
}

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

#[tokio::test]
async fn reopening_a_store_keeps_everything() {
    for backend in backends().await {
        let name = backend.name;
        let store = &backend.store;
        store.insert_token(&token("t1", Role::Admin, 1)).await.unwrap();
        store.insert_session(&session("s1", 1, 1_000)).await.unwrap();
        store
            .insert_breakpoint(&breakpoint("bp1", "shop", "s1", 1, 1_000))
            .await
            .unwrap();
        store
            .insert_snapshots(&[snapshot("a", "bp1", "s1", "t1")])
            .await
            .unwrap();
        let seq = store.last_snapshot_seq().await.unwrap();

        let reopened = backend.open_again().await;
        assert_eq!(reopened.token_count().await.unwrap(), 1, "{name}");
        assert!(reopened.get_session("s1").await.unwrap().is_some(), "{name}");
        assert_eq!(reopened.breakpoint_version().await.unwrap(), 1, "{name}");
        assert_eq!(
            reopened.active_breakpoints("shop", 10).await.unwrap().len(),
            1,
            "{name}"
        );
        assert_eq!(reopened.last_snapshot_seq().await.unwrap(), seq, "{name}");
        let more = reopened
            .insert_snapshots(&[snapshot("b", "bp1", "s1", "t1")])
            .await
            .unwrap();
        assert_eq!(more.stored, 1, "{name}");
        assert!(
            reopened.last_snapshot_seq().await.unwrap() > seq,
            "{name}: positions keep growing"
        );
    }
}
