//! Stories of the static check: unknown variables, redacted names and type
//! errors certain before capture.

use super::*;

#[test]
fn a_condition_naming_an_unknown_variable_is_refused_with_the_known_names() {
    let unknown = "at column 1: unknown variable `foo`; this probe captures: a, b, c";
    assert_outcomes(
        &format!("foo == 1 => {unknown}"),
        checked_against(&["a", "b", "c"]),
    );
    let unknown = "at column 9: unknown variable `foo`; this probe captures no variables";
    assert_outcomes(&format!("true && foo => {unknown}"), checked_against(&[]));
}

#[test]
fn a_redacted_variable_field_or_map_key_cannot_be_used_in_a_condition() {
    assert_outcomes(
        r#"
        user.password == "x" => at column 6: `password` is redacted and cannot be used in a condition
        headers["Authorization"] != null => at column 9: `Authorization` is redacted and cannot be used in a condition
        api_key.len() > 0 => at column 1: `api_key` is redacted and cannot be used in a condition
        Session_Id == 1 => at column 1: `Session_Id` is redacted and cannot be used in a condition
        user.tier == "gold" && headers["accept"] != null => ok
        "#,
        checked_against(&["user", "headers", "api_key"]),
    );
}

#[test]
fn type_errors_that_are_certain_before_capture_are_refused_at_the_offending_part() {
    assert_outcomes(
        r#"
        "a" < 3 => at column 5: type mismatch between `"a"` (text) and `3` (a number)
        a.len() == "3" => at column 9: type mismatch between `a.len()` (a number) and `"3"` (text)
        a < true => at column 5: `true` is a boolean, but `<`, `<=`, `>` and `>=` need numbers or text
        null >= a => at column 1: `null` is null, but `<`, `<=`, `>` and `>=` need numbers or text
        3.len() > a => at column 1: `3` is a number, but len() needs text, bytes, a list or a map
        true.contains("x") => at column 1: `true` is a boolean, but contains(..) needs text or a list
        1.5.starts_with("x") => at column 1: `1.5` is a number, but starts_with(..) needs text
        a.starts_with(1) => at column 15: `1` is a number, but starts_with(..) needs a text argument
        "abc".contains(null) => at column 16: `null` is null, but contains(..) on text needs a text argument
        a && 1 => at column 6: `1` is a number, but `&&` needs booleans
        a || "yes" => at column 6: `"yes"` is text, but `||` needs booleans
        !a.len() => at column 2: `a.len()` is a number, but `!` needs a boolean
        a.len() => at column 1: `a.len()` is a number, but a condition must be true or false
        "#,
        checked_against(&["a"]),
    );
}

#[test]
fn paths_have_no_type_until_evaluation_so_they_pass_every_static_check() {
    assert_outcomes(
        r#"
        a => ok
        !a.b && a || b => ok
        a < b && a.len() > b => ok
        a.contains(b) && a.starts_with(b) && a.b.contains(1) => ok
        a == null && "x" == a && a != 1.5 => ok
        1 == 1.0 && null != 1 && (a == b) == true => ok
        "#,
        checked_against(&["a", "b"]),
    );
}
