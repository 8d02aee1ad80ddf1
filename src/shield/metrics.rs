//! The shield's metrics (DESIGN §6). Label values are bounded: resource-ids from the IRD,
//! `directory`, `unknown`, fixed outcome and status names; never a client address or raw path.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// How a request was answered (the `outcome` label).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Fresh from cache.
    hit,
    /// Served after its freshness ran out.
    stale,
    /// Computed locally.
    local,
    /// Waited on another request's origin fetch.
    coalesced,
    /// Shared a merged origin fetch.
    aggregated,
    /// Triggered its own origin fetch.
    miss,
    /// Refused by the shield before any origin contact.
    rejected,
    /// 5xx from an origin failure or an internal fault.
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    resource: String,
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EcsPairLabels {
    resource: String,
    source: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    resource: String,
    status: String,
}

/// Every metric of the shield, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    origin_requests: Family<OriginLabels, Counter>,
    origin_duration: Histogram,
    coalesced_wait: Histogram,
    pub cache_bytes: Gauge,
    pub cache_entries: Gauge,
    pub in_flight: Gauge,
    ecs_pairs: Family<EcsPairLabels, Counter>,
    ecs_mismatches: Family<ResourceLabel, Counter>,
    ecs_clients_per_fetch: Histogram,
    ecs_merge_wait: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let origin_requests = Family::<OriginLabels, Counter>::default();
        // Buckets 25 % apart, so that "what coalescing adds over the origin's latency" can be read
        // off the histograms to a few milliseconds: 0.5 ms to ~22 s, and 0.5 ms to ~3.5 s.
        let origin_duration = Histogram::new(exponential_buckets(0.0005, 1.25, 48));
        let coalesced_wait = Histogram::new(exponential_buckets(0.0005, 1.25, 40));
        let cache_bytes = Gauge::default();
        let cache_entries = Gauge::default();
        let in_flight = Gauge::default();
        registry.register("altoshield_requests", "Client requests by resource and outcome", requests.clone());
        registry.register(
            "altoshield_origin_requests",
            "Requests sent to the origin by resource and status",
            origin_requests.clone(),
        );
        registry.register(
            "altoshield_origin_request_duration_seconds",
            "Time to a complete origin answer",
            origin_duration.clone(),
        );
        registry.register(
            "altoshield_coalesced_wait_seconds",
            "What waiting on another request's origin fetch cost",
            coalesced_wait.clone(),
        );
        registry.register("altoshield_cache_bytes", "Bytes held by the cache", cache_bytes.clone());
        registry.register("altoshield_cache_entries", "Entries held by the cache", cache_entries.clone());
        registry.register(
            "altoshield_in_flight_requests",
            "Client requests being answered",
            in_flight.clone(),
        );
        let ecs_pairs = Family::<EcsPairLabels, Counter>::default();
        let ecs_mismatches = Family::<ResourceLabel, Counter>::default();
        registry.register(
            "altoshield_ecs_pairs",
            "Endpoint-cost pairs answered, by resource and source (cache, origin, local)",
            ecs_pairs.clone(),
        );
        registry.register(
            "altoshield_ecs_mismatches",
            "Origin endpoint-cost answers that differed from the local computation (ecs.mode = auto)",
            ecs_mismatches.clone(),
        );
        // 1 to 1024 client requests answered by one origin request.
        let ecs_clients_per_fetch = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "altoshield_ecs_clients_per_origin_request",
            "Client requests each endpoint-cost pair fetch from the origin answered",
            ecs_clients_per_fetch.clone(),
        );
        // 10 µs to ~5 s: a lone miss should sit in the lowest buckets.
        let ecs_merge_wait = Histogram::new(exponential_buckets(0.00001, 2.0, 20));
        registry.register(
            "altoshield_ecs_merge_wait_seconds",
            "Time a request's missing endpoint-cost pairs queued before their origin request left",
            ecs_merge_wait.clone(),
        );
        Metrics {
            ecs_clients_per_fetch,
            ecs_merge_wait,
            ecs_pairs,
            ecs_mismatches,
            registry,
            requests,
            origin_requests,
            origin_duration,
            coalesced_wait,
            cache_bytes,
            cache_entries,
            in_flight,
        }
    }
}

impl Metrics {
    pub fn request(&self, resource: &str, outcome: Outcome) {
        self.requests.get_or_create(&RequestLabels { resource: resource.to_string(), outcome }).inc();
    }

    /// One origin request: `status` is the numeric code or `timeout`, `connect_error`,
    /// `invalid_response`.
    pub fn origin_request(&self, resource: &str, status: &str, seconds: f64) {
        self.origin_requests
            .get_or_create(&OriginLabels { resource: resource.to_string(), status: status.to_string() })
            .inc();
        self.origin_duration.observe(seconds);
    }

    /// `n` endpoint-cost pairs answered for `resource` from `source` (`cache`, `origin`, `local`).
    pub fn ecs_pairs(&self, resource: &str, source: &str, n: u64) {
        self.ecs_pairs
            .get_or_create(&EcsPairLabels { resource: resource.to_string(), source: source.to_string() })
            .inc_by(n);
    }

    /// One origin pair fetch (`ecs.mode = "aggregate"`) and how many client requests it answered.
    pub fn ecs_clients_per_fetch(&self, clients: u64) {
        self.ecs_clients_per_fetch.observe(clients as f64);
    }

    /// How long one request's missing pairs queued before their origin request left.
    pub fn ecs_merge_wait(&self, seconds: f64) {
        self.ecs_merge_wait.observe(seconds);
    }

    /// An origin endpoint-cost answer that differed from the local computation.
    pub fn ecs_mismatch(&self, resource: &str) {
        self.ecs_mismatches.get_or_create(&ResourceLabel { resource: resource.to_string() }).inc();
    }

    pub fn coalesced_wait(&self, seconds: f64) {
        self.coalesced_wait.observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
