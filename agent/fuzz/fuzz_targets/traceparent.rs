//! `traceparent`: a header that parses names a real trace and span, and is sent on as the same trace in
//! the 55-character version-00 form, carrying only the flags this version defines.

#![no_main]

use keyhole::propagation::{TraceParent, TRACE_FLAG_RANDOM_TRACE_ID, TRACE_FLAG_SAMPLED};
use libfuzzer_sys::fuzz_target;

/// The flags `to_header` keeps; it writes every other bit as zero.
const SENT_FLAGS: u8 = TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM_TRACE_ID;

fuzz_target!(|data: &[u8]| {
    let Ok(parent) = TraceParent::parse(data) else {
        return;
    };
    assert_ne!(parent.trace_id, [0; 16], "an all-zero trace-id was accepted");
    assert_ne!(parent.parent_id, [0; 8], "an all-zero parent-id was accepted");

    let header = parent.to_header();
    assert_eq!(header.len(), 55, "{header:?}");
    assert!(header.starts_with("00-"), "{header:?}");
    let sent = TraceParent::parse(header.as_bytes()).expect("the header we send parses");
    let masked = TraceParent {
        flags: parent.flags & SENT_FLAGS,
        ..parent
    };
    assert_eq!(sent, masked);
    assert_eq!(sent.to_header(), header, "formatting is not stable");

    // Only lowercase hex is accepted, so both ids go out exactly as they came in, whatever the version.
    let received = trim_ows(data);
    assert_eq!(header.as_bytes().get(2..53), received.get(2..53));
});

/// `bytes` without the spaces and tabs the parser ignores around a value.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |at| at + 1);
    &bytes[start..end]
}
