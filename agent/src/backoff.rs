//! Reconnection delays as gRPC specifies them: 1 s, times 1.6 each failure,
//! at most 120 s, each spread by +/-20% so a fleet does not reconnect in step.

use std::time::Duration;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const BACKOFF_MULTIPLIER: f64 = 1.6;
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);
pub const BACKOFF_JITTER: f64 = 0.2;

pub struct Backoff {
    next: Duration,
    random: u64,
}

impl Backoff {
    pub fn new(seed: u64) -> Self {
        Self {
            next: INITIAL_BACKOFF,
            random: seed | 1,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = base.mul_f64(BACKOFF_MULTIPLIER).min(MAX_BACKOFF);
        // xorshift64: plenty for jitter.
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        let unit = (self.random >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(1.0 + BACKOFF_JITTER * (2.0 * unit - 1.0))
    }

    /// After a success, start again from the initial delay.
    pub fn reset(&mut self) {
        self.next = INITIAL_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_1_6_up_to_the_cap_within_the_jitter() {
        let mut backoff = Backoff::new(42);
        let mut base = INITIAL_BACKOFF.as_secs_f64();
        for _ in 0..20 {
            let delay = backoff.next_delay().as_secs_f64();
            assert!(
                delay >= base * 0.8 - 1e-9 && delay <= base * 1.2 + 1e-9,
                "{delay} vs {base}"
            );
            base = (base * 1.6).min(120.0);
        }
        assert!(base == 120.0);
        backoff.reset();
        assert!(backoff.next_delay() <= INITIAL_BACKOFF.mul_f64(1.2));
    }
}
