//! `Secret<T>`: a wrapper whose value Keyhole never captures, whatever its name or type.

use std::fmt;
use std::ops::Deref;

use serde::{Serialize, Serializer};

/// The newtype-struct name a [`Secret`] serializes under. Keyhole's serializer recognises it and emits a
/// `Redacted` value without walking the inner value; every other serializer sees an ordinary newtype struct,
/// which serde formats treat as the inner value itself.
pub(crate) const SECRET_MARKER: &str = "$keyhole::private::Secret";

/// A value that is always captured as redacted: no content and no length, in any probe, at any depth.
///
/// Serialization elsewhere is unchanged (serde_json writes the inner value as if the wrapper were not
/// there), so wrapping a field costs the rest of the program nothing. `Debug` prints `<redacted>` so the
/// value does not leak through logs or through a probe that captures with `?x` either.
///
/// ```
/// use keyhole::capture::{Capturer, Secret};
/// use keyhole_proto::redaction::RedactionList;
/// use keyhole_proto::v1::{value::Kind, CaptureLimits};
///
/// #[derive(serde::Serialize)]
/// struct Payment {
///     amount: u64,
///     card: Secret<String>,
/// }
///
/// let payment = Payment { amount: 1200, card: Secret("4111 1111 1111 1111".into()) };
/// assert_eq!(serde_json::to_string(&payment).unwrap(), r#"{"amount":1200,"card":"4111 1111 1111 1111"}"#);
/// assert_eq!(format!("{:?}", payment.card), "<redacted>");
/// assert_eq!(payment.card.expose().len(), 19);
///
/// let limits = CaptureLimits::default();
/// let redaction = RedactionList::default();
/// let mut capturer = Capturer::new(&limits, &redaction);
/// capturer.variable("payment", |slot| slot.serialize(&payment));
/// let variables = capturer.finish().decode()?;
/// let Some(Kind::Struct(payment)) = variables[0].value.clone().and_then(|v| v.kind) else { unreachable!() };
/// assert!(matches!(payment.fields[1].value.as_ref().unwrap().kind, Some(Kind::Redacted(_))));
/// # Ok::<(), prost::DecodeError>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Secret<T>(pub T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The inner value, for the code that really needs it. The name makes each use easy to find in review.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the inner value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> Deref for Secret<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T: Serialize> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(SECRET_MARKER, &self.0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::redaction::RedactionList;
    use keyhole_proto::v1::{value::Kind, Redacted, Value};

    use super::*;
    use crate::capture::testing::fields_of;
    use crate::capture::Capturer;

    /// Proves the inner value is never walked: serializing it through Keyhole would panic.
    #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
    struct CardNumber(&'static str);

    impl Serialize for CardNumber {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            if std::any::type_name::<S>().contains("ValueSerializer") {
                panic!("Keyhole walked a secret");
            }
            serializer.serialize_str(self.0)
        }
    }

    fn capture<T: Serialize>(value: &T) -> Value {
        let limits = default_capture_limits();
        let list = RedactionList::default();
        Capturer::new(&limits, &list).tree(|slot| slot.serialize(value))
    }

    fn redacted() -> Value {
        Value {
            kind: Some(Kind::Redacted(Redacted {})),
        }
    }

    #[test]
    fn a_secret_is_captured_as_redacted_without_walking_its_value() {
        assert_eq!(capture(&Secret(CardNumber("4111"))), redacted());
    }

    #[test]
    fn a_secret_under_an_ordinary_name_inside_containers_is_still_redacted() {
        #[derive(Serialize)]
        struct Order {
            note: Option<Secret<CardNumber>>,
            cards: Vec<Secret<CardNumber>>,
        }
        let order = Order {
            note: Some(Secret(CardNumber("1"))),
            cards: vec![Secret(CardNumber("2"))],
        };
        let captured = capture(&order);
        let fields = fields_of(&captured);
        assert_eq!(fields[0].value, Some(redacted()));
        let Some(Value {
            kind: Some(Kind::List(cards)),
        }) = &fields[1].value
        else {
            panic!("a list")
        };
        assert_eq!(cards.items, vec![redacted()]);
    }

    #[test]
    fn a_secret_map_key_is_redacted_too() {
        let map = BTreeMap::from([(Secret(CardNumber("4111")), 1)]);
        let Some(Kind::Map(captured)) = capture(&map).kind else {
            panic!("a map")
        };
        assert_eq!(captured.entries[0].key, Some(redacted()));
    }

    #[test]
    fn serde_json_still_sees_the_inner_value() {
        let json = serde_json::to_string(&Secret(CardNumber("4111"))).unwrap();
        assert_eq!(json, "\"4111\"");
        let json = serde_json::to_string(&BTreeMap::from([("card", Secret(vec![1, 2]))])).unwrap();
        assert_eq!(json, r#"{"card":[1,2]}"#);
    }

    #[test]
    fn debug_prints_redacted_and_the_value_stays_usable() {
        let secret: Secret<String> = String::from("hunter2").into();
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(<redacted>)");
        assert_eq!(secret.len(), 7, "Deref reaches the inner value");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(secret.clone(), Secret::new("hunter2".to_owned()));
        assert_eq!(Secret::<u8>::default().into_inner(), 0);
    }
}
