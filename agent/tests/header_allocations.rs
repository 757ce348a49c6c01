//! What parsing propagation headers costs in heap bytes, measured with a counting global allocator: many
//! `baggage` headers cost what one does (the attack behind OpenTelemetry Go's CVE-2026-29181), and
//! delimiter-dense input costs what the budget allows, not what the input weighs (the Java, JS and .NET
//! advisories). Run with `--nocapture` to see the figures. Also what a debug session adds to the
//! allocations of the request that carries it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use http::HeaderMap;
use keyhole::propagation::{Baggage, TraceState, MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS};
use keyhole::testing::{session_token, OfflineAgent};
use keyhole::{inbound_context, TrustedSession, SESSION_BAGGAGE_KEY};
use keyhole_proto::token::SessionSigner;
use opentelemetry::Context;

/// Counts the bytes each thread asks the system allocator for, and how many times it asks, so tests
/// running in parallel do not see each other's allocations.
struct CountingAllocator;

thread_local! {
    // `const` initialisation: reading it never allocates, so the allocator cannot recurse into itself.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with` fails only while the thread is being torn down; those allocations are nobody's test.
    let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get().saturating_add(bytes)));
    let _ = ALLOCATIONS.try_with(|allocations| allocations.set(allocations.get().saturating_add(1)));
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the counting touches only a thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded as received; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A reallocation is counted at its full new size, as if it were a fresh allocation.
        count(new_size);
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The result of `work` and the heap bytes the current thread allocated while running it.
fn allocated_by<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(Cell::get);
    let result = work();
    (result, ALLOCATED.with(Cell::get) - before)
}

/// The result of `work` and how many allocations (and reallocations) the current thread made in it.
fn allocations_by<T>(work: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = work();
    (result, ALLOCATIONS.with(Cell::get) - before)
}

fn parse_baggage(values: &[String]) -> (Baggage, usize) {
    allocated_by(|| Baggage::from_headers(values.iter().map(String::as_bytes)))
}

/// `count` members `<prefix><i>=vvv...`, each `len` bytes, joined into one header value.
fn header_of(prefix: &str, count: usize, len: usize) -> String {
    let members: Vec<String> = (0..count)
        .map(|i| {
            let key = format!("{prefix}{i}");
            format!("{key}={}", "v".repeat(len - key.len() - 1))
        })
        .collect();
    members.join(",")
}

/// Parses the `split` headers and the single header `combined` (the members of `split` that fit the
/// limits), checks they give the same baggage, and that the split headers cost at most twice as much.
fn assert_split_costs_at_most_twice_combined(what: &str, split: &[String], combined: String) {
    let input: usize = split.iter().map(String::len).sum();
    let (from_split, split_bytes) = parse_baggage(split);
    let (from_combined, combined_bytes) = parse_baggage(&[combined]);
    assert_eq!(from_split, from_combined);
    println!(
        "{} {what} ({input} bytes in): {split_bytes} bytes allocated; one combined header: {combined_bytes}",
        split.len()
    );
    assert!(
        split_bytes <= 2 * combined_bytes,
        "{split_bytes} > 2 x {combined_bytes}"
    );
}

#[test]
fn eighty_baggage_headers_near_the_byte_limit_cost_no_more_than_twice_one_combined_header() {
    // Each header: 8 members of 1000 bytes, 8007 bytes, just under the 8192-byte limit on its own.
    let split: Vec<String> = (0..80).map(|h| header_of(&format!("h{h}m"), 8, 1000)).collect();
    let combined = split[0].clone();
    assert_split_costs_at_most_twice_combined("baggage headers near the byte limit", &split, combined);
}

#[test]
fn eighty_baggage_headers_near_the_member_limit_cost_no_more_than_twice_one_combined_header() {
    // Each header: 64 members of 120 bytes (7743 bytes), so the member limit is reached first.
    let split: Vec<String> = (0..80)
        .map(|h| header_of(&format!("h{h}m"), MAX_BAGGAGE_MEMBERS, 120))
        .collect();
    let combined = split[0].clone();
    assert_split_costs_at_most_twice_combined("baggage headers near the member limit", &split, combined);
}

#[test]
fn eighty_small_baggage_headers_that_together_fill_the_limit_cost_no_more_than_twice_one_combined_header() {
    // The budget spread over many headers rather than taken by the first: 80 headers of 5 members.
    let split: Vec<String> = (0..80).map(|h| header_of(&format!("h{h}m"), 5, 100)).collect();
    let members: Vec<&str> = split
        .iter()
        .flat_map(|h| h.split(','))
        .take(MAX_BAGGAGE_MEMBERS)
        .collect();
    let combined = members.join(",");
    assert!(combined.len() <= MAX_BAGGAGE_BYTES);
    assert_split_costs_at_most_twice_combined("small baggage headers", &split, combined);
}

/// Generous bound on what a full baggage may allocate: its text, the entry vector's growth (counted at
/// every size it passes through), and one spare budget's worth for allocator rounding and small strings.
fn budget_bound() -> usize {
    3 * MAX_BAGGAGE_BYTES
        + 2 * MAX_BAGGAGE_MEMBERS * std::mem::size_of::<keyhole::propagation::BaggageEntry>()
}

#[test]
fn delimiter_dense_baggage_allocates_within_the_budget_not_per_delimiter() {
    const INPUT_LEN: usize = 100 * 1024;
    let dense = |unit: &str| unit.repeat(INPUT_LEN / unit.len());
    let cases = [
        ("commas", dense(","), 0),
        ("spaced commas", dense(" ,\t"), 0),
        ("semicolons", dense(";"), 0),
        ("equals signs", dense("="), 0),
        ("percent signs", dense("%"), 0),
        ("empty properties", format!("k=v{}", dense(";")), 0),
        ("valid properties", format!("k=v{}", dense(";p")), 0),
        ("tiny members", dense("a=1,"), budget_bound()),
        ("equals-dense values", dense("a==,"), budget_bound()),
        ("escaped invalid bytes", dense("%FF"), 0),
    ];
    for (name, input, bound) in cases {
        let (baggage, bytes) = parse_baggage(&[input]);
        println!(
            "100 KB of {name}: {bytes} bytes allocated, {} entries kept",
            baggage.len()
        );
        assert!(bytes <= bound, "{name}: {bytes} bytes allocated, bound {bound}");
    }
}

#[test]
fn many_delimiter_dense_baggage_headers_allocate_within_the_budget() {
    let split: Vec<String> = (0..100).map(|_| "a=1,;;;,,, ,".repeat(1000)).collect();
    let (baggage, bytes) = parse_baggage(&split);
    println!(
        "100 headers of 12 KB delimiter-dense baggage: {bytes} bytes allocated, {} entries",
        baggage.len()
    );
    assert_eq!(baggage.len(), MAX_BAGGAGE_MEMBERS);
    assert!(bytes <= budget_bound(), "{bytes} bytes allocated");
}

#[test]
fn delimiter_dense_tracestate_allocates_nothing_and_reading_stops_at_the_thirty_third_member() {
    let commas = ", \t,".repeat(25 * 1024);
    let (state, bytes) = allocated_by(|| TraceState::from_headers([commas.as_bytes()]));
    println!("100 KB of tracestate delimiters: {bytes} bytes allocated");
    assert!(state.is_ok_and(|state| state.is_empty()));
    assert_eq!(bytes, 0);

    let members: String = (0..10_000)
        .map(|i| format!("k{i}={},", "v".repeat(200)))
        .collect();
    let (state, bytes) = allocated_by(|| TraceState::from_headers([members.as_bytes()]));
    println!(
        "{} KB of tracestate members: {bytes} bytes allocated",
        members.len() / 1024
    );
    assert!(state.is_err());
    // 32 members of about 205 bytes, in a string grown by doubling.
    assert!(bytes <= 4 * 32 * 210, "{bytes} bytes allocated");
}

/// How long the session of the test below stays valid.
const SESSION_SECONDS: u64 = 600;

#[test]
fn a_request_that_carries_a_verified_session_allocates_no_more_than_one_that_does_not() {
    let signer = SessionSigner::new("k-allocations", &[7; 32]).expect("key");
    let _agent = OfflineAgent::trusting("allocations", &signer).expect("offline agent");
    let token = session_token(&signer, "ses-allocations", SESSION_SECONDS).expect("token");
    let mut session = HeaderMap::new();
    let header = format!("{SESSION_BAGGAGE_KEY}={token}");
    session.insert("baggage", header.parse().expect("header"));
    let plain = HeaderMap::new();
    // The first look checks the signature and fills the cache; every later request of the session
    // is served from it.
    let verified = inbound_context(&Context::new(), &session, false);
    assert!(TrustedSession::in_context(&verified).is_some());

    for trusted in [false, true] {
        let (without, plain_allocations) =
            allocations_by(|| inbound_context(&Context::new(), &plain, trusted));
        let (with, session_allocations) =
            allocations_by(|| inbound_context(&Context::new(), &session, trusted));
        println!(
            "request context (trusted caller: {trusted}): {plain_allocations} allocations without a session, \
             {session_allocations} with one"
        );
        assert!(TrustedSession::in_context(&without).is_none());
        assert_eq!(
            TrustedSession::in_context(&with).map(TrustedSession::session_id),
            Some("ses-allocations")
        );
        assert!(
            session_allocations <= plain_allocations,
            "the session's request made {session_allocations} allocations, a plain one {plain_allocations}"
        );
    }
}
