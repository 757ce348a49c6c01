//! Property tests over all three parsers: no input makes them panic or exceed their limits, and what
//! they write they read back. Bounded to a few hundred cases each so `cargo test` stays fast.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::collection::vec;
use proptest::prelude::*;

use super::percent::{decode, push_encoded};
use super::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Arbitrary header values, some of them far over the limits.
fn header_values() -> impl Strategy<Value = Vec<Vec<u8>>> {
    vec(vec(any::<u8>(), 0..600), 0..20)
}

/// Header values made of the characters the grammars care about, so that they get deep into the
/// parsers rather than failing at the first byte.
fn grammar_soup() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let alphabet = b"ab09-_*/@=,; \t%Ff\"\\\x7f\xc3\xa9.".to_vec();
    vec(vec(proptest::sample::select(alphabet), 0..2000), 0..12)
}

fn borrowed(values: &[Vec<u8>]) -> impl Iterator<Item = &[u8]> {
    values.iter().map(Vec::as_slice)
}

fn baggage_key() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}"
}

fn tracestate_member() -> impl Strategy<Value = (String, String)> {
    (
        "[a-z0-9][a-z0-9_*/@-]{0,30}",
        r"[\x20-\x2B\x2D-\x3C\x3E-\x7E]{0,30}[\x21-\x2B\x2D-\x3C\x3E-\x7E]",
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn traceparent_parsing_never_panics_on_arbitrary_bytes(values in header_values()) {
        let _ = TraceParent::from_headers(borrowed(&values));
        for value in &values {
            let _ = TraceParent::parse(value);
        }
    }

    #[test]
    fn traceparent_parsing_never_panics_on_near_misses(
        version in "[0-9a-fA-F.]{1,3}", trace in "[0-9a-fA-F.]{30,34}", parent in "[0-9a-fA-F.]{14,18}",
        flags in "[0-9a-f.]{1,3}", rest in "[-.a-z]{0,5}",
    ) {
        let _ = TraceParent::parse(format!("{version}-{trace}-{parent}-{flags}{rest}").as_bytes());
    }

    #[test]
    fn traceparent_round_trips_through_its_header(
        trace_id in any::<[u8; 16]>(), parent_id in any::<[u8; 8]>(), flags in 0u8..4,
    ) {
        prop_assume!(trace_id != [0; 16] && parent_id != [0; 8]);
        let parent = TraceParent::new(trace_id, parent_id, flags).unwrap();
        prop_assert_eq!(TraceParent::parse(parent.to_header().as_bytes()), Ok(parent));
    }

    #[test]
    fn tracestate_parsing_never_panics_and_output_stays_within_512(values in header_values()) {
        if let Ok(state) = TraceState::from_headers(borrowed(&values)) {
            prop_assert!(state.len() <= MAX_TRACESTATE_MEMBERS);
            prop_assert!(state.to_header().is_none_or(|header| header.len() <= MAX_TRACESTATE_HEADER_LEN));
        }
    }

    #[test]
    fn tracestate_output_stays_within_512_for_any_valid_list(
        members in vec(("[a-z][a-z0-9@]{0,255}", r"[\x21-\x2B\x2D-\x3C\x3E-\x7E]{1,256}"), 0..40),
    ) {
        let header = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        if let Ok(state) = TraceState::from_headers([header.as_bytes()]) {
            let sent = state.to_header().unwrap_or_default();
            prop_assert!(sent.len() <= MAX_TRACESTATE_HEADER_LEN);
            // Truncation drops whole members, and whatever is sent parses to a subset of what came in.
            let again = TraceState::from_headers([sent.as_bytes()]).unwrap();
            for (key, value) in again.iter() {
                prop_assert_eq!(state.get(key), Some(value));
            }
        }
    }

    #[test]
    fn tracestate_round_trips_through_its_header(members in vec(tracestate_member(), 0..32)) {
        let header = members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let state = TraceState::from_headers([header.as_bytes()]).unwrap();
        if header.len() <= MAX_TRACESTATE_HEADER_LEN {
            let sent = state.to_header().unwrap_or_default();
            prop_assert_eq!(TraceState::from_headers([sent.as_bytes()]), Ok(state.clone()));
        }
        // A repeated key keeps its first value.
        for (key, _) in &members {
            let first = members.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
            prop_assert_eq!(state.get(key), first);
        }
    }

    #[test]
    fn baggage_parsing_never_panics_and_output_stays_within_the_limits(values in header_values()) {
        let baggage = Baggage::from_headers(borrowed(&values));
        prop_assert!(baggage.len() <= MAX_BAGGAGE_MEMBERS);
        let sent = baggage.to_header().unwrap_or_default();
        prop_assert!(sent.len() <= MAX_BAGGAGE_BYTES);
    }

    #[test]
    fn baggage_stays_within_the_limits_for_grammar_dense_input(values in grammar_soup()) {
        let (baggage, report) = Baggage::from_headers_with_report(borrowed(&values));
        prop_assert!(baggage.len() <= MAX_BAGGAGE_MEMBERS);
        let sent = baggage.to_header().unwrap_or_default();
        prop_assert!(sent.len() <= MAX_BAGGAGE_BYTES);
        prop_assert!(sent.split(',').filter(|m| !m.is_empty()).count() <= MAX_BAGGAGE_MEMBERS);
        // What is sent on reads back the same, with nothing dropped or malformed.
        let (again, again_report) = Baggage::from_headers_with_report([sent.as_bytes()]);
        prop_assert_eq!(again_report, BaggageReport::default());
        prop_assert_eq!(again, baggage.clone());
        let _ = report;
    }

    #[test]
    fn baggage_read_from_several_headers_equals_baggage_read_from_them_joined(values in grammar_soup()) {
        let joined = values.join(&b","[..]);
        let split = Baggage::from_headers_with_report(borrowed(&values));
        prop_assert_eq!(split, Baggage::from_headers_with_report([joined.as_slice()]));
    }

    #[test]
    fn baggage_round_trips_through_its_header(
        entries in vec((baggage_key(), any::<String>()), 0..80),
    ) {
        let mut baggage = Baggage::new();
        for (key, value) in &entries {
            let _ = baggage.insert(key, value);
        }
        let sent = baggage.to_header().unwrap_or_default();
        prop_assert!(sent.len() <= MAX_BAGGAGE_BYTES);
        prop_assert_eq!(Baggage::from_headers([sent.as_bytes()]), baggage);
    }

    #[test]
    fn percent_decoding_replaces_invalid_utf_8_exactly_like_the_standard_library(bytes in vec(any::<u8>(), 0..64)) {
        let mut encoded = String::new();
        for byte in &bytes {
            encoded.push_str(&format!("%{byte:02X}"));
        }
        let decoded: String = decode(encoded.as_bytes()).collect();
        prop_assert_eq!(decoded, String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn percent_encoding_round_trips_any_text(text in any::<String>()) {
        let mut encoded = String::new();
        push_encoded(&mut encoded, &text);
        prop_assert_eq!(decode(encoded.as_bytes()).collect::<String>(), text);
    }
}
