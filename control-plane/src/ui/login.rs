//! Signing in to the UI: the login form, the cookie that carries the API
//! token afterwards, and the extractors that turn that cookie back into a
//! checked [`Viewer`] on every request.
//!
//! The cookie holds the API token itself (the control plane keeps no UI
//! sessions), and it is checked against the store on every request, so a
//! revoked token signs its holder out at once. It is `HttpOnly` (no script
//! can read it) and `SameSite=Strict` (no other site's page makes the
//! browser send it). Served over TLS it is also `Secure` (never sent over
//! plain HTTP); the plain-HTTP default on loopback cannot use `Secure`, or
//! the browser would never send the cookie back.

use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use serde::Deserialize;
use tonic::Code;

use super::html::{self, escape, url_component, Section};
use super::{PageError, Ui};
use crate::audit::{CallerAddress, PeerAddress};
use crate::auth::{Principal, Role};

/// The cookie's name.
pub const COOKIE_NAME: &str = "keyhole_token";
/// Longer than any token the control plane mints; longer input is refused unread.
const MAX_TOKEN_LEN: usize = 256;
/// Longest `next` page to return to after signing in.
const MAX_NEXT_LEN: usize = 2048;

/// Where the audit log says a call came from when the web UI made it for a
/// browser whose address the server was not told.
const WEB_UI_ADDRESS: &str = "web UI";

/// A person signed in with a token that allows at least the viewer role.
pub struct Viewer {
    token: String,
    principal: Principal,
    /// The browser's address, for the audit log.
    address: String,
}

impl Viewer {
    /// The token from the request's cookie, checked now.
    async fn check(ui: &Ui, parts: &Parts) -> Result<Viewer, PageError> {
        let token = cookie_token(&parts.headers).ok_or(PageError::SignIn)?;
        let principal = ui.plane.auth.authenticate(token, Role::Viewer).await?;
        let address = match parts.extensions.get::<ConnectInfo<PeerAddress>>() {
            Some(ConnectInfo(PeerAddress(peer))) => format!("{peer} ({WEB_UI_ADDRESS})"),
            None => WEB_UI_ADDRESS.to_owned(),
        };
        Ok(Viewer {
            token: token.to_owned(),
            principal,
            address,
        })
    }

    /// A `DebuggerService` request carrying this person's token, so the
    /// service checks it exactly as it checks the CLI's, and the browser's
    /// address, which the service's audit log records.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .extensions_mut()
            .insert(CallerAddress(self.address.clone()));
        // The token was checked to be printable ASCII, so it is a valid header value.
        if let Ok(value) = format!("Bearer {}", self.token).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    /// A page with the navigation and this person's name in its header.
    pub fn page(&self, title: &str, section: Section, body: &str) -> Html<String> {
        Html(html::page(
            title,
            section,
            Some(&self.principal.display_name()),
            body,
        ))
    }
}

impl FromRequestParts<Ui> for Viewer {
    type Rejection = Response;

    /// Without a valid cookie: a redirect to the login page that comes back here.
    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Response> {
        Viewer::check(ui, parts).await.map_err(|error| match error {
            PageError::SignIn => sign_in_redirect(&parts.uri),
            other => other.into_response(),
        })
    }
}

/// A [`Viewer`] for the JSON API: without a valid cookie, a 401 with a JSON
/// error rather than a redirect a script cannot follow usefully.
pub struct ApiViewer;

impl FromRequestParts<Ui> for ApiViewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Ui) -> Result<Self, Response> {
        Viewer::check(ui, parts)
            .await
            .map(|_| ApiViewer)
            .map_err(|error| match error {
                PageError::SignIn => (
                    StatusCode::UNAUTHORIZED,
                    Json(serde_json::json!({ "error": "not signed in: sign in again at /login" })),
                )
                    .into_response(),
                other => other.into_response(),
            })
    }
}

fn sign_in_redirect(uri: &Uri) -> Response {
    let back = uri.path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    if back == "/" {
        Redirect::to("/login").into_response()
    } else {
        Redirect::to(&format!("/login?next={}", url_component(back))).into_response()
    }
}

/// Something that could be a token: printable ASCII of a sane length.
fn plausible(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_TOKEN_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
        .filter(|value| plausible(value))
}

/// The attributes of the sign-in cookie, and of the one that clears it.
fn cookie_attributes(secure: bool) -> &'static str {
    if secure {
        "HttpOnly; SameSite=Strict; Path=/; Secure"
    } else {
        "HttpOnly; SameSite=Strict; Path=/"
    }
}

fn set_cookie(token: &str, secure: bool) -> String {
    format!("{COOKIE_NAME}={token}; {}", cookie_attributes(secure))
}

fn cleared_cookie(secure: bool) -> String {
    format!("{COOKIE_NAME}=; {}; Max-Age=0", cookie_attributes(secure))
}

/// Where to go after signing in: a path on this server, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with('/')
                && !next.starts_with("//")
                && next.len() <= MAX_NEXT_LEN
                && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            next
        }
        _ => "/",
    }
}

/// A sign-in POST from another site's page: the browser's `Origin` names a
/// different host. (Requests without `Origin` are not from a browser form.)
fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    origin_host != Some(host)
}

fn login_page(next: &str, error: Option<&str>) -> Html<String> {
    let error = error
        .map(|message| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)))
        .unwrap_or_default();
    let body = format!(
        "<section class=\"login\"><h1>Sign in</h1>\
         <p>Enter an API token with the viewer role or above. \
         An admin creates one with <code>keyhole token create --role viewer</code>.</p>{error}\
         <form method=\"post\" action=\"/login\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"off\" \
         spellcheck=\"false\" required autofocus>\
         <button type=\"submit\">Sign in</button></form></section>",
        escape(next)
    );
    Html(html::page("Sign in", Section::Other, None, &body))
}

#[derive(Debug, Default, Deserialize)]
pub struct NextPage {
    next: Option<String>,
}

/// `GET /login`: the form.
pub async fn form(Query(query): Query<NextPage>) -> Html<String> {
    login_page(safe_next(query.next.as_deref()), None)
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// `POST /login`: checks the token, sets the cookie and goes on to `next`,
/// or shows the form again with one line saying what was wrong.
pub async fn submit(State(ui): State<Ui>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    if cross_site(&headers) {
        return (StatusCode::FORBIDDEN, "sign-in from another site refused\n").into_response();
    }
    let next = safe_next(form.next.as_deref());
    let token = form.token.trim();
    let refused = |message: &str| login_page(next, Some(message)).into_response();
    if token.is_empty() {
        return refused("Enter an API token.");
    }
    const INVALID: &str = "That token is not valid: it is unknown, revoked or mistyped.";
    if !plausible(token) {
        return refused(INVALID);
    }
    match ui.plane.auth.authenticate(token, Role::Viewer).await {
        Ok(principal) => {
            tracing::info!(token = %principal.token_id, "signed in to the web UI");
            let cookie = set_cookie(token, ui.secure_cookies);
            ([(SET_COOKIE, cookie)], Redirect::to(next)).into_response()
        }
        Err(status) => refused(match status.code() {
            Code::Unauthenticated => INVALID,
            Code::PermissionDenied => "An agent token cannot sign in; use a viewer, debugger or admin token.",
            _ => "The control plane could not check the token (its storage failed); try again.",
        }),
    }
}

/// `GET /logout`: forgets the cookie.
pub async fn logout(State(ui): State<Ui>) -> Response {
    let cookie = cleared_cookie(ui.secure_cookies);
    ([(SET_COOKIE, cookie)], Redirect::to("/login")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_server_are_returned_to() {
        assert_eq!(safe_next(Some("/snapshots/s-1?x=1")), "/snapshots/s-1?x=1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "",
            "x",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_token_is_read_from_its_own_cookie_only() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "other=1; keyhole_token=kh_ab_cd ; x=2".parse().unwrap());
        assert_eq!(cookie_token(&headers), Some("kh_ab_cd"));
        headers.insert(COOKIE, "keyhole_token_old=kh_x_y".parse().unwrap());
        assert_eq!(cookie_token(&headers), None);
        headers.insert(COOKIE, "keyhole_token=".parse().unwrap());
        assert_eq!(cookie_token(&headers), None);
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict_and_logout_expires_it() {
        for secure in [false, true] {
            let cookie = set_cookie("kh_ab_cd", secure);
            assert!(
                cookie.contains("HttpOnly")
                    && cookie.contains("SameSite=Strict")
                    && cookie.contains("Path=/")
            );
            assert!(cleared_cookie(secure).contains("Max-Age=0"));
            assert_eq!(cookie.ends_with("; Secure"), secure, "{cookie}");
            assert_eq!(cleared_cookie(secure).contains("; Secure"), secure);
        }
    }

    #[test]
    fn a_sign_in_posted_from_another_site_is_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "127.0.0.1:7070".parse().unwrap());
        assert!(!cross_site(&headers), "no Origin: not a browser form");
        headers.insert(ORIGIN, "http://127.0.0.1:7070".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&headers));
        headers.insert(ORIGIN, "null".parse().unwrap());
        assert!(cross_site(&headers));
    }
}
