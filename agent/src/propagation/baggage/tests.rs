//! Unit tests of `baggage` parsing, limits and output, one per rule of the W3C Baggage spec and per
//! known attack in the reference README.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;

fn parse(values: &[&str]) -> (Baggage, BaggageReport) {
    Baggage::from_headers_with_report(values.iter().map(|value| value.as_bytes()))
}

fn keys(baggage: &Baggage) -> Vec<&str> {
    baggage.entries().iter().map(|entry| entry.key.as_str()).collect()
}

/// `count` members `m<i>=<padding>`, each exactly `len` bytes.
fn members_of_len(prefix: &str, count: usize, len: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let key = format!("{prefix}{i}");
            format!("{key}={}", "v".repeat(len - key.len() - 1))
        })
        .collect()
}

#[test]
fn the_spec_example_yields_three_entries_with_their_properties() {
    let (baggage, report) =
        parse(&["key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue"]);
    assert_eq!(report, BaggageReport::default());
    assert_eq!(keys(&baggage), ["key1", "key2", "key3"]);
    let entries = baggage.entries();
    assert_eq!(
        (entries[0].value.as_str(), entries[0].properties.as_str()),
        ("value1", ";property1;property2")
    );
    assert_eq!(
        (entries[1].value.as_str(), entries[1].properties.as_str()),
        ("value2", "")
    );
    assert_eq!(entries[2].properties, "; propertyKey=propertyValue");
}

#[test]
fn spaces_and_tabs_around_keys_and_values_are_not_part_of_them() {
    let (baggage, _) = parse(&[
        "userId =   alice",
        "serverNode = DF%2028, \tisProduction\t=\tfalse\t",
    ]);
    assert_eq!(baggage.get("userId"), Some("alice"));
    assert_eq!(baggage.get("serverNode"), Some("DF 28"));
    assert_eq!(baggage.get("isProduction"), Some("false"));
    assert_eq!(
        baggage.to_header().as_deref(),
        Some("userId=alice,serverNode=DF%2028,isProduction=false")
    );
}

#[test]
fn a_value_may_contain_equals_signs_and_the_key_ends_at_the_first() {
    let (baggage, _) = parse(&["q=a=b==,eq=="]);
    assert_eq!(baggage.get("q"), Some("a=b=="));
    assert_eq!(baggage.get("eq"), Some("="));
    assert_eq!(baggage.to_header().as_deref(), Some("q=a=b==,eq=="));
}

#[test]
fn values_are_percent_decoded() {
    let (baggage, _) = parse(&["userId=Am%C3%A9lie,lower=Am%c3%a9lie,comma=a%2Cb%3Bc%25"]);
    assert_eq!(baggage.get("userId"), Some("Amélie"));
    assert_eq!(baggage.get("lower"), Some("Amélie"));
    assert_eq!(baggage.get("comma"), Some("a,b;c%"));
}

#[test]
fn invalid_utf_8_after_decoding_becomes_the_replacement_character() {
    let (baggage, report) = parse(&["bad=%FF, cut=ab%C3, surrogate=%ED%A0%80x"]);
    assert_eq!(report.malformed, 0);
    assert_eq!(baggage.get("bad"), Some("\u{FFFD}"));
    assert_eq!(baggage.get("cut"), Some("ab\u{FFFD}"));
    assert_eq!(baggage.get("surrogate"), Some("\u{FFFD}\u{FFFD}\u{FFFD}x"));
}

#[test]
fn an_empty_value_is_allowed() {
    let (baggage, report) = parse(&["empty=, spaced =  ;p"]);
    assert_eq!(report.malformed, 0);
    assert_eq!(
        (baggage.get("empty"), baggage.get("spaced")),
        (Some(""), Some(""))
    );
    assert_eq!(baggage.to_header().as_deref(), Some("empty=,spaced=;p"));
}

#[test]
fn properties_are_kept_as_received_and_sent_on() {
    let header = "k=v;flag;ttl=30;enc=%C3%A9, other=1; a = b ;c";
    let (baggage, report) = parse(&[header]);
    assert_eq!(report.malformed, 0);
    assert_eq!(baggage.entries()[0].properties, ";flag;ttl=30;enc=%C3%A9");
    assert_eq!(baggage.entries()[1].properties, "; a = b ;c");
    assert_eq!(
        baggage.to_header().as_deref(),
        Some("k=v;flag;ttl=30;enc=%C3%A9,other=1; a = b ;c")
    );
}

#[test]
fn malformed_members_are_skipped_and_counted_and_the_rest_kept() {
    let malformed = [
        "bad key=1",
        "=1",
        "noequals",
        "v=a b",
        "v=a\\b",
        "v=\"q\"",
        "v=%zz",
        "v=100%",
        "v=1;;",
        "v=1;",
        "v=1;bad prop",
        "v=1;p=a b",
        "k\u{e9}=1",
        "v=caf\u{e9}",
    ];
    let header = format!("first=1,{},last=2", malformed.join(","));
    let (baggage, report) = parse(&[&header]);
    assert_eq!(keys(&baggage), ["first", "last"]);
    assert_eq!(
        report,
        BaggageReport {
            malformed: malformed.len(),
            ..BaggageReport::default()
        }
    );
}

#[test]
fn raw_bytes_that_are_not_ascii_make_a_member_malformed() {
    let (baggage, report) = Baggage::from_headers_with_report([&b"a=\xff\xfe,b=1"[..]]);
    assert_eq!((keys(&baggage), report.malformed), (vec!["b"], 1));
}

#[test]
fn empty_members_and_empty_headers_are_skipped_without_being_counted() {
    let (baggage, report) = parse(&["", " , ,a=1,,\t,b=2,", ","]);
    assert_eq!(keys(&baggage), ["a", "b"]);
    assert_eq!(report, BaggageReport::default());
}

#[test]
fn the_member_limit_counts_all_headers_together() {
    let first: Vec<String> = (0..40).map(|i| format!("a{i}=1")).collect();
    let second: Vec<String> = (0..40).map(|i| format!("b{i}=1")).collect();
    let (baggage, report) = parse(&[&first.join(","), &second.join(",")]);
    assert_eq!(baggage.len(), MAX_BAGGAGE_MEMBERS);
    assert_eq!(report.over_member_limit, 80 - MAX_BAGGAGE_MEMBERS);
    assert_eq!(
        baggage.entries().last().map(|entry| entry.key.as_str()),
        Some("b23")
    );
}

#[test]
fn the_byte_limit_counts_all_headers_together() {
    // Three headers of 3 members of 1000 bytes each: 9 x 1000 + 8 commas would be 9008 bytes.
    let headers: Vec<String> = (0..3)
        .map(|h| members_of_len(&format!("h{h}m"), 3, 1000).join(","))
        .collect();
    let (baggage, report) = parse(&headers.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(baggage.len(), 8);
    assert_eq!(report.over_byte_limit, 1);
    assert_eq!(baggage.to_header().unwrap().len(), 8 * 1000 + 7);
}

#[test]
fn a_member_that_does_not_fit_is_dropped_whole_and_a_smaller_one_after_it_may_fit() {
    let big = members_of_len("big", 1, MAX_BAGGAGE_BYTES - 3).remove(0);
    let (baggage, report) = parse(&[&big, "ab=cdefgh", "a="]);
    assert_eq!(keys(&baggage), ["big0", "a"]);
    assert_eq!(
        report,
        BaggageReport {
            over_byte_limit: 1,
            ..BaggageReport::default()
        }
    );
    let sent = baggage.to_header().unwrap();
    assert_eq!(sent.len(), MAX_BAGGAGE_BYTES);
    assert!(!sent.contains("ab="));
}

#[test]
fn a_single_member_over_the_byte_limit_is_dropped_not_cut() {
    let huge = members_of_len("huge", 1, MAX_BAGGAGE_BYTES + 1).remove(0);
    let (baggage, report) = parse(&[&format!("{huge},small=1")]);
    assert_eq!(keys(&baggage), ["small"]);
    assert_eq!(report.over_byte_limit, 1);
}

#[test]
fn bytes_are_counted_as_the_member_would_be_sent() {
    // Escapes of plain characters shrink when sent on; invalid UTF-8 grows into an encoded U+FFFD.
    let (baggage, _) = parse(&["shrinks=%61%62", "grows=%FF"]);
    assert_eq!(baggage.to_header().as_deref(), Some("shrinks=ab,grows=%EF%BF%BD"));
    let (_, report) = parse(&[&format!("k={}", "%FF".repeat(1000))]);
    assert_eq!(report.over_byte_limit, 1, "3000 bytes received, 9002 to send");
}

#[test]
fn repeated_keys_are_kept_in_order_and_the_last_one_answers() {
    let (baggage, _) = parse(&["k=1,other=x", "k=2"]);
    assert_eq!(keys(&baggage), ["k", "other", "k"]);
    assert_eq!(baggage.get("k"), Some("2"));
    assert_eq!(baggage.get("missing"), None);
}

#[test]
fn inserting_replaces_every_entry_with_the_key_in_place_of_the_first() {
    let (mut baggage, _) = parse(&["k=1;p,other=x,k=2"]);
    baggage.insert("k", "new value").unwrap();
    assert_eq!(keys(&baggage), ["k", "other"]);
    assert_eq!(baggage.to_header().as_deref(), Some("k=new%20value,other=x"));
}

#[test]
fn inserting_refuses_keys_that_are_not_tokens() {
    let mut baggage = Baggage::new();
    for key in ["", "a b", "a=b", "a,b", "a;b", "é"] {
        assert_eq!(baggage.insert(key, "v"), Err(HeaderError::BaggageKey), "{key:?}");
    }
    assert!(baggage.is_empty());
}

#[test]
fn inserting_keeps_the_member_limit() {
    let mut baggage = Baggage::new();
    for i in 0..MAX_BAGGAGE_MEMBERS {
        baggage.insert(&format!("k{i}"), "v").unwrap();
    }
    assert_eq!(baggage.insert("one.more", "v"), Err(HeaderError::BaggageFull));
    assert_eq!(baggage.insert("k0", "replacing is fine"), Ok(()));
    assert_eq!(baggage.len(), MAX_BAGGAGE_MEMBERS);
}

#[test]
fn inserting_keeps_the_byte_limit_counting_encoded_bytes() {
    let mut baggage = Baggage::new();
    // 2730 'é' take 2 bytes each as text but 6 encoded: 16380 bytes sent.
    assert_eq!(
        baggage.insert("k", &"é".repeat(2730)),
        Err(HeaderError::BaggageFull)
    );
    baggage.insert("k", &"v".repeat(MAX_BAGGAGE_BYTES - 2)).unwrap();
    assert_eq!(baggage.insert("x", ""), Err(HeaderError::BaggageFull));
    assert_eq!(baggage.get("k").map(str::len), Some(MAX_BAGGAGE_BYTES - 2));
}

#[test]
fn removing_frees_the_budget() {
    let mut baggage = Baggage::new();
    baggage.insert("k", &"v".repeat(MAX_BAGGAGE_BYTES - 2)).unwrap();
    baggage.remove("k");
    assert!(baggage.is_empty());
    assert_eq!(baggage.to_header(), None);
    baggage.insert("x", &"v".repeat(MAX_BAGGAGE_BYTES - 2)).unwrap();
}

#[test]
fn output_percent_encodes_what_the_spec_requires_and_nothing_else() {
    let mut baggage = Baggage::new();
    baggage.insert("k", "a b,c;d\\e\"f%g=h/é\u{0}").unwrap();
    assert_eq!(
        baggage.to_header().as_deref(),
        Some("k=a%20b%2Cc%3Bd%5Ce%22f%25g=h/%C3%A9%00")
    );
}

#[test]
fn debug_output_leaves_values_out() {
    let (baggage, _) = parse(&["keyhole.session=v1.key.secret-token;p=secret-prop"]);
    let debug = format!("{baggage:?}");
    assert!(debug.contains("keyhole.session"));
    assert!(!debug.contains("secret"));
}
