//! Typed models of the RFC 7285 messages.
//!
//! Every object keeps the members it does not model in a flattened `extra` map, so unknown fields
//! (extensions: RFC 8189 multi-cost, RFC 8896 calendars, RFC 9240, RFC 9439) survive a parse and
//! re-serialisation (RFC 7285 §8.3.7). Cost and property values stay generic JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Unmodelled members of an object, kept verbatim.
pub type Extra = Map<String, Value>;

/// `VersionTag` (RFC 7285 §10.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTag {
    #[serde(rename = "resource-id")]
    pub resource_id: String,
    pub tag: String,
    #[serde(flatten)]
    pub extra: Extra,
}

impl VersionTag {
    pub fn new(resource_id: impl Into<String>, tag: impl Into<String>) -> Self {
        VersionTag { resource_id: resource_id.into(), tag: tag.into(), extra: Extra::new() }
    }
}

/// `CostType` (RFC 7285 §10.7). In an RFC 8189 multi-cost response `meta.cost-type` is `{}`,
/// so both members default to empty and are then omitted again on output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CostType {
    #[serde(rename = "cost-metric", default, skip_serializing_if = "String::is_empty")]
    pub cost_metric: String,
    #[serde(rename = "cost-mode", default, skip_serializing_if = "String::is_empty")]
    pub cost_mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl CostType {
    pub fn new(metric: &str, mode: &str) -> Self {
        CostType {
            cost_metric: metric.into(),
            cost_mode: mode.into(),
            description: None,
            extra: Extra::new(),
        }
    }

    /// Whether two cost types name the same (metric, mode); `description` is ignored
    /// (RFC 7285 §11.3.2.3).
    pub fn same_type(&self, other: &CostType) -> bool {
        self.cost_metric == other.cost_metric && self.cost_mode == other.cost_mode
    }

    pub fn is_ordinal(&self) -> bool {
        self.cost_mode == "ordinal"
    }

    pub fn is_numerical(&self) -> bool {
        self.cost_mode == "numerical"
    }
}

/// `ResponseMeta` (RFC 7285 §8.4.1): an open map with a few known members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResponseMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vtag: Option<VersionTag>,
    #[serde(rename = "dependent-vtags", skip_serializing_if = "Option::is_none")]
    pub dependent_vtags: Option<Vec<VersionTag>>,
    #[serde(rename = "cost-type", skip_serializing_if = "Option::is_none")]
    pub cost_type: Option<CostType>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `meta` of an error response (RFC 7285 §8.5.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMeta {
    pub code: String,
    #[serde(rename = "syntax-error", skip_serializing_if = "Option::is_none")]
    pub syntax_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A string per RFC 7285; RFC 8895 §7.6 allows an array, so any JSON is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An error response body (`application/alto-error+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub meta: ErrorMeta,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `meta` of an IRD (RFC 7285 §9.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IrdMeta {
    #[serde(rename = "cost-types", skip_serializing_if = "Option::is_none")]
    pub cost_types: Option<BTreeMap<String, CostType>>,
    #[serde(rename = "default-alto-network-map", skip_serializing_if = "Option::is_none")]
    pub default_network_map: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// Resource capabilities (RFC 7285 §11); extension capabilities stay in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Capabilities {
    #[serde(rename = "cost-type-names", skip_serializing_if = "Option::is_none")]
    pub cost_type_names: Option<Vec<String>>,
    #[serde(rename = "cost-constraints", skip_serializing_if = "Option::is_none")]
    pub cost_constraints: Option<bool>,
    #[serde(rename = "prop-types", skip_serializing_if = "Option::is_none")]
    pub prop_types: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An IRD entry (RFC 7285 §9.2.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IrdEntry {
    pub uri: String,
    #[serde(rename = "media-type")]
    pub media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An Information Resource Directory (`application/alto-directory+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ird {
    #[serde(default)]
    pub meta: IrdMeta,
    pub resources: BTreeMap<String, IrdEntry>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `EndpointAddrGroup` (RFC 7285 §10.4.5): address type → untyped prefixes. Unknown address
/// types are kept (clients must ignore them, RFC 7285 §11.2.1.7).
pub type EndpointAddrGroup = BTreeMap<String, Vec<String>>;

/// A network map, full or filtered (`application/alto-networkmap+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkMapResponse {
    #[serde(default)]
    pub meta: ResponseMeta,
    #[serde(rename = "network-map")]
    pub network_map: BTreeMap<String, EndpointAddrGroup>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// PID → PID → cost.
pub type CostMapData = BTreeMap<String, BTreeMap<String, Value>>;

/// A cost map, full or filtered (`application/alto-costmap+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostMapResponse {
    #[serde(default)]
    pub meta: ResponseMeta,
    #[serde(rename = "cost-map")]
    pub cost_map: CostMapData,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An endpoint property response (`application/alto-endpointprop+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointPropResponse {
    #[serde(default)]
    pub meta: ResponseMeta,
    #[serde(rename = "endpoint-properties")]
    pub endpoint_properties: BTreeMap<String, Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An endpoint cost response (`application/alto-endpointcost+json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointCostResponse {
    #[serde(default)]
    pub meta: ResponseMeta,
    #[serde(rename = "endpoint-cost-map")]
    pub endpoint_cost_map: CostMapData,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ReqFilteredNetworkMap` (RFC 7285 §11.3.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkMapFilter {
    pub pids: Vec<String>,
    #[serde(rename = "address-types", skip_serializing_if = "Option::is_none")]
    pub address_types: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `PIDFilter` (RFC 7285 §11.3.2.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PidFilter {
    #[serde(default)]
    pub srcs: Vec<String>,
    #[serde(default)]
    pub dsts: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ReqFilteredCostMap` (RFC 7285 §11.3.2.3). `cost-type` is optional because RFC 8189 lets
/// `multi-cost-types` stand in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostMapFilter {
    #[serde(rename = "cost-type", skip_serializing_if = "Option::is_none")]
    pub cost_type: Option<CostType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids: Option<PidFilter>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ReqEndpointProp` (RFC 7285 §11.4.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointPropParams {
    pub properties: Vec<String>,
    pub endpoints: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `EndpointFilter` (RFC 7285 §11.5.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EndpointFilter {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srcs: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dsts: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `ReqEndpointCostMap` (RFC 7285 §11.5.1.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointCostParams {
    #[serde(rename = "cost-type", skip_serializing_if = "Option::is_none")]
    pub cost_type: Option<CostType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<Vec<String>>,
    pub endpoints: EndpointFilter,
    #[serde(flatten)]
    pub extra: Extra,
}
