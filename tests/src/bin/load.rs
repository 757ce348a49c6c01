//! `load`: drives a service on this machine (the shop's frontend by default
//! path) at a fixed concurrency, for a number of requests or a time, whichever
//! ends first, and reports throughput, latency percentiles and errors.
//!
//! ```text
//! load --url http://127.0.0.1:8080 --concurrency 16 --requests 200000 --seconds 30 \
//!      --session-token "$TOKEN" --session-fraction 0.1
//! ```

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use keyhole_tests::load::{self, LatencySummary, LoadPlan, LoadReport, SessionShare, Target};

#[derive(Parser)]
#[command(
    about = "Closed-loop HTTP load on a loopback service: throughput, p50/p99/p99.9 latency, errors",
    long_about = "Closed-loop HTTP load on a loopback service. Each of --concurrency keep-alive \
                  connections sends its next GET when the last one answered, until --requests have \
                  been sent or --seconds have passed, whichever comes first. Latency percentiles are \
                  taken from every successful request's own timing.\n\n\
                  A URL without a path asks for one checkout of the shop's frontend. \
                  With --session-token, that share of the requests (--session-fraction, spread evenly) \
                  carries `baggage: keyhole.session=TOKEN`."
)]
struct Args {
    /// The service: http://HOST:PORT[/PATH?QUERY], on a loopback address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Stop after this many requests...
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// ...or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds of load sent first and not measured (connections opened, caches warm).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// A debug session's token, carried by --session-fraction of the requests.
    #[arg(long)]
    session_token: Option<String>,
    /// The share of requests (0 to 1) that carry --session-token.
    #[arg(long, default_value_t = 0.1, requires = "session_token")]
    session_fraction: f64,
    /// A request not answered within this many milliseconds counts as an error.
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Threads of the load generator itself.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn seconds(value: f64, flag: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{flag} must be a number of seconds, got {value}"))
}

fn plan(args: &Args) -> Result<LoadPlan, String> {
    if !(0.0..=1.0).contains(&args.session_fraction) {
        return Err(format!(
            "--session-fraction must be between 0 and 1, got {}",
            args.session_fraction
        ));
    }
    Ok(LoadPlan {
        target: Target::parse(&args.url)?,
        concurrency: args.concurrency,
        requests: args.requests,
        duration: seconds(args.seconds, "--seconds")?,
        session: args.session_token.as_ref().map(|token| SessionShare {
            token: token.clone(),
            fraction: args.session_fraction,
        }),
        request_timeout: Duration::from_millis(args.timeout_ms),
        client_threads: args.client_threads,
    })
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn print_text(plan: &LoadPlan, report: &LoadReport) {
    let LatencySummary {
        p50,
        p99,
        p999,
        max,
        mean,
        ..
    } = report.latency;
    println!(
        "load: {} connections to {}, {} requests or {:.1} s",
        plan.concurrency,
        plan.target,
        plan.requests,
        plan.duration.as_secs_f64()
    );
    println!(
        "requests   {} ok in {:.2} s: {:.0} req/s; {} carried the session",
        report.ok,
        report.elapsed.as_secs_f64(),
        report.throughput(),
        report.with_session
    );
    println!(
        "latency    p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms  mean {:.3} ms",
        millis(p50),
        millis(p99),
        millis(p999),
        millis(max),
        millis(mean)
    );
    if let Some((with, without)) = &report.by_session {
        for (label, summary) in [("session  ", with), ("no session", without)] {
            println!(
                "{label} {} ok: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
                summary.count,
                millis(summary.p50),
                millis(summary.p99),
                millis(summary.p999),
                millis(summary.max)
            );
        }
    }
    println!("errors     {}", report.errors);
}

fn latency_json(latency: &LatencySummary) -> serde_json::Value {
    serde_json::json!({
        "p50": millis(latency.p50),
        "p99": millis(latency.p99),
        "p999": millis(latency.p999),
        "max": millis(latency.max),
        "mean": millis(latency.mean),
    })
}

fn print_json(report: &LoadReport) {
    let latency = report.latency;
    let errors = &report.errors;
    let json = serde_json::json!({
        "ok": report.ok,
        "elapsed_s": report.elapsed.as_secs_f64(),
        "throughput_rps": report.throughput(),
        "with_session": report.with_session,
        "latency_ms": latency_json(&latency),
        "latency_ms_with_session": report.by_session.as_ref().map(|(with, _)| latency_json(with)),
        "latency_ms_without_session": report.by_session.as_ref().map(|(_, without)| latency_json(without)),
        "errors": {
            "total": errors.total(),
            "connect": errors.connect,
            "io": errors.io,
            "timeout": errors.timeout,
            "status": errors.status,
        },
    });
    println!("{json:#}");
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let measured = seconds(args.warmup, "--warmup").and_then(|warmup| {
        if !warmup.is_zero() {
            load::run(&plan.lasting(warmup), stop.clone())?;
        }
        load::run(&plan, stop)
    });
    match measured {
        Ok(report) => {
            if args.json {
                print_json(&report);
            } else {
                print_text(&plan, &report);
            }
            if report.ok == 0 {
                eprintln!(
                    "error: no request succeeded ({}); is the service listening at {}?",
                    report.errors, plan.target
                );
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
