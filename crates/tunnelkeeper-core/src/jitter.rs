//! A tiny random source for jitter (xorshift), so that backoffs and schedules of several
//! instances do not line up. Not for anything that needs real randomness.

use std::time::Duration;

/// A xorshift64* generator.
#[derive(Clone, Debug)]
pub struct Jitter(u64);

impl Jitter {
    /// Seeds from the clock and the process id.
    pub fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Self::from_seed(nanos ^ (u64::from(std::process::id()) << 32))
    }

    /// Seeds explicitly (tests).
    pub fn from_seed(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Returns the next number.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Returns a uniformly drawn duration in `[0, max)`.
    pub fn fraction_of(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_below_the_bound_and_vary() {
        let mut j = Jitter::from_seed(42);
        let max = Duration::from_millis(100);
        let draws: Vec<Duration> = (0..1000).map(|_| j.fraction_of(max)).collect();
        assert!(draws.iter().all(|d| *d < max));
        assert!(draws.iter().any(|d| *d < max / 4) && draws.iter().any(|d| *d > max * 3 / 4));
    }
}
