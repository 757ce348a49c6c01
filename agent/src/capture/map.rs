//! Maps: entries under the item limit and the budget, keys captured as values, and a sensitive key's value
//! redacted without being walked.

use serde::ser::{self, Serialize};

use super::compound::BudgetGate;
use super::serializer::CaptureFailure;
use super::wire::{self, Open};
use super::Capturer;

/// Levels a composite map key is walked: the key and its fields. Keys are labels; a deep key is noise.
const KEY_LEVELS: u32 = 2;

/// A map. serde hands over a key and then its value, so the entry stays open, and the key's verdict on its
/// value (captured, or redacted) waits here, until the value arrives.
pub(crate) struct MapBuilder<'s, 'a> {
    capturer: &'s mut Capturer<'a>,
    open: Open,
    entry_depth: u32,
    max_depth: u32,
    entries: usize,
    omitted: u64,
    gate: BudgetGate,
    pending: PendingKey,
}

enum PendingKey {
    None,
    /// The entry is past a limit: its value is skipped unseen.
    Skip,
    /// The entry is open, with its key written unless the budget was spent before it (the entry is then
    /// only the budget marker).
    Entry {
        open: Open,
        redacted: bool,
    },
}

impl<'s, 'a> MapBuilder<'s, 'a> {
    pub(crate) fn start(capturer: &'s mut Capturer<'a>, depth: u32, max_depth: u32) -> Self {
        let open = capturer.wire.open(wire::value::MAP);
        Self {
            capturer,
            open,
            entry_depth: depth + 1,
            max_depth,
            entries: 0,
            omitted: 0,
            gate: BudgetGate::default(),
            pending: PendingKey::None,
        }
    }
}

impl ser::SerializeMap for MapBuilder<'_, '_> {
    type Ok = ();
    type Error = CaptureFailure;

    fn serialize_key<K: Serialize + ?Sized>(&mut self, key: &K) -> Result<(), CaptureFailure> {
        if matches!(self.pending, PendingKey::Entry { .. }) {
            return Err(CaptureFailure("a map key came without its value".to_owned()));
        }
        if self.entries >= self.capturer.limits.max_items || !self.gate.admits(&self.capturer.wire) {
            self.omitted += 1;
            self.pending = PendingKey::Skip;
            return Ok(());
        }
        let open = self.capturer.wire.open(wire::map::ENTRY);
        let mut redacted = false;
        if !self.capturer.wire.exhausted() {
            let key_open = self.capturer.wire.open(wire::map::ENTRY_KEY);
            self.capturer.map_key(key, self.entry_depth, &mut redacted);
            self.capturer.wire.close(key_open);
        }
        self.pending = PendingKey::Entry { open, redacted };
        Ok(())
    }

    fn serialize_value<V: Serialize + ?Sized>(&mut self, entry_value: &V) -> Result<(), CaptureFailure> {
        let (open, redacted) = match std::mem::replace(&mut self.pending, PendingKey::None) {
            PendingKey::Skip => return Ok(()),
            PendingKey::None => return Err(CaptureFailure("a map value came without its key".to_owned())),
            PendingKey::Entry { open, redacted } => (open, redacted),
        };
        self.gate.note(&self.capturer.wire);
        let value_open = self.capturer.wire.open(wire::map::ENTRY_VALUE);
        if redacted {
            self.capturer.redacted();
        } else {
            self.capturer
                .nested(entry_value, self.entry_depth, self.max_depth);
        }
        self.capturer.wire.close(value_open);
        self.capturer.wire.close(open);
        self.entries += 1;
        Ok(())
    }

    fn end(self) -> Result<(), CaptureFailure> {
        if matches!(self.pending, PendingKey::Entry { .. }) {
            return Err(CaptureFailure("a map key came without its value".to_owned()));
        }
        self.capturer
            .wire
            .uint_field(wire::map::OMITTED_ENTRIES, self.omitted);
        self.capturer.wire.close(self.open);
        Ok(())
    }
}

impl Capturer<'_> {
    /// Captures a map key at `depth`, reporting in `redacted` whether it names a sensitive entry. Strings,
    /// numbers and other scalars are captured whatever the depth, like field names; a composite key is
    /// walked at most [`KEY_LEVELS`] levels and never below the depth limit.
    pub(crate) fn map_key<K: Serialize + ?Sized>(&mut self, key: &K, depth: u32, redacted: &mut bool) {
        let max_depth = self.limits.max_depth.min(depth + KEY_LEVELS);
        self.walk(key, depth, max_depth, Some(redacted));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;

    use keyhole_proto::limits::default_capture_limits;
    use keyhole_proto::v1::{value::Kind, CaptureLimits, TruncationReason};
    use serde::{Serialize, Serializer};

    use crate::capture::testing::{capture_with, list_of, map_of, truncated, Counted};

    #[test]
    fn map_entries_past_the_limit_are_counted_and_their_values_never_serialized() {
        let calls = Cell::new(0);
        let limits = CaptureLimits {
            max_items: 5,
            ..default_capture_limits()
        };
        let map: BTreeMap<u32, Counted> = (0..50).map(|i| (i, Counted(&calls))).collect();
        let captured = capture_with(limits, &map);
        let map = map_of(&captured);
        assert_eq!((map.entries.len(), map.omitted_entries), (5, 45));
        assert_eq!(
            map.entries[4].key.as_ref().and_then(|k| k.kind.clone()),
            Some(Kind::Uint(4))
        );
        assert_eq!(calls.get(), 5);
    }

    #[test]
    fn composite_map_keys_are_captured_two_levels_deep() {
        let map = BTreeMap::from([((1i8, (2u8, (3u8, 4u8))), "v")]);
        let captured = capture_with(default_capture_limits(), &map);
        let key = map_of(&captured).entries[0]
            .key
            .as_ref()
            .unwrap_or_else(|| panic!("a key"));
        let key = list_of(key);
        assert_eq!(key.items[0].kind, Some(Kind::Int(1)));
        let second = list_of(&key.items[1]);
        assert_eq!(
            second.items[0],
            truncated("u8", TruncationReason::Depth),
            "the key's own fields' fields"
        );
        assert_eq!(second.items[1], truncated("(u8, u8)", TruncationReason::Depth));
    }

    #[test]
    fn string_keys_of_a_map_at_the_cut_are_kept_beside_their_cut_values() {
        let limits = CaptureLimits {
            max_depth: 1,
            ..default_capture_limits()
        };
        let captured = capture_with(limits, &BTreeMap::from([("sku", 1u8)]));
        let entry = &map_of(&captured).entries[0];
        assert_eq!(
            entry.key.as_ref().and_then(|k| k.kind.clone()),
            Some(Kind::Text(keyhole_proto::v1::Text {
                value: "sku".into(),
                omitted_bytes: 0
            }))
        );
        assert_eq!(entry.value, Some(truncated("u8", TruncationReason::Depth)));
    }

    struct BadKey;

    impl Serialize for BadKey {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no key today"))
        }
    }

    #[test]
    fn a_map_key_that_fails_becomes_an_error_key_and_its_value_is_still_captured() {
        struct OneEntry;
        impl Serialize for OneEntry {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(&BadKey, &7u8)?;
                map.end()
            }
        }
        let captured = capture_with(default_capture_limits(), &OneEntry);
        let entry = &map_of(&captured).entries[0];
        assert!(matches!(
            entry.key.as_ref().and_then(|k| k.kind.clone()),
            Some(Kind::Error(_))
        ));
        assert_eq!(
            entry.value.as_ref().and_then(|v| v.kind.clone()),
            Some(Kind::Uint(7))
        );
    }

    #[test]
    fn map_entries_after_the_budget_is_spent_are_one_marker_then_counted() {
        let limits = CaptureLimits {
            max_snapshot_bytes: 60,
            ..default_capture_limits()
        };
        let map: BTreeMap<String, u32> = (0..40).map(|i| (format!("key{i:02}"), i)).collect();
        let captured = capture_with(limits, &map);
        let map = map_of(&captured);
        let over = truncated("", TruncationReason::SnapshotBytes);
        let markers = map
            .entries
            .iter()
            .filter(|e| e.value.as_ref() == Some(&over))
            .count();
        assert_eq!(markers, 1, "{map:?}");
        assert_eq!(map.entries.len() as u64 + map.omitted_entries, 40);
    }

    #[test]
    fn a_unit_variant_key_with_a_sensitive_name_redacts_its_value() {
        #[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
        enum Credential {
            ApiKey,
            Username,
        }
        let map = BTreeMap::from([(Credential::ApiKey, "k-123"), (Credential::Username, "ann")]);
        let captured = capture_with(default_capture_limits(), &map);
        let entries = &map_of(&captured).entries;
        assert!(matches!(
            entries[0].value.as_ref().and_then(|v| v.kind.clone()),
            Some(Kind::Redacted(_))
        ));
        assert!(matches!(
            entries[1].value.as_ref().and_then(|v| v.kind.clone()),
            Some(Kind::Text(_))
        ));
    }

    /// A key written through `Display`, as ids and addresses are.
    #[derive(PartialEq, Eq, PartialOrd, Ord)]
    struct DisplayKey(&'static str);

    impl Serialize for DisplayKey {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self.0)
        }
    }

    #[test]
    fn a_display_key_cut_by_the_string_limit_is_still_compared_in_full() {
        let limits = CaptureLimits {
            max_string_bytes: 3,
            ..default_capture_limits()
        };
        let map = BTreeMap::from([(DisplayKey("password"), "hunter2")]);
        let captured = capture_with(limits, &map);
        let entry = &map_of(&captured).entries[0];
        let Some(Kind::Text(key)) = entry.key.as_ref().and_then(|k| k.kind.clone()) else {
            panic!("a key")
        };
        assert_eq!((key.value.as_str(), key.omitted_bytes), ("pas", 5));
        assert!(matches!(
            entry.value.as_ref().and_then(|v| v.kind.clone()),
            Some(Kind::Redacted(_))
        ));
    }
}
