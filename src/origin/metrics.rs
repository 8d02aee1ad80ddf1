//! The origin's counters (DESIGN §3): what reached it and how much endpoint-cost work it did.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabel {
    pub resource: String,
}

/// `altoshield_origin_served_total` and `altoshield_origin_ecs_pairs_total`.
#[derive(Debug)]
pub struct OriginMetrics {
    registry: Registry,
    served: Family<ResourceLabel, Counter>,
    ecs_pairs: Family<ResourceLabel, Counter>,
}

impl Default for OriginMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let served = Family::<ResourceLabel, Counter>::default();
        let ecs_pairs = Family::<ResourceLabel, Counter>::default();
        // The crate appends `_total` to counters.
        registry.register(
            "altoshield_origin_served",
            "Requests received on an ALTO path, whatever their status",
            served.clone(),
        );
        registry.register(
            "altoshield_origin_ecs_pairs",
            "(source, destination) pairs computed by the endpoint cost service",
            ecs_pairs.clone(),
        );
        OriginMetrics { registry, served, ecs_pairs }
    }
}

impl OriginMetrics {
    pub fn served(&self, resource: &str) {
        self.served.get_or_create(&ResourceLabel { resource: resource.to_string() }).inc();
    }

    pub fn ecs_pairs(&self, resource: &str, pairs: u64) {
        self.ecs_pairs.get_or_create(&ResourceLabel { resource: resource.to_string() }).inc_by(pairs);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
