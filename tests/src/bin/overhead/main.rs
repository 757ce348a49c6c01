//! `overhead`: what Keyhole costs a real service, measured side by side. Builds
//! the shop twice in release mode (probes compiled in, probes compiled out),
//! then runs the same load against five configurations of it, interleaved
//! round by round so that a busy neighbour hurts them all alike (each round
//! starting one configuration further along, so none always runs first), and prints
//! each configuration's median figures and its ratios to the compiled-out
//! build. It reports the issue's targets as met or missed; it asserts nothing.
//!
//! ```text
//! cargo run --release -p keyhole-tests --bin overhead -- --rounds 3 --seconds 20 --concurrency 16
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keyhole_tests::load;
use keyhole_tests::load::build::{self, Binaries};
use keyhole_tests::load::rss::RssSeries;
use keyhole_tests::load::shop::Configuration;

mod figures;
mod started;
mod summary;

use figures::{describe_captures, print_run, RunFigures};
use started::{Load, Started, Warm};
use summary::summarise;

const MIB: f64 = 1024.0 * 1024.0;
/// How often the frontend's resident memory is sampled during a run.
const RSS_EVERY: Duration = Duration::from_millis(250);
/// A request not answered within this counts as an error and its connection is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent may add to the frontend's resident memory in e beyond its queue bound.
const RSS_SLACK_MIB: f64 = 10.0;

#[derive(Parser)]
#[command(
    about = "Measures Keyhole's overhead on the shop: five configurations, interleaved, side by side",
    long_about = "Measures Keyhole's overhead on the shop. Builds the shop in release mode with its \
                  probes compiled in and compiled out (feature probes-compiled-out, in \
                  TARGET/overhead-compiled-out), then for each round runs, one after the other \
                  (each round starting one further along the list):\n\
                  \n  a  probes compiled out\
                  \n  b  probes in, agent connected, no breakpoints\
                  \n  c  breakpoints on every probe for a session no request carries\
                  \n  d  the same, for a session that --session-fraction of the requests carry \
                  (default budgets: 1 snapshot/s per breakpoint)\
                  \n  e  as d, with the control plane killed once the breakpoints are installed\
                  \n  A  a again, in processes of its own: its ratio to a is the noise floor, what \
                  the measurement reads where nothing differs (only when --configs names it)\n\n\
                  Each run starts a fresh control plane and fresh services, warms up, then loads the \
                  frontend. Prints the median over rounds of throughput and latency, the ratios to a, \
                  the targets met or missed, and the frontend's resident memory growth in e."
)]
struct Args {
    /// Rounds of a..e.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of measured load per run.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seconds of measured load per run of e (default: --seconds); longer for the memory figure.
    #[arg(long)]
    e_seconds: Option<f64>,
    /// Seconds of unmeasured load before each run.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// A run also ends after this many requests.
    #[arg(long, default_value_t = 10_000_000)]
    requests: u64,
    /// The share of requests carrying the session in d and e.
    #[arg(long, default_value_t = 0.1)]
    session_fraction: f64,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Which configurations to run, e.g. "ad" (a is always run: ratios are to a); "A" adds a
    /// second run of a, the noise floor.
    #[arg(long, default_value = "abcde")]
    configs: String,
    /// The frontend agent's snapshot queue bound in MiB (the agent's default, which the shop keeps).
    #[arg(long, default_value_t = 16.0)]
    queue_bound_mib: f64,
    /// Run each configuration at the same time as a run of a, pair by pair, instead of one after
    /// the other: both then see the same machine at the same moment, and each ratio is of the pair.
    #[arg(long)]
    side_by_side: bool,
    /// With --side-by-side and --bursts: run each of a pair (its services, control plane and
    /// client) on a CPU of its own, the two swapping CPUs from one burst to the next, so that
    /// neither has the faster CPU for longer than a burst. Needs two CPUs and util-linux's taskset.
    #[arg(long, requires = "side_by_side", requires = "bursts")]
    pin: bool,
    /// Start each configuration's services once per round and load them in turn this many times
    /// (each burst --seconds long, the order rotating), instead of fresh services for every run:
    /// more alternations per minute, and each cycle's ratios taken between bursts a few seconds
    /// apart. Each cycle counts as a round in the round-by-round figures.
    #[arg(long)]
    bursts: Option<usize>,
    /// Every configuration's load carries a session in the same share as d's: in a, b and c one
    /// that no breakpoint is set for. The requests are then the same everywhere, and d differs
    /// from c only in whose session they carry; without it, a, b and c serve no session at all.
    #[arg(long)]
    session_everywhere: bool,
    /// The session's requests (and any other configuration's, with --session-everywhere) are sent
    /// during the warm-up only: the processes then hold what the captures and the session left in
    /// them (the symbolizer's tables, the verified token, the queue's buffers), and the measured
    /// load carries no session. What d then costs is what its captures left behind, not what its
    /// requests do.
    #[arg(long)]
    session_in_warmup_only: bool,
    /// The breakpoints' rate in c, d and e, snapshots a second (default: the control plane's, 1).
    /// A very low rate (0.001: one snapshot per breakpoint) keeps the session's probe hits and
    /// leaves out the captures and their uploads.
    #[arg(long)]
    breakpoint_rate: Option<f64>,
    /// Run both services with this shared library loaded first (`LD_PRELOAD`), such as Debian's
    /// libjemalloc2 (/usr/lib/x86_64-linux-gnu/libjemalloc.so.2): the comparison in a host whose
    /// allocator differs. The client and the control plane keep the system's.
    #[arg(long, value_name = "LIB")]
    preload: Option<PathBuf>,
    /// Sample both services with `perf record` on the CPU clock during every measured run, into
    /// DIR/LETTER-ROUND.perf.data with the requests answered in DIR/LETTER-ROUND.requests, for
    /// `tests/tools/perf-costs.py`: each function's CPU time per request, stalls included.
    #[arg(long, value_name = "DIR")]
    perf: Option<PathBuf>,
    /// Use the release binaries already built instead of running cargo.
    #[arg(long)]
    no_build: bool,
    /// Minutes each cargo build may take.
    #[arg(long, default_value_t = 30)]
    build_timeout_min: u64,
}

fn main() -> ExitCode {
    load::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), String> {
    let configurations = Configuration::chosen(&args.configs)?;
    let seconds = duration(args.seconds, "--seconds")?;
    let e_seconds = duration(args.e_seconds.unwrap_or(args.seconds), "--e-seconds")?;
    let warmup = duration(args.warmup, "--warmup")?;
    if args.bursts == Some(0) {
        return Err("--bursts must be at least 1".into());
    }
    if args.pin && std::thread::available_parallelism().map_or(0, |n| n.get()) < 2 {
        return Err("--pin puts the two of a pair on CPUs 0 and 1: this machine has fewer".into());
    }
    if !(0.0..=1.0).contains(&args.session_fraction) {
        return Err("--session-fraction must be between 0 and 1".into());
    }
    if let Some(library) = args.preload.as_ref().filter(|library| !library.is_file()) {
        return Err(format!(
            "--preload {}: no such file (Debian's libjemalloc2 installs /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)",
            library.display()
        ));
    }
    let binaries = build::ready(args.no_build, Duration::from_secs(args.build_timeout_min * 60))?;
    let stop = stop_on_signal();

    println!("# overhead of Keyhole on the shop (shop-frontend -> shop-inventory)");
    println!();
    println!("{}", machine());
    println!("load average before: {}", load_average());
    if let Some(library) = &args.preload {
        println!("both services run with {} preloaded", library.display());
    }
    println!(
        "{} round(s) of {}; {:.0} s measured per run (e: {:.0} s) after {:.0} s warm-up; \
         {} connections; {}: {:.0}% of requests carry a session{}",
        args.rounds,
        configurations
            .iter()
            .map(|c| c.letter().to_string())
            .collect::<Vec<_>>()
            .join(" "),
        seconds.as_secs_f64(),
        e_seconds.as_secs_f64(),
        warmup.as_secs_f64(),
        args.concurrency,
        if args.session_everywhere {
            "every configuration (a, b, c and A: one no breakpoint is set for)"
        } else {
            "d and e"
        },
        args.session_fraction * 100.0,
        if args.session_in_warmup_only {
            " during the warm-up, none measured"
        } else {
            ""
        }
    );
    println!();

    let mut runs = Vec::new();
    if let Some(bursts) = args.bursts {
        // Side by side, a runs beside each of the others in turn; else all run one after another.
        let groups: Vec<Vec<Configuration>> = if args.side_by_side {
            configurations
                .iter()
                .filter(|&&c| c != Configuration::CompiledOut)
                .map(|&c| vec![Configuration::CompiledOut, c])
                .collect()
        } else {
            vec![configurations.clone()]
        };
        let load = Load {
            length: seconds,
            e_length: e_seconds,
            warmup,
            stop: stop.clone(),
        };
        let all_rounds = args.rounds * bursts * groups.len();
        let mut next_round = 1;
        'bursts: for _ in 0..args.rounds {
            for group in &groups {
                if stop.load(Ordering::Relaxed) {
                    println!("interrupted: the figures below are of the runs completed");
                    break 'bursts;
                }
                let cycles = Cycles {
                    first_round: next_round,
                    bursts,
                    all_rounds,
                };
                runs.extend(measure_in_bursts(&cycles, group, args, &binaries, &load)?);
                next_round += bursts;
            }
        }
    }
    // Side by side, each pair is a round of its own, so that ratios are taken within the pair.
    let mut pair = 0;
    let separate_rounds = if args.bursts.is_some() { 0 } else { args.rounds };
    'rounds: for round in 1..=separate_rounds {
        for configuration in in_turn(&configurations, round) {
            if stop.load(Ordering::Relaxed) {
                println!("interrupted: the figures below are of the runs completed");
                break 'rounds;
            }
            let together = match (args.side_by_side, configuration) {
                (false, _) => vec![configuration],
                // a is the other half of every pair.
                (true, Configuration::CompiledOut) => continue,
                (true, _) => {
                    pair += 1;
                    // Which of the two starts first, and whose client starts first, alternates.
                    if pair % 2 == 1 {
                        vec![Configuration::CompiledOut, configuration]
                    } else {
                        vec![configuration, Configuration::CompiledOut]
                    }
                }
            };
            let at = if args.side_by_side { pair } else { round };
            let load = Load {
                length: seconds,
                e_length: e_seconds,
                warmup,
                stop: stop.clone(),
            };
            for figures in measure(at, &together, args, &binaries, &load)? {
                print_run(round, args.rounds, &figures);
                runs.push(figures);
            }
        }
    }
    println!();
    println!("load average after: {}", load_average());
    println!();
    summarise(&runs, &configurations, args);
    Ok(())
}

/// Starts each of `configurations` (one, or a pair side by side), warms them up, loads them all at
/// once, and stops them.
fn measure(
    round: usize,
    configurations: &[Configuration],
    args: &Args,
    binaries: &Binaries,
    load: &Load,
) -> Result<Vec<RunFigures>, String> {
    // A pair side by side is loaded for the same time: the longer of the two configurations'.
    let length = configurations
        .iter()
        .map(|&configuration| load.length_of(configuration))
        .max()
        .unwrap_or(load.length);
    let mut started = Started::start(configurations, args, binaries, &|_| length)?;
    started.warm_up(load, Warm::Together, args.session_in_warmup_only)?;
    let loaded = started.load(
        round,
        &(0..started.shops.len()).collect::<Vec<_>>(),
        &[],
        &load.stop,
    )?;
    let rss = started.finish_sampling();
    Ok(loaded
        .into_iter()
        .zip(rss)
        .map(|((index, report, spent), rss)| started.figures(round, index, report, spent, rss, true))
        .collect())
}

/// Which rounds a series of bursts is, of how many in all.
struct Cycles {
    first_round: usize,
    bursts: usize,
    all_rounds: usize,
}

/// Starts every one of `configurations` once and then, `bursts` times over, loads each alone for
/// `load.length`, in an order that rotates from cycle to cycle; side by side, loads them all at
/// once every cycle, and with `--pin` each on a CPU of its own, the CPUs changing hands from one
/// cycle to the next. Each cycle is a round of its own for the ratios: the runs it pairs are at
/// most a few bursts apart, and no process start lies between them. Resident memory is sampled
/// from the services' start to the last burst.
fn measure_in_bursts(
    cycles: &Cycles,
    configurations: &[Configuration],
    args: &Args,
    binaries: &Binaries,
    load: &Load,
) -> Result<Vec<RunFigures>, String> {
    let mut started = Started::start(configurations, args, binaries, &|c| load.length_of(c))?;
    started.warm_up(load, Warm::InTurn, args.session_in_warmup_only)?;
    let indices: Vec<usize> = (0..configurations.len()).collect();
    let mut loaded = Vec::new();
    for round in cycles.first_round..cycles.first_round + cycles.bursts {
        if load.stop.load(Ordering::Relaxed) {
            break;
        }
        let groups: Vec<Vec<usize>> = if args.side_by_side {
            vec![in_turn(&indices, round)]
        } else {
            in_turn(&indices, round).into_iter().map(|i| vec![i]).collect()
        };
        for group in groups {
            // The k-th of the group runs on CPU k: the rotation hands each CPU to each in turn.
            let cpus: Vec<Option<usize>> = (0..group.len()).map(|k| args.pin.then_some(k)).collect();
            for (&index, cpu) in group.iter().zip(&cpus) {
                if let (Some(cpu), Some(shop)) = (cpu, started.shops.get(index)) {
                    shop.pin(*cpu)?;
                }
            }
            for (index, report, spent) in started.load(round, &group, &cpus, &load.stop)? {
                let figures = started.figures(round, index, report, spent, RssSeries::default(), false);
                print_run(round, cycles.all_rounds, &figures);
                loaded.push((round, index, figures.report, spent));
            }
        }
    }
    let rss = started.finish_sampling();
    for (index, shop) in started.shops.iter().enumerate() {
        if let Some(captures) = shop.captures() {
            println!(
                "  {} over its {} bursts: {}",
                configurations[index].letter(),
                cycles.bursts,
                describe_captures(&captures)
            );
        }
    }
    Ok(loaded
        .into_iter()
        .map(|(round, index, report, spent)| {
            started.figures(
                round,
                index,
                report,
                spent,
                rss.get(index).copied().unwrap_or_default(),
                false,
            )
        })
        .collect())
}

/// The configurations in the order round `round` (from 1) runs them: each round starts one further
/// along (a b c d, b c d a, ...), so that over the rounds every configuration runs in every place and
/// whatever a place brings (the machine warming up, the teardown of the run before) falls on all alike.
fn in_turn<T: Copy>(items: &[T], round: usize) -> Vec<T> {
    let mut order = items.to_vec();
    if !order.is_empty() {
        let start = (round - 1) % order.len();
        order.rotate_left(start);
    }
    order
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn duration(seconds: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{flag} must be a number of seconds, got {seconds}"))
}

/// A flag that SIGINT or SIGTERM sets, so that a run ends early and every
/// process and directory is still cleaned up by its guard.
fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async {
            let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("overhead: stopping after the current run's processes are cleaned up");
            flag.store(true, Ordering::Relaxed);
        });
    });
    stop
}

/// CPUs, CPU model and memory of this machine.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split(':').nth(1))
        })
        .map_or("unknown CPU", str::trim);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    format!(
        "machine: {cpus} CPUs ({model}), {:.1} GiB memory; a shared machine: other builds may run alongside",
        memory_kib / 1024.0 / 1024.0
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_starts_one_further_along() {
        let order = |round| in_turn(&['a', 'b', 'c'], round).into_iter().collect::<String>();
        assert_eq!(
            [order(1), order(2), order(3), order(4)],
            ["abc", "bca", "cab", "abc"].map(String::from)
        );
    }
}
