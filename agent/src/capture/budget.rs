//! The snapshot's byte budget: the exact protobuf size of the value tree, counted while the tree is built.
//!
//! Every value charges its encoded bytes as it is made, and every container charges its own key and length
//! prefix when it closes, so the running total is always the encoded size of what was captured so far. That
//! lets the walk stop *before* it spends more than the budget, instead of measuring a finished tree.

/// Running count of encoded bytes, against the snapshot's cap.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotBudget {
    used: usize,
    max: usize,
}

/// A position in the budget: where a value (or a field holding one) started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark(usize);

impl SnapshotBudget {
    pub(crate) fn new(max: usize) -> Self {
        Self { used: 0, max }
    }

    #[inline]
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Whether nothing more may be captured; checked before each value is walked.
    #[inline]
    pub(crate) fn exhausted(&self) -> bool {
        self.used >= self.max
    }

    /// Bytes left before the cap, which bounds how much of a string may still be copied.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.max.saturating_sub(self.used)
    }

    #[inline]
    pub(crate) fn charge(&mut self, bytes: usize) {
        self.used += bytes;
    }

    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.used)
    }

    /// Forgets what was charged since `mark`: the part built since then was thrown away (a user's
    /// `Serialize` failed or panicked half-way).
    #[inline]
    pub(crate) fn rewind(&mut self, mark: Mark) {
        self.used = mark.0;
    }

    /// Charges the key and length prefix of a length-delimited field whose content is everything charged
    /// since `mark`. Closing a message in its parent field always looks like this, whatever the message.
    #[inline]
    pub(crate) fn close(&mut self, mark: Mark) {
        let content = self.used - mark.0;
        self.used += KEY_BYTES + varint_len(content as u64);
    }

    /// Charges a whole message of `content` bytes as one field (key, length, content).
    #[inline]
    pub(crate) fn charge_message(&mut self, content: usize) {
        self.used += delimited(content);
    }
}

/// Every field number in `values.proto` (and `Snapshot.variables`, 15) is below 16, so every key is one byte.
const KEY_BYTES: usize = 1;

/// Bytes of `value` as a protobuf varint.
#[inline]
pub(crate) fn varint_len(value: u64) -> usize {
    // Each byte carries 7 bits; `| 1` makes zero take one byte like any other small number.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of a length-delimited field holding `content` bytes.
#[inline]
pub(crate) fn delimited(content: usize) -> usize {
    KEY_BYTES + varint_len(content as u64) + content
}

/// Bytes of a proto3 `string` field: nothing at all when empty.
#[inline]
pub(crate) fn string_field(text: &str) -> usize {
    if text.is_empty() {
        0
    } else {
        delimited(text.len())
    }
}

/// Bytes of a proto3 `uint64` field (or an enum number): nothing at all when zero.
#[inline]
pub(crate) fn uint_field(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        KEY_BYTES + varint_len(value)
    }
}

/// Bytes of a `Value` holding a varint scalar (`bool`, `uint`, the `Null` enum, or zigzagged `int`).
/// A oneof member is written even when it holds zero.
#[inline]
pub(crate) fn varint_value(value: u64) -> usize {
    KEY_BYTES + varint_len(value)
}

/// Bytes of a `Value` holding a `double`.
pub(crate) const FLOAT_VALUE: usize = KEY_BYTES + 8;

/// Protobuf's `sint64` zigzag encoding, so small negative numbers stay small.
#[inline]
pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// An encoded-size oracle written straight from the protobuf rules over a finished tree, so tests can check
/// the running count against it (it agrees with prost's `encoded_len`; see the report with this module).
#[cfg(test)]
pub(crate) mod oracle {
    use keyhole_proto::v1::{value::Kind, Field, Value};

    use super::{delimited, string_field, uint_field, varint_len, zigzag};

    pub(crate) fn value_len(value: &Value) -> usize {
        let Some(kind) = &value.kind else { return 0 };
        match kind {
            Kind::Null(n) => 1 + varint_len(*n as u64),
            Kind::Bool(b) => 1 + varint_len(u64::from(*b)),
            Kind::Int(i) => 1 + varint_len(zigzag(*i)),
            Kind::Uint(u) => 1 + varint_len(*u),
            Kind::Float(_) => 9,
            Kind::Text(t) => delimited(string_field(&t.value) + uint_field(t.omitted_bytes)),
            Kind::Bytes(b) => {
                let bytes = if b.value.is_empty() {
                    0
                } else {
                    delimited(b.value.len())
                };
                delimited(bytes + uint_field(b.omitted_bytes))
            }
            Kind::List(l) => delimited(
                l.items
                    .iter()
                    .map(|item| delimited(value_len(item)))
                    .sum::<usize>()
                    + uint_field(l.omitted_items),
            ),
            Kind::Map(m) => delimited(
                m.entries
                    .iter()
                    .map(|entry| {
                        let key = entry.key.as_ref().map_or(0, |k| delimited(value_len(k)));
                        let value = entry.value.as_ref().map_or(0, |v| delimited(value_len(v)));
                        delimited(key + value)
                    })
                    .sum::<usize>()
                    + uint_field(m.omitted_entries),
            ),
            Kind::Struct(s) => delimited(
                string_field(&s.type_name)
                    + s.fields.iter().map(|f| delimited(field_len(f))).sum::<usize>()
                    + uint_field(s.omitted_fields),
            ),
            Kind::Enum(e) => delimited(
                string_field(&e.type_name)
                    + string_field(&e.variant)
                    + e.payload.as_ref().map_or(0, |p| delimited(value_len(p))),
            ),
            Kind::Redacted(_) => delimited(0),
            Kind::Truncated(t) => delimited(string_field(&t.type_name) + uint_field(t.reason as u64)),
            Kind::Error(e) => delimited(string_field(&e.message)),
        }
    }

    pub(crate) fn field_len(field: &Field) -> usize {
        string_field(&field.name) + field.value.as_ref().map_or(0, |v| delimited(value_len(v)))
    }

    /// Bytes the variables add to a `Snapshot` (each one is a repeated field there).
    pub(crate) fn variables_len(fields: &[Field]) -> usize {
        fields.iter().map(|f| delimited(field_len(f))).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyhole_proto::redaction::RedactionList;
    use keyhole_proto::v1::CaptureLimits;
    use proptest::prelude::*;
    use serde::Serialize;

    use super::oracle::{value_len, variables_len};
    use super::*;
    use crate::capture::{Capturer, Secret};

    #[test]
    fn varints_take_one_byte_per_seven_bits() {
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(16_383), 2);
        assert_eq!(varint_len(16_384), 3);
        assert_eq!(varint_len(u64::MAX), 10);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[derive(Serialize)]
    enum Shape {
        Dot,
        Circle(f64),
        Line(i32, i32),
        Rect { width: u32, password: String },
    }

    #[derive(Serialize)]
    struct Everything {
        flag: bool,
        small: i8,
        big: u128,
        huge: i128,
        text: String,
        bytes: serde_bytes_like::Bytes,
        maybe: Option<u16>,
        shapes: Vec<Shape>,
        table: BTreeMap<String, (char, f32)>,
        api_key: String,
        hidden: Secret<String>,
        nested: Vec<Vec<Vec<Vec<u8>>>>,
    }

    /// `serialize_bytes` without another dependency.
    mod serde_bytes_like {
        pub struct Bytes(pub Vec<u8>);
        impl serde::Serialize for Bytes {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }
    }

    fn everything() -> Everything {
        Everything {
            flag: true,
            small: -3,
            big: u128::MAX,
            huge: -5,
            text: "héllo wörld ".repeat(40),
            bytes: serde_bytes_like::Bytes(vec![7; 400]),
            maybe: None,
            shapes: vec![
                Shape::Dot,
                Shape::Circle(1.5),
                Shape::Line(-1, 300),
                Shape::Rect {
                    width: 3,
                    password: "hunter2".into(),
                },
            ],
            table: (0..150).map(|i| (format!("key{i}"), ('é', i as f32))).collect(),
            api_key: "k".into(),
            hidden: Secret("s".into()),
            nested: vec![vec![vec![vec![1, 2, 3]]]],
        }
    }

    #[test]
    fn bytes_used_is_the_encoded_size_of_the_captured_variables() {
        let limits = keyhole_proto::limits::default_capture_limits();
        let redaction = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &redaction);
        let fields = vec![
            capturer.variable("everything", |c| c.serialize(&everything())),
            capturer.variable("debugged", |c| c.debug(&everything().shapes.len())),
            capturer.variable("opaque", |c| c.type_name_of::<std::fs::File>()),
            capturer.variable("password", |c| c.serialize(&1)),
        ];
        assert_eq!(capturer.bytes_used(), variables_len(&fields));
    }

    #[test]
    fn bytes_used_stays_exact_when_the_budget_runs_out_mid_walk() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 700,
            ..Default::default()
        };
        let redaction = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &redaction);
        let fields: Vec<_> = (0..4)
            .map(|i| capturer.variable(&format!("v{i}"), |c| c.serialize(&everything())))
            .collect();
        assert_eq!(capturer.bytes_used(), variables_len(&fields));
        assert!(
            capturer.bytes_used() < 700 + 200,
            "overshoot is one marker per open container"
        );
    }

    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(6, 200, 12, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..12).prop_map(serde_json::Value::Array),
                prop::collection::btree_map("[a-zA-Z_]{0,10}", inner, 0..12)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_value_is_counted_exactly_and_stays_within_the_limits(
            value in json(),
            depth in 1u32..6,
            items in 1u32..8,
            string_bytes in 1u32..20,
            snapshot_bytes in 1u32..2000,
        ) {
            let limits = CaptureLimits {
                max_depth: depth,
                max_items: items,
                max_string_bytes: string_bytes,
                max_snapshot_bytes: snapshot_bytes,
                ..Default::default()
            };
            let redaction = RedactionList::default();
            let mut capturer = Capturer::new(&limits, &redaction);
            let captured = capturer.serialize(&value);
            prop_assert_eq!(capturer.bytes_used(), value_len(&captured));
            prop_assert!(crate::capture::testing::within_limits(&captured, &limits));
        }
    }
}
