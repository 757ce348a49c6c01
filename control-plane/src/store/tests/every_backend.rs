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
