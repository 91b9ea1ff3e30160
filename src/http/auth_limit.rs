//! The brake on wrong passwords: a token bucket per client address. Each bcrypt
//! verification takes a token (a success gives it back); an address with none left is
//! answered 429 with `Retry-After` and costs no bcrypt at all. Credentials already verified
//! are remembered by `security` and never reach the bucket, so SiteScope and Prometheus
//! are not slowed by someone guessing next to them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Verifications an address may start at once before the brake applies.
pub const BURST: f64 = 5.0;
/// Verifications an address regains per second.
pub const PER_SECOND: f64 = 0.5;
/// Addresses tracked at most: past this, the buckets that are full again are forgotten
/// (they hold nothing), and if that is not enough, all of them (a flood from that many
/// addresses is held by the one-at-a-time bcrypt in `security` instead).
const ADDRESSES: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> f64 {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * PER_SECOND;
        (self.tokens + gained).min(BURST)
    }
}

/// The buckets, by client address.
#[derive(Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl FailureLimiter {
    /// Takes a token for a verification from `ip` at `now`, or returns how long until one
    /// is there.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= ADDRESSES && !buckets.contains_key(&ip) {
            buckets.retain(|_, b| b.refilled(now) < BURST);
            if buckets.len() >= ADDRESSES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        let tokens = bucket.refilled(now);
        if tokens < 1.0 {
            return Err(Duration::from_secs_f64((1.0 - tokens) / PER_SECOND));
        }
        *bucket = Bucket {
            tokens: tokens - 1.0,
            at: now,
        };
        Ok(())
    }

    /// Gives back the token of a verification that succeeded.
    pub fn give_back(&self, ip: IpAddr, now: Instant) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get_mut(&ip) {
            *bucket = Bucket {
                tokens: (bucket.refilled(now) + 1.0).min(BURST),
                at: now,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_burst_then_one_try_per_two_seconds() {
        let limiter = FailureLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.take(a, t0), Ok(()));
        }
        assert_eq!(limiter.take(a, t0), Err(Duration::from_secs(2)));
        assert_eq!(limiter.take(b, t0), Ok(()), "another address is not braked");
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.take(a, t1), Err(Duration::from_millis(1500)));
        let t2 = t0 + Duration::from_secs(2);
        assert_eq!(limiter.take(a, t2), Ok(()));
        assert!(limiter.take(a, t2).is_err());
        // A success gives its token back.
        limiter.give_back(a, t2);
        assert_eq!(limiter.take(a, t2), Ok(()));
    }

    #[test]
    fn many_addresses_do_not_grow_the_table_without_bound() {
        let limiter = FailureLimiter::default();
        let t0 = Instant::now();
        for i in 0..(ADDRESSES as u32 + 10) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            limiter.take(ip, t0).unwrap();
        }
        assert!(limiter.buckets.lock().unwrap().len() <= ADDRESSES);
    }
}
