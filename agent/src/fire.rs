//! What happens when an armed probe is hit: the session check, the budgets,
//! capture, the condition, the stack, and the hand-off to the uploader. Every
//! refusal is counted by reason; nothing here waits or panics into the host.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;
use keyhole_proto::condition::Condition;
use keyhole_proto::v1::{BaggageEntry, Breakpoint, CaptureLimits, DropReason, Snapshot};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::Context;

use crate::agent::{self, AgentCore};
use crate::budget::{monotonic_nanos, DropCounters, RateLimit};
use crate::callsite::{Callsite, CaptureVariables};
use crate::capture::Capturer;
use crate::queue::{PendingSnapshot, PENDING_OVERHEAD_BYTES};
use crate::session::TrustedSession;
use crate::stack::StackAddresses;

/// A breakpoint as installed in this process, with its live budgets.
pub struct ArmedBreakpoint {
    pub definition: Breakpoint,
    condition: Option<Condition>,
    limits: CaptureLimits,
    rate: RateLimit,
    hits: AtomicU32,
    /// Snapshots handed to the uploader.
    pub taken: AtomicU64,
    pub drops: DropCounters,
    /// The last condition evaluation error, for the status report.
    pub condition_error: Mutex<Option<String>>,
}

impl ArmedBreakpoint {
    pub fn new(definition: Breakpoint, condition: Option<Condition>) -> Self {
        let limits = definition
            .limits
            .unwrap_or_default()
            .or_defaults(&keyhole_proto::limits::default_capture_limits());
        Self {
            rate: RateLimit::new(definition.rate_per_sec, 1),
            condition,
            limits,
            hits: AtomicU32::new(0),
            taken: AtomicU64::new(0),
            drops: DropCounters::default(),
            condition_error: Mutex::new(None),
            definition,
        }
    }

    pub fn id(&self) -> &str {
        &self.definition.id
    }

    pub fn is_expired(&self, now_unix_ms: i64) -> bool {
        self.definition.expires_at_unix_ms <= now_unix_ms
    }

    pub fn hits(&self) -> u32 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Whether every hit the breakpoint allows has been taken.
    fn hits_used_up(&self) -> bool {
        self.hits.load(Ordering::Relaxed) >= self.definition.max_hits
    }

    /// Takes one of the breakpoint's hits, unless they are used up.
    fn take_hit(&self) -> bool {
        self.hits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |hits| {
                (hits < self.definition.max_hits).then_some(hits + 1)
            })
            .is_ok()
    }

    /// Gives back a hit that produced no snapshot.
    fn refund_hit(&self) {
        self.hits.fetch_sub(1, Ordering::Relaxed);
    }

    fn refuse(&self, reason: DropReason) {
        self.drops.count(reason);
    }
}

/// The breakpoints installed on one probe site.
pub struct ArmedProbe {
    pub breakpoints: Vec<Arc<ArmedBreakpoint>>,
}

/// A hit by a request that carries the session of some of the probe's breakpoints, and that some of
/// them admitted.
struct SessionHit {
    session: TrustedSession,
    /// The breakpoints whose session and baggage filters the request matches, and whose expiry, hit
    /// limit and rate allowed this hit (each has taken one of its hits and its rate).
    breakpoints: Vec<Arc<ArmedBreakpoint>>,
    /// The wall clock when the probe was hit, read once for every expiry.
    now_ms: i64,
}

/// Which of `probe`'s breakpoints the current request matches and is admitted by, with its session.
/// Requests without one of the breakpoints' sessions, nearly all of them, leave at the first check;
/// the session's own requests that a budget refuses (most of the rest) allocate and copy nothing.
fn matching(installed: &ArcSwapOption<ArmedProbe>) -> Option<SessionHit> {
    Context::map_current(|cx| {
        let session = TrustedSession::in_context(cx)?;
        // Loaded only now: a request without a session never touches the breakpoints.
        let probe = installed.load();
        let probe = probe.as_deref()?;
        let wanted = |bp: &&Arc<ArmedBreakpoint>| bp.definition.session_id == session.session_id();
        if !probe.breakpoints.iter().any(|bp| wanted(&bp)) {
            return None;
        }
        let now_ms = agent::unix_millis();
        if session.is_expired_at(now_ms) {
            return None;
        }
        let mut budgets = Budgets::new(now_ms);
        let mut admitted = Vec::new();
        for bp in probe.breakpoints.iter().filter(wanted) {
            // The request's baggage is looked up only for a breakpoint that filters on it.
            let all_match = bp.definition.baggage_filters.iter().all(|filter| {
                cx.baggage()
                    .get(filter.key.as_str())
                    .is_some_and(|value| value.as_str() == filter.value)
            });
            if !all_match || !budgets.admit(bp) {
                continue;
            }
            admitted.push(bp.clone());
        }
        (!admitted.is_empty()).then(|| SessionHit {
            session: session.clone(),
            breakpoints: admitted,
            now_ms,
        })
    })
}

/// The budgets a matching hit passes before any capture work, in order: the breakpoint's expiry, its
/// hit limit, its rate, then the agent's rate. Each refusal is counted by reason on the breakpoint.
struct Budgets {
    now_ms: i64,
    /// The monotonic clock, read when a rate is first checked.
    now: Option<u64>,
}

impl Budgets {
    fn new(now_ms: i64) -> Self {
        Self { now_ms, now: None }
    }

    /// Whether `breakpoint` takes this hit; if so it has used one of its hits and its rate.
    ///
    /// The hit limit is read before the rates are asked and taken after them, so that a hit a rate
    /// refuses (most hits of a session's requests) writes nothing shared but its drop counter: no hit
    /// taken and given back on a cache line every serving thread uses.
    fn admit(&mut self, breakpoint: &ArmedBreakpoint) -> bool {
        let refused = if breakpoint.is_expired(self.now_ms) {
            DropReason::Expired
        } else if breakpoint.hits_used_up() {
            DropReason::HitLimit
        } else {
            let now = *self.now.get_or_insert_with(monotonic_nanos);
            if !breakpoint.rate.try_acquire(now) {
                DropReason::BreakpointRate
            } else {
                match agent::with_running(|agent| agent.global_rate.try_acquire(now)) {
                    Some(true) if breakpoint.take_hit() => return true,
                    // Another thread took the last hit since the check above.
                    Some(true) => DropReason::HitLimit,
                    Some(false) => DropReason::GlobalRate,
                    // The agent is shutting down: nothing to refuse for, nothing to count.
                    None => return false,
                }
            }
        };
        breakpoint.refuse(refused);
        false
    }
}

/// The baggage entries `breakpoint` matched on: its filters, each key once, since a hit it admitted
/// matched them all.
fn matched_baggage(breakpoint: &ArmedBreakpoint) -> Vec<BaggageEntry> {
    let mut entries: Vec<BaggageEntry> = Vec::new();
    for filter in &breakpoint.definition.baggage_filters {
        if !entries.iter().any(|entry| entry.key == filter.key) {
            entries.push(BaggageEntry {
                key: filter.key.clone(),
                value: filter.value.clone(),
            });
        }
    }
    entries
}

/// The armed probe `site`, whose breakpoints are `installed`, was hit.
pub fn fire(site: &'static Callsite, installed: &ArcSwapOption<ArmedProbe>, variables: CaptureVariables<'_>) {
    let Some(hit) = matching(installed) else {
        return;
    };
    let Some(agent) = agent::running() else {
        for breakpoint in &hit.breakpoints {
            breakpoint.refund_hit();
        }
        return;
    };
    for breakpoint in &hit.breakpoints {
        take_snapshot(&agent, site, breakpoint, &hit, variables);
    }
}

/// Captures `breakpoint`'s snapshot of a hit it admitted, unless the queue is full or the condition
/// says no (the hit is then given back).
fn take_snapshot(
    agent: &AgentCore,
    site: &'static Callsite,
    breakpoint: &ArmedBreakpoint,
    hit: &SessionHit,
    variables: CaptureVariables<'_>,
) {
    let now_ms = hit.now_ms;
    let refuse = |reason| {
        breakpoint.refund_hit();
        breakpoint.refuse(reason);
    };
    let limits = &breakpoint.limits;
    let reserved = limits.max_snapshot_bytes as usize + PENDING_OVERHEAD_BYTES;
    let Some(reservation) = agent.queue.try_reserve(reserved) else {
        return refuse(DropReason::QueueFull);
    };

    let mut capturer = Capturer::new(limits, &agent.redaction);
    // The probe's own expressions (`name = expr`) run here and may panic too.
    if catch_unwind(AssertUnwindSafe(|| variables(&mut capturer))).is_err() {
        return refuse(DropReason::CaptureError);
    }
    let captured = capturer.finish();
    if let Some(condition) = &breakpoint.condition {
        // What the agent wrote itself always decodes; were it not to, nothing is sent.
        let Ok(tree) = captured.decode() else {
            return refuse(DropReason::CaptureError);
        };
        match condition.eval(&tree) {
            Ok(true) => {}
            Ok(false) => return refuse(DropReason::ConditionFalse),
            Err(error) => {
                if let Ok(mut last) = breakpoint.condition_error.lock() {
                    *last = Some(error.to_string());
                }
                return refuse(DropReason::ConditionError);
            }
        }
    }
    let stack = StackAddresses::capture_below(Callsite::hit_entry(), limits.max_frames as usize);

    let meta = site.meta();
    let (trace_id, span_id, parent_span_id) = Context::map_current(crate::trace::current_ids);
    let snapshot = Snapshot {
        id: agent.next_snapshot_id(),
        breakpoint_id: breakpoint.definition.id.clone(),
        session_id: hit.session.session_id().to_owned(),
        probe_label: meta.label.to_owned(),
        file: meta.file.to_owned(),
        line: meta.line,
        module: meta.module.to_owned(),
        captured_at_unix_ms: now_ms,
        trace_id,
        span_id,
        parent_span_id,
        baggage: matched_baggage(breakpoint),
        captured_bytes: captured.encoded().len() as u64,
        ..Default::default()
    };
    let max_frames = limits.max_frames as usize;
    reservation.send(PendingSnapshot::new(&snapshot, &captured, stack, max_frames));
    breakpoint.taken.fetch_add(1, Ordering::Relaxed);
    agent.accepted.fetch_add(1, Ordering::Relaxed);
}
