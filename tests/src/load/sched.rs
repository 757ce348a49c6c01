//! What the kernel did to processes besides running them, as Linux counts it per thread: context
//! switches (`voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` in
//! `/proc/PID/task/TID/status`), time spent runnable but waiting for a CPU (the second field of
//! `/proc/PID/task/TID/schedstat`), and minor page faults (field 10 of `/proc/PID/stat`, the whole
//! process's).
//!
//! CPU time per request says a configuration costs more; these say whether the extra is work the
//! requests do or the kernel's: a thread that parks and is woken again for each request pays for
//! the scheduler each time, which an instruction count of the service's code never shows.

use std::ops::{Add, Sub};

/// Counts of the kernel's events in some processes, summed over their threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelEvents {
    /// A thread gave up its CPU: it blocked (a futex, `epoll_wait`) with nothing to do.
    pub voluntary_switches: u64,
    /// A thread was taken off its CPU while it still had work: preempted.
    pub involuntary_switches: u64,
    /// Nanoseconds threads spent runnable, waiting for a CPU.
    pub runqueue_wait_nanos: u64,
    /// Page faults served without reading from disk: a page touched for the first time, often
    /// memory the allocator has just taken from or given back to the kernel.
    pub minor_faults: u64,
}

impl KernelEvents {
    /// Each count of `self` and `other` combined by `op`.
    fn each(self, other: KernelEvents, op: fn(u64, u64) -> u64) -> KernelEvents {
        KernelEvents {
            voluntary_switches: op(self.voluntary_switches, other.voluntary_switches),
            involuntary_switches: op(self.involuntary_switches, other.involuntary_switches),
            runqueue_wait_nanos: op(self.runqueue_wait_nanos, other.runqueue_wait_nanos),
            minor_faults: op(self.minor_faults, other.minor_faults),
        }
    }
}

impl Add for KernelEvents {
    type Output = KernelEvents;
    fn add(self, other: KernelEvents) -> KernelEvents {
        self.each(other, u64::saturating_add)
    }
}

impl Sub for KernelEvents {
    type Output = KernelEvents;
    /// Saturating: a thread that ended between two readings takes its counts with it.
    fn sub(self, other: KernelEvents) -> KernelEvents {
        self.each(other, u64::saturating_sub)
    }
}

/// A thread's context switches, from the text of its `status` file.
fn switches(status: &str) -> (u64, u64) {
    let count = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    (
        count("voluntary_ctxt_switches:"),
        count("nonvoluntary_ctxt_switches:"),
    )
}

/// A thread's nanoseconds waiting on a run queue, from the text of its `schedstat` file
/// ("run_ns wait_ns timeslices"); zero where the kernel keeps no scheduler statistics.
fn runqueue_wait_nanos(schedstat: &str) -> u64 {
    schedstat
        .split_whitespace()
        .nth(1)
        .and_then(|wait| wait.parse().ok())
        .unwrap_or(0)
}

/// The process's minor faults, from the text of its `stat` file.
fn minor_faults(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces; after it, state is
    // field 3 and minflt field 10.
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(7)?.parse().ok()
}

/// Process `pid`'s events so far; `None` if it is gone or this is not Linux.
fn of_process(pid: u32) -> Option<KernelEvents> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut events = KernelEvents {
        minor_faults: minor_faults(&stat)?,
        ..KernelEvents::default()
    };
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let path = task.path();
        let Ok(status) = std::fs::read_to_string(path.join("status")) else {
            continue;
        };
        let (voluntary, involuntary) = switches(&status);
        events.voluntary_switches += voluntary;
        events.involuntary_switches += involuntary;
        if let Ok(schedstat) = std::fs::read_to_string(path.join("schedstat")) {
            events.runqueue_wait_nanos += runqueue_wait_nanos(&schedstat);
        }
    }
    Some(events)
}

fn total(pids: &[u32]) -> KernelEvents {
    pids.iter()
        .filter_map(|&pid| of_process(pid))
        .fold(KernelEvents::default(), Add::add)
}

/// The kernel's events in `pids` between two readings.
pub struct EventMeter {
    pids: Vec<u32>,
    start: KernelEvents,
}

impl EventMeter {
    pub fn start(pids: &[u32]) -> EventMeter {
        EventMeter {
            pids: pids.to_vec(),
            start: total(pids),
        }
    }

    /// Events since [`EventMeter::start`].
    pub fn counted(&self) -> KernelEvents {
        total(&self.pids) - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn status_and_schedstat_lines_give_switches_and_waits() {
        let status = "Name:\tshop\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t1520\nnonvoluntary_ctxt_switches:\t37\n";
        assert_eq!(switches(status), (1520, 37));
        assert_eq!(switches("Name:\tshop\n"), (0, 0));
        assert_eq!(runqueue_wait_nanos("81234567 2500000 912\n"), 2_500_000);
        assert_eq!(runqueue_wait_nanos(""), 0);
    }

    #[test]
    fn stat_lines_give_minor_faults_even_with_spaces_and_parentheses_in_the_name() {
        // Field 10 (minflt) is 4321.
        let stat = "1234 (keyhole (x) y) S 1 1234 1234 0 -1 4194560 4321 0 7 0 250 40 0 0 20 0 5 0";
        assert_eq!(minor_faults(stat), Some(4321));
        assert_eq!(minor_faults("1234 (truncated) S 1"), None);
    }

    const TOUCHED_BYTES: usize = 64 << 20;
    const HUGE_PAGE_BYTES: usize = 2 << 20;

    #[test]
    fn a_thread_that_sleeps_and_a_process_that_touches_new_memory_are_counted() {
        let meter = EventMeter::start(&[std::process::id()]);
        std::thread::spawn(|| {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .join()
        .unwrap();
        // A fresh mapping this large comes straight from the kernel, not from memory the
        // allocator already holds, and each of its pages faults in when first written: at least
        // one fault per 2 MiB even where transparent huge pages back it.
        let pages = vec![1u8; TOUCHED_BYTES];
        std::hint::black_box(&pages);
        let counted = meter.counted();
        // The sleeper's counts left with it; this thread's join waited for it at least once.
        assert!(counted.voluntary_switches >= 1, "{counted:?}");
        assert!(
            counted.minor_faults >= (TOUCHED_BYTES / HUGE_PAGE_BYTES) as u64,
            "{counted:?}"
        );
    }
}
