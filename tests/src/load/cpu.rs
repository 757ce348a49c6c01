//! CPU time a process has spent, all its threads together, as Linux reports it
//! (`utime` + `stime` in `/proc/PID/stat`). On a machine that others share,
//! CPU time per request moves much less than requests per second: a neighbour
//! steals wall-clock time, not the cycles a request needs.

use std::time::Duration;

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux architecture Keyhole targets).
const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of process `pid` so far; `None` if it is gone or this is not Linux.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, utime field 14 and stime field 15.
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 1000 / TICKS_PER_SECOND))
}

/// The CPU time `pids` spent together between two readings.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: Duration,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            start: total(pids),
        }
    }

    /// CPU time spent since [`CpuMeter::start`].
    pub fn spent(&self) -> Duration {
        total(&self.pids).saturating_sub(self.start)
    }
}

fn total(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|&pid| cpu_time(pid)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_spends_cpu_time_while_it_works() {
        let meter = CpuMeter::start(&[std::process::id()]);
        // Spin until the kernel has counted some CPU time; a busy machine may
        // give this thread little of the wall-clock time, so only that is bounded.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let mut spin = 0u64;
        while meter.spent() < Duration::from_millis(30) && std::time::Instant::now() < until {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        assert!(meter.spent() >= Duration::from_millis(30), "{:?}", meter.spent());
    }
}
