//! Stories of evaluation on captured snapshots: comparisons, paths, methods
//! and the refusals where the capture left out what the answer needs.

use super::*;

#[test]
fn numbers_compare_exactly_across_signed_unsigned_and_float() {
    let variables = [
        var("max", value(Kind::Uint(u64::MAX))),
        var("minus_one", int(-1)),
        var("beyond_f64", int((1 << 53) + 1)),
        var("half", value(Kind::Float(0.5))),
        var("nan", value(Kind::Float(f64::NAN))),
    ];
    assert_outcomes(
        r#"
        max > 9223372036854775807 && minus_one < max => true
        max < 18446744073709551616.0 => true
        beyond_f64 > 9007199254740992.0 && 9007199254740992.0 < beyond_f64 => true
        half > 0 && half < 1 && half == 0.5 && minus_one == -1.0 => true
        nan == nan || nan < 1 || nan >= 1 => false
        nan != 1.5 => true
        "#,
        evaluated_on(&variables),
    );
}

#[test]
fn a_missing_path_names_the_part_that_is_missing() {
    assert_outcomes(
        r#"
        cart.items[3].sku == "x" => missing path `cart.items[3]`: the list has 2 items
        cart.coupon == null => missing path `cart.coupon`: `Cart` has no field `coupon`
        order.id == 1 => missing path `order`: the snapshot has no variable of this name
        cart.total.cents > 1 => missing path `cart.total.cents`: it is a number, which has no field "cents"
        user[0] == 1 => missing path `user[0]`: it is a struct, which has no item 0
        pending.reason == 1 => missing path `pending.reason`: variant `Pending` carries no value
        "#,
        evaluated_on(&shop()),
    );
}

#[test]
fn redacted_truncated_and_failed_values_are_never_compared() {
    let reason = v1::TruncationReason::Depth.into();
    let deep = v1::Truncated {
        type_name: "Profile".to_owned(),
        reason,
    };
    let failed = v1::CaptureError {
        message: "Debug panicked".to_owned(),
    };
    let user = vec![
        ("password", value(Kind::Redacted(v1::Redacted {}))),
        ("profile", value(Kind::Truncated(deep))),
        ("avatar", value(Kind::Error(failed))),
        ("orders", list(vec![int(1), int(2)], 5)),
        ("headers", map(vec![(text("accept"), text("json"))], 3)),
        ("cookies", map(vec![(cut_text("sess", 9), int(1))], 0)),
    ];
    let empty = v1::Field {
        name: "empty".to_owned(),
        value: None,
    };
    let variables = [var("user", record("User", user, 1)), empty];
    assert_outcomes(
        r#"
        user.password == "hunter2" => `user.password` is redacted; a condition cannot read it
        user.profile.age > 3 => `user.profile` is truncated: it lies deeper than the capture depth limit
        user.avatar == null => `user.avatar` could not be captured: Debug panicked
        empty == null => `empty` could not be captured: the snapshot holds no value for it
        user.orders[4] == 1 => `user.orders[4]` is truncated: only the first 2 of its 7 items were captured
        user.orders[7] == 1 => missing path `user.orders[7]`: the list has 7 items
        user.headers["host"] == 1 => `user.headers["host"]` is truncated: not all of the map's keys were captured
        user.cookies.session == 1 => `user.cookies.session` is truncated: not all of the map's keys were captured
        user.nickname == null => `user.nickname` is truncated: 1 fields of `User` were not captured
        user.orders[1] == 2 && user.headers.accept == "json" => true
        "#,
        evaluated_on(&variables),
    );
}

#[test]
fn a_cut_text_decides_only_where_its_captured_part_does() {
    let variables = [
        var("note", cut_text("abc", 10)),
        var("other", cut_text("abd", 1)),
        var("same", cut_text("abc", 4)),
    ];
    assert_outcomes(
        r#"
        note == "abd" || note == "abc" => false
        note < "abd" && note > "ab" && note < other => true
        note.contains("bc") && note.starts_with("ab") => true
        note.starts_with("x") => false
        note != "abcdef" => `note` is truncated: its text was cut, and the captured part does not settle it
        note == same => `note` is truncated: its text was cut, and the captured part does not settle it
        note.len() > 1 => `note` is truncated: its text was cut short, so its length is unknown
        note.contains("zz") => `note` is truncated: the captured part does not contain it and the rest was cut
        note.starts_with("abcd") => `note` is truncated: it was cut before the length of the argument
        "xabcx".contains(note) => `note` is truncated: its text was cut short, so it cannot be searched for
        "#,
        evaluated_on(&variables),
    );
}

#[test]
fn an_enum_compares_by_its_variant_name_and_a_path_reads_its_payload() {
    assert_outcomes(
        r#"
        status == "Shipped" && status != "Pending" && pending == "Pending" => true
        status.carrier == "DHL" && status != pending => true
        status < "Z" => `status` is an enum, but `<`, `<=`, `>` and `>=` need numbers or text
        "#,
        evaluated_on(&shop()),
    );
}

#[test]
fn null_equals_only_null() {
    let variables = [var("none", value(Kind::Null(0))), var("zero", int(0))];
    assert_outcomes(
        r#"
        none == null && zero != null && none != 0 && !(zero == null) => true
        none < 1 => `none` is null, but `<`, `<=`, `>` and `>=` need numbers or text
        "#,
        evaluated_on(&variables),
    );
}

#[test]
fn len_counts_characters_bytes_items_and_entries_including_those_not_captured() {
    let bytes = value(Kind::Bytes(v1::Bytes {
        value: vec![1, 2, 3],
        omitted_bytes: 2,
    }));
    let variables = [
        var("name", text("héllo")),
        var("blob", bytes),
        var("ids", list(vec![int(1), int(2)], 5)),
        var("scores", map(vec![(text("a"), int(1))], 2)),
    ];
    assert_outcomes(
        r#"
        name.len() == 5 && blob.len() == 5 && ids.len() == 7 && scores.len() == 3 => true
        "日本".len() == 2 => true
        "#,
        evaluated_on(&variables),
    );
}

#[test]
fn contains_finds_a_substring_or_an_equal_item_and_refuses_to_guess_past_what_was_captured() {
    let hidden = value(Kind::Redacted(v1::Redacted {}));
    let numbers = vec![int(1), value(Kind::Uint(2)), value(Kind::Float(3.0))];
    let variables = [
        var("tags", list(vec![text("beta"), text("eu")], 0)),
        var("partial", list(vec![text("beta")], 4)),
        var("ids", list(numbers, 0)),
        var("secrets", list(vec![text("beta"), hidden], 0)),
    ];
    assert_outcomes(
        r#"
        tags.contains("eu") && !tags.contains("us") && "team-beta".contains("beta") => true
        partial.contains("beta") && ids.contains(2) && ids.contains(3) && !ids.contains(4) => true
        secrets.contains("beta") => true
        partial.contains("us") => `partial` is truncated: 4 of its items were not captured
        secrets.contains("us") => `secrets[1]` is redacted; a condition cannot read it
        tags.contains(3) => type mismatch between `tags[0]` (text) and `3` (a number)
        ids.len().contains(1) => `ids.len()` is a number, but contains(..) needs text or a list
        "#,
        evaluated_on(&variables),
    );
}

#[test]
fn and_and_or_stop_at_the_first_operand_that_settles_them() {
    assert_outcomes(
        r#"
        false && missing.x == 1 => false
        true || missing => true
        true && missing == 1 => missing path `missing`: the snapshot has no variable of this name
        "#,
        evaluated_on(&shop()),
    );
}

#[test]
fn a_value_used_as_a_condition_must_be_a_boolean() {
    assert_outcomes(
        r#"
        user.admin && !!user.admin => true
        user.admin || tags => true
        user.tier => `user.tier` is text, but a condition must be true or false
        !cart => `cart` is a struct, but `!` needs a boolean
        !user.admin || tags => `tags` is a list, but `||` needs booleans
        "#,
        evaluated_on(&shop()),
    );
}

#[test]
fn two_paths_compare_by_the_same_rules_as_a_path_and_a_literal() {
    assert_outcomes(
        r#"
        cart.items[0].qty > cart.items[1].qty && cart.items[0].sku != user.tier => true
        cart.total == user.tier => type mismatch between `cart.total` (a number) and `user.tier` (text)
        cart.items == tags => `cart.items` is a list, but `==` and `!=` need numbers, text, booleans, enums or null
        "#,
        evaluated_on(&shop()),
    );
}

#[test]
fn map_entries_are_reached_by_field_name_quoted_key_or_integer_index() {
    let entries = vec![
        (text("content-type"), text("json")),
        (int(404), text("gone")),
        (text("ua"), text("curl")),
    ];
    let variables = [var("headers", map(entries, 0))];
    assert_outcomes(
        r#"
        headers["content-type"] == "json" && headers[404] == "gone" && headers.ua == "curl" => true
        headers.host == null => missing path `headers.host`: the map has no key "host"
        "#,
        evaluated_on(&variables),
    );
}
