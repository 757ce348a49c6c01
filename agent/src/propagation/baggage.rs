//! The `baggage` header (W3C Baggage): entries read from all `baggage` headers of a request under one
//! shared budget, and written back percent-encoded within the same limits.

use std::borrow::Cow;
use std::fmt;

use super::limits::{MAX_BAGGAGE_BYTES, MAX_BAGGAGE_MEMBERS};
use super::percent::{decode, encoded_len, encoded_value_len, is_plain_text, is_well_formed, push_encoded};
use super::syntax::{list_members, split_once, token, trim_ows};
use super::HeaderError;

/// One baggage list-member.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BaggageEntry {
    /// The key, an HTTP token.
    pub key: String,
    /// The value, percent-decoded; bytes that were not UTF-8 after decoding became U+FFFD.
    pub value: String,
    /// The member's metadata exactly as received, from its first `;` on (`";k1=v1;k2"`), or empty. It is
    /// only kept to be sent on.
    pub properties: String,
    /// Bytes this entry takes in [`Baggage::to_header`]'s output, measured once when it was made: a
    /// [`Baggage`] hands out its entries only to read, so they never change after that.
    encoded_len: usize,
}

impl BaggageEntry {
    fn encoded_len(&self) -> usize {
        self.encoded_len
    }
}

/// Values are left out because baggage carries credentials (the Keyhole session token among them) and
/// `Debug` output ends up in logs.
impl fmt::Debug for BaggageEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaggageEntry")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("properties_len", &self.properties.len())
            .finish()
    }
}

/// What [`Baggage::from_headers_with_report`] left out, in list-members. Empty list-members (`a=1,,b=2`,
/// an empty header) are not counted: the spec's own examples produce them when headers are combined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BaggageReport {
    /// Members that broke the grammar and were skipped.
    pub malformed: usize,
    /// Well-formed members dropped because [`MAX_BAGGAGE_MEMBERS`] were already kept.
    pub over_member_limit: usize,
    /// Well-formed members dropped because they did not fit in what was left of [`MAX_BAGGAGE_BYTES`].
    pub over_byte_limit: usize,
}

impl BaggageReport {
    /// Well-formed members dropped for either limit.
    pub fn dropped(&self) -> usize {
        self.over_member_limit + self.over_byte_limit
    }
}

/// The baggage of a request: its entries in order, never more than [`MAX_BAGGAGE_MEMBERS`] of them and
/// never more than [`MAX_BAGGAGE_BYTES`] once encoded.
///
/// ```
/// use keyhole::propagation::Baggage;
///
/// let mut baggage = Baggage::from_headers([&b"userId = alice"[..], b"serverNode=DF%2028;region=eu, q=a=b"]);
/// assert_eq!(baggage.get("userId"), Some("alice"));
/// assert_eq!(baggage.get("serverNode"), Some("DF 28"));
/// assert_eq!(baggage.entries()[1].properties, ";region=eu");
/// assert_eq!(baggage.get("q"), Some("a=b"));
///
/// baggage.insert("city", "Zürich").unwrap();
/// baggage.remove("userId");
/// assert_eq!(
///     baggage.to_header().as_deref(),
///     Some("serverNode=DF%2028;region=eu,q=a=b,city=Z%C3%BCrich")
/// );
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baggage {
    entries: Vec<BaggageEntry>,
    /// What `entries` take in the header we would send.
    budget: Budget,
}

impl Baggage {
    /// An empty baggage.
    pub fn new() -> Baggage {
        Baggage::default()
    }

    /// Reads ALL `baggage` header values of a request; see [`Baggage::from_headers_with_report`].
    pub fn from_headers<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Baggage {
        Baggage::from_headers_with_report(values).0
    }

    /// Reads ALL `baggage` header values of a request, and says what was left out.
    ///
    /// The values are read one list-member at a time, in order, as if joined with `,`; nothing is
    /// concatenated. Each well-formed member is kept if it fits in what is left of the shared budget (at
    /// most [`MAX_BAGGAGE_MEMBERS`] members and [`MAX_BAGGAGE_BYTES`] bytes for all headers together, counted
    /// as [`Baggage::to_header`] would write them) and dropped whole otherwise; a smaller member further on
    /// may still fit. A member is checked before anything is allocated for it, so the work is linear in the
    /// input and the allocation bounded by the budget, however many headers or delimiters arrive.
    ///
    /// A member that breaks the grammar is skipped and counted in [`BaggageReport::malformed`]; the others
    /// are kept. The spec leaves this choice open, and one peer's bad entry should not cost the request the
    /// rest of its baggage (its session token among it). Malformed means: no `=`; a key that is not an HTTP
    /// token; a value with a character outside `baggage-octet` or a `%` not followed by two hex digits; a
    /// property that is not `key` or `key=value` in the same grammar. Spaces and tabs around keys, values
    /// and properties are not part of them, and a value may contain `=` (the key ends at the first one).
    ///
    /// Repeated keys are all kept, in order, and sent on so; [`Baggage::get`] answers with the last.
    pub fn from_headers_with_report<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> (Baggage, BaggageReport) {
        let mut entries = Vec::new();
        let (budget, report) = visit_members(values, |member| entries.push(member.into_entry()));
        (Baggage { entries, budget }, report)
    }

    /// The value of the last entry with `key`: later entries override earlier ones, as in the OpenTelemetry
    /// SDKs.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.key == key)
            .map(|entry| entry.value.as_str())
    }

    /// The entries in order.
    pub fn entries(&self) -> &[BaggageEntry] {
        &self.entries
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets `key` to `value`, replacing every entry with that key (the new entry takes the place of the
    /// first of them, without properties) or adding one at the end. Refused, and nothing changed, when the
    /// key is not an HTTP token or the result would exceed [`MAX_BAGGAGE_MEMBERS`] or [`MAX_BAGGAGE_BYTES`].
    ///
    /// ```
    /// use keyhole::propagation::{Baggage, HeaderError};
    /// let mut baggage = Baggage::new();
    /// baggage.insert("tenant.id", "acme").unwrap();
    /// assert_eq!(baggage.insert("not a token", "x"), Err(HeaderError::BaggageKey));
    /// assert_eq!(baggage.insert("big", &"x".repeat(9000)), Err(HeaderError::BaggageFull));
    /// assert_eq!(baggage.get("tenant.id"), Some("acme"));
    /// ```
    pub fn insert(&mut self, key: &str, value: &str) -> Result<(), HeaderError> {
        let key = token(key.as_bytes()).ok_or(HeaderError::BaggageKey)?;
        let mut budget = Budget::default();
        for entry in self.entries.iter().filter(|entry| entry.key != key) {
            budget
                .admit(entry.encoded_len())
                .map_err(|_| HeaderError::BaggageFull)?;
        }
        let encoded_len = key.len() + 1 + encoded_value_len(value);
        budget.admit(encoded_len).map_err(|_| HeaderError::BaggageFull)?;

        let mut new = Some(BaggageEntry {
            key: key.to_owned(),
            value: value.to_owned(),
            properties: String::new(),
            encoded_len,
        });
        self.entries.retain_mut(|entry| {
            if entry.key != key {
                return true;
            }
            new.take().map(|new| *entry = new).is_some()
        });
        self.entries.extend(new);
        self.budget = budget;
        Ok(())
    }

    /// Removes every entry with `key`.
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|entry| entry.key != key);
        self.budget = Budget::default();
        for entry in &self.entries {
            // Cannot fail: a subset of entries that fitted still fits.
            let _ = self.budget.admit(entry.encoded_len());
        }
    }

    /// The header value to send, or `None` when there are no entries: `key=value` plus properties, values
    /// percent-encoded where the spec requires (outside `baggage-octet`, and `%` itself), joined by `,`.
    /// Never more than [`MAX_BAGGAGE_MEMBERS`] members or [`MAX_BAGGAGE_BYTES`] bytes.
    pub fn to_header(&self) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(self.budget.bytes);
        // The entries were admitted under this same budget; checking again keeps the limit visible here.
        let mut budget = Budget::default();
        for entry in &self.entries {
            if budget.admit(entry.encoded_len()).is_err() {
                continue;
            }
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&entry.key);
            out.push('=');
            push_encoded(&mut out, &entry.value);
            out.push_str(&entry.properties);
        }
        Some(out)
    }
}

/// Why a member did not fit.
enum Overflow {
    Members,
    Bytes,
}

/// Members and bytes used so far of the shared limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Budget {
    members: usize,
    /// Length of the header the members make, commas between them included.
    bytes: usize,
}

impl Budget {
    /// Takes one member of `member_len` bytes, if both limits allow.
    fn admit(&mut self, member_len: usize) -> Result<(), Overflow> {
        if self.members >= MAX_BAGGAGE_MEMBERS {
            return Err(Overflow::Members);
        }
        let separator = usize::from(self.members > 0);
        let bytes = self.bytes.saturating_add(separator).saturating_add(member_len);
        if bytes > MAX_BAGGAGE_BYTES {
            return Err(Overflow::Bytes);
        }
        self.members += 1;
        self.bytes = bytes;
        Ok(())
    }
}

/// A list-member that [`Baggage::from_headers_with_report`] keeps, still borrowed from the header: a reader
/// that wants a few entries, or wants them in another form, takes them from here without the owned
/// [`Baggage`] in between.
pub(crate) struct MemberRef<'a> {
    raw: RawMember<'a>,
    decoded_len: usize,
    encoded_len: usize,
}

impl<'a> MemberRef<'a> {
    /// The key, an HTTP token.
    pub(crate) fn key(&self) -> &'a str {
        self.raw.key
    }

    /// The value, percent-decoded as in [`BaggageEntry::value`]; borrowed when it had no escapes.
    pub(crate) fn value(&self) -> Cow<'a, str> {
        match std::str::from_utf8(self.raw.value) {
            // Plain bytes are ASCII: the check cannot fail, and decoding would change nothing.
            Ok(plain) if self.raw.plain => Cow::Borrowed(plain),
            _ => {
                let mut value = String::with_capacity(self.decoded_len);
                value.extend(decode(self.raw.value));
                Cow::Owned(value)
            }
        }
    }

    /// The owned entry, its value's allocation sized exactly.
    fn into_entry(self) -> BaggageEntry {
        BaggageEntry {
            key: self.raw.key.to_owned(),
            value: self.value().into_owned(),
            properties: self.raw.properties.to_owned(),
            encoded_len: self.encoded_len,
        }
    }
}

/// Reads ALL `baggage` header values as [`Baggage::from_headers_with_report`] does, and hands each member
/// it would keep to `keep`, in order, allocating nothing itself. Returns what the kept members take of the
/// limits, and what was left out.
#[inline]
pub(crate) fn visit_members<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    mut keep: impl FnMut(MemberRef<'a>),
) -> (Budget, BaggageReport) {
    let mut budget = Budget::default();
    let mut report = BaggageReport::default();
    let mut values = values.into_iter().peekable();
    // Headers with no baggage at all skip the member iterator's set-up.
    if values.peek().is_none() {
        return (budget, report);
    }
    for member in values.flat_map(list_members) {
        let Some(raw) = RawMember::parse(member) else {
            report.malformed += 1;
            continue;
        };
        let (decoded_len, encoded_value_len) = raw.measure();
        let encoded_len = raw.key.len() + 1 + encoded_value_len + raw.properties.len();
        match budget.admit(encoded_len) {
            Ok(()) => keep(MemberRef {
                raw,
                decoded_len,
                encoded_len,
            }),
            Err(Overflow::Members) => report.over_member_limit += 1,
            Err(Overflow::Bytes) => report.over_byte_limit += 1,
        }
    }
    (budget, report)
}

/// The raw values of a `baggage` header that is exactly the member `first=VALUE`, or that and
/// `,second=VALUE`, within the limits, found by matching the keys as prefixes and one scan for the
/// `,`. When each value is plain text ([`plain_value`]), they are what [`visit_members`] hands on
/// for the same header, without the grammar's general path; otherwise, or for any other header,
/// only [`visit_members`] reads it right.
///
/// It is for headers one writer always makes alike, such as the session's own baggage, which Keyhole
/// writes in this shape and reads again in every service a debugging request passes through.
pub(crate) fn only_members<'a>(
    value: &'a [u8],
    first: &str,
    second: &str,
) -> Option<(&'a [u8], Option<&'a [u8]>)> {
    // Plain members take in the header what they take as written, so both fit if the header does.
    if value.len() > MAX_BAGGAGE_BYTES {
        return None;
    }
    let value_of = |member: &'a [u8], key: &str| member.strip_prefix(key.as_bytes())?.strip_prefix(b"=");
    let rest = value_of(value, first)?;
    // Plain text has no `,`: the first one ends the first member.
    match memchr::memchr(b',', rest) {
        None => Some((rest, None)),
        Some(at) => {
            let (own, next) = rest.split_at_checked(at)?;
            Some((own, Some(value_of(next.get(1..)?, second)?)))
        }
    }
}

/// `raw` as a member's value reads when it is plain text: no escapes, whitespace, separators or
/// properties, nothing outside `baggage-octet`.
pub(crate) fn plain_value(raw: &[u8]) -> Option<&str> {
    is_plain_text(raw)
        .then(|| std::str::from_utf8(raw).ok())
        .flatten()
}

/// A well-formed list-member, still borrowed from the header.
struct RawMember<'a> {
    key: &'a str,
    /// Still percent-encoded.
    value: &'a [u8],
    /// Whether every byte of the value stands for itself (no escapes), as in nearly every value.
    plain: bool,
    properties: &'a str,
}

impl<'a> RawMember<'a> {
    /// Checks `member` (already without surrounding whitespace) against the grammar, allocating nothing.
    fn parse(member: &'a [u8]) -> Option<RawMember<'a>> {
        let (key, rest) = split_once(member, b'=')?;
        let key = token(trim_ows(key))?;
        let (value, properties) = match memchr::memchr(b';', rest) {
            Some(at) => rest.split_at_checked(at)?,
            None => (rest, &[][..]),
        };
        let value = trim_ows(value);
        let plain = is_plain_text(value);
        if !(plain || is_well_formed(value)) || !are_properties(properties) {
            return None;
        }
        Some(RawMember {
            key,
            value,
            plain,
            properties: std::str::from_utf8(properties).ok()?,
        })
    }

    /// Bytes of the value once decoded, and once encoded again for sending. Measured from the raw bytes
    /// so that a member can be refused before anything is allocated for it.
    fn measure(&self) -> (usize, usize) {
        if self.plain {
            return (self.value.len(), self.value.len());
        }
        decode(self.value).fold((0, 0), |(decoded, encoded), c| {
            (decoded + c.len_utf8(), encoded + encoded_len(c))
        })
    }
}

/// Whether `properties` is empty or a run of `;` OWS (`key` / `key OWS = OWS value`) OWS.
fn are_properties(properties: &[u8]) -> bool {
    // The text before the first `;` is empty by construction, and not a property.
    properties.split(|b| *b == b';').skip(1).all(|property| {
        let property = trim_ows(property);
        match split_once(property, b'=') {
            None => token(property).is_some(),
            Some((key, value)) => token(trim_ows(key)).is_some() && is_well_formed(trim_ows(value)),
        }
    })
}

#[cfg(test)]
mod tests;
