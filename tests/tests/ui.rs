//! The web UI over plain HTTP, as a browser without script would see it: a
//! real `keyhole server`, fake agents that registered and uploaded
//! snapshots, and requests that carry the sign-in cookie by hand.

use keyhole_proto::v1::DropReason;
use keyhole_tests::web_ui::{
    cookie_for, get, sign_in, UiFixture, HOSTILE_TEXT, RICH_SNAPSHOT, RICH_TRACE, TIMELINE, TIMELINE_TRACE,
};
use reqwest::StatusCode;
use serde_json::Value as Json;

/// Where `html` has `needle`, or a failure showing the page.
#[track_caller]
fn position(html: &str, needle: &str) -> usize {
    html.find(needle)
        .unwrap_or_else(|| panic!("the page lacks {needle:?}:\n{html}"))
}

#[track_caller]
fn assert_shows(html: &str, needles: &[&str]) {
    for needle in needles {
        position(html, needle);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_a_valid_cookie_redirects_to_sign_in_and_shows_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;
    let agent_cookie = format!("keyhole_token={}", fixture.server.token("agent"));
    let snapshot_page = format!("/snapshots/{RICH_SNAPSHOT}");
    let timeline_page = format!("/sessions/{}", fixture.session_id);
    let pages = [
        "/",
        "/probes?service=frontend",
        "/breakpoints",
        "/snapshots",
        "/sessions",
        &snapshot_page,
        &timeline_page,
    ];
    for cookie in [
        None,
        Some("keyhole_token=kh_0000_ffff"),
        Some(agent_cookie.as_str()),
    ] {
        for page in pages {
            let answer = get(base, page, cookie).await;
            assert_eq!(
                answer.status,
                StatusCode::SEE_OTHER,
                "{page} with {cookie:?}: {answer:#?}"
            );
            let location = answer.header("location");
            assert!(location.starts_with("/login"), "{page}: {location}");
            for secret in ["frontend", "inventory", "WINTER25", "SKU-RED-SHOE", RICH_TRACE] {
                assert!(!answer.body.contains(secret), "{page} leaked {secret:?}");
            }
        }
        let api = get(base, "/api/snapshots?after=0", cookie).await;
        assert_eq!(api.status, StatusCode::UNAUTHORIZED, "{api:#?}");
        assert!(!api.body.contains("snap-"), "{api:#?}");
    }

    let redirected = get(base, &snapshot_page, None).await;
    assert_eq!(
        redirected.header("location"),
        "/login?next=%2Fsnapshots%2Fsnap-rich",
        "signing in returns to the page asked for"
    );
    let login = get(base, redirected.header("location"), None).await;
    assert_eq!(login.status, StatusCode::OK);
    assert_shows(&login.body, &["name=\"token\"", "value=\"/snapshots/snap-rich\""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_wrong_token_shows_the_form_again_with_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;
    let agent_token = fixture.server.token("agent");
    for (token, expected) in [
        ("kh_0000_ffff", "not valid"),
        ("not a token at all", "not valid"),
        ("", "Enter an API token"),
        (agent_token.as_str(), "agent token cannot sign in"),
    ] {
        let answer = sign_in(base, token, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:#?}");
        assert_eq!(answer.token_cookie(), None, "no cookie for {token:?}");
        assert_eq!(
            answer.body.matches("class=\"error\"").count(),
            1,
            "{}",
            answer.body
        );
        assert_shows(&answer.body, &[expected, "name=\"token\""]);
        assert!(
            !answer.body.contains(token) || token.is_empty(),
            "the token is not echoed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_with_a_viewer_token_sets_an_http_only_same_site_cookie_and_signing_out_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;

    let signed_in = sign_in(base, &fixture.viewer_token, Some("/probes")).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{signed_in:#?}");
    assert_eq!(signed_in.header("location"), "/probes");
    let set_cookie = signed_in.header("set-cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "over plain HTTP a Secure cookie would never come back: {set_cookie}"
    );
    let cookie = signed_in.token_cookie().unwrap();
    assert_eq!(cookie, format!("keyhole_token={}", fixture.viewer_token));
    let overview = get(base, "/", Some(&cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);

    let elsewhere = sign_in(base, &fixture.viewer_token, Some("//evil.example/")).await;
    assert_eq!(elsewhere.header("location"), "/", "never sent to another site");

    let signed_out = get(base, "/logout", Some(&cookie)).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    let cleared = signed_out.header("set-cookie");
    assert!(
        cleared.starts_with("keyhole_token=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    fixture
        .server
        .cli(&["token", "revoke", fixture.viewer_token.split('_').nth(1).unwrap()])
        .ok();
    let revoked = get(base, "/", Some(&cookie)).await;
    assert_eq!(
        revoked.status,
        StatusCode::SEE_OTHER,
        "a revoked token signs its holder out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_registered_services_and_their_instances() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;
    let cookie = cookie_for(base, &fixture.viewer_token).await;

    let overview = get(base, "/", Some(&cookie)).await;
    assert_eq!(overview.status, StatusCode::OK);
    let html = &overview.body;
    assert_shows(
        html,
        &[
            "<h2>frontend</h2>",
            "<h2>inventory</h2>",
            "frontend-1",
            "inventory-7",
            "2.3.0",
            "region=eu-west",
            "2 probes",
        ],
    );
    let frontend = &html[position(html, "<h2>frontend</h2>")..position(html, "<h2>inventory</h2>")];
    assert!(
        frontend.contains(">connected<"),
        "the frontend holds its stream open: {frontend}"
    );
    assert!(html[position(html, "<h2>inventory</h2>")..].contains(">disconnected<"));

    assert_eq!(overview.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(overview.header("cache-control"), "no-store");
    assert_eq!(overview.header("x-content-type-options"), "nosniff");
    let csp = overview.header("content-security-policy");
    assert!(
        csp.starts_with("default-src 'self'; script-src 'self'; style-src 'self'"),
        "{csp}"
    );
    assert!(
        !html.contains("<script>") && !html.contains(" style="),
        "no inline script or style"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_page_shows_the_tree_stack_and_trace_and_escapes_captured_markup() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;
    let cookie = cookie_for(base, &fixture.viewer_token).await;

    let page = get(base, &format!("/snapshots/{RICH_SNAPSHOT}"), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:#?}");
    let html = &page.body;
    assert_shows(
        html,
        &[
            // The header.
            "frontend-1",
            "checkout.discount",
            "src/checkout.rs:42",
            RICH_TRACE,
            "00f067aa0ba902b7",
            "b7ad6b7169203331",
            &fixture.breakpoint_id,
            &fixture.session_id,
            // The tree: the variable open, the nested list closed but present.
            "<details open><summary><span class=\"name\">cart</span> <span class=\"type\">shop::Cart</span>",
            "<details><summary><span class=\"name\">items</span>",
            "&quot;SKU-RED-SHOE&quot;",
            "… 3 more items not captured",
            "… 2 more fields not captured",
            "shop::Address not captured: depth limit",
            "… 12 more bytes not captured",
            "shop::Tier::Gold",
            // The stack and baggage.
            "<code>shop::checkout::apply_discount</code>",
            "<code>src/checkout.rs:42</code>",
            "<code>shop::checkout::handler</code>",
            "<code>src/checkout.rs:12</code>",
            "<code>tenant.id</code>",
            "<code>acme</code>",
        ],
    );
    let card = &html[position(html, "<span class=\"name\">card_number</span>")..];
    assert!(
        card.starts_with("<span class=\"name\">card_number</span> <span class=\"redacted\""),
        "the redacted field is a marker: {}",
        &card[..200.min(card.len())]
    );
    assert_shows(html, &["&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;"]);
    assert!(!html.contains(HOSTILE_TEXT), "captured markup is never markup");
    assert!(
        !html.contains("open in trace viewer"),
        "no trace viewer is configured"
    );

    let missing = get(base, "/snapshots/snap-nope", Some(&cookie)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_shows(&missing.body, &["no snapshot `snap-nope`"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_timeline_orders_a_trace_by_span_causality_not_by_clock() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;
    let cookie = cookie_for(base, &fixture.viewer_token).await;

    let page = get(base, &format!("/sessions/{}", fixture.session_id), Some(&cookie)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:#?}");
    let html = &page.body;
    assert_shows(html, &["alice-checkout", RICH_TRACE]);
    let trace = &html[position(html, TIMELINE_TRACE)..];
    let trace = &trace[..trace.find("</section>").unwrap()];
    let mut last = 0;
    for (depth, (id, probe)) in TIMELINE.iter().enumerate() {
        let at = position(trace, &format!("href=\"/snapshots/{id}\">{probe}</a>"));
        assert!(at > last, "{id} comes after its parent span:\n{trace}");
        let line_start = trace[..at].rfind("<li ").unwrap();
        assert!(
            trace[line_start..at].contains(&format!("data-depth=\"{depth}\"")),
            "{id} is indented to depth {depth}"
        );
        last = at;
    }
    assert_shows(
        trace,
        &[
            "<span class=\"service\">frontend</span>",
            "<span class=\"service\">inventory</span>",
        ],
    );

    let unknown = get(base, "/sessions/ses-nope", Some(&cookie)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_endpoint_returns_only_snapshots_stored_after_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = UiFixture::start(dir.path()).await;
    let base = fixture.server.addr.clone();
    let cookie = cookie_for(&base, &fixture.viewer_token).await;

    let list = get(&base, "/snapshots?service=inventory", Some(&cookie)).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_shows(&list.body, &["snap-child", "snap-grandchild"]);
    assert!(!list.body.contains("snap-rich"), "the list is filtered");
    let after: i64 = {
        let at = position(&list.body, "data-after=\"") + "data-after=\"".len();
        let rest = &list.body[at..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    assert_shows(&list.body, &["data-filter=\"service=inventory\""]);

    let nothing_new: Json = serde_json::from_str(
        &get(&base, &format!("/api/snapshots?after={after}"), Some(&cookie))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(nothing_new["snapshots"].as_array().unwrap().len(), 0);
    assert_eq!(nothing_new["next"], after.to_string());

    let newer = fixture.snapshot("snap-newer", "inventory.reserve");
    fixture.upload_inventory(vec![newer]).await;
    let frontend_newer = fixture.snapshot("snap-frontend-newer", "checkout.discount");
    fixture.upload_frontend(vec![frontend_newer]).await;

    let answer = get(
        &base,
        &format!("/api/snapshots?after={after}&service=inventory"),
        Some(&cookie),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:#?}");
    assert_eq!(answer.header("cache-control"), "no-store");
    let page: Json = serde_json::from_str(&answer.body).unwrap();
    let ids: Vec<&str> = page["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["snap-newer"], "only newer snapshots matching the filter");
    assert_eq!(page["snapshots"][0]["url"], "/snapshots/snap-newer");
    assert_eq!(page["snapshots"][0]["service"], "inventory");
    let next: i64 = page["next"].as_str().unwrap().parse().unwrap();
    assert!(next > after);

    let all: Json = serde_json::from_str(
        &get(&base, &format!("/api/snapshots?after={after}"), Some(&cookie))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(all["snapshots"].as_array().unwrap().len(), 2);
    let caught_up: Json = serde_json::from_str(
        &get(&base, &format!("/api/snapshots?after={next}"), Some(&cookie))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(caught_up["snapshots"].as_array().unwrap().len(), 0);

    let no_position = get(&base, "/api/snapshots", Some(&cookie)).await;
    assert_eq!(no_position.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_and_breakpoint_pages_show_the_catalogue_and_what_instances_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = UiFixture::start(dir.path()).await;
    fixture
        .report_trouble(
            "condition needs <cart.total>",
            &[(DropReason::BreakpointRate, 3), (DropReason::QueueFull, 1)],
        )
        .await;
    let base = &fixture.server.addr;
    let cookie = cookie_for(base, &fixture.viewer_token).await;

    let probes = get(base, "/probes?service=inventory", Some(&cookie)).await;
    assert_eq!(probes.status, StatusCode::OK);
    assert_shows(
        &probes.body,
        &[
            "inventory.reserve",
            "src/stock.rs:31",
            "<code>sku</code> <code>qty</code>",
            "inventory.db",
        ],
    );
    assert!(
        !probes.body.contains("checkout.discount"),
        "filtered to one service"
    );
    let unknown = get(base, "/probes?service=nope", Some(&cookie)).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    fixture
        .server
        .cli(&["break", "delete", &fixture.breakpoint_id])
        .ok();
    let breakpoints = get(base, "/breakpoints", Some(&cookie)).await;
    assert_eq!(breakpoints.status, StatusCode::OK);
    assert_shows(
        &breakpoints.body,
        &[
            &format!("id=\"{}\"", fixture.breakpoint_id),
            "state-deleted",
            "checkout.discount",
            &format!("href=\"/sessions/{}\"", fixture.session_id),
            "frontend-1",
            "state-error",
            "condition needs &lt;cart.total&gt;",
            "breakpoint-rate 3",
            "queue-full 1",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_served_beside_the_pages_and_unknown_paths_are_a_plain_404() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = UiFixture::start(dir.path()).await;
    let base = &fixture.server.addr;

    let script = get(base, "/assets/keyhole.js", None).await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.header("content-type").starts_with("text/javascript"));
    assert!(script.body.contains("/api/snapshots") || script.body.contains("data-poll"));
    let style = get(base, "/assets/keyhole.css", None).await;
    assert!(style.header("content-type").starts_with("text/css"));

    let health = get(base, "/healthz", None).await;
    assert_eq!((health.status, health.body.as_str()), (StatusCode::OK, "ok\n"));
    let unknown = get(base, "/no/such/page", None).await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (StatusCode::NOT_FOUND, "not found\n")
    );
}
