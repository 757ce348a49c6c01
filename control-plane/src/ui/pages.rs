//! The catalogue pages: services and their instances, the probe catalogue,
//! and breakpoints with what each instance reported about them.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use keyhole_proto::v1::debugger_service_server::DebuggerService;
use keyhole_proto::v1::{
    Breakpoint, BreakpointState, DropReason, InstanceStatus, ListBreakpointsRequest, ListProbesRequest,
    ListServicesRequest, Service,
};
use serde::Deserialize;

use super::html::{
    ago, badge, code, count, enum_label, escape, link, or_dash, query_string, url_component, when, Section,
    DASH,
};
use super::login::Viewer;
use super::{Page, PageError, Ui};
use crate::ids::now_ms;

async fn services(ui: &Ui, viewer: &Viewer) -> Result<Vec<Service>, PageError> {
    let request = viewer.request(ListServicesRequest {});
    Ok(ui.debugger.list_services(request).await?.into_inner().services)
}

fn labels(labels: &std::collections::HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("<code>{}={}</code>", escape(key), escape(value)))
        .collect();
    if pairs.is_empty() {
        return DASH.into();
    }
    pairs.sort();
    pairs.join(" ")
}

/// `GET /`: every service and its instances.
pub async fn overview(State(ui): State<Ui>, viewer: Viewer) -> Page {
    let services = services(&ui, &viewer).await?;
    let mut body = String::from("<h1>Services</h1>");
    if services.is_empty() {
        body.push_str(
            "<p class=\"empty\">No service has registered yet. Embed the keyhole agent in a service \
             and point it at this control plane.</p>",
        );
    }
    for service in &services {
        let name = url_component(&service.name);
        let _ = write!(
            body,
            "<section class=\"service\"><h2>{}</h2><p class=\"meta\">{} · \
             <a href=\"/probes?service={name}\">probe catalogue</a> · \
             <a href=\"/breakpoints?service={name}\">breakpoints</a> · \
             <a href=\"/snapshots?service={name}\">snapshots</a></p>\
             <table><thead><tr><th>Instance</th><th>Connected</th><th>Version</th><th>Labels</th>\
             <th>Last seen</th><th>Registered</th><th>Probes</th></tr></thead><tbody>",
            escape(&service.name),
            count(u64::from(service.probe_count), "probe", "probes"),
        );
        for instance in &service.instances {
            let connected = if instance.connected {
                badge("connected")
            } else {
                badge("disconnected")
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{connected}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                code(&instance.instance_id),
                or_dash(&instance.version),
                labels(&instance.labels),
                ago(instance.last_seen_unix_ms),
                when(instance.registered_at_unix_ms),
                instance.probe_count,
            );
        }
        body.push_str("</tbody></table></section>");
    }
    Ok(viewer.page("Services", Section::Overview, &body))
}

#[derive(Debug, Default, Deserialize)]
pub struct ServiceQuery {
    #[serde(default)]
    service: String,
    #[serde(default)]
    session: String,
}

/// A `<form>` choosing one service (or all) for the page at `action`.
fn service_picker(action: &str, services: &[Service], chosen: &str) -> String {
    let mut options = String::from("<option value=\"\">all services</option>");
    for service in services {
        let selected = if service.name == chosen { " selected" } else { "" };
        let _ = write!(
            options,
            "<option value=\"{0}\"{selected}>{0}</option>",
            escape(&service.name)
        );
    }
    format!(
        "<form class=\"filters\" method=\"get\" action=\"{action}\"><label>Service \
         <select name=\"service\">{options}</select></label><button type=\"submit\">Show</button></form>"
    )
}

/// `GET /probes?service=`: the probe catalogue.
pub async fn probes(State(ui): State<Ui>, viewer: Viewer, Query(query): Query<ServiceQuery>) -> Page {
    let services = services(&ui, &viewer).await?;
    let request = viewer.request(ListProbesRequest {
        service: query.service.clone(),
    });
    let probes = ui.debugger.list_probes(request).await?.into_inner().probes;
    let mut body = String::from("<h1>Probe catalogue</h1>");
    body.push_str(&service_picker("/probes", &services, &query.service));
    if probes.is_empty() {
        body.push_str("<p class=\"empty\">No probes registered.</p>");
        return Ok(viewer.page("Probes", Section::Probes, &body));
    }
    body.push_str(
        "<table><thead><tr><th>Service</th><th>Probe</th><th>Location</th><th>Module</th>\
         <th>Variables</th><th>Instances</th></tr></thead><tbody>",
    );
    for entry in &probes {
        let probe = entry.probe.clone().unwrap_or_default();
        let variables: Vec<String> = probe.variables.iter().map(|v| code(v)).collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td><code>{}:{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(&entry.service),
            escape(&probe.label),
            escape(&probe.file),
            probe.line,
            or_dash(&probe.module),
            if variables.is_empty() { DASH.into() } else { variables.join(" ") },
            entry.instances,
        );
    }
    body.push_str("</tbody></table>");
    Ok(viewer.page("Probes", Section::Probes, &body))
}

/// Whether a breakpoint is still sent to agents, as people say it.
fn breakpoint_state(breakpoint: &Breakpoint, now: i64) -> &'static str {
    if breakpoint.deleted_at_unix_ms != 0 {
        "deleted"
    } else if breakpoint.expires_at_unix_ms <= now {
        "expired"
    } else {
        "active"
    }
}

fn status_state(status: &InstanceStatus) -> String {
    BreakpointState::try_from(status.state)
        .map(|state| enum_label(state.as_str_name(), "BREAKPOINT_STATE_"))
        .unwrap_or_else(|_| "unknown".into())
}

fn statuses(statuses: &[InstanceStatus]) -> String {
    if statuses.is_empty() {
        return "<p class=\"empty\">No instance has reported on this breakpoint yet.</p>".into();
    }
    let mut html = String::from(
        "<table class=\"statuses\"><thead><tr><th>Instance</th><th>Status</th><th>Hits</th>\
         <th>Updated</th><th>Message</th></tr></thead><tbody>",
    );
    for status in statuses {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            code(&status.instance_id),
            badge(&status_state(status)),
            status.hits,
            ago(status.updated_at_unix_ms),
            or_dash(&status.message),
        );
    }
    html.push_str("</tbody></table>");
    html
}

fn refusals(breakpoint: &Breakpoint) -> String {
    let reasons: Vec<String> = breakpoint
        .refusals
        .iter()
        .filter(|refusal| refusal.count > 0)
        .map(|refusal| {
            let reason = DropReason::try_from(refusal.reason)
                .map(|reason| enum_label(reason.as_str_name(), "DROP_REASON_"))
                .unwrap_or_else(|_| "other".into());
            format!("{} {}", escape(&reason), refusal.count)
        })
        .collect();
    if reasons.is_empty() {
        "none".into()
    } else {
        reasons.join(" · ")
    }
}

fn breakpoint_section(breakpoint: &Breakpoint, now: i64) -> String {
    let id = &breakpoint.id;
    let filters: Vec<String> = breakpoint
        .baggage_filters
        .iter()
        .map(|filter| code(&format!("{}={}", filter.key, filter.value)))
        .collect();
    let session = if breakpoint.session_id.is_empty() {
        DASH.into()
    } else {
        link(
            &format!("/sessions/{}", url_component(&breakpoint.session_id)),
            &breakpoint.session_id,
        )
    };
    let snapshots = format!("/snapshots?{}", query_string(&[("breakpoint", id.as_str())]));
    let deleted = if breakpoint.deleted_at_unix_ms == 0 {
        String::new()
    } else {
        format!("<dt>Deleted</dt><dd>{}</dd>", when(breakpoint.deleted_at_unix_ms))
    };
    format!(
        "<section class=\"breakpoint\" id=\"{}\"><h2>{} <code>{}</code> {}</h2>\
         <dl class=\"facts\"><dt>Service</dt><dd>{}</dd><dt>Probe</dt><dd>{}</dd>\
         <dt>Condition</dt><dd>{}</dd><dt>Session</dt><dd>{session}</dd>\
         <dt>Baggage</dt><dd>{}</dd><dt>Instance labels</dt><dd>{}</dd>\
         <dt>Limits</dt><dd>{} hits at most, {}/s</dd>\
         <dt>Created</dt><dd>{} by {}</dd><dt>Expires</dt><dd>{}</dd>{deleted}\
         <dt>Refused hits</dt><dd>{}</dd><dt>Snapshots</dt><dd>{}</dd></dl>{}</section>",
        escape(id),
        badge(breakpoint_state(breakpoint, now)),
        escape(id),
        escape(&breakpoint.probe_label),
        escape(&breakpoint.service),
        code(&breakpoint.probe_label),
        code(&breakpoint.condition),
        if filters.is_empty() {
            DASH.into()
        } else {
            filters.join(" ")
        },
        labels(&breakpoint.instance_labels),
        breakpoint.max_hits,
        breakpoint.rate_per_sec,
        when(breakpoint.created_at_unix_ms),
        or_dash(&breakpoint.creator),
        when(breakpoint.expires_at_unix_ms),
        refusals(breakpoint),
        link(&snapshots, "list"),
        statuses(&breakpoint.statuses),
    )
}

/// `GET /breakpoints?service=&session=`: every breakpoint, deleted and
/// expired ones included, with per-instance status and refused hits.
pub async fn breakpoints(State(ui): State<Ui>, viewer: Viewer, Query(query): Query<ServiceQuery>) -> Page {
    let services = services(&ui, &viewer).await?;
    let request = viewer.request(ListBreakpointsRequest {
        service: query.service.clone(),
        session_id: query.session.clone(),
        all: true,
    });
    let breakpoints = ui
        .debugger
        .list_breakpoints(request)
        .await?
        .into_inner()
        .breakpoints;
    let mut body = String::from("<h1>Breakpoints</h1>");
    body.push_str(&service_picker("/breakpoints", &services, &query.service));
    if !query.session.is_empty() {
        let _ = write!(body, "<p class=\"meta\">Session {}</p>", code(&query.session));
    }
    if breakpoints.is_empty() {
        body.push_str("<p class=\"empty\">No breakpoints. Set one with <code>keyhole break set</code>.</p>");
    }
    let now = now_ms();
    for breakpoint in &breakpoints {
        body.push_str(&breakpoint_section(breakpoint, now));
    }
    Ok(viewer.page("Breakpoints", Section::Breakpoints, &body))
}
