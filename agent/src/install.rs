//! Installing a breakpoint set: compile each breakpoint once (its condition,
//! its budgets), hand each probe site its own list, and keep the budgets of
//! breakpoints that stay from one set to the next.

use std::collections::HashMap;
use std::sync::Arc;

use keyhole_proto::condition;
use keyhole_proto::v1::{Breakpoint, BreakpointState, DropCount, InstanceStatus};

use crate::callsite::CALLSITES;
use crate::fire::{ArmedBreakpoint, ArmedProbe};

/// The breakpoints this process has installed, and removed ones whose
/// refusal counters have not been sent yet.
#[derive(Default)]
pub struct Installed {
    pub version: u64,
    current: Vec<Arc<ArmedBreakpoint>>,
    retired: Vec<Arc<ArmedBreakpoint>>,
    /// The set as received, so expiry can re-install what is left.
    definitions: Vec<Breakpoint>,
}

/// A status to report for a breakpoint that could not be installed.
fn error_status(breakpoint: &Breakpoint, message: String) -> InstanceStatus {
    InstanceStatus {
        breakpoint_id: breakpoint.id.clone(),
        state: BreakpointState::Error as i32,
        message,
        ..Default::default()
    }
}

impl Installed {
    pub fn ids(&self) -> Vec<String> {
        self.current.iter().map(|bp| bp.id().to_owned()).collect()
    }

    pub fn current(&self) -> &[Arc<ArmedBreakpoint>] {
        &self.current
    }

    /// Installs `breakpoints` (all of them, replacing the previous set) on the
    /// probe sites, skipping those expired at `now_ms`. Returns the statuses
    /// of breakpoints that could not be installed.
    pub fn apply(&mut self, breakpoints: Vec<Breakpoint>, now_ms: i64) -> Vec<InstanceStatus> {
        let mut previous: HashMap<String, Arc<ArmedBreakpoint>> = self
            .current
            .drain(..)
            .map(|bp| (bp.id().to_owned(), bp))
            .collect();
        let mut errors = Vec::new();
        let mut by_label: HashMap<String, Vec<Arc<ArmedBreakpoint>>> = HashMap::new();
        for definition in &breakpoints {
            if definition.expires_at_unix_ms <= now_ms {
                continue;
            }
            let armed = match previous.remove(&definition.id) {
                Some(kept) => kept,
                None => match compile(definition) {
                    Ok(armed) => Arc::new(armed),
                    Err(message) => {
                        errors.push(error_status(definition, message));
                        continue;
                    }
                },
            };
            by_label
                .entry(definition.probe_label.clone())
                .or_default()
                .push(armed.clone());
            self.current.push(armed);
        }
        for site in CALLSITES.iter() {
            let probe = by_label.get(site.meta().label).map(|breakpoints| {
                Arc::new(ArmedProbe {
                    breakpoints: breakpoints.clone(),
                })
            });
            site.install(probe);
        }
        for breakpoint in &self.current {
            let on_a_site = CALLSITES
                .iter()
                .any(|site| site.meta().label == breakpoint.definition.probe_label);
            if !on_a_site {
                let message = format!(
                    "probe `{}` is not in this binary",
                    breakpoint.definition.probe_label
                );
                errors.push(error_status(&breakpoint.definition, message));
            }
        }
        self.retired.extend(previous.into_values());
        self.definitions = breakpoints;
        errors
    }

    /// Re-installs the current set without the breakpoints expired at `now_ms`,
    /// so their probes go back to costing one load. Returns whether any expired.
    pub fn remove_expired(&mut self, now_ms: i64) -> bool {
        if !self.current.iter().any(|bp| bp.is_expired(now_ms)) {
            return false;
        }
        let definitions = std::mem::take(&mut self.definitions);
        self.apply(definitions, now_ms);
        true
    }

    /// Refusal counts since the last call, for the next upload.
    pub fn drain_drops(&mut self) -> Vec<DropCount> {
        let mut drops = Vec::new();
        for breakpoint in self.current.iter().chain(&self.retired) {
            for (reason, count) in breakpoint.drops.drain() {
                drops.push(DropCount {
                    breakpoint_id: breakpoint.id().to_owned(),
                    reason: reason as i32,
                    count,
                });
            }
        }
        self.retired.clear();
        drops
    }
}

fn compile(definition: &Breakpoint) -> Result<ArmedBreakpoint, String> {
    let condition = if definition.condition.trim().is_empty() {
        None
    } else {
        Some(condition::parse(&definition.condition).map_err(|e| format!("invalid condition: {e}"))?)
    };
    Ok(ArmedBreakpoint::new(definition.clone(), condition))
}
