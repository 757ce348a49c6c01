//! serde's data model mapped onto Keyhole's value tree: one `Serializer` that writes each serde call as a
//! bounded, budgeted value, and hands containers to the builders in `compound` and `map`.
//!
//! Mapping: `bool`→Bool, signed→Int, unsigned→Uint, `i128`/`u128` that fit 64 bits likewise (else Text of the
//! decimal), floats→Float, `char`/`str`→Text, bytes→Bytes, `None`/`()`→Null, `Some(x)`→x, unit struct→Struct
//! with no fields, unit variant→Enum, newtype struct→its inner value (but [`Secret`](super::Secret)→Redacted),
//! newtype variant→Enum with the value as payload, seq/tuple/tuple struct→List, tuple variant→Enum with a List
//! payload, map→Map, struct→Struct named by serde, struct variant→Enum with a Struct payload.

use std::fmt::{self, Display};

use serde::ser::{self, Serialize};

use super::compound::{ListBuilder, StructBuilder, VariantHead, VariantPayload};
use super::debug::FormatFailure;
use super::map::MapBuilder;
use super::secret::SECRET_MARKER;
use super::Capturer;

/// Why a part of the value could not be captured. It never leaves the module: the nearest container turns
/// it into a `CaptureError` value for that part alone.
#[derive(Debug)]
pub(crate) struct CaptureFailure(pub(crate) String);

impl Display for CaptureFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaptureFailure {}

impl ser::Error for CaptureFailure {
    fn custom<T: Display>(message: T) -> Self {
        Self(message.to_string())
    }
}

/// Captures one value at `depth` (the probe's variable is depth 0). Whether a value is walked at all is
/// decided by its container before calling in (see [`Capturer::nested`]), so this type only maps.
pub(crate) struct ValueSerializer<'s, 'a> {
    pub(crate) capturer: &'s mut Capturer<'a>,
    pub(crate) depth: u32,
    /// Values at this depth or deeper are not walked. The depth limit, or less for a map's composite keys.
    pub(crate) max_depth: u32,
    /// Set when capturing a map key: a string key reports here whether the entry's value is redacted.
    pub(crate) key_redacted: Option<&'s mut bool>,
}

impl ValueSerializer<'_, '_> {
    fn str_value(self, text: &str) -> Result<(), CaptureFailure> {
        if let Some(flag) = self.key_redacted {
            *flag = self.capturer.names.is_redacted(text);
        }
        self.capturer.text(text);
        Ok(())
    }
}

/// The scalar methods: each writes its value and cannot fail.
macro_rules! scalars {
    ($($method:ident($type:ty) => $write:ident($convert:expr)),* $(,)?) => {$(
        fn $method(self, v: $type) -> Result<(), CaptureFailure> {
            let convert: fn($type) -> _ = $convert;
            self.capturer.$write(convert(v));
            Ok(())
        }
    )*};
}

impl<'s, 'a> ser::Serializer for ValueSerializer<'s, 'a> {
    type Ok = ();
    type Error = CaptureFailure;
    type SerializeSeq = ListBuilder<'s, 'a>;
    type SerializeTuple = ListBuilder<'s, 'a>;
    type SerializeTupleStruct = ListBuilder<'s, 'a>;
    type SerializeTupleVariant = ListBuilder<'s, 'a>;
    type SerializeMap = MapBuilder<'s, 'a>;
    type SerializeStruct = StructBuilder<'s, 'a>;
    type SerializeStructVariant = StructBuilder<'s, 'a>;

    scalars! {
        serialize_bool(bool) => bool(|v| v),
        serialize_i8(i8) => int(i64::from),
        serialize_i16(i16) => int(i64::from),
        serialize_i32(i32) => int(i64::from),
        serialize_i64(i64) => int(|v| v),
        serialize_u8(u8) => uint(u64::from),
        serialize_u16(u16) => uint(u64::from),
        serialize_u32(u32) => uint(u64::from),
        serialize_u64(u64) => uint(|v| v),
        serialize_f32(f32) => float(f64::from),
        serialize_f64(f64) => float(|v| v),
    }

    fn serialize_i128(self, v: i128) -> Result<(), CaptureFailure> {
        match i64::try_from(v) {
            Ok(small) => self.capturer.int(small),
            Err(_) => self.capturer.text(&v.to_string()),
        }
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), CaptureFailure> {
        match u64::try_from(v) {
            Ok(small) => self.capturer.uint(small),
            Err(_) => self.capturer.text(&v.to_string()),
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), CaptureFailure> {
        self.str_value(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), CaptureFailure> {
        self.str_value(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), CaptureFailure> {
        self.capturer.bytes(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), CaptureFailure> {
        self.capturer.null();
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CaptureFailure> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), CaptureFailure> {
        self.capturer.null();
        Ok(())
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), CaptureFailure> {
        StructBuilder::start(self.capturer, name, None, self.depth, self.max_depth).finish();
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CaptureFailure> {
        if let Some(flag) = self.key_redacted {
            // A unit variant as a key serializes as its name in text formats (`{"ApiKey": ...}`).
            *flag = self.capturer.names.is_redacted_static(variant);
        }
        VariantHead::start(self.capturer, name, variant).finish(self.capturer);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), CaptureFailure> {
        if name == SECRET_MARKER {
            self.capturer.redacted();
            return Ok(());
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CaptureFailure> {
        let head = VariantHead::start(self.capturer, name, variant);
        let payload = VariantHead::payload(self.capturer);
        self.capturer.nested(value, self.depth + 1, self.max_depth);
        self.capturer.wire.close(payload);
        head.finish(self.capturer);
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<ListBuilder<'s, 'a>, CaptureFailure> {
        Ok(ListBuilder::start(
            self.capturer,
            None,
            self.depth,
            self.max_depth,
        ))
    }

    fn serialize_tuple(self, len: usize) -> Result<ListBuilder<'s, 'a>, CaptureFailure> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<ListBuilder<'s, 'a>, CaptureFailure> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<ListBuilder<'s, 'a>, CaptureFailure> {
        let variant = VariantPayload::start(self.capturer, name, variant);
        Ok(ListBuilder::start(
            self.capturer,
            Some(variant),
            self.depth,
            self.max_depth,
        ))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<MapBuilder<'s, 'a>, CaptureFailure> {
        Ok(MapBuilder::start(self.capturer, self.depth, self.max_depth))
    }

    fn serialize_struct(
        self,
        name: &'static str,
        _len: usize,
    ) -> Result<StructBuilder<'s, 'a>, CaptureFailure> {
        Ok(StructBuilder::start(
            self.capturer,
            name,
            None,
            self.depth,
            self.max_depth,
        ))
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<StructBuilder<'s, 'a>, CaptureFailure> {
        let variant = VariantPayload::start(self.capturer, name, variant);
        // The payload struct is anonymous: the enum around it already names the type and the variant.
        Ok(StructBuilder::start(
            self.capturer,
            "",
            Some(variant),
            self.depth,
            self.max_depth,
        ))
    }

    /// Display output (addresses, timestamps, ids) goes through the same bounded writer as Debug, straight
    /// into the snapshot, so a huge `Display` is cut while it is written instead of being collected first.
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), CaptureFailure> {
        let limit = self.capturer.text_limit();
        let what = "the Display impl";
        match self
            .capturer
            .formatted(format_args!("{value}"), limit, self.key_redacted, what)
        {
            Ok(()) => Ok(()),
            Err(FormatFailure::Failed) => Err(CaptureFailure(format!("{what} returned an error"))),
            Err(FormatFailure::Panicked(message)) => Err(CaptureFailure(message)),
        }
    }
}

impl Capturer<'_> {
    /// Captures `value` as a value at `depth`, or the marker for why it was not walked: deeper than
    /// `max_depth`, or no budget left.
    pub(crate) fn nested<T: Serialize + ?Sized>(&mut self, value: &T, depth: u32, max_depth: u32) {
        if depth >= max_depth {
            // Cut by the static type, without calling into the value: a million-item Vec at the cut costs
            // nothing.
            return self.too_deep::<T>();
        }
        if self.wire.exhausted() {
            return self.over_budget();
        }
        self.walk(value, depth, max_depth, None);
    }

    /// Runs `value`'s `Serialize` impl into a serializer at `depth`. Its error becomes a `CaptureError` for
    /// this value alone, and what was written of its half-built tree is taken back.
    pub(crate) fn walk<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        depth: u32,
        max_depth: u32,
        key_redacted: Option<&mut bool>,
    ) {
        let start = self.wire.mark();
        let serializer = ValueSerializer {
            capturer: self,
            depth,
            max_depth,
            key_redacted,
        };
        if let Err(failure) = value.serialize(serializer) {
            self.wire.rewind(start);
            self.capture_error(&failure.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::redaction::RedactionList;
    use keyhole_proto::v1::{value::Kind, CaptureLimits, Enum, Text, Value};
    use serde::Serialize;

    use super::*;
    use crate::capture::testing::{fields_of, payload_of};

    fn capture_with<T: Serialize + ?Sized>(limits: CaptureLimits, value: &T) -> Value {
        let list = RedactionList::default();
        Capturer::new(&limits, &list).tree(|slot| slot.serialize(value))
    }

    fn capture<T: Serialize + ?Sized>(value: &T) -> Value {
        capture_with(default_capture_limits(), value)
    }

    fn kind<T: Serialize + ?Sized>(value: &T) -> Kind {
        capture(value).kind.unwrap_or_else(|| panic!("an empty value"))
    }

    fn text(value: &str) -> Kind {
        Kind::Text(Text {
            value: value.to_owned(),
            omitted_bytes: 0,
        })
    }

    fn items(value: &Value) -> Vec<Kind> {
        match &value.kind {
            Some(Kind::List(list)) => list.items.iter().filter_map(|item| item.kind.clone()).collect(),
            other => panic!("expected a list, got {other:?}"),
        }
    }

    fn enum_of(value: &Value) -> &Enum {
        match &value.kind {
            Some(Kind::Enum(e)) => e,
            other => panic!("expected an enum, got {other:?}"),
        }
    }

    #[test]
    fn scalars_map_to_their_kinds() {
        assert_eq!(kind(&true), Kind::Bool(true));
        assert_eq!(kind(&-8i8), Kind::Int(-8));
        assert_eq!(kind(&-16i16), Kind::Int(-16));
        assert_eq!(kind(&-32i32), Kind::Int(-32));
        assert_eq!(kind(&i64::MIN), Kind::Int(i64::MIN));
        assert_eq!(kind(&8u8), Kind::Uint(8));
        assert_eq!(kind(&16u16), Kind::Uint(16));
        assert_eq!(kind(&32u32), Kind::Uint(32));
        assert_eq!(kind(&u64::MAX), Kind::Uint(u64::MAX));
        assert_eq!(kind(&1.5f32), Kind::Float(1.5));
        assert_eq!(kind(&-2.25f64), Kind::Float(-2.25));
        assert_eq!(kind(&'é'), text("é"));
        assert_eq!(kind("plain"), text("plain"));
        assert_eq!(kind(&String::from("owned")), text("owned"));
    }

    #[test]
    fn wide_integers_that_fit_stay_numbers_and_the_rest_become_decimal_text() {
        assert_eq!(kind(&42u128), Kind::Uint(42));
        assert_eq!(kind(&u128::from(u64::MAX)), Kind::Uint(u64::MAX));
        assert_eq!(kind(&u128::MAX), text("340282366920938463463374607431768211455"));
        assert_eq!(kind(&-5i128), Kind::Int(-5));
        assert_eq!(kind(&i128::MIN), text("-170141183460469231731687303715884105728"));
    }

    #[test]
    fn none_and_unit_are_null_and_some_is_its_value() {
        let null = Kind::Null(keyhole_proto::v1::Null::Value as i32);
        assert_eq!(kind(&None::<u8>), null);
        assert_eq!(kind(&()), null);
        assert_eq!(kind(&Some(3u8)), Kind::Uint(3));
        assert_eq!(kind(&Some(Some("deep"))), text("deep"));
    }

    #[test]
    fn a_unit_struct_is_a_named_struct_without_fields_and_a_newtype_is_its_inner_value() {
        #[derive(Serialize)]
        struct Marker;
        #[derive(Serialize)]
        struct Meters(f64);
        let Kind::Struct(marker) = kind(&Marker) else {
            panic!("a struct")
        };
        assert_eq!((marker.type_name.as_str(), marker.fields.len()), ("Marker", 0));
        assert_eq!(kind(&Meters(3.5)), Kind::Float(3.5));
    }

    #[derive(Serialize)]
    enum Event {
        Started,
        Moved(i32),
        Resized(u32, u32),
        Renamed { from: String, to: String },
    }

    #[test]
    fn enums_of_every_shape_keep_their_type_and_variant() {
        let started = capture(&Event::Started);
        let started = enum_of(&started);
        assert_eq!(
            (started.type_name.as_str(), started.variant.as_str()),
            ("Event", "Started")
        );
        assert!(started.payload.is_none());

        let moved = capture(&Event::Moved(-4));
        assert_eq!(enum_of(&moved).variant, "Moved");
        assert_eq!(payload_of(&moved).kind, Some(Kind::Int(-4)));

        let resized = capture(&Event::Resized(3, 4));
        assert_eq!(enum_of(&resized).variant, "Resized");
        assert_eq!(items(payload_of(&resized)), vec![Kind::Uint(3), Kind::Uint(4)]);

        let renamed = capture(&Event::Renamed {
            from: "a".into(),
            to: "b".into(),
        });
        assert_eq!(enum_of(&renamed).variant, "Renamed");
        let fields = fields_of(payload_of(&renamed));
        assert_eq!((fields[0].name.as_str(), fields[1].name.as_str()), ("from", "to"));
        assert_eq!(
            fields[1].value.as_ref().and_then(|v| v.kind.clone()),
            Some(text("b"))
        );
    }

    #[test]
    fn tuples_and_tuple_structs_are_lists() {
        #[derive(Serialize)]
        struct Point(i32, i32, i32);
        assert_eq!(
            items(&capture(&(1u8, "two", 3.0))),
            vec![Kind::Uint(1), text("two"), Kind::Float(3.0)]
        );
        assert_eq!(
            items(&capture(&Point(1, -2, 3))),
            vec![Kind::Int(1), Kind::Int(-2), Kind::Int(3)]
        );
    }

    #[test]
    fn strings_are_cut_on_a_char_boundary_and_say_how_much_was_cut() {
        let limits = CaptureLimits {
            max_string_bytes: 6,
            ..default_capture_limits()
        };
        // "aé€" is 1 + 2 + 3 bytes: 6 fit exactly, the emoji after it does not.
        let captured = capture_with(limits, "aé€😀z");
        assert_eq!(
            captured.kind,
            Some(Kind::Text(Text {
                value: "aé€".into(),
                omitted_bytes: 5
            }))
        );
        let captured = capture_with(limits, "aaaaa€");
        assert_eq!(
            captured.kind,
            Some(Kind::Text(Text {
                value: "aaaaa".into(),
                omitted_bytes: 3
            }))
        );
    }

    struct RawBytes(Vec<u8>);

    impl Serialize for RawBytes {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    #[test]
    fn byte_strings_are_cut_at_the_string_limit() {
        let limits = CaptureLimits {
            max_string_bytes: 4,
            ..default_capture_limits()
        };
        let Some(Kind::Bytes(bytes)) = capture_with(limits, &RawBytes((0..10).collect())).kind else {
            panic!("bytes")
        };
        assert_eq!((bytes.value, bytes.omitted_bytes), (vec![0, 1, 2, 3], 6));
    }

    /// A value whose `Display` is a megabyte, serialized through `collect_str` as ids and addresses are.
    struct LongDisplay;

    impl Display for LongDisplay {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for _ in 0..1024 {
                f.write_str(&"d".repeat(1024))?;
            }
            Ok(())
        }
    }

    impl Serialize for LongDisplay {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self)
        }
    }

    #[test]
    fn display_output_is_cut_while_it_is_written() {
        let Some(Kind::Text(captured)) = capture(&LongDisplay).kind else {
            panic!("text")
        };
        assert_eq!(captured.value.len(), 255);
        assert_eq!(captured.omitted_bytes, 1024 - 255);
    }
}
