//! What the CLI prints: aligned tables and detail views for people, or JSON
//! (`--output json`) for scripts. Captured strings are printed escaped, so a
//! captured value can never drive the terminal.

mod audit;

use std::fmt::Write as _;
use std::io::Write as _;

use keyhole_proto::v1::{
    value::Kind, ApiToken, Breakpoint, BreakpointState, DropReason, InstanceStatus, Service, ServiceProbe,
    Session, SessionKey, Snapshot, TruncationReason, Value,
};
use serde::Serialize;

use super::time::{relative, timestamp};
use super::Format;
use crate::ids::now_ms;

pub struct Output {
    format: Format,
    now: i64,
}

/// Columns of text, aligned on print.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

fn print(text: &str) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write the output: {e}"))
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.to_owned()
    }
}

/// Text from outside (captured or typed by someone else), escaped for a terminal.
fn escaped(text: &str) -> String {
    text.escape_debug().to_string()
}

fn state_name(state: i32) -> &'static str {
    match BreakpointState::try_from(state) {
        Ok(BreakpointState::Received) => "received",
        Ok(BreakpointState::Installed) => "installed",
        Ok(BreakpointState::Hit) => "hit",
        Ok(BreakpointState::RateLimited) => "rate-limited",
        Ok(BreakpointState::Error) => "error",
        Ok(BreakpointState::Expired) => "expired",
        _ => "unknown",
    }
}

fn drop_reason_name(reason: i32) -> &'static str {
    match DropReason::try_from(reason) {
        Ok(DropReason::Expired) => "expired",
        Ok(DropReason::HitLimit) => "hit-limit",
        Ok(DropReason::BreakpointRate) => "rate",
        Ok(DropReason::GlobalRate) => "global-rate",
        Ok(DropReason::QueueFull) => "queue-full",
        Ok(DropReason::ConditionFalse) => "condition-false",
        Ok(DropReason::CaptureError) => "capture-error",
        Ok(DropReason::ConditionError) => "condition-error",
        _ => "other",
    }
}

impl Output {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            now: now_ms(),
        }
    }

    /// JSON for scripts, or the table text for people.
    fn emit<T: Serialize + ?Sized>(&self, value: &T, table: impl FnOnce() -> String) -> Result<(), String> {
        match self.format {
            Format::Json => {
                let mut json = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
                json.push('\n');
                print(&json)
            }
            Format::Table => print(&table()),
        }
    }

    fn when(&self, unix_ms: i64) -> String {
        if unix_ms == 0 {
            "-".into()
        } else {
            format!("{} ({})", timestamp(unix_ms), relative(unix_ms, self.now))
        }
    }

    pub fn services(&self, services: &[Service]) -> Result<(), String> {
        self.emit(services, || {
            if services.is_empty() {
                return "no services have registered yet; embed the keyhole agent and point KEYHOLE_ADDR at this server\n".into();
            }
            let mut table = Table::new(&["SERVICE", "INSTANCE", "VERSION", "CONNECTED", "LAST SEEN", "PROBES"]);
            for service in services {
                for instance in &service.instances {
                    table.row(vec![
                        escaped(&service.name),
                        escaped(&instance.instance_id),
                        or_dash(&escaped(&instance.version)),
                        if instance.connected { "yes" } else { "no" }.into(),
                        relative(instance.last_seen_unix_ms, self.now),
                        instance.probe_count.to_string(),
                    ]);
                }
            }
            table.render()
        })
    }

    pub fn probes(&self, probes: &[ServiceProbe]) -> Result<(), String> {
        self.emit(probes, || {
            if probes.is_empty() {
                return "no probes\n".into();
            }
            let mut table = Table::new(&["SERVICE", "PROBE", "LOCATION", "VARIABLES", "INSTANCES"]);
            for entry in probes {
                let probe = entry.probe.clone().unwrap_or_default();
                table.row(vec![
                    escaped(&entry.service),
                    escaped(&probe.label),
                    format!("{}:{}", escaped(&probe.file), probe.line),
                    or_dash(&escaped(&probe.variables.join(", "))),
                    entry.instances.to_string(),
                ]);
            }
            table.render()
        })
    }

    pub fn session_opened(&self, session: &Session) -> Result<(), String> {
        self.emit(session, || {
            format!(
                "session  {}\nname     {}\nexpires  {}\ntoken    {}\n\nSend the token with your requests as baggage, e.g.\n  curl -H 'baggage: keyhole.session={}' ...\n",
                session.id,
                or_dash(&escaped(&session.name)),
                self.when(session.expires_at_unix_ms),
                session.token,
                session.token,
            )
        })
    }

    pub fn session_closed(&self, session: &Session) -> Result<(), String> {
        self.emit(session, || format!("closed session {}\n", session.id))
    }

    pub fn sessions(&self, sessions: &[Session]) -> Result<(), String> {
        self.emit(sessions, || {
            if sessions.is_empty() {
                return "no open sessions; open one with `keyhole session open`\n".into();
            }
            let mut table = Table::new(&["ID", "NAME", "CREATOR", "EXPIRES", "STATE"]);
            for session in sessions {
                let state = if session.closed_at_unix_ms != 0 {
                    "closed"
                } else if session.expires_at_unix_ms <= self.now {
                    "expired"
                } else {
                    "open"
                };
                table.row(vec![
                    session.id.clone(),
                    or_dash(&escaped(&session.name)),
                    escaped(&session.creator),
                    self.when(session.expires_at_unix_ms),
                    state.into(),
                ]);
            }
            table.render()
        })
    }

    fn breakpoint_state(&self, breakpoint: &Breakpoint) -> &'static str {
        if breakpoint.deleted_at_unix_ms != 0 {
            "deleted"
        } else if breakpoint.expires_at_unix_ms <= self.now {
            "expired"
        } else {
            "active"
        }
    }

    pub fn breakpoint(&self, breakpoint: &Breakpoint) -> Result<(), String> {
        self.emit(breakpoint, || {
            let limits = breakpoint.limits.unwrap_or_default();
            let mut text = String::new();
            let mut line = |key: &str, value: String| {
                let _ = writeln!(text, "{key:<12} {value}");
            };
            line("breakpoint", breakpoint.id.clone());
            line("state", self.breakpoint_state(breakpoint).into());
            line("service", escaped(&breakpoint.service));
            line("probe", escaped(&breakpoint.probe_label));
            line("session", breakpoint.session_id.clone());
            line("condition", or_dash(&escaped(&breakpoint.condition)));
            let baggage: Vec<String> = breakpoint
                .baggage_filters
                .iter()
                .map(|f| format!("{}={}", escaped(&f.key), escaped(&f.value)))
                .collect();
            line("baggage", or_dash(&baggage.join(", ")));
            let mut labels: Vec<String> = breakpoint
                .instance_labels
                .iter()
                .map(|(k, v)| format!("{}={}", escaped(k), escaped(v)))
                .collect();
            labels.sort();
            line("labels", or_dash(&labels.join(", ")));
            line("max hits", breakpoint.max_hits.to_string());
            line("rate", format!("{}/s", breakpoint.rate_per_sec));
            line(
                "limits",
                format!(
                    "depth {}, fields {}, items {}, string {} B, snapshot {} B, frames {}",
                    limits.max_depth,
                    limits.max_fields,
                    limits.max_items,
                    limits.max_string_bytes,
                    limits.max_snapshot_bytes,
                    limits.max_frames
                ),
            );
            line(
                "created",
                format!(
                    "{} by {}",
                    self.when(breakpoint.created_at_unix_ms),
                    escaped(&breakpoint.creator)
                ),
            );
            line("expires", self.when(breakpoint.expires_at_unix_ms));
            if breakpoint.deleted_at_unix_ms != 0 {
                line("deleted", self.when(breakpoint.deleted_at_unix_ms));
            }
            if !breakpoint.refusals.is_empty() {
                let refusals: Vec<String> = breakpoint
                    .refusals
                    .iter()
                    .map(|r| format!("{} {}", drop_reason_name(r.reason), r.count))
                    .collect();
                line("refused", refusals.join(", "));
            }
            if !breakpoint.statuses.is_empty() {
                text.push_str("\ninstances:\n");
                text.push_str(&self.statuses(&breakpoint.statuses));
            }
            text
        })
    }

    fn statuses(&self, statuses: &[InstanceStatus]) -> String {
        let mut table = Table::new(&["  INSTANCE", "STATE", "HITS", "UPDATED", "MESSAGE"]);
        for status in statuses {
            table.row(vec![
                format!("  {}", escaped(&status.instance_id)),
                state_name(status.state).into(),
                status.hits.to_string(),
                relative(status.updated_at_unix_ms, self.now),
                or_dash(&escaped(&status.message)),
            ]);
        }
        table.render()
    }

    pub fn breakpoint_deleted(&self, breakpoint: &Breakpoint) -> Result<(), String> {
        self.emit(breakpoint, || format!("deleted breakpoint {}\n", breakpoint.id))
    }

    pub fn breakpoints(&self, breakpoints: &[Breakpoint]) -> Result<(), String> {
        self.emit(breakpoints, || {
            if breakpoints.is_empty() {
                return "no breakpoints\n".into();
            }
            let mut table = Table::new(&[
                "ID",
                "SERVICE",
                "PROBE",
                "SESSION",
                "CONDITION",
                "EXPIRES",
                "STATE",
            ]);
            for breakpoint in breakpoints {
                table.row(vec![
                    breakpoint.id.clone(),
                    escaped(&breakpoint.service),
                    escaped(&breakpoint.probe_label),
                    breakpoint.session_id.clone(),
                    or_dash(&escaped(&breakpoint.condition)),
                    relative(breakpoint.expires_at_unix_ms, self.now),
                    self.breakpoint_state(breakpoint).into(),
                ]);
            }
            table.render()
        })
    }

    pub fn snapshots(&self, snapshots: &[Snapshot]) -> Result<(), String> {
        self.emit(snapshots, || {
            if snapshots.is_empty() {
                return "no snapshots\n".into();
            }
            let mut table = Table::new(&[
                "ID",
                "CAPTURED",
                "SERVICE",
                "PROBE",
                "BREAKPOINT",
                "SESSION",
                "TRACE",
            ]);
            for snapshot in snapshots {
                table.row(self.snapshot_row(snapshot));
            }
            table.render()
        })
    }

    fn snapshot_row(&self, snapshot: &Snapshot) -> Vec<String> {
        vec![
            escaped(&snapshot.id),
            timestamp(snapshot.captured_at_unix_ms),
            escaped(&snapshot.service),
            escaped(&snapshot.probe_label),
            escaped(&snapshot.breakpoint_id),
            escaped(&snapshot.session_id),
            or_dash(&escaped(&snapshot.trace_id)),
        ]
    }

    pub fn watch_started(&self) {
        if self.format == Format::Table {
            eprintln!("watching for snapshots (Ctrl-C to stop)");
        }
    }

    /// One snapshot of a watch: a table row for people, one JSON line for scripts.
    pub fn snapshot_arrived(&self, snapshot: &Snapshot) -> Result<(), String> {
        match self.format {
            Format::Json => {
                let mut line = serde_json::to_string(snapshot).map_err(|e| e.to_string())?;
                line.push('\n');
                print(&line)
            }
            Format::Table => print(&format!("{}\n", self.snapshot_row(snapshot).join("  "))),
        }
    }

    pub fn snapshot(&self, snapshot: &Snapshot) -> Result<(), String> {
        self.emit(snapshot, || {
            let mut text = String::new();
            let mut line = |key: &str, value: String| {
                let _ = writeln!(text, "{key:<11} {value}");
            };
            line("snapshot", escaped(&snapshot.id));
            line("captured", self.when(snapshot.captured_at_unix_ms));
            line(
                "service",
                format!(
                    "{} (instance {})",
                    escaped(&snapshot.service),
                    escaped(&snapshot.instance_id)
                ),
            );
            line(
                "probe",
                format!(
                    "{} at {}:{}",
                    escaped(&snapshot.probe_label),
                    escaped(&snapshot.file),
                    snapshot.line
                ),
            );
            line("breakpoint", escaped(&snapshot.breakpoint_id));
            line("session", escaped(&snapshot.session_id));
            line("trace", or_dash(&escaped(&snapshot.trace_id)));
            line("span", or_dash(&escaped(&snapshot.span_id)));
            text.push_str("\nvariables:\n");
            if snapshot.variables.is_empty() {
                text.push_str("  (none)\n");
            }
            for variable in &snapshot.variables {
                render_value(&mut text, 1, &escaped(&variable.name), variable.value.as_ref());
            }
            text.push_str("\nstack:\n");
            if snapshot.stack.is_empty() {
                text.push_str("  (none)\n");
            }
            for (index, frame) in snapshot.stack.iter().enumerate() {
                let function = if frame.function.is_empty() {
                    format!("{:#x}", frame.address)
                } else {
                    escaped(&frame.function)
                };
                let _ = write!(text, "  #{index:<2} {function}");
                if !frame.file.is_empty() {
                    let _ = write!(text, "\n        at {}:{}", escaped(&frame.file), frame.line);
                }
                text.push('\n');
            }
            if !snapshot.baggage.is_empty() {
                text.push_str("\nbaggage:\n");
                for entry in &snapshot.baggage {
                    let _ = writeln!(text, "  {} = {}", escaped(&entry.key), escaped(&entry.value));
                }
            }
            text
        })
    }

    pub fn token_created(&self, token: &ApiToken) -> Result<(), String> {
        self.emit(token, || {
            format!(
                "token  {}\nrole   {}\nsecret {}\n\nThe secret is shown only now. Use it as KEYHOLE_TOKEN.\n",
                token.id, token.role, token.secret
            )
        })
    }

    pub fn keys(&self, keys: &[SessionKey]) -> Result<(), String> {
        self.emit(keys, || {
            let mut table = Table::new(&["KEY", "CREATED", "STATE"]);
            for key in keys {
                let state = if key.retired_at_unix_ms != 0 {
                    "retired"
                } else if key.signing {
                    "signing"
                } else {
                    "verifying"
                };
                table.row(vec![
                    key.key_id.clone(),
                    timestamp(key.created_at_unix_ms),
                    state.into(),
                ]);
            }
            table.render()
        })
    }

    pub fn token_revoked(&self, token: &ApiToken) -> Result<(), String> {
        self.emit(token, || format!("revoked token {}\n", token.id))
    }

    pub fn tokens(&self, tokens: &[ApiToken]) -> Result<(), String> {
        self.emit(tokens, || {
            let mut table = Table::new(&["ID", "NAME", "ROLE", "CREATED", "CREATOR", "STATE"]);
            for token in tokens {
                table.row(vec![
                    token.id.clone(),
                    or_dash(&escaped(&token.name)),
                    token.role.clone(),
                    timestamp(token.created_at_unix_ms),
                    escaped(&token.creator),
                    if token.revoked_at_unix_ms != 0 {
                        "revoked"
                    } else {
                        "active"
                    }
                    .into(),
                ]);
            }
            table.render()
        })
    }
}

/// One value of the captured tree, with its children indented below it.
fn render_value(text: &mut String, depth: usize, name: &str, value: Option<&Value>) {
    let indent = "  ".repeat(depth);
    let kind = value.and_then(|v| v.kind.as_ref());
    let _ = write!(text, "{indent}{name} = ");
    let more = |text: &mut String, count: u64, what: &str| {
        if count > 0 {
            let _ = writeln!(text, "{indent}  … {count} more {what} (not captured)");
        }
    };
    match kind {
        None => text.push_str("<missing>\n"),
        Some(Kind::Null(_)) => text.push_str("null\n"),
        Some(Kind::Bool(b)) => {
            let _ = writeln!(text, "{b}");
        }
        Some(Kind::Int(i)) => {
            let _ = writeln!(text, "{i}");
        }
        Some(Kind::Uint(u)) => {
            let _ = writeln!(text, "{u}");
        }
        Some(Kind::Float(f)) => {
            let _ = writeln!(text, "{f}");
        }
        Some(Kind::Text(t)) => {
            let _ = write!(text, "{:?}", t.value);
            if t.omitted_bytes > 0 {
                let _ = write!(text, "… ({} more bytes not captured)", t.omitted_bytes);
            }
            text.push('\n');
        }
        Some(Kind::Bytes(b)) => {
            let shown: String = b.value.iter().map(|byte| format!("{byte:02x}")).collect();
            let _ = write!(text, "0x{shown}");
            if b.omitted_bytes > 0 {
                let _ = write!(text, "… ({} more bytes not captured)", b.omitted_bytes);
            }
            text.push('\n');
        }
        Some(Kind::List(list)) => {
            let _ = writeln!(text, "[{} items]", list.items.len() as u64 + list.omitted_items);
            for (index, item) in list.items.iter().enumerate() {
                render_value(text, depth + 1, &format!("[{index}]"), Some(item));
            }
            more(text, list.omitted_items, "items");
        }
        Some(Kind::Map(map)) => {
            let _ = writeln!(
                text,
                "{{{} entries}}",
                map.entries.len() as u64 + map.omitted_entries
            );
            for entry in &map.entries {
                let key = match entry.key.as_ref().and_then(|k| k.kind.as_ref()) {
                    Some(Kind::Text(t)) => format!("{:?}", t.value),
                    Some(Kind::Int(i)) => i.to_string(),
                    Some(Kind::Uint(u)) => u.to_string(),
                    Some(Kind::Bool(b)) => b.to_string(),
                    _ => "<key>".into(),
                };
                render_value(text, depth + 1, &format!("[{key}]"), entry.value.as_ref());
            }
            more(text, map.omitted_entries, "entries");
        }
        Some(Kind::Struct(s)) => {
            let _ = writeln!(text, "{}", escaped(&s.type_name));
            for field in &s.fields {
                render_value(text, depth + 1, &escaped(&field.name), field.value.as_ref());
            }
            more(text, s.omitted_fields, "fields");
        }
        Some(Kind::Enum(e)) => {
            let _ = writeln!(text, "{}::{}", escaped(&e.type_name), escaped(&e.variant));
            if let Some(payload) = e.payload.as_deref() {
                render_value(text, depth + 1, "payload", Some(payload));
            }
        }
        Some(Kind::Redacted(_)) => text.push_str("<redacted>\n"),
        Some(Kind::Truncated(t)) => {
            let why = match TruncationReason::try_from(t.reason) {
                Ok(TruncationReason::Depth) => "depth limit",
                Ok(TruncationReason::SnapshotBytes) => "snapshot size limit",
                _ => "limit",
            };
            let _ = writeln!(text, "<{} not captured: {why}>", escaped(&t.type_name));
        }
        Some(Kind::Error(e)) => {
            let _ = writeln!(text, "<capture failed: {}>", escaped(&e.message));
        }
    }
}
