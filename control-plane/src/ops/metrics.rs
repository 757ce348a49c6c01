//! This replica's metrics, kept in atomics and small maps, and written by
//! hand in the Prometheus text exposition format (version 0.0.4). Every
//! label's values come from a fixed set, or are capped: a scraper never sees
//! an unbounded number of series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use keyhole_proto::v1::{DropCount, DropReason};

use crate::store::IngestOutcome;

/// Upper bounds (seconds) of the RPC latency histogram's buckets.
pub const RPC_LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Distinct RPC paths timed separately; calls to further paths (only a
/// misbehaving client sends them) are counted under [`OTHER_PATH`].
pub const MAX_RPC_PATHS: usize = 64;
/// The path label of calls beyond [`MAX_RPC_PATHS`].
pub const OTHER_PATH: &str = "other";
/// The reason label of refusals whose reason this version does not know.
const UNKNOWN_REASON: &str = "unknown";

/// Which retention rule deleted a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionRule {
    /// Received longer ago than the retention period.
    Age,
    /// Beyond the number kept per breakpoint.
    Count,
}

impl RetentionRule {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionRule::Age => "age",
            RetentionRule::Count => "count",
        }
    }
}

/// Counters and histograms of this replica since it started. Counts only
/// grow; relaxed atomics suffice, as each is read on its own.
#[derive(Default)]
pub struct Metrics {
    snapshots_stored: AtomicU64,
    snapshots_duplicate: AtomicU64,
    /// Refused hits agents reported, by reason label.
    refused: Mutex<BTreeMap<&'static str, u64>>,
    deleted_by_age: AtomicU64,
    deleted_by_count: AtomicU64,
    retention_batches: AtomicU64,
    /// Latency histograms by RPC path.
    rpcs: Mutex<BTreeMap<String, Histogram>>,
}

/// One latency histogram: per-bucket counts (not yet cumulative), their sum and count.
#[derive(Default)]
struct Histogram {
    buckets: [u64; RPC_LATENCY_BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        if let Some(bucket) = RPC_LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[bucket] += 1;
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }
}

/// The label of a refusal reason: its protocol name without the prefix, in lower case.
fn reason_label(reason: i32) -> &'static str {
    match DropReason::try_from(reason) {
        Ok(DropReason::Unspecified) | Err(_) => UNKNOWN_REASON,
        Ok(DropReason::Expired) => "expired",
        Ok(DropReason::HitLimit) => "hit_limit",
        Ok(DropReason::BreakpointRate) => "breakpoint_rate",
        Ok(DropReason::GlobalRate) => "global_rate",
        Ok(DropReason::QueueFull) => "queue_full",
        Ok(DropReason::ConditionFalse) => "condition_false",
        Ok(DropReason::CaptureError) => "capture_error",
        Ok(DropReason::ConditionError) => "condition_error",
    }
}

/// A label value, escaped as the exposition format requires.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The `# HELP` and `# TYPE` lines that open a metric family.
fn family(text: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Locks a map of plain counts: a panic elsewhere cannot leave it inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Metrics {
    /// Counts one upload's outcome.
    pub fn snapshots_ingested(&self, outcome: IngestOutcome) {
        self.snapshots_stored
            .fetch_add(u64::from(outcome.stored), Ordering::Relaxed);
        self.snapshots_duplicate
            .fetch_add(u64::from(outcome.duplicates), Ordering::Relaxed);
    }

    /// Counts the refused hits an agent reported.
    pub fn hits_refused(&self, drops: &[DropCount]) {
        let mut refused = lock(&self.refused);
        for drop in drops {
            *refused.entry(reason_label(drop.reason)).or_default() += drop.count;
        }
    }

    /// Counts one retention batch that deleted `deleted` (more than none).
    pub fn retention_batch(&self, rule: RetentionRule, deleted: u64) {
        let counter = match rule {
            RetentionRule::Age => &self.deleted_by_age,
            RetentionRule::Count => &self.deleted_by_count,
        };
        counter.fetch_add(deleted, Ordering::Relaxed);
        self.retention_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that a call to `path` took `elapsed`.
    pub fn observe_rpc(&self, path: &str, elapsed: Duration) {
        let mut rpcs = lock(&self.rpcs);
        let label = if rpcs.contains_key(path) || rpcs.len() < MAX_RPC_PATHS {
            path
        } else {
            OTHER_PATH
        };
        rpcs.entry(label.to_owned())
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Everything, in the Prometheus text format, with `connected_agents` as
    /// the gauge of that name.
    pub fn render(&self, connected_agents: usize) -> String {
        let mut text = String::new();
        family(
            &mut text,
            "keyhole_connected_agents",
            "gauge",
            "Agents holding a breakpoint stream open to this replica.",
        );
        let _ = writeln!(text, "keyhole_connected_agents {connected_agents}");

        family(
            &mut text,
            "keyhole_snapshots_ingested_total",
            "counter",
            "Snapshots agents uploaded to this replica, by whether they were stored or already were.",
        );
        for (outcome, counter) in [
            ("stored", &self.snapshots_stored),
            ("duplicate", &self.snapshots_duplicate),
        ] {
            let _ = writeln!(
                text,
                "keyhole_snapshots_ingested_total{{outcome=\"{outcome}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }

        family(
            &mut text,
            "keyhole_refused_hits_total",
            "counter",
            "Probe hits agents reported refusing (not captured), by reason.",
        );
        for (reason, count) in self.refused_by_reason() {
            let _ = writeln!(text, "keyhole_refused_hits_total{{reason=\"{reason}\"}} {count}");
        }

        family(
            &mut text,
            "keyhole_snapshots_deleted_total",
            "counter",
            "Snapshots this replica's retention deleted, by rule.",
        );
        for (rule, counter) in [
            (RetentionRule::Age, &self.deleted_by_age),
            (RetentionRule::Count, &self.deleted_by_count),
        ] {
            let _ = writeln!(
                text,
                "keyhole_snapshots_deleted_total{{rule=\"{}\"}} {}",
                rule.as_str(),
                counter.load(Ordering::Relaxed)
            );
        }
        family(
            &mut text,
            "keyhole_retention_batches_total",
            "counter",
            "Batches of snapshots this replica's retention deleted.",
        );
        let _ = writeln!(
            text,
            "keyhole_retention_batches_total {}",
            self.retention_batches.load(Ordering::Relaxed)
        );

        family(
            &mut text,
            "keyhole_rpc_duration_seconds",
            "histogram",
            "gRPC calls to this replica, from arrival to response head, by path.",
        );
        self.render_rpcs(&mut text);
        text
    }

    /// Every known reason (zero until reported) and any other reported.
    fn refused_by_reason(&self) -> BTreeMap<&'static str, u64> {
        let mut all: BTreeMap<&'static str, u64> = (1..)
            .map_while(|n| DropReason::try_from(n).ok())
            .map(|reason| (reason_label(reason as i32), 0))
            .collect();
        for (reason, count) in lock(&self.refused).iter() {
            all.insert(reason, *count);
        }
        all
    }

    fn render_rpcs(&self, text: &mut String) {
        const NAME: &str = "keyhole_rpc_duration_seconds";
        for (path, histogram) in lock(&self.rpcs).iter() {
            let path = escape_label(path);
            let mut cumulative = 0;
            for (bound, count) in RPC_LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "{NAME}_bucket{{path=\"{path}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "{NAME}_bucket{{path=\"{path}\",le=\"+Inf\"}} {}\n\
                 {NAME}_sum{{path=\"{path}\"}} {}\n\
                 {NAME}_count{{path=\"{path}\"}} {}",
                histogram.count, histogram.sum_seconds, histogram.count
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn counters_start_at_zero_for_every_known_reason_and_add_up() {
        let metrics = Metrics::default();
        let text = metrics.render(2);
        assert_eq!(sample(&text, "keyhole_connected_agents"), Some("2"));
        assert_eq!(
            sample(&text, "keyhole_refused_hits_total{reason=\"queue_full\"}"),
            Some("0")
        );
        metrics.snapshots_ingested(IngestOutcome {
            stored: 3,
            duplicates: 1,
            newest: Some(3),
        });
        let drop = |reason: DropReason, count| DropCount {
            breakpoint_id: "bp".into(),
            reason: reason as i32,
            count,
        };
        metrics.hits_refused(&[drop(DropReason::HitLimit, 4), drop(DropReason::HitLimit, 1)]);
        metrics.hits_refused(&[DropCount {
            reason: 99,
            ..drop(DropReason::Expired, 2)
        }]);
        let text = metrics.render(0);
        let stored = "keyhole_snapshots_ingested_total{outcome=\"stored\"}";
        assert_eq!(sample(&text, stored), Some("3"));
        assert_eq!(
            sample(&text, "keyhole_snapshots_ingested_total{outcome=\"duplicate\"}"),
            Some("1")
        );
        assert_eq!(
            sample(&text, "keyhole_refused_hits_total{reason=\"hit_limit\"}"),
            Some("5")
        );
        assert_eq!(
            sample(&text, "keyhole_refused_hits_total{reason=\"unknown\"}"),
            Some("2")
        );
    }

    #[test]
    fn the_latency_histogram_is_cumulative_and_ends_with_every_call() {
        let metrics = Metrics::default();
        let path = "/keyhole.v1.AgentService/UploadSnapshots";
        for millis in [0, 3, 40, 60_000] {
            metrics.observe_rpc(path, Duration::from_millis(millis));
        }
        let text = metrics.render(0);
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("keyhole_rpc_duration_seconds_bucket{{path=\"{path}\",le=\"{le}\"}}"),
            )
        };
        assert_eq!(bucket("0.001"), Some("1"));
        assert_eq!(bucket("0.005"), Some("2"));
        assert_eq!(bucket("0.05"), Some("3"));
        assert_eq!(bucket("30"), Some("3"), "a minute is past the last bound");
        assert_eq!(bucket("+Inf"), Some("4"));
        assert_eq!(
            sample(
                &text,
                &format!("keyhole_rpc_duration_seconds_count{{path=\"{path}\"}}")
            ),
            Some("4")
        );
    }

    #[test]
    fn paths_beyond_the_cap_are_counted_together() {
        let metrics = Metrics::default();
        for n in 0..MAX_RPC_PATHS + 5 {
            metrics.observe_rpc(&format!("/x.Y/M{n}\"\n"), Duration::ZERO);
        }
        let text = metrics.render(0);
        let counts: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("keyhole_rpc_duration_seconds_count"))
            .collect();
        assert_eq!(counts.len(), MAX_RPC_PATHS + 1);
        assert!(counts.contains(&"keyhole_rpc_duration_seconds_count{path=\"other\"} 5"));
        assert!(text.contains("path=\"/x.Y/M0\\\"\\n\""), "labels are escaped");
    }
}
