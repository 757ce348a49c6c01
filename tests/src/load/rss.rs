//! Resident memory of a process, as Linux reports it (`VmRSS` in
//! `/proc/PID/status`), sampled on a thread of its own while a run goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The resident memory of process `pid` in bytes; `None` if it is gone or this is not Linux.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a sampler saw: the first sample is the baseline growth is measured from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RssSeries {
    pub first: u64,
    pub max: u64,
    pub last: u64,
    pub samples: usize,
}

impl RssSeries {
    /// The largest rise above the first sample.
    pub fn max_growth(&self) -> u64 {
        self.max.saturating_sub(self.first)
    }
}

/// Samples one process's resident memory every `every` until finished or dropped.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<RssSeries>>,
}

impl RssSampler {
    /// Takes the first sample now, then one every `every`.
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut series = RssSeries::default();
            let mut record = |bytes: u64| {
                if series.samples == 0 {
                    series.first = bytes;
                }
                series.max = series.max.max(bytes);
                series.last = bytes;
                series.samples += 1;
            };
            while !stopping.load(Ordering::Relaxed) {
                match resident_bytes(pid) {
                    Some(bytes) => record(bytes),
                    None => break,
                }
                std::thread::sleep(every);
            }
            // One last sample so that the end of the run is always in the series.
            if let Some(bytes) = resident_bytes(pid) {
                record(bytes);
            }
            series
        });
        RssSampler {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling and returns what was seen.
    pub fn finish(mut self) -> RssSeries {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|thread| thread.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory_and_a_sampler_sees_it() {
        let own = resident_bytes(std::process::id()).expect("VmRSS of this process");
        assert!(own > 0);
        let series = RssSampler::start(std::process::id(), Duration::from_millis(5)).finish();
        assert!(series.samples >= 1 && series.max >= series.first, "{series:?}");
    }
}
