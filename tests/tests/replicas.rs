//! Several control-plane replicas on one PostgreSQL database, as behind a
//! load balancer: whatever is changed through one replica reaches agents
//! connected to any other, snapshots are stored once whichever replica an
//! agent's retry lands on, and a restarted replica loses nothing.
//!
//! Needs the test PostgreSQL (`KEYHOLE_TEST_DATABASE_URL`); each test works
//! in a database of its own, dropped at its end.

use std::path::Path;
use std::time::{Duration, Instant};

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::token::SessionVerifier;
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use keyhole_proto::v1::{
    BreakpointSet, ProbeSite, RegisterRequest, Snapshot, UploadSnapshotsRequest, UploadSnapshotsResponse,
    WatchBreakpointsRequest,
};
use keyhole_tests::{break_set_args, Server, TestDatabase, PUSH_TIMEOUT};
use serde_json::Value as Json;
use tempfile::TempDir;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Streaming;

/// The acceptance criterion: a breakpoint set through one replica
/// reaches an agent connected to another within this.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);
/// The server's `STORE_REREAD`: how often each replica re-reads the database
/// in case a notification was lost.
const STORE_REREAD: Duration = Duration::from_secs(5);
/// What a re-read may take beyond its interval on a busy machine.
const REREAD_MARGIN: Duration = Duration::from_secs(2);
/// The server's `VERIFIED_TOKEN_TTL`: how long a replica trusts a token the
/// database vouched for before asking again.
const VERIFIED_TOKEN_TTL: Duration = Duration::from_secs(2);
/// What a refused call may take beyond that on a busy machine.
const REFUSAL_MARGIN: Duration = Duration::from_secs(1);
/// How long a replica gets to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerToken>>;

/// Replica A and replica B of one fresh database, an agent token and an open session.
struct Replicas {
    a: Server,
    b: Server,
    agent_token: String,
    session_id: String,
    // Dropped after the servers: the database last, once nothing uses it.
    dir_a: TempDir,
    _dir_b: TempDir,
    database: TestDatabase,
}

fn replica(data_dir: &Path, database: &TestDatabase) -> Server {
    Server::start_with(data_dir, "127.0.0.1:0", &["--database", &database.url])
}

impl Replicas {
    fn start() -> Replicas {
        let database = TestDatabase::create();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = replica(dir_a.path(), &database);
        assert!(
            !a.admin_token.is_empty(),
            "the first replica creates the admin token"
        );
        let mut b = replica(dir_b.path(), &database);
        assert!(
            b.admin_token.is_empty(),
            "a replica joining a database with tokens writes no admin token"
        );
        b.admin_token = a.admin_token.clone();
        let agent_token = a.token("agent");
        let session = b
            .cli(&["session", "open", "--name", "alice", "-o", "json"])
            .json();
        Replicas {
            session_id: session["id"].as_str().unwrap().to_owned(),
            a,
            b,
            agent_token,
            dir_a,
            _dir_b: dir_b,
            database,
        }
    }

    /// An agent of service `shop` connected to `server`, registered as `instance`.
    async fn agent(&self, server: &Server, instance: &str) -> (AgentClient, String) {
        let mut client = server.agent(&self.agent_token).await;
        let registration = RegisterRequest {
            service: "shop".into(),
            instance_id: instance.into(),
            probes: vec![ProbeSite {
                label: "checkout.discount".into(),
                file: "src/checkout.rs".into(),
                line: 42,
                module: "shop::checkout".into(),
                variables: vec!["total".into()],
            }],
            ..Default::default()
        };
        let agent_id = client.register(registration).await.unwrap().into_inner().agent_id;
        (client, agent_id)
    }

    /// The breakpoint sets `server` streams to `instance`, once the first (current) one arrived.
    async fn watching(&self, server: &Server, instance: &str) -> (Streaming<BreakpointSet>, BreakpointSet) {
        let (mut client, agent_id) = self.agent(server, instance).await;
        let request = WatchBreakpointsRequest {
            agent_id,
            known_version: 0,
        };
        let mut sets = client.watch_breakpoints(request).await.unwrap().into_inner();
        let first = next_set_where(&mut sets, PUSH_TIMEOUT, |_| true).await;
        (sets, first)
    }

    /// An agent `instance` watching `watched`, once it holds a breakpoint set
    /// through `setter`: the stream, and the set holding the breakpoint.
    async fn holding_breakpoint(
        &self,
        watched: &Server,
        instance: &str,
        setter: &Server,
    ) -> (Streaming<BreakpointSet>, BreakpointSet) {
        let (mut sets, _) = self.watching(watched, instance).await;
        let breakpoint_id = self.set_breakpoint(setter);
        let held = next_set_where(&mut sets, PUSH_TIMEOUT, |set| holds(set, &breakpoint_id)).await;
        (sets, held)
    }

    /// Sets a breakpoint through `server`'s CLI; returns its id.
    fn set_breakpoint(&self, server: &Server) -> String {
        let mut args = break_set_args("shop", "checkout.discount", &self.session_id, &[]);
        args.extend(["-o", "json"]);
        server.cli(&args).json()["id"].as_str().unwrap().to_owned()
    }
}

/// The next set `sets` streams that satisfies `wanted`, within `timeout`.
async fn next_set_where(
    sets: &mut Streaming<BreakpointSet>,
    timeout: Duration,
    wanted: impl Fn(&BreakpointSet) -> bool,
) -> BreakpointSet {
    tokio::time::timeout(timeout, async {
        loop {
            let set = sets
                .message()
                .await
                .expect("stream healthy")
                .expect("stream open");
            if wanted(&set) {
                return set;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such breakpoint set within {timeout:?}"))
}

fn holds(set: &BreakpointSet, breakpoint_id: &str) -> bool {
    set.breakpoints.iter().any(|b| b.id == breakpoint_id)
}

fn key_ids(set: &BreakpointSet) -> Vec<&str> {
    set.keys.iter().map(|k| k.key_id.as_str()).collect()
}

fn listed_ids(list: &Json) -> Vec<&str> {
    list.as_array()
        .expect("a JSON list")
        .iter()
        .map(|item| item["id"].as_str().expect("an id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breakpoint_set_through_one_replica_reaches_an_agent_of_another_within_a_second() {
    let replicas = Replicas::start();
    let (mut sets_b, first) = replicas.watching(&replicas.b, "shop-1").await;
    assert!(first.breakpoints.is_empty(), "nothing is set yet");

    let started = Instant::now();
    let breakpoint_id = replicas.set_breakpoint(&replicas.a);
    let committed = started.elapsed();
    let pushed = next_set_where(&mut sets_b, PUSH_TIMEOUT, |set| holds(set, &breakpoint_id)).await;
    let received = started.elapsed();
    eprintln!(
        "propagation: `keyhole break set` through A returned after {committed:?}; \
         the agent on B had the breakpoint {received:?} after the CLI started"
    );
    assert!(
        received < PROPAGATION_BOUND,
        "the agent on B received the breakpoint after {received:?}; the bound is {PROPAGATION_BOUND:?}"
    );
    assert_eq!(pushed.breakpoints[0].session_id, replicas.session_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breakpoint_deleted_through_one_replica_leaves_the_set_another_streams() {
    let replicas = Replicas::start();
    let (mut sets_a, held) = replicas
        .holding_breakpoint(&replicas.a, "shop-1", &replicas.a)
        .await;
    let breakpoint_id = &held.breakpoints[0].id;

    replicas.b.cli(&["break", "delete", breakpoint_id]).ok();
    let after = next_set_where(&mut sets_a, PUSH_TIMEOUT, |set| !holds(set, breakpoint_id)).await;
    assert!(after.breakpoints.is_empty(), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_closed_and_keys_rotated_through_one_replica_reach_an_agent_of_another() {
    let replicas = Replicas::start();
    let (mut sets_a, held) = replicas
        .holding_breakpoint(&replicas.a, "shop-1", &replicas.b)
        .await;
    let breakpoint_id = &held.breakpoints[0].id;

    replicas.b.cli(&["session", "close", &replicas.session_id]).ok();
    next_set_where(&mut sets_a, PUSH_TIMEOUT, |set| !holds(set, breakpoint_id)).await;

    let rotated = replicas
        .b
        .cli(&["keys", "rotate", "--retire-previous", "-o", "json"])
        .json();
    let signing = rotated
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["signing"] == true)
        .expect("a signing key")["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!key_ids(&held).contains(&signing.as_str()));
    let with_new_keys = next_set_where(&mut sets_a, PUSH_TIMEOUT, |set| {
        key_ids(set) == [signing.as_str()]
    })
    .await;

    // Replica A signs new sessions with the new key too, not with a retired one.
    let session = replicas.a.cli(&["session", "open", "-o", "json"]).json();
    let verifier = SessionVerifier::from_keys(&with_new_keys.keys).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    verifier
        .verify(session["token"].as_str().unwrap(), now)
        .expect("a session opened through A verifies with the keys B rotated to");
}

fn snapshot(id: &str, session_id: &str) -> Snapshot {
    Snapshot {
        id: id.into(),
        breakpoint_id: "bp-x".into(),
        session_id: session_id.into(),
        probe_label: "checkout.discount".into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        ..Default::default()
    }
}

async fn try_upload(
    client: &mut AgentClient,
    agent_id: &str,
    batch: &[Snapshot],
) -> Result<UploadSnapshotsResponse, tonic::Status> {
    let request = UploadSnapshotsRequest {
        agent_id: agent_id.to_owned(),
        snapshots: batch.to_vec(),
        drops: vec![],
    };
    client
        .upload_snapshots(request)
        .await
        .map(tonic::Response::into_inner)
}

async fn upload(client: &mut AgentClient, agent_id: &str, batch: &[Snapshot]) -> UploadSnapshotsResponse {
    try_upload(client, agent_id, batch).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_token_revoked_through_one_replica_is_refused_there_at_once_and_by_the_other_soon() {
    let replicas = Replicas::start();
    let (mut to_a, agent_a) = replicas.agent(&replicas.a, "shop-1").await;
    let (mut to_b, agent_b) = replicas.agent(&replicas.b, "shop-2").await;
    // Both replicas have just checked the token, and trust it for a while.
    upload(&mut to_a, &agent_a, &[snapshot("snap-a", &replicas.session_id)]).await;
    upload(&mut to_b, &agent_b, &[snapshot("snap-b", &replicas.session_id)]).await;

    let token_id = replicas.agent_token.split('_').nth(1).unwrap();
    replicas.a.cli(&["token", "revoke", token_id]).ok();
    let revoked = Instant::now();
    let refused_by_a = try_upload(&mut to_a, &agent_a, &[snapshot("snap-a2", "")])
        .await
        .unwrap_err();
    assert_eq!(
        refused_by_a.code(),
        tonic::Code::Unauthenticated,
        "{refused_by_a}"
    );

    let mut n = 0;
    let refused_by_b = loop {
        n += 1;
        match try_upload(&mut to_b, &agent_b, &[snapshot(&format!("snap-b{n}"), "")]).await {
            Ok(_) => assert!(
                revoked.elapsed() < VERIFIED_TOKEN_TTL + REFUSAL_MARGIN,
                "B still takes uploads {:?} after the revocation",
                revoked.elapsed()
            ),
            Err(status) => break status,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        refused_by_b.code(),
        tonic::Code::Unauthenticated,
        "{refused_by_b}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_batch_sent_to_both_replicas_is_stored_once() {
    let replicas = Replicas::start();
    let (mut to_a, agent_id) = replicas.agent(&replicas.a, "shop-1").await;
    // The same agent, its retries balanced onto the other replica.
    let mut to_b = replicas.b.agent(&replicas.agent_token).await;
    let watch_b = replicas.b.cli_running(&[
        "snapshots",
        "watch",
        "--session",
        &replicas.session_id,
        "-o",
        "json",
    ]);
    // The watch starts from "now": give it a moment to subscribe.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let batch = [
        snapshot("snap-1", &replicas.session_id),
        snapshot("snap-2", &replicas.session_id),
    ];
    let first = upload(&mut to_a, &agent_id, &batch).await;
    let retried_on_a = upload(&mut to_a, &agent_id, &batch).await;
    let retried_on_b = upload(&mut to_b, &agent_id, &batch).await;
    let outcomes = [first, retried_on_a, retried_on_b].map(|o| (o.stored, o.duplicates));
    assert_eq!(outcomes, [(2, 0), (0, 2), (0, 2)]);

    let watched: Vec<Json> = (0..2)
        .map(|_| {
            watch_b
                .next_line(PUSH_TIMEOUT)
                .expect("B's watch prints A's snapshots")
        })
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect();
    drop(watch_b);
    assert_eq!(
        watched
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["snap-1", "snap-2"]
    );

    let listed = replicas.b.cli(&["snapshots", "list", "-o", "json"]).json();
    assert_eq!(
        listed_ids(&listed),
        ["snap-2", "snap-1"],
        "stored once, newest first"
    );
    let shown = replicas
        .b
        .cli(&["snapshots", "get", "snap-1", "-o", "json"])
        .json();
    assert_eq!(shown["service"], "shop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_stamped_with_the_latest_registration_of_their_agent_id_whichever_replica_took_it() {
    let replicas = Replicas::start();
    let register = |service: &str, instance_id: &str| RegisterRequest {
        service: service.into(),
        instance_id: instance_id.into(),
        ..Default::default()
    };
    // Two registrations that name the same agent id, `shop/eu/1`.
    let mut to_a = replicas.a.agent(&replicas.agent_token).await;
    let agent_id = to_a
        .register(register("shop/eu", "1"))
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    upload(&mut to_a, &agent_id, &[snapshot("before", "")]).await;
    let mut to_b = replicas.b.agent(&replicas.agent_token).await;
    let again = to_b
        .register(register("shop", "eu/1"))
        .await
        .unwrap()
        .into_inner()
        .agent_id;
    assert_eq!(again, agent_id);

    upload(&mut to_a, &agent_id, &[snapshot("after", "")]).await;
    let origin = |id: &str| {
        let shown = replicas.a.cli(&["snapshots", "get", id, "-o", "json"]).json();
        (shown["service"].clone(), shown["instance_id"].clone())
    };
    assert_eq!(origin("before"), ("shop/eu".into(), "1".into()));
    assert_eq!(
        origin("after"),
        ("shop".into(), "eu/1".into()),
        "A does not stamp what it remembered of the earlier registration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_keeps_everything() {
    let mut replicas = Replicas::start();
    let (mut client, agent_id) = replicas.agent(&replicas.b, "shop-1").await;
    let breakpoint_id = replicas.set_breakpoint(&replicas.a);
    upload(
        &mut client,
        &agent_id,
        &[snapshot("snap-1", &replicas.session_id)],
    )
    .await;
    let viewer = replicas.a.token("viewer");
    let admin_token_file = replicas.dir_a.path().join("admin.token");
    let admin_token = std::fs::read_to_string(&admin_token_file).unwrap();

    replicas.a.restart(STOP_GRACE);
    let a = &replicas.a;
    assert_eq!(
        std::fs::read_to_string(&admin_token_file).unwrap(),
        admin_token,
        "a restart writes no new admin token"
    );
    let breakpoints = a.cli(&["break", "list", "-o", "json"]).json();
    assert_eq!(listed_ids(&breakpoints), [breakpoint_id.as_str()]);
    let sessions = a.cli(&["session", "list", "-o", "json"]).json();
    assert_eq!(listed_ids(&sessions), [replicas.session_id.as_str()]);
    let snapshots = a.cli(&["snapshots", "list", "-o", "json"]).json();
    assert_eq!(listed_ids(&snapshots), ["snap-1"]);
    let services = a.cli_as(&viewer, &["services", "list", "-o", "json"]).json();
    assert_eq!(
        services[0]["name"], "shop",
        "the viewer token still works: {services}"
    );
    let (_sets, first) = replicas.watching(a, "shop-2").await;
    assert!(holds(&first, &breakpoint_id), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_notification_is_lost_arrives_by_the_periodic_reread() {
    let replicas = Replicas::start();
    let (mut sets_b, held) = replicas
        .holding_breakpoint(&replicas.b, "shop-1", &replicas.a)
        .await;
    let breakpoint_id = &held.breakpoints[0].id;

    // What a replica does when it deletes a breakpoint, without the pg_notify
    // that tells the others: every replica misses the notification.
    let started = Instant::now();
    replicas.database.execute(&format!(
        "UPDATE breakpoints SET deleted_at = 1 WHERE id = '{breakpoint_id}'; \
         UPDATE meta SET value = value + 1 WHERE key = 'breakpoint_version';"
    ));
    let within = STORE_REREAD + REREAD_MARGIN;
    next_set_where(&mut sets_b, within, |set| !holds(set, breakpoint_id)).await;
    eprintln!(
        "the unannounced deletion reached the agent on B after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_whose_database_is_unreachable_says_so_in_one_line_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(keyhole_tests::keyhole_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env(
            "KEYHOLE_DATABASE_URL",
            "postgres://keyhole:s3cret@127.0.0.1:1/keyhole",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr
            .starts_with("error: cannot connect to the database at postgres://keyhole@127.0.0.1:1/keyhole: "),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
}
