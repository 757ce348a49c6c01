//! `instructions`: what Keyhole costs the shop per request, counted in instructions. The same five
//! configurations as `overhead` (a: probes compiled out, b: no breakpoints, c: armed for a session no
//! request carries, d: a session on a share of the requests, e: as d with the control plane killed),
//! each with both services under valgrind's callgrind: after a warm-up, a fixed number of requests, and
//! the instructions both services executed for them. Counts do not move with the machine's load, so
//! ratios of a fraction of a percent mean something here where throughput on a shared machine cannot.
//!
//! ```text
//! cargo run --release -p keyhole-tests --bin instructions -- --requests 2000
//! ```
//!
//! Under callgrind the services run some fifty times slower, while the breakpoints' rate (1 snapshot
//! a second) is wall-clock: a capture stands for many times fewer requests than at full speed. The
//! agent's own thread (uploads, symbolisation) is counted apart for that reason.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keyhole_tests::load::build;
use keyhole_tests::load::callgrind::{profile_name, CacheModel, Callgrind, Counts, DEFAULT_LAST_LEVEL_KIB};
use keyhole_tests::load::shop::{Configuration, Launch, RunningShop};
use keyhole_tests::load::{self, LoadPlan, Target};

/// The services' names as their profiles are named.
const SERVICES: [&str; 2] = ["shop-frontend", "shop-inventory"];
/// A run of requests under callgrind may take this long at most.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// A request not answered within this counts as an error (callgrind is slow).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser)]
#[command(
    about = "Counts the instructions the shop executes per request, in each of overhead's configurations",
    long_about = "Counts the instructions the shop executes per request, in each of overhead's \
                  configurations, with both services under valgrind's callgrind (which must be \
                  installed). Builds what it runs as overhead does, unless --no-build."
)]
struct Args {
    /// Requests counted per configuration.
    #[arg(long, default_value_t = 2000)]
    requests: u64,
    /// Requests sent first, not counted.
    #[arg(long, default_value_t = 300)]
    warmup: u64,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The share of requests carrying the session in d and e.
    #[arg(long, default_value_t = 0.1)]
    session_fraction: f64,
    /// Which configurations to run, e.g. "ad" (a is always run: ratios are to a).
    #[arg(long, default_value = "abcd")]
    configs: String,
    /// Use the release binaries already built instead of running cargo.
    #[arg(long)]
    no_build: bool,
    /// Keep the profiles in this directory (one per configuration, service and thread, named like
    /// `d-shop-frontend.callgrind.1-02`) for `callgrind_annotate`; by default they are removed.
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Minutes each cargo build may take.
    #[arg(long, default_value_t = 30)]
    build_timeout_min: u64,
    /// The breakpoints' rate in c, d and e, snapshots a second (default: the control plane's). A
    /// very low rate (0.001) leaves one snapshot per breakpoint, so that what the session's
    /// requests cost is counted without the captures, which callgrind's slowness overweights.
    #[arg(long)]
    breakpoint_rate: Option<f64>,
    /// Also simulate the caches (callgrind's `--cache-sim=yes`, about twice as slow) and report the
    /// serving threads' first-level and last-level misses per request.
    #[arg(long)]
    cache_sim: bool,
    /// The simulated last-level cache's size in KiB with --cache-sim (a power of two): smaller
    /// than a core's second level to model a cache that other work, the kernel's and other
    /// tenants', keeps taking back between one request and the next.
    #[arg(long, requires = "cache_sim", default_value_t = DEFAULT_LAST_LEVEL_KIB)]
    cache_ll_kib: u64,
}

/// What one configuration executed for the counted requests.
struct Figures {
    configuration: Configuration,
    requests: u64,
    counts: Counts,
    /// Snapshots the control plane stored, or `None` when there is none to ask (e).
    snapshots: Option<usize>,
}

impl Figures {
    fn stored(&self) -> String {
        self.snapshots
            .map_or_else(|| "(control plane killed)".to_owned(), |n| n.to_string())
    }

    fn serving_per_request(&self) -> f64 {
        self.per_request(self.counts.serving)
    }

    fn per_request(&self, count: u64) -> f64 {
        count as f64 / self.requests.max(1) as f64
    }
}

fn main() -> ExitCode {
    load::exit_code(run(&Args::parse()))
}

fn run(args: &Args) -> Result<(), String> {
    if !(0.0..=1.0).contains(&args.session_fraction) {
        return Err("--session-fraction must be between 0 and 1".into());
    }
    let configurations = Configuration::chosen(&args.configs)?;
    let binaries = build::ready(args.no_build, Duration::from_secs(args.build_timeout_min * 60))?;
    let cache_model = args
        .cache_sim
        .then(|| CacheModel::with_last_level_kib(args.cache_ll_kib))
        .transpose()?;
    let callgrind = Callgrind::new(args.profiles.as_deref(), cache_model)?;

    let mut figures = Vec::new();
    for &configuration in &configurations {
        let shop = RunningShop::start(
            configuration,
            &binaries,
            &Launch {
                callgrind: Some(&callgrind),
                breakpoint_rate: args.breakpoint_rate,
                preload: None,
            },
        )?;
        let session = shop.session_share(args.session_fraction);
        let target = Target::parse(shop.frontend_url())?;
        let plan = |requests| LoadPlan {
            target: target.clone(),
            concurrency: args.concurrency,
            requests,
            duration: RUN_LIMIT,
            session: session.clone(),
            request_timeout: REQUEST_TIMEOUT,
            client_threads: 1,
        };
        let never = Arc::new(AtomicBool::new(false));
        load::run(&plan(args.warmup), never.clone())?;
        let pids = shop.service_pids();
        callgrind.zero(&pids)?;
        let report = load::run(&plan(args.requests), never)?;
        callgrind.dump(&pids)?;
        let mut counts = Counts::default();
        for service in SERVICES {
            let of = callgrind.counts(&profile_name(configuration.letter(), service))?;
            counts.serving += of.serving;
            counts.agent += of.agent;
            counts.serving_l1_misses += of.serving_l1_misses;
            counts.serving_ll_misses += of.serving_ll_misses;
        }
        let run = Figures {
            configuration,
            requests: report.answered(),
            counts,
            snapshots: match configuration {
                Configuration::Disconnected => None,
                _ => Some(shop.captures().map_or(0, |c| c.stored)),
            },
        };
        println!(
            "{}  {:>9.0} instructions/request serving  agent thread {:>12}  snapshots {}  errors {}",
            configuration.letter(),
            run.serving_per_request(),
            run.counts.agent,
            run.stored(),
            report.errors,
        );
        figures.push(run);
    }
    summarise(&figures, args);
    Ok(())
}

fn summarise(figures: &[Figures], args: &Args) {
    let Some(a) = figures
        .iter()
        .find(|f| f.configuration == Configuration::CompiledOut)
    else {
        return;
    };
    println!();
    println!(
        "{} requests per configuration after {} unmeasured, {} connections; d and e: {:.0}% of requests \
         carry the session",
        args.requests,
        args.warmup,
        args.concurrency,
        args.session_fraction * 100.0
    );
    println!();
    println!("| config | what | instructions per request (both services, serving threads) | vs a | agent thread, all requests | snapshots stored |");
    println!("|---|---|---:|---:|---:|---:|");
    for f in figures {
        println!(
            "| {} | {} | {:.0} | {:.4} | {} | {} |",
            f.configuration.letter(),
            f.configuration.describe(),
            f.serving_per_request(),
            f.serving_per_request() / a.serving_per_request(),
            f.counts.agent,
            f.stored(),
        );
    }
    if !args.cache_sim {
        return;
    }
    println!();
    println!(
        "Cache simulation (callgrind's model: 32 KiB first-level caches, a {} KiB last level), serving threads, per request:",
        args.cache_ll_kib
    );
    println!();
    println!("| config | first-level misses | vs a | last-level misses | vs a |");
    println!("|---|---:|---:|---:|---:|");
    for f in figures {
        let (l1, ll) = (
            f.per_request(f.counts.serving_l1_misses),
            f.per_request(f.counts.serving_ll_misses),
        );
        println!(
            "| {} | {l1:.0} | {:.4} | {ll:.1} | {:.4} |",
            f.configuration.letter(),
            l1 / a.per_request(a.counts.serving_l1_misses),
            ll / a.per_request(a.counts.serving_ll_misses),
        );
    }
}
