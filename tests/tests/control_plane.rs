//! The control plane driven like a user drives it: the real `keyhole` binary
//! against a real server, and a fake agent speaking the real gRPC protocol.

use std::time::Duration;

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::token::SessionVerifier;
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use keyhole_proto::v1::{
    self, value::Kind, BreakpointSet, BreakpointState, InstanceStatus, ProbeSite, RegisterRequest,
    ReportStatusRequest, Snapshot, StackFrame, UploadSnapshotsRequest, UploadSnapshotsResponse,
    WatchBreakpointsRequest,
};
use keyhole_tests::{break_set_args, Server, PUSH_TIMEOUT};
use serde_json::Value as Json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Streaming;

fn probe(label: &str, line: u32, variables: &[&str]) -> ProbeSite {
    ProbeSite {
        label: label.into(),
        file: "src/checkout.rs".into(),
        line,
        module: "shop::checkout".into(),
        variables: variables.iter().map(|v| v.to_string()).collect(),
    }
}

fn shop_registration(instance: &str) -> RegisterRequest {
    RegisterRequest {
        service: "shop".into(),
        instance_id: instance.into(),
        version: "1.4.2".into(),
        labels: [("region".to_string(), "eu".to_string())].into(),
        probes: vec![
            probe("checkout.discount", 42, &["cart", "user_id", "total"]),
            probe("inventory.reserve", 77, &["sku", "qty"]),
        ],
        agent_version: "test".into(),
    }
}

fn text(value: &str) -> v1::Value {
    v1::Value {
        kind: Some(Kind::Text(v1::Text {
            value: value.into(),
            omitted_bytes: 0,
        })),
    }
}

fn field(name: &str, value: v1::Value) -> v1::Field {
    v1::Field {
        name: name.into(),
        value: Some(value),
    }
}

fn captured_snapshot(id: &str, breakpoint_id: &str, session_id: &str) -> Snapshot {
    let cart = v1::Value {
        kind: Some(Kind::Struct(v1::Struct {
            type_name: "shop::Cart".into(),
            fields: vec![
                field(
                    "items",
                    v1::Value {
                        kind: Some(Kind::List(v1::List {
                            items: vec![text("SKU-RED-SHOE")],
                            omitted_items: 3,
                        })),
                    },
                ),
                field("coupon", text("WINTER25")),
                field(
                    "card_number",
                    v1::Value {
                        kind: Some(Kind::Redacted(v1::Redacted {})),
                    },
                ),
            ],
            omitted_fields: 0,
        })),
    };
    Snapshot {
        id: id.into(),
        breakpoint_id: breakpoint_id.into(),
        session_id: session_id.into(),
        service: "forged-by-agent".into(),
        probe_label: "checkout.discount".into(),
        file: "src/checkout.rs".into(),
        line: 42,
        captured_at_unix_ms: 1_795_000_000_000,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        variables: vec![
            field("cart", cart),
            field(
                "user_id",
                v1::Value {
                    kind: Some(Kind::Int(1234)),
                },
            ),
            field(
                "total",
                v1::Value {
                    kind: Some(Kind::Float(149.5)),
                },
            ),
        ],
        stack: vec![
            StackFrame {
                function: "shop::checkout::apply_discount".into(),
                file: "src/checkout.rs".into(),
                line: 42,
                ..Default::default()
            },
            StackFrame {
                function: "shop::checkout::handler".into(),
                file: "src/checkout.rs".into(),
                line: 12,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

async fn next_set(stream: &mut Streaming<BreakpointSet>) -> BreakpointSet {
    tokio::time::timeout(PUSH_TIMEOUT, stream.message())
        .await
        .expect("a breakpoint set within the push timeout")
        .expect("stream healthy")
        .expect("stream open")
}

fn ids(set: &BreakpointSet) -> Vec<&str> {
    set.breakpoints.iter().map(|b| b.id.as_str()).collect()
}

/// A server with a registered `shop` instance, an agent client and an open session.
struct Shop {
    server: Server,
    agent: AgentServiceClient<InterceptedService<Channel, BearerToken>>,
    agent_token: String,
    agent_id: String,
    keys: Vec<v1::VerificationKey>,
    session_id: String,
}

impl Shop {
    async fn start(dir: &std::path::Path) -> Shop {
        let server = Server::start(dir);
        let agent_token = server.token("agent");
        let mut agent = server.agent(&agent_token).await;
        let registered = agent
            .register(shop_registration("shop-1"))
            .await
            .unwrap()
            .into_inner();
        let session = server
            .cli(&["session", "open", "--name", "alice", "-o", "json"])
            .json();
        Shop {
            session_id: session["id"].as_str().unwrap().to_owned(),
            agent_id: registered.agent_id,
            keys: registered.keys,
            server,
            agent,
            agent_token,
        }
    }

    /// `keyhole break set` on `probe` for the session, with `extra` flags.
    fn set_args<'a>(&'a self, probe: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        break_set_args("shop", probe, &self.session_id, extra)
    }

    /// Sets a breakpoint and returns its id.
    fn set_breakpoint(&self, probe: &str, extra: &[&str]) -> String {
        let mut args = self.set_args(probe, extra);
        args.extend(["-o", "json"]);
        self.server.cli(&args).json()["id"].as_str().unwrap().to_owned()
    }

    async fn watch(&mut self) -> Streaming<BreakpointSet> {
        let request = WatchBreakpointsRequest {
            agent_id: self.agent_id.clone(),
            known_version: 0,
        };
        self.agent.watch_breakpoints(request).await.unwrap().into_inner()
    }

    async fn upload(&mut self, snapshots: Vec<Snapshot>) -> UploadSnapshotsResponse {
        let request = UploadSnapshotsRequest {
            agent_id: self.agent_id.clone(),
            snapshots,
            drops: vec![],
        };
        self.agent.upload_snapshots(request).await.unwrap().into_inner()
    }
}

fn find<'a>(list: &'a Json, key: &str, value: &str) -> Option<&'a Json> {
    list.as_array()?.iter().find(|item| item[key] == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breakpoint_reaches_the_agent_and_its_snapshot_reaches_the_cli_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut shop = Shop::start(dir.path()).await;
    let server = &shop.server;
    assert_eq!(shop.agent_id, "shop/shop-1");
    assert!(!shop.keys.is_empty(), "the agent gets session verification keys");

    let services = server.cli(&["services", "list", "-o", "json"]).json();
    let listed = find(&services, "name", "shop").expect("shop is listed");
    assert_eq!(listed["instances"][0]["instance_id"], "shop-1");
    assert_eq!(listed["probe_count"], 2);
    let probes = server.cli(&["probes", "list", "--service", "shop"]);
    assert!(probes.ok().contains("checkout.discount") && probes.ok().contains("src/checkout.rs:77"));

    let session = server
        .cli(&["session", "open", "--ttl", "30m", "-o", "json"])
        .json();
    let verifier = SessionVerifier::from_keys(&shop.keys).unwrap();
    let claims = verifier
        .verify(session["token"].as_str().unwrap(), 1_795_000_000)
        .expect("the session token verifies with the agent's keys");
    assert_eq!(claims.session_id, session["id"].as_str().unwrap());

    let mut sets = shop.watch().await;
    assert!(
        next_set(&mut sets).await.breakpoints.is_empty(),
        "nothing is set yet"
    );

    let condition = "total > 100 && cart.coupon.starts_with(\"WINTER\")";
    let extra = [
        "--condition",
        condition,
        "--max-hits",
        "5",
        "--baggage",
        "tenant.id=acme",
        "-o",
        "json",
    ];
    let set = shop
        .server
        .cli(&shop.set_args("checkout.discount", &extra))
        .json();
    let breakpoint_id = set["id"].as_str().unwrap().to_owned();
    assert_eq!(set["limits"]["max_depth"], 3, "defaults are filled in");
    assert_eq!(set["max_hits"], 5);

    let pushed = next_set(&mut sets).await;
    assert_eq!(ids(&pushed), [breakpoint_id.as_str()]);
    let pushed_breakpoint = &pushed.breakpoints[0];
    assert_eq!(pushed_breakpoint.session_id, shop.session_id);
    assert_eq!(pushed_breakpoint.baggage_filters[0].key, "tenant.id");
    assert_eq!(pushed_breakpoint.condition, condition);

    let listed = shop.server.cli(&["break", "list", "-o", "json"]).json();
    assert!(find(&listed, "id", &breakpoint_id).is_some());

    let installed = InstanceStatus {
        breakpoint_id: breakpoint_id.clone(),
        state: BreakpointState::Installed as i32,
        ..Default::default()
    };
    let report = ReportStatusRequest {
        agent_id: shop.agent_id.clone(),
        statuses: vec![installed],
    };
    shop.agent.report_status(report).await.unwrap();
    let detail = shop.server.cli(&["break", "get", &breakpoint_id]);
    assert!(detail.ok().contains("checkout.discount"), "{detail:?}");
    assert!(
        detail.ok().contains("shop-1") && detail.ok().contains("installed"),
        "{detail:?}"
    );

    let snapshot = captured_snapshot("snap-0001", &breakpoint_id, &shop.session_id);
    let first = shop.upload(vec![snapshot.clone()]).await;
    assert_eq!((first.stored, first.duplicates), (1, 0));
    let retried = shop.upload(vec![snapshot]).await;
    assert_eq!(
        (retried.stored, retried.duplicates),
        (0, 1),
        "a retried batch is stored once"
    );

    let server = &shop.server;
    let snapshots = server
        .cli(&["snapshots", "list", "--session", &shop.session_id, "-o", "json"])
        .json();
    assert_eq!(snapshots.as_array().unwrap().len(), 1);
    assert_eq!(
        snapshots[0]["service"], "shop",
        "the service is the agent's registered one"
    );
    assert_eq!(snapshots[0]["instance_id"], "shop-1");
    let table = server.cli(&["snapshots", "list", "--breakpoint", &breakpoint_id]);
    assert!(table.ok().contains("snap-0001"));

    let shown = server.cli(&["snapshots", "get", "snap-0001"]);
    let shown = shown.ok();
    for expected in [
        "cart = shop::Cart",
        "[0] = \"SKU-RED-SHOE\"",
        "3 more items",
        "coupon = \"WINTER25\"",
        "card_number = <redacted>",
        "user_id = 1234",
        "shop::checkout::apply_discount",
        "at src/checkout.rs:42",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ] {
        assert!(
            shown.contains(expected),
            "snapshot view lacks {expected:?}:\n{shown}"
        );
    }
    let json = server
        .cli(&["snapshots", "get", "snap-0001", "-o", "json"])
        .json();
    assert_eq!(
        json["variables"][0]["value"]["kind"]["struct"]["type_name"],
        "shop::Cart"
    );
    assert_eq!(json["stack"][1]["function"], "shop::checkout::handler");

    server.cli(&["break", "delete", &breakpoint_id]).ok();
    assert!(
        next_set(&mut sets).await.breakpoints.is_empty(),
        "a deleted breakpoint is withdrawn"
    );
    let remaining = server.cli(&["break", "list", "-o", "json"]).json();
    assert!(find(&remaining, "id", &breakpoint_id).is_none());
    let all = server.cli(&["break", "list", "--all", "-o", "json"]).json();
    assert!(
        find(&all, "id", &breakpoint_id).is_some(),
        "deleted breakpoints are kept for the record"
    );
    server
        .cli(&["break", "delete", &breakpoint_id])
        .refused(&["already deleted"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(dir.path()).await;
    let (server, session_id) = (&shop.server, shop.session_id.as_str());
    let set = |extra: &[&str]| server.cli(&shop.set_args("checkout.discount", extra));
    set(&[]).ok();

    server.cli(&shop.set_args("checkout.dicsount", &[])).refused(&[
        "no probe `checkout.dicsount`",
        "keyhole probes list --service shop",
    ]);
    let other_service = [
        "break",
        "set",
        "--service",
        "shopp",
        "--probe",
        "checkout.discount",
    ];
    server
        .cli(&[&other_service[..], &["--session", session_id]].concat())
        .refused(&["unknown service `shopp`"]);
    let no_session = [
        "break",
        "set",
        "--service",
        "shop",
        "--probe",
        "checkout.discount",
    ];
    server
        .cli(&[&no_session[..], &["--session", "ses-nope"]].concat())
        .refused(&["unknown session `ses-nope`"]);
    set(&["--max-depth", "-1"]).refused(&["--max-depth must be 1 or more, got -1"]);
    set(&["--max-depth", "1000"]).refused(&["max_depth 1000 is above the server maximum of 10"]);
    set(&["--max-string", "99999999"]).refused(&["max_string_bytes 99999999", "maximum"]);
    set(&["--max-items", "0"]).refused(&["--max-items must be 1 or more"]);
    set(&["--max-hits", "100000"]).refused(&["max hits 100000 is out of range"]);
    set(&["--rate", "-3"]).refused(&["--rate must be", "above 0"]);
    set(&["--rate", "1e9"]).refused(&["rate 1000000000 per second is out of range"]);
    set(&["--expire", "5 parsecs"]).refused(&["--expire", "invalid duration \"5 parsecs\""]);
    set(&["--expire", "90"]).refused(&["--expire", "with a unit"]);
    set(&["--expire", "48h"]).refused(&["expiry of 172800s is out of range"]);
    set(&["--condition", "total >"]).refused(&["invalid condition", "column"]);
    set(&["--condition", "totl > 3"]).refused(&["unknown variable `totl`", "cart, user_id, total"]);
    set(&["--condition", "cart.password == \"x\""]).refused(&["`password` is redacted"]);
    set(&["--baggage", "tenant"]).refused(&["--baggage \"tenant\" is not KEY=VALUE"]);
    server
        .cli(&["session", "open", "--ttl", "3d"])
        .refused(&["session ttl of 259200s is above the maximum"]);
    server
        .cli(&["session", "open", "--ttl", "soon"])
        .refused(&["--ttl", "invalid duration"]);
    server
        .cli(&["snapshots", "get", "snap-missing"])
        .refused(&["no snapshot `snap-missing`"]);
    server
        .cli(&["break", "get", "bp-missing"])
        .refused(&["no breakpoint `bp-missing`"]);
    server
        .cli(&["token", "create", "--role", "root"])
        .refused(&["unknown role \"root\""]);

    let usage = server.cli(&["break", "set", "--service", "shop"]);
    assert_eq!(
        usage.code, 2,
        "missing required flags are a usage error: {usage:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_roles_decide_who_may_do_what() {
    let dir = tempfile::tempdir().unwrap();
    let shop = Shop::start(dir.path()).await;
    let server = &shop.server;
    let set_args = shop.set_args("checkout.discount", &[]);

    server
        .cli_as("kh_0000000000000000_wrong", &["services", "list"])
        .refused(&["API token is not valid", "KEYHOLE_TOKEN"]);
    server
        .cli_as("garbage", &["services", "list"])
        .refused(&["API token is not valid"]);

    let viewer = server.token("viewer");
    server.cli_as(&viewer, &["services", "list"]).ok();
    server.cli_as(&viewer, &["snapshots", "list"]).ok();
    server
        .cli_as(&viewer, &set_args)
        .refused(&["a viewer token cannot do this", "debugger role"]);
    server
        .cli_as(&viewer, &["session", "open"])
        .refused(&["a viewer token cannot do this"]);

    let debugger = server.token("debugger");
    server.cli_as(&debugger, &set_args).ok();
    server
        .cli_as(&debugger, &["token", "list"])
        .refused(&["a debugger token cannot do this", "admin role"]);
    server
        .cli_as(&shop.agent_token, &["snapshots", "list"])
        .refused(&["an agent token cannot do this"]);
    let mut viewer_as_agent = server.agent(&viewer).await;
    let refused = viewer_as_agent
        .register(shop_registration("shop-2"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let tokens = server.cli(&["token", "list", "-o", "json"]).json();
    let viewer_id = find(&tokens, "role", "viewer").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!tokens.to_string().contains(&viewer), "secrets are never listed");
    server.cli(&["token", "revoke", &viewer_id]).ok();
    server
        .cli_as(&viewer, &["services", "list"])
        .refused(&["API token is not valid"]);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let admin_token_file = server.data_dir.join("admin.token");
        let mode = std::fs::metadata(&admin_token_file).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the admin token is readable by its owner only"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_keeps_sessions_breakpoints_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let mut shop = Shop::start(dir.path()).await;
    let admin = shop.server.admin_token.clone();
    let breakpoint_id = shop.set_breakpoint("inventory.reserve", &[]);
    let snapshot = captured_snapshot("snap-before", &breakpoint_id, &shop.session_id);
    shop.upload(vec![snapshot.clone()]).await;

    let Shop {
        server,
        agent_token,
        session_id,
        ..
    } = shop;
    server.kill();
    let server = Server::start(dir.path());
    assert_eq!(server.admin_token, admin, "the admin token is not replaced");
    let sessions = server.cli(&["session", "list", "-o", "json"]).json();
    assert!(find(&sessions, "id", &session_id).is_some());
    let breakpoints = server.cli(&["break", "list", "-o", "json"]).json();
    assert!(find(&breakpoints, "id", &breakpoint_id).is_some());
    let stored = server
        .cli(&["snapshots", "get", "snap-before", "-o", "json"])
        .json();
    assert_eq!(stored["breakpoint_id"], breakpoint_id.as_str());

    let mut shop = Shop {
        agent: server.agent(&agent_token).await,
        server,
        agent_token,
        agent_id: "shop/shop-1".into(),
        keys: vec![],
        session_id,
    };
    let mut sets = shop.watch().await;
    assert_eq!(
        ids(&next_set(&mut sets).await),
        [breakpoint_id.as_str()],
        "agents get the stored set"
    );
    let again = shop.upload(vec![snapshot]).await;
    assert_eq!(
        again.duplicates, 1,
        "ids stored before the restart are still known"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakpoints_stop_being_sent_when_they_expire_or_their_session_closes() {
    let dir = tempfile::tempdir().unwrap();
    let mut shop = Shop::start(dir.path()).await;
    let mut sets = shop.watch().await;
    next_set(&mut sets).await;

    let short_id = shop.set_breakpoint("checkout.discount", &["--expire", "2s"]);
    assert_eq!(ids(&next_set(&mut sets).await), [short_id.as_str()]);
    let expired = next_set(&mut sets).await;
    assert!(
        expired.breakpoints.is_empty(),
        "the expired breakpoint is withdrawn"
    );
    let listed = shop.server.cli(&["break", "list", "-o", "json"]).json();
    assert!(find(&listed, "id", &short_id).is_none());

    let long_id = shop.set_breakpoint("inventory.reserve", &[]);
    assert_eq!(ids(&next_set(&mut sets).await), [long_id.as_str()]);
    shop.server.cli(&["session", "close", &shop.session_id]).ok();
    assert!(
        next_set(&mut sets).await.breakpoints.is_empty(),
        "closing the session withdraws its breakpoints"
    );
    shop.server
        .cli(&shop.set_args("inventory.reserve", &[]))
        .refused(&["is closed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_watch_prints_new_snapshots_as_they_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut shop = Shop::start(dir.path()).await;
    let mut watch = std::process::Command::new(keyhole_tests::keyhole_bin())
        .args(["snapshots", "watch", "--session", &shop.session_id, "-o", "json"])
        .env("KEYHOLE_ADDR", &shop.server.addr)
        .env("KEYHOLE_TOKEN", &shop.server.admin_token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // The watch starts from "now": give it a moment to subscribe, then upload
    // one snapshot of another session and one of ours.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ours = captured_snapshot("snap-ours", "bp-x", &shop.session_id);
    shop.upload(vec![
        captured_snapshot("snap-other", "bp-x", "ses-someone-else"),
        ours,
    ])
    .await;
    let line = received
        .recv_timeout(PUSH_TIMEOUT)
        .expect("the watch prints the new snapshot");
    let _ = watch.kill();
    let _ = watch.wait();
    let snapshot: Json = serde_json::from_str(&line).unwrap();
    assert_eq!(
        snapshot["id"], "snap-ours",
        "only the filtered session's snapshot is printed"
    );
}
