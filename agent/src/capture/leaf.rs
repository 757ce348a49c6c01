//! The leaves of the value tree (scalars, text, bytes and the markers for what was cut, hidden or broken),
//! each written as a `Value` at the capture's current position.

use keyhole_proto::static_memo::StaticStrMemo;
use keyhole_proto::v1::TruncationReason;

use super::wire::{self, string_field_len, uint_field_len, value, zigzag};
use super::Capturer;

/// The largest index `<= max` that is a char boundary of `text`, so a cut never splits a character.
pub(crate) fn floor_char_boundary(text: &str, max: usize) -> usize {
    if max >= text.len() {
        return text.len();
    }
    // A UTF-8 character is at most 4 bytes, so this loop runs at most 3 times.
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Type names as a person writes them: `Vec<Item>`, not `&alloc::vec::Vec<shop::cart::Item<'_>>`. Module
/// paths and lifetimes go, and so do the outer references serde adds when it walks a collection's items.
/// Written into `short`, whose allocation is reused from one depth marker to the next.
pub(crate) fn short_type_name(full: &str, short: &mut String) {
    short.clear();
    let mut full = full;
    while let Some(rest) = full.strip_prefix('&') {
        full = rest;
    }
    while let Some(rest) = full.strip_prefix("mut ") {
        full = rest;
    }
    if !full.bytes().any(|b| b == b':' || b == b'\'') {
        // Primitives (`u64`, `str`, `(u8, bool)`) are already short.
        short.push_str(full);
        return;
    }
    // Identifier runs are copied whole; every other character is ASCII, so every index where the scan
    // stops is a char boundary.
    let bytes = full.as_bytes();
    let at = |i: usize| bytes.get(i).copied();
    // Where the path being written started in `short`; a `::` cuts `short` back to it.
    let mut path_start = 0;
    let mut i = 0;
    // Slices are taken with `get`: were an index ever not a char boundary, a character would be
    // left out of the name rather than the host panic.
    let from = |i: usize| bytes.get(i..).unwrap_or_default();
    while let Some(byte) = at(i) {
        let run = identifier_run(from(i));
        if run > 0 {
            short.push_str(full.get(i..i + run).unwrap_or_default());
            i += run;
            continue;
        }
        match byte {
            b':' if at(i + 1) == Some(b':') => {
                i += 2;
                short.truncate(path_start);
            }
            b'\'' => {
                // A lifetime argument (`'_`, `'static`) and the separator after it.
                i += 1 + identifier_run(from(i + 1));
                if at(i) == Some(b',') {
                    i += 1 + usize::from(at(i + 1) == Some(b' '));
                } else if short.ends_with('<') && at(i) == Some(b'>') {
                    i += 1;
                    short.pop();
                } else if at(i) == Some(b' ') && short.ends_with('&') {
                    i += 1;
                }
                path_start = short.len();
            }
            _ => {
                short.push_str(full.get(i..i + 1).unwrap_or_default());
                i += 1;
                path_start = short.len();
            }
        }
    }
}

/// Short type names that are the end of their full name (`String` of `alloc::string::String`, `u64` of
/// `u64`: most types cut at the depth limit), remembered for the whole process as where in the full name
/// they start: a type's name never changes, and writing a depth marker should cost little more than
/// copying the name.
static SHORT_NAMES: StaticStrMemo<SHORT_NAME_SLOTS> = StaticStrMemo::new();

/// Slots of [`SHORT_NAMES`]: room for the types a service's captures cut.
const SHORT_NAME_SLOTS: usize = 256;

/// The short name of `full`, if it is remembered.
fn remembered_short_name(full: &'static str) -> Option<&'static str> {
    full.get(usize::from(SHORT_NAMES.get(full)?)..)
}

/// Remembers `short` as the short name of `full`, if it is the end of it.
fn remember_short_name(full: &'static str, short: &str) {
    if let Ok(start) = u8::try_from(full.len() - short.len()) {
        if full.ends_with(short) {
            SHORT_NAMES.remember(full, start);
        }
    }
}

/// How many bytes at the start of `bytes` belong to an identifier. Non-ASCII bytes count as identifier
/// bytes: in a Rust type name they can only come from identifiers.
fn identifier_run(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || !b.is_ascii()))
        .unwrap_or(bytes.len())
}

impl Capturer<'_> {
    /// How many bytes of text may still be copied: the string limit, or less when the snapshot is nearly full.
    #[inline]
    pub(crate) fn text_limit(&self) -> usize {
        self.limits.max_string_bytes.min(self.wire.remaining())
    }

    #[inline]
    pub(crate) fn null(&mut self) {
        self.wire
            .key_varint(value::NULL, keyhole_proto::v1::Null::Value as u64);
    }

    #[inline]
    pub(crate) fn bool(&mut self, v: bool) {
        self.wire.key_varint(value::BOOL, u64::from(v));
    }

    #[inline]
    pub(crate) fn int(&mut self, v: i64) {
        self.wire.key_varint(value::INT, zigzag(v));
    }

    #[inline]
    pub(crate) fn uint(&mut self, v: u64) {
        self.wire.key_varint(value::UINT, v);
    }

    #[inline]
    pub(crate) fn float(&mut self, v: f64) {
        self.wire.double(value::FLOAT, v);
    }

    /// `text` cut to the text limit on a char boundary.
    pub(crate) fn text(&mut self, text: &str) {
        let end = floor_char_boundary(text, self.text_limit());
        self.text_parts(&text[..end], (text.len() - end) as u64);
    }

    /// Text that was already cut; `omitted_bytes` is what was cut.
    pub(crate) fn text_parts(&mut self, kept: &str, omitted_bytes: u64) {
        self.bytes_message(value::TEXT, kept.as_bytes(), omitted_bytes);
    }

    /// `bytes` cut to the text limit (the string limit covers byte strings too).
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        let kept = bytes.len().min(self.text_limit());
        self.bytes_message(
            value::BYTES,
            bytes.get(..kept).unwrap_or_default(),
            (bytes.len() - kept) as u64,
        );
    }

    /// A `Text` or `Bytes` message: content and how much was cut, of known length.
    fn bytes_message(&mut self, kind: u8, kept: &[u8], omitted_bytes: u64) {
        let content = string_field_len(kept) + uint_field_len(omitted_bytes);
        self.wire.header(kind, content);
        self.wire.string_field(wire::text::VALUE, kept);
        self.wire.uint_field(wire::text::OMITTED_BYTES, omitted_bytes);
    }

    /// The marker for a sensitive value: no content and no length.
    pub(crate) fn redacted(&mut self) {
        self.wire.header(value::REDACTED, 0);
    }

    /// The marker for a value deeper than the depth limit, named by the static type that was there.
    pub(crate) fn too_deep<T: ?Sized>(&mut self) {
        let full = std::any::type_name::<T>();
        if let Some(short) = remembered_short_name(full) {
            return self.truncated(short, TruncationReason::Depth);
        }
        let mut short = std::mem::take(&mut self.type_name);
        short_type_name(full, &mut short);
        remember_short_name(full, &short);
        self.truncated(&short, TruncationReason::Depth);
        self.type_name = short;
    }

    /// The marker for a value that did not fit in the snapshot. It carries no type name: the budget is
    /// already spent, and the marker should cost as little of the overshoot as possible.
    pub(crate) fn over_budget(&mut self) {
        self.truncated("", TruncationReason::SnapshotBytes);
    }

    fn truncated(&mut self, type_name: &str, reason: TruncationReason) {
        let reason = reason as u64;
        let content = string_field_len(type_name.as_bytes()) + uint_field_len(reason);
        self.wire.header(value::TRUNCATED, content);
        self.wire
            .string_field(wire::truncated::TYPE_NAME, type_name.as_bytes());
        self.wire.uint_field(wire::truncated::REASON, reason);
    }

    /// A value that could not be captured, with why. The message is cut to the string limit but not to the
    /// remaining budget: a failure should be visible even in a nearly full snapshot.
    pub(crate) fn capture_error(&mut self, message: &str) {
        let end = floor_char_boundary(message, self.limits.max_string_bytes);
        let message = message.as_bytes().get(..end).unwrap_or_default();
        self.wire.header(value::ERROR, string_field_len(message));
        self.wire.string_field(wire::error::MESSAGE, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_never_splits_a_character() {
        let text = "aé€😀";
        assert_eq!(floor_char_boundary(text, 0), 0);
        assert_eq!(floor_char_boundary(text, 2), 1, "é is two bytes");
        assert_eq!(floor_char_boundary(text, 3), 3);
        assert_eq!(floor_char_boundary(text, 5), 3, "€ is three bytes");
        assert_eq!(floor_char_boundary(text, 9), 6, "😀 is four bytes");
        assert_eq!(floor_char_boundary(text, 10), 10);
        assert_eq!(floor_char_boundary(text, 99), 10);
    }

    fn short_type_name(full: &str) -> String {
        let mut short = String::from("left over from before");
        super::short_type_name(full, &mut short);
        short
    }

    #[test]
    fn a_remembered_short_name_is_the_one_its_type_has() {
        let names: Vec<&'static str> = (0..3 * SHORT_NAME_SLOTS)
            .map(|i| &*Box::leak(format!("crate{i}::module::Type{i}").into_boxed_str()))
            .chain(["u64", "alloc::vec::Vec<app::Item>", "&alloc::string::String"])
            .collect();
        for _ in 0..2 {
            for full in &names {
                let short = short_type_name(full);
                if let Some(remembered) = remembered_short_name(full) {
                    assert_eq!(remembered, short, "{full}");
                }
                remember_short_name(full, &short);
            }
        }
        assert_eq!(
            remembered_short_name("alloc::vec::Vec<app::Item>"),
            None,
            "not the end of its full name: never remembered"
        );
    }

    #[test]
    fn type_names_are_written_without_their_module_paths() {
        assert_eq!(short_type_name("alloc::vec::Vec<shop::cart::Item>"), "Vec<Item>");
        assert_eq!(
            short_type_name("std::collections::hash::map::HashMap<alloc::string::String, (u8, &str)>"),
            "HashMap<String, (u8, &str)>"
        );
        assert_eq!(
            short_type_name("[core::option::Option<i32>; 4]"),
            "[Option<i32>; 4]"
        );
        assert_eq!(short_type_name("u64"), "u64");
        assert_eq!(short_type_name("&&mut core::cell::Ref<'_, i32>"), "Ref<i32>");
        assert_eq!(short_type_name("app::Counted<'_>"), "Counted");
        assert_eq!(short_type_name("app::Pair<'static, &'static str>"), "Pair<&str>");
        assert_eq!(short_type_name("crème::Brûlée<'_, u8>"), "Brûlée<u8>");
        assert_eq!(
            short_type_name("dyn core::ops::Fn(&'a str) -> core::option::Option<u8>"),
            "dyn Fn(&str) -> Option<u8>"
        );
    }
}
