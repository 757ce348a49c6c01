//! Debug sessions: the list, and one session's timeline — every snapshot it
//! captured across services, grouped by trace and ordered by span causality
//! (see [`timeline`](super::timeline)).

use std::fmt::Write as _;

use axum::extract::{Path, State};
use keyhole_proto::v1::debugger_service_server::DebuggerService;
use keyhole_proto::v1::{ListSessionsRequest, Session, SnapshotFilter};

use super::html::{badge, code, escape, link, or_dash, query_string, url_component, when, Section};
use super::login::Viewer;
use super::timeline::{self, Entry};
use super::{Page, PageError, Ui};
use crate::ids::now_ms;

/// Indentation steps the stylesheet has; deeper spans share the last one.
const MAX_INDENT: usize = 8;

fn session_state(session: &Session, now: i64) -> &'static str {
    if session.closed_at_unix_ms != 0 {
        "closed"
    } else if session.expires_at_unix_ms <= now {
        "expired"
    } else {
        "open"
    }
}

async fn all_sessions(ui: &Ui, viewer: &Viewer) -> Result<Vec<Session>, PageError> {
    let request = viewer.request(ListSessionsRequest { all: true });
    Ok(ui.debugger.list_sessions(request).await?.into_inner().sessions)
}

/// `GET /sessions`: every session, closed and expired ones included.
pub async fn list(State(ui): State<Ui>, viewer: Viewer) -> Page {
    let sessions = all_sessions(&ui, &viewer).await?;
    let mut body = String::from("<h1>Debug sessions</h1>");
    if sessions.is_empty() {
        body.push_str(
            "<p class=\"empty\">No sessions yet. Open one with <code>keyhole session open</code>.</p>",
        );
        return Ok(viewer.page("Sessions", Section::Sessions, &body));
    }
    body.push_str(
        "<table><thead><tr><th>Session</th><th>Name</th><th>Creator</th><th>State</th>\
         <th>Created</th><th>Expires</th></tr></thead><tbody>",
    );
    let now = now_ms();
    for session in &sessions {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            link(&format!("/sessions/{}", url_component(&session.id)), &session.id),
            or_dash(&session.name),
            or_dash(&session.creator),
            badge(session_state(session, now)),
            when(session.created_at_unix_ms),
            when(session.expires_at_unix_ms),
        );
    }
    body.push_str("</tbody></table>");
    Ok(viewer.page("Sessions", Section::Sessions, &body))
}

fn entry(html: &mut String, entry: &Entry<'_>) {
    let snapshot = entry.snapshot;
    let parent = if snapshot.parent_span_id.is_empty() {
        String::new()
    } else {
        format!(
            " <span class=\"dim\">from</span> {}",
            code(&snapshot.parent_span_id)
        )
    };
    let _ = write!(
        html,
        "<li class=\"entry indent-{}\" data-depth=\"{}\"><span class=\"service\">{}</span> {} \
         <a class=\"probe\" href=\"/snapshots/{}\">{}</a> <code>{}:{}</code> \
         <span class=\"span\"><span class=\"dim\">span</span> {}{parent}</span> {}</li>",
        entry.depth.min(MAX_INDENT),
        entry.depth,
        escape(&snapshot.service),
        code(&snapshot.instance_id),
        url_component(&snapshot.id),
        escape(&snapshot.probe_label),
        escape(&snapshot.file),
        snapshot.line,
        code(&snapshot.span_id),
        when(snapshot.captured_at_unix_ms),
    );
}

/// `GET /sessions/{id}`: the session's timeline.
pub async fn timeline(State(ui): State<Ui>, viewer: Viewer, Path(id): Path<String>) -> Page {
    let session = all_sessions(&ui, &viewer)
        .await?
        .into_iter()
        .find(|session| session.id == id);
    let limit = ui.plane.limits.max_list_limit;
    let request = viewer.request(SnapshotFilter {
        session_id: id.clone(),
        limit,
        ..Default::default()
    });
    let snapshots = ui.debugger.list_snapshots(request).await?.into_inner().snapshots;
    let Some(session) = session.or_else(|| {
        // Snapshots may name a session this control plane has no record of
        // (an agent chose the id); show them even so.
        (!snapshots.is_empty()).then(|| Session {
            id: id.clone(),
            ..Default::default()
        })
    }) else {
        return Err(PageError::NotFound(format!(
            "no session `{id}`; the sessions page lists them"
        )));
    };

    let filter = query_string(&[("session", id.as_str())]);
    let mut body = format!(
        "<h1>Session timeline <code>{}</code></h1><dl class=\"facts\">\
         <dt>Name</dt><dd>{}</dd><dt>Creator</dt><dd>{}</dd><dt>State</dt><dd>{}</dd>\
         <dt>Expires</dt><dd>{}</dd><dt>Also</dt><dd><a href=\"/snapshots?{filter}\">snapshot list</a> · \
         <a href=\"/breakpoints?{filter}\">breakpoints</a></dd></dl>\
         <p class=\"note\">Within a trace, a span's snapshots come before those of the spans it called, \
         whatever the hosts' clocks say; times are each agent's own clock.</p>",
        escape(&session.id),
        or_dash(&session.name),
        or_dash(&session.creator),
        badge(session_state(&session, now_ms())),
        when(session.expires_at_unix_ms),
    );
    if snapshots.is_empty() {
        body.push_str("<p class=\"empty\">This session has captured nothing yet.</p>");
    }
    if snapshots.len() >= limit as usize {
        let _ = write!(
            body,
            "<p class=\"note\">Only the newest {limit} snapshots are shown.</p>"
        );
    }
    for trace in timeline::order(&snapshots) {
        let heading = if trace.trace_id.is_empty() {
            "Without a trace".to_owned()
        } else {
            let first_span = trace.entries.first().map_or("", |e| e.snapshot.span_id.as_str());
            format!(
                "Trace {} <span class=\"links\">{}{}</span>",
                code(trace.trace_id),
                link(
                    &format!("/snapshots?{}", query_string(&[("trace", trace.trace_id)])),
                    "list"
                ),
                ui.trace_link(trace.trace_id, first_span),
            )
        };
        let _ = write!(
            body,
            "<section class=\"trace\"><h2>{heading}</h2><ol class=\"timeline\">"
        );
        for line in &trace.entries {
            entry(&mut body, line);
        }
        body.push_str("</ol></section>");
    }
    Ok(viewer.page(&format!("Session {id}"), Section::Sessions, &body))
}
