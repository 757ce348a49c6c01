//! What every backend promises, checked against each: SQLite in a temporary
//! directory and PostgreSQL in a database of its own on the test server
//! (`KEYHOLE_TEST_DATABASE_URL`), dropped afterwards. This file holds the
//! fixtures; the tests are in its submodules.

mod audit_and_retention;
mod every_backend;
mod shared_database;
mod snapshots;

use std::str::FromStr;
use std::sync::Arc;

use keyhole_proto::v1::{
    Breakpoint, DropCount, Instance, InstanceStatus, ProbeSite, Snapshot, SnapshotFilter,
};
use prost::Message as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Executor as _};
use tempfile::TempDir;

use super::*;
use crate::auth::Role;

/// The server the PostgreSQL tests create their databases on.
const TEST_DATABASE_ENV: &str = "KEYHOLE_TEST_DATABASE_URL";
const DEFAULT_TEST_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own on the test server, dropped with this.
struct FreshDatabase {
    server: PgConnectOptions,
    name: String,
}

impl FreshDatabase {
    async fn create() -> FreshDatabase {
        let url = std::env::var(TEST_DATABASE_ENV).unwrap_or_else(|_| DEFAULT_TEST_DATABASE.into());
        let server = PgConnectOptions::from_str(&url).expect("the test database URL parses");
        let mut connection = server.connect().await.unwrap_or_else(|e| {
            panic!("cannot reach the test PostgreSQL at {url} ({e}); start it or set {TEST_DATABASE_ENV}")
        });
        let name = format!("keyhole_test_{}", crate::ids::random_hex(8));
        connection
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create a test database");
        FreshDatabase { server, name }
    }

    fn options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect_with(self.options())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which cannot be blocked on: use one of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut connection = server.connect().await.map_err(std::io::Error::other)?;
                connection
                    .execute(drop.as_str())
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

enum Place {
    Sqlite(TempDir),
    Postgres(Box<FreshDatabase>),
}

/// An empty store of one backend, and where it keeps its data.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    place: Place,
}

impl Backend {
    /// Another store on the same data: a restarted process, or another replica.
    async fn open_again(&self) -> Arc<dyn Store> {
        match &self.place {
            Place::Sqlite(dir) => Arc::new(SqliteStore::open(dir.path()).await.expect("reopen SQLite")),
            Place::Postgres(database) => Arc::new(database.store().await),
        }
    }
}

/// One empty store of each backend.
async fn backends() -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = SqliteStore::open(dir.path()).await.expect("open SQLite");
    let database = FreshDatabase::create().await;
    let postgres = database.store().await;
    vec![
        Backend {
            name: "sqlite",
            store: Arc::new(sqlite),
            place: Place::Sqlite(dir),
        },
        Backend {
            name: "postgres",
            store: Arc::new(postgres),
            place: Place::Postgres(Box::new(database)),
        },
    ]
}

fn session(id: &str, created_at: i64, expires_at: i64) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        name: format!("{id} name"),
        creator: "alice".into(),
        key_id: "key-1".into(),
        created_at,
        expires_at,
        closed_at: None,
    }
}

fn breakpoint(id: &str, service: &str, session_id: &str, created_at: i64, expires_at: i64) -> Breakpoint {
    Breakpoint {
        id: id.into(),
        service: service.into(),
        session_id: session_id.into(),
        probe_label: "checkout.discount".into(),
        created_at_unix_ms: created_at,
        expires_at_unix_ms: expires_at,
        ..Default::default()
    }
}

fn snapshot(id: &str, breakpoint_id: &str, session_id: &str, trace_id: &str) -> Snapshot {
    Snapshot {
        id: id.into(),
        breakpoint_id: breakpoint_id.into(),
        session_id: session_id.into(),
        service: "shop".into(),
        trace_id: trace_id.into(),
        received_at_unix_ms: 1_000,
        ..Default::default()
    }
}

fn instance(service: &str, instance_id: &str, last_seen: i64) -> InstanceRecord {
    InstanceRecord {
        service: service.into(),
        instance: Instance {
            agent_id: format!("{service}/{instance_id}"),
            instance_id: instance_id.into(),
            last_seen_unix_ms: last_seen,
            ..Default::default()
        },
    }
}

fn probe(label: &str, line: u32) -> ProbeSite {
    ProbeSite {
        label: label.into(),
        line,
        ..Default::default()
    }
}

fn token(id: &str, role: Role, created_at: i64) -> ApiTokenRecord {
    ApiTokenRecord {
        id: id.into(),
        name: format!("{id} name"),
        role,
        secret_hash: vec![7; 32],
        creator: "admin".into(),
        created_at,
        revoked_at: None,
    }
}

/// An upload of `agent_id`, registered with `service`, holding only `drops`.
fn empty_upload(agent_id: &str, service: &str, at: i64, drops: &[DropCount]) -> Upload {
    Upload {
        agent_id: agent_id.into(),
        service: service.into(),
        at,
        snapshots: Vec::new(),
        drops: drops.to_vec(),
    }
}

fn ids_of<'a>(items: impl IntoIterator<Item = &'a Snapshot>) -> Vec<&'a str> {
    items.into_iter().map(|s| s.id.as_str()).collect()
}
