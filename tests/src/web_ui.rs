//! A control plane with something to look at, for the web UI's tests: two
//! fake agents (`frontend`, holding its breakpoint stream open, and
//! `inventory`), a debug session with a breakpoint, one snapshot with nested,
//! redacted, cut and hostile values, and three snapshots of one trace whose
//! hosts' clocks run backwards. Plus plain-HTTP helpers that sign in and
//! fetch pages with the token cookie set by hand.

use std::path::Path;

use keyhole_proto::bearer::BearerToken;
use keyhole_proto::v1::agent_service_client::AgentServiceClient;
use keyhole_proto::v1::{
    self, value::Kind, BaggageEntry, BreakpointSet, DropCount, DropReason, InstanceStatus, ProbeSite,
    RegisterRequest, ReportStatusRequest, Snapshot, StackFrame, TruncationReason, UploadSnapshotsRequest,
    WatchBreakpointsRequest,
};
use reqwest::header::{HeaderMap, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::{Server, PUSH_TIMEOUT};

type AgentClient = AgentServiceClient<InterceptedService<Channel, BearerToken>>;

/// The snapshot with everything in it.
pub const RICH_SNAPSHOT: &str = "snap-rich";
/// A string an agent captured that would run as script if not escaped.
pub const HOSTILE_TEXT: &str = "<script>alert(1)</script>";
pub const RICH_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The trace of the three timeline snapshots.
pub const TIMELINE_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
/// The timeline snapshots as (id, probe), parent first: each one's span is
/// the parent of the next one's, and each was captured *earlier* than its
/// parent by its host's clock.
pub const TIMELINE: [(&str, &str); 3] = [
    ("snap-root", "checkout.submit"),
    ("snap-child", "inventory.reserve"),
    ("snap-grandchild", "inventory.db"),
];
/// Where the timeline's probes are, as the agents registered them.
const TIMELINE_SITES: [(&str, u32); 3] = [("src/checkout.rs", 20), ("src/stock.rs", 31), ("src/db.rs", 88)];
/// Captured times of the fixture's snapshots are around here (2026-11-18).
pub const EPOCH_MS: i64 = 1_795_000_000_000;

fn probe(label: &str, file: &str, line: u32, variables: &[&str]) -> ProbeSite {
    ProbeSite {
        label: label.into(),
        file: file.into(),
        line,
        module: format!("{}::{}", label.split('.').next().unwrap_or("app"), "handlers"),
        variables: variables.iter().map(|v| v.to_string()).collect(),
    }
}

fn value(kind: Kind) -> v1::Value {
    v1::Value { kind: Some(kind) }
}

fn text(s: &str) -> v1::Value {
    value(Kind::Text(v1::Text {
        value: s.into(),
        omitted_bytes: 0,
    }))
}

fn field(name: &str, v: v1::Value) -> v1::Field {
    v1::Field {
        name: name.into(),
        value: Some(v),
    }
}

fn frame(function: &str, file: &str, line: u32) -> StackFrame {
    StackFrame {
        function: function.into(),
        file: file.into(),
        line,
        ..Default::default()
    }
}

/// A snapshot of `probe` with no variables, for tests to fill in.
pub fn bare_snapshot(id: &str, probe: &str, breakpoint_id: &str, session_id: &str) -> Snapshot {
    Snapshot {
        id: id.into(),
        breakpoint_id: breakpoint_id.into(),
        session_id: session_id.into(),
        probe_label: probe.into(),
        file: "src/app.rs".into(),
        line: 1,
        captured_at_unix_ms: EPOCH_MS,
        ..Default::default()
    }
}

/// A control plane with two fake agents and their snapshots; see the module docs.
pub struct UiFixture {
    pub server: Server,
    pub viewer_token: String,
    pub session_id: String,
    pub breakpoint_id: String,
    pub frontend: AgentClient,
    pub frontend_id: String,
    pub inventory: AgentClient,
    pub inventory_id: String,
    /// Kept open so `frontend` shows as connected.
    _watch: Streaming<BreakpointSet>,
}

impl UiFixture {
    pub async fn start(dir: &Path) -> UiFixture {
        let server = Server::start(dir);
        let agent_token = server.token("agent");
        let viewer_token = server.token("viewer");
        let mut frontend = server.agent(&agent_token).await;
        let frontend_id = frontend
            .register(RegisterRequest {
                service: "frontend".into(),
                instance_id: "frontend-1".into(),
                version: "2.3.0".into(),
                labels: [("region".to_string(), "eu-west".to_string())].into(),
                probes: vec![
                    probe(
                        "checkout.submit",
                        TIMELINE_SITES[0].0,
                        TIMELINE_SITES[0].1,
                        &["order"],
                    ),
                    probe(
                        "checkout.discount",
                        "src/checkout.rs",
                        42,
                        &["cart", "user_id", "total", "note", "tier"],
                    ),
                ],
                agent_version: "test".into(),
            })
            .await
            .expect("register frontend")
            .into_inner()
            .agent_id;
        let mut inventory = server.agent(&agent_token).await;
        let inventory_id = inventory
            .register(RegisterRequest {
                service: "inventory".into(),
                instance_id: "inventory-7".into(),
                version: "0.9.1".into(),
                probes: vec![
                    probe(
                        "inventory.reserve",
                        TIMELINE_SITES[1].0,
                        TIMELINE_SITES[1].1,
                        &["sku", "qty"],
                    ),
                    probe(
                        "inventory.db",
                        TIMELINE_SITES[2].0,
                        TIMELINE_SITES[2].1,
                        &["query"],
                    ),
                ],
                agent_version: "test".into(),
                ..Default::default()
            })
            .await
            .expect("register inventory")
            .into_inner()
            .agent_id;
        let session = server
            .cli(&["session", "open", "--name", "alice-checkout", "-o", "json"])
            .json();
        let session_id = session["id"].as_str().expect("session id").to_owned();
        let breakpoint = server
            .cli(&[
                "break",
                "set",
                "--service",
                "frontend",
                "--probe",
                "checkout.discount",
                "--session",
                &session_id,
                "-o",
                "json",
            ])
            .json();
        let breakpoint_id = breakpoint["id"].as_str().expect("breakpoint id").to_owned();

        let mut watch = frontend
            .watch_breakpoints(WatchBreakpointsRequest {
                agent_id: frontend_id.clone(),
                known_version: 0,
            })
            .await
            .expect("watch breakpoints")
            .into_inner();
        tokio::time::timeout(PUSH_TIMEOUT, watch.message())
            .await
            .expect("the first breakpoint set within the push timeout")
            .expect("stream healthy");

        let mut fixture = UiFixture {
            server,
            viewer_token,
            session_id,
            breakpoint_id,
            frontend,
            frontend_id,
            inventory,
            inventory_id,
            _watch: watch,
        };
        let rich = fixture.rich_snapshot();
        let [root, child, grandchild] = fixture.timeline_snapshots();
        fixture.upload_frontend(vec![rich, root]).await;
        fixture.upload_inventory(vec![child, grandchild]).await;
        fixture
    }

    /// The base URL of the UI, e.g. `http://127.0.0.1:7070`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.addr)
    }

    /// A snapshot of `probe` in the fixture's session and breakpoint.
    pub fn snapshot(&self, id: &str, probe: &str) -> Snapshot {
        bare_snapshot(id, probe, &self.breakpoint_id, &self.session_id)
    }

    fn rich_snapshot(&self) -> Snapshot {
        let items = value(Kind::List(v1::List {
            items: vec![text("SKU-RED-SHOE"), text("SKU-BLUE-HAT")],
            omitted_items: 3,
        }));
        let owner = value(Kind::Struct(v1::Struct {
            type_name: "shop::User".into(),
            fields: vec![
                field("name", text("alice")),
                field(
                    "address",
                    value(Kind::Truncated(v1::Truncated {
                        type_name: "shop::Address".into(),
                        reason: TruncationReason::Depth as i32,
                    })),
                ),
            ],
            omitted_fields: 2,
        }));
        let cart = value(Kind::Struct(v1::Struct {
            type_name: "shop::Cart".into(),
            fields: vec![
                field("items", items),
                field("coupon", text("WINTER25")),
                field("card_number", value(Kind::Redacted(v1::Redacted {}))),
                field("owner", owner),
            ],
            omitted_fields: 0,
        }));
        let tier = value(Kind::Enum(Box::new(v1::Enum {
            type_name: "shop::Tier".into(),
            variant: "Gold".into(),
            payload: None,
        })));
        Snapshot {
            file: "src/checkout.rs".into(),
            line: 42,
            module: "checkout::handlers".into(),
            trace_id: RICH_TRACE.into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: "b7ad6b7169203331".into(),
            variables: vec![
                field("cart", cart),
                field("user_id", value(Kind::Int(1234))),
                field("total", value(Kind::Float(149.5))),
                field(
                    "note",
                    value(Kind::Text(v1::Text {
                        value: HOSTILE_TEXT.into(),
                        omitted_bytes: 12,
                    })),
                ),
                field("tier", tier),
            ],
            stack: vec![
                frame("shop::checkout::apply_discount", "src/checkout.rs", 42),
                frame("shop::checkout::handler", "src/checkout.rs", 12),
            ],
            baggage: vec![BaggageEntry {
                key: "tenant.id".into(),
                value: "acme".into(),
            }],
            ..self.snapshot(RICH_SNAPSHOT, "checkout.discount")
        }
    }

    fn timeline_snapshots(&self) -> [Snapshot; 3] {
        let spans = ["a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2", "c3c3c3c3c3c3c3c3"];
        std::array::from_fn(|depth| {
            let (id, probe) = TIMELINE[depth];
            let (file, line) = TIMELINE_SITES[depth];
            Snapshot {
                file: file.into(),
                line,
                trace_id: TIMELINE_TRACE.into(),
                span_id: spans[depth].into(),
                parent_span_id: if depth == 0 { "" } else { spans[depth - 1] }.into(),
                // The deeper, the earlier by its host's clock.
                captured_at_unix_ms: EPOCH_MS + 60_000 - 10_000 * depth as i64,
                ..self.snapshot(id, probe)
            }
        })
    }

    async fn upload(
        agent: &mut AgentClient,
        agent_id: &str,
        snapshots: Vec<Snapshot>,
        drops: Vec<DropCount>,
    ) {
        let count = snapshots.len() as u32;
        let stored = agent
            .upload_snapshots(UploadSnapshotsRequest {
                agent_id: agent_id.to_owned(),
                snapshots,
                drops,
            })
            .await
            .expect("upload snapshots")
            .into_inner();
        assert_eq!(stored.stored, count, "every snapshot is new");
    }

    pub async fn upload_frontend(&mut self, snapshots: Vec<Snapshot>) {
        Self::upload(&mut self.frontend, &self.frontend_id, snapshots, vec![]).await;
    }

    pub async fn upload_inventory(&mut self, snapshots: Vec<Snapshot>) {
        Self::upload(&mut self.inventory, &self.inventory_id, snapshots, vec![]).await;
    }

    /// The frontend reports its breakpoint failing, and hits it refused.
    pub async fn report_trouble(&mut self, message: &str, refused: &[(DropReason, u64)]) {
        let status = InstanceStatus {
            breakpoint_id: self.breakpoint_id.clone(),
            state: v1::BreakpointState::Error as i32,
            message: message.into(),
            hits: 2,
            ..Default::default()
        };
        self.frontend
            .report_status(ReportStatusRequest {
                agent_id: self.frontend_id.clone(),
                statuses: vec![status],
            })
            .await
            .expect("report status");
        let drops = refused
            .iter()
            .map(|(reason, count)| DropCount {
                breakpoint_id: self.breakpoint_id.clone(),
                reason: *reason as i32,
                count: *count,
            })
            .collect();
        Self::upload(&mut self.frontend, &self.frontend_id, vec![], drops).await;
    }
}

/// An HTTP client that shows redirects instead of following them and never
/// goes through a proxy.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("HTTP client")
}

/// What a page request answered.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Fetched {
    /// A header's value, or "" when it is absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The `name=value` part of the token cookie this response set, if any.
    pub fn token_cookie(&self) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("keyhole_token="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    }
}

async fn fetched(response: reqwest::Response) -> Fetched {
    Fetched {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.expect("response body"),
    }
}

/// `GET base + path`, with `cookie` (`name=value`) if given.
pub async fn get(base: &str, path: &str, cookie: Option<&str>) -> Fetched {
    let mut request = http().get(format!("{base}{path}"));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    fetched(request.send().await.expect("GET")).await
}

fn form_value(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Posts the login form with `token` (and `next`).
pub async fn sign_in(base: &str, token: &str, next: Option<&str>) -> Fetched {
    let mut body = format!("token={}", form_value(token));
    if let Some(next) = next {
        body.push_str(&format!("&next={}", form_value(next)));
    }
    let response = http()
        .post(format!("{base}/login"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("POST /login");
    fetched(response).await
}

/// Signs in with `token` and returns the cookie to send (`keyhole_token=…`).
pub async fn cookie_for(base: &str, token: &str) -> String {
    let signed_in = sign_in(base, token, None).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{signed_in:#?}");
    signed_in.token_cookie().expect("a token cookie")
}
