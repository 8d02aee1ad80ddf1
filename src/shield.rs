//! The shield (`altoshield serve`): a TLS-terminating ALTO proxy that answers from version-aware
//! caches, coalesces what must still reach the origin, and never serves an inconsistent or
//! invalid answer.
//!
//! It owns the shield's state (directory, map generation, answer store, in-flight fetches) and
//! the request path; sockets are in [`crate::server`], the origin client in [`crate::upstream`],
//! the protocol rules in [`crate::alto`].
//!
//! Versions: the default network map's tag is the *generation*. The network map and the GET
//! resources that depend on it (cost maps, property maps) live together in one [`Generation`],
//! replaced as a whole by swapping one `Arc`; POST answers are stored under the generation tag
//! they were computed for. So a client that has been served generation N+1 is never served N
//! again, and a cost map is only ever served beside the network map it was computed from.

mod ecs;
mod fetch;
mod handler;
mod local;
pub mod metrics;
mod respond;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::alto::compute::NetworkMapView;
use crate::cache::{Entry, Store};
use crate::coalesce::Coalescer;
use crate::config::Config;
use crate::ird::Directory;
use crate::upstream::Upstream;

pub use fetch::ShieldError;
pub use handler::{handle, ConnInfo};

/// Bytes of validated POST bodies remembered by their exact bytes (see `handler::prepare`).
const PREPARED_MAX_BYTES: u64 = 32 << 20;

/// The default network map and the GET maps computed from it, served together.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The default network map's `vtag.tag`.
    pub tag: Arc<str>,
    /// The network map, indexed (for local computation).
    pub view: Arc<NetworkMapView>,
    /// The network map and its GET dependents, by resource-id.
    pub maps: HashMap<Arc<str>, Arc<Entry>>,
}

/// What an in-flight fetch is keyed by: one origin request per key at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FlightKey {
    Get(Arc<str>),
    Post(Arc<str>, bytes::Bytes),
}

/// The shield's shared state.
#[derive(Debug)]
pub struct Shield {
    pub config: Config,
    /// Base of every URI in the served IRD.
    pub public_url: String,
    pub upstream: Upstream,
    directory: RwLock<Option<Arc<Directory>>>,
    /// The served IRD as a stored answer (for `ETag`, gzip and `Age`).
    ird: RwLock<Option<Arc<Entry>>>,
    generation: RwLock<Option<Arc<Generation>>>,
    pub store: Store,
    /// Validated, canonical forms of recently seen POST bodies, by resource and exact bytes.
    prepared: moka::sync::Cache<(Arc<str>, bytes::Bytes), Arc<handler::Prepared>>,
    flights: Coalescer<FlightKey, fetch::Reply, ShieldError>,
    pub metrics: metrics::Metrics,
    /// This shield's `Via` pseudonym; a request already carrying it is a loop.
    pub via: String,
    /// `1.1 <via>`, the `Via` entry this shield adds, made once.
    pub via_header: http::HeaderValue,
    pub rate: crate::admit::rate::RateLimiter,
    in_flight: AtomicUsize,
    ready: AtomicBool,
    /// Endpoint-cost answering state (`ecs.mode = "auto"` per resource).
    ecs: ecs::EcsState,
}

impl Shield {
    pub fn new(config: Config, public_url: String, upstream: Upstream) -> Arc<Shield> {
        let keep_stale = config.cache.stale_while_revalidate.max(config.cache.stale_if_error);
        let via = format!("altoshield-{:08x}", crate::rng::mix(std::process::id() as u64 ^ nanos()) as u32);
        let via_header = http::HeaderValue::from_str(&format!("1.1 {via}"))
            .unwrap_or(http::HeaderValue::from_static("1.1 altoshield"));
        Arc::new(Shield {
            via_header,
            store: Store::new(config.cache.max_bytes, keep_stale),
            prepared: moka::sync::Cache::builder()
                .max_capacity(PREPARED_MAX_BYTES)
                .weigher(|k: &(Arc<str>, bytes::Bytes), v: &Arc<handler::Prepared>| {
                    u32::try_from(k.1.len() * 2 + v.weight()).unwrap_or(u32::MAX)
                })
                .build(),
            rate: crate::admit::rate::RateLimiter::new(config.limits.per_client_rps, 100_000),
            config,
            public_url,
            upstream,
            directory: RwLock::new(None),
            ird: RwLock::new(None),
            generation: RwLock::new(None),
            flights: Coalescer::new(),
            metrics: metrics::Metrics::default(),
            via,
            in_flight: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            ecs: ecs::EcsState::default(),
        })
    }

    /// The served directory, once loaded.
    pub fn directory(&self) -> Option<Arc<Directory>> {
        self.directory.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current generation, once the default network map is loaded.
    pub fn generation(&self) -> Option<Arc<Generation>> {
        self.generation.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ready once the IRD and the default network map are loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Counts a request in flight; `None` when over `limits.max_in_flight` (shed with 503).
    pub fn enter(self: &Arc<Self>) -> Option<InFlight> {
        let n = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        if n > self.config.limits.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.metrics.in_flight.inc();
        Some(InFlight(self.clone()))
    }

    /// Whether `ip` may use the shield (`listen.allow`, empty = everyone).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let allow = &self.config.listen.allow;
        allow.is_empty() || allow.iter().any(|net| net.contains(&ip))
    }

    /// Whether `ip` is a trusted proxy whose PROXY header or `X-Forwarded-For` is believed.
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.config.listen.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// Refreshes the cache gauges.
    pub fn update_cache_gauges(&self) {
        let (entries, bytes) = self.store.usage();
        let (map_entries, map_bytes) = self
            .generation()
            .map(|g| (g.maps.len() as u64, g.maps.values().map(|e| e.body.len() as u64).sum()))
            .unwrap_or((0, 0));
        self.metrics.cache_entries.set((entries + map_entries) as i64);
        self.metrics.cache_bytes.set((bytes + map_bytes) as i64);
    }

    /// Drops cached answers (all, or one resource's); returns how many.
    pub fn purge(&self, resource: Option<&str>) -> u64 {
        let mut n = self.store.purge(resource);
        let mut slot = self.generation.write().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = slot.as_ref() {
            // The generation's tag and index stay (they are what later answers are checked
            // against); its maps go, so the next request for one goes to the origin.
            let mut next = (**g).clone();
            let before = next.maps.len();
            next.maps.retain(|id, _| resource.is_some_and(|r| r != &**id));
            n += (before - next.maps.len()) as u64;
            *slot = Some(Arc::new(next));
        }
        n
    }

    /// The served IRD, once loaded.
    pub fn ird(&self) -> Option<Arc<Entry>> {
        self.ird.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_directory(&self, d: Arc<Directory>) {
        let media_type = http::HeaderValue::from_static(crate::alto::media::DIRECTORY);
        let entry = Entry::new(
            Arc::from("directory"),
            media_type,
            d.body.clone(),
            self.config.origin.ird_refresh,
            None,
        );
        *self.ird.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(entry));
        *self.directory.write().unwrap_or_else(|e| e.into_inner()) = Some(d);
        // Capabilities may have changed: what validated before must be validated again.
        self.prepared.invalidate_all();
    }
}

/// A request counted in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Shield>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.in_flight.dec();
    }
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Loads the IRD and the default network map, retrying with backoff until both are in; then
/// keeps the IRD and the network map refreshed (jittered, so replicas do not refetch together).
pub async fn maintain(shield: Arc<Shield>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match fetch::load_directory(&shield).await.map(|_| ()) {
            Ok(()) => match fetch::refresh_network_map(&shield).await {
                Ok(()) => break,
                Err(e) => tracing::error!(error = %e, "cannot load the default network map; retrying"),
            },
            Err(e) => tracing::error!(error = %e, "cannot load the origin's IRD; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    shield.ready.store(true, Ordering::Relaxed);
    tracing::info!("ready: IRD and default network map loaded");

    let ird_every = shield.config.origin.ird_refresh;
    let map_every = shield.config.cache.default_ttl;
    let mut rng = crate::rng::SplitMix64::new(nanos());
    let mut next_ird = tokio::time::Instant::now() + ird_every;
    loop {
        // Refresh the network map a little before it expires: 80–100 % of its TTL.
        let ttl = shield
            .generation()
            .and_then(|g| {
                shield.directory().and_then(|d| g.maps.get(d.default_network_map.as_str()).map(|e| e.ttl))
            })
            .unwrap_or(map_every)
            .max(Duration::from_secs(1));
        let wait = ttl.mul_f64(0.8 + 0.2 * rng.unit());
        let next_map = tokio::time::Instant::now() + wait;
        tokio::time::sleep_until(next_map.min(next_ird)).await;
        if tokio::time::Instant::now() >= next_ird {
            if let Err(e) = fetch::load_directory(&shield).await {
                tracing::warn!(error = %e, "IRD refresh failed; keeping the current one");
            }
            next_ird = tokio::time::Instant::now() + ird_every.mul_f64(0.9 + 0.2 * rng.unit());
        }
        if tokio::time::Instant::now() >= next_map {
            if let Err(e) = fetch::refresh_network_map(&shield).await {
                tracing::warn!(error = %e, "network map refresh failed; serving what is cached");
            }
        }
        shield.update_cache_gauges();
    }
}
