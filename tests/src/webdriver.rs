//! Just enough of the W3C WebDriver protocol, spoken as plain HTTP and JSON,
//! to drive a headless Chromium through `chromedriver` in end-to-end tests:
//! navigate, find elements, click, type, read text, take screenshots.
//!
//! [`Browser::start`] launches chromedriver on a free loopback port with a
//! fresh profile directory; dropping the [`Browser`] quits the WebDriver
//! session (which closes Chromium) and kills chromedriver, also when a test
//! fails half-way. Every wait is bounded by [`WAIT`].

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value as Json};

/// Where Debian's `chromium-driver` package puts chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The longest any one wait lasts: a page load, an element to appear.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);
/// The key WebDriver names element references by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium in a WebDriver session.
pub struct Browser {
    driver: Child,
    /// `http://127.0.0.1:PORT/session/ID`; `None` until the session exists.
    session: Option<String>,
    client: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element of the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails (never
    /// skips) when chromedriver is not installed.
    pub async fn start() -> Browser {
        assert!(
            Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: the browser tests need Chromium and its WebDriver; \
             install them with `apt-get install -y chromium chromium-driver`"
        );
        let port = free_port();
        let profile = tempfile::tempdir().expect("profile directory");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT * 3)
            .build()
            .expect("HTTP client");
        let mut browser = Browser {
            driver,
            session: None,
            client,
            _profile: profile,
        };
        let base = format!("http://127.0.0.1:{port}");
        browser.wait_until_ready(&base).await;

        let user_data_dir = browser._profile.path().join("chromium");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", user_data_dir.display()),
                ],
            },
        }}});
        let created = browser
            .send(
                reqwest::Method::POST,
                &format!("{base}/session"),
                Some(capabilities),
            )
            .await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session id in {created}"));
        browser.session = Some(format!("{base}/session/{id}"));
        browser
    }

    async fn wait_until_ready(&mut self, base: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = self.client.get(format!("{base}/status")).send().await;
            if let Ok(response) = status {
                if let Ok(body) = response.json::<Json>().await {
                    if body["value"]["ready"] == true {
                        return;
                    }
                }
            }
            if let Ok(Some(exit)) = self.driver.try_wait() {
                panic!("{CHROMEDRIVER} exited at start: {exit}");
            }
            assert!(
                Instant::now() < deadline,
                "{CHROMEDRIVER} was not ready within {WAIT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// One WebDriver command: its `value`, or the WebDriver error naming the command.
    async fn try_send(&self, method: reqwest::Method, url: &str, body: Option<Json>) -> Result<Json, String> {
        let mut request = self.client.request(method.clone(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("WebDriver {method} {url}: {e}"))?;
        let status = response.status();
        let body: Json = response
            .json()
            .await
            .map_err(|e| format!("WebDriver {method} {url}: the answer is not JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "WebDriver {method} {url} failed ({status}): {} {}",
                body["value"]["error"], body["value"]["message"]
            ));
        }
        Ok(body["value"].clone())
    }

    async fn send(&self, method: reqwest::Method, url: &str, body: Option<Json>) -> Json {
        self.try_send(method, url, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Json>,
    ) -> Result<Json, String> {
        let session = self.session.as_deref().expect("a WebDriver session");
        self.try_send(method, &format!("{session}{path}"), body).await
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> Json {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// The URL of the current page.
    pub async fn url(&self) -> String {
        let url = self.command(reqwest::Method::GET, "/url", None).await;
        url.as_str().unwrap_or_default().to_owned()
    }

    /// The visible text of the whole page.
    pub async fn page_text(&self) -> String {
        let body = self.find("body").await;
        self.text(&body).await
    }

    /// The current page's HTML as the browser has it now.
    pub async fn source(&self) -> String {
        let source = self.command(reqwest::Method::GET, "/source", None).await;
        source.as_str().unwrap_or_default().to_owned()
    }

    async fn find_all_by(&self, using: &str, selector: &str) -> Vec<Element> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({ "using": using, "value": selector })),
            )
            .await;
        found
            .as_array()
            .map(|elements| {
                elements
                    .iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every element matching a CSS selector now, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.find_all_by("css selector", css).await
    }

    async fn wait_for_by(&self, using: &str, selector: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(element) = self.find_all_by(using, selector).await.into_iter().next() {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no element matches {selector:?} within {WAIT:?}; the page is {}",
                self.url().await
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The first element matching a CSS selector, waiting for one to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for_by("css selector", css).await
    }

    /// The first element matching an XPath expression, waiting for one to appear.
    pub async fn find_xpath(&self, xpath: &str) -> Element {
        self.wait_for_by("xpath", xpath).await
    }

    /// The first element inside `parent` matching a CSS selector.
    pub async fn within(&self, parent: &Element, css: &str) -> Element {
        let path = format!("/element/{}/element", parent.0);
        let found = self
            .command(
                reqwest::Method::POST,
                &path,
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no {css:?} inside the element: {found}"));
        Element(id.to_owned())
    }

    /// Waits until `condition` holds for the page's visible text (which may
    /// be a page still loading after a click).
    pub async fn wait_for_text(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let script =
                json!({ "script": "return document.body ? document.body.innerText : '';", "args": [] });
            let text = self
                .try_command(reqwest::Method::POST, "/execute/sync", Some(script))
                .await
                .ok()
                .and_then(|text| text.as_str().map(str::to_owned))
                .unwrap_or_default();
            if condition(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} within {WAIT:?}; it shows:\n{text}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn click(&self, element: &Element) {
        let path = format!("/element/{}/click", element.0);
        self.command(reqwest::Method::POST, &path, Some(json!({}))).await;
    }

    pub async fn type_text(&self, element: &Element, text: &str) {
        let path = format!("/element/{}/value", element.0);
        self.command(reqwest::Method::POST, &path, Some(json!({ "text": text })))
            .await;
    }

    /// The element's rendered text (empty when it is not displayed).
    pub async fn text(&self, element: &Element) -> String {
        let path = format!("/element/{}/text", element.0);
        let text = self.command(reqwest::Method::GET, &path, None).await;
        text.as_str().unwrap_or_default().to_owned()
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> Option<String> {
        let path = format!("/element/{}/attribute/{name}", element.0);
        let value = self.command(reqwest::Method::GET, &path, None).await;
        value.as_str().map(str::to_owned)
    }

    /// Whether a person would see the element (not inside a closed `<details>`, not hidden).
    pub async fn is_displayed(&self, element: &Element) -> bool {
        let path = format!("/element/{}/displayed", element.0);
        self.command(reqwest::Method::GET, &path, None).await == true
    }

    /// Saves a PNG of the whole current page to `path`, first making the
    /// window tall enough for the page (within reason).
    pub async fn screenshot(&self, path: &Path) {
        // Back to a common size first: a window grown for a long page would
        // leave a short one with empty space below.
        let common = json!({ "width": 1280, "height": 900 });
        self.command(reqwest::Method::POST, "/window/rect", Some(common))
            .await;
        let measure = json!({
            "script": "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight];",
            "args": [],
        });
        let sizes = self
            .command(reqwest::Method::POST, "/execute/sync", Some(measure))
            .await;
        let page = sizes[0].as_u64().unwrap_or(900);
        let chrome = sizes[1].as_u64().unwrap_or(0);
        let height = (page + chrome).clamp(600, 4000);
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": 1280, "height": height })),
        )
        .await;
        let png = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Drop cannot await, and may run inside the test's runtime: quit
            // the session from a thread with a runtime of its own.
            let quit = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let client = reqwest::Client::builder().no_proxy().timeout(WAIT).build().ok()?;
                    client.delete(session).send().await.ok()
                })
            });
            let _ = quit.join();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
