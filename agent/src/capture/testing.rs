//! Helpers for the capture tests: capturing under given limits and reading the captured tree back, checking
//! on the way that what capture wrote is exactly what prost writes for that tree.

use std::cell::Cell;

use keyhole_proto::limits::default_capture_limits;
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::{value::Kind, CaptureLimits, Field, List, Map, Truncated, TruncationReason, Value};
use prost::Message;
use serde::{Serialize, Serializer};

use super::{Captured, CapturedVariables, Capturer, ValueSlot};

impl<'a> Capturer<'a> {
    /// Captures one value where the capture stands, not as a variable, and reads it back: how the tests look
    /// at single values. Its bytes count against the snapshot's budget as a variable's value would.
    pub(crate) fn tree(&mut self, capture: impl FnOnce(ValueSlot<'_, 'a>) -> Captured) -> Value {
        let start = self.wire.mark();
        let _: Captured = capture(ValueSlot { capturer: self });
        decoded_canonical(&self.wire.encoded_since(start))
    }
}

impl CapturedVariables {
    /// The variables as a tree; fails the test unless their encoding is canonical.
    pub(crate) fn fields(&self) -> Vec<Field> {
        let variables = self
            .decode()
            .unwrap_or_else(|e| panic!("the variables decode: {e}"));
        let snapshot = keyhole_proto::v1::Snapshot {
            variables: variables.clone(),
            ..Default::default()
        };
        assert_eq!(
            snapshot.encode_to_vec(),
            self.encoded(),
            "capture wrote what prost writes for the same variables"
        );
        variables
    }
}

/// `bytes` as a message; fails the test unless they decode, and prost encodes the result to the same bytes.
fn decoded_canonical<M: Message + Default>(bytes: &[u8]) -> M {
    let decoded = M::decode(bytes).unwrap_or_else(|e| panic!("the capture decodes: {e}"));
    assert_eq!(
        decoded.encode_to_vec(),
        bytes,
        "capture wrote what prost writes for the same tree"
    );
    decoded
}

fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

/// The fields of a captured struct; panics (failing the test) on anything else.
pub(crate) fn fields_of(value: &Value) -> &[Field] {
    match &value.kind {
        Some(Kind::Struct(s)) => &s.fields,
        other => panic!("expected a struct, got {other:?}"),
    }
}

/// The payload of a captured enum.
pub(crate) fn payload_of(value: &Value) -> &Value {
    match &value.kind {
        Some(Kind::Enum(e)) => e
            .payload
            .as_deref()
            .unwrap_or_else(|| panic!("no payload in {e:?}")),
        other => panic!("expected an enum, got {other:?}"),
    }
}

/// Whether `value` respects the per-value limits (depth counted from 0 at `value`).
pub(crate) fn within_limits(value: &Value, limits: &CaptureLimits) -> bool {
    fn walk(value: &Value, depth: u32, limits: &CaptureLimits) -> bool {
        let Some(kind) = &value.kind else { return false };
        let leaf_ok = |kind: &Kind| match kind {
            Kind::Text(t) => t.value.len() <= limits.max_string_bytes as usize,
            Kind::Bytes(b) => b.value.len() <= limits.max_string_bytes as usize,
            _ => true,
        };
        if depth >= limits.max_depth {
            return matches!(kind, Kind::Truncated(_) | Kind::Redacted(_));
        }
        let child = |v: &Value| walk(v, depth + 1, limits);
        match kind {
            Kind::List(l) => l.items.len() <= limits.max_items as usize && l.items.iter().all(child),
            Kind::Map(m) => {
                m.entries.len() <= limits.max_items as usize
                    && m.entries.iter().all(|e| e.value.as_ref().is_none_or(child))
            }
            Kind::Struct(s) => {
                s.fields.len() <= limits.max_fields.max(1) as usize
                    && s.fields.iter().all(|f| f.value.as_ref().is_none_or(child))
            }
            other => leaf_ok(other),
        }
    }
    walk(value, 0, &limits.or_defaults(&default_capture_limits()))
}

pub(crate) fn capture_with<T: Serialize + ?Sized>(limits: CaptureLimits, value: &T) -> Value {
    let list = RedactionList::default();
    Capturer::new(&limits, &list).tree(|slot| slot.serialize(value))
}

pub(crate) fn field<'v>(value: &'v Value, name: &str) -> &'v Value {
    fields_of(value)
        .iter()
        .find(|f| f.name == name)
        .and_then(|f| f.value.as_ref())
        .unwrap_or_else(|| panic!("no field {name} in {value:?}"))
}

pub(crate) fn list_of(value: &Value) -> &List {
    match &value.kind {
        Some(Kind::List(list)) => list,
        other => panic!("expected a list, got {other:?}"),
    }
}

pub(crate) fn map_of(value: &Value) -> &Map {
    match &value.kind {
        Some(Kind::Map(map)) => map,
        other => panic!("expected a map, got {other:?}"),
    }
}

pub(crate) fn truncated(type_name: &str, reason: TruncationReason) -> Value {
    value(Kind::Truncated(Truncated {
        type_name: type_name.to_owned(),
        reason: reason as i32,
    }))
}

/// Counts how often serde asked it to serialize itself.
pub(crate) struct Counted<'c>(pub(crate) &'c Cell<usize>);

impl Serialize for Counted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.set(self.0.get() + 1);
        serializer.serialize_u8(0)
    }
}
