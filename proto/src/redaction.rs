//! Which names are sensitive: a field, map key or variable whose normalised
//! name is on the list is captured as a redacted marker with no value.
//!
//! The default list is the 85 identifiers used by the major live debuggers
//! (`redacted-identifiers.txt`). Normalising lower-cases a name and removes
//! `_`, `-`, `$` and `@`, so `Access_Token`, `accessToken` and `ACCESS-TOKEN`
//! are all `accesstoken`.

use std::collections::HashSet;

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

/// The set of normalised names to redact: the default list plus additions,
/// minus exclusions.
#[derive(Debug, Clone)]
pub struct RedactionList {
    names: HashSet<String>,
}

impl Default for RedactionList {
    fn default() -> Self {
        Self {
            names: default_identifiers().map(str::to_owned).collect(),
        }
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
        let mut list = Self::default();
        list.names.extend(add.into_iter().map(|n| normalize(n.as_ref())));
        for name in exclude {
            list.names.remove(&normalize(name.as_ref()));
        }
        list
    }

    /// Whether values named `name` must not be captured.
    pub fn is_redacted(&self, name: &str) -> bool {
        self.names.contains(&normalize(name))
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
    fn ordinary_names_are_not_redacted() {
        let list = RedactionList::default();
        for name in ["sku", "quantity", "user_id", "cart", "total"] {
            assert!(!list.is_redacted(name), "{name}");
        }
    }
}
