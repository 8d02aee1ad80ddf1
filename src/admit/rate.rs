//! Per-client rate limiting: a token bucket per client address, in bounded memory.
//!
//! Each bucket is kept as one instant, its *theoretical arrival time* (the generic cell rate
//! algorithm, GCRA): a request is allowed while that instant is at most the burst's worth of
//! emission intervals ahead of now, and each allowed request pushes it one interval further. That is
//! a token bucket of `per_second` tokens per second holding up to `per_second` tokens, without any
//! floating point or per-bucket timer.
//!
//! This module owns the buckets and nothing else: it does not read clocks (callers pass `now`, so
//! tests need no sleeping) and it does not answer requests (the server turns a refusal into 429 with
//! `Retry-After`). Buckets live in 16 shards behind `std::sync::Mutex`es, held for one map operation,
//! so concurrent checks from many connections rarely meet on the same lock.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::normalize;

/// Number of independently locked shards. A power of two well above the core count, so that two
/// checks rarely contend.
const SHARDS: usize = 16;

/// A sensible `max_clients`: about 5 MB of buckets.
pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

/// Token buckets per client address, bounded to a fixed number of clients.
///
/// The client is its address (IPv4-mapped IPv6 counted as IPv4), except that IPv6 clients are
/// bucketed per /64: one subscriber usually holds a whole /64 and could otherwise take a fresh burst
/// from each of its 2^64 addresses.
pub struct RateLimiter {
    per_second: u32,
    /// Time for one token to come back (`1 s / per_second`).
    interval: Duration,
    /// How far ahead of now a bucket's theoretical arrival time may be and still allow a request:
    /// `interval × (burst − 1)`.
    tolerance: Duration,
    /// Buckets per shard; the total is at most `max_clients`.
    shard_capacity: usize,
    shards: [Mutex<HashMap<IpAddr, Instant>>; SHARDS],
    /// Keyed hashing picks the shard, so clients cannot choose addresses that pile into one shard.
    hasher: RandomState,
}

impl RateLimiter {
    /// A limiter allowing each client `per_second` requests per second with a burst of `per_second`,
    /// tracking at most `max_clients` clients (at least one per shard). `per_second == 0` disables it.
    pub fn new(per_second: u32, max_clients: usize) -> Self {
        let interval = match per_second {
            0 => Duration::ZERO,
            n => Duration::from_secs(1) / n,
        };
        RateLimiter {
            per_second,
            interval,
            tolerance: interval * per_second.saturating_sub(1),
            shard_capacity: (max_clients / SHARDS).max(1),
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
        }
    }

    /// Whether the limiter limits anything (`per_second > 0`).
    pub fn is_enabled(&self) -> bool {
        self.per_second > 0
    }

    /// Counts one request from `ip` at `now`: `Ok` if allowed, else how long until the client may
    /// try again (see [`retry_after_secs`] for the header). Refused requests use up nothing.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_second == 0 {
            return Ok(());
        }
        let key = client_key(ip);
        let mut buckets = self.shard(&key);
        let arrival = match buckets.get(&key) {
            // Instants taken on different threads may reach the lock out of order: never go back.
            Some(&arrival) => arrival.max(now),
            None => {
                if buckets.len() >= self.shard_capacity {
                    evict(&mut buckets, now, self.shard_capacity);
                }
                now
            }
        };
        let ahead = arrival.saturating_duration_since(now);
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        buckets.insert(key, arrival.checked_add(self.interval).unwrap_or(arrival));
        Ok(())
    }

    /// Number of clients currently tracked.
    pub fn clients(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).len()).sum()
    }

    fn shard(&self, key: &IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        // Truncating the hash is fine: any bits pick a shard uniformly.
        lock(&self.shards[self.hasher.hash_one(key) as usize % SHARDS])
    }
}

/// `Retry-After` in whole seconds for a refusal's wait: rounded up, and at least 1, since `0` would
/// invite an immediate retry.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

fn lock(shard: &Mutex<HashMap<IpAddr, Instant>>) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
    // Every critical section is one map operation: a poisoned shard is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The bucket an address counts against.
fn client_key(ip: IpAddr) -> IpAddr {
    match normalize(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

/// Makes room in a full shard.
///
/// Full buckets (arrival time not after now) go first and losslessly: a missing bucket behaves exactly
/// like a full one. If that frees less than an eighth of the shard (a flood of distinct addresses,
/// all recently seen), the buckets closest to full go too, an eighth of the shard at once so that the
/// O(n) pass is paid once per n/8 new clients. Those clients get a fresh burst: the price of bounded
/// memory, paid by the clients that owe the least.
fn evict(buckets: &mut HashMap<IpAddr, Instant>, now: Instant, capacity: usize) {
    buckets.retain(|_, arrival| *arrival > now);
    let target = capacity - (capacity / 8).max(1);
    if buckets.len() <= target {
        return;
    }
    let excess = buckets.len() - target;
    let mut arrivals: Vec<Instant> = buckets.values().copied().collect();
    let (_, &mut threshold, _) = arrivals.select_nth_unstable(excess - 1);
    buckets.retain(|_, arrival| *arrival > threshold);
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("per_second", &self.per_second)
            .field("max_clients", &(self.shard_capacity * SHARDS))
            .field("clients", &self.clients())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_is_allowed_then_refused_until_a_token_comes_back() {
        let limiter = RateLimiter::new(5, DEFAULT_MAX_CLIENTS);
        let (client, t0) = (ip("192.0.2.1"), Instant::now());
        for _ in 0..5 {
            assert_eq!(limiter.check(client, t0), Ok(()));
        }
        // One token every 200 ms.
        assert_eq!(limiter.check(client, t0), Err(ms(200)));
        assert_eq!(limiter.check(client, t0 + ms(50)), Err(ms(150)));
        assert_eq!(limiter.check(client, t0 + ms(200)), Ok(()));
        assert_eq!(limiter.check(client, t0 + ms(200)), Err(ms(200)));
        // After a second of silence, the whole burst is back, and no more.
        let t1 = t0 + Duration::from_secs(5);
        for _ in 0..5 {
            assert_eq!(limiter.check(client, t1), Ok(()));
        }
        assert_eq!(limiter.check(client, t1), Err(ms(200)));
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_refused() {
        let limiter = RateLimiter::new(10, DEFAULT_MAX_CLIENTS);
        let (client, t0) = (ip("192.0.2.1"), Instant::now());
        for i in 0..1000 {
            assert_eq!(limiter.check(client, t0 + ms(100) * i), Ok(()), "request {i}");
        }
    }

    #[test]
    fn refused_requests_use_up_nothing() {
        let limiter = RateLimiter::new(1, DEFAULT_MAX_CLIENTS);
        let (client, t0) = (ip("192.0.2.1"), Instant::now());
        assert_eq!(limiter.check(client, t0), Ok(()));
        for i in 1..10 {
            assert!(limiter.check(client, t0 + ms(100) * i).is_err());
        }
        assert_eq!(limiter.check(client, t0 + ms(1000)), Ok(()));
    }

    #[test]
    fn clients_are_limited_independently() {
        let limiter = RateLimiter::new(2, DEFAULT_MAX_CLIENTS);
        let t0 = Instant::now();
        for client in ["192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:2::1"] {
            assert_eq!(limiter.check(ip(client), t0), Ok(()));
            assert_eq!(limiter.check(ip(client), t0), Ok(()));
            assert_eq!(limiter.check(ip(client), t0), Err(ms(500)), "{client}");
        }
        assert_eq!(limiter.clients(), 4);
    }

    #[test]
    fn one_client_is_one_bucket_however_it_is_spelled() {
        let limiter = RateLimiter::new(2, DEFAULT_MAX_CLIENTS);
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip("192.0.2.1"), t0), Ok(()));
        assert_eq!(limiter.check(ip("::ffff:192.0.2.1"), t0), Ok(()));
        assert!(limiter.check(ip("192.0.2.1"), t0).is_err());
        // Addresses of one /64 share a bucket.
        assert_eq!(limiter.check(ip("2001:db8::1"), t0), Ok(()));
        assert_eq!(limiter.check(ip("2001:db8::ffff:2"), t0), Ok(()));
        assert!(limiter.check(ip("2001:db8::3"), t0).is_err());
        assert_eq!(limiter.clients(), 2);
    }

    #[test]
    fn zero_per_second_disables_the_limit() {
        let limiter = RateLimiter::new(0, DEFAULT_MAX_CLIENTS);
        assert!(!limiter.is_enabled());
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.check(ip("192.0.2.1"), t0), Ok(()));
        }
        assert_eq!(limiter.clients(), 0);
    }

    #[test]
    fn a_flood_of_distinct_addresses_stays_within_max_clients() {
        let limiter = RateLimiter::new(1, 160);
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            let client = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            // Every new client gets its first request, however full the map is.
            assert_eq!(limiter.check(client, t0 + ms(u64::from(i / 1000))), Ok(()));
            assert!(limiter.clients() <= 160, "{} clients after {i}", limiter.clients());
        }
    }

    #[test]
    fn eviction_spares_the_clients_that_owe_the_most() {
        let limiter = RateLimiter::new(10, 160);
        let t0 = Instant::now();
        // Clients seen long ago: their buckets are full again by t1.
        for i in 0..150u32 {
            let _ = limiter.check(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), t0);
        }
        let t1 = t0 + Duration::from_secs(10);
        let greedy = ip("192.0.2.1");
        while limiter.check(greedy, t1).is_ok() {}
        // A flood of new clients, each with one request: they owe less than the greedy client.
        for i in 0..2_000u32 {
            assert_eq!(limiter.check(IpAddr::from((0x0b00_0000 + i).to_be_bytes()), t1), Ok(()));
        }
        assert!(limiter.clients() <= 160);
        assert_eq!(limiter.check(greedy, t1), Err(ms(100)), "the greedy client was forgotten");
    }

    #[test]
    fn concurrent_checks_allow_exactly_the_burst() {
        let limiter = RateLimiter::new(100, DEFAULT_MAX_CLIENTS);
        let t0 = Instant::now();
        let allowed: usize = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| (0..1_000).filter(|_| limiter.check(ip("192.0.2.1"), t0).is_ok()).count())
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).sum()
        });
        assert_eq!(allowed, 100);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(ms(1)), 1);
        assert_eq!(retry_after_secs(ms(1000)), 1);
        assert_eq!(retry_after_secs(ms(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }
}
