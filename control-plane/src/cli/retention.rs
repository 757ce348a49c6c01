//! `keyhole server`'s retention flags: how long snapshots are kept, and
//! (hidden, for tests that cannot wait minutes) how often and in what steps
//! the server deletes the rest.

use std::time::Duration;

use clap::{value_parser, Args};

use super::duration;
use crate::config::{Retention, DEFAULT_RETAIN_PER_BREAKPOINT, RETENTION_BATCH, RETENTION_BATCH_PAUSE};

#[derive(Args, Clone)]
pub struct RetentionArgs {
    /// Delete snapshots received longer ago than this (e.g. 36h, 7d, 30d).
    #[arg(
        long,
        env = "KEYHOLE_RETAIN_SNAPSHOTS_FOR",
        value_name = "DURATION",
        default_value = "7d",
        value_parser = positive_duration
    )]
    retain_snapshots_for: Duration,
    /// Keep at most this many snapshots per breakpoint, deleting the oldest beyond them.
    #[arg(
        long,
        env = "KEYHOLE_RETAIN_SNAPSHOTS_PER_BREAKPOINT",
        value_name = "N",
        default_value_t = DEFAULT_RETAIN_PER_BREAKPOINT,
        value_parser = value_parser!(u32).range(1..)
    )]
    retain_snapshots_per_breakpoint: u32,
    /// How often retention runs.
    #[arg(long, hide = true, value_name = "DURATION", default_value = "5m", value_parser = positive_duration)]
    retention_interval: Duration,
    /// Snapshots deleted per statement.
    #[arg(
        long,
        hide = true,
        value_name = "N",
        default_value_t = RETENTION_BATCH,
        value_parser = value_parser!(u32).range(1..)
    )]
    retention_batch_size: u32,
    /// Milliseconds between two statements.
    #[arg(long, hide = true, value_name = "MS", default_value_t = RETENTION_BATCH_PAUSE.as_millis() as u64)]
    retention_batch_pause_ms: u64,
}

impl RetentionArgs {
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: self.retain_snapshots_for,
            max_per_breakpoint: self.retain_snapshots_per_breakpoint,
            interval: self.retention_interval,
            batch_size: self.retention_batch_size,
            batch_pause: Duration::from_millis(self.retention_batch_pause_ms),
        }
    }
}

/// A duration as the CLI reads them everywhere, longer than zero.
fn positive_duration(text: &str) -> Result<Duration, String> {
    let duration = duration::parse(text)?;
    if duration.is_zero() {
        return Err("must be longer than 0s".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        retention: RetentionArgs,
    }

    fn parse(args: &[&str]) -> Result<Retention, String> {
        Flags::try_parse_from(std::iter::once("keyhole").chain(args.iter().copied()))
            .map(|flags| flags.retention.retention())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn without_flags_retention_is_the_documented_default() {
        assert_eq!(parse(&[]), Ok(Retention::default()));
    }

    #[test]
    fn retention_flags_read_durations_like_the_rest_of_the_cli() {
        let retention = parse(&[
            "--retain-snapshots-for",
            "1d12h",
            "--retain-snapshots-per-breakpoint",
            "10",
            "--retention-interval",
            "2s",
            "--retention-batch-size",
            "3",
            "--retention-batch-pause-ms",
            "0",
        ])
        .unwrap();
        assert_eq!(retention.max_age, Duration::from_secs(36 * 3_600));
        assert_eq!(retention.max_per_breakpoint, 10);
        assert_eq!(retention.interval, Duration::from_secs(2));
        assert_eq!(retention.batch_size, 3);
        assert_eq!(retention.batch_pause, Duration::ZERO);
    }

    #[test]
    fn retention_that_would_delete_everything_at_once_is_refused() {
        let error = parse(&["--retain-snapshots-for", "0s"]).unwrap_err();
        assert!(error.contains("longer than 0s"), "{error}");
        let error = parse(&["--retain-snapshots-for", "a week"]).unwrap_err();
        assert!(error.contains("like 30s, 15m, 2h"), "{error}");
        assert!(parse(&["--retain-snapshots-per-breakpoint", "0"]).is_err());
    }
}
