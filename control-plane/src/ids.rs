//! Identifiers and clocks: random ids for sessions, breakpoints and tokens,
//! and the wall clock in unix milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// `len` random bytes as lowercase hex, from the operating system's generator.
pub fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    // The OS generator failing means the machine cannot produce secrets at all;
    // continuing with predictable ids would be worse than stopping.
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 random bytes, for a signing key.
pub fn random_secret() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random generator failed");
    bytes
}

/// A new id with a readable prefix, e.g. `ses-3f9a0c41d2b7e615`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(8))
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
