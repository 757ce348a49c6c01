//! What only a database shared by replicas does: report each committed
//! change to every replica, and name itself without its password.

use std::time::Duration;

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
