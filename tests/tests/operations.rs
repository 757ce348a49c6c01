//! Operating the control plane, with real server processes and the real CLI:
//! the audit log of who changed and viewed what, snapshot retention, and the
//! endpoints load balancers and scrapers call (`/readyz`, `/metrics`), on
//! SQLite and on PostgreSQL (`KEYHOLE_TEST_DATABASE_URL`, a database per test).

#[path = "operations/prometheus.rs"]
mod prometheus;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use keyhole_proto::v1::{
    DropCount, DropReason, ProbeSite, RegisterRequest, Snapshot, UploadSnapshotsRequest,
    UploadSnapshotsResponse, WatchBreakpointsRequest,
};
use keyhole_tests::web_ui::{bare_snapshot, cookie_for, get};
use keyhole_tests::{break_set_args, wait_until, Server, TestDatabase, PUSH_TIMEOUT};
use reqwest::StatusCode;
use serde_json::Value as Json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use prometheus::parse_prometheus;

type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerToken>>;

/// Retention as the retention tests run it: snapshots live 8 seconds, 5 per
/// breakpoint, and the server looks every second, deleting 4 at a time.
const RETENTION_FLAGS: [&str; 10] = [
    "--retain-snapshots-for",
    "8s",
    "--retain-snapshots-per-breakpoint",
    "5",
    "--retention-interval",
    "1s",
    "--retention-batch-size",
    "4",
    "--retention-batch-pause-ms",
    "50",
];
/// The retention tests' `--retain-snapshots-for`.
const RETAIN_FOR: Duration = Duration::from_secs(8);
/// How long retention may take to get to what it must delete on a busy machine.
const RETENTION_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a replica may take to notice its database went away, or came back.
const READINESS_TIMEOUT: Duration = Duration::from_secs(30);

/// An agent of service `shop` registered with `server`, and its agent id.
async fn shop_agent(server: &Server) -> (AgentClient, String) {
    let mut client = server.agent(&server.token("agent")).await;
    let registration = RegisterRequest {
        service: "shop".into(),
        instance_id: "shop-1".into(),
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

async fn upload(
    agent: &mut AgentClient,
    agent_id: &str,
    snapshots: Vec<Snapshot>,
    drops: Vec<DropCount>,
) -> Result<UploadSnapshotsResponse, tonic::Status> {
    let request = UploadSnapshotsRequest {
        agent_id: agent_id.into(),
        snapshots,
        drops,
    };
    agent.upload_snapshots(request).await.map(|r| r.into_inner())
}

/// Snapshots `<prefix>-<n>` of `breakpoint_id` for each `n` in `numbers`.
fn snapshots(prefix: &str, breakpoint_id: &str, numbers: std::ops::Range<usize>) -> Vec<Snapshot> {
    numbers
        .map(|n| bare_snapshot(&format!("{prefix}-{n}"), "checkout.discount", breakpoint_id, ""))
        .collect()
}

/// A token created through the CLI: (id, secret).
fn token(server: &Server, role: &str, name: &str) -> (String, String) {
    let created = server
        .cli(&["token", "create", "--role", role, "--name", name, "-o", "json"])
        .json();
    let field = |key: &str| created[key].as_str().expect(key).to_owned();
    (field("id"), field("secret"))
}

fn field<'a>(item: &'a Json, key: &str) -> &'a str {
    item[key].as_str().unwrap_or_else(|| panic!("no {key} in {item}"))
}

/// The audit log as `keyhole audit list` prints it in JSON, with `filters`.
fn audit_list(server: &Server, filters: &[&str]) -> Vec<Json> {
    let mut args = vec!["audit", "list", "-o", "json"];
    args.extend_from_slice(filters);
    server.cli(&args).json().as_array().expect("a list").clone()
}

/// The ids of the snapshots of `breakpoint_id`, newest first.
fn snapshot_ids(server: &Server, breakpoint_id: &str) -> Vec<String> {
    let listed = server
        .cli(&[
            "snapshots",
            "list",
            "--breakpoint",
            breakpoint_id,
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .json();
    listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| field(s, "id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_audited_with_who_did_it_from_where_and_to_what() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let _agent = shop_agent(&server).await;
    let (alice_id, alice) = token(&server, "debugger", "alice");
    let (_, viewer) = token(&server, "viewer", "val");

    let session = server
        .cli_as(
            &alice,
            &["session", "open", "--name", "checkout bug", "-o", "json"],
        )
        .json();
    let session_id = field(&session, "id").to_owned();
    let mut set = break_set_args("shop", "checkout.discount", &session_id, &[]);
    set.extend(["-o", "json"]);
    let breakpoint_id = field(&server.cli_as(&alice, &set).json(), "id").to_owned();
    server.cli_as(&alice, &["break", "delete", &breakpoint_id]).ok();
    server.cli_as(&alice, &["session", "close", &session_id]).ok();
    let (temporary_id, _) = token(&server, "viewer", "temporary");
    server.cli(&["token", "revoke", &temporary_id]).ok();
    server.cli(&["keys", "rotate"]).ok();

    let entries = audit_list(&server, &[]);
    let summary: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (field(e, "action"), field(e, "target")))
        .collect();
    let expected = [
        ("keys.rotate", "session-keys"),
        ("token.revoke", temporary_id.as_str()),
        ("token.create", temporary_id.as_str()),
        ("session.close", session_id.as_str()),
        ("breakpoint.delete", breakpoint_id.as_str()),
        ("breakpoint.set", breakpoint_id.as_str()),
        ("session.open", session_id.as_str()),
    ];
    assert_eq!(summary[..expected.len()], expected, "newest first: {entries:#?}");
    for entry in &entries {
        assert!(
            field(entry, "address").starts_with("127.0.0.1:"),
            "the CLI's address: {entry}"
        );
        assert!(!field(entry, "token_id").is_empty(), "{entry}");
    }
    for entry in &entries[3..7] {
        assert_eq!(field(entry, "actor"), format!("alice ({alice_id})"), "{entry}");
        assert_eq!(field(entry, "token_id"), alice_id, "{entry}");
    }
    assert!(
        field(&entries[5], "detail").contains("shop checkout.discount"),
        "the breakpoint's probe: {}",
        entries[5]
    );
    assert!(
        field(&entries[6], "detail").contains("checkout bug"),
        "{}",
        entries[6]
    );
    assert!(
        field(&entries[2], "detail").contains("role viewer"),
        "{}",
        entries[2]
    );

    let by_alice = audit_list(&server, &["--actor", "alice"]);
    assert_eq!(by_alice.len(), 4, "{by_alice:#?}");
    assert_eq!(audit_list(&server, &["--actor", &alice_id]), by_alice);
    let sets = audit_list(&server, &["--action", "breakpoint.set"]);
    assert_eq!(sets.len(), 1, "{sets:#?}");
    assert_eq!(audit_list(&server, &["--limit", "2"]).len(), 2);
    assert_eq!(audit_list(&server, &["--since", "1h"]).len(), entries.len());

    let table = server
        .cli(&["audit", "list", "--action", "session.open"])
        .ok()
        .to_owned();
    assert!(
        table.starts_with("TIME") && table.contains("ACTOR") && table.contains("ADDRESS"),
        "{table}"
    );
    assert!(
        table.contains("session.open") && table.contains(&session_id),
        "{table}"
    );

    server
        .cli_as(&viewer, &["audit", "list"])
        .refused(&["needs the admin role"]);
    server
        .cli_as(&alice, &["audit", "list"])
        .refused(&["needs the admin role"]);
    server
        .cli(&["audit", "list", "--action", "breakpoint.create"])
        .refused(&["unknown audit action", "breakpoint.set"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewing_listing_or_watching_snapshots_through_the_cli_or_the_web_ui_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (mut agent, agent_id) = shop_agent(&server).await;
    let (viewer_id, viewer) = token(&server, "viewer", "val");
    upload(&mut agent, &agent_id, snapshots("snap", "bp-1", 0..2), vec![])
        .await
        .unwrap();

    let shown = server
        .cli_as(&viewer, &["snapshots", "get", "snap-0", "-o", "json"])
        .json();
    assert_eq!(field(&shown, "id"), "snap-0");
    let cookie = cookie_for(&server.addr, &viewer).await;
    let page = get(&server.addr, "/snapshots/snap-1", Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:#?}");
    // Lists and watches hand out captured values too; each is an entry of its own.
    server
        .cli_as(&viewer, &["snapshots", "list", "--breakpoint", "bp-1"])
        .ok();
    let watch = server.cli_running(&["snapshots", "watch", "--session", "ses-1"]);
    let watched = wait_until(Duration::from_secs(10), || {
        !audit_list(&server, &["--action", "snapshot.watch"]).is_empty()
    });
    drop(watch);
    assert!(watched, "a watch is logged as it starts");

    let lists = audit_list(&server, &["--action", "snapshot.list"]);
    let listed: Vec<(&str, &str, &str)> = lists
        .iter()
        .map(|e| (field(e, "target"), field(e, "detail"), field(e, "actor")))
        .collect();
    let actor = format!("val ({viewer_id})");
    assert_eq!(
        listed,
        [("breakpoint=bp-1", "2 snapshots returned", actor.as_str())],
        "{lists:#?}"
    );
    let watches = audit_list(&server, &["--action", "snapshot.watch"]);
    assert_eq!(field(&watches[0], "target"), "session=ses-1", "{watches:#?}");

    let views = audit_list(&server, &["--action", "snapshot.view"]);
    let seen: Vec<(&str, &str)> = views
        .iter()
        .map(|e| (field(e, "target"), field(e, "actor")))
        .collect();
    assert_eq!(
        seen,
        [("snap-1", actor.as_str()), ("snap-0", actor.as_str())],
        "{views:#?}"
    );
    let (web, cli) = (field(&views[0], "address"), field(&views[1], "address"));
    assert!(
        web.starts_with("127.0.0.1:") && web.ends_with(" (web UI)"),
        "the browser's address: {web}"
    );
    assert!(cli.starts_with("127.0.0.1:") && !cli.contains("web UI"), "{cli}");
    assert!(
        field(&views[1], "detail").contains("checkout.discount"),
        "{views:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_or_view_whose_audit_entry_cannot_be_written_is_refused_and_not_done() {
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), "127.0.0.1:0", &["--database", &database.url]);
    let (mut agent, agent_id) = shop_agent(&server).await;
    upload(&mut agent, &agent_id, snapshots("snap", "bp-1", 0..1), vec![])
        .await
        .unwrap();
    let session = server.cli(&["session", "open", "-o", "json"]).json();
    let session_id = field(&session, "id").to_owned();

    database.execute(
        "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'the audit disk is full'; END $$; \
         CREATE TRIGGER audit_full BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
    );
    let unaudited = ["cannot write its audit log", "did not do this"];
    server
        .cli(&break_set_args("shop", "checkout.discount", &session_id, &[]))
        .refused(&unaudited);
    let breakpoints = server.cli(&["break", "list", "--all", "-o", "json"]).json();
    assert_eq!(breakpoints, Json::Array(vec![]), "no breakpoint was set");
    server.cli(&["session", "close", &session_id]).refused(&unaudited);
    let sessions = server.cli(&["session", "list", "-o", "json"]).json();
    assert_eq!(field(&sessions[0], "id"), session_id, "still open");
    let refused = server.cli(&["snapshots", "get", "snap-0"]);
    refused.refused(&unaudited);
    assert!(refused.stdout.is_empty(), "nothing of the snapshot shown");
    let refused = server.cli(&["snapshots", "list", "-o", "json"]);
    refused.refused(&unaudited);
    assert!(refused.stdout.is_empty(), "nothing of the list shown");
    server
        .cli(&["token", "create", "--role", "viewer"])
        .refused(&unaudited);
    assert_eq!(
        server
            .cli(&["token", "list", "-o", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2,
        "the admin's and the agent's"
    );

    database.execute("DROP TRIGGER audit_full ON audit_log");
    server.cli(&["session", "close", &session_id]).ok();
    assert_eq!(audit_list(&server, &["--action", "session.close"]).len(), 1);
}

/// Retention on `server` (started with [`RETENTION_FLAGS`]): the overflow of
/// a busy breakpoint goes first, then everything older than [`RETAIN_FOR`],
/// each a batch at a time, and nothing younger.
async fn retention_deletes_old_snapshots_and_overflow_in_batches(server: &Server) {
    let (mut agent, agent_id) = shop_agent(server).await;
    let mut old = snapshots("busy", "bp-busy", 0..23);
    old.extend(snapshots("quiet", "bp-quiet", 0..3));
    let uploaded = Instant::now();
    let stored = upload(&mut agent, &agent_id, old, vec![]).await.unwrap();
    assert_eq!(stored.stored, 26);

    assert!(
        wait_until(RETENTION_TIMEOUT, || snapshot_ids(server, "bp-busy").len() == 5),
        "the busy breakpoint keeps 5: {:?}",
        snapshot_ids(server, "bp-busy")
    );
    let newest: Vec<String> = (18..23).rev().map(|n| format!("busy-{n}")).collect();
    assert_eq!(snapshot_ids(server, "bp-busy"), newest);
    assert_eq!(snapshot_ids(server, "bp-quiet").len(), 3, "under the count");
    let metrics = scrape(server).await;
    assert_eq!(metrics["keyhole_snapshots_deleted_total{rule=\"count\"}"], 18.0);
    assert!(
        metrics["keyhole_retention_batches_total"] >= 5.0,
        "18 deleted 4 at a time take 5 batches: {metrics:?}"
    );

    // Uploaded half a retention period after the others, it outlives them by as much.
    tokio::time::sleep((RETAIN_FOR / 2).saturating_sub(uploaded.elapsed())).await;
    upload(
        &mut agent,
        &agent_id,
        snapshots("fresh", "bp-quiet", 0..1),
        vec![],
    )
    .await
    .unwrap();
    assert!(
        wait_until(RETENTION_TIMEOUT, || snapshot_ids(server, "bp-quiet")
            == ["fresh-0"]),
        "the old ones go, the fresh one stays: {:?}",
        snapshot_ids(server, "bp-quiet")
    );
    assert!(uploaded.elapsed() > RETAIN_FOR, "nothing went before its time");
    assert!(snapshot_ids(server, "bp-busy").is_empty());
    let metrics = scrape(server).await;
    assert_eq!(metrics["keyhole_snapshots_deleted_total{rule=\"age\"}"], 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_snapshots_and_each_breakpoints_overflow_in_batches_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), "127.0.0.1:0", &RETENTION_FLAGS);
    retention_deletes_old_snapshots_and_overflow_in_batches(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_snapshots_and_each_breakpoints_overflow_in_batches_on_postgres() {
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--database", database.url.as_str()];
    args.extend(RETENTION_FLAGS);
    let server = Server::start_with(dir.path(), "127.0.0.1:0", &args);
    retention_deletes_old_snapshots_and_overflow_in_batches(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_unready_while_its_database_is_away_and_loses_nothing_it_acked() {
    let database = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), "127.0.0.1:0", &["--database", &database.url]);
    let (mut agent, agent_id) = shop_agent(&server).await;
    let mut acked: Vec<String> = Vec::new();
    let before = snapshots("before", "bp-1", 0..10);
    acked.extend(upload_ids(&mut agent, &agent_id, before).await.unwrap());
    assert_eq!(readiness(&server).await, (StatusCode::OK, "ready\n".to_owned()));

    database.refuse_connections();
    let unready = readiness_becomes(&server, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(unready.starts_with("not ready: the storage"), "{unready}");
    // An agent uploading meanwhile gets no ack, and keeps its batch to send again.
    let during = snapshots("during", "bp-1", 0..10);
    match upload_ids(&mut agent, &agent_id, during.clone()).await {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
        Ok(ids) => acked.extend(ids),
    }
    let health = get(&server.addr, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "alive all the same");

    database.allow_connections();
    readiness_becomes(&server, StatusCode::OK).await;
    acked.extend(
        upload_ids(&mut agent, &agent_id, during)
            .await
            .expect("the retry is stored"),
    );
    let after = snapshots("after", "bp-1", 0..10);
    acked.extend(upload_ids(&mut agent, &agent_id, after).await.unwrap());

    let mut stored = snapshot_ids(&server, "bp-1");
    stored.sort();
    acked.sort();
    acked.dedup();
    assert_eq!(stored, acked, "every acked snapshot, once");
}

/// Uploads `batch`; the ids the control plane acked.
async fn upload_ids(
    agent: &mut AgentClient,
    agent_id: &str,
    batch: Vec<Snapshot>,
) -> Result<Vec<String>, tonic::Status> {
    let ids = batch.iter().map(|s| s.id.clone()).collect();
    upload(agent, agent_id, batch, vec![]).await.map(|_| ids)
}

/// What `/readyz` answers.
async fn readiness(server: &Server) -> (StatusCode, String) {
    let answer = get(&server.addr, "/readyz", None).await;
    (answer.status, answer.body)
}

/// The body of `/readyz` once it answers `status`, within [`READINESS_TIMEOUT`].
async fn readiness_becomes(server: &Server, status: StatusCode) -> String {
    let deadline = Instant::now() + READINESS_TIMEOUT;
    loop {
        let (answered, body) = readiness(server).await;
        if answered == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still answers {answered} ({body:?}) after {READINESS_TIMEOUT:?}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move_with_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let answer = get(&server.addr, path, None).await;
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (StatusCode::OK, body),
            "{path}"
        );
    }
    let before = scrape(&server).await;
    assert_eq!(before["keyhole_connected_agents"], 0.0);
    assert_eq!(before["keyhole_refused_hits_total{reason=\"hit_limit\"}"], 0.0);

    let (mut agent, agent_id) = shop_agent(&server).await;
    let watch = WatchBreakpointsRequest {
        agent_id: agent_id.clone(),
        known_version: 0,
    };
    let mut breakpoints = agent.watch_breakpoints(watch).await.unwrap().into_inner();
    tokio::time::timeout(PUSH_TIMEOUT, breakpoints.message())
        .await
        .expect("the first breakpoint set")
        .unwrap();
    let refused = DropCount {
        breakpoint_id: "bp-1".into(),
        reason: DropReason::HitLimit as i32,
        count: 4,
    };
    upload(
        &mut agent,
        &agent_id,
        snapshots("snap", "bp-1", 0..3),
        vec![refused],
    )
    .await
    .unwrap();
    upload(&mut agent, &agent_id, snapshots("snap", "bp-1", 2..3), vec![])
        .await
        .unwrap();

    let after = scrape(&server).await;
    let moved = |series: &str| after[series] - before.get(series).copied().unwrap_or(0.0);
    assert_eq!(after["keyhole_connected_agents"], 1.0);
    assert_eq!(moved("keyhole_snapshots_ingested_total{outcome=\"stored\"}"), 3.0);
    assert_eq!(
        moved("keyhole_snapshots_ingested_total{outcome=\"duplicate\"}"),
        1.0
    );
    assert_eq!(moved("keyhole_refused_hits_total{reason=\"hit_limit\"}"), 4.0);
    let uploads = "keyhole_rpc_duration_seconds_count{path=\"/keyhole.v1.AgentService/UploadSnapshots\"}";
    assert_eq!(moved(uploads), 2.0, "each call timed once");
    let registers = "keyhole_rpc_duration_seconds_count{path=\"/keyhole.v1.AgentService/Register\"}";
    assert_eq!(after[registers], 1.0);
    assert!(
        !after
            .keys()
            .any(|series| series.contains("/metrics") || series.contains("/readyz")),
        "only gRPC calls are timed"
    );
}

/// `/metrics`, checked to be Prometheus text, as its samples by series.
async fn scrape(server: &Server) -> BTreeMap<String, f64> {
    let answer = get(&server.addr, "/metrics", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:#?}");
    assert_eq!(
        answer.header("content-type"),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    parse_prometheus(&answer.body)
}
