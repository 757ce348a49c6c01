//! Latency figures from every request's own timing: all samples are kept and
//! sorted, so a percentile is a real request's latency, not a bucket's edge.
//! A run is bounded in requests, so the samples are bounded too (8 bytes each).

use std::time::Duration;

/// The latency distribution of one run's successful requests.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub count: usize,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl LatencySummary {
    /// Summarises `samples` (nanoseconds, in any order).
    pub fn of(mut samples: Vec<u64>) -> LatencySummary {
        if samples.is_empty() {
            return LatencySummary::default();
        }
        samples.sort_unstable();
        let total: u128 = samples.iter().map(|&n| u128::from(n)).sum();
        let mean = total / samples.len() as u128;
        LatencySummary {
            count: samples.len(),
            mean: Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX)),
            p50: Duration::from_nanos(nearest_rank(&samples, 0.5)),
            p99: Duration::from_nanos(nearest_rank(&samples, 0.99)),
            p999: Duration::from_nanos(nearest_rank(&samples, 0.999)),
            max: Duration::from_nanos(*samples.last().expect("not empty")),
        }
    }
}

/// The smallest sample at or above fraction `q` of `sorted` (nearest-rank method).
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_samples_by_nearest_rank() {
        let samples: Vec<u64> = (1..=1000).rev().collect();
        let summary = LatencySummary::of(samples);
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.p50, Duration::from_nanos(500));
        assert_eq!(summary.p99, Duration::from_nanos(990));
        assert_eq!(summary.p999, Duration::from_nanos(999));
        assert_eq!(summary.max, Duration::from_nanos(1000));
        assert_eq!(summary.mean, Duration::from_nanos(500));
    }

    #[test]
    fn one_sample_is_every_percentile_and_none_is_zero() {
        let one = LatencySummary::of(vec![7]);
        assert_eq!(
            (one.p50, one.p999, one.max),
            (
                Duration::from_nanos(7),
                Duration::from_nanos(7),
                Duration::from_nanos(7)
            )
        );
        assert_eq!(LatencySummary::of(Vec::new()), LatencySummary::default());
    }
}
