//! Budgets a hit must pass before any capture work: rate limits (GCRA, lock
//! free) and the counters of every refusal, by reason.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use keyhole_proto::v1::DropReason;

/// Nanoseconds since the agent's first look at the clock: monotonic, cheap,
/// and fits an `AtomicU64` for centuries.
pub fn monotonic_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A rate limit as the generic cell rate algorithm: one atomic holding the
/// "theoretical arrival time"; a hit is allowed when it is no more than
/// `burst - 1` intervals ahead of now.
#[derive(Debug)]
pub struct RateLimit {
    interval_nanos: u64,
    tolerance_nanos: u64,
    arrival: AtomicU64,
}

impl RateLimit {
    /// At most `per_second` hits a second on average, with bursts of up to
    /// `burst` hits at once. A rate that is not a positive number allows nothing.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let interval = if per_second.is_finite() && per_second > 0.0 {
            (1e9 / per_second).clamp(1.0, u64::MAX as f64) as u64
        } else {
            u64::MAX
        };
        Self {
            interval_nanos: interval,
            tolerance_nanos: interval.saturating_mul(u64::from(burst.max(1) - 1)),
            arrival: AtomicU64::new(0),
        }
    }

    /// Takes one hit's worth of budget at `now` (see [`monotonic_nanos`]) if there is any.
    pub fn try_acquire(&self, now: u64) -> bool {
        if self.interval_nanos == u64::MAX {
            return false;
        }
        let mut arrival = self.arrival.load(Ordering::Relaxed);
        loop {
            if arrival > now.saturating_add(self.tolerance_nanos) {
                return false;
            }
            let next = arrival.max(now).saturating_add(self.interval_nanos);
            match self
                .arrival
                .compare_exchange_weak(arrival, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(current) => arrival = current,
            }
        }
    }
}

/// Every reason a hit can be refused, in the order of the wire enum.
pub const DROP_REASONS: [DropReason; 8] = [
    DropReason::Expired,
    DropReason::HitLimit,
    DropReason::BreakpointRate,
    DropReason::GlobalRate,
    DropReason::QueueFull,
    DropReason::ConditionFalse,
    DropReason::CaptureError,
    DropReason::ConditionError,
];

/// Refusal counters, one atomic per reason; drained into each upload batch.
#[derive(Debug, Default)]
pub struct DropCounters {
    counts: [AtomicU64; DROP_REASONS.len()],
}

impl DropCounters {
    pub fn count(&self, reason: DropReason) {
        let slot = DROP_REASONS.iter().zip(&self.counts).find(|(r, _)| **r == reason);
        if let Some((_, count)) = slot {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the counts since the last call, leaving zeros.
    pub fn drain(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DROP_REASONS
            .iter()
            .zip(&self.counts)
            .map(|(reason, count)| (*reason, count.swap(0, Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_rate_of_one_per_second_allows_one_hit_in_a_thousand_within_a_second() {
        let limit = RateLimit::new(1.0, 1);
        let start = 5 * SECOND;
        let allowed = (0..1000)
            .filter(|i| limit.try_acquire(start + i * (SECOND / 1000)))
            .count();
        assert_eq!(allowed, 1);
        assert!(
            limit.try_acquire(start + SECOND),
            "the next second has budget again"
        );
    }

    #[test]
    fn a_burst_allows_that_many_at_once_then_the_average_rate() {
        let limit = RateLimit::new(100.0, 100);
        let now = SECOND;
        assert_eq!((0..1000).filter(|_| limit.try_acquire(now)).count(), 100);
        assert!(!limit.try_acquire(now + SECOND / 200));
        assert!(limit.try_acquire(now + SECOND / 100));
    }

    #[test]
    fn a_non_positive_rate_allows_nothing() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let limit = RateLimit::new(rate, 1);
            assert!(!limit.try_acquire(SECOND), "{rate}");
        }
    }

    #[test]
    fn drop_counters_drain_to_zero() {
        let counters = DropCounters::default();
        counters.count(DropReason::HitLimit);
        counters.count(DropReason::HitLimit);
        counters.count(DropReason::QueueFull);
        let drained: Vec<_> = counters.drain().collect();
        assert_eq!(drained, [(DropReason::HitLimit, 2), (DropReason::QueueFull, 1)]);
        assert_eq!(counters.drain().count(), 0);
    }
}
