//! What one run of one configuration measured: CPU time and the kernel's events per request,
//! beside the client's report, and the line `overhead` prints for it.

use std::time::Duration;

use keyhole_tests::load::cpu::CpuSplit;
use keyhole_tests::load::rss::RssSeries;
use keyhole_tests::load::sched::KernelEvents;
use keyhole_tests::load::shop::{Captures, Configuration};
use keyhole_tests::load::LoadReport;

use super::{millis, MIB};

/// CPU time spent during one configuration's load: by both services, and by its control plane.
#[derive(Clone, Copy)]
pub(crate) struct Spent {
    pub(crate) services: CpuSplit,
    pub(crate) control_plane: Duration,
    /// What the kernel did to both services meanwhile.
    pub(crate) events: KernelEvents,
}

/// CPU microseconds per request answered, by where they were spent: the serving threads' user
/// and system time, and the agent threads'; and apart from them, the control plane's (which shares
/// the machine's CPUs with the services but is not the host's cost).
#[derive(Clone, Copy)]
pub(crate) struct CpuPerRequest {
    pub(crate) serving_user: f64,
    pub(crate) serving_system: f64,
    pub(crate) agent: f64,
    pub(crate) control_plane: f64,
}

/// `total` over the requests `answered`; a run that answered none counts as one.
fn per_request(total: f64, answered: u64) -> f64 {
    total / answered.max(1) as f64
}

impl CpuPerRequest {
    pub(crate) fn of(spent: Spent, answered: u64) -> CpuPerRequest {
        let per = |d: Duration| per_request(d.as_secs_f64() * 1e6, answered);
        CpuPerRequest {
            serving_user: per(spent.services.serving.user),
            serving_system: per(spent.services.serving.system),
            agent: per(spent.services.agent.total()),
            control_plane: per(spent.control_plane),
        }
    }

    /// Both services' CPU time per request, the agents' threads included.
    pub(crate) fn total(self) -> f64 {
        self.serving_user + self.serving_system + self.agent
    }
}

/// The kernel's events in both services per request answered.
#[derive(Clone, Copy)]
pub(crate) struct EventsPerRequest {
    pub(crate) voluntary_switches: f64,
    pub(crate) involuntary_switches: f64,
    /// Microseconds runnable threads waited for a CPU.
    pub(crate) runqueue_wait: f64,
    pub(crate) minor_faults: f64,
}

impl EventsPerRequest {
    pub(crate) fn of(events: KernelEvents, answered: u64) -> EventsPerRequest {
        let per = |n: u64| per_request(n as f64, answered);
        EventsPerRequest {
            voluntary_switches: per(events.voluntary_switches),
            involuntary_switches: per(events.involuntary_switches),
            runqueue_wait: per(events.runqueue_wait_nanos) / 1e3,
            minor_faults: per(events.minor_faults),
        }
    }
}

/// What one run of one configuration measured.
pub(crate) struct RunFigures {
    /// The round it ran in, from 1.
    pub(crate) round: usize,
    pub(crate) configuration: Configuration,
    pub(crate) report: LoadReport,
    pub(crate) rss: RssSeries,
    /// CPU time both services spent per request answered.
    pub(crate) cpu: CpuPerRequest,
    /// The kernel's events in both services per request answered.
    pub(crate) events: EventsPerRequest,
    pub(crate) captures: Option<Captures>,
}

pub(crate) fn print_run(round: usize, rounds: usize, figures: &RunFigures) {
    let report = &figures.report;
    let captures = figures
        .captures
        .as_ref()
        .map(|c| format!("  {}", describe_captures(c)))
        .unwrap_or_default();
    let by_session = report
        .by_session
        .as_ref()
        .map(|(with, without)| {
            format!(
                "  p99 with the session {:.3} ms, without {:.3} ms",
                millis(with.p99),
                millis(without.p99)
            )
        })
        .unwrap_or_default();
    // In bursts, memory is sampled over all of a configuration's bursts and reported at the end.
    let rss = if figures.rss.samples > 0 {
        format!(
            "  frontend RSS {:.1} MiB, +{:.1} MiB",
            figures.rss.first as f64 / MIB,
            figures.rss.max_growth() as f64 / MIB
        )
    } else {
        String::new()
    };
    println!(
        "round {round}/{rounds} {}  {:>8.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  \
         CPU {:.1} us/req (serving: user {:.1}, system {:.1}; agent thread {:.2}; control plane {:.2})  \
         per request: switches {:.3} + {:.3} preempted, run-queue wait {:.1} us, minor faults {:.3}  errors {}{rss}{captures}{by_session}",
        figures.configuration.letter(),
        report.throughput(),
        millis(report.latency.p50),
        millis(report.latency.p99),
        millis(report.latency.p999),
        figures.cpu.total(),
        figures.cpu.serving_user,
        figures.cpu.serving_system,
        figures.cpu.agent,
        figures.cpu.control_plane,
        figures.events.voluntary_switches,
        figures.events.involuntary_switches,
        figures.events.runqueue_wait,
        figures.events.minor_faults,
        report.errors,
    );
}

/// "45 snapshots stored, hits refused: 73094 by breakpoint_rate".
pub(crate) fn describe_captures(captures: &Captures) -> String {
    let refused: Vec<String> = captures
        .refused
        .iter()
        .map(|(why, n)| format!("{n} by {why}"))
        .collect();
    format!(
        "{} snapshots stored, hits refused: {}",
        captures.stored,
        if refused.is_empty() {
            "none".to_owned()
        } else {
            refused.join(", ")
        }
    )
}
