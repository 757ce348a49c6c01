//! The shop's services sampled by `perf record` on the CPU clock while they are loaded, for
//! `overhead --perf DIR`: where their time goes, function by function, on the wall clock's machine.
//!
//! Instruction counts (`instructions`, under callgrind) say what a request executes; they cannot
//! say what it waits for inside the CPU (a cache line fetched from memory, a branch mispredicted, a
//! line another core holds). A machine without hardware counters still has the kernel's CPU clock:
//! sampled at a fixed frequency, each sample is that much CPU time spent in the function it lands
//! in, stalls included. Each run's samples go to `DIR/NAME.perf.data`, the requests answered meanwhile
//! to `DIR/NAME.requests`, so that `tests/tools/perf-costs.py` gives each function's CPU time per
//! request and the difference between two configurations.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Samples a second on each CPU: enough for a function costing 0.1% of a run to collect hundreds
/// of samples over a run of seconds, few enough that perf's own work stays small beside the load.
pub const SAMPLES_PER_SECOND: u32 = 4999;
/// How long perf may take to write its file once asked to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long perf may take to attach before sampling is assumed to be under way.
const ATTACH_WAIT: Duration = Duration::from_millis(300);

/// One `perf record` attached to a run's services.
pub struct PerfRecording {
    child: Child,
    requests_file: PathBuf,
}

/// The files a run's recording writes into `dir`: its samples and its request count.
fn files(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.perf.data")),
        dir.join(format!("{name}.requests")),
    )
}

impl PerfRecording {
    /// Starts sampling every thread of `pids` (not their children) into `DIR/NAME.perf.data`.
    pub fn start(dir: &Path, name: &str, pids: &[u32]) -> Result<PerfRecording, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let (data, requests_file) = files(dir, name);
        let pids = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let child = Command::new("perf")
            .args(["record", "--quiet", "-e", "cpu-clock", "-F"])
            .arg(SAMPLES_PER_SECOND.to_string())
            .args(["-p", &pids, "-o"])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run perf (Debian's linux-perf) to sample the services: {e}"))?;
        std::thread::sleep(ATTACH_WAIT);
        Ok(PerfRecording { child, requests_file })
    }

    /// Stops sampling (perf writes its file on SIGINT) and notes the requests answered meanwhile.
    pub fn finish(mut self, requests: u64) -> Result<(), String> {
        let interrupted = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .map_err(|e| format!("cannot signal perf: {e}"))?;
        if !interrupted.success() {
            return Err("perf record ended before it was stopped: is perf_event_paranoid above 2?".into());
        }
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    return Err(format!("perf did not write its samples within {STOP_TIMEOUT:?}"));
                }
                Err(e) => return Err(format!("waiting for perf: {e}")),
            }
        };
        // perf record exits with the signal's status when interrupted; its file is complete then.
        if status.code().is_some_and(|code| code != 0 && code != 130) {
            let mut stderr = String::new();
            if let Some(mut pipe) = self.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return Err(format!("perf record failed ({status}): {}", stderr.trim()));
        }
        std::fs::write(&self.requests_file, format!("{requests}\n"))
            .map_err(|e| format!("cannot write {}: {e}", self.requests_file.display()))
    }
}
