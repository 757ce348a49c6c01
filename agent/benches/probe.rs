//! The costs that matter to a host service, each beside its baseline in the
//! same run:
//! - a disabled `probe!` beside a disabled `tracing::event!`;
//! - an armed probe hit by a request without the breakpoint's session;
//! - a hit by the breakpoint's session that its rate refuses (most of a
//!   session's hits at the default rate of one snapshot a second);
//! - a whole matching hit: session check, budgets, capture, stack, enqueue.
//!
//! Capture beside `serde_json::to_vec` is in `benches/capture.rs`.
//! Run both: `cargo bench -p keyhole`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use keyhole::TrustedSession;
use keyhole_proto::token::SessionSigner;
use keyhole_proto::v1::{Breakpoint, CaptureLimits};
use serde::Serialize;

#[derive(Serialize, Clone)]
struct Address {
    street: String,
    city: String,
    postcode: String,
}

#[derive(Serialize, Clone)]
struct Line {
    sku: String,
    quantity: u32,
    unit_cents: u64,
}

/// Ten fields, nested two levels, the size of a typical request's state.
#[derive(Serialize, Clone)]
struct Order {
    id: u64,
    customer: String,
    email_verified: bool,
    tier: String,
    total_cents: u64,
    discount: f64,
    coupon: Option<String>,
    shipping: Address,
    lines: Vec<Line>,
    tags: Vec<String>,
}

fn order() -> Order {
    Order {
        id: 981_234,
        customer: "alice@example.com".into(),
        email_verified: true,
        tier: "gold".into(),
        total_cents: 12_999,
        discount: 0.15,
        coupon: Some("WINTER25".into()),
        shipping: Address {
            street: "1 Long Lane".into(),
            city: "Springfield".into(),
            postcode: "SP1 2AB".into(),
        },
        lines: (0..3)
            .map(|i| Line {
                sku: format!("SKU-{i:04}"),
                quantity: i + 1,
                unit_cents: 1999,
            })
            .collect(),
        tags: vec!["returning".into(), "mobile".into()],
    }
}

#[inline(never)]
fn disabled_probe(order: &Order) {
    keyhole::probe!("bench.disabled", order);
}

#[inline(never)]
fn disabled_event(order: &Order) {
    tracing::event!(tracing::Level::INFO, id = order.id, "order");
}

#[inline(never)]
fn armed_probe(order: &Order) {
    keyhole::probe!("bench.armed", order);
}

#[inline(never)]
fn rate_limited_probe(order: &Order) {
    keyhole::probe!("bench.rate_limited", order);
}

fn disabled(c: &mut Criterion) {
    let order = order();
    let mut group = c.benchmark_group("disabled");
    group.bench_function("tracing_event_baseline", |b| {
        b.iter(|| disabled_event(black_box(&order)))
    });
    group.bench_function("probe", |b| b.iter(|| disabled_probe(black_box(&order))));
    group.finish();
}

fn armed(c: &mut Criterion) {
    let signer = SessionSigner::new("bench-key", &[7; 32]).expect("key");
    let mut agent = keyhole::Agent::builder()
        .service("bench")
        .token("unused")
        .queue_capacity(10_000)
        .global_rate(1e9)
        .init_offline()
        .expect("offline agent");
    agent.set_keys(&[signer.verification_key()]);
    let far = 4_000_000_000;
    let breakpoint = |id: &str, probe: &str, rate_per_sec: f64| Breakpoint {
        id: id.into(),
        service: "bench".into(),
        probe_label: probe.into(),
        session_id: "ses-bench".into(),
        limits: Some(CaptureLimits::default()),
        max_hits: u32::MAX,
        rate_per_sec,
        expires_at_unix_ms: far * 1000,
        ..Default::default()
    };
    agent.install(vec![
        breakpoint("bp-bench", "bench.armed", 1e9),
        // The default rate: all but one hit a second are refused.
        breakpoint("bp-rate-limited", "bench.rate_limited", 1.0),
    ]);
    let token = |session: &str| signer.sign(session, far as u64).expect("token");
    let matching = TrustedSession::from_token(&token("ses-bench")).expect("verifies");
    let other = TrustedSession::from_token(&token("ses-other")).expect("verifies");
    let order = order();

    let mut group = c.benchmark_group("armed");
    group.bench_function("no_session", |b| b.iter(|| armed_probe(black_box(&order))));
    {
        let _other = other.attach();
        group.bench_function("other_session", |b| b.iter(|| armed_probe(black_box(&order))));
    }
    {
        let _matching = matching.attach();
        group.bench_function("matching_rate_limited", |b| {
            b.iter(|| rate_limited_probe(black_box(&order)))
        });
        agent.discard();
    }
    {
        let _matching = matching.attach();
        group.bench_function("matching_whole_hit", |b| {
            b.iter_custom(|iterations| {
                let mut total = std::time::Duration::ZERO;
                for _ in 0..iterations {
                    let started = std::time::Instant::now();
                    armed_probe(black_box(&order));
                    total += started.elapsed();
                    agent.discard();
                }
                total
            })
        });
    }
    group.finish();

    // Criterion reports typical times; the target is on the tail, so time
    // each of many whole hits and report the percentiles as well.
    let _matching = matching.attach();
    let mut times: Vec<u128> = (0..WHOLE_HIT_SAMPLES)
        .map(|_| {
            let started = std::time::Instant::now();
            armed_probe(black_box(&order));
            let elapsed = started.elapsed().as_nanos();
            agent.discard();
            elapsed
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    eprintln!(
        "armed/matching_whole_hit over {WHOLE_HIT_SAMPLES} hits: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

/// Whole hits timed one by one for the percentiles.
const WHOLE_HIT_SAMPLES: usize = 20_000;

criterion_group!(benches, disabled, armed);
criterion_main!(benches);
