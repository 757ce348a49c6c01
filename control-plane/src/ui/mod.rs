//! The control plane's HTTP side: the read-only web UI and the health check,
//! on the same port as the gRPC services.
//!
//! Pages are rendered here as HTML with one stylesheet and one small script
//! (no inline script or style, so the Content-Security-Policy can forbid
//! them). They read through [`DebuggerApi`], the service the CLI calls, with
//! the signed-in person's own token, so the UI shows what that token may see
//! and nothing else. Every page needs a `viewer` token or better, given once
//! on the sign-in page and kept in a cookie (module `login`).

mod html;
mod login;
mod pages;
mod sessions;
mod snapshots;
mod timeline;
mod tree;

use std::sync::Arc;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use tonic::Code;

use crate::debugger::DebuggerApi;
use crate::state::ControlPlane;
use html::{escape, Section};

/// The environment variable with a trace viewer's URL, `{trace_id}` (and
/// optionally `{span_id}`) standing for the ids, e.g.
/// `https://jaeger.example/trace/{trace_id}`. Unset: no trace links.
pub const TRACE_URL_ENV: &str = "KEYHOLE_TRACE_URL";

/// Scripts and styles only from this server's own files; no framing, no
/// `<base>` tricks, forms only back to this server.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

const STYLESHEET: &str = include_str!("../../assets/keyhole.css");
const SCRIPT: &str = include_str!("../../assets/keyhole.js");

/// What every page handler gets.
#[derive(Clone)]
struct Ui {
    plane: Arc<ControlPlane>,
    debugger: Arc<DebuggerApi>,
    trace_viewer: Option<Arc<TraceViewer>>,
    /// The sign-in cookie is `Secure`: the UI is served over TLS.
    secure_cookies: bool,
}

/// The HTTP routes; gRPC services are added beside them by the server. `tls`: the server speaks TLS,
/// so the sign-in cookie may be, and is, `Secure`.
pub fn router(plane: Arc<ControlPlane>, tls: bool) -> Router {
    let ui = Ui {
        debugger: Arc::new(DebuggerApi::new(plane.clone())),
        plane,
        trace_viewer: TraceViewer::from_env().map(Arc::new),
        secure_cookies: tls,
    };
    Router::new()
        .route("/", get(pages::overview))
        .route("/probes", get(pages::probes))
        .route("/breakpoints", get(pages::breakpoints))
        .route("/snapshots", get(snapshots::list))
        .route("/snapshots/{id}", get(snapshots::detail))
        .route("/api/snapshots", get(snapshots::live))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::timeline))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", get(login::logout))
        .route(
            "/assets/keyhole.css",
            get(|| asset("text/css; charset=utf-8", STYLESHEET)),
        )
        .route(
            "/assets/keyhole.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::map_response(protective_headers))
        .with_state(ui)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            // Revalidated on every load, so a new binary's files are never shadowed.
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Headers on every UI response. Pages hold captured data, so nothing is
/// cached unless the handler said otherwise (the static assets), and page
/// URLs (ids, filters) are not sent to other sites as referrers. (Not
/// `no-referrer`: then browsers send `Origin: null` on our own sign-in form.)
async fn protective_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// What a page handler returns.
type Page = Result<Html<String>, PageError>;

/// Why a page could not be shown.
#[derive(Debug)]
enum PageError {
    /// No valid sign-in: back to the login page.
    SignIn,
    NotFound(String),
    Invalid(String),
    Unavailable(String),
}

impl From<tonic::Status> for PageError {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => PageError::SignIn,
            Code::NotFound => PageError::NotFound(message),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                PageError::Invalid(message)
            }
            _ => PageError::Unavailable(message),
        }
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(error: crate::store::StoreError) -> Self {
        PageError::from(crate::storage_status(&error))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::SignIn => return Redirect::to("/login").into_response(),
            PageError::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
            PageError::Invalid(message) => (StatusCode::BAD_REQUEST, "Not understood", message),
            PageError::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message),
        };
        let body = format!(
            "<h1>{title}</h1><p class=\"error\">{}</p><p><a href=\"/\">Back to the services</a></p>",
            escape(&message)
        );
        (status, Html(html::page(title, Section::Other, None, &body))).into_response()
    }
}

/// Links to an external trace viewer, from [`TRACE_URL_ENV`].
#[derive(Debug)]
struct TraceViewer {
    template: String,
}

impl TraceViewer {
    fn from_env() -> Option<Self> {
        let template = std::env::var(TRACE_URL_ENV).ok()?;
        let viewer = Self::new(&template);
        if viewer.is_none() {
            tracing::warn!("{TRACE_URL_ENV} is ignored: it must be an http(s) URL containing {{trace_id}}");
        }
        viewer
    }

    fn new(template: &str) -> Option<Self> {
        let template = template.trim();
        let web = template.starts_with("https://") || template.starts_with("http://");
        (web && template.contains("{trace_id}")).then(|| Self {
            template: template.to_owned(),
        })
    }

    /// The viewer's URL for a trace (and span), if the ids are W3C hex ids;
    /// anything else an agent sent never reaches a URL.
    fn url(&self, trace_id: &str, span_id: &str) -> Option<String> {
        let hex = |id: &str, len: usize| {
            id.len() == len
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && id.bytes().any(|b| b != b'0')
        };
        if !hex(trace_id, 32) {
            return None;
        }
        let span_id = if hex(span_id, 16) { span_id } else { "" };
        Some(
            self.template
                .replace("{trace_id}", trace_id)
                .replace("{span_id}", span_id),
        )
    }
}

impl Ui {
    /// `<a>` to the trace viewer for `trace_id`, or nothing.
    fn trace_link(&self, trace_id: &str, span_id: &str) -> String {
        self.trace_viewer
            .as_ref()
            .and_then(|viewer| viewer.url(trace_id, span_id))
            .map(|url| {
                format!(
                    " <a class=\"external\" href=\"{}\" rel=\"noopener noreferrer\" target=\"_blank\">open in trace viewer</a>",
                    escape(&url)
                )
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_links_need_an_http_template_and_real_trace_ids() {
        assert!(TraceViewer::new("javascript:alert(1)//{trace_id}").is_none());
        assert!(TraceViewer::new("https://jaeger.example/search").is_none());
        let viewer = TraceViewer::new("https://jaeger.example/trace/{trace_id}?span={span_id}").unwrap();
        assert_eq!(
            viewer
                .url("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
                .as_deref(),
            Some("https://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?span=00f067aa0ba902b7")
        );
        assert_eq!(viewer.url("\"><script>", "").as_deref(), None);
        assert_eq!(viewer.url(&"0".repeat(32), "").as_deref(), None);
        assert_eq!(
            viewer
                .url("4bf92f3577b34da6a3ce929d0e0e4736", "not-a-span")
                .as_deref(),
            Some("https://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736?span=")
        );
    }
}
