//! Capture of a probe's variables into Keyhole's bounded value tree (`keyhole.v1.Value`), with every limit
//! and every redaction applied while the value is walked, never afterwards.
//!
//! A [`Capturer`] serves one snapshot. It walks values through serde ([`Capturer::serialize`]), through
//! `Debug` ([`Capturer::debug`]) or records only their type ([`Capturer::type_name_of`]), and counts the
//! encoded bytes of everything it made against the snapshot's budget.
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
//! **Failures.** A panic in a user's `Serialize` or `Debug` impl, or in a variable's expression, is caught
//! and becomes a `CaptureError` value; so does an error a `Serialize` impl returns, for the part it failed.

mod budget;
mod compound;
mod debug;
mod leaf;
mod map;
mod redaction;
mod secret;
mod serializer;
#[cfg(test)]
mod testing;

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use keyhole_proto::limits::default_capture_limits;
use keyhole_proto::redaction::RedactionList;
use keyhole_proto::v1::{value::Kind, CaptureLimits, Field, Struct, Value};
use serde::Serialize;

use self::budget::{string_field, SnapshotBudget};
use self::redaction::NameRedactor;

pub use self::secret::Secret;

/// One snapshot's capture: walks values under the limits, and tracks the byte budget shared by all the
/// variables of the snapshot.
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
/// let field = capturer.variable("cart", |c| c.serialize(&cart));
///
/// let Some(Kind::Struct(cart)) = field.value.and_then(|v| v.kind) else { unreachable!() };
/// let Some(Kind::List(items)) = cart.fields[0].value.clone().and_then(|v| v.kind) else { unreachable!() };
/// assert_eq!((items.items.len(), items.omitted_items), (2, 1));
/// assert!(matches!(cart.fields[1].value.clone().and_then(|v| v.kind), Some(Kind::Redacted(_))));
/// assert!(capturer.bytes_used() > 0);
/// ```
#[derive(Debug)]
pub struct Capturer<'a> {
    limits: Limits,
    names: NameRedactor<'a>,
    budget: SnapshotBudget,
}

/// The per-value limits, resolved and widened once so the walk compares without conversions.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_depth: u32,
    max_fields: usize,
    max_items: usize,
    max_string_bytes: usize,
}

impl<'a> Capturer<'a> {
    /// A capture under `limits` (a zero field means its default, as in the protocol) redacting the names on
    /// `redaction`.
    pub fn new(limits: &'a CaptureLimits, redaction: &'a RedactionList) -> Self {
        let limits = limits.or_defaults(&default_capture_limits());
        let widen = |limit: u32| usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            limits: Limits {
                max_depth: limits.max_depth,
                max_fields: widen(limits.max_fields),
                max_items: widen(limits.max_items),
                max_string_bytes: widen(limits.max_string_bytes),
            },
            names: NameRedactor::new(redaction),
            budget: SnapshotBudget::new(widen(limits.max_snapshot_bytes)),
        }
    }

    /// Captures `value` structurally through serde, as depth 0 (see the [module docs](self) for the mapping
    /// and the limits). A panic in the value's `Serialize` impl is caught and becomes a `CaptureError`, as
    /// does an error it returns; an error in one part of the value spoils only that part.
    pub fn serialize<T: Serialize + ?Sized>(&mut self, value: &T) -> Value {
        let start = self.budget.mark();
        let max_depth = self.limits.max_depth;
        match catch_unwind(AssertUnwindSafe(|| self.nested(value, 0, max_depth))) {
            Ok(captured) => captured,
            Err(payload) => {
                self.budget.rewind(start);
                self.capture_error(&panic_message("the Serialize impl", payload.as_ref()))
            }
        }
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
    /// let captured = Capturer::new(&limits, &redaction).type_name_of::<std::fs::File>();
    /// let Some(Kind::Struct(opaque)) = captured.kind else { unreachable!() };
    /// assert_eq!((opaque.type_name.as_str(), opaque.fields.len()), ("std::fs::File", 0));
    /// ```
    pub fn type_name_of<T: ?Sized>(&mut self) -> Value {
        if self.budget.exhausted() {
            return self.over_budget();
        }
        let type_name = std::any::type_name::<T>().to_owned();
        self.budget.charge_message(string_field(&type_name));
        leaf::value(Kind::Struct(Struct {
            type_name,
            fields: Vec::new(),
            omitted_fields: 0,
        }))
    }

    /// One variable of the probe. A redacted `name` (compared normalised) gives a `Redacted` value and
    /// `capture` is never called, so the expression behind it is not even evaluated; otherwise `capture`
    /// captures the value through this capturer. A panic in `capture` (say, in a probe's `name = expr`)
    /// becomes a `CaptureError` for this variable alone.
    ///
    /// `capture` is expected to build its value with this capturer's methods: a `Value` made any other way
    /// is not counted in [`bytes_used`](Self::bytes_used).
    pub fn variable(&mut self, name: &str, capture: impl FnOnce(&mut Self) -> Value) -> Field {
        let field_start = self.budget.mark();
        self.budget.charge(string_field(name));
        let value_start = self.budget.mark();
        let value = if self.names.is_redacted(name) {
            self.redacted()
        } else {
            // `serialize` and `debug` catch their own panics; what is left is the probe's own expression.
            match catch_unwind(AssertUnwindSafe(|| capture(self))) {
                Ok(value) => value,
                Err(payload) => {
                    self.budget.rewind(value_start);
                    self.capture_error(&panic_message("the variable's expression", payload.as_ref()))
                }
            }
        };
        self.budget.close(value_start);
        self.budget.close(field_start);
        Field {
            name: name.to_owned(),
            value: Some(value),
        }
    }

    /// Bytes captured so far, for the queue's accounting. It is exact, not an estimate: the protobuf
    /// encoded size of the values captured, plus, for each [`variable`](Self::variable), its name and the
    /// key and length prefix it takes in `Snapshot.variables`.
    pub fn bytes_used(&self) -> usize {
        self.budget.used()
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
    use keyhole_proto::v1::{value::Kind, CaptureLimits, TruncationReason, Value};
    use serde::ser::{Error as _, SerializeStruct};
    use serde::{Serialize, Serializer};

    use super::*;
    use crate::capture::testing::fields_of;

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

    #[test]
    fn a_redacted_variable_name_never_runs_its_capture_closure() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        for name in ["password", "Access_Token", "accessToken", "ACCESS-TOKEN"] {
            let field = capturer.variable(name, |_| panic!("the capture of {name} ran"));
            assert_eq!(field.name, name);
            assert!(matches!(
                field.value.and_then(|v| v.kind),
                Some(Kind::Redacted(_))
            ));
        }
    }

    #[test]
    fn a_variable_carries_its_name_and_its_captured_value() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let field = capturer.variable("total", |c| c.serialize(&12.5));
        assert_eq!(field.name, "total");
        assert_eq!(field.value.and_then(|v| v.kind), Some(Kind::Float(12.5)));
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
        let broken = capturer.variable("holder", |c| {
            c.serialize(&Holder {
                fine: 1,
                broken: Exploding,
            })
        });
        let Some(Kind::Error(error)) = broken.value.as_ref().and_then(|v| v.kind.clone()) else {
            panic!("expected an error: {broken:?}")
        };
        assert!(error.message.contains("serialize exploded"), "{}", error.message);
        let next = capturer.variable("next", |c| c.serialize("still here"));
        assert_eq!(
            text_of(next.value.as_ref().unwrap_or_else(|| panic!("a value"))),
            "still here"
        );
        assert_eq!(
            capturer.bytes_used(),
            budget::oracle::variables_len(&[broken, next])
        );
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
        let captured = capturer.serialize(&Order {
            id: 7,
            detail: Refusing,
            note: "after",
        });
        let fields = fields_of(&captured);
        assert_eq!(
            fields[0].value.as_ref().and_then(|v| v.kind.clone()),
            Some(Kind::Uint(7))
        );
        let Some(Kind::Error(error)) = fields[1].value.as_ref().and_then(|v| v.kind.clone()) else {
            panic!("expected an error: {fields:?}")
        };
        assert_eq!(error.message, "refused to go on");
        assert_eq!(
            text_of(fields[2].value.as_ref().unwrap_or_else(|| panic!("a value"))),
            "after"
        );
        assert_eq!(capturer.bytes_used(), budget::oracle::value_len(&captured));
    }

    #[test]
    fn the_snapshot_budget_is_shared_by_all_variables() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 64,
            ..Default::default()
        };
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let first = capturer.variable("first", |c| c.serialize(&"x".repeat(40)));
        assert_eq!(
            text_of(first.value.as_ref().unwrap_or_else(|| panic!("a value"))).len(),
            40
        );
        let second = capturer.variable("second", |c| c.serialize(&"y".repeat(40)));
        let cut = text_of(second.value.as_ref().unwrap_or_else(|| panic!("a value")));
        assert!(cut.len() < 40, "the second string got only what was left: {cut}");
        for name in ["third", "fourth"] {
            let later = capturer.variable(name, |c| c.serialize(&1));
            let later = later.value.as_ref().unwrap_or_else(|| panic!("a value"));
            assert_eq!(reason_of(later), TruncationReason::SnapshotBytes);
        }
        let debugged = capturer.debug(&1);
        assert_eq!(reason_of(&debugged), TruncationReason::SnapshotBytes);
        assert_eq!(
            reason_of(&capturer.type_name_of::<u8>()),
            TruncationReason::SnapshotBytes
        );
    }

    #[test]
    fn a_panicking_variable_expression_spoils_only_its_own_variable() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        fn cart_total() -> u32 {
            panic!("attempt to add with overflow")
        }
        let broken = capturer.variable("total", |c| c.serialize(&cart_total()));
        let Some(Kind::Error(error)) = broken.value.as_ref().and_then(|v| v.kind.clone()) else {
            panic!("expected an error: {broken:?}")
        };
        assert_eq!(
            error.message,
            "the variable's expression panicked: attempt to add with overflow"
        );
        let next = capturer.variable("next", |c| c.serialize(&1u8));
        assert_eq!(next.value.and_then(|v| v.kind), Some(Kind::Uint(1)));
    }

    #[test]
    fn zero_limits_mean_the_defaults() {
        let limits = CaptureLimits::default();
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let captured = capturer.serialize(&vec![0u8; 150]);
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
        let captured = Capturer::new(&limits, &list).type_name_of::<Opaque>();
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
}
