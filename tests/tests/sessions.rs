//! The trust boundary, end to end: the two shop services as real processes
//! with the inbound layer and armed probes, a real control plane, and
//! requests as an attacker and as a debugging engineer would send them.

use std::time::Duration;

use keyhole_proto::token::SessionSigner;
use keyhole_tests::{break_set_args, spawn_shop, wait_until, workspace_bin, Listening, Server, PUSH_TIMEOUT};
use serde_json::Value as Json;

/// Requests sent as an attacker in the forged-session test.
const FORGED_REQUESTS: usize = 10_000;
/// Requests in flight at once while sending them.
const CONCURRENCY: usize = 8;

struct Shop {
    server: Server,
    inventory: Listening,
    frontend: Listening,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Shop {
    fn start() -> Shop {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let token = server.token("agent");
        let (inventory, frontend) = spawn_shop(&server, &token, workspace_bin);
        let registered = wait_until(PUSH_TIMEOUT, || {
            let services = server.cli(&["services", "list", "-o", "json"]).json();
            services.as_array().is_some_and(|list| list.len() == 2)
        });
        assert!(registered, "both services register");
        Shop {
            server,
            inventory,
            frontend,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    fn open_session(&self, ttl: &str) -> (String, String) {
        let session = self
            .server
            .cli(&["session", "open", "--ttl", ttl, "-o", "json"])
            .json();
        (
            session["id"].as_str().unwrap().to_owned(),
            session["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Sets a breakpoint and waits until the service's agent reports it.
    fn set(&self, service: &str, probe: &str, session: &str, extra: &[&str]) -> String {
        let mut args = break_set_args(service, probe, session, extra);
        args.extend(["-o", "json"]);
        let id = self.server.cli(&args).json()["id"].as_str().unwrap().to_owned();
        let reported = wait_until(PUSH_TIMEOUT, || {
            let detail = self.server.cli(&["break", "get", &id, "-o", "json"]).json();
            detail["statuses"]
                .as_array()
                .is_some_and(|statuses| !statuses.is_empty())
        });
        assert!(reported, "the agent of {service} reports breakpoint {id}");
        id
    }

    fn snapshots_of(&self, breakpoint: &str) -> Vec<Json> {
        let listed = self.server.cli(&[
            "snapshots",
            "list",
            "--breakpoint",
            breakpoint,
            "--limit",
            "1000",
            "-o",
            "json",
        ]);
        listed.json().as_array().unwrap().clone()
    }

    async fn checkout(&self, headers: &[(&'static str, String)]) -> reqwest::StatusCode {
        checkout(self.http.clone(), self.frontend.addr.clone(), headers.to_vec()).await
    }
}

async fn checkout(
    http: reqwest::Client,
    frontend: String,
    headers: Vec<(&'static str, String)>,
) -> reqwest::StatusCode {
    let mut request = http.get(format!("{frontend}/checkout?user=alice&sku=RED-SHOE&qty=2"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.expect("the frontend answers").status()
}

/// Every way an attacker might try to borrow a session, against session `id`
/// whose real token is `token`.
fn forgeries(id: &str, token: &str, expired: &str, other_session: &str) -> Vec<Vec<(&'static str, String)>> {
    let crafted_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string();
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped: String = signature.chars().rev().collect();
    let key_id = token.split('.').nth(1).unwrap();
    let expires: u64 = token.split('.').nth(3).unwrap().parse().unwrap();
    let forged_key = SessionSigner::new(key_id, &[9; 32])
        .unwrap()
        .sign(id, expires)
        .unwrap();
    let retired_key = SessionSigner::new("key-retired", &[1; 32])
        .unwrap()
        .sign(id, expires)
        .unwrap();
    let baggage = |value: String| vec![("baggage", value), ("traceparent", crafted_parent.clone())];
    vec![
        baggage(format!("session.id={id}")),
        baggage(format!("keyhole.session.id={id},session={id}")),
        baggage("keyhole.session=v1.key-0.ses-0.9999999999.bm90IGEgc2lnbmF0dXJl".into()),
        baggage(format!("keyhole.session={head}.{flipped}")),
        baggage(format!("keyhole.session={forged_key}")),
        baggage(format!("keyhole.session={retired_key}")),
        baggage(format!("keyhole.session={expired}")),
        baggage(format!("keyhole.session={other_session}")),
        baggage(format!("keyhole.session={}", &token[..token.len() - 3])),
        baggage(format!("keyhole.session={}", &token[..token.len() / 2])),
        vec![("baggage", format!("keyhole.session={token}x"))],
        vec![("baggage", format!("Keyhole.Session={token}"))],
        vec![
            ("tracestate", format!("keyhole={token}")),
            ("traceparent", crafted_parent.clone()),
        ],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_sessions_capture_nothing_and_the_real_token_captures() {
    let shop = Shop::start();
    let (expired_id, expired) = shop.open_session("1s");
    let (other_id, other) = shop.open_session("30m");
    let (id, token) = shop.open_session("30m");
    let breakpoint = shop.set(
        "shop-frontend",
        "checkout.priced",
        &id,
        &["--rate", "50", "--max-hits", "1000"],
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let kinds = forgeries(&id, &token, &expired, &other);
    let mut sent = 0;
    while sent < FORGED_REQUESTS {
        let batch: Vec<_> = (0..CONCURRENCY.min(FORGED_REQUESTS - sent))
            .map(|i| {
                let headers = kinds[(sent + i) % kinds.len()].clone();
                tokio::spawn(checkout(shop.http.clone(), shop.frontend.addr.clone(), headers))
            })
            .collect();
        for request in batch {
            let status = request.await.expect("request task");
            assert!(status.is_success(), "the service keeps serving: {status}");
        }
        sent += CONCURRENCY;
    }
    // Give anything captured time to be uploaded before counting.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        shop.snapshots_of(&breakpoint).len(),
        0,
        "no forged request captured"
    );
    for session in [&id, &expired_id, &other_id] {
        let listed = shop
            .server
            .cli(&["snapshots", "list", "--session", session, "-o", "json"])
            .json();
        assert_eq!(listed.as_array().unwrap().len(), 0, "nothing for {session}");
    }

    for _ in 0..20 {
        assert!(shop
            .checkout(&[("baggage", format!("keyhole.session={token}"))])
            .await
            .is_success());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let captured = wait_until(PUSH_TIMEOUT, || !shop.snapshots_of(&breakpoint).is_empty());
    assert!(captured, "the real token captures");
    for snapshot in shop.snapshots_of(&breakpoint) {
        assert_eq!(snapshot["session_id"], id.as_str());
        assert_eq!(snapshot["service"], "shop-frontend");
    }
    drop(shop.inventory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_captures_in_both_services_within_one_trace() {
    let shop = Shop::start();
    let probes = shop.server.cli(&["probes", "list"]);
    for probe in ["checkout.priced", "checkout.decided", "inventory.stock"] {
        assert!(
            probes.ok().contains(probe),
            "both services' probes are listed: {probes:?}"
        );
    }
    let (id, token) = shop.open_session("30m");
    let frontend_bp = shop.set("shop-frontend", "checkout.priced", &id, &[]);
    let inventory_bp = shop.set("shop-inventory", "inventory.stock", &id, &[]);

    assert!(shop.checkout(&[]).await.is_success());
    let with_session = [("baggage", format!("keyhole.session={token}"))];
    assert!(shop.checkout(&with_session).await.is_success());

    let both = wait_until(PUSH_TIMEOUT, || {
        !shop.snapshots_of(&frontend_bp).is_empty() && !shop.snapshots_of(&inventory_bp).is_empty()
    });
    assert!(both, "the session captured in both services");
    let frontend = &shop.snapshots_of(&frontend_bp)[0];
    let inventory = &shop.snapshots_of(&inventory_bp)[0];
    assert_eq!(
        shop.snapshots_of(&frontend_bp).len(),
        1,
        "the request without the session captured nothing"
    );
    assert_eq!(frontend["session_id"], id.as_str());
    assert_eq!(inventory["session_id"], id.as_str());
    assert_eq!(
        frontend["trace_id"], inventory["trace_id"],
        "one trace across both services"
    );
    assert_eq!(frontend["trace_id"].as_str().unwrap().len(), 32);
    assert_eq!(
        inventory["parent_span_id"], frontend["span_id"],
        "the inventory's span is the frontend's child"
    );
    let session = shop
        .server
        .cli(&["snapshots", "list", "--session", &id, "-o", "json"])
        .json();
    let mut services: Vec<&str> = session
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    services.sort_unstable();
    assert_eq!(
        services,
        ["shop-frontend", "shop-inventory"],
        "exactly the session's snapshots, from both services"
    );

    let shown = shop
        .server
        .cli(&["snapshots", "get", frontend["id"].as_str().unwrap()]);
    for expected in [
        "token = <redacted>",
        "card_last_digits = <redacted>",
        "tier = Tier::Gold",
    ] {
        assert!(shown.ok().contains(expected), "lacks {expected:?}: {shown:?}");
    }
    // Text is shown quoted: a quoted "4242" is the value, a bare 4242 could be part of an id or a time.
    assert!(!shown.ok().contains("tok_4f9a8c7e2b") && !shown.ok().contains("\"4242\""));
    let stack = shop
        .server
        .cli(&["snapshots", "get", frontend["id"].as_str().unwrap(), "-o", "json"])
        .json();
    let top = &stack["stack"][0];
    let in_handler = top["file"]
        .as_str()
        .unwrap_or_default()
        .ends_with("examples/shop/src/bin/frontend.rs");
    assert!(
        in_handler && top["line"].as_u64() > Some(0),
        "the stack starts in the shop's handler: {:#}",
        stack["stack"]
    );
}
