//! Setting a breakpoint: every check that keeps a breakpoint from silently
//! never hitting or capturing more than the operator allows, done when it is
//! set so the error reaches the person at once.

use std::collections::BTreeSet;
use std::time::Duration;

use keyhole_proto::condition;
use keyhole_proto::limits::{self, default_capture_limits};
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::{Action, BaggageFilter, Breakpoint, ProbeSite, SetBreakpointRequest};

use crate::config::ServerLimits;
use crate::store::SessionRecord;

/// What the request is checked against, looked up by the caller.
pub struct BreakpointContext<'a> {
    /// The probe's catalogue entries in the service (one per instance that has it).
    pub probe: Option<&'a ProbeSite>,
    /// Whether any instance of the service has registered.
    pub service_known: bool,
    pub session: Option<&'a SessionRecord>,
    pub limits: &'a ServerLimits,
    pub redaction: &'a RedactionList,
    pub now_ms: i64,
    pub creator: String,
    pub id: String,
}

/// Why a breakpoint was refused; the message is shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Invalid(String),
    NotFound(String),
    Precondition(String),
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::Invalid(message.into())
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An HTTP token (RFC 9110), as baggage keys must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn check_condition(source: &str, probe: &ProbeSite, redaction: &RedactionList) -> Result<(), Refusal> {
    condition::parse(source)
        .and_then(|parsed| parsed.check(&probe.variables, redaction))
        .map_err(|e| invalid(format!("invalid condition: {e}")))
}

/// Checks a request and builds the breakpoint to store.
pub fn build(request: &SetBreakpointRequest, cx: BreakpointContext<'_>) -> Result<Breakpoint, Refusal> {
    let service = request.service.trim();
    let label = request.probe_label.trim();
    if service.is_empty() {
        return Err(invalid("a service is required (--service)"));
    }
    if label.is_empty() {
        return Err(invalid("a probe label is required (--probe)"));
    }
    if !cx.service_known {
        return Err(Refusal::NotFound(format!(
            "unknown service `{service}`: no agent of that service has registered; `keyhole services list` shows the known ones"
        )));
    }
    let probe = cx.probe.ok_or_else(|| {
        Refusal::NotFound(format!(
            "service `{service}` has no probe `{label}`; `keyhole probes list --service {service}` shows its probes"
        ))
    })?;

    let session_id = request.session_id.trim();
    if session_id.is_empty() {
        return Err(invalid(
            "a debug session is required (--session); open one with `keyhole session open`",
        ));
    }
    let session = cx.session.ok_or_else(|| {
        Refusal::NotFound(format!(
            "unknown session `{session_id}`; `keyhole session list` shows the open ones"
        ))
    })?;
    if session.closed_at.is_some() {
        return Err(Refusal::Precondition(format!(
            "session `{session_id}` is closed; open a new one"
        )));
    }
    if session.expires_at <= cx.now_ms {
        return Err(Refusal::Precondition(format!(
            "session `{session_id}` has expired; open a new one"
        )));
    }

    let condition = request.condition.trim();
    if !condition.is_empty() {
        check_condition(condition, probe, cx.redaction)?;
    }

    let limits = request.limits.unwrap_or_default();
    for ((name, asked), (_, max)) in limits.named().into_iter().zip(cx.limits.max_capture.named()) {
        if asked > max {
            return Err(invalid(format!(
                "{name} {asked} is above the server maximum of {max}"
            )));
        }
    }
    let limits = limits.or_defaults(&default_capture_limits());

    let max_hits = request.max_hits.unwrap_or(limits::DEFAULT_MAX_HITS);
    if max_hits == 0 || max_hits > cx.limits.max_hits {
        return Err(invalid(format!(
            "max hits {max_hits} is out of range: use 1 to {}",
            cx.limits.max_hits
        )));
    }
    let rate = request.rate_per_sec.unwrap_or(limits::DEFAULT_RATE_PER_SEC);
    if !(rate.is_finite() && rate > 0.0 && rate <= cx.limits.max_rate_per_sec) {
        return Err(invalid(format!(
            "rate {rate} per second is out of range: use more than 0 and at most {}",
            cx.limits.max_rate_per_sec
        )));
    }
    let ttl = match request.expire_seconds {
        None => limits::DEFAULT_BREAKPOINT_TTL,
        Some(seconds) => Duration::from_secs(seconds),
    };
    if ttl.is_zero() || ttl > cx.limits.max_breakpoint_ttl {
        return Err(invalid(format!(
            "expiry of {}s is out of range: use 1s to {}s",
            ttl.as_secs(),
            cx.limits.max_breakpoint_ttl.as_secs()
        )));
    }
    // A breakpoint cannot outlive the session it captures for.
    let expires_at = cx.now_ms.saturating_add(duration_ms(ttl)).min(session.expires_at);

    if request.baggage_filters.len() > cx.limits.max_baggage_filters {
        return Err(invalid(format!(
            "{} baggage filters given; at most {} are allowed",
            request.baggage_filters.len(),
            cx.limits.max_baggage_filters
        )));
    }
    let mut seen = BTreeSet::new();
    let mut baggage_filters = Vec::new();
    for filter in &request.baggage_filters {
        let key = filter.key.trim();
        if !is_token(key) || key.len() > cx.limits.max_name_len {
            return Err(invalid(format!(
                "baggage filter key {key:?} is not a valid baggage key"
            )));
        }
        if !seen.insert(key) {
            return Err(invalid(format!("baggage filter key `{key}` is given twice")));
        }
        if cx.redaction.is_redacted(key) {
            return Err(invalid(format!(
                "baggage key `{key}` is redacted and cannot be filtered on"
            )));
        }
        baggage_filters.push(BaggageFilter {
            key: key.to_owned(),
            value: filter.value.clone(),
        });
    }
    if request.instance_labels.len() > cx.limits.max_instance_labels {
        return Err(invalid(format!(
            "at most {} instance labels are allowed",
            cx.limits.max_instance_labels
        )));
    }

    Ok(Breakpoint {
        id: cx.id,
        service: service.to_owned(),
        instance_labels: request.instance_labels.clone(),
        probe_label: label.to_owned(),
        session_id: session_id.to_owned(),
        baggage_filters,
        condition: condition.to_owned(),
        limits: Some(limits),
        max_hits,
        rate_per_sec: rate,
        created_at_unix_ms: cx.now_ms,
        expires_at_unix_ms: expires_at,
        action: Action::Snapshot as i32,
        creator: cx.creator,
        deleted_at_unix_ms: 0,
        statuses: Vec::new(),
        refusals: Vec::new(),
    })
}
