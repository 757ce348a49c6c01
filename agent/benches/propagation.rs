//! What the inbound layer and outbound propagation cost every request, with and without a debug
//! session, beside a baseline in the same run: building the same request's `HeaderMap` from its
//! parts, the least a service does with headers it receives.
//!
//! - `inbound/*`: [`keyhole::inbound_context`] for an edge request with no trace headers, for one
//!   with a caller's `traceparent` (untrusted), for a debug session's request at the edge (its
//!   token in `baggage`), and for an internal hop that trusts its caller and carries the session;
//! - `outbound/*`: [`keyhole::inject_context`] of a request's context into a downstream call's
//!   headers, without and with a session.
//!
//! Run: `cargo bench -p keyhole --bench propagation`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use keyhole_proto::token::SessionSigner;
use opentelemetry::Context;

/// A session that stays valid for as long as any bench runs.
const FAR_FUTURE_UNIX: u64 = 4_000_000_000;

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.append(HeaderName::from_static(name), value);
        }
    }
    map
}

fn propagation(c: &mut Criterion) {
    let signer = SessionSigner::new("bench-key", &[7; 32]).expect("key");
    let _agent = keyhole::testing::OfflineAgent::trusting("bench", &signer).expect("offline agent");
    let token = signer.sign("ses-bench", FAR_FUTURE_UNIX).expect("token");
    let session_baggage = format!("keyhole.session={token}");
    let hop_baggage = format!("{session_baggage},keyhole.span=00f067aa0ba902b7");

    let common = [
        ("host", "127.0.0.1:8080"),
        ("accept", "*/*"),
        ("user-agent", "load/1"),
    ];
    let plain = headers(&common);
    let traced = headers(&[common[0], common[1], common[2], ("traceparent", CALLER)]);
    let session = headers(&[common[0], common[1], common[2], ("baggage", &session_baggage)]);
    let hop = headers(&[
        common[0],
        common[1],
        common[2],
        ("traceparent", CALLER),
        ("baggage", &hop_baggage),
    ]);
    let base = Context::new();

    let mut group = c.benchmark_group("inbound");
    group.bench_function("headers_baseline", |b| b.iter(|| headers(black_box(&common))));
    group.bench_function("no_trace_headers", |b| {
        b.iter(|| keyhole::inbound_context(&base, black_box(&plain), false))
    });
    group.bench_function("untrusted_traceparent", |b| {
        b.iter(|| keyhole::inbound_context(&base, black_box(&traced), false))
    });
    group.bench_function("session_at_the_edge", |b| {
        b.iter(|| keyhole::inbound_context(&base, black_box(&session), false))
    });
    group.bench_function("trusted_hop_with_session", |b| {
        b.iter(|| keyhole::inbound_context(&base, black_box(&hop), true))
    });
    group.finish();

    let without = keyhole::inbound_context(&base, &plain, false);
    let with = keyhole::inbound_context(&base, &session, false);
    let mut group = c.benchmark_group("outbound");
    group.bench_function("headers_baseline", |b| b.iter(|| headers(black_box(&common))));
    group.bench_function("no_session", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            keyhole::inject_context(black_box(&without), &mut out);
            out
        })
    });
    group.bench_function("session", |b| {
        b.iter(|| {
            let mut out = HeaderMap::new();
            keyhole::inject_context(black_box(&with), &mut out);
            out
        })
    });
    group.finish();
}

criterion_group!(benches, propagation);
criterion_main!(benches);
