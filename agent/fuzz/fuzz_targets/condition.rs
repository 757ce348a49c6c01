//! Breakpoint conditions: parsing any text either fails with a position inside it or yields a condition
//! that keeps its source, and checking and evaluating that condition on a captured snapshot holding every
//! kind of value (cut, redacted, truncated and failed ones included) never panics and always gives the
//! same answer.

#![no_main]

use std::sync::OnceLock;

use keyhole_proto::condition::{parse, MAX_SOURCE_BYTES};
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::{self, value::Kind};
use libfuzzer_sys::fuzz_target;

/// The probe's variables for the static check: those captured below, and one that is never captured.
const VARIABLES: [&str; 7] = ["order", "user", "tags", "status", "pending", "blob", "absent"];

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let condition = match parse(source) {
        Ok(condition) => condition,
        Err(error) => {
            assert!(error.position <= source.len(), "{error} is past the end");
            let _ = error.to_string();
            return;
        }
    };
    assert!(source.len() <= MAX_SOURCE_BYTES);
    assert_eq!(condition.source(), source);

    let (redaction, snapshot) = fixtures();
    let checked = condition.check(&VARIABLES, redaction);
    if let Err(error) = &checked {
        assert!(error.position <= source.len(), "{error} is past the end");
    }
    assert_eq!(condition.check(&VARIABLES, redaction), checked);

    let evaluated = condition.eval(snapshot);
    if let Err(error) = &evaluated {
        let _ = error.to_string();
    }
    assert_eq!(condition.eval(snapshot), evaluated);
    let _ = condition.eval(&[]);
});

fn fixtures() -> &'static (RedactionList, Vec<v1::Field>) {
    static FIXTURES: OnceLock<(RedactionList, Vec<v1::Field>)> = OnceLock::new();
    FIXTURES.get_or_init(|| (RedactionList::default(), snapshot()))
}

/// A small captured snapshot with every kind of value the agent sends.
fn snapshot() -> Vec<v1::Field> {
    let item = |sku: &str, qty: i64| {
        record(
            "Item",
            vec![("sku", text(sku, 0)), ("qty", value(Kind::Int(qty)))],
            0,
        )
    };
    let items = list(vec![item("A-1", 2), item("B-7", 1)], 3);
    let prices = map(
        vec![
            (text("A-1", 0), value(Kind::Float(9.5))),
            (value(Kind::Uint(7)), value(Kind::Float(f64::NAN))),
            (value(Kind::Int(-1)), value(Kind::Null(0))),
        ],
        1,
    );
    let order = record(
        "Order",
        vec![
            ("items", items),
            ("prices", prices),
            ("total", value(Kind::Uint(u64::MAX))),
            ("paid", value(Kind::Bool(false))),
            ("note", text("gift wrap", 12)),
            ("token", value(Kind::Redacted(v1::Redacted {}))),
            (
                "history",
                value(Kind::Truncated(v1::Truncated {
                    type_name: "Vec<Event>".to_owned(),
                    reason: v1::TruncationReason::Depth as i32,
                })),
            ),
            (
                "lazy",
                value(Kind::Error(v1::CaptureError {
                    message: "Debug panicked".to_owned(),
                })),
            ),
        ],
        2,
    );
    let user = record(
        "User",
        vec![
            ("tier", text("gold", 0)),
            ("email", text("admin@example.com", 0)),
            ("age", value(Kind::Int(i64::MIN))),
        ],
        0,
    );
    let shipped = record("Shipped", vec![("carrier", text("DHL", 0))], 0);
    vec![
        field("order", order),
        field("user", user),
        field(
            "tags",
            list(vec![text("beta", 0), text("eu", 0), value(Kind::Null(0))], 0),
        ),
        field("status", variant("Shipped", Some(shipped))),
        field("pending", variant("Pending", None)),
        field(
            "blob",
            value(Kind::Bytes(v1::Bytes {
                value: vec![0, 159, 146, 150],
                omitted_bytes: 4,
            })),
        ),
        v1::Field {
            name: "empty".to_owned(),
            value: None,
        },
    ]
}

fn value(kind: Kind) -> v1::Value {
    v1::Value { kind: Some(kind) }
}

fn text(text: &str, omitted_bytes: u64) -> v1::Value {
    value(Kind::Text(v1::Text {
        value: text.to_owned(),
        omitted_bytes,
    }))
}

fn list(items: Vec<v1::Value>, omitted_items: u64) -> v1::Value {
    value(Kind::List(v1::List { items, omitted_items }))
}

fn map(entries: Vec<(v1::Value, v1::Value)>, omitted_entries: u64) -> v1::Value {
    let entries = entries
        .into_iter()
        .map(|(key, value)| v1::MapEntry {
            key: Some(key),
            value: Some(value),
        })
        .collect();
    value(Kind::Map(v1::Map {
        entries,
        omitted_entries,
    }))
}

fn record(type_name: &str, fields: Vec<(&str, v1::Value)>, omitted_fields: u64) -> v1::Value {
    value(Kind::Struct(v1::Struct {
        type_name: type_name.to_owned(),
        fields: fields
            .into_iter()
            .map(|(name, value)| field(name, value))
            .collect(),
        omitted_fields,
    }))
}

fn variant(name: &str, payload: Option<v1::Value>) -> v1::Value {
    value(Kind::Enum(Box::new(v1::Enum {
        type_name: "Status".to_owned(),
        variant: name.to_owned(),
        payload: payload.map(Box::new),
    })))
}

fn field(name: &str, value: v1::Value) -> v1::Field {
    v1::Field {
        name: name.to_owned(),
        value: Some(value),
    }
}
