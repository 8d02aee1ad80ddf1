//! The shield's store of answers: origin bytes kept once per version, with their freshness,
//! the network-map generation they belong to, an `ETag`, and a gzip copy made at most once.
//!
//! It owns storage and expiry only; what may be stored, and when an entry may be served, is
//! decided by the request path (`shield`).

use std::io::Write;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;

use crate::alto::types::CostMapResponse;

/// What an entry is stored under: a GET resource, or a POST resource, the network-map
/// generation the answer belongs to, and a canonical request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Get(Arc<str>),
    Post(Arc<str>, Arc<str>, Bytes),
}

impl Key {
    pub fn resource(&self) -> &str {
        match self {
            Key::Get(r) | Key::Post(r, _, _) => r,
        }
    }
}

/// One stored answer.
#[derive(Debug)]
pub struct Entry {
    pub resource: Arc<str>,
    pub media_type: HeaderValue,
    pub body: Bytes,
    pub etag: HeaderValue,
    /// The gzip representation's own strong validator (RFC 9110 §8.8.3: a different content
    /// coding is a different representation).
    pub etag_gzip: HeaderValue,
    /// Passed on from the origin (RFC 9439 §6.2 asks servers to send it).
    pub last_modified: Option<HeaderValue>,
    pub stored_at: Instant,
    /// How long the entry is fresh.
    pub ttl: Duration,
    /// The default network map's tag this answer belongs to (`None`: not tied to a version).
    pub generation: Option<Arc<str>>,
    gzip: OnceLock<Option<Bytes>>,
    /// The body parsed as a cost map, for local computation (parsed at most once).
    cost_map: OnceLock<Option<Arc<CostMapResponse>>>,
}

/// Bodies smaller than this are not worth compressing.
const GZIP_MIN_BYTES: usize = 1024;

impl Entry {
    pub fn new(
        resource: Arc<str>,
        media_type: HeaderValue,
        body: Bytes,
        ttl: Duration,
        generation: Option<Arc<str>>,
    ) -> Entry {
        let tag = crate::alto::compute::content_tag(&body);
        let etag = HeaderValue::from_str(&format!("\"{tag}\"")).unwrap_or(HeaderValue::from_static("\"0\""));
        let etag_gzip = HeaderValue::from_str(&format!("\"{tag}-gzip\""))
            .unwrap_or(HeaderValue::from_static("\"0-gzip\""));
        Entry {
            resource,
            media_type,
            body,
            etag,
            etag_gzip,
            last_modified: None,
            stored_at: Instant::now(),
            ttl,
            generation,
            gzip: OnceLock::new(),
            cost_map: OnceLock::new(),
        }
    }

    /// Time since the entry was stored.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    /// Remaining freshness: positive while fresh, negative (how long ago it ran out) once stale.
    pub fn ttl_left(&self, now: Instant) -> i64 {
        let age = self.age(now);
        if age <= self.ttl {
            (self.ttl - age).as_secs() as i64
        } else {
            -((age - self.ttl).as_secs() as i64).max(1)
        }
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) <= self.ttl
    }

    /// How long past its freshness the entry is (zero while fresh).
    pub fn staleness(&self, now: Instant) -> Duration {
        self.age(now).saturating_sub(self.ttl)
    }

    /// The gzip copy, compressed on first use and then kept: once per stored version, never per
    /// request. `None` for small bodies.
    pub fn gzip(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                if self.body.len() < GZIP_MIN_BYTES {
                    return None;
                }
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(&self.body).ok()?;
                enc.finish().ok().map(Bytes::from)
            })
            .as_ref()
    }

    /// The body as a cost map, parsed on first use and then kept; `None` if it is not one.
    pub fn cost_map(&self) -> Option<Arc<CostMapResponse>> {
        self.cost_map.get_or_init(|| serde_json::from_slice(&self.body).ok().map(Arc::new)).clone()
    }

    /// Bytes the entry costs in the store (the gzip copy is at most about the body's size).
    fn weight(&self) -> u32 {
        u32::try_from(self.body.len().saturating_mul(2).saturating_add(512)).unwrap_or(u32::MAX)
    }
}

/// The bounded store.
#[derive(Debug, Clone)]
pub struct Store {
    cache: moka::sync::Cache<Key, Arc<Entry>>,
    /// Entries are kept this long past their freshness, to be served stale when allowed.
    keep_stale: Duration,
}

struct KeepStale(Duration);

impl moka::Expiry<Key, Arc<Entry>> for KeepStale {
    fn expire_after_create(&self, _: &Key, value: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(value.ttl.saturating_add(self.0))
    }
}

impl Store {
    /// A store of at most `max_bytes`, keeping entries `keep_stale` past their freshness.
    pub fn new(max_bytes: u64, keep_stale: Duration) -> Store {
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &Key, v: &Arc<Entry>| {
                let key_len = match k {
                    Key::Get(r) => r.len(),
                    Key::Post(r, g, b) => r.len() + g.len() + b.len(),
                };
                v.weight().saturating_add(u32::try_from(key_len).unwrap_or(u32::MAX))
            })
            .expire_after(KeepStale(keep_stale))
            .support_invalidation_closures()
            .build();
        Store { cache, keep_stale }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    pub fn insert(&self, key: Key, entry: Arc<Entry>) {
        self.cache.insert(key, entry);
    }

    pub fn remove(&self, key: &Key) {
        self.cache.invalidate(key);
    }

    /// Drops every entry (or every entry of one resource); returns how many there were.
    pub fn purge(&self, resource: Option<&str>) -> u64 {
        self.cache.run_pending_tasks();
        let count = match resource {
            None => self.cache.entry_count(),
            Some(r) => self.cache.iter().filter(|(k, _)| k.resource() == r).count() as u64,
        };
        match resource {
            None => self.cache.invalidate_all(),
            Some(r) => {
                let r: Arc<str> = Arc::from(r);
                // Only fails when invalidation closures are not enabled, which `new` does.
                let _ = self.cache.invalidate_entries_if(move |k, _| k.resource() == &*r);
            }
        }
        self.cache.run_pending_tasks();
        count
    }

    /// Entries and bytes, per the store's own accounting.
    pub fn usage(&self) -> (u64, u64) {
        self.cache.run_pending_tasks();
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Every entry, for the admin view.
    pub fn entries(&self) -> Vec<(Arc<Key>, Arc<Entry>)> {
        self.cache.iter().collect()
    }

    pub fn keep_stale(&self) -> Duration {
        self.keep_stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &'static [u8], ttl: u64) -> Arc<Entry> {
        Arc::new(Entry::new(
            Arc::from("r"),
            HeaderValue::from_static("application/alto-networkmap+json"),
            Bytes::from_static(body),
            Duration::from_secs(ttl),
            None,
        ))
    }

    #[test]
    fn freshness_and_gzip() {
        let e = entry(b"{}", 30);
        let now = e.stored_at;
        assert!(e.is_fresh(now + Duration::from_secs(30)));
        assert_eq!(e.ttl_left(now + Duration::from_secs(10)), 20);
        assert_eq!(e.ttl_left(now + Duration::from_secs(45)), -15);
        assert!(e.gzip().is_none(), "small bodies are not compressed");
        let big: &'static [u8] = Box::leak(vec![b'a'; 10_000].into_boxed_slice());
        let e = entry(big, 30);
        let z = e.gzip().expect("compressed");
        assert!(z.len() < 1000);
        assert!(std::ptr::eq(z, e.gzip().expect("kept")), "compressed once");
    }

    #[test]
    fn purge_by_resource() {
        let s = Store::new(1 << 20, Duration::from_secs(60));
        s.insert(Key::Get(Arc::from("a")), entry(b"1", 30));
        s.insert(Key::Post(Arc::from("a"), Arc::from("t"), Bytes::from_static(b"{}")), entry(b"2", 30));
        s.insert(Key::Get(Arc::from("b")), entry(b"3", 30));
        assert_eq!(s.purge(Some("a")), 2);
        assert!(s.get(&Key::Get(Arc::from("a"))).is_none());
        assert!(s.get(&Key::Get(Arc::from("b"))).is_some());
        assert_eq!(s.purge(None), 1);
    }
}
