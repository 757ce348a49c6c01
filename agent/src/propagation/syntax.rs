//! The byte-level grammar the three headers share: optional whitespace (RFC 9110 `OWS`), HTTP tokens
//! (`tchar`), hex digits, and splitting at a delimiter. Everything works on borrowed slices, so scanning a
//! header never allocates.

/// Whether `byte` is optional whitespace: space or horizontal tab (RFC 9110 §5.6.3).
pub(crate) fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

/// `bytes` without leading and trailing optional whitespace.
pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_ows(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_ows(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Whether `byte` is an RFC 9110 `tchar`, the characters of an HTTP token.
#[inline]
pub(crate) fn is_tchar(byte: u8) -> bool {
    // Every `u8` is an index of the table: `get` never misses.
    TCHARS.get(usize::from(byte)).copied().unwrap_or(false)
}

/// [`is_tchar`] for every byte, looked up: keys are checked a byte at a time.
static TCHARS: [bool; 256] = tchar_table();

// Evaluated while compiling: an index out of range would fail the build, never the host.
#[allow(clippy::indexing_slicing)]
const fn tchar_table() -> [bool; 256] {
    const SYMBOLS: &[u8] = b"!#$%&'*+-.^_`|~";
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < table.len() {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut symbol = 0;
    while symbol < SYMBOLS.len() {
        table[SYMBOLS[symbol] as usize] = true;
        symbol += 1;
    }
    table
}

/// `bytes` as a `&str` when it is a non-empty HTTP token.
pub(crate) fn token(bytes: &[u8]) -> Option<&str> {
    if bytes.is_empty() || !bytes.iter().all(|b| is_tchar(*b)) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// The lowercase hex digits, by value.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lowercase hex, two digits a byte, as Trace Context writes ids.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    out.reserve(2 * bytes.len());
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0F] {
            // A nibble is below 16: the lookup never misses.
            out.push(char::from(
                HEX_DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

/// The value of a lowercase hex digit; Trace Context allows no uppercase.
pub(crate) fn lower_hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// The value of a hex digit of either case, as percent-encoding allows (RFC 3986 §2.1).
pub(crate) fn hex_value(byte: u8) -> Option<u8> {
    lower_hex_value(byte.to_ascii_lowercase())
}

/// The parts before and after the first `delimiter`, which belongs to neither.
pub(crate) fn split_once(bytes: &[u8], delimiter: u8) -> Option<(&[u8], &[u8])> {
    let at = memchr::memchr(delimiter, bytes)?;
    let (before, from_delimiter) = bytes.split_at_checked(at)?;
    Some((before, from_delimiter.get(1..)?))
}

/// The pieces of one header value between commas, without their surrounding whitespace, skipping empty
/// ones. Lazy, so a value that is nothing but delimiters costs no allocation.
pub(crate) fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Commas are found with `memchr`, many bytes at a time: a member is mostly one long value.
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let piece = rest?;
        Some(match split_once(piece, b',') {
            Some((member, after)) => {
                rest = Some(after);
                member
            }
            None => {
                rest = None;
                piece
            }
        })
    })
    .map(trim_ows)
    .filter(|member| !member.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_removes_only_spaces_and_tabs_at_either_end() {
        assert_eq!(trim_ows(b" \t a b\t \t"), b"a b");
        assert_eq!(trim_ows(b"\r\na\n"), b"\r\na\n");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn the_tchar_table_is_the_rfc_9110_definition() {
        for byte in 0..=u8::MAX {
            let defined = byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
            assert_eq!(is_tchar(byte), defined, "{byte:#04x}");
        }
    }

    #[test]
    fn tokens_are_the_rfc_9110_tchars() {
        assert_eq!(token(b"Aa0!#$%&'*+-.^_`|~"), Some("Aa0!#$%&'*+-.^_`|~"));
        for bad in [
            &b""[..],
            b"a b",
            b"a=b",
            b"a,b",
            b"a;b",
            b"a\"b",
            b"a(b",
            b"a/b",
            b"\xc3\xa9",
        ] {
            assert_eq!(token(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hex_digits_are_lowercase_for_trace_context_and_either_case_for_percent_encoding() {
        assert_eq!(lower_hex_value(b'f'), Some(15));
        assert_eq!(lower_hex_value(b'F'), None);
        assert_eq!(hex_value(b'F'), Some(15));
        assert_eq!(hex_value(b'g'), None);
    }

    #[test]
    fn list_members_skip_empty_and_whitespace_only_pieces() {
        let members: Vec<&[u8]> = list_members(b" a=1 ,, \t ,b=2,").collect();
        assert_eq!(members, [&b"a=1"[..], b"b=2"]);
        assert_eq!(split_once(b"k=v=w", b'='), Some((&b"k"[..], &b"v=w"[..])));
        assert_eq!(split_once(b"kv", b'='), None);
    }
}
