//! The `tracestate` header (W3C Trace Context Level 2): vendor list-members read strictly from all
//! `tracestate` headers together, and written back within the 512-character propagation limit.

use super::limits::{
    MAX_TRACESTATE_HEADER_LEN, MAX_TRACESTATE_KEY_LEN, MAX_TRACESTATE_MEMBERS, MAX_TRACESTATE_VALUE_LEN,
    TRACESTATE_LARGE_MEMBER_LEN,
};
use super::syntax::{list_members, split_once};
use super::HeaderError;

/// The list-members of a request's `tracestate`, in order.
///
/// ```
/// use keyhole::propagation::TraceState;
///
/// let state = TraceState::from_headers([&b"rojo=00f067aa0ba902b7"[..], b" , congo=t61rcWkgMzE"]).unwrap();
/// assert_eq!(state.get("rojo"), Some("00f067aa0ba902b7"));
/// assert_eq!(state.to_header().as_deref(), Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
///
/// // One bad list-member discards the whole header.
/// assert!(TraceState::from_headers([&b"rojo=1,Congo=2"[..]]).is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceState {
    /// The members as `key=value` joined by `,`. Neither keys nor values may contain `,` or `=`, so this
    /// one string is the whole structure: one allocation, and [`TraceState::to_header`] is a copy.
    text: String,
    /// How many members `text` holds.
    len: usize,
}

impl TraceState {
    /// Reads ALL `tracestate` header values of a request, joined with `,` as the spec says. Only call it when
    /// the request's `traceparent` was valid: with an invalid one, `tracestate` must be dropped unread.
    ///
    /// The whole header is refused when a non-empty list-member breaks the grammar (key: 1 to 256 of
    /// `[a-z0-9_-*/@]`, starting with `[a-z0-9]`, so `tenant@system` keys included; value: 1 to 256
    /// printable ASCII characters other than `,` and `=`, not ending in a space, leading spaces kept) or when
    /// there are more than [`MAX_TRACESTATE_MEMBERS`] of them; reading stops at the 33rd, so nothing after it
    /// is looked at or allocated. Empty and whitespace-only list-members are allowed and skipped.
    ///
    /// A key that repeats is kept once, with its first value, and the repeat still counts toward the 32:
    /// the current spec makes uniqueness the sender's duty, and the W3C test harness expects such a header
    /// to be inherited rather than discarded.
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<TraceState, HeaderError> {
        let mut state = TraceState::default();
        let mut position = 0;
        for member in values.into_iter().flat_map(list_members) {
            position += 1;
            if position > MAX_TRACESTATE_MEMBERS {
                return Err(HeaderError::TraceStateTooManyMembers);
            }
            let (key, value) =
                split_once(member, b'=').ok_or(HeaderError::TraceStateMissingEquals { position })?;
            let key = valid_key(key).ok_or(HeaderError::TraceStateKey { position })?;
            let value = valid_value(value).ok_or(HeaderError::TraceStateValue { position })?;
            if state.get(key).is_none() {
                state.push(key, value);
            }
        }
        Ok(state)
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, value)| value)
    }

    /// The list-members as `(key, value)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.members().filter_map(|member| member.split_once('='))
    }

    /// How many list-members there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no list-members.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The header value to send, at most [`MAX_TRACESTATE_HEADER_LEN`] characters, or `None` when nothing
    /// is left to send. Truncation drops whole list-members: first those longer than
    /// [`TRACESTATE_LARGE_MEMBER_LEN`] characters, then others; each time the right-most candidate, and only
    /// until the rest fits, so as much as possible of the front (the most recent vendors) survives.
    ///
    /// ```
    /// use keyhole::propagation::TraceState;
    ///
    /// // 520 characters: the one member over 128 goes, the later ones stay.
    /// let big = format!("big={}", "x".repeat(250));
    /// let header = format!("a=1,{big},b={},c={},d=4", "y".repeat(126), "z".repeat(126));
    /// let state = TraceState::from_headers([header.as_bytes()]).unwrap();
    /// let sent = state.to_header().unwrap();
    /// assert!(sent.len() <= 512 && !sent.contains("big=") && sent.ends_with("d=4"));
    /// ```
    pub fn to_header(&self) -> Option<String> {
        if self.text.len() <= MAX_TRACESTATE_HEADER_LEN {
            return (!self.text.is_empty()).then(|| self.text.clone());
        }
        let mut kept = [false; MAX_TRACESTATE_MEMBERS];
        let mut lens = [0; MAX_TRACESTATE_MEMBERS];
        for ((kept, len), member) in kept.iter_mut().zip(lens.iter_mut()).zip(self.members()) {
            *kept = true;
            *len = member.len();
        }
        while header_len(&kept, &lens) > MAX_TRACESTATE_HEADER_LEN {
            let candidates = || {
                kept.iter()
                    .zip(&lens)
                    .enumerate()
                    .rev()
                    .filter(|(_, (kept, _))| **kept)
            };
            let victim = candidates()
                .find(|(_, (_, len))| **len > TRACESTATE_LARGE_MEMBER_LEN)
                .or_else(|| candidates().next())
                .map(|(index, _)| index);
            match victim.and_then(|index| kept.get_mut(index)) {
                Some(slot) => *slot = false,
                None => break,
            }
        }
        let mut out = String::with_capacity(header_len(&kept, &lens));
        for (member, _) in self.members().zip(kept).filter(|(_, kept)| *kept) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(member);
        }
        (!out.is_empty()).then_some(out)
    }

    fn members(&self) -> impl Iterator<Item = &str> {
        self.text.split(',').filter(|member| !member.is_empty())
    }

    fn push(&mut self, key: &str, value: &str) {
        if !self.text.is_empty() {
            self.text.push(',');
        }
        self.text.push_str(key);
        self.text.push('=');
        self.text.push_str(value);
        self.len += 1;
    }
}

/// Length of the members marked kept, joined by commas.
fn header_len(kept: &[bool], lens: &[usize]) -> usize {
    let (count, sum) = kept
        .iter()
        .zip(lens)
        .filter(|(kept, _)| **kept)
        .fold((0usize, 0), |(count, sum), (_, len)| (count + 1, sum + len));
    sum + count.saturating_sub(1)
}

/// `key` as text when it follows the key grammar.
fn valid_key(key: &[u8]) -> Option<&str> {
    let (first, rest) = key.split_first()?;
    let starts_well = first.is_ascii_lowercase() || first.is_ascii_digit();
    let key_char = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(b);
    if !starts_well || key.len() > MAX_TRACESTATE_KEY_LEN || !rest.iter().all(key_char) {
        return None;
    }
    std::str::from_utf8(key).ok()
}

/// `value` as text when it follows the value grammar. Trailing spaces were already trimmed with the
/// list-member's optional whitespace, so an empty value is the only way to fail the last-character rule.
fn valid_value(value: &[u8]) -> Option<&str> {
    let last = value.last()?;
    let value_char = |b: &u8| (0x20..=0x7E).contains(b) && *b != b',' && *b != b'=';
    if *last == b' ' || value.len() > MAX_TRACESTATE_VALUE_LEN || !value.iter().all(value_char) {
        return None;
    }
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests;
