//! Rate limiting for malformed-header reports, so that a peer sending bad headers on every request cannot
//! flood the logs: at most one report per [`REPORT_INTERVAL`] per header kind, carrying how many went
//! unreported, and never the header's text. The caller does the logging.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::limits::REPORT_INTERVAL;
use super::{HeaderError, HeaderKind};

/// Decides, per header kind, when a malformed header deserves a log line.
///
/// ```
/// use std::time::{Duration, Instant};
/// use keyhole::propagation::{HeaderError, HeaderKind, MalformedReports, REPORT_INTERVAL};
///
/// static REPORTS: MalformedReports = MalformedReports::new();
///
/// let start = Instant::now();
/// assert!(REPORTS.note(HeaderKind::Baggage, start).is_some());
/// assert!(REPORTS.note(HeaderKind::Baggage, start + Duration::from_secs(1)).is_none());
/// assert!(REPORTS.note_error(HeaderError::TraceParentVersion, start).is_some()); // another kind
///
/// let later = REPORTS.note(HeaderKind::Baggage, start + REPORT_INTERVAL).unwrap();
/// assert_eq!(later.suppressed, 1);
/// // A report is safe to log: it never holds header text.
/// assert_eq!(later.to_string(), "malformed baggage header ignored (1 more since the last report)");
/// ```
#[derive(Debug)]
pub struct MalformedReports {
    interval: Duration,
    /// The instant the nanosecond counters below count from: the first one noted.
    epoch: OnceLock<Instant>,
    traceparent: KindState,
    tracestate: KindState,
    baggage: KindState,
}

#[derive(Debug)]
struct KindState {
    /// Nanoseconds after `epoch` before which no report is due; 0 until the first report.
    next_report_at: AtomicU64,
    /// Malformed headers noted since the last report, that one included.
    unreported: AtomicU64,
}

impl KindState {
    const fn new() -> KindState {
        KindState {
            next_report_at: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }
    }
}

/// One log line's worth: a header kind was malformed, and how often since the last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Which header was malformed.
    pub kind: HeaderKind,
    /// Why, when the caller passed the error to [`MalformedReports::note_error`].
    pub error: Option<HeaderError>,
    /// Malformed headers of this kind noted since the last report and not reported.
    pub suppressed: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed {} header ignored", self.kind)?;
        if let Some(error) = &self.error {
            write!(f, ": {error}")?;
        }
        if self.suppressed > 0 {
            write!(f, " ({} more since the last report)", self.suppressed)?;
        }
        Ok(())
    }
}

impl MalformedReports {
    /// Reports at most once per [`REPORT_INTERVAL`] per header kind. `const`, so it can be a `static`.
    pub const fn new() -> MalformedReports {
        MalformedReports::with_interval(REPORT_INTERVAL)
    }

    /// Reports at most once per `interval` per header kind.
    pub const fn with_interval(interval: Duration) -> MalformedReports {
        MalformedReports {
            interval,
            epoch: OnceLock::new(),
            traceparent: KindState::new(),
            tracestate: KindState::new(),
            baggage: KindState::new(),
        }
    }

    /// Counts one malformed `kind` header seen at `now`; `Some` when a report is due, which is at most once
    /// per interval per kind, with the count of those suppressed since the previous report.
    pub fn note(&self, kind: HeaderKind, now: Instant) -> Option<Report> {
        let state = match kind {
            HeaderKind::TraceParent => &self.traceparent,
            HeaderKind::TraceState => &self.tracestate,
            HeaderKind::Baggage => &self.baggage,
        };
        // Relaxed throughout: the counters publish no other memory, and a report that counts a racing
        // note in this interval rather than the next is still a true count.
        state.unreported.fetch_add(1, Ordering::Relaxed);
        // Only the very first call initialises the epoch; after that this is a plain load.
        let epoch = *self.epoch.get_or_init(|| now);
        let now = nanos(now.saturating_duration_since(epoch));
        let due = state.next_report_at.load(Ordering::Relaxed);
        if now < due {
            return None;
        }
        // Of the threads that find a report due, the one whose exchange succeeds reports.
        let next = now.saturating_add(nanos(self.interval));
        state
            .next_report_at
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        let unreported = state.unreported.swap(0, Ordering::Relaxed);
        Some(Report {
            kind,
            error: None,
            suppressed: unreported.saturating_sub(1),
        })
    }

    /// [`MalformedReports::note`] for the kind of header `error` is about, with the error in the report.
    pub fn note_error(&self, error: HeaderError, now: Instant) -> Option<Report> {
        let report = self.note(error.kind(), now)?;
        Some(Report {
            error: Some(error),
            ..report
        })
    }
}

impl Default for MalformedReports {
    fn default() -> MalformedReports {
        MalformedReports::new()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn the_first_malformed_header_of_each_kind_is_reported_at_once() {
        let reports = MalformedReports::new();
        let now = Instant::now();
        for kind in [
            HeaderKind::TraceParent,
            HeaderKind::TraceState,
            HeaderKind::Baggage,
        ] {
            assert_eq!(
                reports.note(kind, now),
                Some(Report {
                    kind,
                    error: None,
                    suppressed: 0
                })
            );
        }
    }

    #[test]
    fn a_flood_of_malformed_headers_yields_one_report_per_interval_with_the_count() {
        let reports = MalformedReports::new();
        let start = Instant::now();
        assert!(reports.note(HeaderKind::Baggage, start).is_some());
        let flood = (0..10_000).filter_map(|i| reports.note(HeaderKind::Baggage, start + SECOND * (i % 59)));
        assert_eq!(flood.count(), 0);
        let next = reports
            .note(HeaderKind::Baggage, start + REPORT_INTERVAL)
            .unwrap();
        assert_eq!(next.suppressed, 10_000);
        assert!(reports
            .note(HeaderKind::Baggage, start + REPORT_INTERVAL + SECOND)
            .is_none());
        let after = reports
            .note(HeaderKind::Baggage, start + REPORT_INTERVAL * 2)
            .unwrap();
        assert_eq!(after.suppressed, 1);
    }

    #[test]
    fn a_report_carries_the_error_but_never_header_text() {
        let reports = MalformedReports::new();
        let report = reports
            .note_error(HeaderError::TraceStateKey { position: 3 }, Instant::now())
            .unwrap();
        assert_eq!(report.kind, HeaderKind::TraceState);
        assert_eq!(report.error, Some(HeaderError::TraceStateKey { position: 3 }));
        assert!(report
            .to_string()
            .starts_with("malformed tracestate header ignored: tracestate list-member 3"));
    }

    #[test]
    fn threads_racing_on_a_due_report_produce_exactly_one() {
        let reports = MalformedReports::with_interval(Duration::from_secs(3600));
        let now = Instant::now();
        let reported: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        (0..1000)
                            .filter(|_| reports.note(HeaderKind::Baggage, now).is_some())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).sum()
        });
        assert_eq!(reported, 1);
    }

    #[test]
    fn instants_before_the_first_one_noted_do_not_wrap_around() {
        let reports = MalformedReports::new();
        let now = Instant::now() + Duration::from_secs(10);
        assert!(reports.note(HeaderKind::TraceParent, now).is_some());
        assert!(reports
            .note(HeaderKind::TraceParent, now - Duration::from_secs(5))
            .is_none());
    }
}
