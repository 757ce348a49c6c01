//! Percent-encoding of baggage values (RFC 3986 §2.1) and the lossy UTF-8 decoding the W3C Baggage spec
//! asks for (invalid sequences become U+FFFD). Decoding is an iterator over `char`s, so the parser can
//! measure a value before it decides to allocate for it.

use super::syntax::hex_value;

/// Whether `byte` may appear unencoded in a baggage value: `baggage-octet`, which is printable US-ASCII
/// except `"`, `,`, `;` and `\`.
pub(crate) const fn is_baggage_octet(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

/// Whether `byte` is sent as itself in an encoded value: a baggage octet other than `%`. Most values (ids,
/// tokens, tenant names) are nothing but these, and are read and written as they are, without decoding.
#[inline]
pub(crate) fn is_plain(byte: u8) -> bool {
    // Every `u8` is an index of the table: `get` never misses, and the check compiles away.
    PLAIN.get(usize::from(byte)).copied().unwrap_or(false)
}

/// [`is_plain`] for every byte, looked up rather than compared: values are checked a byte at a time.
static PLAIN: [bool; 256] = plain_table();

// Evaluated while compiling: an index out of range would fail the build, never the host.
#[allow(clippy::indexing_slicing)]
const fn plain_table() -> [bool; 256] {
    let mut plain = [false; 256];
    let mut byte = 0;
    while byte < plain.len() {
        plain[byte] = byte as u8 != b'%' && is_baggage_octet(byte as u8);
        byte += 1;
    }
    plain
}

/// Whether every byte of `raw` stands for itself, so that decoding it or encoding it changes nothing.
#[inline]
pub(crate) fn is_plain_text(raw: &[u8]) -> bool {
    // Eight bytes are looked up before each branch: values are long runs of plain bytes.
    let mut chunks = raw.chunks_exact(PLAIN_CHUNK);
    let all_plain = chunks.all(|chunk| chunk.iter().fold(true, |all, &byte| all & is_plain(byte)));
    all_plain && chunks.remainder().iter().all(|&byte| is_plain(byte))
}

/// Bytes [`is_plain_text`] checks between branches.
const PLAIN_CHUNK: usize = 8;

/// Whether `raw` is a well-formed encoded value: baggage octets only, every `%` followed by two hex digits.
pub(crate) fn is_well_formed(mut raw: &[u8]) -> bool {
    if is_plain_text(raw) {
        return true;
    }
    loop {
        match raw {
            [] => return true,
            [b'%', high, low, rest @ ..] if hex_value(*high).is_some() && hex_value(*low).is_some() => {
                raw = rest
            }
            [b'%', ..] => return false,
            [byte, rest @ ..] if is_baggage_octet(*byte) => raw = rest,
            [_, ..] => return false,
        }
    }
}

/// The decoded bytes of an encoded value. A `%` that does not start an escape passes through as itself,
/// which only matters for input that [`is_well_formed`] would have refused.
struct DecodedBytes<'a> {
    rest: &'a [u8],
}

impl Iterator for DecodedBytes<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        match self.rest {
            [b'%', high, low, rest @ ..] => {
                if let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low)) {
                    self.rest = rest;
                    return Some((high << 4) | low);
                }
                self.rest = self.rest.get(1..).unwrap_or_default();
                Some(b'%')
            }
            [byte, rest @ ..] => {
                self.rest = rest;
                Some(*byte)
            }
            [] => None,
        }
    }
}

/// The characters of a percent-decoded value, with every maximal invalid UTF-8 subpart replaced by one
/// U+FFFD: the WHATWG decoder's algorithm, which is also what `String::from_utf8_lossy` produces.
pub(crate) struct DecodedChars<'a> {
    bytes: DecodedBytes<'a>,
    /// A byte that ended an invalid sequence and must start the next character.
    pending: Option<u8>,
}

/// Decodes the percent-encoded `raw` lazily.
pub(crate) fn decode(raw: &[u8]) -> DecodedChars<'_> {
    DecodedChars {
        bytes: DecodedBytes { rest: raw },
        pending: None,
    }
}

impl Iterator for DecodedChars<'_> {
    type Item = char;

    fn next(&mut self) -> Option<char> {
        let first = self.pending.take().or_else(|| self.bytes.next())?;
        // Continuation bytes needed, the bits so far, and the range the next byte must fall in: the
        // narrower first ranges rule out overlong forms, surrogates and code points above U+10FFFF.
        let (needed, mut code_point, mut lower, mut upper) = match first {
            0x00..=0x7F => return Some(char::from(first)),
            0xC2..=0xDF => (1, u32::from(first & 0x1F), 0x80, 0xBF),
            0xE0 => (2, 0, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, u32::from(first & 0x0F), 0x80, 0xBF),
            0xED => (2, 0x0D, 0x80, 0x9F),
            0xF0 => (3, 0, 0x90, 0xBF),
            0xF1..=0xF3 => (3, u32::from(first & 0x07), 0x80, 0xBF),
            0xF4 => (3, 0x04, 0x80, 0x8F),
            _ => return Some(char::REPLACEMENT_CHARACTER),
        };
        for _ in 0..needed {
            match self.bytes.next() {
                Some(byte) if (lower..=upper).contains(&byte) => {
                    code_point = (code_point << 6) | u32::from(byte & 0x3F);
                    (lower, upper) = (0x80, 0xBF);
                }
                Some(byte) => {
                    self.pending = Some(byte);
                    return Some(char::REPLACEMENT_CHARACTER);
                }
                None => return Some(char::REPLACEMENT_CHARACTER),
            }
        }
        Some(char::from_u32(code_point).unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

/// Bytes `c` takes once percent-encoded: only baggage octets other than `%` stay as they are.
pub(crate) fn encoded_len(c: char) -> usize {
    match u8::try_from(c) {
        Ok(byte) if is_plain(byte) => 1,
        _ => 3 * c.len_utf8(),
    }
}

/// Bytes `value` takes once percent-encoded.
pub(crate) fn encoded_value_len(value: &str) -> usize {
    if is_plain_text(value.as_bytes()) {
        return value.len();
    }
    value.chars().map(encoded_len).sum()
}

/// Appends `value` percent-encoded to `out`, escaping exactly what [`encoded_len`] counts as escaped.
pub(crate) fn push_encoded(out: &mut String, value: &str) {
    if is_plain_text(value.as_bytes()) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        if encoded_len(c) == 1 {
            out.push(c);
            continue;
        }
        for byte in c.encode_utf8(&mut [0; 4]).bytes() {
            out.push('%');
            out.push(upper_hex_digit(byte >> 4));
            out.push(upper_hex_digit(byte & 0x0F));
        }
    }
}

/// RFC 3986 recommends uppercase digits in escapes.
fn upper_hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).map_or('0', |c| c.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(raw: &str) -> String {
        decode(raw.as_bytes()).collect()
    }

    #[test]
    fn escapes_of_either_case_decode_to_utf_8() {
        assert_eq!(decoded("Am%C3%A9lie"), "Amélie");
        assert_eq!(decoded("Am%c3%a9lie"), "Amélie");
        assert_eq!(decoded("DF%2028"), "DF 28");
        assert_eq!(decoded("a=b"), "a=b");
    }

    #[test]
    fn invalid_utf_8_after_decoding_becomes_replacement_characters() {
        assert_eq!(decoded("%FF"), "\u{FFFD}");
        assert_eq!(decoded("a%C3"), "a\u{FFFD}");
        assert_eq!(decoded("%C3a"), "\u{FFFD}a");
        assert_eq!(decoded("%ED%A0%80"), "\u{FFFD}\u{FFFD}\u{FFFD}");
        assert_eq!(decoded("%F0%9F%98"), "\u{FFFD}");
        assert_eq!(decoded("%F0%9F%98%80"), "😀");
    }

    #[test]
    fn well_formed_values_hold_only_baggage_octets_and_complete_escapes() {
        assert!(is_well_formed(b""));
        assert!(is_well_formed(b"a=b%20c"));
        for bad in [
            &b"a b"[..],
            b"a,b",
            b"a;b",
            b"a\\b",
            b"a\"b",
            b"%",
            b"%2",
            b"%zz",
            b"\xc3\xa9",
        ] {
            assert!(!is_well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn encoding_escapes_what_is_not_a_baggage_octet_and_the_percent_sign() {
        let mut out = String::new();
        push_encoded(&mut out, "a b,c;d%e=f\"é\u{FFFD}");
        assert_eq!(out, "a%20b%2Cc%3Bd%25e=f%22%C3%A9%EF%BF%BD");
        assert_eq!(encoded_value_len("a b,c;d%e=f\"é\u{FFFD}"), out.len());
    }

    #[test]
    fn plain_text_is_every_baggage_octet_but_the_percent_sign_and_passes_through_as_it_is() {
        let plain: String = (0u8..=0x7F)
            .filter(|&b| is_baggage_octet(b) && b != b'%')
            .map(char::from)
            .collect();
        assert!(is_plain_text(plain.as_bytes()));
        assert_eq!(decoded(&plain), plain);
        let mut out = String::new();
        push_encoded(&mut out, &plain);
        assert_eq!(
            (out.as_str(), encoded_value_len(&plain)),
            (plain.as_str(), plain.len())
        );
        for byte in (0u8..=0xFF).filter(|&b| !is_baggage_octet(b) || b == b'%') {
            assert!(!is_plain_text(&[b'a', byte]), "{byte:#x}");
        }
    }
}
