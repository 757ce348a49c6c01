//! Capture of a probe's variables into Keyhole's bounded value tree (`keyhole.v1.Value`), with every limit
//! and every redaction applied while the value is walked, never afterwards.
//!
//! A [`Capturer`] serves one snapshot. Each [`variable`](Capturer::variable) is captured through a
//! [`ValueSlot`], which walks the value through serde ([`ValueSlot::serialize`]), through `Debug`
//! ([`ValueSlot::debug`]) or records only its type ([`ValueSlot::type_name_of`]). What is captured is
//! written as protobuf as the walk goes (see `wire`): the snapshot's variables come out encoded, in one
//! buffer, and their size is the snapshot's byte budget, counted exactly.
//!
//! **Depth.** The variable itself is depth 0, its fields (items, entries, variant payload fields) depth 1,
//! and so on. A value at depth `max_depth` or deeper is not walked: it becomes
//! `Truncated { type_name, reason: DEPTH }`, named by its Rust type (`Vec<Item>`). So `max_depth = 3`
//! captures `a`, `a.b` and `a.b.c`, and `a.b.c.d` is the marker. Wrappers that add no level of their own are
//! transparent: `Some(x)` and newtype structs are `x` at the same depth, and an enum's tuple or struct
//! payload sits at the enum's depth, its fields one below (as a struct's would).
//!
//! **Limits** (zero in any field means the default, as on the wire): fields per struct (`omitted_fields`),
//! items per sequence, tuple and tuple struct (`omitted_items`), entries per map (`max_items`,
//! `omitted_entries`), bytes per string or byte string (cut on a char boundary, `omitted_bytes`), and the
//! snapshot's bytes across all its variables. Once the snapshot's bytes are spent, the first value that no
//! longer fits becomes `Truncated { reason: SNAPSHOT_BYTES }` and the rest of its container is counted as
//! omitted; strings are also cut to what the snapshot has left. The serde mapping is in `serializer`.
//!
//! **Redaction.** Struct fields, enum struct-variant fields, map entries with a string (or unit-variant)
//! key and variables whose normalised name is on the [`RedactionList`] become `Redacted` and their value is
//! never walked; so does any [`Secret`].
//!
//! **Failures.** A panic in a user's `Serialize`, `Debug` or `Display` impl, or in a variable's expression,
//! is caught and becomes a `CaptureError` value; so does an error an impl returns, for the part it failed.

mod compound;
mod debug;
mod leaf;
mod map;
#[cfg(test)]
mod redaction;
mod secret;
mod serializer;
#[cfg(test)]
mod testing;
mod wire;

use std::any::Any;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};

use keyhole_proto::limits::default_capture_limits;
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::{CaptureLimits, Field, Snapshot};
use prost::Message as _;
use serde::Serialize;

use self::wire::Wire;

pub use self::secret::Secret;

/// One snapshot's capture: its variables, under the limits, and the byte budget they share.
///
/// ```
/// use keyhole::capture::Capturer;
/// use keyhole_proto::redaction::RedactionList;
/// use keyhole_proto::v1::{value::Kind, CaptureLimits};
///
/// #[derive(serde::Serialize)]
/// struct Cart {
///     items: Vec<&'static str>,
///     password: &'static str,
/// }
///
/// let limits = CaptureLimits { max_items: 2, ..Default::default() };
/// let redaction = RedactionList::default();
/// let mut capturer = Capturer::new(&limits, &redaction);
/// let cart = Cart { items: vec!["apple", "pear", "fig"], password: "hunter2" };
/// capturer.variable("cart", |slot| slot.serialize(&cart));
/// assert!(capturer.bytes_used() > 0);
///
/// let variables = capturer.finish().decode()?;
/// let Some(Kind::Struct(cart)) = variables[0].value.clone().and_then(|v| v.kind) else { unreachable!() };
/// let Some(Kind::List(items)) = cart.fields[0].value.clone().and_then(|v| v.kind) else { unreachable!() };
/// assert_eq!((items.items.len(), items.omitted_items), (2, 1));
/// assert!(matches!(cart.fields[1].value.clone().and_then(|v| v.kind), Some(Kind::Redacted(_))));
/// # Ok::<(), prost::DecodeError>(())
/// ```
#[derive(Debug)]
pub struct Capturer<'a> {
    limits: Limits,
    names: &'a RedactionList,
    wire: Wire,
    /// Reused for the type names of depth markers, so that writing one allocates nothing.
    type_name: String,
}

/// The per-value limits, resolved and widened once so the walk compares without conversions.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_depth: u32,
    max_fields: usize,
    max_items: usize,
    max_string_bytes: usize,
}

/// What a capture starts its buffer with: room for a typical snapshot's variables, so that most captures
/// grow it at most a few times. It grows with the snapshot, never past the snapshot limit by much.
const INITIAL_BUFFER_BYTES: usize = 1024;

impl<'a> Capturer<'a> {
    /// A capture under `limits` (a zero field means its default, as in the protocol) redacting the names on
    /// `redaction`.
    pub fn new(limits: &'a CaptureLimits, redaction: &'a RedactionList) -> Self {
        let limits = limits.or_defaults(&default_capture_limits());
        let widen = |limit: u32| usize::try_from(limit).unwrap_or(usize::MAX);
        let max_bytes = widen(limits.max_snapshot_bytes);
        Self {
            limits: Limits {
                max_depth: limits.max_depth,
                max_fields: widen(limits.max_fields),
                max_items: widen(limits.max_items),
                max_string_bytes: widen(limits.max_string_bytes),
            },
            names: redaction,
            wire: Wire::new(max_bytes, Vec::with_capacity(max_bytes.min(INITIAL_BUFFER_BYTES))),
            type_name: String::new(),
        }
    }

    /// One variable of the probe. A redacted `name` (compared normalised) gives a `Redacted` value and
    /// `capture` is never called, so the expression behind it is not even evaluated; otherwise `capture`
    /// captures the value into the slot it is given. A panic in `capture` (say, in a probe's
    /// `name = expr`) becomes a `CaptureError` for this variable alone. Names are the probe's, written
    /// in its source: the redaction list remembers its answer for each.
    pub fn variable(&mut self, name: &'static str, capture: impl FnOnce(ValueSlot<'_, 'a>) -> Captured) {
        let variable = self.wire.open(wire::SNAPSHOT_VARIABLE);
        self.wire.string_field(wire::field::NAME, name.as_bytes());
        let value = self.wire.open(wire::field::VALUE);
        if self.names.is_redacted_static(name) {
            self.redacted();
        } else {
            let start = self.wire.mark();
            // The slot's methods catch their own panics; what is left is the probe's own expression.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| capture(ValueSlot { capturer: self }))) {
                self.wire.rewind(start);
                self.capture_error(&panic_message("the variable's expression", payload.as_ref()));
            }
        }
        self.wire.close(value);
        self.wire.close(variable);
    }

    /// Bytes captured so far: the protobuf encoded size of the variables, exactly, once each
    /// [`variable`](Self::variable) has returned.
    pub fn bytes_used(&self) -> usize {
        self.wire.used()
    }

    /// The captured variables.
    pub fn finish(self) -> CapturedVariables {
        CapturedVariables {
            encoded: self.wire.into_bytes(),
        }
    }
}

/// Where one variable's value is captured: used once, by one of its methods.
pub struct ValueSlot<'c, 'a> {
    capturer: &'c mut Capturer<'a>,
}

/// A value was written into a [`ValueSlot`]. Only the slot's methods make one.
#[derive(Debug)]
#[must_use]
pub struct Captured(());

impl ValueSlot<'_, '_> {
    /// Captures `value` structurally through serde, as depth 0 (see the [module docs](self) for the mapping
    /// and the limits). A panic in the value's `Serialize` impl is caught and becomes a `CaptureError`, as
    /// does an error it returns; an error in one part of the value spoils only that part.
    pub fn serialize<T: Serialize + ?Sized>(self, value: &T) -> Captured {
        let capturer = self.capturer;
        let start = capturer.wire.mark();
        let max_depth = capturer.limits.max_depth;
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| capturer.nested(value, 0, max_depth))) {
            capturer.wire.rewind(start);
            capturer.capture_error(&panic_message("the Serialize impl", payload.as_ref()));
        }
        Captured(())
    }

    /// Captures `value` through its `Debug` impl as text of at most `max_string_bytes` (and no more than
    /// the snapshot has left). Output beyond that is never produced: formatting stops at the limit, and
    /// `omitted_bytes` counts what was refused (at least 1 when the text was cut). A panicking `Debug`
    /// becomes a `CaptureError`; so does one that fails on its own.
    ///
    /// ```
    /// use keyhole::capture::Capturer;
    /// use keyhole_proto::redaction::RedactionList;
    /// use keyhole_proto::v1::{value::Kind, CaptureLimits};
    ///
    /// let limits = CaptureLimits { max_string_bytes: 8, ..Default::default() };
    /// let redaction = RedactionList::default();
    /// let mut capturer = Capturer::new(&limits, &redaction);
    /// capturer.variable("numbers", |slot| slot.debug(&vec![1, 2, 3, 4, 5]));
    /// let variables = capturer.finish().decode()?;
    /// let Some(Kind::Text(text)) = variables[0].value.clone().and_then(|v| v.kind) else { unreachable!() };
    /// assert_eq!(text.value, "[1, 2, 3");
    /// assert!(text.omitted_bytes >= 1);
    /// # Ok::<(), prost::DecodeError>(())
    /// ```
    pub fn debug<T: Debug + ?Sized>(self, value: &T) -> Captured {
        self.capturer.debug(value);
        Captured(())
    }

    /// For a type with neither `Serialize` nor `Debug`: a `Struct` with no fields whose `type_name` is the
    /// full path from [`std::any::type_name`] (serde's struct names are bare, so the `::` path also tells
    /// this marker apart from a captured unit struct). Nothing of the value is read.
    ///
    /// ```
    /// use keyhole::capture::Capturer;
    /// use keyhole_proto::redaction::RedactionList;
    /// use keyhole_proto::v1::{value::Kind, CaptureLimits};
    ///
    /// let (limits, redaction) = (CaptureLimits::default(), RedactionList::default());
    /// let mut capturer = Capturer::new(&limits, &redaction);
    /// capturer.variable("file", |slot| slot.type_name_of::<std::fs::File>());
    /// let variables = capturer.finish().decode()?;
    /// let Some(Kind::Struct(opaque)) = variables[0].value.clone().and_then(|v| v.kind) else { unreachable!() };
    /// assert_eq!((opaque.type_name.as_str(), opaque.fields.len()), ("std::fs::File", 0));
    /// # Ok::<(), prost::DecodeError>(())
    /// ```
    pub fn type_name_of<T: ?Sized>(self) -> Captured {
        self.capturer.type_name_of::<T>();
        Captured(())
    }
}

impl Capturer<'_> {
    fn type_name_of<T: ?Sized>(&mut self) {
        if self.wire.exhausted() {
            return self.over_budget();
        }
        let type_name = std::any::type_name::<T>().as_bytes();
        self.wire
            .header(wire::value::STRUCT, wire::string_field_len(type_name));
        self.wire.string_field(wire::structure::TYPE_NAME, type_name);
    }
}

/// A snapshot's captured variables, protobuf-encoded: each a `Snapshot.variables` field, ready to be
/// appended to the rest of the snapshot's encoding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedVariables {
    encoded: Vec<u8>,
}

impl CapturedVariables {
    /// The encoding: `Snapshot.variables` fields (number 15), one per variable.
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The variables as a tree, to read them (a condition is evaluated on them).
    pub fn decode(&self) -> Result<Vec<Field>, prost::DecodeError> {
        Snapshot::decode(self.encoded.as_slice()).map(|snapshot| snapshot.variables)
    }
}

/// What a caught panic in `what` said, for the `CaptureError` that replaces the value. (The process's panic
/// hook has already reported it as usual: the hook is global, and not ours to change.)
fn panic_message(what: &str, payload: &(dyn Any + Send)) -> String {
    let said = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload");
    format!("{what} panicked: {said}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyhole_proto::v1::{value::Kind, CaptureLimits, TruncationReason, Value};
    use proptest::prelude::*;
    use serde::ser::{Error as _, SerializeStruct};
    use serde::{Serialize, Serializer};

    use super::*;
    use crate::capture::testing::{fields_of, within_limits};

    fn text_of(value: &Value) -> &str {
        match &value.kind {
            Some(Kind::Text(t)) => &t.value,
            other => panic!("expected text, got {other:?}"),
        }
    }

    fn reason_of(value: &Value) -> TruncationReason {
        match &value.kind {
            Some(Kind::Truncated(t)) => TruncationReason::try_from(t.reason).unwrap_or_default(),
            other => panic!("expected a truncation, got {other:?}"),
        }
    }

    fn value_of(field: &Field) -> &Value {
        field
            .value
            .as_ref()
            .unwrap_or_else(|| panic!("no value in {field:?}"))
    }

    #[test]
    fn a_redacted_variable_name_never_runs_its_capture_closure() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let names = ["password", "Access_Token", "accessToken", "ACCESS-TOKEN"];
        for name in names {
            capturer.variable(name, |_| panic!("the capture of {name} ran"));
        }
        let variables = capturer.finish().fields();
        for (variable, name) in variables.iter().zip(names) {
            assert_eq!(variable.name, name);
            assert!(matches!(value_of(variable).kind, Some(Kind::Redacted(_))));
        }
    }

    #[test]
    fn a_variable_carries_its_name_and_its_captured_value() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        capturer.variable("total", |slot| slot.serialize(&12.5));
        let variables = capturer.finish().fields();
        assert_eq!(variables[0].name, "total");
        assert_eq!(value_of(&variables[0]).kind, Some(Kind::Float(12.5)));
    }

    struct Exploding;

    impl Serialize for Exploding {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("serialize exploded")
        }
    }

    #[test]
    fn a_panicking_serialize_becomes_a_capture_error_and_the_snapshot_goes_on() {
        #[derive(Serialize)]
        struct Holder {
            fine: u8,
            broken: Exploding,
        }
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        capturer.variable("holder", |slot| {
            slot.serialize(&Holder {
                fine: 1,
                broken: Exploding,
            })
        });
        capturer.variable("next", |slot| slot.serialize("still here"));
        let used = capturer.bytes_used();
        let captured = capturer.finish();
        assert_eq!(used, captured.encoded().len());
        let variables = captured.fields();
        let Some(Kind::Error(error)) = &value_of(&variables[0]).kind else {
            panic!("expected an error: {variables:?}")
        };
        assert!(error.message.contains("serialize exploded"), "{}", error.message);
        assert_eq!(text_of(value_of(&variables[1])), "still here");
    }

    /// A `Serialize` impl that fails with its serializer's own error type after writing half a struct.
    struct Refusing;

    impl Serialize for Refusing {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut half = serializer.serialize_struct("Refusing", 2)?;
            half.serialize_field("written", &1)?;
            Err(S::Error::custom("refused to go on"))
        }
    }

    #[test]
    fn a_custom_serialize_error_spoils_only_its_own_field() {
        #[derive(Serialize)]
        struct Order {
            id: u32,
            detail: Refusing,
            note: &'static str,
        }
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let captured = capturer.tree(|slot| {
            slot.serialize(&Order {
                id: 7,
                detail: Refusing,
                note: "after",
            })
        });
        let fields = fields_of(&captured);
        assert_eq!(value_of(&fields[0]).kind, Some(Kind::Uint(7)));
        let Some(Kind::Error(error)) = &value_of(&fields[1]).kind else {
            panic!("expected an error: {fields:?}")
        };
        assert_eq!(error.message, "refused to go on");
        assert_eq!(text_of(value_of(&fields[2])), "after");
        assert_eq!(capturer.bytes_used(), captured.encoded_len());
    }

    #[test]
    fn the_snapshot_budget_is_shared_by_all_variables() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 72,
            ..Default::default()
        };
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        capturer.variable("first", |slot| slot.serialize(&"x".repeat(40)));
        capturer.variable("second", |slot| slot.serialize(&"y".repeat(40)));
        for name in ["third", "fourth"] {
            capturer.variable(name, |slot| slot.serialize(&1));
        }
        capturer.variable("debugged", |slot| slot.debug(&1));
        capturer.variable("opaque", |slot| slot.type_name_of::<u8>());
        let variables = capturer.finish().fields();
        assert_eq!(text_of(value_of(&variables[0])).len(), 40);
        let cut = text_of(value_of(&variables[1]));
        assert!(cut.len() < 40, "the second string got only what was left: {cut}");
        for later in &variables[2..] {
            assert_eq!(
                reason_of(value_of(later)),
                TruncationReason::SnapshotBytes,
                "{later:?}"
            );
        }
    }

    #[test]
    fn a_panicking_variable_expression_spoils_only_its_own_variable() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        fn cart_total() -> u32 {
            panic!("attempt to add with overflow")
        }
        capturer.variable("total", |slot| slot.serialize(&cart_total()));
        capturer.variable("next", |slot| slot.serialize(&1u8));
        let variables = capturer.finish().fields();
        let Some(Kind::Error(error)) = &value_of(&variables[0]).kind else {
            panic!("expected an error: {variables:?}")
        };
        assert_eq!(
            error.message,
            "the variable's expression panicked: attempt to add with overflow"
        );
        assert_eq!(value_of(&variables[1]).kind, Some(Kind::Uint(1)));
    }

    #[test]
    fn zero_limits_mean_the_defaults() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let captured = capturer.tree(|slot| slot.serialize(&vec![0u8; 150]));
        let Some(Kind::List(list)) = captured.kind else {
            panic!("a list")
        };
        assert_eq!((list.items.len(), list.omitted_items), (100, 50));
    }

    #[test]
    fn a_type_without_serialize_or_debug_is_an_empty_struct_named_by_its_full_path() {
        struct Opaque;
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let captured = Capturer::new(&limits, &list).tree(|slot| slot.type_name_of::<Opaque>());
        let Some(Kind::Struct(opaque)) = captured.kind else {
            panic!("a struct")
        };
        assert!(
            opaque.type_name.starts_with("keyhole::capture::tests::"),
            "{}",
            opaque.type_name
        );
        assert!(opaque.type_name.ends_with("::Opaque"), "{}", opaque.type_name);
        assert!(opaque.fields.is_empty());
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
        empty: String,
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
            empty: String::new(),
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
        capturer.variable("everything", |slot| slot.serialize(&everything()));
        capturer.variable("debugged", |slot| slot.debug(&everything().shapes.len()));
        capturer.variable("opaque", |slot| slot.type_name_of::<std::fs::File>());
        capturer.variable("password", |slot| slot.serialize(&1));
        capturer.variable("", |slot| slot.serialize(""));
        let used = capturer.bytes_used();
        let captured = capturer.finish();
        assert_eq!(used, captured.encoded().len());
        assert_eq!(captured.fields().len(), 5);
    }

    #[test]
    fn bytes_used_stays_exact_when_the_budget_runs_out_mid_walk() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 700,
            ..Default::default()
        };
        let redaction = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &redaction);
        for name in ["v0", "v1", "v2", "v3"] {
            capturer.variable(name, |slot| slot.serialize(&everything()));
        }
        let used = capturer.bytes_used();
        let captured = capturer.finish();
        assert_eq!(captured.fields().len(), 4);
        assert_eq!(used, captured.encoded().len());
        assert!(
            used < 700 + 200,
            "overshoot is one marker per open container: {used}"
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
        fn any_json_value_is_written_canonically_and_stays_within_the_limits(
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
            let captured = capturer.tree(|slot| slot.serialize(&value));
            prop_assert_eq!(capturer.bytes_used(), captured.encoded_len());
            prop_assert!(within_limits(&captured, &limits));
        }
    }
}
