//! The shop's services run under valgrind's callgrind, for `instructions`: what a process executes is
//! counted instruction by instruction, the same whatever else the machine is doing, so two builds or
//! configurations compare to a fraction of a percent where timings on a shared machine cannot.
//!
//! Each service writes one profile per thread (`--separate-threads=yes`), named after the run and
//! the service ([`profile_name`]). Counting starts when [`Callgrind::zero`] is called, after the
//! warm-up, and [`Callgrind::dump`] writes what was counted since; [`Callgrind::counts`] adds up the
//! threads, the agent's own thread apart from those that serve requests. The profiles are left in a
//! directory of the caller's choosing, if it names one, for `callgrind_annotate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The function only the agent's own thread runs: its profile is the agent's, not a request's.
const AGENT_THREAD_FUNCTION: &str = "keyhole::connection::run";

/// What every profile's file name has after the run's and service's name, and before the dump's
/// number and thread.
const PROFILE_SUFFIX: &str = ".callgrind";

/// Removes the profiles an earlier run left in `dir`: their threads would be counted with this run's.
fn remove_profiles(dir: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let is_profile = entry
            .file_name()
            .to_str()
            .is_some_and(|file| file.contains(PROFILE_SUFFIX));
        if is_profile {
            std::fs::remove_file(entry.path())
                .map_err(|e| format!("removing the old profile {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Where the profiles go, for the services started through it.
pub struct Callgrind {
    dir: Profiles,
}

/// A directory the profiles are kept in, or a temporary one removed with them.
enum Profiles {
    Kept(PathBuf),
    Temporary(tempfile::TempDir),
}

impl Profiles {
    fn path(&self) -> &Path {
        match self {
            Profiles::Kept(path) => path,
            Profiles::Temporary(dir) => dir.path(),
        }
    }
}

/// The name a run's profiles of `service` go by: `d-shop-frontend` for the frontend in run `d`.
pub fn profile_name(run: char, service: &str) -> String {
    format!("{run}-{service}")
}

/// Instructions one service executed between [`Callgrind::zero`] and [`Callgrind::dump`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every thread but the agent's: the runtime serving requests, the probes, the inbound layer.
    pub serving: u64,
    /// The agent's own thread: uploads, stack symbolisation, the breakpoint stream.
    pub agent: u64,
}

impl Callgrind {
    /// Checks that valgrind and callgrind_control are installed. The profiles are kept in `keep`
    /// (created if need be) when given, else removed when this is dropped.
    pub fn new(keep: Option<&Path>) -> Result<Callgrind, String> {
        for tool in ["valgrind", "callgrind_control"] {
            let found = Command::new(tool)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !found {
                return Err(format!(
                    "{tool} is not installed; it comes with valgrind (apt-get install valgrind)"
                ));
            }
        }
        let dir = match keep {
            Some(path) => {
                std::fs::create_dir_all(path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                remove_profiles(path)?;
                Profiles::Kept(path.to_owned())
            }
            None => Profiles::Temporary(
                tempfile::tempdir().map_err(|e| format!("cannot create a profile directory: {e}"))?,
            ),
        };
        Ok(Callgrind { dir })
    }

    /// The command that runs `binary` under callgrind, its profiles named `name` ([`profile_name`]).
    pub fn command(&self, binary: &Path, name: &str) -> Command {
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg("--separate-threads=yes")
            .arg(format!("--callgrind-out-file={}", self.profile(name).display()))
            .arg(binary);
        command
    }

    /// Forgets what the processes `pids` executed so far.
    pub fn zero(&self, pids: &[u32]) -> Result<(), String> {
        self.control("-z", pids)
    }

    /// Writes what the processes `pids` executed since [`Callgrind::zero`].
    pub fn dump(&self, pids: &[u32]) -> Result<(), String> {
        self.control("-d", pids)
    }

    /// What the service `name` executed, as its last dump says.
    pub fn counts(&self, name: &str) -> Result<Counts, String> {
        let base = self.profile(name);
        let prefix = format!(
            "{}.",
            base.file_name().and_then(|n| n.to_str()).unwrap_or_default()
        );
        let entries = std::fs::read_dir(self.dir.path()).map_err(|e| format!("reading profiles: {e}"))?;
        // Dumps are numbered `.1`, `.2`, ... with a `-NN` thread suffix; the newest dump counts.
        let mut profiles: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let file = entry.file_name().into_string().ok()?;
                let dump: u32 = file.strip_prefix(&prefix)?.split('-').next()?.parse().ok()?;
                Some((dump, entry.path()))
            })
            .collect();
        let newest = profiles.iter().map(|(dump, _)| *dump).max();
        profiles.retain(|(dump, _)| Some(*dump) == newest);
        if profiles.is_empty() {
            return Err(format!("no dump of {name} in {}", self.dir.path().display()));
        }
        let mut counts = Counts::default();
        for (_, path) in profiles {
            let profile =
                std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let executed = profile
                .lines()
                .find_map(|line| line.strip_prefix("summary:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("{} has no summary line", path.display()))?;
            if profile.contains(AGENT_THREAD_FUNCTION) {
                counts.agent += executed;
            } else {
                counts.serving += executed;
            }
        }
        Ok(counts)
    }

    fn profile(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}{PROFILE_SUFFIX}"))
    }

    fn control(&self, option: &str, pids: &[u32]) -> Result<(), String> {
        for pid in pids {
            let status = Command::new("callgrind_control")
                .args([option, &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| format!("callgrind_control: {e}"))?;
            if !status.success() {
                return Err(format!("callgrind_control {option} {pid} failed: {status}"));
            }
        }
        Ok(())
    }
}
