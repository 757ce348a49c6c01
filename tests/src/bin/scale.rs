//! `scale`: the control plane at scale, on this machine (loopback only).
//!
//! ```text
//! scale fanout [--storage sqlite|postgres] [--agents 1000] [--agents-per-channel 100] [--rounds 5]
//! scale ingest [--storage sqlite|postgres] [--uploaders 8] [--batch 100] [--seconds 30]
//! ```
//!
//! `fanout` connects simulated agents (each registered, each with its own
//! breakpoint stream) to a fresh control plane and times, for each
//! breakpoint set through the CLI, how long every agent took to receive it.
//! `ingest` has concurrent agents upload snapshot batches back to back and
//! reports the sustained rate and the batch latency. Both start their own
//! `keyhole server` (the release binary beside this one, or `KEYHOLE_BIN`);
//! PostgreSQL runs use a fresh database on `KEYHOLE_TEST_DATABASE_URL`.

use std::process::ExitCode;
use std::time::Duration;

use keyhole_tests::scale::{self, FanoutPlan, IngestPlan, Storage};

/// The issue's targets.
const FANOUT_P99_TARGET: Duration = Duration::from_secs(1);
const INGEST_RATE_TARGET: f64 = 20_000.0;

const USAGE: &str = "usage:
  scale fanout [--storage sqlite|postgres] [--agents N] [--agents-per-channel N] [--rounds N]
  scale ingest [--storage sqlite|postgres] [--uploaders N] [--batch N] [--seconds N]";

/// Most agents, uploaders, rounds and seconds a run may ask for: every run stays bounded.
const MAX_AGENTS: usize = 10_000;
const MAX_UPLOADERS: usize = 256;
const MAX_ROUNDS: usize = 100;
const MAX_SECONDS: u64 = 600;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The `--name value` options after the subcommand.
struct Options<'a>(&'a [String]);

impl Options<'_> {
    fn number<T>(&self, name: &str, default: T, max: T) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let Some(value) = self.value(name)? else {
            return Ok(default);
        };
        match value.parse::<T>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("--{name} takes a number up to {max}, not {value:?}")),
        }
    }

    fn value(&self, name: &str) -> Result<Option<&str>, String> {
        let flag = format!("--{name}");
        match self.0.iter().position(|arg| *arg == flag) {
            None => Ok(None),
            Some(at) => match self.0.get(at + 1) {
                Some(value) => Ok(Some(value)),
                None => Err(format!("{flag} needs a value")),
            },
        }
    }

    fn storage(&self) -> Result<Storage, String> {
        match self.value("storage")? {
            None | Some("sqlite") => Ok(Storage::Sqlite),
            Some("postgres") => Ok(Storage::Postgres),
            Some(other) => Err(format!("--storage is sqlite or postgres, not {other:?}")),
        }
    }

    fn check(&self, known: &[&str]) -> Result<(), String> {
        for pair in self.0.chunks(2) {
            let name = pair[0].strip_prefix("--").unwrap_or(&pair[0]);
            if !known.contains(&name) {
                return Err(format!("unknown option {:?}", pair[0]));
            }
        }
        Ok(())
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("which run: fanout or ingest?".into());
    };
    let options = Options(rest);
    use_release_keyhole();
    println!("{}", machine());
    println!("load average before: {}", load_average());
    match command.as_str() {
        "fanout" => {
            options.check(&["storage", "agents", "agents-per-channel", "rounds"])?;
            let plan = FanoutPlan {
                storage: options.storage()?,
                agents: options.number("agents", 1000, MAX_AGENTS)?.max(1),
                agents_per_channel: options.number("agents-per-channel", 100, MAX_AGENTS)?.max(1),
                rounds: options.number("rounds", 5, MAX_ROUNDS)?.max(1),
            };
            fanout(plan)?;
        }
        "ingest" => {
            options.check(&["storage", "uploaders", "batch", "seconds"])?;
            let plan = IngestPlan {
                storage: options.storage()?,
                uploaders: options.number("uploaders", 8, MAX_UPLOADERS)?.max(1),
                batch: options.number("batch", 100, 1000)?.max(1),
                duration: Duration::from_secs(options.number("seconds", 30, MAX_SECONDS)?.max(1)),
            };
            ingest(plan)?;
        }
        other => return Err(format!("unknown run {other:?}")),
    }
    println!("load average after: {}", load_average());
    Ok(())
}

fn fanout(plan: FanoutPlan) -> Result<(), String> {
    println!(
        "# fan-out: {} agents ({} per HTTP/2 connection, each with its own stream) on {}; {} breakpoints set through the CLI",
        plan.agents,
        plan.agents_per_channel,
        plan.storage.name(),
        plan.rounds
    );
    let report = scale::fanout(plan)?;
    println!(
        "fleet registered and streaming after {:.1} s",
        report.fleet_startup.as_secs_f64()
    );
    for (n, round) in report.rounds.iter().enumerate() {
        println!(
            "round {}: `break set` returned after {:.1} ms; receipt {}{}",
            n + 1,
            round.cli.as_secs_f64() * 1000.0,
            round.receipt,
            if round.missing > 0 {
                format!("; {} agents did not receive it", round.missing)
            } else {
                String::new()
            }
        );
    }
    let missing: usize = report.rounds.iter().map(|r| r.missing).sum();
    let met = report.all.p99 < FANOUT_P99_TARGET && missing == 0;
    println!(
        "all rounds: receipt {}; target p99 < {:?} and every agent: {}",
        report.all,
        FANOUT_P99_TARGET,
        if met { "met" } else { "MISSED" }
    );
    Ok(())
}

fn ingest(plan: IngestPlan) -> Result<(), String> {
    println!(
        "# ingest: {} uploaders, batches of {}, {} s, into {}",
        plan.uploaders,
        plan.batch,
        plan.duration.as_secs(),
        plan.storage.name()
    );
    let report = scale::ingest(plan)?;
    let mut per_second = report.per_second.clone();
    per_second.sort_unstable();
    let slowest_second = per_second.first().copied().unwrap_or(0);
    let median_second = per_second.get(per_second.len() / 2).copied().unwrap_or(0);
    println!(
        "stored {} snapshots (about {} bytes each) in {:.1} s: {:.0} snapshots/s sustained; \
         per second: median {median_second}, slowest {slowest_second}; {} duplicates, {} failed batches",
        report.stored,
        report.snapshot_bytes,
        report.elapsed.as_secs_f64(),
        report.rate(),
        report.duplicates,
        report.failed_batches
    );
    println!("batch latency: {}", report.batch_latency);
    let seconds = |cpu: Option<Duration>| cpu.map_or("?".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    println!(
        "CPU used during the run: server {}, uploaders {} (of {:.1} s x {} cores)",
        seconds(report.server_cpu),
        seconds(report.uploaders_cpu),
        report.elapsed.as_secs_f64(),
        cores()
    );
    if let Some((busy, iowait)) = report.machine_busy {
        println!(
            "the whole machine meanwhile: {:.0}% busy, {:.0}% waiting for I/O",
            busy * 100.0,
            iowait * 100.0
        );
    }
    println!(
        "target {INGEST_RATE_TARGET:.0} snapshots/s sustained: {}",
        if report.rate() >= INGEST_RATE_TARGET {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}

/// Runs the `keyhole` built beside this binary unless `KEYHOLE_BIN` names another.
fn use_release_keyhole() {
    if std::env::var_os("KEYHOLE_BIN").is_some() {
        return;
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("keyhole")))
        .filter(|path| path.exists());
    if let Some(path) = beside {
        // No other thread runs yet.
        std::env::set_var("KEYHOLE_BIN", path);
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let kib: u64 = info
                .lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some(format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0)))
        })
        .unwrap_or_else(|| "? GiB".into());
    format!("machine: {} cores, {cpu}, {memory} memory", cores())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|avg| avg.trim().to_owned())
        .unwrap_or_default()
}
