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

/// Hex digits [`push_hex`] writes between two appends to the string.
const HEX_CHUNK: usize = 64;

/// Appends `bytes` as lowercase hex, two digits a byte, as Trace Context writes ids.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    // The digits are written into a buffer on the stack, a byte's two at once, and appended a chunk
    // at a time: pushing them one `char` at a time costs a capacity check and a UTF-8 encoding each.
    let mut buffer = [0u8; HEX_CHUNK];
    for chunk in bytes.chunks(HEX_CHUNK / 2) {
        for (pair, byte) in buffer.chunks_exact_mut(2).zip(chunk) {
            // Every `u8` is an index of the table: `get` never misses.
            pair.copy_from_slice(HEX_PAIRS.get(usize::from(*byte)).unwrap_or(&[b'0'; 2]));
        }
        let written = buffer.get(..2 * chunk.len()).unwrap_or_default();
        // Hex digits are ASCII: the check cannot fail.
        out.push_str(std::str::from_utf8(written).unwrap_or_default());
    }
}

/// Every byte's two lowercase hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = hex_pairs();

// Evaluated while compiling: an index out of range would fail the build, never the host.
#[allow(clippy::indexing_slicing)]
const fn hex_pairs() -> [[u8; 2]; 256] {
    let mut pairs = [[0; 2]; 256];
    let mut byte = 0;
    while byte < pairs.len() {
        pairs[byte] = [HEX_DIGITS[byte >> 4], HEX_DIGITS[byte & 0x0F]];
        byte += 1;
    }
    pairs
}

/// Marks a byte that is not a lowercase hex digit in [`LOWER_HEX`]; any value above 15 would do.
const NOT_HEX: u8 = 0xF0;

/// The value of every byte as a lowercase hex digit, or [`NOT_HEX`].
static LOWER_HEX: [u8; 256] = lower_hex_table();

// Evaluated while compiling: an index out of range would fail the build, never the host.
#[allow(clippy::indexing_slicing)]
const fn lower_hex_table() -> [u8; 256] {
    let mut table = [NOT_HEX; 256];
    let mut value = 0;
    while value < HEX_DIGITS.len() {
        table[HEX_DIGITS[value] as usize] = value as u8;
        value += 1;
    }
    table
}

/// The value of a lowercase hex digit, or [`NOT_HEX`].
#[inline]
fn lower_hex_or_miss(byte: u8) -> u8 {
    // Every `u8` is an index of the table: `get` never misses.
    LOWER_HEX.get(usize::from(byte)).copied().unwrap_or(NOT_HEX)
}

/// The value of a lowercase hex digit; Trace Context allows no uppercase.
pub(crate) fn lower_hex_value(byte: u8) -> Option<u8> {
    let value = lower_hex_or_miss(byte);
    (value != NOT_HEX).then_some(value)
}

/// The `N` bytes spelled by exactly `2 * N` lowercase hex digits, as Trace Context writes its ids.
pub(crate) fn lower_hex_bytes<const N: usize>(digits: &[u8]) -> Option<[u8; N]> {
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0; N];
    // Every digit is looked up and the misses are gathered, so there is one branch at the end, not one
    // a digit: an id is read whole or refused.
    let mut misses = 0;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        let (high, low) = (lower_hex_or_miss(*high), lower_hex_or_miss(*low));
        misses |= high | low;
        *byte = (high << 4) | (low & 0x0F);
    }
    (misses & NOT_HEX == 0).then_some(out)
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
#[allow(clippy::unwrap_used)]
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
        for byte in 0..=u8::MAX {
            let defined = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
            assert_eq!(lower_hex_value(byte).is_some(), defined, "{byte:#04x}");
        }
    }

    #[test]
    fn hex_fields_are_read_whole_or_refused() {
        assert_eq!(lower_hex_bytes::<2>(b"00ff"), Some([0x00, 0xff]));
        assert_eq!(lower_hex_bytes::<2>(b"a1b2"), Some([0xa1, 0xb2]));
        for bad in [&b"00f"[..], b"00fff", b"00fF", b"0g00", b"-000", b"00 0"] {
            assert_eq!(lower_hex_bytes::<2>(bad), None, "{bad:?}");
        }
        let mut hex = String::from("x");
        let bytes: Vec<u8> = (0..=u8::MAX).collect();
        push_hex(&mut hex, &bytes);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            format!("x{expected}"),
            "chunks longer than the buffer are written whole"
        );
        assert_eq!(
            lower_hex_bytes::<256>(hex.as_bytes().get(1..).unwrap()),
            Some(std::array::from_fn(|i| i as u8))
        );
    }

    #[test]
    fn list_members_skip_empty_and_whitespace_only_pieces() {
        let members: Vec<&[u8]> = list_members(b" a=1 ,, \t ,b=2,").collect();
        assert_eq!(members, [&b"a=1"[..], b"b=2"]);
        assert_eq!(split_once(b"k=v=w", b'='), Some((&b"k"[..], &b"v=w"[..])));
        assert_eq!(split_once(b"kv", b'='), None);
    }
}
