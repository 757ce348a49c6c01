//! The condition language's stories, one file per job, and the snapshot
//! builders and outcome tables they share. The stories that cross every job
//! live here.

mod check;
mod eval;
mod parse;

use super::*;
use crate::v1::value::Kind;

fn value(kind: Kind) -> v1::Value {
    v1::Value { kind: Some(kind) }
}
fn int(n: i64) -> v1::Value {
    value(Kind::Int(n))
}
fn text(s: &str) -> v1::Value {
    cut_text(s, 0)
}
fn cut_text(s: &str, omitted_bytes: u64) -> v1::Value {
    value(Kind::Text(v1::Text {
        value: s.to_owned(),
        omitted_bytes,
    }))
}
fn list(items: Vec<v1::Value>, omitted_items: u64) -> v1::Value {
    value(Kind::List(v1::List { items, omitted_items }))
}
fn record(name: &str, fields: Vec<(&str, v1::Value)>, omitted_fields: u64) -> v1::Value {
    let fields = fields.into_iter().map(|(name, value)| var(name, value)).collect();
    let type_name = name.to_owned();
    value(Kind::Struct(v1::Struct {
        type_name,
        fields,
        omitted_fields,
    }))
}
fn map(entries: Vec<(v1::Value, v1::Value)>, omitted_entries: u64) -> v1::Value {
    let entries = entries.into_iter().map(|(k, v)| v1::MapEntry {
        key: Some(k),
        value: Some(v),
    });
    value(Kind::Map(v1::Map {
        entries: entries.collect(),
        omitted_entries,
    }))
}
fn variant(name: &str, payload: Option<v1::Value>) -> v1::Value {
    let (type_name, variant, payload) = ("Status".to_owned(), name.to_owned(), payload.map(Box::new));
    value(Kind::Enum(Box::new(v1::Enum {
        type_name,
        variant,
        payload,
    })))
}
fn var(name: &str, value: v1::Value) -> v1::Field {
    v1::Field {
        name: name.to_owned(),
        value: Some(value),
    }
}

/// The snapshot most stories run on.
fn shop() -> Vec<v1::Field> {
    let item = |sku, qty| record("Item", vec![("sku", text(sku)), ("qty", int(qty))], 0);
    let items = list(vec![item("A-1", 2), item("B-7", 1)], 0);
    let cart = record(
        "Cart",
        vec![("items", items), ("total", value(Kind::Float(12.5)))],
        0,
    );
    let admin = value(Kind::Bool(true));
    let user = vec![
        ("tier", text("gold")),
        ("email", text("admin@example.com")),
        ("admin", admin),
    ];
    let shipped = record("Shipped", vec![("carrier", text("DHL"))], 0);
    vec![
        var("cart", cart),
        var("user", record("User", user, 0)),
        var("tags", list(vec![text("beta"), text("eu")], 0)),
        var("status", variant("Shipped", Some(shipped))),
        var("pending", variant("Pending", None)),
    ]
}

/// Runs each `condition => expected outcome` line of `table`.
fn assert_outcomes(table: &str, outcome: impl Fn(&str) -> String) {
    for line in table.lines().map(str::trim).filter(|line| !line.is_empty()) {
        let (source, expected) = line
            .split_once(" => ")
            .expect("a line reads `condition => outcome`");
        assert_eq!(outcome(source), expected, "{source}");
    }
}
fn evaluated_on(variables: &[v1::Field]) -> impl Fn(&str) -> String + '_ {
    move |source| match parse(source).map(|condition| condition.eval(variables)) {
        Ok(Ok(holds)) => holds.to_string(),
        Ok(Err(error)) => error.to_string(),
        Err(error) => format!("parse error {error}"),
    }
}
fn parsed(source: &str) -> String {
    parse(source).map_or_else(|error| error.to_string(), |_| "parses".to_owned())
}
fn checked_against<'a>(variables: &'a [&'a str]) -> impl Fn(&str) -> String + 'a {
    move |source| {
        let checked = parse(source).and_then(|c| c.check(variables, &RedactionList::default()));
        checked.map_or_else(|error| error.to_string(), |()| "ok".to_owned())
    }
}

#[test]
fn the_examples_of_the_design_parse_pass_the_check_and_evaluate_on_a_captured_cart() {
    let variables = ["cart", "user", "tags", "status"];
    let examples = [
        (r#"cart.items[0].sku == "A-1" && user.tier != "free""#, true),
        ("cart.items.len() > 3", false),
        (r#"user.email.starts_with("admin")"#, true),
        (r#"tags.contains("beta")"#, true),
        ("!(cart.total < 10.5)", true),
        (
            r#"status == "Shipped" || cart . items [ 1 ] [ "qty" ] >= 2"#,
            true,
        ),
    ];
    for (source, expected) in examples {
        let condition = parse(source).expect(source);
        assert_eq!(condition.source(), source);
        assert_eq!(
            condition.check(&variables, &RedactionList::default()),
            Ok(()),
            "{source}"
        );
        assert_eq!(condition.eval(&shop()), Ok(expected), "{source}");
    }
}
