//! `baggage`: the input is split on `\n` into several header values, read together. Every non-empty
//! list-member is either kept, counted malformed or counted dropped; the kept entries stay within
//! `MAX_BAGGAGE_MEMBERS` and `MAX_BAGGAGE_BYTES`, and the header sent on reads back as the same entries.

#![no_main]

use keyhole::propagation::{Baggage, BaggageReport, MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let headers = || data.split(|b| *b == b'\n');
    let (baggage, report) = Baggage::from_headers_with_report(headers());
    assert_eq!(Baggage::from_headers(headers()), baggage);
    assert!(baggage.len() <= MAX_BAGGAGE_MEMBERS, "{} entries", baggage.len());

    let members = headers()
        .flat_map(|value| value.split(|b| *b == b','))
        .filter(|member| member.iter().any(|b| *b != b' ' && *b != b'\t'))
        .count();
    assert_eq!(
        baggage.len() + report.malformed + report.dropped(),
        members,
        "a list-member was neither kept nor counted: {report:?}"
    );

    let Some(header) = baggage.to_header() else {
        assert!(baggage.is_empty(), "entries were kept but nothing is sent");
        return;
    };
    assert!(header.len() <= MAX_BAGGAGE_BYTES, "{} bytes sent", header.len());
    let (sent, sent_report) = Baggage::from_headers_with_report([header.as_bytes()]);
    assert_eq!(
        sent_report,
        BaggageReport::default(),
        "the header we send is not all kept"
    );
    assert_eq!(
        sent.entries(),
        baggage.entries(),
        "the header we send reads back differently"
    );
    assert_eq!(
        sent.to_header().as_deref(),
        Some(header.as_str()),
        "formatting is not stable"
    );
});
