//! What only a database shared by replicas does: report each committed
//! change to every replica, and name itself without its password.

use std::time::Duration;

use sqlx::Connection as _;

use super::*;

/// How long a change may take to be reported to another replica.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The next report on `changes` that satisfies `wanted`.
async fn report(
    changes: &mut tokio::sync::mpsc::Receiver<StoreChange>,
    wanted: impl Fn(StoreChange) -> bool,
) {
    tokio::time::timeout(REPORT_TIMEOUT, async {
        while let Some(change) = changes.recv().await {
            if wanted(change) {
                return;
            }
        }
        panic!("the change feed ended");
    })
    .await
    .expect("the change is reported within the timeout");
}

#[tokio::test]
async fn a_change_committed_through_one_replica_is_reported_to_another() {
    let database = FreshDatabase::create().await;
    let writer = database.store().await;
    let reader = database.store().await;
    let mut changes = reader.watch_changes();
    // The first report is what the database holds when the listener starts.
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 0 }).await;

    writer
        .insert_breakpoint(&breakpoint("bp1", "shop", "", 1, 1_000))
        .await
        .unwrap();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 1 }).await;
    writer.insert_session(&session("s1", 1, 1_000)).await.unwrap();
    writer.close_session("s1", 2).await.unwrap();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 2 }).await;
    writer.delete_breakpoint("bp1", 3).await.unwrap();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 3 }).await;
    writer.bump_breakpoint_version().await.unwrap();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 4 }).await;

    writer
        .insert_snapshots(&[snapshot("a", "bp1", "", "t1")])
        .await
        .unwrap();
    let seq = writer.last_snapshot_seq().await.unwrap();
    report(&mut changes, |c| c == StoreChange::Snapshots { seq }).await;
}

#[tokio::test]
async fn a_listener_whose_connection_drops_reconnects_and_catches_up() {
    let database = FreshDatabase::create().await;
    let writer = database.store().await;
    let reader = database.store().await;
    let mut changes = reader.watch_changes();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 0 }).await;

    let mut admin = database.options().connect().await.unwrap();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(super::super::postgres::LISTENER_APPLICATION_NAME)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(terminated, [true], "one listener connection, terminated");
    // Committed while the listener is down or coming back: its catch-up read,
    // or the notification once it listens again, reports it.
    writer
        .insert_breakpoint(&breakpoint("bp1", "shop", "", 1, 1_000))
        .await
        .unwrap();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 1 }).await;
    writer
        .insert_breakpoint(&breakpoint("bp2", "shop", "", 1, 1_000))
        .await
        .unwrap();
    report(&mut changes, |c| c == StoreChange::Breakpoints { version: 2 }).await;
}

/// The ids of the snapshots after `cursor`, which moves past them.
async fn read_on(store: &dyn Store, cursor: &mut i64) -> Vec<String> {
    let page = store.snapshots_after(*cursor, 100).await.unwrap();
    if let Some((last, _)) = page.last() {
        *cursor = *last;
    }
    page.into_iter().map(|(_, snapshot)| snapshot.id).collect()
}

#[tokio::test]
async fn a_batch_that_commits_after_a_later_one_is_read_after_it_not_missed() {
    let database = FreshDatabase::create().await;
    let store = database.store().await;
    let watcher = database.store().await;
    let mut cursor = watcher.last_snapshot_seq().await.unwrap();

    // An upload that is slow to commit, through one replica...
    let early = SnapshotRow::of(&snapshot("early", "bp1", "", "t1"));
    let mut slow = database.options().connect().await.unwrap();
    let mut in_flight = slow.begin().await.unwrap();
    postgres::snapshots::insert_rows(&mut in_flight, &[early], store.positions_per_transaction)
        .await
        .unwrap();
    // ...and one that began later and commits first, through another.
    store
        .insert_snapshots(&[snapshot("late", "bp1", "", "t1")])
        .await
        .unwrap();
    assert!(
        read_on(&watcher, &mut cursor).await.is_empty(),
        "the later batch waits for the one in flight before it"
    );

    in_flight.commit().await.unwrap();
    assert_eq!(read_on(&watcher, &mut cursor).await, ["early", "late"]);
    assert!(read_on(&watcher, &mut cursor).await.is_empty());
}

#[tokio::test]
async fn a_transaction_in_flight_in_another_database_holds_no_snapshot_back() {
    let database = FreshDatabase::create().await;
    let store = database.store().await;
    let mut elsewhere = database.server.connect().await.unwrap();
    let mut in_flight = elsewhere.begin().await.unwrap();
    let _: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *in_flight)
        .await
        .unwrap();

    store
        .insert_snapshots(&[snapshot("a", "bp1", "", "t1")])
        .await
        .unwrap();
    let mut cursor = 0;
    assert_eq!(read_on(&store, &mut cursor).await, ["a"]);
    assert_eq!(store.last_snapshot_seq().await.unwrap(), cursor);
    in_flight.rollback().await.unwrap();
}

#[tokio::test]
async fn a_database_upgraded_with_snapshots_in_it_puts_new_ones_after_them() {
    /// How a replica of schema version 3 stored a snapshot: at the sequence's next position.
    const INSERT_AS_VERSION_3: &str = "INSERT INTO snapshots \
         (id, breakpoint_id, session_id, service, trace_id, received_at, body) \
         VALUES ($1, 'bp1', '', 'shop', 't1', 1, $2)";
    let database = FreshDatabase::create().await;
    let mut version_3 = database.options().connect().await.unwrap();
    rows::migrator(&postgres::MIGRATIONS[..3])
        .run(&mut version_3)
        .await
        .unwrap();
    for id in ["old-1", "old-2"] {
        sqlx::query(INSERT_AS_VERSION_3)
            .bind(id)
            .bind(snapshot(id, "bp1", "", "t1").encode_to_vec())
            .execute(&mut version_3)
            .await
            .unwrap();
    }

    let store = database.store().await;
    let mut cursor = 0;
    assert_eq!(read_on(&store, &mut cursor).await, ["old-1", "old-2"]);
    store
        .insert_snapshots(&[snapshot("new", "bp1", "", "t1")])
        .await
        .unwrap();
    assert_eq!(read_on(&store, &mut cursor).await, ["new"]);
    let refused = sqlx::query(INSERT_AS_VERSION_3)
        .bind("old-3")
        .bind(Vec::<u8>::new())
        .execute(&mut version_3)
        .await;
    assert!(
        refused.is_err(),
        "a replica still on version 3 can no longer store snapshots behind the new ones"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    for url in [
        "postgres://keyhole:s3cret@127.0.0.1:1/keyhole",
        "postgresql://keyhole@127.0.0.1:1/keyhole?password=s3cret",
    ] {
        let error = PostgresStore::connect(url)
            .await
            .err()
            .expect("nothing listens on port 1");
        let message = error.to_string();
        assert!(
            message.starts_with("cannot connect to the database at postgres://keyhole@127.0.0.1:1/keyhole: "),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
    }
    let error = PostgresStore::connect("mysql://keyhole:s3cret@db/keyhole")
        .await
        .err()
        .expect("not PostgreSQL");
    assert!(
        error.to_string().contains("must start with postgres://"),
        "{error}"
    );
    assert!(!error.to_string().contains("s3cret"), "{error}");
}
