//! Redaction while capturing: struct fields, enum struct-variant fields, map entries and variables whose
//! normalised name is on the [`RedactionList`](keyhole_proto::redaction::RedactionList) become `Redacted`,
//! and their values are never walked. Field names from `#[derive(Serialize)]` are `&'static str`, so the
//! list answers for them from its memory of static names (`is_redacted_static`): a list of 100 structs
//! asks about each field name once, not 100 times. The tests here show every path a name takes.

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::redaction::{default_identifiers, RedactionList};
    use keyhole_proto::v1::{value::Kind, Field, Redacted, Value};
    use serde::ser::{SerializeStruct, SerializeStructVariant};
    use serde::{Serialize, Serializer};

    use crate::capture::testing::{fields_of, payload_of};
    use crate::capture::Capturer;

    fn redacted() -> Value {
        Value {
            kind: Some(Kind::Redacted(Redacted {})),
        }
    }

    /// A struct whose field names are chosen at run time (each field holds its own name as a string).
    struct Fields(Vec<&'static str>);

    impl Serialize for Fields {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut fields = serializer.serialize_struct("Fields", self.0.len())?;
            for name in &self.0 {
                fields.serialize_field(name, name)?;
            }
            fields.end()
        }
    }

    /// Every spelling the brief asks for: as listed, upper-cased, and with the ignored characters around.
    fn spellings() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = default_identifiers().collect();
        for name in default_identifiers() {
            names.push(Box::leak(name.to_uppercase().into_boxed_str()));
            names.push(Box::leak(format!("_{}-$@", name.to_uppercase()).into_boxed_str()));
        }
        names.extend(["Access_Token", "accessToken", "ACCESS-TOKEN"]);
        names
    }

    fn capture<T: Serialize>(value: &T) -> Value {
        let limits = keyhole_proto::v1::CaptureLimits {
            max_fields: 1000,
            max_items: 1000,
            ..default_capture_limits()
        };
        let list = RedactionList::default();
        Capturer::new(&limits, &list).tree(|slot| slot.serialize(value))
    }

    #[test]
    fn every_default_name_in_every_spelling_is_a_redacted_struct_field_with_no_value() {
        let names = spellings();
        assert_eq!(names.len(), 85 * 3 + 3);
        let captured = capture(&Fields(names.clone()));
        let fields = fields_of(&captured);
        assert_eq!(fields.len(), names.len());
        for (field, name) in fields.iter().zip(&names) {
            assert_eq!(&field.name, name);
            assert_eq!(field.value, Some(redacted()), "{name}");
        }
    }

    #[test]
    fn every_default_name_in_every_spelling_is_a_redacted_map_key_with_no_value() {
        let names = spellings();
        let map: BTreeMap<&str, &str> = names.iter().map(|name| (*name, *name)).collect();
        let Some(Kind::Map(captured)) = capture(&map).kind else {
            panic!("a map")
        };
        assert_eq!(captured.entries.len(), names.len());
        for entry in captured.entries {
            let Some(Kind::Text(key)) = entry.key.and_then(|key| key.kind) else {
                panic!("a text key")
            };
            assert_eq!(entry.value, Some(redacted()), "{}", key.value);
        }
    }

    #[derive(Serialize)]
    struct Login {
        user: String,
        password: String,
        #[serde(rename = "X-Api-Key")]
        api_key: String,
    }

    #[test]
    fn ordinary_fields_beside_redacted_ones_are_captured() {
        let captured = capture(&Login {
            user: "ann".into(),
            password: "hunter2".into(),
            api_key: "k-123".into(),
        });
        let fields = fields_of(&captured);
        assert!(matches!(&fields[0].value, Some(Value { kind: Some(Kind::Text(t)) }) if t.value == "ann"));
        assert_eq!(fields[1].value, Some(redacted()));
        assert_eq!(fields[2].value, Some(redacted()));
        assert!(!format!("{captured:?}").contains("hunter2"));
    }

    #[test]
    fn a_hundred_structs_redact_the_same_field_every_time() {
        let logins: Vec<Login> = (0..100)
            .map(|i| Login {
                user: format!("u{i}"),
                password: format!("p{i}"),
                api_key: String::new(),
            })
            .collect();
        let Some(Kind::List(list)) = capture(&logins).kind else {
            panic!("a list")
        };
        assert_eq!(list.items.len(), 100);
        for item in &list.items {
            assert_eq!(fields_of(item)[1].value, Some(redacted()));
        }
    }

    /// A redacted field whose value must never be walked.
    struct Untouchable;

    impl Serialize for Untouchable {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            panic!("a redacted value was walked");
        }
    }

    struct Credentials;

    impl Serialize for Credentials {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut variant = serializer.serialize_struct_variant("Auth", 1, "Credentials", 2)?;
            variant.serialize_field("login", "ann")?;
            variant.serialize_field("secret", &Untouchable)?;
            variant.end()
        }
    }

    #[test]
    fn enum_struct_variant_fields_are_redacted_without_walking_them() {
        let captured = capture(&Credentials);
        let payload = payload_of(&captured);
        let fields: &[Field] = fields_of(payload);
        assert_eq!(fields[1].name, "secret");
        assert_eq!(fields[1].value, Some(redacted()));
    }

    #[test]
    fn names_added_by_the_operator_are_redacted_and_excluded_ones_are_not() {
        let list = RedactionList::with_changes(["customer_ssn"], ["password"]);
        let limits = default_capture_limits();
        let mut capturer = Capturer::new(&limits, &list);
        let captured =
            capturer.tree(|slot| slot.serialize(&Fields(vec!["CustomerSSN", "password", "token"])));
        let fields = fields_of(&captured);
        assert_eq!(fields[0].value, Some(redacted()));
        assert_ne!(fields[1].value, Some(redacted()));
        assert_eq!(fields[2].value, Some(redacted()));
    }
}
