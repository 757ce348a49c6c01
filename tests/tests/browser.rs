//! The web UI in a real browser: headless Chromium driven over WebDriver by
//! chromedriver (Debian packages `chromium` and `chromium-driver`), against a
//! real `keyhole server` with fake agents' snapshots in it. This is where the
//! things plain HTTP cannot check are checked: the sign-in form and cookie as
//! a browser handles them, `<details>` expanding on a click, the CSP letting
//! our own script run, and new snapshots appearing without a reload.
//!
//! With `KEYHOLE_SCREENSHOTS_DIR` set, it saves `ui-snapshot.png` and
//! `ui-timeline.png` there.

use std::path::PathBuf;

use keyhole_tests::web_ui::{UiFixture, RICH_SNAPSHOT, RICH_TRACE, TIMELINE};
use keyhole_tests::webdriver::Browser;

/// The directory to save screenshots in, if asked for.
fn screenshots_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KEYHOLE_SCREENSHOTS_DIR")?);
    std::fs::create_dir_all(&dir).expect("create the screenshots directory");
    Some(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_reads_a_snapshot_and_follows_a_session_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixture = UiFixture::start(dir.path()).await;
    let browser = Browser::start().await;

    // Signed out: the login form, and nothing of the data.
    browser.goto(&fixture.url("/")).await;
    assert!(browser.url().await.contains("/login"), "{}", browser.url().await);
    let login = browser.page_text().await;
    assert!(login.contains("Sign in"), "{login}");
    for secret in ["frontend", "inventory", "checkout"] {
        assert!(
            !login.contains(secret),
            "the login page shows {secret:?}:\n{login}"
        );
    }

    // Signing in through the form.
    let token = browser.find("input[name=token]").await;
    browser.type_text(&token, &fixture.viewer_token).await;
    browser.click(&browser.find("button[type=submit]").await).await;
    let overview = browser
        .wait_for_text("the services", |text| text.contains("frontend-1"))
        .await;
    assert!(overview.contains("inventory-7"), "{overview}");
    assert!(!browser.url().await.contains("/login"));

    // A snapshot: a nested field shows once its parent is expanded.
    browser
        .goto(&fixture.url(&format!("/snapshots/{RICH_SNAPSHOT}")))
        .await;
    let items = browser
        .find_xpath("//summary[span[@class='name' and text()='items']]")
        .await;
    let first_item = browser
        .find_xpath(
            "//summary[span[@class='name' and text()='items']]/following-sibling::div/div[@class='leaf'][1]",
        )
        .await;
    assert!(
        !browser.is_displayed(&first_item).await,
        "nested values start collapsed"
    );
    browser.click(&items).await;
    assert!(
        browser.is_displayed(&first_item).await,
        "a click on the summary expands it"
    );
    assert!(browser.text(&first_item).await.contains("\"SKU-RED-SHOE\""));

    let redacted = browser.find(".redacted").await;
    assert!(browser.is_displayed(&redacted).await);
    assert_eq!(browser.text(&redacted).await, "redacted");
    let stack = browser.text(&browser.find("table.stack").await).await;
    assert!(
        stack.contains("shop::checkout::apply_discount") && stack.contains("src/checkout.rs:42"),
        "{stack}"
    );
    let page = browser.page_text().await;
    assert!(page.contains(RICH_TRACE), "the trace id is shown");
    assert!(
        page.contains("\"<script>alert(1)</script>\""),
        "captured markup shows as text"
    );

    // Our own script runs under the CSP: "expand all" appears and works.
    let expand = browser.find("button[data-tree=expand]").await;
    assert!(
        browser.is_displayed(&expand).await,
        "the script showed its buttons"
    );
    browser.click(&expand).await;
    let address = browser.find_xpath("//*[@class='truncated']").await;
    assert!(browser.is_displayed(&address).await);
    if let Some(dir) = screenshots_dir() {
        browser.screenshot(&dir.join("ui-snapshot.png")).await;
    }

    // The session timeline: parent spans first, whatever the clocks said.
    browser
        .goto(&fixture.url(&format!("/sessions/{}", fixture.session_id)))
        .await;
    browser.find("ol.timeline li").await;
    let mut order = Vec::new();
    for entry in browser.find_all("ol.timeline li").await {
        let probe = browser.text(&browser.within(&entry, "a.probe").await).await;
        let depth = browser.attribute(&entry, "data-depth").await.unwrap_or_default();
        order.push((probe, depth));
    }
    let timeline: Vec<(String, String)> = order
        .into_iter()
        .filter(|(probe, _)| TIMELINE.iter().any(|(_, label)| label == probe))
        .collect();
    let expected: Vec<(String, String)> = TIMELINE
        .iter()
        .enumerate()
        .map(|(depth, (_, probe))| (probe.to_string(), depth.to_string()))
        .collect();
    assert_eq!(timeline, expected);
    if let Some(dir) = screenshots_dir() {
        browser.screenshot(&dir.join("ui-timeline.png")).await;
    }

    // The snapshot list grows without a reload.
    browser.goto(&fixture.url("/snapshots?service=inventory")).await;
    browser.find("table[data-poll] tbody tr").await;
    let fresh = fixture.snapshot("snap-arrived-live", "inventory.db");
    fixture.upload_inventory(vec![fresh]).await;
    browser
        .find_xpath("//table[@data-poll]//a[@href='/snapshots/snap-arrived-live']")
        .await;

    // Signing out: the pages are closed again.
    browser.click(&browser.find("a.logout").await).await;
    browser.goto(&fixture.url("/")).await;
    assert!(browser.url().await.contains("/login"), "signed out");
}
