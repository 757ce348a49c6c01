//! Lists and structs written while serde walks them, and the enum header around a variant's payload. Each
//! applies its count limit and the snapshot budget per element, before the element is walked; an element
//! past a limit is only counted. (Maps, which also capture keys, are in `map`.)

use serde::ser::{self, Serialize};

use super::serializer::CaptureFailure;
use super::wire::{self, Open, Wire};
use super::Capturer;

/// What a container does once the snapshot budget is spent: the first element that no longer fits becomes
/// one `Truncated { SNAPSHOT_BYTES }` marker (so the reason is visible where the cut happened) and every
/// later element is only counted as omitted. The overshoot is thus one small marker per open container.
#[derive(Debug, Default)]
pub(crate) struct BudgetGate {
    marker_placed: bool,
}

impl BudgetGate {
    #[inline]
    pub(crate) fn admits(&self, wire: &Wire) -> bool {
        !(self.marker_placed && wire.exhausted())
    }

    /// Called just before an element's value is captured: on a spent budget that value is the marker.
    #[inline]
    pub(crate) fn note(&mut self, wire: &Wire) {
        if wire.exhausted() {
            self.marker_placed = true;
        }
    }
}

/// An open `Enum { type_name, variant }`, written before the payload (if any) so the budget sees its
/// bytes first.
pub(crate) struct VariantHead {
    open: Open,
}

impl VariantHead {
    pub(crate) fn start(capturer: &mut Capturer<'_>, type_name: &'static str, variant: &'static str) -> Self {
        let open = capturer.wire.open(wire::value::ENUM);
        capturer
            .wire
            .string_field(wire::enumeration::TYPE_NAME, type_name.as_bytes());
        capturer
            .wire
            .string_field(wire::enumeration::VARIANT, variant.as_bytes());
        Self { open }
    }

    /// Opens the `payload` field; the payload's value is written next.
    pub(crate) fn payload(capturer: &mut Capturer<'_>) -> Open {
        capturer.wire.open(wire::enumeration::PAYLOAD)
    }

    pub(crate) fn finish(self, capturer: &mut Capturer<'_>) {
        capturer.wire.close(self.open);
    }
}

/// An enum around a tuple or struct variant's payload: the open enum and its open `payload` field.
pub(crate) struct VariantPayload {
    head: VariantHead,
    payload: Open,
}

impl VariantPayload {
    pub(crate) fn start(capturer: &mut Capturer<'_>, type_name: &'static str, variant: &'static str) -> Self {
        let head = VariantHead::start(capturer, type_name, variant);
        let payload = VariantHead::payload(capturer);
        Self { head, payload }
    }

    fn finish(self, capturer: &mut Capturer<'_>) {
        capturer.wire.close(self.payload);
        self.head.finish(capturer);
    }
}

/// A sequence, tuple, tuple struct or tuple-variant payload.
pub(crate) struct ListBuilder<'s, 'a> {
    capturer: &'s mut Capturer<'a>,
    variant: Option<VariantPayload>,
    open: Open,
    item_depth: u32,
    max_depth: u32,
    items: usize,
    omitted: u64,
    gate: BudgetGate,
}

impl<'s, 'a> ListBuilder<'s, 'a> {
    /// A list at `depth` (its items are one level down), inside `variant`'s payload if it has one.
    pub(crate) fn start(
        capturer: &'s mut Capturer<'a>,
        variant: Option<VariantPayload>,
        depth: u32,
        max_depth: u32,
    ) -> Self {
        let open = capturer.wire.open(wire::value::LIST);
        Self {
            capturer,
            variant,
            open,
            item_depth: depth + 1,
            max_depth,
            items: 0,
            omitted: 0,
            gate: BudgetGate::default(),
        }
    }

    fn push<T: Serialize + ?Sized>(&mut self, item: &T) {
        // serde still calls in for every item past the limit; skipping must stay this cheap.
        if self.items >= self.capturer.limits.max_items || !self.gate.admits(&self.capturer.wire) {
            self.omitted += 1;
            return;
        }
        self.gate.note(&self.capturer.wire);
        let open = self.capturer.wire.open(wire::list::ITEM);
        self.capturer.nested(item, self.item_depth, self.max_depth);
        self.capturer.wire.close(open);
        self.items += 1;
    }

    fn finish(self) {
        self.capturer
            .wire
            .uint_field(wire::list::OMITTED_ITEMS, self.omitted);
        self.capturer.wire.close(self.open);
        if let Some(variant) = self.variant {
            variant.finish(self.capturer);
        }
    }
}

/// serde has one trait per container shape and one per method name; for a list they all push an item.
macro_rules! list_shapes {
    ($($shape:ident :: $method:ident),*) => {$(
        impl ser::$shape for ListBuilder<'_, '_> {
            type Ok = ();
            type Error = CaptureFailure;

            fn $method<T: Serialize + ?Sized>(&mut self, item: &T) -> Result<(), CaptureFailure> {
                self.push(item);
                Ok(())
            }

            fn end(self) -> Result<(), CaptureFailure> {
                self.finish();
                Ok(())
            }
        }
    )*};
}

list_shapes!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// A struct, or a struct-variant payload.
pub(crate) struct StructBuilder<'s, 'a> {
    capturer: &'s mut Capturer<'a>,
    variant: Option<VariantPayload>,
    open: Open,
    field_depth: u32,
    max_depth: u32,
    fields: usize,
    omitted: u64,
    gate: BudgetGate,
}

impl<'s, 'a> StructBuilder<'s, 'a> {
    /// A struct named `type_name` at `depth` (its fields are one level down), inside `variant`'s payload if
    /// it has one.
    pub(crate) fn start(
        capturer: &'s mut Capturer<'a>,
        type_name: &'static str,
        variant: Option<VariantPayload>,
        depth: u32,
        max_depth: u32,
    ) -> Self {
        let open = capturer.wire.open(wire::value::STRUCT);
        capturer
            .wire
            .string_field(wire::structure::TYPE_NAME, type_name.as_bytes());
        Self {
            capturer,
            variant,
            open,
            field_depth: depth + 1,
            max_depth,
            fields: 0,
            omitted: 0,
            gate: BudgetGate::default(),
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, field_value: &T) {
        if self.fields >= self.capturer.limits.max_fields || !self.gate.admits(&self.capturer.wire) {
            self.omitted += 1;
            return;
        }
        let field = self.capturer.wire.open(wire::structure::FIELD);
        self.capturer
            .wire
            .string_field(wire::field::NAME, name.as_bytes());
        self.gate.note(&self.capturer.wire);
        let value = self.capturer.wire.open(wire::field::VALUE);
        if self.capturer.names.is_redacted_static(name) {
            self.capturer.redacted();
        } else {
            self.capturer
                .nested(field_value, self.field_depth, self.max_depth);
        }
        self.capturer.wire.close(value);
        self.capturer.wire.close(field);
        self.fields += 1;
    }

    pub(crate) fn finish(self) {
        self.capturer
            .wire
            .uint_field(wire::structure::OMITTED_FIELDS, self.omitted);
        self.capturer.wire.close(self.open);
        if let Some(variant) = self.variant {
            variant.finish(self.capturer);
        }
    }
}

/// A struct and a struct variant's payload are filled alike.
macro_rules! struct_shapes {
    ($($shape:ident),*) => {$(
        impl ser::$shape for StructBuilder<'_, '_> {
            type Ok = ();
            type Error = CaptureFailure;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                name: &'static str,
                field_value: &T,
            ) -> Result<(), CaptureFailure> {
                self.field(name, field_value);
                Ok(())
            }

            fn end(self) -> Result<(), CaptureFailure> {
                self.finish();
                Ok(())
            }
        }
    )*};
}

struct_shapes!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::redaction::RedactionList;
    use keyhole_proto::v1::{value::Kind, CaptureLimits, TruncationReason};
    use serde::{Serialize, Serializer};

    use super::*;
    use crate::capture::testing::{capture_with, field, list_of, payload_of, truncated, Counted};

    #[derive(Serialize)]
    struct A {
        b: B,
    }

    #[derive(Serialize)]
    struct B {
        c: C,
        flag: bool,
    }

    #[derive(Serialize)]
    struct C {
        d: D,
        n: u8,
    }

    #[derive(Serialize)]
    struct D {
        e: u8,
    }

    #[test]
    fn max_depth_3_captures_a_b_c_and_marks_a_b_c_d_with_its_type() {
        let limits = CaptureLimits {
            max_depth: 3,
            ..default_capture_limits()
        };
        let a = A {
            b: B {
                c: C { d: D { e: 1 }, n: 2 },
                flag: true,
            },
        };
        let captured = capture_with(limits, &a);
        let b = field(&captured, "b");
        assert_eq!(field(b, "flag").kind, Some(Kind::Bool(true)));
        let c = field(b, "c");
        assert_eq!(field(c, "d"), &truncated("D", TruncationReason::Depth));
        assert_eq!(
            field(c, "n"),
            &truncated("u8", TruncationReason::Depth),
            "every value at the cut is cut"
        );
    }

    #[test]
    fn nested_lists_are_cut_at_the_same_depth() {
        let limits = CaptureLimits {
            max_depth: 2,
            ..default_capture_limits()
        };
        let captured = capture_with(limits, &vec![vec![vec![1u8]]]);
        let inner = &list_of(&captured).items[0];
        assert_eq!(
            list_of(inner).items,
            vec![truncated("Vec<u8>", TruncationReason::Depth)]
        );
    }

    #[test]
    fn a_value_at_the_cut_is_never_walked() {
        let calls = Cell::new(0);
        let limits = CaptureLimits {
            max_depth: 1,
            ..default_capture_limits()
        };
        let many: Vec<Counted> = (0..1000).map(|_| Counted(&calls)).collect();
        let captured = capture_with(limits, &(1u8, many));
        assert_eq!(
            list_of(&captured).items[1],
            truncated("Vec<Counted>", TruncationReason::Depth)
        );
        assert_eq!(calls.get(), 0);
    }

    #[test]
    fn enum_payload_fields_are_one_level_below_the_enum() {
        #[derive(Serialize)]
        enum Wrapper {
            Newtype(u8),
            Named { inner: u8 },
        }
        let limits = CaptureLimits {
            max_depth: 1,
            ..default_capture_limits()
        };
        let newtype = capture_with(limits, &Wrapper::Newtype(1));
        assert_eq!(payload_of(&newtype), &truncated("u8", TruncationReason::Depth));
        let named = capture_with(limits, &Wrapper::Named { inner: 1 });
        assert_eq!(
            field(payload_of(&named), "inner"),
            &truncated("u8", TruncationReason::Depth)
        );
    }

    #[test]
    fn struct_fields_past_the_limit_are_counted_not_captured() {
        let limits = CaptureLimits {
            max_fields: 2,
            ..default_capture_limits()
        };
        #[derive(Serialize)]
        struct Wide {
            a: u8,
            b: u8,
            c: u8,
            d: u8,
        }
        let Some(Kind::Struct(wide)) = capture_with(
            limits,
            &Wide {
                a: 1,
                b: 2,
                c: 3,
                d: 4,
            },
        )
        .kind
        else {
            panic!("a struct")
        };
        let names: Vec<_> = wide.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!((names, wide.omitted_fields), (vec!["a", "b"], 2));
    }

    #[test]
    fn items_past_the_limit_are_counted_and_never_serialized() {
        let calls = Cell::new(0);
        let limits = CaptureLimits {
            max_items: 3,
            ..default_capture_limits()
        };
        let long: Vec<Counted> = (0..10_000).map(|_| Counted(&calls)).collect();
        let captured = capture_with(limits, &long);
        let list = list_of(&captured);
        assert_eq!((list.items.len(), list.omitted_items), (3, 9_997));
        assert_eq!(calls.get(), 3);
    }

    /// A sequence whose length serde cannot know in advance.
    struct Evens(u32);

    impl Serialize for Evens {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq((0..self.0).filter(|n| n % 2 == 0))
        }
    }

    #[test]
    fn items_of_a_sequence_without_a_length_are_counted_as_they_are_skipped() {
        let limits = CaptureLimits {
            max_items: 4,
            ..default_capture_limits()
        };
        let captured = capture_with(limits, &Evens(100));
        let list = list_of(&captured);
        assert_eq!((list.items.len(), list.omitted_items), (4, 46));
    }

    #[test]
    fn tuple_items_past_the_limit_are_counted() {
        let limits = CaptureLimits {
            max_items: 2,
            ..default_capture_limits()
        };
        let captured = capture_with(limits, &(1, 2, 3, 4));
        assert_eq!(list_of(&captured).omitted_items, 2);
    }

    #[test]
    fn once_the_budget_is_spent_one_marker_stands_for_the_rest_of_each_container() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 40,
            ..default_capture_limits()
        };
        let list = RedactionList::default();
        let mut capturer = Capturer::new(&limits, &list);
        let captured =
            capturer.tree(|slot| slot.serialize(&(0..50u32).map(|i| i * 1000).collect::<Vec<_>>()));
        let captured = list_of(&captured);
        let over = truncated("", TruncationReason::SnapshotBytes);
        let markers = captured.items.iter().filter(|item| **item == over).count();
        assert_eq!(markers, 1);
        assert_eq!(captured.items.last(), Some(&over));
        assert_eq!(captured.items.len() as u64 + captured.omitted_items, 50);

        let limits = CaptureLimits {
            max_snapshot_bytes: 30,
            ..default_capture_limits()
        };
        let mut capturer = Capturer::new(&limits, &list);
        let wide = capturer.tree(|slot| {
            slot.serialize(&A {
                b: B {
                    c: C { d: D { e: 1 }, n: 2 },
                    flag: true,
                },
            })
        });
        let b = field(&wide, "b");
        let Some(Kind::Struct(b)) = &b.kind else {
            panic!("a struct")
        };
        assert!(b.fields.iter().any(|f| f.value.as_ref() == Some(&over)), "{b:?}");
    }
}
