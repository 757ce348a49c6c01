//! Each replica's ear on the shared database: a connection of its own that
//! `LISTEN`s on the channels the store notifies, turning what it hears into
//! [`StoreChange`]s, and that comes back with a bounded backoff when the
//! connection drops.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::mpsc;

use super::snapshots::READ_NEWEST_POSITION;
use super::{BREAKPOINTS_CHANNEL, CONNECT_TIMEOUT, READ_VERSION, SNAPSHOTS_CHANNEL};
use crate::store::{StoreChange, StoreError, StoreResult};

/// Changes buffered for the replica before the listener waits for it to catch up.
const FEED_BUFFER: usize = 64;
/// The wait before the first reconnection attempt; it doubles with each failure.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The longest wait between reconnection attempts.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Starts listening to the database `options` describe; the task ends when
/// the returned receiver is dropped.
pub(super) fn spawn(options: PgConnectOptions, location: String) -> mpsc::Receiver<StoreChange> {
    let (sender, receiver) = mpsc::channel(FEED_BUFFER);
    tokio::spawn(async move {
        tokio::select! {
            () = follow(options, &location, &sender) => {}
            () = sender.closed() => {}
        }
    });
    receiver
}

/// Listens, and listens again after every lost connection, until `changes` closes.
async fn follow(options: PgConnectOptions, location: &str, changes: &mpsc::Sender<StoreChange>) {
    // A pool of its own, of one connection, which the listener holds for ever:
    // it never takes a connection from the queries'.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(CONNECT_TIMEOUT)
        .connect_lazy_with(options);
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        match listen(&pool, location, changes, &mut backoff).await {
            Ok(()) => return,
            Err(error) => tracing::warn!(
                database = location,
                %error,
                retry_in = ?backoff,
                "lost the connection that hears of other replicas' changes; until it is back, they \
                 arrive by the periodic re-read"
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// One connection's worth of listening: `Ok` when `changes` closed, `Err`
/// when the connection failed or was lost.
async fn listen(
    pool: &PgPool,
    location: &str,
    changes: &mpsc::Sender<StoreChange>,
    backoff: &mut Duration,
) -> StoreResult<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection ends this function; `follow` reconnects with a backoff.
    listener.eager_reconnect(false);
    listener
        .listen_all([BREAKPOINTS_CHANNEL, SNAPSHOTS_CHANNEL])
        .await?;
    *backoff = RECONNECT_BACKOFF_MIN;
    tracing::debug!(database = location, "listening for changes of other replicas");
    // Whatever was committed while nobody listened: read once listening, so
    // nothing falls between the read and the first notification.
    let version: i64 = sqlx::query_scalar(READ_VERSION).fetch_one(&mut listener).await?;
    let seq: Option<i64> = sqlx::query_scalar(READ_NEWEST_POSITION)
        .fetch_one(&mut listener)
        .await?;
    let current = [
        StoreChange::Breakpoints {
            version: version.max(0) as u64,
        },
        StoreChange::Snapshots {
            seq: seq.unwrap_or(0),
        },
    ];
    for change in current {
        if changes.send(change).await.is_err() {
            return Ok(());
        }
    }
    loop {
        let Some(notification) = listener.try_recv().await? else {
            return Err(StoreError("the database closed the connection".into()));
        };
        let Some(change) = parse(notification.channel(), notification.payload()) else {
            tracing::warn!(
                channel = notification.channel(),
                payload = notification.payload(),
                "ignoring a notification this version does not understand"
            );
            continue;
        };
        if changes.send(change).await.is_err() {
            return Ok(());
        }
    }
}

/// The change a notification on `channel` with `payload` announces.
fn parse(channel: &str, payload: &str) -> Option<StoreChange> {
    match channel {
        BREAKPOINTS_CHANNEL => payload
            .parse()
            .ok()
            .map(|version| StoreChange::Breakpoints { version }),
        SNAPSHOTS_CHANNEL => payload.parse().ok().map(|seq| StoreChange::Snapshots { seq }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_become_changes_and_strangers_are_ignored() {
        assert_eq!(
            parse(BREAKPOINTS_CHANNEL, "42"),
            Some(StoreChange::Breakpoints { version: 42 })
        );
        assert_eq!(
            parse(SNAPSHOTS_CHANNEL, "7"),
            Some(StoreChange::Snapshots { seq: 7 })
        );
        assert_eq!(parse(BREAKPOINTS_CHANNEL, "-1"), None);
        assert_eq!(parse(SNAPSHOTS_CHANNEL, "many"), None);
        assert_eq!(parse("someone_else", "1"), None);
    }
}
