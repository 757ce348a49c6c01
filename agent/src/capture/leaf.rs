//! The leaves of the value tree (scalars, text, bytes and the markers for what was cut, hidden or broken),
//! each charged to the snapshot's budget as it is made.

use keyhole_proto::v1::{
    value::Kind, Bytes, CaptureError, Redacted, Text, Truncated, TruncationReason, Value,
};

use super::budget::{self, string_field, uint_field};
use super::Capturer;

/// Wraps a kind into a value (prost keeps the oneof in an `Option`).
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

impl Capturer<'_> {
    /// How many bytes of text may still be copied: the string limit, or less when the snapshot is nearly full.
    pub(crate) fn text_limit(&self) -> usize {
        self.limits.max_string_bytes.min(self.budget.remaining())
    }

    pub(crate) fn null(&mut self) -> Value {
        self.budget.charge(budget::varint_value(0));
        value(Kind::Null(keyhole_proto::v1::Null::Value as i32))
    }

    pub(crate) fn bool(&mut self, v: bool) -> Value {
        self.budget.charge(budget::varint_value(u64::from(v)));
        value(Kind::Bool(v))
    }

    pub(crate) fn int(&mut self, v: i64) -> Value {
        self.budget.charge(budget::varint_value(budget::zigzag(v)));
        value(Kind::Int(v))
    }

    pub(crate) fn uint(&mut self, v: u64) -> Value {
        self.budget.charge(budget::varint_value(v));
        value(Kind::Uint(v))
    }

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

    /// The marker for a value deeper than the depth limit, with the type that was there.
    pub(crate) fn too_deep(&mut self, type_name: String) -> Value {
        self.truncated(type_name, TruncationReason::Depth)
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
}
