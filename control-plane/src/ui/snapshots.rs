//! Snapshots: the filtered list, which grows while it is open through a
//! small JSON endpoint the page's script polls, and one snapshot in full
//! (header, variable tree, stack, baggage).

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use keyhole_proto::v1::debugger_service_server::DebuggerService;
use keyhole_proto::v1::{GetSnapshotRequest, Snapshot, SnapshotFilter, StackFrame};
use serde::Deserialize;
use serde_json::json;

use super::html::{code, escape, link, query_string, url_component, when, Section, DASH};
use super::login::{ApiViewer, Viewer};
use super::{tree, Page, Ui};
use crate::cli::time::timestamp;

/// Snapshots the list shows when it opens, newest first.
const LIST_LIMIT: u32 = 100;
/// Snapshots one poll reads from storage at most; a busier stream is caught
/// up over the following polls.
const LIVE_PAGE: u32 = 100;
/// How often the list's script asks for new snapshots, in milliseconds.
const POLL_INTERVAL_MS: u32 = 2_000;

/// The list's filters (and, for the JSON endpoint, where to read from).
#[derive(Debug, Default, Deserialize)]
pub struct SnapshotQuery {
    #[serde(default)]
    session: String,
    #[serde(default)]
    breakpoint: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    trace: String,
    after: Option<i64>,
}

impl SnapshotQuery {
    fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            ("session", &self.session),
            ("breakpoint", &self.breakpoint),
            ("service", &self.service),
            ("trace", &self.trace),
        ]
    }

    fn filter(&self, limit: u32) -> SnapshotFilter {
        SnapshotFilter {
            session_id: self.session.trim().to_owned(),
            breakpoint_id: self.breakpoint.trim().to_owned(),
            service: self.service.trim().to_owned(),
            trace_id: self.trace.trim().to_owned(),
            limit,
        }
    }

    fn matches(&self, snapshot: &Snapshot) -> bool {
        [
            (&self.session, &snapshot.session_id),
            (&self.breakpoint, &snapshot.breakpoint_id),
            (&self.service, &snapshot.service),
            (&self.trace, &snapshot.trace_id),
        ]
        .into_iter()
        .all(|(wanted, actual)| wanted.trim().is_empty() || wanted.trim() == actual)
    }
}

fn snapshot_href(id: &str) -> String {
    format!("/snapshots/{}", url_component(id))
}

fn session_href(id: &str) -> String {
    format!("/sessions/{}", url_component(id))
}

fn filtered_href(key: &str, value: &str) -> String {
    format!("/snapshots?{}", query_string(&[(key, value)]))
}

/// A link to `href`, or a dash when there is nothing to link.
fn link_or_dash(href: &str, text: &str) -> String {
    if text.is_empty() {
        DASH.into()
    } else {
        link(href, text)
    }
}

/// One row of the list. The script builds the same cells from [`live_item`].
fn row(snapshot: &Snapshot) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"id\">{}</td><td class=\"id\">{}</td></tr>",
        link(&snapshot_href(&snapshot.id), &timestamp(snapshot.captured_at_unix_ms)),
        escape(&snapshot.service),
        code(&snapshot.instance_id),
        code(&snapshot.probe_label),
        link_or_dash(&session_href(&snapshot.session_id), &snapshot.session_id),
        link_or_dash(&filtered_href("trace", &snapshot.trace_id), &snapshot.trace_id),
        link_or_dash(
            &format!("/breakpoints#{}", url_component(&snapshot.breakpoint_id)),
            &snapshot.breakpoint_id
        ),
    )
}

/// One snapshot for the list's script: the values of [`row`]'s cells and
/// where they link. The script puts them in the page as text, never as HTML.
fn live_item(snapshot: &Snapshot) -> serde_json::Value {
    json!({
        "id": snapshot.id,
        "url": snapshot_href(&snapshot.id),
        "captured": timestamp(snapshot.captured_at_unix_ms),
        "captured_at_unix_ms": snapshot.captured_at_unix_ms,
        "service": snapshot.service,
        "instance_id": snapshot.instance_id,
        "probe_label": snapshot.probe_label,
        "session_id": snapshot.session_id,
        "session_url": session_href(&snapshot.session_id),
        "trace_id": snapshot.trace_id,
        "trace_url": filtered_href("trace", &snapshot.trace_id),
        "breakpoint_id": snapshot.breakpoint_id,
        "breakpoint_url": format!("/breakpoints#{}", url_component(&snapshot.breakpoint_id)),
    })
}

fn filter_form(query: &SnapshotQuery) -> String {
    let mut fields = String::new();
    let labels = ["Session", "Breakpoint", "Service", "Trace id"];
    for ((name, value), label) in query.pairs().into_iter().zip(labels) {
        let _ = write!(
            fields,
            "<label>{label} <input name=\"{name}\" value=\"{}\" spellcheck=\"false\"></label>",
            escape(value)
        );
    }
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/snapshots\">{fields}\
         <button type=\"submit\">Filter</button> <a href=\"/snapshots\">clear</a></form>"
    )
}

/// `GET /snapshots?session=&breakpoint=&service=&trace=`: the newest
/// snapshots matching the filters; new ones appear while the page is open.
pub async fn list(State(ui): State<Ui>, viewer: Viewer, Query(query): Query<SnapshotQuery>) -> Page {
    // Read before the list: a snapshot stored in between then comes with the
    // first poll rather than never (the script skips ids it already shows).
    let after = ui.plane.store.last_snapshot_seq().await?;
    let limit = LIST_LIMIT.min(ui.plane.limits.max_list_limit);
    let request = viewer.request(query.filter(limit));
    let snapshots = ui.debugger.list_snapshots(request).await?.into_inner().snapshots;

    let mut body = String::from("<h1>Snapshots</h1>");
    body.push_str(&filter_form(&query));
    let _ = write!(
        body,
        "<p class=\"meta\"><span id=\"live-status\">Showing the newest {limit} at most.</span></p>\
         <table class=\"snapshots\" data-poll=\"/api/snapshots\" data-after=\"{after}\" data-filter=\"{}\" \
         data-interval=\"{POLL_INTERVAL_MS}\"><thead><tr><th>Captured</th><th>Service</th><th>Instance</th>\
         <th>Probe</th><th>Session</th><th>Trace</th><th>Breakpoint</th></tr></thead><tbody>",
        escape(&query_string(&query.pairs()))
    );
    for snapshot in &snapshots {
        body.push_str(&row(snapshot));
    }
    body.push_str("</tbody></table>");
    if snapshots.is_empty() {
        body.push_str("<p class=\"empty\" id=\"no-snapshots\">No snapshots yet; new ones appear here.</p>");
    }
    Ok(viewer.page("Snapshots", Section::Snapshots, &body))
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `GET /api/snapshots?after=N&…filters`: snapshots stored after position
/// `N` that match the filters, oldest first, and the position to ask from
/// next time (`next`, a string of digits: positions on PostgreSQL outgrow the
/// integers a JavaScript number holds exactly); `more` says another page is
/// already waiting.
pub async fn live(State(ui): State<Ui>, _viewer: ApiViewer, Query(query): Query<SnapshotQuery>) -> Response {
    let Some(after) = query.after else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "say where to read from: ?after=N, with N from data-after or the last answer's next",
        );
    };
    let page = match ui.plane.store.snapshots_after(after, LIVE_PAGE).await {
        Ok(page) => page,
        Err(error) => {
            let status = crate::storage_status(&error);
            return api_error(StatusCode::SERVICE_UNAVAILABLE, status.message());
        }
    };
    let next = page.last().map_or(after, |(position, _)| *position);
    let snapshots: Vec<serde_json::Value> = page
        .iter()
        .filter(|(_, snapshot)| query.matches(snapshot))
        .map(|(_, snapshot)| live_item(snapshot))
        .collect();
    Json(json!({
        "next": next.to_string(),
        "more": page.len() >= LIVE_PAGE as usize,
        "snapshots": snapshots,
    }))
    .into_response()
}

fn stack(frames: &[StackFrame]) -> String {
    if frames.is_empty() {
        return "<p class=\"empty\">No stack was captured.</p>".into();
    }
    let mut html = String::from(
        "<table class=\"stack\"><thead><tr><th>#</th><th>Function</th><th>Location</th></tr></thead><tbody>",
    );
    for (index, frame) in frames.iter().enumerate() {
        let function = if frame.function.is_empty() {
            format!("<code class=\"dim\">{:#x}</code>", frame.address)
        } else {
            code(&frame.function)
        };
        let location = match (frame.file.is_empty(), frame.column) {
            (true, _) => DASH.into(),
            (false, 0) => code(&format!("{}:{}", frame.file, frame.line)),
            (false, column) => code(&format!("{}:{}:{column}", frame.file, frame.line)),
        };
        let _ = write!(
            html,
            "<tr><td class=\"num\">{index}</td><td>{function}</td><td>{location}</td></tr>"
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn baggage(snapshot: &Snapshot) -> String {
    if snapshot.baggage.is_empty() {
        return "<p class=\"empty\">The breakpoint matched on no baggage.</p>".into();
    }
    let mut html = String::from("<table><thead><tr><th>Key</th><th>Value</th></tr></thead><tbody>");
    for entry in &snapshot.baggage {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td></tr>",
            code(&entry.key),
            code(&entry.value)
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// `GET /snapshots/{id}`: one snapshot in full.
pub async fn detail(State(ui): State<Ui>, viewer: Viewer, Path(id): Path<String>) -> Page {
    let request = viewer.request(GetSnapshotRequest { id });
    let snapshot = ui.debugger.get_snapshot(request).await?.into_inner();
    let trace = if snapshot.trace_id.is_empty() {
        DASH.into()
    } else {
        format!(
            "{} · {}{}",
            code(&snapshot.trace_id),
            link(
                &filtered_href("trace", &snapshot.trace_id),
                "snapshots in this trace"
            ),
            ui.trace_link(&snapshot.trace_id, &snapshot.span_id)
        )
    };
    let module = if snapshot.module.is_empty() {
        String::new()
    } else {
        format!(" in {}", code(&snapshot.module))
    };
    let body = format!(
        "<h1>Snapshot <code>{}</code></h1><dl class=\"facts\">\
         <dt>Service</dt><dd>{}</dd><dt>Instance</dt><dd>{}</dd>\
         <dt>Probe</dt><dd>{}</dd><dt>Location</dt><dd><code>{}:{}</code>{module}</dd>\
         <dt>Captured</dt><dd>{} <span class=\"dim\">(the agent's clock)</span></dd>\
         <dt>Received</dt><dd>{} <span class=\"dim\">(the control plane's clock)</span></dd>\
         <dt>Breakpoint</dt><dd>{}</dd><dt>Session</dt><dd>{}</dd>\
         <dt>Trace id</dt><dd>{trace}</dd><dt>Span id</dt><dd>{}</dd><dt>Parent span id</dt><dd>{}</dd>\
         <dt>Size</dt><dd>{}</dd></dl>\
         <section><h2>Variables</h2><p class=\"tree-tools\">\
         <button type=\"button\" data-tree=\"expand\" hidden>Expand all</button> \
         <button type=\"button\" data-tree=\"collapse\" hidden>Collapse all</button></p>{}</section>\
         <section><h2>Stack</h2>{}</section><section><h2>Baggage</h2>{}</section>",
        escape(&snapshot.id),
        link_or_dash(&filtered_href("service", &snapshot.service), &snapshot.service),
        code(&snapshot.instance_id),
        code(&snapshot.probe_label),
        escape(&snapshot.file),
        snapshot.line,
        when(snapshot.captured_at_unix_ms),
        when(snapshot.received_at_unix_ms),
        link_or_dash(
            &format!("/breakpoints#{}", url_component(&snapshot.breakpoint_id)),
            &snapshot.breakpoint_id
        ),
        link_or_dash(&session_href(&snapshot.session_id), &snapshot.session_id),
        code(&snapshot.span_id),
        code(&snapshot.parent_span_id),
        match snapshot.captured_bytes {
            0 => DASH.into(),
            bytes => format!("{bytes} bytes captured"),
        },
        tree::variables(&snapshot.variables),
        stack(&snapshot.stack),
        baggage(&snapshot),
    );
    Ok(viewer.page(&format!("Snapshot {}", snapshot.id), Section::Snapshots, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_row_escapes_what_the_agent_sent_and_links_by_encoded_id() {
        let snapshot = Snapshot {
            id: "snap/<1>".into(),
            service: "<b>shop</b>".into(),
            session_id: "ses-1".into(),
            ..Default::default()
        };
        let html = row(&snapshot);
        assert!(html.contains("href=\"/snapshots/snap%2F%3C1%3E\""));
        assert!(html.contains("&lt;b&gt;shop&lt;/b&gt;"));
        assert!(!html.contains("<b>"));
        assert_eq!(live_item(&snapshot)["url"], "/snapshots/snap%2F%3C1%3E");
    }

    #[test]
    fn empty_filters_match_everything_and_set_ones_must_be_equal() {
        let snapshot = Snapshot {
            service: "shop".into(),
            trace_id: "t1".into(),
            ..Default::default()
        };
        let mut query = SnapshotQuery::default();
        assert!(query.matches(&snapshot));
        query.service = "shop".into();
        assert!(query.matches(&snapshot));
        query.trace = "t2".into();
        assert!(!query.matches(&snapshot));
    }

    #[test]
    fn frames_without_symbols_show_their_address() {
        let frames = [
            StackFrame {
                address: 0x1f00,
                ..Default::default()
            },
            StackFrame {
                function: "shop::handler".into(),
                file: "src/shop.rs".into(),
                line: 12,
                column: 5,
                ..Default::default()
            },
        ];
        let html = stack(&frames);
        assert!(html.contains("0x1f00"));
        assert!(
            html.contains("<code>shop::handler</code>") && html.contains("<code>src/shop.rs:12:5</code>")
        );
    }
}
