//! Which names are sensitive: a field, map key or variable whose normalised
//! name is on the list is captured as a redacted marker with no value.
//!
//! The default list is the 85 identifiers used by the major live debuggers
//! (`redacted-identifiers.txt`). Normalising lower-cases a name and removes
//! `_`, `-`, `$` and `@`, so `Access_Token`, `accessToken` and `ACCESS-TOKEN`
//! are all `accesstoken`.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::static_memo::StaticStrMemo;

/// Longest name normalised on the stack; longer ASCII names are compared
/// against the list's longest entry first and usually rejected without work.
const STACK_NAME_BYTES: usize = 64;

/// The default sensitive identifiers, one normalised name a line.
const DEFAULT_IDENTIFIERS: &str = include_str!("redacted-identifiers.txt");

/// Lower-cases `name` and removes `_`, `-`, `$` and `@`.
///
/// ```
/// assert_eq!(keyhole_proto::redaction::normalize("Access_Token"), "accesstoken");
/// assert_eq!(keyhole_proto::redaction::normalize("$api-Key@"), "apikey");
/// ```
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-' | '$' | '@'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// FNV-1a: the names are short and not attacker-chosen keys of a map we
/// grow, so a fast non-keyed hash is right here (capture asks once a field).
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// The set of normalised names to redact: the default list plus additions,
/// minus exclusions.
#[derive(Debug, Clone)]
pub struct RedactionList {
    names: HashSet<String, BuildHasherDefault<Fnv>>,
    /// Bit `n` is set when some name on the list is `n` bytes long (`n` < 64):
    /// most field names are rejected by length alone.
    lengths: u64,
    longest: usize,
    static_names: StaticVerdicts,
}

/// Slots of the verdicts remembered for static names: room for the field
/// names of the types a service captures.
const STATIC_SLOTS: usize = 512;

/// The verdicts [`RedactionList::is_redacted_static`] gave. The list never
/// changes once made, so an answer, once given, holds for as long as the list
/// lives.
#[derive(Debug, Default)]
struct StaticVerdicts(StaticStrMemo<STATIC_SLOTS>);

impl Clone for StaticVerdicts {
    /// A clone starts with no answers: they are cheap to give again.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Default for RedactionList {
    fn default() -> Self {
        Self::from_names(default_identifiers().map(str::to_owned))
    }
}

impl RedactionList {
    /// The default list with `add` added and `exclude` removed (both are
    /// normalised first).
    ///
    /// ```
    /// use keyhole_proto::redaction::RedactionList;
    /// let list = RedactionList::with_changes(["customer_ssn"], ["session"]);
    /// assert!(list.is_redacted("CustomerSSN"));
    /// assert!(!list.is_redacted("session"));
    /// assert!(list.is_redacted("password"));
    /// ```
    pub fn with_changes<A, E>(add: A, exclude: E) -> Self
    where
        A: IntoIterator,
        A::Item: AsRef<str>,
        E: IntoIterator,
        E::Item: AsRef<str>,
    {
        let mut names: HashSet<String> = default_identifiers().map(str::to_owned).collect();
        names.extend(add.into_iter().map(|n| normalize(n.as_ref())));
        for name in exclude {
            names.remove(&normalize(name.as_ref()));
        }
        Self::from_names(names.into_iter().filter(|n| !n.is_empty()))
    }

    fn from_names(names: impl IntoIterator<Item = String>) -> Self {
        let names: HashSet<String, BuildHasherDefault<Fnv>> = names.into_iter().collect();
        let lengths = names
            .iter()
            .filter(|n| n.len() < 64)
            .fold(0u64, |bits, n| bits | (1 << n.len()));
        let longest = names.iter().map(String::len).max().unwrap_or(0);
        Self {
            names,
            lengths,
            longest,
            static_names: StaticVerdicts::default(),
        }
    }

    /// [`is_redacted`](Self::is_redacted) for a name with a `'static`
    /// lifetime, such as the field names serde's derive hands out: the answer
    /// is remembered, so asking again for the same name costs one atomic load.
    ///
    /// ```
    /// use keyhole_proto::redaction::RedactionList;
    /// let list = RedactionList::default();
    /// for _ in 0..2 {
    ///     assert!(list.is_redacted_static("api_key"));
    ///     assert!(!list.is_redacted_static("quantity"));
    /// }
    /// ```
    #[inline]
    pub fn is_redacted_static(&self, name: &'static str) -> bool {
        match self.static_names.0.get(name) {
            Some(verdict) => verdict == 1,
            None => self.remember(name),
        }
    }

    #[cold]
    fn remember(&self, name: &'static str) -> bool {
        let redacted = self.is_redacted(name);
        self.static_names.0.remember(name, u8::from(redacted));
        redacted
    }

    /// Whether values named `name` must not be captured. ASCII names (nearly
    /// all field names) are normalised on the stack, without allocating.
    pub fn is_redacted(&self, name: &str) -> bool {
        if !name.is_ascii() {
            return self.names.contains(&normalize(name));
        }
        let mut buffer = [0u8; STACK_NAME_BYTES];
        let mut len = 0;
        for byte in name.bytes() {
            if matches!(byte, b'_' | b'-' | b'$' | b'@') {
                continue;
            }
            if len == self.longest.min(STACK_NAME_BYTES) {
                // Longer than every listed name, or than the stack buffer.
                return self.longest > STACK_NAME_BYTES && self.names.contains(&normalize(name));
            }
            buffer[len] = byte.to_ascii_lowercase();
            len += 1;
        }
        if len < 64 && self.lengths & (1 << len) == 0 {
            return false;
        }
        // ASCII in, ASCII out: the buffer is valid UTF-8.
        std::str::from_utf8(&buffer[..len]).is_ok_and(|normalised| self.names.contains(normalised))
    }
}

/// The default identifiers, already normalised.
pub fn default_identifiers() -> impl Iterator<Item = &'static str> {
    DEFAULT_IDENTIFIERS
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_has_the_85_reference_identifiers() {
        assert_eq!(default_identifiers().count(), 85);
        for name in default_identifiers() {
            assert_eq!(normalize(name), name, "list entries are stored normalised");
        }
    }

    #[test]
    fn every_default_name_is_redacted_in_any_spelling() {
        let list = RedactionList::default();
        for name in default_identifiers() {
            assert!(list.is_redacted(name));
            assert!(list.is_redacted(&name.to_uppercase()));
            let spelled = format!("_{}-$@", name.to_uppercase());
            assert!(list.is_redacted(&spelled), "{spelled}");
        }
        assert!(list.is_redacted("Access_Token"));
        assert!(list.is_redacted("accessToken"));
        assert!(list.is_redacted("ACCESS-TOKEN"));
    }

    #[test]
    fn long_and_non_ascii_names_are_compared_like_short_ones() {
        let long = "a_very_long_operator_defined_secret_name_that_is_over_sixty_four_bytes_long";
        let list = RedactionList::with_changes([long], [""; 0]);
        assert!(list.is_redacted(&long.to_uppercase()));
        assert!(!list.is_redacted("a_very_long_name_that_is_not_on_the_list_and_keeps_going_past_sixty_four"));
        let unicode = RedactionList::with_changes(["pässwort"], [""; 0]);
        assert!(unicode.is_redacted("PÄSS_WORT"));
        assert!(!RedactionList::default().is_redacted(""));
        assert!(!RedactionList::default().is_redacted("passwordx"));
    }

    #[test]
    fn a_remembered_answer_belongs_to_its_own_name() {
        let list = RedactionList::with_changes(["customer_ssn"], ["session"]);
        // More names than slots, twice, so that names share slots and take turns.
        let names: Vec<&'static str> = (0..3 * STATIC_SLOTS)
            .map(|i| match i % 4 {
                0 => "password",
                1 => "CustomerSSN",
                2 => "session",
                _ => &*Box::leak(format!("field{i}").into_boxed_str()),
            })
            .collect();
        for _ in 0..2 {
            for name in &names {
                assert_eq!(list.is_redacted_static(name), list.is_redacted(name), "{name}");
            }
        }
        let clone = list.clone();
        assert!(clone.is_redacted_static("CustomerSSN") && !clone.is_redacted_static("session"));
    }

    #[test]
    fn ordinary_names_are_not_redacted() {
        let list = RedactionList::default();
        for name in ["sku", "quantity", "user_id", "cart", "total"] {
            assert!(!list.is_redacted(name), "{name}");
        }
    }
}
