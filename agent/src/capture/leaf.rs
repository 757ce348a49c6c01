//! The leaves of the value tree (scalars, text, bytes and the markers for what was cut, hidden or broken),
//! each charged to the snapshot's budget as it is made.

use keyhole_proto::v1::{
    value::Kind, Bytes, CaptureError, Redacted, Text, Truncated, TruncationReason, Value,
};

use super::budget::{self, string_field, uint_field};
use super::Capturer;

/// Wraps a kind into a value (prost keeps the oneof in an `Option`).
#[inline]
pub(crate) fn value(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

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
pub(crate) fn short_type_name(full: &str) -> String {
    let full = full.trim_start_matches('&').trim_start_matches("mut ");
    if !full.contains([':', '\'']) {
        // Primitives (`u64`, `str`, `(u8, bool)`) are already short.
        return full.to_owned();
    }
    let mut short = String::with_capacity(full.len());
    // Where the path being written started in `short`; a `::` cuts `short` back to it.
    let mut path_start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ':' if chars.peek() == Some(&':') => {
                chars.next();
                short.truncate(path_start);
                continue;
            }
            '\'' => {
                // A lifetime argument (`'_`, `'static`) and the separator after it.
                while chars.next_if(|c| c.is_alphanumeric() || *c == '_').is_some() {}
                if chars.next_if_eq(&',').is_some() {
                    chars.next_if_eq(&' ');
                } else if short.ends_with('<') && chars.next_if_eq(&'>').is_some() {
                    short.pop();
                } else if chars.peek() == Some(&' ') && short.ends_with('&') {
                    chars.next();
                }
                path_start = short.len();
                continue;
            }
            _ => short.push(c),
        }
        if !(c.is_alphanumeric() || c == '_') {
            path_start = short.len();
        }
    }
    short
}

impl Capturer<'_> {
    /// How many bytes of text may still be copied: the string limit, or less when the snapshot is nearly full.
    #[inline]
    pub(crate) fn text_limit(&self) -> usize {
        self.limits.max_string_bytes.min(self.budget.remaining())
    }

    #[inline]
    pub(crate) fn null(&mut self) -> Value {
        self.budget.charge(budget::varint_value(0));
        value(Kind::Null(keyhole_proto::v1::Null::Value as i32))
    }

    #[inline]
    pub(crate) fn bool(&mut self, v: bool) -> Value {
        self.budget.charge(budget::varint_value(u64::from(v)));
        value(Kind::Bool(v))
    }

    #[inline]
    pub(crate) fn int(&mut self, v: i64) -> Value {
        self.budget.charge(budget::varint_value(budget::zigzag(v)));
        value(Kind::Int(v))
    }

    #[inline]
    pub(crate) fn uint(&mut self, v: u64) -> Value {
        self.budget.charge(budget::varint_value(v));
        value(Kind::Uint(v))
    }

    #[inline]
    pub(crate) fn float(&mut self, v: f64) -> Value {
        self.budget.charge(budget::FLOAT_VALUE);
        value(Kind::Float(v))
    }

    /// `text` cut to the text limit on a char boundary.
    pub(crate) fn text(&mut self, text: &str) -> Value {
        let end = floor_char_boundary(text, self.text_limit());
        self.text_parts(text[..end].to_owned(), (text.len() - end) as u64)
    }

    /// Text that was already cut while it was written (Debug, Display); `omitted_bytes` is what was cut.
    pub(crate) fn text_parts(&mut self, value_text: String, omitted_bytes: u64) -> Value {
        self.budget
            .charge_message(string_field(&value_text) + uint_field(omitted_bytes));
        value(Kind::Text(Text {
            value: value_text,
            omitted_bytes,
        }))
    }

    /// `bytes` cut to the text limit (the string limit covers byte strings too).
    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> Value {
        let kept = bytes.len().min(self.text_limit());
        let omitted_bytes = (bytes.len() - kept) as u64;
        let content = if kept == 0 { 0 } else { budget::delimited(kept) };
        self.budget.charge_message(content + uint_field(omitted_bytes));
        value(Kind::Bytes(Bytes {
            value: bytes[..kept].to_vec(),
            omitted_bytes,
        }))
    }

    /// The marker for a sensitive value: no content and no length.
    pub(crate) fn redacted(&mut self) -> Value {
        self.budget.charge_message(0);
        value(Kind::Redacted(Redacted {}))
    }

    /// The marker for a value deeper than the depth limit, named by the static type that was there.
    pub(crate) fn too_deep<T: ?Sized>(&mut self) -> Value {
        self.truncated(
            short_type_name(std::any::type_name::<T>()),
            TruncationReason::Depth,
        )
    }

    /// The marker for a value that did not fit in the snapshot. It carries no type name: the budget is
    /// already spent, and the marker should cost as little of the overshoot as possible.
    pub(crate) fn over_budget(&mut self) -> Value {
        self.truncated(String::new(), TruncationReason::SnapshotBytes)
    }

    fn truncated(&mut self, type_name: String, reason: TruncationReason) -> Value {
        let reason = reason as i32;
        self.budget
            .charge_message(string_field(&type_name) + uint_field(reason as u64));
        value(Kind::Truncated(Truncated { type_name, reason }))
    }

    /// A value that could not be captured, with why. The message is cut to the string limit but not to the
    /// remaining budget: a failure should be visible even in a nearly full snapshot.
    pub(crate) fn capture_error(&mut self, message: &str) -> Value {
        let end = floor_char_boundary(message, self.limits.max_string_bytes);
        let message = message[..end].to_owned();
        self.budget.charge_message(string_field(&message));
        value(Kind::Error(CaptureError { message }))
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
    }
}
