//! Capture cost against its baseline: a probe's capture of a 10-field nested struct must stay within 2x of
//! `serde_json::to_vec` of the same value, measured in the same run.
//!
//! `full` captures everything serde_json writes (limits wide enough that nothing is cut), so both sides do
//! the same work; `default_limits` is what a breakpoint with default limits costs (depth 3 cuts the items'
//! fields). `hundred_orders` shows the per-snapshot redaction cache paying off on repeated field names.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use keyhole::capture::{CapturedVariables, Capturer};
use keyhole_proto::limits::default_capture_limits;
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::CaptureLimits;
use serde::Serialize;

#[derive(Serialize)]
enum Tier {
    Gold,
}

#[derive(Serialize)]
enum Status {
    Paid { at_ms: u64 },
}

#[derive(Serialize)]
struct Customer {
    id: u64,
    name: String,
    tier: Tier,
}

#[derive(Serialize)]
struct Item {
    sku: String,
    quantity: u32,
    price_cents: u64,
}

/// Ten fields, nested two and three levels.
#[derive(Serialize)]
struct Order {
    id: u64,
    customer: Customer,
    items: Vec<Item>,
    total_cents: i64,
    currency: String,
    coupon: Option<String>,
    status: Status,
    created_at_ms: u64,
    gift: bool,
    note: String,
}

fn order(id: u64) -> Order {
    Order {
        id,
        customer: Customer {
            id: 991,
            name: "Ann Example".into(),
            tier: Tier::Gold,
        },
        items: (0..3)
            .map(|i| Item {
                sku: format!("SKU-{i:04}"),
                quantity: i + 1,
                price_cents: 1999,
            })
            .collect(),
        total_cents: 7996,
        currency: "EUR".into(),
        coupon: Some("SPRING24".into()),
        status: Status::Paid {
            at_ms: 1_714_000_000_000,
        },
        created_at_ms: 1_713_999_999_000,
        gift: false,
        note: "leave at the door, please".into(),
    }
}

/// What a probe does with one variable: capture it under `limits` into the snapshot's encoding.
fn capture_one<T: Serialize>(
    limits: &CaptureLimits,
    redaction: &RedactionList,
    value: &T,
) -> CapturedVariables {
    let mut capturer = Capturer::new(limits, redaction);
    capturer.variable("order", |slot| slot.serialize(value));
    capturer.finish()
}

fn capture(c: &mut Criterion) {
    let redaction = RedactionList::default();
    let full = CaptureLimits {
        max_depth: 16,
        ..default_capture_limits()
    };
    let defaults = default_capture_limits();
    let value = order(1);
    let orders: Vec<Order> = (0..100).map(order).collect();

    let mut group = c.benchmark_group("order");
    group.bench_function("serde_json_to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&value)))
    });
    group.bench_function("capture_full", |b| {
        b.iter(|| capture_one(&full, &redaction, black_box(&value)))
    });
    group.bench_function("capture_default_limits", |b| {
        b.iter(|| capture_one(&defaults, &redaction, black_box(&value)))
    });
    group.finish();

    let wide = CaptureLimits {
        max_depth: 16,
        max_snapshot_bytes: 1 << 20,
        ..default_capture_limits()
    };
    let mut group = c.benchmark_group("hundred_orders");
    group.bench_function("serde_json_to_vec", |b| {
        b.iter(|| serde_json::to_vec(black_box(&orders)))
    });
    group.bench_function("capture_full", |b| {
        b.iter(|| capture_one(&wide, &redaction, black_box(&orders)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = capture
}
criterion_main!(benches);
