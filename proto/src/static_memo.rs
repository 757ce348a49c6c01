//! A small answer remembered for each `'static` name, shared by every thread without a lock: how the
//! redaction list answers for serde's field names, and how capture names the types it cuts, at the cost
//! of one atomic load for a name seen before.
//!
//! Static data is never freed or changed, so a name's address and length identify its text for the life
//! of the process. Each slot is one atomic word holding `address << 16 | len << 8 | answer`, read and
//! written whole: a reader either finds its own name there, with the answer given for it, or looks the
//! answer up again. A name may sit in any of the [`WAYS`] slots of its bucket, so that a few names hashed
//! alike do not push each other out (which addresses collide changes with every run of the program); in
//! a full bucket a new name takes the place of one of them. Names longer than 255 bytes, or at addresses
//! beyond 48 bits (beyond any user-space address on the platforms Keyhole runs on), are never remembered.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Answers of one byte for `'static` names, in `SLOTS` slots (a power of two).
///
/// ```
/// use keyhole_proto::static_memo::StaticStrMemo;
///
/// static LENGTHS: StaticStrMemo<64> = StaticStrMemo::new();
/// assert_eq!(LENGTHS.get("quantity"), None);
/// LENGTHS.remember("quantity", 8);
/// assert_eq!(LENGTHS.get("quantity"), Some(8));
/// ```
pub struct StaticStrMemo<const SLOTS: usize> {
    slots: [AtomicU64; SLOTS],
}

/// Bits of a name's address kept in a slot's word.
const ADDRESS_BITS: u32 = 48;
/// Longest name remembered: its length takes one byte of the word.
const MAX_LEN: usize = 0xff;
/// Slots a name may sit in: consecutive, so a lookup reads one cache line.
pub const WAYS: usize = 4;

impl<const SLOTS: usize> StaticStrMemo<SLOTS> {
    /// A memo that remembers nothing yet.
    pub const fn new() -> Self {
        assert!(
            SLOTS.is_power_of_two() && SLOTS >= WAYS,
            "buckets are chosen by a mask"
        );
        Self {
            slots: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    /// The answer remembered for `name`, if it is.
    #[inline]
    pub fn get(&self, name: &'static str) -> Option<u8> {
        let (bucket, word, _) = self.locate(name)?;
        // Relaxed: a slot's word is self-contained, it orders nothing else.
        bucket
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .find(|held| held & !0xff == word)
            .map(|held| held as u8)
    }

    /// Remembers `answer` for `name` (unless `name` cannot be remembered): in its own slot if it has
    /// one, else in an empty slot of its bucket, else in place of the name in the slot its hash picks.
    pub fn remember(&self, name: &'static str, answer: u8) {
        let Some((bucket, word, victim)) = self.locate(name) else {
            return;
        };
        let held = |slot: &&AtomicU64| slot.load(Ordering::Relaxed);
        let slot = bucket
            .iter()
            .find(|slot| held(slot) & !0xff == word)
            .or_else(|| bucket.iter().find(|slot| held(slot) == 0))
            .or_else(|| bucket.get(victim));
        if let Some(slot) = slot {
            slot.store(word | u64::from(answer), Ordering::Relaxed);
        }
    }

    /// `name`'s bucket, the word that stands for it there (its answer left 0), and the way it takes in a
    /// full bucket. A name's address is never 0, so neither is the word: an empty slot (0) stands for
    /// no name.
    #[inline]
    fn locate(&self, name: &'static str) -> Option<(&[AtomicU64], u64, usize)> {
        let (address, len) = (name.as_ptr() as u64, name.len());
        if address >> ADDRESS_BITS != 0 || len > MAX_LEN {
            return None;
        }
        // Static names sit next to each other in read-only data, a few bytes apart: Fibonacci hashing
        // spreads neighbouring addresses over all the slots.
        let hash = address
            .wrapping_add(len as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let slot = (hash >> (u64::BITS - SLOTS.trailing_zeros())) as usize;
        let first = slot & !(WAYS - 1);
        let bucket = self.slots.get(first..first + WAYS)?;
        Some((bucket, address << 16 | (len as u64) << 8, slot & (WAYS - 1)))
    }
}

impl<const SLOTS: usize> Default for StaticStrMemo<SLOTS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const SLOTS: usize> fmt::Debug for StaticStrMemo<SLOTS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remembered = self
            .slots
            .iter()
            .filter(|slot| slot.load(Ordering::Relaxed) != 0)
            .count();
        write!(f, "StaticStrMemo {{ slots: {SLOTS}, remembered: {remembered} }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_belongs_to_its_own_name_even_when_names_share_slots() {
        let memo = StaticStrMemo::<8>::new();
        // Prefixes of one string share its address: only the length tells them apart.
        let text: &'static str = "password_hash";
        let names: Vec<&'static str> = (1..=text.len())
            .map(|len| &text[..len])
            .chain((0..40).map(|i| &*Box::leak(format!("field{i}").into_boxed_str())))
            .collect();
        for _ in 0..3 {
            for name in &names {
                if let Some(answer) = memo.get(name) {
                    assert_eq!(usize::from(answer), name.len(), "{name}");
                }
                memo.remember(name, name.len() as u8);
            }
        }
        let bucket_mates: Vec<&'static str> = (0..WAYS)
            .map(|i| &*Box::leak(format!("mate{i}").into_boxed_str()))
            .collect();
        let one_bucket = StaticStrMemo::<WAYS>::new();
        for (answer, name) in bucket_mates.iter().enumerate() {
            one_bucket.remember(name, answer as u8);
        }
        for (answer, name) in bucket_mates.iter().enumerate() {
            assert_eq!(
                one_bucket.get(name),
                Some(answer as u8),
                "{WAYS} names share one bucket"
            );
        }
        let long: &'static str = Box::leak("x".repeat(MAX_LEN + 1).into_boxed_str());
        memo.remember(long, 1);
        assert_eq!(memo.get(long), None, "too long to remember");
    }
}
