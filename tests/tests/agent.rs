//! A real agent in this process, with real probes, against a real control
//! plane process, driven through the real CLI. One agent runs per process,
//! so these tests take turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use keyhole::{Agent, TrustedSession};
use keyhole_tests::{break_set_args, wait_until, CliRun, Server, PUSH_TIMEOUT};
use serde::Serialize;
use serde_json::Value as Json;

/// Only one agent may run in a process.
static ONE_AGENT_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_agent() -> MutexGuard<'static, ()> {
    ONE_AGENT_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Serialize)]
struct Item {
    sku: String,
    qty: u32,
}

#[derive(Serialize)]
struct Cart {
    items: Vec<Item>,
    coupon: Option<String>,
    /// Not on the default list: the agent below is configured to redact it.
    card_number: String,
    /// On the default list of sensitive names.
    cvv: String,
}

fn cart() -> Cart {
    Cart {
        items: vec![
            Item {
                sku: "RED-SHOE".into(),
                qty: 2,
            },
            Item {
                sku: "<script>".into(),
                qty: 1,
            },
        ],
        coupon: Some("WINTER25".into()),
        // Spelled so that no id, time or address in a snapshot can contain them by chance.
        card_number: "card 4111 1111 never sent".into(),
        cvv: "cvv 737 never sent".into(),
    }
}

static TOTAL_EVALUATIONS: AtomicUsize = AtomicUsize::new(0);

fn counted_total(cart: &Cart) -> u64 {
    TOTAL_EVALUATIONS.fetch_add(1, Ordering::SeqCst);
    cart.items.iter().map(|item| u64::from(item.qty) * 1999).sum()
}

#[inline(never)]
fn checkout(cart: &Cart, user_id: u64) {
    keyhole::probe!("checkout.total", cart, user_id, total = counted_total(cart));
}

#[inline(never)]
fn reserve(sku: &str, qty: u32) {
    keyhole::probe!("inventory.reserve", sku, qty);
}

struct Panics;

impl std::fmt::Debug for Panics {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        panic!("a Debug impl that panics")
    }
}

#[inline(never)]
fn with_a_bad_debug(order_id: u32) {
    let broken = Panics;
    keyhole::probe!("orders.broken", order_id, ?broken);
}

#[allow(dead_code)]
#[inline(never)]
fn never_called(reason: &str) {
    keyhole::probe!("refunds.never_called", reason);
}

/// A control plane, an agent of service `shop` connected to it, and an open session.
struct Debugging {
    server: Server,
    agent: Agent,
    session_id: String,
    session: TrustedSession,
    token: String,
    _dir: tempfile::TempDir,
}

impl Debugging {
    fn start() -> Debugging {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let agent = Agent::builder()
            .service("shop")
            .address(server.addr.clone())
            .token(server.token("agent"))
            .instance_id("shop-test")
            .redact("card_number")
            .init()
            .expect("the agent starts");
        assert!(
            wait_until(PUSH_TIMEOUT, || agent.has_session_keys()),
            "the agent registers"
        );
        let opened = server
            .cli(&["session", "open", "--name", "test", "-o", "json"])
            .json();
        let session = TrustedSession::from_token(opened["token"].as_str().unwrap()).expect("token verifies");
        Debugging {
            session_id: opened["id"].as_str().unwrap().to_owned(),
            token: opened["token"].as_str().unwrap().to_owned(),
            session,
            server,
            agent,
            _dir: dir,
        }
    }

    /// Sets a breakpoint for the session and waits until the agent has it.
    fn set(&self, probe: &str, extra: &[&str]) -> String {
        let mut args = break_set_args("shop", probe, &self.session_id, extra);
        args.extend(["-o", "json"]);
        let id = self.server.cli(&args).json()["id"].as_str().unwrap().to_owned();
        let installed = wait_until(PUSH_TIMEOUT, || self.agent.installed_breakpoints().contains(&id));
        assert!(installed, "breakpoint {id} reaches the agent");
        id
    }

    fn cli(&self, args: &[&str]) -> CliRun {
        self.server.cli(args)
    }

    /// Stops the agent after flushing what it accepted.
    fn flush(self) -> (Server, String, tempfile::TempDir) {
        let report = tokio_block_on(self.agent.shutdown());
        assert_eq!(
            report.unflushed, 0,
            "everything accepted was uploaded: {report:?}"
        );
        (self.server, self.session_id, self._dir)
    }
}

fn tokio_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn refusals(breakpoint: &Json, reason: &str) -> u64 {
    breakpoint["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reason"] == reason)
        .map_or(0, |r| r["count"].as_u64().unwrap())
}

#[test]
fn a_probe_captures_only_for_its_session_and_the_snapshot_reads_back_through_the_cli() {
    let _turn = one_agent();
    let debugging = Debugging::start();
    let probes = debugging.cli(&["probes", "list", "--service", "shop"]);
    assert!(
        probes.ok().contains("refunds.never_called"),
        "probes that never ran are listed: {probes:?}"
    );
    assert!(probes.ok().contains("cart, user_id, total"), "{probes:?}");

    let before = TOTAL_EVALUATIONS.load(Ordering::SeqCst);
    checkout(&cart(), 7);
    assert_eq!(
        TOTAL_EVALUATIONS.load(Ordering::SeqCst),
        before,
        "a disarmed probe evaluates nothing"
    );

    let breakpoint = debugging.set("checkout.total", &[]);
    checkout(&cart(), 7);
    let forged = TrustedSession::from_token("v1.key-1.ses-forged.99999999999.AAAA");
    assert!(forged.is_err(), "a forged token is not trusted");
    assert_eq!(
        TOTAL_EVALUATIONS.load(Ordering::SeqCst),
        before,
        "requests without the session capture nothing"
    );

    {
        let _session = debugging.session.attach();
        checkout(&cart(), 42);
    }
    assert_eq!(
        TOTAL_EVALUATIONS.load(Ordering::SeqCst),
        before + 1,
        "expressions run once, for the capture"
    );

    let (server, session_id, _dir) = debugging.flush();
    let listed = server
        .cli(&["snapshots", "list", "--session", &session_id, "-o", "json"])
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed:#}");
    let id = listed[0]["id"].as_str().unwrap();
    assert_eq!(listed[0]["breakpoint_id"], breakpoint.as_str());
    let shown = server.cli(&["snapshots", "get", id]);
    let shown = shown.ok();
    for expected in [
        "cart = Cart",
        "items = [2 items]",
        "[0] = Item",
        // The default depth is 3 below the variable: cart.items[0] is the third level.
        "sku = <String not captured: depth limit>",
        "coupon = \"WINTER25\"",
        "card_number = <redacted>",
        "cvv = <redacted>",
        "user_id = 42",
        "total = 5997",
    ] {
        assert!(
            shown.contains(expected),
            "snapshot view lacks {expected:?}:\n{shown}"
        );
    }
    let json = server.cli(&["snapshots", "get", id, "-o", "json"]).json();
    for view in [shown.to_owned(), json.to_string()] {
        assert!(
            !view.contains("never sent"),
            "a redacted value left the process:\n{view}"
        );
    }
    let top = &json["stack"][0];
    assert!(
        top["function"].as_str().unwrap().ends_with("checkout"),
        "{:#}",
        json["stack"]
    );
    assert!(
        top["file"].as_str().unwrap().ends_with("agent.rs"),
        "{:#}",
        json["stack"]
    );
    assert_eq!(json["probe_label"], "checkout.total");
    assert_eq!(json["session_id"], session_id.as_str());
}

#[test]
fn the_breakpoint_rate_allows_its_budget_under_a_thousand_hits_in_a_second() {
    let _turn = one_agent();
    let debugging = Debugging::start();
    let breakpoint = debugging.set("inventory.reserve", &["--rate", "1", "--max-hits", "1000"]);
    let started = Instant::now();
    {
        let _session = debugging.session.attach();
        for _ in 0..1000 {
            reserve("RED-SHOE", 1);
        }
    }
    let elapsed = started.elapsed();
    let (server, session_id, _dir) = debugging.flush();
    let taken = server
        .cli(&["snapshots", "list", "--session", &session_id, "-o", "json"])
        .json();
    let taken = taken.as_array().unwrap().len() as u64;
    let budget = 1 + elapsed.as_secs();
    assert!(
        taken >= 1 && taken <= budget,
        "{taken} snapshots from 1,000 hits in {elapsed:?}"
    );
    let detail = server.cli(&["break", "get", &breakpoint, "-o", "json"]).json();
    assert_eq!(
        refusals(&detail, "DROP_REASON_BREAKPOINT_RATE"),
        1000 - taken,
        "every refusal is counted"
    );
}

#[test]
fn hit_limits_and_expiry_stop_capture() {
    let _turn = one_agent();
    let debugging = Debugging::start();
    let limited = debugging.set("inventory.reserve", &["--max-hits", "3", "--rate", "50"]);
    let short = debugging.set("checkout.total", &["--expire", "2s", "--rate", "50"]);
    {
        let _session = debugging.session.attach();
        for _ in 0..10 {
            reserve("RED-SHOE", 1);
            std::thread::sleep(Duration::from_millis(25));
        }
        checkout(&cart(), 1);
        std::thread::sleep(Duration::from_millis(2500));
        checkout(&cart(), 2);
    }
    let (server, _, _dir) = debugging.flush();
    let limited_snapshots = server
        .cli(&["snapshots", "list", "--breakpoint", &limited, "-o", "json"])
        .json();
    assert_eq!(
        limited_snapshots.as_array().unwrap().len(),
        3,
        "the hit limit stops capture"
    );
    let detail = server.cli(&["break", "get", &limited, "-o", "json"]).json();
    assert_eq!(refusals(&detail, "DROP_REASON_HIT_LIMIT"), 7);
    let expired = server
        .cli(&["snapshots", "list", "--breakpoint", &short, "-o", "json"])
        .json();
    let users: Vec<&Json> = expired.as_array().unwrap().iter().collect();
    assert_eq!(users.len(), 1, "only the hit before expiry captured");
    let shown = server.cli(&["snapshots", "get", users[0]["id"].as_str().unwrap()]);
    assert!(shown.ok().contains("user_id = 1"), "{shown:?}");
}

#[test]
fn a_panicking_debug_impl_yields_an_error_value_and_the_caller_carries_on() {
    let _turn = one_agent();
    let debugging = Debugging::start();
    debugging.set("orders.broken", &[]);
    {
        let _session = debugging.session.attach();
        with_a_bad_debug(17);
    }
    let (server, session_id, _dir) = debugging.flush();
    let listed = server
        .cli(&["snapshots", "list", "--session", &session_id, "-o", "json"])
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = server.cli(&["snapshots", "get", listed[0]["id"].as_str().unwrap()]);
    assert!(shown.ok().contains("order_id = 17"), "{shown:?}");
    assert!(shown.ok().contains("broken = <capture failed"), "{shown:?}");
}

#[test]
fn every_accepted_snapshot_is_stored_once_across_a_control_plane_crash() {
    let _turn = one_agent();
    let debugging = Debugging::start();
    // Two breakpoints at the highest rate the server allows: about 100 snapshots a second.
    let first = debugging.set("inventory.reserve", &["--rate", "50", "--max-hits", "1000"]);
    let second = debugging.set("inventory.reserve", &["--rate", "50", "--max-hits", "1000"]);
    let Debugging {
        server,
        agent,
        session_id,
        session,
        _dir: dir,
        ..
    } = debugging;
    let listen = server.listen_addr().to_owned();
    let hits = |duration: Duration| {
        let _session = session.attach();
        let until = Instant::now() + duration;
        while Instant::now() < until {
            reserve("RED-SHOE", 1);
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    hits(Duration::from_millis(1500));
    server.kill();
    hits(Duration::from_millis(1500));
    let server = Server::start_at(dir.path(), &listen);
    hits(Duration::from_millis(1000));
    let report = tokio_block_on(agent.shutdown());
    assert_eq!(report.unflushed, 0, "{report:?}");

    let stored = server
        .cli(&[
            "snapshots",
            "list",
            "--session",
            &session_id,
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .json();
    let stored = stored.as_array().unwrap();
    let mut ids: Vec<&str> = stored.iter().map(|s| s["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), stored.len(), "no snapshot is stored twice");
    assert_eq!(
        stored.len() as u64,
        report.accepted,
        "every accepted snapshot is stored: {report:?}"
    );
    assert_eq!(report.uploaded, report.accepted, "{report:?}");
    assert!(
        stored.len() > 100,
        "the test captured across the crash: {}",
        stored.len()
    );
    for breakpoint in [&first, &second] {
        let detail = server.cli(&["break", "get", breakpoint, "-o", "json"]).json();
        assert!(
            refusals(&detail, "DROP_REASON_BREAKPOINT_RATE") > 0,
            "refusals are counted: {detail:#}"
        );
    }
}

#[test]
fn rotated_session_keys_reach_the_agent_without_a_restart() {
    let _turn = one_agent();
    let debugging = Debugging::start();
    let old_token = debugging.token.clone();
    let open = |server: &Server| {
        let opened = server.cli(&["session", "open", "-o", "json"]).json();
        opened["token"].as_str().unwrap().to_owned()
    };

    debugging.cli(&["keys", "rotate"]).ok();
    let new_token = open(&debugging.server);
    assert_ne!(
        new_token.split('.').nth(1),
        old_token.split('.').nth(1),
        "new sessions use the new key"
    );
    let received = wait_until(PUSH_TIMEOUT, || TrustedSession::from_token(&new_token).is_ok());
    assert!(received, "the agent verifies sessions of the new key");
    assert!(
        TrustedSession::from_token(&old_token).is_ok(),
        "sessions of the previous key still work"
    );

    let keys = debugging
        .cli(&["keys", "rotate", "--retire-previous", "-o", "json"])
        .json();
    let states: Vec<bool> = keys
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["retired_at_unix_ms"] == 0)
        .collect();
    assert_eq!(
        states,
        [true, false, false],
        "only the newest key is left: {keys:#}"
    );
    let retired = wait_until(PUSH_TIMEOUT, || TrustedSession::from_token(&old_token).is_err());
    assert!(
        retired,
        "a retired key's sessions stop verifying in the running agent"
    );
    assert!(TrustedSession::from_token(&new_token).is_err());
    let newest = open(&debugging.server);
    assert!(wait_until(PUSH_TIMEOUT, || TrustedSession::from_token(&newest).is_ok()));
    debugging.flush();
}
