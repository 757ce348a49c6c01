//! The snapshot's bytes: `keyhole.v1` protobuf written straight from the walk, and the snapshot's byte
//! budget counted on them.
//!
//! A capture writes the encoding of what it captures as it goes, into one buffer: no value tree is built
//! and nothing is encoded twice. A message whose length is not known before its content (a struct, a list,
//! a map, an enum, a field holding a value) gets a one-byte length placeholder when it opens. When it
//! closes, a length under 128 fills the placeholder. A longer one needs more bytes: up to
//! [`SHIFT_LIMIT`] bytes of content move up to make room, and past that the length is noted instead, and
//! [`Wire::into_bytes`] writes the noted lengths in their places as it copies the buffer once. So a byte
//! moves at most a few times, inside small messages, whatever the depth of the large ones around it;
//! and a typical snapshot, a few kilobytes, is never copied whole.
//! The output is canonical: byte for byte what prost writes for the same tree (fields in number order,
//! proto3 defaults left out, minimal varints).
//!
//! The budget is the encoded size of everything captured so far, noted lengths at their full size,
//! counting each open message's length as the one byte it takes at least.

// The one module exempt from the crate's ban on panicking indexing: every index here is a position this
// buffer wrote itself (a placeholder, a noted length) or one within a fixed-size varint scratch array,
// and the tests check its output byte for byte against prost's. Converting it to checked slicing, on
// the capture's innermost path, is left for a change measured against the capture benchmarks.
#![allow(clippy::indexing_slicing)]

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

/// Content up to this size moves up when its length needs more than one byte: cheaper than noting the
/// length and copying the whole capture once more at the end.
const SHIFT_LIMIT: usize = 1024;

/// The longest content [`Wire::put`] copies without calling `memcpy`.
const SHORT_COPY: usize = 16;

/// The buffer a capture writes into, against the snapshot's byte cap.
#[derive(Debug)]
pub(crate) struct Wire {
    bytes: Vec<u8>,
    max: usize,
    /// Lengths of 128 or more, in the order their messages closed: where the one-byte placeholder is,
    /// and the length to write there.
    long: Vec<(usize, usize)>,
    /// Bytes the noted lengths take beyond their placeholders.
    extra: usize,
}

/// A position in the capture: where a value (or a field holding one) started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    at: usize,
    long: usize,
    extra: usize,
}

/// An open message: where its one-byte length placeholder is, and the lengths noted when it opened.
#[derive(Debug)]
#[must_use = "an open message must be closed, or its length stays a placeholder"]
pub(crate) struct Open {
    at: usize,
    long: usize,
    extra: usize,
}

impl Wire {
    /// An empty capture of at most `max` bytes, writing into `bytes` (cleared; its capacity is kept).
    pub(crate) fn new(max: usize, mut bytes: Vec<u8>) -> Self {
        bytes.clear();
        Self {
            bytes,
            max,
            long: Vec::new(),
            extra: 0,
        }
    }

    /// The encoding: the buffer itself, or, when lengths were noted, the buffer copied once with each in
    /// its place.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        if self.long.is_empty() {
            return self.bytes;
        }
        self.encoded_from(0)
    }

    /// The encoding of what was written from `start` (a whole number of values) on.
    fn encoded_from(&self, start: usize) -> Vec<u8> {
        let mut long: Vec<(usize, usize)> =
            self.long.iter().copied().filter(|(at, _)| *at >= start).collect();
        long.sort_unstable_by_key(|(at, _)| *at);
        let mut out = Vec::with_capacity(self.bytes.len() - start + self.extra);
        let mut from = start;
        for (at, length) in long {
            out.extend_from_slice(&self.bytes[from..at]);
            let mut encoded = [0; MAX_VARINT_BYTES];
            let written = encode_varint(length as u64, &mut encoded);
            out.extend_from_slice(&encoded[..written]);
            from = at + 1;
        }
        out.extend_from_slice(&self.bytes[from..]);
        out
    }

    #[inline]
    pub(crate) fn used(&self) -> usize {
        self.bytes.len() + self.extra
    }

    /// Whether nothing more may be captured; checked before each value is walked.
    #[inline]
    pub(crate) fn exhausted(&self) -> bool {
        self.used() >= self.max
    }

    /// Bytes left before the cap, which bounds how much of a string may still be copied.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.max.saturating_sub(self.used())
    }

    #[inline]
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            at: self.bytes.len(),
            long: self.long.len(),
            extra: self.extra,
        }
    }

    /// Forgets what was written since `mark`: the part built since then is thrown away (a user's
    /// `Serialize` failed or panicked half-way). Every message opened after `mark` goes with it, and
    /// so do the lengths noted since: a message still open at `mark` is still open now.
    #[inline]
    pub(crate) fn rewind(&mut self, mark: Mark) {
        self.bytes.truncate(mark.at);
        self.long.truncate(mark.long);
        self.extra = mark.extra;
    }

    /// Keeps `len` bytes of the text written since `start`, and forgets the rest.
    #[inline]
    pub(crate) fn keep(&mut self, start: Mark, len: usize) {
        self.bytes.truncate(start.at + len);
    }

    /// Starts the length-delimited field `key` whose length is not known yet.
    #[inline]
    pub(crate) fn open(&mut self, key: u8) -> Open {
        self.bytes.extend_from_slice(&[key, 0]);
        Open {
            at: self.bytes.len() - 1,
            long: self.long.len(),
            extra: self.extra,
        }
    }

    /// Ends the field `open` started: everything written since is its content, at the full size of the
    /// lengths noted inside it.
    #[inline]
    pub(crate) fn close(&mut self, open: Open) {
        let content = self.bytes.len() - open.at - 1 + (self.extra - open.extra);
        if content < 0x80 {
            self.bytes[open.at] = content as u8;
        } else if content <= SHIFT_LIMIT && self.long.len() == open.long {
            // Nothing inside was noted, so moving the content moves no noted place.
            self.shift(open.at, content);
        } else {
            self.long.push((open.at, content));
            self.extra += varint_len(content as u64) - 1;
        }
    }

    /// Moves the `content` bytes after the placeholder at `at` up, and writes their length there.
    #[cold]
    fn shift(&mut self, at: usize, content: usize) {
        let mut length = [0; MAX_VARINT_BYTES];
        let written = encode_varint(content as u64, &mut length);
        let start = at + 1;
        self.bytes.resize(self.bytes.len() + written - 1, 0);
        self.bytes.copy_within(start..start + content, at + written);
        self.bytes[at..at + written].copy_from_slice(&length[..written]);
    }

    /// Ends the field `open` started, or takes it back when it has no content: a proto3 `string` or
    /// `bytes` field that is empty is not written at all.
    #[inline]
    pub(crate) fn close_unless_empty(&mut self, open: Open) {
        if self.bytes.len() == open.at + 1 {
            self.bytes.truncate(open.at - 1);
        } else {
            self.close(open);
        }
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
        self.put(content);
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
        self.put(content);
    }

    /// Appends `content`. Most of what a capture writes is short (field and type names, small values),
    /// and a call to `memcpy` for each would cost more than the copy: up to [`SHORT_COPY`] bytes are
    /// copied as two fixed-size pieces that overlap as needed, which compile to plain moves.
    #[inline]
    fn put(&mut self, content: &[u8]) {
        let len = content.len();
        if !(4..=SHORT_COPY).contains(&len) {
            return self.bytes.extend_from_slice(content);
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; SHORT_COPY]);
        let to = &mut self.bytes[start..start + len];
        if len >= 8 {
            to[..8].copy_from_slice(&content[..8]);
            to[len - 8..].copy_from_slice(&content[len - 8..]);
        } else {
            to[..4].copy_from_slice(&content[..4]);
            to[len - 4..].copy_from_slice(&content[len - 4..]);
        }
        self.bytes.truncate(start + len);
    }

    /// The text written since `mark`, as it stands in the buffer (no lengths inside it are noted).
    pub(crate) fn text_since(&self, mark: Mark) -> &[u8] {
        &self.bytes[mark.at..]
    }

    /// The encoding of what was written since `mark`.
    #[cfg(test)]
    pub(crate) fn encoded_since(&self, mark: Mark) -> Vec<u8> {
        self.encoded_from(mark.at)
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
            let decoded = Value::decode(wire.into_bytes().as_slice())
                .ok()
                .and_then(|v| v.kind);
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
    fn content_of_every_short_length_is_copied_whole() {
        let text: Vec<u8> = (0..40u8).map(|b| b'a' + b % 26).collect();
        for len in 0..text.len() {
            let mut wire = Wire::new(usize::MAX, vec![b'!']);
            wire.raw(&text[..len]);
            wire.raw(b"|");
            let mut expected = text[..len].to_vec();
            expected.push(b'|');
            assert_eq!(wire.into_bytes(), expected, "{len} bytes");
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
        let long = wire.open(list::ITEM);
        let text = wire.open(value::TEXT);
        let content = wire.open(text::VALUE);
        wire.raw(&[b'x'; 300]);
        wire.close(content);
        wire.close(text);
        wire.close(long);
        assert_eq!(
            wire.used(),
            2 + 2 + 2 + 2 + 2 + 2 + 300 + 3,
            "lengths of 128 or more count in full"
        );
        wire.rewind(mark);
        assert_eq!(wire.used(), 2, "and are forgotten with what they measured");
        wire.uint_field(list::OMITTED_ITEMS, 1);
        wire.close(list);
        let decoded = Value::decode(wire.into_bytes().as_slice()).expect("decodes");
        assert_eq!(
            decoded.kind,
            Some(Kind::List(List {
                items: vec![],
                omitted_items: 1
            }))
        );
    }
}
