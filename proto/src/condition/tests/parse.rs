//! Stories of parsing: syntax errors, literals, method calls and the size
//! limits.

use super::*;

#[test]
fn parse_errors_say_what_was_expected_and_what_was_found_at_a_one_based_byte_column() {
    let empty = "at column 1: expected a value, a variable or `(` but found end of condition";
    assert_eq!(parsed(""), empty);
    let error = parse("(a == 1").expect_err("unclosed");
    assert_eq!(error.position, 7);
    assert_eq!(error.message, "expected `)` but found end of condition");
    assert_outcomes(
        r#"
        (a == 1 => at column 8: expected `)` but found end of condition
        a.lenght() > 1 => at column 3: unknown method `lenght`; available: len(), contains(..), starts_with(..)
        a == 1 == 2 => at column 8: expected an operator or end of condition but found `==`
        a = 1 => at column 3: expected an operator or end of condition but found `=`
        a b => at column 3: expected an operator or end of condition but found `b`
        a.contains() => at column 12: expected a value, a variable or `(` but found `)`
        a.contains(1, 2) => at column 13: expected `)` but found `,`
        a.len(1) => at column 7: expected `)` but found `1`
        a. => at column 3: expected a field name after `.` but found end of condition
        "x". => at column 5: expected a method name after `.` but found end of condition
        a.b. == 1 => at column 6: expected a field name after `.` but found `==`
        a[b] => at column 3: expected an index or a quoted key but found `b`
        a[0 => at column 4: expected `]` but found end of condition
        a[-1] => at column 3: a list index cannot be negative
        a[1.5] => at column 3: a list index must be a whole number
        a == -x => at column 6: expected a digit after `-`
        é == ü # => at column 10: expected an operator or end of condition but found `#`
        s == "\x" => at column 7: unknown escape `\x`; use \", \\, \n or \t
        s == "open => at column 6: expected a closing `"` for this text but found end of condition
        n == 9223372036854775808 => at column 6: number `9223372036854775808` does not fit in a 64-bit signed integer
        n == -9223372036854775808 => parses
        "#,
        parsed,
    );
}

#[test]
fn text_literals_understand_the_four_escapes() {
    let variables = [var("s", text("say \"hi\"\\\n\t"))];
    assert_outcomes(r#"s == "say \"hi\"\\\n\t" => true"#, evaluated_on(&variables));
}

#[test]
fn a_float_literal_too_large_for_f64_is_refused() {
    let huge = format!("1{}.0", "0".repeat(400));
    let expected = format!("at column 5: number `{huge}` is out of range");
    assert_eq!(parsed(&format!("n < {huge}")), expected);
}

#[test]
fn conditions_beyond_the_size_nesting_and_node_limits_are_refused_before_they_cost_anything() {
    let long = format!("a == \"{}\"", "x".repeat(MAX_SOURCE_BYTES));
    assert_eq!(
        parsed(&long),
        "at column 1025: condition is longer than 1024 bytes"
    );

    let nots = |n| format!("{}a", "!".repeat(n));
    assert_eq!(parsed(&nots(MAX_NESTING_DEPTH - 1)), "parses");
    let too_deep = "at column 33: condition nests deeper than 32 levels";
    assert_eq!(parsed(&nots(MAX_NESTING_DEPTH)), too_deep);
    let parens = format!("{}a{}", "(".repeat(500), ")".repeat(500));
    assert_eq!(parsed(&parens), too_deep);

    // Each `a` is a node, and so is the `&&` that joins them.
    let chain = |n| vec!["a"; n].join("&&");
    assert_eq!(parsed(&chain(MAX_NODES - 1)), "parses");
    let too_many = "condition has more than 256 parts; split it up";
    assert!(parsed(&chain(MAX_NODES)).ends_with(too_many));
    assert!(parsed(&format!("a{}", "[0]".repeat(300))).ends_with(too_many));
}

#[test]
fn a_name_after_a_dot_is_a_method_call_only_when_a_parenthesis_follows() {
    let variables = [var("counts", map(vec![(text("len"), int(7))], 0))];
    assert_outcomes(
        r#"
        counts.len == 7 && counts.len() == 1 && counts . len ( ) == 1 => true
        counts.len.len() == 1 => `counts.len` is a number, but len() needs text, bytes, a list or a map
        "#,
        evaluated_on(&variables),
    );
}
