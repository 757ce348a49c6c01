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
    /// The caches callgrind also simulates (`--cache-sim=yes`), counting misses, if any.
    cache_sim: Option<CacheModel>,
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
    /// With the cache simulation, the serving threads' misses in the first-level caches
    /// (instruction and data, reads and writes)...
    pub serving_l1_misses: u64,
    /// ... and in the last-level cache, the ones that go to memory.
    pub serving_ll_misses: u64,
}

/// The events a profile counts, in the order of its `events:` line, and their totals on its
/// `summary:` line.
fn summary(profile: &str) -> Option<Vec<(&str, u64)>> {
    let line = |prefix: &str| profile.lines().find_map(|line| line.strip_prefix(prefix));
    let events = line("events:")?.split_whitespace();
    let totals = line("summary:")?
        .split_whitespace()
        .map(|n| n.parse::<u64>().ok());
    events
        .zip(totals)
        .map(|(event, total)| Some((event, total?)))
        .collect()
}

/// The first-level caches the simulation models, as valgrind's `--I1`/`--D1` (size, ways, line):
/// one server core's 32 KiB. Given, not detected: in a VM the CPU may describe its caches wrongly
/// (one here claimed a 320 MB direct-mapped L3).
const SIMULATED_FIRST_LEVEL: [(&str, &str); 2] = [("--I1", "32768,8,64"), ("--D1", "32768,8,64")];

/// The simulated last level by default: one server core's 1 MiB second-level cache, the level a
/// path that one request in ten takes falls out of.
pub const DEFAULT_LAST_LEVEL_KIB: u64 = 1024;
/// The last level's ways and line bytes; its size is the caller's ([`CacheModel`]).
const LAST_LEVEL_WAYS: u64 = 8;
const LINE_BYTES: u64 = 64;

/// What callgrind's cache simulation models, when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheModel {
    last_level_kib: u64,
}

impl CacheModel {
    /// A last level of `kib` KiB: valgrind needs a power of two sets, so a power of two from
    /// 64 KiB (128 sets of 8 lines) up.
    pub fn with_last_level_kib(kib: u64) -> Result<CacheModel, String> {
        if kib < 64 || !kib.is_power_of_two() {
            return Err(format!(
                "a simulated last-level cache of {kib} KiB: give a power of two from 64 KiB up (256, 1024, 4096)"
            ));
        }
        Ok(CacheModel { last_level_kib: kib })
    }

    /// valgrind's options for these caches.
    fn options(self) -> impl Iterator<Item = String> {
        let last_level = format!(
            "--LL={},{LAST_LEVEL_WAYS},{LINE_BYTES}",
            self.last_level_kib * 1024
        );
        SIMULATED_FIRST_LEVEL
            .into_iter()
            .map(|(cache, geometry)| format!("{cache}={geometry}"))
            .chain(std::iter::once(last_level))
    }
}

/// The first-level and the last-level misses callgrind's cache simulation names.
const L1_MISS_EVENTS: [&str; 3] = ["I1mr", "D1mr", "D1mw"];
const LL_MISS_EVENTS: [&str; 3] = ["ILmr", "DLmr", "DLmw"];

impl Callgrind {
    /// Checks that valgrind and callgrind_control are installed. The profiles are kept in `keep`
    /// (created if need be) when given, else removed when this is dropped.
    pub fn new(keep: Option<&Path>, cache_sim: Option<CacheModel>) -> Result<Callgrind, String> {
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
        Ok(Callgrind { dir, cache_sim })
    }

    /// The command that runs `binary` under callgrind, its profiles named `name` ([`profile_name`]).
    pub fn command(&self, binary: &Path, name: &str) -> Command {
        let mut command = Command::new("valgrind");
        command
            .arg("--tool=callgrind")
            .arg("--separate-threads=yes")
            .arg(format!("--callgrind-out-file={}", self.profile(name).display()))
            .arg(format!(
                "--cache-sim={}",
                if self.cache_sim.is_some() { "yes" } else { "no" }
            ));
        if let Some(model) = self.cache_sim {
            command.args(model.options());
        }
        command.arg(binary);
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
            let totals = summary(&profile)
                .ok_or_else(|| format!("{} has no events or summary line", path.display()))?;
            let sum = |names: &[&str]| -> u64 {
                totals
                    .iter()
                    .filter(|(event, _)| names.contains(event))
                    .map(|(_, total)| total)
                    .sum()
            };
            let executed = sum(&["Ir"]);
            if profile.contains(AGENT_THREAD_FUNCTION) {
                counts.agent += executed;
            } else {
                counts.serving += executed;
                counts.serving_l1_misses += sum(&L1_MISS_EVENTS);
                counts.serving_ll_misses += sum(&LL_MISS_EVENTS);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_read_event_by_event() {
        let plain = "version: 1\nevents: Ir\nsummary: 1234\n";
        assert_eq!(summary(plain), Some(vec![("Ir", 1234)]));
        let simulated = "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nsummary: 100 40 20 3 5 2 1 2 0\n";
        let totals = summary(simulated).unwrap();
        assert_eq!(totals.len(), 9);
        assert_eq!(totals[0], ("Ir", 100));
        assert_eq!(totals[4], ("D1mr", 5));
        assert_eq!(summary("events: Ir\n"), None, "no summary");
        assert_eq!(summary("events: Ir\nsummary: x\n"), None, "not a number");
    }

    #[test]
    fn the_last_level_is_sized_as_asked_and_sizes_valgrind_refuses_are_refused_first() {
        let options: Vec<String> = CacheModel::with_last_level_kib(256).unwrap().options().collect();
        assert_eq!(
            options,
            ["--I1=32768,8,64", "--D1=32768,8,64", "--LL=262144,8,64"]
        );
        let default = CacheModel::with_last_level_kib(DEFAULT_LAST_LEVEL_KIB).unwrap();
        assert_eq!(default.options().last().unwrap(), "--LL=1048576,8,64");
        for refused in [0, 32, 96, 1000] {
            let error = CacheModel::with_last_level_kib(refused).unwrap_err();
            assert!(error.contains("power of two"), "{error}");
        }
    }
}
