//! CPU time processes have spent, as Linux reports it (`utime` and `stime` in
//! `/proc/PID/stat`, and per thread in `/proc/PID/task/TID/stat`). On a machine
//! that others share, CPU time per request moves much less than requests per
//! second: a neighbour steals wall-clock time, not the cycles a request needs.
//! User and system time are kept apart, and the agent's own thread apart from
//! the threads that serve, so that a configuration's extra CPU can be placed:
//! in the service's code, in the kernel, or in the agent's background work.

use std::ops::{Add, Sub};
use std::time::Duration;

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every Linux architecture Keyhole targets).
const TICKS_PER_SECOND: u64 = 100;

/// The name the agent gives its background thread (`comm` in `/proc`, at most 15 bytes).
pub const AGENT_THREAD: &str = "keyhole-agent";

/// User and system CPU time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

impl Add for CpuTimes {
    type Output = CpuTimes;
    fn add(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

impl Sub for CpuTimes {
    type Output = CpuTimes;
    /// Saturating: a thread that ended between two readings takes its time with it.
    fn sub(self, other: CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(other.user),
            system: self.system.saturating_sub(other.system),
        }
    }
}

impl std::iter::Sum for CpuTimes {
    fn sum<I: Iterator<Item = CpuTimes>>(iter: I) -> CpuTimes {
        iter.fold(CpuTimes::default(), Add::add)
    }
}

/// The thread's or process's name and its CPU times, from the text of a `stat` file.
fn parse_stat(stat: &str) -> Option<(&str, CpuTimes)> {
    // The command name (field 2) is in parentheses and may hold spaces; the fields after it are
    // plain numbers.
    let (head, after_name) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let mut fields = after_name.split_whitespace();
    // After the name: state is field 3, utime field 14 and stime field 15.
    let user: u64 = fields.nth(11)?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = |n: u64| Duration::from_millis(n * 1000 / TICKS_PER_SECOND);
    Some((
        name,
        CpuTimes {
            user: ticks(user),
            system: ticks(system),
        },
    ))
}

/// CPU times from the `stat` file at `path`; `None` if it is gone or this is not Linux.
pub fn stat_times(path: &str) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(path).ok()?;
    parse_stat(&stat).map(|(_, times)| times)
}

/// A process's CPU time split between the agent's thread and all the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSplit {
    /// Every thread but the agent's: the service's runtime, serving requests.
    pub serving: CpuTimes,
    /// The agent's background thread: uploads, symbolisation, the control-plane connection.
    pub agent: CpuTimes,
}

impl CpuSplit {
    pub fn total(self) -> Duration {
        self.serving.total() + self.agent.total()
    }
}

impl Add for CpuSplit {
    type Output = CpuSplit;
    fn add(self, other: CpuSplit) -> CpuSplit {
        CpuSplit {
            serving: self.serving + other.serving,
            agent: self.agent + other.agent,
        }
    }
}

impl Sub for CpuSplit {
    type Output = CpuSplit;
    fn sub(self, other: CpuSplit) -> CpuSplit {
        CpuSplit {
            serving: self.serving - other.serving,
            agent: self.agent - other.agent,
        }
    }
}

/// Process `pid`'s CPU time so far, thread by thread; threads that ended are counted in
/// `serving` (the process's total minus its live agent thread).
fn split(pid: u32) -> Option<CpuSplit> {
    let whole = stat_times(&format!("/proc/{pid}/stat"))?;
    let agent: CpuTimes = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| {
            parse_stat(&stat).and_then(|(name, times)| (name == AGENT_THREAD).then_some(times))
        })
        .sum();
    Some(CpuSplit {
        serving: whole - agent,
        agent,
    })
}

/// The CPU time `pids` spent together between two readings.
pub struct CpuMeter {
    pids: Vec<u32>,
    start: CpuSplit,
}

impl CpuMeter {
    pub fn start(pids: &[u32]) -> CpuMeter {
        CpuMeter {
            pids: pids.to_vec(),
            start: total(pids),
        }
    }

    /// CPU time spent since [`CpuMeter::start`].
    pub fn spent(&self) -> CpuSplit {
        total(&self.pids) - self.start
    }
}

fn total(pids: &[u32]) -> CpuSplit {
    pids.iter()
        .filter_map(|&pid| split(pid))
        .fold(CpuSplit::default(), Add::add)
}

/// Runs every thread of process `pid` (and the threads it starts later) on CPU `cpu` alone, by
/// util-linux's `taskset`.
pub fn pin_process(pid: u32, cpu: usize) -> Result<(), String> {
    taskset(&["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
}

/// Runs the calling thread (and the threads it starts later) on CPU `cpu` alone.
pub fn pin_this_thread(cpu: usize) -> Result<(), String> {
    // `/proc/thread-self` links to `PID/task/TID`.
    let link = std::fs::read_link("/proc/thread-self")
        .map_err(|e| format!("cannot find this thread's id in /proc/thread-self: {e}"))?;
    let tid = link
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("/proc/thread-self links to {}, not PID/task/TID", link.display()))?
        .to_owned();
    taskset(&["-p", "-c", &cpu.to_string(), &tid])
}

fn taskset(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("taskset")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run taskset (util-linux) to pin to a CPU: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "taskset {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The CPUs a thread of process `pid` may run on, as `/proc/PID/task/TID/status` lists them.
#[cfg(test)]
fn allowed_cpus(pid: u32, tid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .map(|list| list.trim().to_owned())
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
        while meter.spent().total() < Duration::from_millis(30) && std::time::Instant::now() < until {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        let spent = meter.spent();
        assert!(spent.total() >= Duration::from_millis(30), "{spent:?}");
        assert!(
            spent.serving.user > Duration::ZERO,
            "a spin is user time: {spent:?}"
        );
    }

    #[test]
    fn stat_lines_give_their_name_and_times_even_with_spaces_and_parentheses_in_the_name() {
        // Fields 14 and 15 (utime, stime) are 250 and 40 ticks.
        let stat = "1234 (keyhole (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 5 0 1 0 0";
        let (name, times) = parse_stat(stat).unwrap();
        assert_eq!(name, "keyhole (x) y");
        assert_eq!(times.user, Duration::from_millis(2500));
        assert_eq!(times.system, Duration::from_millis(400));
        assert_eq!(parse_stat("1234 (truncated) S 1"), None);
    }

    #[test]
    fn the_agent_thread_is_counted_apart_from_the_serving_threads() {
        let pid = std::process::id();
        let before = split(pid).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinner = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(AGENT_THREAD.into())
                .spawn(move || {
                    let mut spin = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        spin = std::hint::black_box(spin.wrapping_add(1));
                    }
                })
                .unwrap()
        };
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while (split(pid).unwrap() - before).agent.total() < Duration::from_millis(30)
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let spent = split(pid).unwrap() - before;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinner.join().unwrap();
        assert!(spent.agent.total() >= Duration::from_millis(30), "{spent:?}");
    }

    /// The calling thread's id.
    fn own_tid() -> u32 {
        let link = std::fs::read_link("/proc/thread-self").unwrap();
        link.file_name().unwrap().to_str().unwrap().parse().unwrap()
    }

    #[test]
    fn a_pinned_thread_and_the_threads_it_starts_run_on_that_cpu_alone() {
        let pid = std::process::id();
        let lists = std::thread::spawn(move || {
            pin_this_thread(0).unwrap();
            let started = std::thread::spawn(move || allowed_cpus(pid, own_tid()))
                .join()
                .unwrap();
            (allowed_cpus(pid, own_tid()), started)
        })
        .join()
        .unwrap();
        assert_eq!(lists, (Some("0".into()), Some("0".into())));
    }
}
