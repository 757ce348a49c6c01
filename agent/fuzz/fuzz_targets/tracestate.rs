//! `tracestate`: the input is split on `\n` into several header values, read together. A state that
//! parses has at most 32 members with distinct keys, and what it sends on is at most 512 characters,
//! parses again, and keeps the members it sends in their order: all of them whenever they fit.

#![no_main]

use keyhole::propagation::{TraceState, MAX_TRACESTATE_HEADER_LEN, MAX_TRACESTATE_MEMBERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = TraceState::from_headers(data.split(|b| *b == b'\n')) else {
        return;
    };
    let members: Vec<(&str, &str)> = state.iter().collect();
    assert_eq!(members.len(), state.len());
    assert!(state.len() <= MAX_TRACESTATE_MEMBERS, "{} members", state.len());
    for (index, (key, _)) in members.iter().enumerate() {
        assert!(
            members[..index].iter().all(|(earlier, _)| earlier != key),
            "key {key:?} kept twice"
        );
    }

    let Some(header) = state.to_header() else {
        // Nothing is sent only when there is nothing, or no single member fits the limit.
        let too_long = |(key, value): &(&str, &str)| key.len() + 1 + value.len() > MAX_TRACESTATE_HEADER_LEN;
        assert!(members.iter().all(too_long), "a member that fits was not sent");
        return;
    };
    assert!(
        header.len() <= MAX_TRACESTATE_HEADER_LEN,
        "{} characters sent",
        header.len()
    );
    let sent = TraceState::from_headers([header.as_bytes()]).expect("the header we send parses");

    let whole = members
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    if whole.len() <= MAX_TRACESTATE_HEADER_LEN {
        assert_eq!(header, whole);
        assert_eq!(sent, state);
        return;
    }
    // Truncated: whole members were dropped, the rest kept in order.
    let mut received = members.iter();
    for member in sent.iter() {
        assert!(
            received.any(|kept| *kept == member),
            "{member:?} was sent out of order or altered"
        );
    }
});
