//! The snapshot's bytes: `keyhole.v1` protobuf written straight from the walk, and the snapshot's byte
//! budget counted on them.
//!
//! A capture writes the encoding of what it captures as it goes, into one buffer: no value tree is built
//! and nothing is encoded twice. A message whose length is not known before its content (a struct, a list,
//! a map, an enum, a field holding a value) gets a one-byte length placeholder when it opens; when it
//! closes, the placeholder takes the real length, and content of 128 bytes or more moves up by the extra
//! bytes its length needs. Most messages are short, so most closes only write one byte, and a byte moves
//! once per enclosing message of 128 bytes or more. The output is canonical: byte for byte what prost
//! writes for the same tree (fields in number order, proto3 defaults left out, minimal varints).
//!
//! The budget is the buffer's length: the encoded size of everything captured so far, counting each open
//! message's length as the one byte it takes at least.

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

/// A field's key. Every field number in `values.proto` (and `Snapshot.variables`, 15) is below 16, so every
/// key is one byte.
const fn key(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// `Snapshot.variables`: each captured variable is one of these.
pub(crate) const SNAPSHOT_VARIABLE: u8 = key(15, LEN);

/// The members of `Value`'s `kind` oneof.
pub(crate) mod value {
    use super::{key, FIXED64, LEN, VARINT};
    pub(crate) const NULL: u8 = key(1, VARINT);
    pub(crate) const BOOL: u8 = key(2, VARINT);
    pub(crate) const INT: u8 = key(3, VARINT);
    pub(crate) const UINT: u8 = key(4, VARINT);
    pub(crate) const FLOAT: u8 = key(5, FIXED64);
    pub(crate) const TEXT: u8 = key(6, LEN);
    pub(crate) const BYTES: u8 = key(7, LEN);
    pub(crate) const LIST: u8 = key(8, LEN);
    pub(crate) const MAP: u8 = key(9, LEN);
    pub(crate) const STRUCT: u8 = key(10, LEN);
    pub(crate) const ENUM: u8 = key(11, LEN);
    pub(crate) const REDACTED: u8 = key(12, LEN);
    pub(crate) const TRUNCATED: u8 = key(13, LEN);
    pub(crate) const ERROR: u8 = key(14, LEN);
}

/// `Text` and `Bytes`: the content and how much of it was cut.
pub(crate) mod text {
    use super::{key, LEN, VARINT};
    pub(crate) const VALUE: u8 = key(1, LEN);
    pub(crate) const OMITTED_BYTES: u8 = key(2, VARINT);
}

pub(crate) mod list {
    use super::{key, LEN, VARINT};
    pub(crate) const ITEM: u8 = key(1, LEN);
    pub(crate) const OMITTED_ITEMS: u8 = key(2, VARINT);
}

/// `Map` and its `MapEntry`.
pub(crate) mod map {
    use super::{key, LEN, VARINT};
    pub(crate) const ENTRY: u8 = key(1, LEN);
    pub(crate) const OMITTED_ENTRIES: u8 = key(2, VARINT);
    pub(crate) const ENTRY_KEY: u8 = key(1, LEN);
    pub(crate) const ENTRY_VALUE: u8 = key(2, LEN);
}

/// `Field`: a struct field, or a probe's variable.
pub(crate) mod field {
    use super::{key, LEN};
    pub(crate) const NAME: u8 = key(1, LEN);
    pub(crate) const VALUE: u8 = key(2, LEN);
}

pub(crate) mod structure {
    use super::{key, LEN, VARINT};
    pub(crate) const TYPE_NAME: u8 = key(1, LEN);
    pub(crate) const FIELD: u8 = key(2, LEN);
    pub(crate) const OMITTED_FIELDS: u8 = key(3, VARINT);
}

pub(crate) mod enumeration {
    use super::{key, LEN};
    pub(crate) const TYPE_NAME: u8 = key(1, LEN);
    pub(crate) const VARIANT: u8 = key(2, LEN);
    pub(crate) const PAYLOAD: u8 = key(3, LEN);
}

pub(crate) mod truncated {
    use super::{key, LEN, VARINT};
    pub(crate) const TYPE_NAME: u8 = key(1, LEN);
    pub(crate) const REASON: u8 = key(2, VARINT);
}

pub(crate) mod error {
    use super::{key, LEN};
    pub(crate) const MESSAGE: u8 = key(1, LEN);
}

/// The buffer a capture writes into, against the snapshot's byte cap.
#[derive(Debug)]
pub(crate) struct Wire {
    bytes: Vec<u8>,
    max: usize,
}

/// A position in the buffer: where a value (or a field holding one) started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark(usize);

/// An open message: where its one-byte length placeholder is.
#[derive(Debug)]
#[must_use = "an open message must be closed, or its length stays a placeholder"]
pub(crate) struct Open(usize);

impl Wire {
    /// An empty capture of at most `max` bytes, writing into `bytes` (cleared; its capacity is kept).
    pub(crate) fn new(max: usize, mut bytes: Vec<u8>) -> Self {
        bytes.clear();
        Self { bytes, max }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    #[inline]
    pub(crate) fn used(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing more may be captured; checked before each value is walked.
    #[inline]
    pub(crate) fn exhausted(&self) -> bool {
        self.bytes.len() >= self.max
    }

    /// Bytes left before the cap, which bounds how much of a string may still be copied.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.max.saturating_sub(self.bytes.len())
    }

    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        Mark(self.bytes.len())
    }

    /// Forgets what was written since `mark`: the part built since then is thrown away (a user's
    /// `Serialize` failed or panicked half-way). Every message opened after `mark` goes with it.
    #[inline]
    pub(crate) fn rewind(&mut self, mark: Mark) {
        self.bytes.truncate(mark.0);
    }

    /// Keeps `len` bytes of what was written since `start`, and forgets the rest.
    #[inline]
    pub(crate) fn keep(&mut self, start: Mark, len: usize) {
        self.bytes.truncate(start.0 + len);
    }

    /// Starts the length-delimited field `key` whose length is not known yet.
    #[inline]
    pub(crate) fn open(&mut self, key: u8) -> Open {
        self.bytes.extend_from_slice(&[key, 0]);
        Open(self.bytes.len() - 1)
    }

    /// Ends the field `open` started: everything written since is its content.
    #[inline]
    pub(crate) fn close(&mut self, open: Open) {
        let start = open.0 + 1;
        let content = self.bytes.len() - start;
        if content < 0x80 {
            self.bytes[open.0] = content as u8;
        } else {
            self.close_long(start, content);
        }
    }

    /// Ends the field `open` started, or takes it back when it has no content: a proto3 `string` or
    /// `bytes` field that is empty is not written at all.
    #[inline]
    pub(crate) fn close_unless_empty(&mut self, open: Open) {
        if self.bytes.len() == open.0 + 1 {
            self.bytes.truncate(open.0 - 1);
        } else {
            self.close(open);
        }
    }

    #[cold]
    fn close_long(&mut self, start: usize, content: usize) {
        let length_bytes = varint_len(content as u64);
        let extra = length_bytes - 1;
        self.bytes.resize(self.bytes.len() + extra, 0);
        self.bytes.copy_within(start..start + content, start + extra);
        let mut length = [0; MAX_VARINT_BYTES];
        let written = encode_varint(content as u64, &mut length);
        self.bytes[start - 1..start - 1 + written].copy_from_slice(&length[..written]);
    }

    fn long_varint(&mut self, value: u64) {
        let mut encoded = [0; MAX_VARINT_BYTES];
        let written = encode_varint(value, &mut encoded);
        self.bytes.extend_from_slice(&encoded[..written]);
    }

    /// A varint field that is written even when zero: a oneof member, or a value of a repeated field.
    #[inline]
    pub(crate) fn key_varint(&mut self, key: u8, value: u64) {
        if value < 0x80 {
            self.bytes.extend_from_slice(&[key, value as u8]);
        } else {
            self.bytes.push(key);
            self.long_varint(value);
        }
    }

    /// A proto3 `uint64` or enum field: nothing at all when zero.
    #[inline]
    pub(crate) fn uint_field(&mut self, key: u8, value: u64) {
        if value != 0 {
            self.key_varint(key, value);
        }
    }

    /// A length-delimited field of known content, written even when empty.
    #[inline]
    pub(crate) fn delimited(&mut self, key: u8, content: &[u8]) {
        self.header(key, content.len());
        self.bytes.extend_from_slice(content);
    }

    /// A proto3 `string` or `bytes` field: nothing at all when empty.
    #[inline]
    pub(crate) fn string_field(&mut self, key: u8, content: &[u8]) {
        if !content.is_empty() {
            self.delimited(key, content);
        }
    }

    /// The header of a length-delimited field whose `content_len` bytes come next.
    #[inline]
    pub(crate) fn header(&mut self, key: u8, content_len: usize) {
        self.key_varint(key, content_len as u64);
    }

    #[inline]
    pub(crate) fn double(&mut self, key: u8, value: f64) {
        self.bytes.push(key);
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    /// Raw content of the field being written (text produced piece by piece).
    #[inline]
    pub(crate) fn raw(&mut self, content: &[u8]) {
        self.bytes.extend_from_slice(content);
    }

    /// What was written since `mark`.
    pub(crate) fn since(&self, mark: Mark) -> &[u8] {
        &self.bytes[mark.0..]
    }
}

/// The longest varint: 64 bits at 7 a byte.
const MAX_VARINT_BYTES: usize = 10;

/// Bytes of `value` as a protobuf varint.
#[inline]
pub(crate) fn varint_len(value: u64) -> usize {
    // Each byte carries 7 bits; `| 1` makes zero take one byte like any other small number.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes of a length-delimited field holding `content` bytes.
#[inline]
pub(crate) fn delimited_len(content: usize) -> usize {
    1 + varint_len(content as u64) + content
}

/// Bytes of a proto3 `string` field: nothing at all when empty.
#[inline]
pub(crate) fn string_field_len(text: &[u8]) -> usize {
    if text.is_empty() {
        0
    } else {
        delimited_len(text.len())
    }
}

/// Bytes of a proto3 `uint64` field (or an enum number): nothing at all when zero.
#[inline]
pub(crate) fn uint_field_len(value: u64) -> usize {
    if value == 0 {
        0
    } else {
        1 + varint_len(value)
    }
}

fn encode_varint(mut value: u64, out: &mut [u8; MAX_VARINT_BYTES]) -> usize {
    let mut written = 0;
    while value >= 0x80 {
        out[written] = (value as u8) | 0x80;
        value >>= 7;
        written += 1;
    }
    out[written] = value as u8;
    written + 1
}

/// Protobuf's `sint64` zigzag encoding, so small negative numbers stay small.
#[inline]
pub(crate) fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[cfg(test)]
mod tests {
    use keyhole_proto::v1::{value::Kind, List, Text, Value};
    use prost::Message as _;

    use super::*;

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
        for value in [0, 1, 127, 128, 300, 16_384, u64::MAX] {
            let mut wire = Wire::new(usize::MAX, Vec::new());
            wire.key_varint(value::UINT, value);
            assert_eq!(wire.used(), 1 + varint_len(value), "{value}");
            let decoded = Value::decode(wire.since(Mark(0))).ok().and_then(|v| v.kind);
            assert_eq!(decoded, Some(Kind::Uint(value)));
        }
    }

    /// A list of `items` texts of `len` bytes each, written the way capture writes it.
    fn list_of_texts(items: usize, len: usize) -> Vec<u8> {
        let mut wire = Wire::new(usize::MAX, Vec::new());
        let list = wire.open(value::LIST);
        for n in 0..items {
            let item = wire.open(list::ITEM);
            let text = wire.open(value::TEXT);
            let content = wire.open(text::VALUE);
            wire.raw("x".repeat(len + n).as_bytes());
            wire.close_unless_empty(content);
            wire.close(text);
            wire.close(item);
        }
        wire.close(list);
        wire.into_bytes()
    }

    #[test]
    fn messages_of_any_length_close_into_what_prost_writes() {
        for (items, len) in [
            (0, 0),
            (1, 0),
            (1, 5),
            (3, 40),
            (2, 126),
            (1, 127),
            (4, 300),
            (2, 20_000),
        ] {
            let written = list_of_texts(items, len);
            let expected = Value {
                kind: Some(Kind::List(List {
                    items: (0..items)
                        .map(|n| Value {
                            kind: Some(Kind::Text(Text {
                                value: "x".repeat(len + n),
                                omitted_bytes: 0,
                            })),
                        })
                        .collect(),
                    omitted_items: 0,
                })),
            };
            assert_eq!(written, expected.encode_to_vec(), "{items} items of {len} bytes");
        }
    }

    #[test]
    fn a_rewind_drops_the_messages_opened_after_its_mark() {
        let mut wire = Wire::new(usize::MAX, Vec::new());
        let list = wire.open(value::LIST);
        let mark = wire.mark();
        let item = wire.open(list::ITEM);
        wire.key_varint(value::UINT, 7);
        wire.close(item);
        wire.rewind(mark);
        wire.uint_field(list::OMITTED_ITEMS, 1);
        wire.close(list);
        let decoded = Value::decode(wire.since(Mark(0))).expect("decodes");
        assert_eq!(
            decoded.kind,
            Some(Kind::List(List {
                items: vec![],
                omitted_items: 1
            }))
        );
    }
}
