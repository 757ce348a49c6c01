//! The `traceparent` header (W3C Trace Context Level 2): strict parsing of what callers send and
//! formatting of what we send on.

use super::syntax::{lower_hex_bytes, push_hex, trim_ows};
use super::{HeaderError, TraceParentField};

/// Trace flag: the caller may have recorded this trace. A recommendation only; an untrusted caller may
/// set it to make us record.
pub const TRACE_FLAG_SAMPLED: u8 = 0x01;

/// Trace flag (Level 2): at least the right-most 7 bytes of the trace-id are random.
pub const TRACE_FLAG_RANDOM_TRACE_ID: u8 = 0x02;

/// The flags this version of the spec defines; the others are written as zero.
const KNOWN_FLAGS: u8 = TRACE_FLAG_SAMPLED | TRACE_FLAG_RANDOM_TRACE_ID;

/// Length of a version-00 header: `00-` + 32 + `-` + 16 + `-` + 2. Higher versions are at least this long.
const VERSION_00_LEN: usize = 55;

/// The only version this crate writes.
const WRITTEN_VERSION: &str = "00";

/// One `traceparent`: which trace a request belongs to and which span called us.
///
/// ```
/// use keyhole::propagation::TraceParent;
///
/// let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").unwrap();
/// assert_eq!(parent.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(parent.sampled() && parent.random_trace_id());
/// assert_eq!(parent.to_header(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03");
///
/// // Uppercase hex, all-zero ids and version ff are all refused.
/// assert!(TraceParent::parse(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace's id; never all zeros once parsed.
    pub trace_id: [u8; 16],
    /// The caller's span id; never all zeros once parsed.
    pub parent_id: [u8; 8],
    /// Trace flags as received (including bits this version does not define; [`TraceParent::to_header`]
    /// clears those).
    pub flags: u8,
}

impl TraceParent {
    /// A trace parent from its parts, refusing the all-zero ids the spec forbids.
    ///
    /// ```
    /// use keyhole::propagation::{TraceParent, TRACE_FLAG_SAMPLED};
    /// let parent = TraceParent::new([7; 16], [9; 8], TRACE_FLAG_SAMPLED).unwrap();
    /// assert!(parent.sampled());
    /// assert!(TraceParent::new([0; 16], [9; 8], 0).is_err());
    /// ```
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Result<TraceParent, HeaderError> {
        if trace_id == [0; 16] {
            return Err(HeaderError::TraceParentZeroTraceId);
        }
        if parent_id == [0; 8] {
            return Err(HeaderError::TraceParentZeroParentId);
        }
        Ok(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Parses one header value: `version-traceid-parentid-flags`, lowercase hex only, 2-32-16-2 digits,
    /// surrounding spaces and tabs ignored. Version `ff` and all-zero ids are invalid; version 00 must be
    /// exactly 55 characters. A higher version is read as far as version 00's fields go, provided they are
    /// well formed and followed by the end or `-`; the rest is ignored.
    pub fn parse(value: &[u8]) -> Result<TraceParent, HeaderError> {
        let value = trim_ows(value);
        let [version] = hex_field(value.get(0..2)).ok_or(HeaderError::TraceParentVersion)?;
        if version == 0xff || value.get(2) != Some(&b'-') {
            return Err(HeaderError::TraceParentVersion);
        }
        let trace_id = hex_field(value.get(3..35))
            .filter(|_| value.get(35) == Some(&b'-'))
            .ok_or(HeaderError::TraceParentField(TraceParentField::TraceId))?;
        let parent_id = hex_field(value.get(36..52))
            .filter(|_| value.get(52) == Some(&b'-'))
            .ok_or(HeaderError::TraceParentField(TraceParentField::ParentId))?;
        let [flags] =
            hex_field(value.get(53..55)).ok_or(HeaderError::TraceParentField(TraceParentField::Flags))?;
        // Version 00 ends with the flags; a later version may only go on after a '-'.
        let rest = value.get(VERSION_00_LEN..).unwrap_or_default();
        if !rest.is_empty() && (version == 0 || rest.first() != Some(&b'-')) {
            return Err(HeaderError::TraceParentTrailingData);
        }
        TraceParent::new(trace_id, parent_id, flags)
    }

    /// Reads the `traceparent` of a request from ALL its `traceparent` header values: none gives
    /// `Ok(None)`; more than one is invalid (the W3C test harness expects a new trace), and the values are
    /// not looked at.
    ///
    /// ```
    /// use keyhole::propagation::{HeaderError, TraceParent};
    /// let one = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    /// assert!(TraceParent::from_headers([&one[..]]).unwrap().is_some());
    /// assert_eq!(TraceParent::from_headers([]).unwrap(), None);
    /// assert_eq!(TraceParent::from_headers([&one[..], &one[..]]), Err(HeaderError::TraceParentDuplicated));
    /// ```
    pub fn from_headers<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<TraceParent>, HeaderError> {
        let mut values = values.into_iter();
        let Some(first) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(HeaderError::TraceParentDuplicated);
        }
        TraceParent::parse(first).map(Some)
    }

    /// The header value to send: always version 00, with flags other than sampled and random-trace-id
    /// written as zero.
    pub fn to_header(&self) -> String {
        let mut out = String::with_capacity(VERSION_00_LEN);
        out.push_str(WRITTEN_VERSION);
        out.push('-');
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.parent_id);
        out.push('-');
        push_hex(&mut out, &[self.flags & KNOWN_FLAGS]);
        out
    }

    /// Whether the caller recommends recording this trace.
    pub fn sampled(&self) -> bool {
        self.flags & TRACE_FLAG_SAMPLED != 0
    }

    /// Whether the caller says the trace-id is random (Level 2).
    pub fn random_trace_id(&self) -> bool {
        self.flags & TRACE_FLAG_RANDOM_TRACE_ID != 0
    }

    /// The trace-id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }

    /// The parent-id as 16 lowercase hex digits.
    pub fn parent_id_hex(&self) -> String {
        let mut out = String::with_capacity(16);
        push_hex(&mut out, &self.parent_id);
        out
    }
}

/// The bytes spelled by exactly `2 * N` lowercase hex digits, when the field is there at all.
fn hex_field<const N: usize>(digits: Option<&[u8]>) -> Option<[u8; N]> {
    lower_hex_bytes(digits?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TRACE_ID: &str = "12345678901234567890123456789012";
    const PARENT_ID: &str = "1234567890123456";

    fn parse(value: &str) -> Result<TraceParent, HeaderError> {
        TraceParent::parse(value.as_bytes())
    }

    fn with(version: &str, trace_id: &str, parent_id: &str, flags: &str) -> String {
        format!("{version}-{trace_id}-{parent_id}-{flags}")
    }

    #[test]
    fn a_well_formed_version_00_header_is_read_field_by_field() {
        let parent = parse(&with("00", TRACE_ID, PARENT_ID, "01")).unwrap();
        assert_eq!(parent.trace_id_hex(), TRACE_ID);
        assert_eq!(parent.parent_id_hex(), PARENT_ID);
        assert_eq!(parent.flags, 0x01);
        assert!(parent.sampled());
        assert!(!parent.random_trace_id());
    }

    #[test]
    fn spaces_and_tabs_around_the_value_are_ignored() {
        let header = with("00", TRACE_ID, PARENT_ID, "01");
        for value in [
            format!(" {header}"),
            format!("\t{header}"),
            format!("{header} "),
            format!("\t {header} \t"),
        ] {
            assert_eq!(parse(&value).unwrap().trace_id_hex(), TRACE_ID, "{value:?}");
        }
    }

    #[test]
    fn version_ff_is_invalid() {
        assert_eq!(
            parse(&with("ff", TRACE_ID, PARENT_ID, "01")),
            Err(HeaderError::TraceParentVersion)
        );
    }

    #[test]
    fn a_version_that_is_not_two_lowercase_hex_digits_is_invalid() {
        for version in [".0", "0.", "0", "000", "0000", "0A", "FF", ""] {
            let value = with(version, TRACE_ID, PARENT_ID, "01");
            assert_eq!(parse(&value), Err(HeaderError::TraceParentVersion), "{value}");
        }
    }

    #[test]
    fn uppercase_hex_is_invalid_in_every_field() {
        let upper_trace = "ABCDEF78901234567890123456789012";
        assert_eq!(
            parse(&with("00", upper_trace, PARENT_ID, "01")),
            Err(HeaderError::TraceParentField(TraceParentField::TraceId))
        );
        assert_eq!(
            parse(&with("00", TRACE_ID, "ABCDEF7890123456", "01")),
            Err(HeaderError::TraceParentField(TraceParentField::ParentId))
        );
        assert_eq!(
            parse(&with("00", TRACE_ID, PARENT_ID, "0A")),
            Err(HeaderError::TraceParentField(TraceParentField::Flags))
        );
    }

    #[test]
    fn an_all_zero_trace_id_or_parent_id_is_invalid() {
        let zero_trace = "0".repeat(32);
        let zero_parent = "0".repeat(16);
        assert_eq!(
            parse(&with("00", &zero_trace, PARENT_ID, "01")),
            Err(HeaderError::TraceParentZeroTraceId)
        );
        assert_eq!(
            parse(&with("00", TRACE_ID, &zero_parent, "01")),
            Err(HeaderError::TraceParentZeroParentId)
        );
    }

    #[test]
    fn ids_with_illegal_characters_or_the_wrong_width_are_invalid() {
        let trace = HeaderError::TraceParentField(TraceParentField::TraceId);
        let parent = HeaderError::TraceParentField(TraceParentField::ParentId);
        let cases = [
            (
                with("00", ".2345678901234567890123456789012", PARENT_ID, "01"),
                trace,
            ),
            (
                with("00", "1234567890123456789012345678901.", PARENT_ID, "01"),
                trace,
            ),
            (
                with("00", "123456789012345678901234567890123", PARENT_ID, "01"),
                trace,
            ),
            (
                with("00", "1234567890123456789012345678901", PARENT_ID, "01"),
                trace,
            ),
            (with("00", TRACE_ID, ".234567890123456", "01"), parent),
            (with("00", TRACE_ID, "123456789012345.", "01"), parent),
            (with("00", TRACE_ID, "12345678901234567", "01"), parent),
            (with("00", TRACE_ID, "123456789012345", "01"), parent),
        ];
        for (value, error) in cases {
            assert_eq!(parse(&value), Err(error), "{value}");
        }
    }

    #[test]
    fn flags_with_illegal_characters_or_the_wrong_width_are_invalid() {
        let flags = HeaderError::TraceParentField(TraceParentField::Flags);
        assert_eq!(parse(&with("00", TRACE_ID, PARENT_ID, ".0")), Err(flags));
        assert_eq!(parse(&with("00", TRACE_ID, PARENT_ID, "0.")), Err(flags));
        assert_eq!(parse(&with("00", TRACE_ID, PARENT_ID, "1")), Err(flags));
        assert_eq!(
            parse(&with("00", TRACE_ID, PARENT_ID, "001")),
            Err(HeaderError::TraceParentTrailingData)
        );
    }

    #[test]
    fn version_00_with_an_extra_field_or_trailing_characters_is_invalid() {
        let header = with("00", TRACE_ID, PARENT_ID, "01");
        for value in [
            format!("{header}-what-the-future-will-be-like"),
            format!("{header}."),
            format!("{header}-"),
        ] {
            assert_eq!(
                parse(&value),
                Err(HeaderError::TraceParentTrailingData),
                "{value}"
            );
        }
    }

    #[test]
    fn a_higher_version_is_read_as_far_as_version_00_goes_and_the_rest_ignored() {
        let header = with("cc", TRACE_ID, PARENT_ID, "01");
        assert_eq!(parse(&header).unwrap().trace_id_hex(), TRACE_ID);
        let extended = format!("{header}-what-the-future-will-be-like");
        assert_eq!(parse(&extended).unwrap().trace_id_hex(), TRACE_ID);
    }

    #[test]
    fn a_higher_version_whose_known_fields_are_not_followed_by_end_or_dash_is_invalid() {
        let header = with("cc", TRACE_ID, PARENT_ID, "01");
        let glued = format!("{header}.what-the-future-will-be-like");
        assert_eq!(parse(&glued), Err(HeaderError::TraceParentTrailingData));
        let short = with("cc", TRACE_ID, PARENT_ID, "1");
        assert!(parse(&short).is_err());
        assert_eq!(
            parse(&with("cc", &"0".repeat(32), PARENT_ID, "01")),
            Err(HeaderError::TraceParentZeroTraceId)
        );
    }

    #[test]
    fn empty_and_garbage_values_are_invalid() {
        for value in ["", " ", "-", "00", "00-", "traceparent", "00-00-00-00"] {
            assert!(parse(value).is_err(), "{value:?}");
        }
        assert!(TraceParent::parse(b"00-\xff\xfe").is_err());
    }

    #[test]
    fn two_traceparent_headers_are_invalid_even_when_each_is_valid() {
        let one = with("00", TRACE_ID, PARENT_ID, "01");
        let other = with("00", "12345678901234567890123456789011", PARENT_ID, "01");
        let both = TraceParent::from_headers([one.as_bytes(), other.as_bytes()]);
        assert_eq!(both, Err(HeaderError::TraceParentDuplicated));
        let same_twice = TraceParent::from_headers([one.as_bytes(), one.as_bytes()]);
        assert_eq!(same_twice, Err(HeaderError::TraceParentDuplicated));
    }

    #[test]
    fn no_traceparent_header_is_not_an_error() {
        assert_eq!(TraceParent::from_headers(std::iter::empty()), Ok(None));
    }

    #[test]
    fn output_is_always_version_00_whatever_version_came_in() {
        let parent = parse(&format!("{}-extra", with("cc", TRACE_ID, PARENT_ID, "01"))).unwrap();
        assert_eq!(parent.to_header(), with("00", TRACE_ID, PARENT_ID, "01"));
    }

    #[test]
    fn only_the_sampled_and_random_trace_id_flags_are_sent_on() {
        let parent = parse(&with("00", TRACE_ID, PARENT_ID, "ff")).unwrap();
        assert_eq!(parent.flags, 0xff);
        assert_eq!(parent.to_header(), with("00", TRACE_ID, PARENT_ID, "03"));
        let random_only = parse(&with("00", TRACE_ID, PARENT_ID, "02")).unwrap();
        assert!(random_only.random_trace_id() && !random_only.sampled());
        assert_eq!(random_only.to_header(), with("00", TRACE_ID, PARENT_ID, "02"));
    }
}
