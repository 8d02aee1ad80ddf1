//! The origin's data: a base data set (loaded from a directory or generated) and the map
//! versions derived from it, each precomputed once (index, serialised maps) and then served
//! read-only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;

use crate::alto::compute::{self, MapError, NetworkMapView};
use crate::alto::ident;
use crate::alto::lpm::PrefixIndex;
use crate::alto::types::{
    CostMapData, CostMapResponse, CostType, EndpointAddrGroup, NetworkMapResponse, ResponseMeta, VersionTag,
};
use crate::rng::mix;

/// A problem with the origin's data, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("network map: {0}")]
    Map(#[from] MapError),
}

fn file_error(path: &Path, reason: impl ToString) -> DataError {
    DataError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

/// The base data set: version 0 of every map.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub network_map_id: String,
    pub network_map: BTreeMap<String, EndpointAddrGroup>,
    /// metric → numerical PID costs.
    pub metrics: BTreeMap<String, CostMapData>,
    /// property name → (prefix, value) list, looked up by longest-prefix match.
    pub properties: BTreeMap<String, Vec<(IpNet, Value)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkMapFile {
    #[serde(rename = "resource-id", default = "default_map_id")]
    resource_id: String,
    #[serde(rename = "network-map")]
    network_map: BTreeMap<String, EndpointAddrGroup>,
}

fn default_map_id() -> String {
    "default-network-map".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CostMapFile {
    #[serde(rename = "cost-metric")]
    cost_metric: String,
    #[serde(rename = "cost-map")]
    cost_map: CostMapData,
}

impl Dataset {
    /// Loads `network-map.json`, every `costmap-*.json` and the optional `properties.json` from
    /// `dir` (the format is in the README).
    pub fn load(dir: &Path) -> Result<Dataset, DataError> {
        let read = |name: &str| -> Result<Option<Vec<u8>>, DataError> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(file_error(&path, e)),
            }
        };
        let nm_path = dir.join("network-map.json");
        let nm_bytes = read("network-map.json")?.ok_or_else(|| file_error(&nm_path, "not found"))?;
        let nm: NetworkMapFile = serde_json::from_slice(&nm_bytes).map_err(|e| file_error(&nm_path, e))?;

        let mut metrics = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| file_error(dir, e))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
            .filter(|n| n.starts_with("costmap-") && n.ends_with(".json"))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let bytes = read(&name)?.unwrap_or_default();
            let cm: CostMapFile = serde_json::from_slice(&bytes).map_err(|e| file_error(&path, e))?;
            if metrics.insert(cm.cost_metric.clone(), cm.cost_map).is_some() {
                return Err(file_error(&path, format!("cost metric `{}` is given twice", cm.cost_metric)));
            }
        }

        let mut properties = BTreeMap::new();
        if let Some(bytes) = read("properties.json")? {
            let path = dir.join("properties.json");
            let raw: BTreeMap<String, BTreeMap<String, Value>> =
                serde_json::from_slice(&bytes).map_err(|e| file_error(&path, e))?;
            for (prop, by_prefix) in raw {
                let mut list = Vec::new();
                for (prefix, value) in by_prefix {
                    let net = compute::parse_prefix(&prefix)
                        .ok_or_else(|| file_error(&path, format!("`{prefix}` is not an IP prefix")))?;
                    list.push((net, value));
                }
                properties.insert(prop, list);
            }
        }
        let data =
            Dataset { network_map_id: nm.resource_id, network_map: nm.network_map, metrics, properties };
        data.check().map_err(|reason| file_error(dir, reason))?;
        Ok(data)
    }

    /// Checks identifiers and cross-references; errors are one line each.
    pub fn check(&self) -> Result<(), String> {
        if !ident::is_resource_id(&self.network_map_id) {
            return Err(format!("`{}` is not a valid resource-id", self.network_map_id));
        }
        if self.network_map.is_empty() {
            return Err("the network map has no PIDs".into());
        }
        if let Some(pid) = self.network_map.keys().find(|p| !ident::is_pid_name(p)) {
            return Err(format!("`{pid}` is not a valid PID name"));
        }
        if !self.metrics.contains_key("routingcost") {
            return Err("no `routingcost` cost map (RFC 7285 §6.1.1.1 requires it)".into());
        }
        for (metric, costs) in &self.metrics {
            if !ident::is_cost_metric(metric) {
                return Err(format!("`{metric}` is not a valid cost metric"));
            }
            for (src, row) in costs {
                for (dst, v) in row {
                    for pid in [src, dst] {
                        if !self.network_map.contains_key(pid) {
                            return Err(format!(
                                "cost map `{metric}` names PID `{pid}`, which the network map lacks"
                            ));
                        }
                    }
                    if !v.is_number() {
                        return Err(format!("cost map `{metric}`: {src} → {dst} is not a number"));
                    }
                }
            }
        }
        for prop in self.properties.keys() {
            if !ident::is_property_name(prop) || prop.contains('.') {
                return Err(format!("`{prop}` is not a valid global endpoint property name"));
            }
        }
        Ok(())
    }

    /// Builds map version `number`: version 0 is the data as given; each later version moves a
    /// deterministic subset of prefixes to other PIDs and changes every cost.
    pub fn version(&self, number: u64) -> Result<Version, DataError> {
        let network_map = if number == 0 { self.network_map.clone() } else { self.moved_prefixes(number) };
        let costs: BTreeMap<&String, CostMapData> = self
            .metrics
            .iter()
            .map(|(metric, base)| {
                (metric, if number == 0 { base.clone() } else { changed_costs(base, number) })
            })
            .collect();
        // The tag names the whole version (network map and costs) and its number, so a version
        // whose moved prefixes happen to rebuild an earlier map still gets a tag of its own.
        let mut content = format!("version {number}\n").into_bytes();
        let encoded =
            serde_json::to_vec(&(&network_map, &costs)).map_err(|e| DataError::Invalid(e.to_string()))?;
        content.extend_from_slice(&encoded);
        let vtag = VersionTag::new(&self.network_map_id, compute::content_tag(&content));
        let response = NetworkMapResponse {
            meta: ResponseMeta { vtag: Some(vtag.clone()), ..Default::default() },
            network_map,
            extra: Default::default(),
        };
        let network_map_bytes =
            Bytes::from(serde_json::to_vec(&response).map_err(|e| DataError::Invalid(e.to_string()))?);
        let view = NetworkMapView::new(response)?;

        let mut cost_maps = BTreeMap::new();
        for (metric, costs) in costs {
            let meta = ResponseMeta {
                dependent_vtags: Some(vec![vtag.clone()]),
                cost_type: Some(CostType::new(metric, "numerical")),
                ..Default::default()
            };
            let numerical = CostMapResponse { meta, cost_map: costs, extra: Default::default() };
            let ordinal = compute::filter_cost_map(&numerical, &CostType::new(metric, "ordinal"), &[], None);
            let encode = |m: &CostMapResponse| serde_json::to_vec(m).map(Bytes::from);
            let bytes = [encode(&numerical), encode(&ordinal)];
            let [num_bytes, ord_bytes] = bytes.map(|b| b.unwrap_or_default());
            cost_maps.insert(
                metric.clone(),
                CostMaps { numerical, numerical_bytes: num_bytes, ordinal_bytes: ord_bytes },
            );
        }

        let mut properties = BTreeMap::new();
        for (prop, list) in &self.properties {
            let index = PrefixIndex::build(list.iter().enumerate().map(|(i, (net, _))| (*net, i as u32)))
                .map_err(|e| DataError::Invalid(format!("property `{prop}`: {e}")))?;
            properties.insert(
                prop.clone(),
                PropertyIndex { index, values: list.iter().map(|(_, v)| v.clone()).collect() },
            );
        }
        Ok(Version { number, vtag, network_map: view, network_map_bytes, cost_maps, properties })
    }

    fn moved_prefixes(&self, number: u64) -> BTreeMap<String, EndpointAddrGroup> {
        let pids: Vec<&String> = self.network_map.keys().collect();
        let mut out: BTreeMap<String, EndpointAddrGroup> =
            pids.iter().map(|p| ((*p).clone(), EndpointAddrGroup::new())).collect();
        for (i, (pid, group)) in self.network_map.iter().enumerate() {
            for (family, prefixes) in group {
                for p in prefixes {
                    let h = mix(hash_str(p) ^ number.wrapping_mul(0x9e37_79b9));
                    let is_default_route = compute::parse_prefix(p).is_some_and(|n| n.prefix_len() == 0);
                    let target = if pids.len() > 1 && !is_default_route && h % 8 == 0 {
                        let step = 1 + (h >> 8) as usize % (pids.len() - 1);
                        pids[(i + step) % pids.len()]
                    } else {
                        pid
                    };
                    out.entry(target.clone()).or_default().entry(family.clone()).or_default().push(p.clone());
                }
            }
        }
        out
    }
}

/// Every cost of version `number`: the base cost plus 1 to 5, kept integral when it was.
fn changed_costs(base: &CostMapData, number: u64) -> CostMapData {
    base.iter()
        .map(|(src, row)| {
            let row =
                row.iter()
                    .map(|(dst, v)| {
                        let delta = 1 + mix(hash_str(src) ^ hash_str(dst).rotate_left(17) ^ number) % 5;
                        let v = match (v.as_u64(), v.as_f64()) {
                            (Some(n), _) => Value::from(n + delta),
                            (None, Some(x)) => serde_json::Number::from_f64(x + delta as f64)
                                .map_or(v.clone(), Value::Number),
                            _ => v.clone(),
                        };
                        (dst.clone(), v)
                    })
                    .collect();
            (src.clone(), row)
        })
        .collect()
}

/// A stable hash of a string (FNV-1a 64).
pub fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One metric's cost maps in a version.
#[derive(Debug)]
pub struct CostMaps {
    pub numerical: CostMapResponse,
    pub numerical_bytes: Bytes,
    pub ordinal_bytes: Bytes,
}

/// One property's values by prefix.
#[derive(Debug)]
pub struct PropertyIndex {
    index: PrefixIndex,
    values: Vec<Value>,
}

impl PropertyIndex {
    pub fn lookup(&self, addr: IpAddr) -> Option<Value> {
        self.index.lookup(addr).and_then(|i| self.values.get(i as usize).cloned())
    }
}

/// One map version, precomputed: what every answer of that version is made from.
#[derive(Debug)]
pub struct Version {
    pub number: u64,
    pub vtag: VersionTag,
    pub network_map: NetworkMapView,
    pub network_map_bytes: Bytes,
    pub cost_maps: BTreeMap<String, CostMaps>,
    pub properties: BTreeMap<String, PropertyIndex>,
}
