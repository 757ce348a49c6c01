//! Unit tests of `tracestate` parsing and truncation, one per rule of W3C Trace Context Level 2 and per
//! case of the W3C test harness (`test/test.py`, `STRICT_LEVEL=2`).

#![allow(clippy::unwrap_used)]

use super::*;

fn parse(values: &[&str]) -> Result<TraceState, HeaderError> {
    TraceState::from_headers(values.iter().map(|value| value.as_bytes()))
}

fn members(count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("bar{i:02}={i:02}")).collect()
}

/// The members split over headers of ten, as the W3C harness sends them.
fn in_headers_of_ten(members: &[String]) -> Vec<String> {
    members.chunks(10).map(|chunk| chunk.join(",")).collect()
}

#[test]
fn list_members_are_read_in_order_across_several_headers() {
    let state = parse(&["foo=1,bar=2", "rojo=1,congo=2", "baz=3"]).unwrap();
    let keys: Vec<&str> = state.iter().map(|(key, _)| key).collect();
    assert_eq!(keys, ["foo", "bar", "rojo", "congo", "baz"]);
    assert_eq!(
        state.to_header().as_deref(),
        Some("foo=1,bar=2,rojo=1,congo=2,baz=3")
    );
}

#[test]
fn spaces_and_tabs_around_list_members_are_not_part_of_them() {
    for header in [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
    ] {
        let state = parse(&[header]).unwrap();
        assert_eq!(
            (state.get("foo"), state.get("bar"), state.get("baz")),
            (Some("1"), Some("2"), Some("3"))
        );
    }
    for header in [" foo=1", "\tfoo=1", "foo=1 ", "foo=1\t", "\t foo=1 \t"] {
        assert_eq!(parse(&[header]).unwrap().get("foo"), Some("1"), "{header:?}");
    }
}

#[test]
fn leading_spaces_of_a_value_are_part_of_it() {
    assert_eq!(parse(&["foo=  1"]).unwrap().get("foo"), Some("  1"));
}

#[test]
fn empty_headers_and_empty_list_members_are_allowed_and_skipped() {
    assert!(parse(&[""]).unwrap().is_empty());
    assert_eq!(parse(&[""]).unwrap().to_header(), None);
    assert_eq!(parse(&["foo=1", ""]).unwrap().get("foo"), Some("1"));
    assert_eq!(parse(&["", "foo=1"]).unwrap().get("foo"), Some("1"));
    let state = parse(&[",, foo=1 , \t ,,bar=2,"]).unwrap();
    assert_eq!(state.len(), 2);
    assert_eq!(state.to_header().as_deref(), Some("foo=1,bar=2"));
}

#[test]
fn thirty_two_list_members_are_kept_across_headers() {
    let headers = in_headers_of_ten(&members(32));
    let state = TraceState::from_headers(headers.iter().map(|h| h.as_bytes())).unwrap();
    assert_eq!(state.len(), 32);
    assert_eq!(state.get("bar01"), Some("01"));
}

#[test]
fn a_thirty_third_list_member_discards_the_whole_header() {
    let headers = in_headers_of_ten(&members(33));
    let result = TraceState::from_headers(headers.iter().map(|h| h.as_bytes()));
    assert_eq!(result, Err(HeaderError::TraceStateTooManyMembers));
}

#[test]
fn reading_stops_at_the_thirty_third_member_whatever_follows() {
    let mut header = members(33).join(",");
    header.push_str(",NOT A MEMBER,\u{7f}");
    assert_eq!(parse(&[&header]), Err(HeaderError::TraceStateTooManyMembers));
}

#[test]
fn keys_with_characters_outside_the_grammar_discard_the_header() {
    for header in [
        "foo =1",
        "FOO=1",
        "foo.bar=1",
        "@foo=1,bar=2",
        "_foo=1",
        "-foo=1",
        "fo\u{e9}=1",
        "=1",
    ] {
        assert_eq!(
            parse(&[header]),
            Err(HeaderError::TraceStateKey { position: 1 }),
            "{header:?}"
        );
    }
    assert_eq!(
        parse(&["ok=1", "Bad=2"]),
        Err(HeaderError::TraceStateKey { position: 2 })
    );
}

#[test]
fn keys_may_hold_at_signs_anywhere_but_first_including_the_multi_tenant_form() {
    for key in [
        "foo@",
        "foo@@bar",
        "foo@bar@baz",
        "tenant@system",
        "0tenant@sys-tem_*/",
    ] {
        let state = parse(&[&format!("{key}=1,bar=2")]).unwrap();
        assert_eq!(
            (state.get(key), state.get("bar")),
            (Some("1"), Some("2")),
            "{key}"
        );
    }
}

#[test]
fn keys_may_be_up_to_256_characters_in_any_split_between_tenant_and_system() {
    let long_keys = [
        "z".repeat(256),
        format!("{}@{}", "t".repeat(241), "v".repeat(14)),
        format!("{}@v", "t".repeat(242)),
        format!("t@{}", "v".repeat(15)),
    ];
    for key in long_keys {
        let state = parse(&["foo=1", &format!("{key}=1")]).unwrap();
        assert_eq!(
            (state.get("foo"), state.get(&key)),
            (Some("1"), Some("1")),
            "{}",
            key.len()
        );
    }
    assert_eq!(
        parse(&["foo=1", &format!("{}=1", "z".repeat(257))]),
        Err(HeaderError::TraceStateKey { position: 2 })
    );
}

#[test]
fn every_allowed_key_and_value_character_is_inherited() {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let vendor_key = format!("{key}@a-z0-9_-*/");
    let value: String = (0x20u8..=0x7E)
        .filter(|b| *b != b',' && *b != b'=')
        .map(char::from)
        .collect();
    for key in [key, vendor_key.as_str()] {
        let state = parse(&[&format!("{key}={value}")]).unwrap();
        assert_eq!(state.get(key), Some(value.as_str()));
    }
}

#[test]
fn values_that_break_the_grammar_discard_the_header() {
    assert_eq!(
        parse(&["foo=bar=baz"]),
        Err(HeaderError::TraceStateValue { position: 1 })
    );
    assert_eq!(
        parse(&["foo=,bar=3"]),
        Err(HeaderError::TraceStateValue { position: 1 })
    );
    assert_eq!(
        parse(&["foo= \t"]),
        Err(HeaderError::TraceStateValue { position: 1 })
    );
    for header in ["foo=a\tb", "foo=a\u{7f}", "foo=caf\u{e9}", "foo=a\nb"] {
        assert_eq!(
            parse(&[header]),
            Err(HeaderError::TraceStateValue { position: 1 }),
            "{header:?}"
        );
    }
    assert_eq!(
        parse(&["foo"]),
        Err(HeaderError::TraceStateMissingEquals { position: 1 })
    );
}

#[test]
fn values_may_be_up_to_256_characters() {
    let at_limit = "v".repeat(256);
    assert_eq!(
        parse(&[&format!("foo={at_limit}")]).unwrap().get("foo"),
        Some(at_limit.as_str())
    );
    assert_eq!(
        parse(&[&format!("foo={}", "v".repeat(257))]),
        Err(HeaderError::TraceStateValue { position: 1 })
    );
}

#[test]
fn non_ascii_bytes_discard_the_header() {
    let result = TraceState::from_headers([&b"foo=\xff\xfe"[..]]);
    assert_eq!(result, Err(HeaderError::TraceStateValue { position: 1 }));
}

#[test]
fn a_repeated_key_is_kept_once_with_its_first_value() {
    let state = parse(&["foo=1,foo=2"]).unwrap();
    assert_eq!((state.len(), state.get("foo")), (1, Some("1")));
    let state = parse(&["foo=1", "foo=1", "bar=2"]).unwrap();
    assert_eq!(state.to_header().as_deref(), Some("foo=1,bar=2"));
}

#[test]
fn a_header_within_512_characters_is_sent_on_unchanged() {
    let header = (0..32)
        .map(|i| format!("k{i:02}={}", "v".repeat(11)))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(header.len(), 32 * 15 + 31);
    assert_eq!(parse(&[&header]).unwrap().to_header(), Some(header));
}

#[test]
fn truncation_drops_members_over_128_characters_first_right_most_first() {
    let large = |name: &str| format!("{name}={}", "x".repeat(200));
    let header = format!(
        "a=1,{},b=2,{},c=3,{},d=4",
        large("big1"),
        large("big2"),
        large("big3")
    );
    let sent = parse(&[&header]).unwrap().to_header().unwrap();
    assert_eq!(
        sent,
        format!("a=1,{},b=2,{},c=3,d=4", large("big1"), large("big2"))
    );
    assert!(sent.len() <= MAX_TRACESTATE_HEADER_LEN);
}

#[test]
fn truncation_then_drops_members_from_the_end() {
    let member = |i: usize| format!("k{i:02}={}", "v".repeat(96));
    let header = (0..8).map(member).collect::<Vec<_>>().join(",");
    let sent = parse(&[&header]).unwrap().to_header().unwrap();
    assert_eq!(sent, (0..5).map(member).collect::<Vec<_>>().join(","));
}

#[test]
fn truncation_drops_large_members_only_as_long_as_needed() {
    let large = format!("big={}", "x".repeat(200));
    let header = format!(
        "{large},{}",
        (0..3)
            .map(|i| format!("k{i}={}", "v".repeat(100)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let sent = parse(&[&header]).unwrap().to_header().unwrap();
    assert!(!sent.contains("big=") && sent.starts_with("k0=") && sent.ends_with(&"v".repeat(100)));
    assert_eq!(sent.split(',').count(), 3);
}

#[test]
fn a_single_member_longer_than_512_characters_is_not_sent() {
    let header = format!("{}={}", "k".repeat(256), "v".repeat(256));
    let state = parse(&[&header]).unwrap();
    assert_eq!(state.len(), 1);
    assert_eq!(state.to_header(), None);
}
