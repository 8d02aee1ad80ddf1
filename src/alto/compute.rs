//! Local computation over maps, each returning exactly what a correct origin returns:
//! filtered network maps, filtered cost maps (numerical constraints evaluated, ordinal answers
//! re-ranked), endpoint `pid` lookups, endpoint costs from a network map and a cost map, and
//! ordinal ranking.
//!
//! Ordinal ranks are dense ranks from 1 over every cost value in the one answer (equal costs share
//! a rank), RFC 7285 §6.1.2.2. Constraints on an ordinal answer apply to the ranks, after ranking.
//! The origin and the shield both answer through these functions, so they agree by construction.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

use super::addr::TypedAddr;
use super::constraint::{self, Constraint};
use super::lpm::{LpmError, PrefixIndex};
use super::types::{
    CostMapData, CostMapResponse, CostType, EndpointCostResponse, EndpointPropResponse, NetworkMapFilter,
    NetworkMapResponse, PidFilter, ResponseMeta, VersionTag,
};

/// Why a network map cannot be indexed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MapError {
    #[error("network map has no meta.vtag")]
    NoVtag,
    #[error("PID `{pid}`: `{prefix}` is not a valid {family} prefix")]
    BadPrefix { pid: String, prefix: String, family: &'static str },
    #[error("prefix {prefix} is in two PIDs, `{first}` and `{second}`")]
    Overlap { prefix: IpNet, first: String, second: String },
}

/// A network map ready for lookups: the response, its PIDs and a longest-prefix-match index,
/// built once per version.
#[derive(Debug, Clone)]
pub struct NetworkMapView {
    pub response: NetworkMapResponse,
    pub vtag: VersionTag,
    pids: Vec<String>,
    index: PrefixIndex,
}

impl NetworkMapView {
    /// Indexes a network map. Prefixes with host bits set are normalised; the same prefix in two
    /// PIDs is refused (RFC 7285 §11.2.1.6 requires non-overlapping maps); address types other
    /// than `ipv4` and `ipv6` are ignored (§11.2.1.7).
    pub fn new(response: NetworkMapResponse) -> Result<NetworkMapView, MapError> {
        let vtag = response.meta.vtag.clone().ok_or(MapError::NoVtag)?;
        let pids: Vec<String> = response.network_map.keys().cloned().collect();
        let mut entries = Vec::new();
        for (i, (pid, group)) in response.network_map.iter().enumerate() {
            for (family, want_v4) in [("ipv4", true), ("ipv6", false)] {
                for p in group.get(family).into_iter().flatten() {
                    let net = parse_prefix(p)
                        .filter(|n| matches!(n, IpNet::V4(_)) == want_v4)
                        .ok_or_else(|| MapError::BadPrefix { pid: pid.clone(), prefix: p.clone(), family })?;
                    entries.push((net, i as u32));
                }
            }
        }
        let index =
            PrefixIndex::build(entries).map_err(|LpmError::Duplicate { prefix, first, second }| {
                MapError::Overlap {
                    prefix,
                    first: pids[first as usize].clone(),
                    second: pids[second as usize].clone(),
                }
            })?;
        Ok(NetworkMapView { response, vtag, pids, index })
    }

    /// The PID of an address by longest-prefix match (RFC 7285 §11.2.2).
    pub fn pid_of(&self, addr: IpAddr) -> Option<&str> {
        self.index.lookup(addr).map(|i| self.pids[i as usize].as_str())
    }

    /// Every PID of the map, sorted.
    pub fn pids(&self) -> &[String] {
        &self.pids
    }

    /// Number of distinct prefixes indexed.
    pub fn prefix_count(&self) -> usize {
        self.index.len()
    }
}

/// Parses a prefix as written in a network map; a bare address is a host prefix.
pub fn parse_prefix(s: &str) -> Option<IpNet> {
    if s.contains('/') {
        s.parse::<IpNet>().ok().map(|n| n.trunc())
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// A filtered network map (RFC 7285 §11.3.1): the requested PIDs (all when empty) with the
/// requested address types (all when absent or empty); unknown PIDs and types are ignored. The
/// vtag is the full map's.
pub fn filter_network_map(full: &NetworkMapResponse, req: &NetworkMapFilter) -> NetworkMapResponse {
    let wanted: BTreeSet<&str> = req.pids.iter().map(String::as_str).collect();
    let types: BTreeSet<&str> = req.address_types.iter().flatten().map(String::as_str).collect();
    let network_map = full
        .network_map
        .iter()
        .filter(|(pid, _)| wanted.is_empty() || wanted.contains(pid.as_str()))
        .map(|(pid, group)| {
            let group = group
                .iter()
                .filter(|(t, _)| types.is_empty() || types.contains(t.as_str()))
                .map(|(t, p)| (t.clone(), p.clone()))
                .collect();
            (pid.clone(), group)
        })
        .collect();
    NetworkMapResponse { meta: full.meta.clone(), network_map, extra: Map::new() }
}

/// A cost map of `cost_type` cut from the numerical map of the same metric: the PIDs of `pids`
/// (all when absent or empty; unknown ones ignored), re-ranked when ordinal, then filtered by
/// `constraints`. With `pids = None` and no constraints this is the full map in that mode.
pub fn filter_cost_map(
    numerical: &CostMapResponse,
    cost_type: &CostType,
    constraints: &[Constraint],
    pids: Option<&PidFilter>,
) -> CostMapResponse {
    let srcs = pid_set(pids.map(|p| &p.srcs));
    let dsts = pid_set(pids.map(|p| &p.dsts));
    let keep = |set: &Option<BTreeSet<&str>>, pid: &str| set.as_ref().is_none_or(|s| s.contains(pid));
    let pairs = numerical.cost_map.iter().filter(|(s, _)| keep(&srcs, s)).flat_map(|(s, row)| {
        row.iter().filter(|(d, _)| keep(&dsts, d)).map(move |(d, v)| (s.clone(), d.clone(), v.clone()))
    });
    let cost_map = assemble(pairs.collect(), cost_type, constraints);
    let meta = ResponseMeta {
        dependent_vtags: numerical.meta.dependent_vtags.clone(),
        cost_type: Some(CostType::new(&cost_type.cost_metric, &cost_type.cost_mode)),
        ..Default::default()
    };
    CostMapResponse { meta, cost_map, extra: Map::new() }
}

/// The PIDs a filter names; `None` (all PIDs) for an absent or empty list.
fn pid_set(list: Option<&Vec<String>>) -> Option<BTreeSet<&str>> {
    list.filter(|l| !l.is_empty()).map(|l| l.iter().map(String::as_str).collect())
}

/// Numerical costs of the pairs of one answer, turned into that answer: ranked when
/// `cost_type` is ordinal, then filtered by `constraints`. Non-numeric costs are dropped from
/// ordinal answers and from constrained ones (they cannot be compared).
pub fn assemble(
    pairs: Vec<(String, String, Value)>,
    cost_type: &CostType,
    constraints: &[Constraint],
) -> CostMapData {
    let ranks = cost_type.is_ordinal().then(|| Ranks::new(pairs.iter().filter_map(|(_, _, v)| v.as_f64())));
    let mut out = CostMapData::new();
    for (s, d, v) in pairs {
        let value = match &ranks {
            Some(r) => match v.as_f64() {
                Some(x) => Value::from(r.rank(x)),
                None => continue,
            },
            None => v,
        };
        if !constraints.is_empty() && !value.as_f64().is_some_and(|x| constraint::all_hold(constraints, x)) {
            continue;
        }
        out.entry(s).or_default().insert(d, value);
    }
    out
}

/// Dense ranks from 1 over a set of values.
#[derive(Debug, Clone)]
pub struct Ranks(Vec<f64>);

impl Ranks {
    pub fn new(values: impl Iterator<Item = f64>) -> Ranks {
        let mut v: Vec<f64> = values.collect();
        v.sort_unstable_by(f64::total_cmp);
        v.dedup();
        Ranks(v)
    }

    /// The rank of `x`, which must be one of the values the ranks were built from.
    pub fn rank(&self, x: f64) -> u64 {
        self.0.partition_point(|&v| v < x) as u64 + 1
    }
}

/// A request's endpoints: each distinct address once, with the spelling the client used first
/// (answers are keyed by the client's own spelling).
pub fn endpoints(list: &[String]) -> Vec<(TypedAddr, String)> {
    let mut seen = BTreeSet::new();
    list.iter()
        .filter_map(|s| TypedAddr::parse(s).ok().map(|a| (a, s.clone())))
        .filter(|(a, _)| seen.insert(*a))
        .collect()
}

/// Endpoint costs (RFC 7285 §11.5.1) for `srcs` × `dsts`, each numerical cost given by
/// `cost_of`; pairs without a cost are omitted (the RFC allows it).
pub fn endpoint_cost_with(
    srcs: &[(TypedAddr, String)],
    dsts: &[(TypedAddr, String)],
    cost_type: &CostType,
    constraints: &[Constraint],
    mut cost_of: impl FnMut(TypedAddr, TypedAddr) -> Option<Value>,
) -> EndpointCostResponse {
    let mut pairs = Vec::with_capacity(srcs.len() * dsts.len());
    for (sa, ss) in srcs {
        for (da, ds) in dsts {
            if let Some(v) = cost_of(*sa, *da) {
                pairs.push((ss.clone(), ds.clone(), v));
            }
        }
    }
    let meta = ResponseMeta {
        cost_type: Some(CostType::new(&cost_type.cost_metric, &cost_type.cost_mode)),
        ..Default::default()
    };
    EndpointCostResponse {
        meta,
        endpoint_cost_map: assemble(pairs, cost_type, constraints),
        extra: Map::new(),
    }
}

/// Endpoint costs computed from PID-level maps: each endpoint's PID by longest-prefix match,
/// then the numerical cost map's entry for the PID pair.
pub fn endpoint_cost(
    map: &NetworkMapView,
    numerical: &CostMapData,
    srcs: &[(TypedAddr, String)],
    dsts: &[(TypedAddr, String)],
    cost_type: &CostType,
    constraints: &[Constraint],
) -> EndpointCostResponse {
    endpoint_cost_with(srcs, dsts, cost_type, constraints, |s, d| pid_pair_cost(map, numerical, s, d))
}

/// The PID-level numerical cost between two endpoints.
pub fn pid_pair_cost(
    map: &NetworkMapView,
    numerical: &CostMapData,
    s: TypedAddr,
    d: TypedAddr,
) -> Option<Value> {
    let (ps, pd) = (map.pid_of(s.0)?, map.pid_of(d.0)?);
    numerical.get(ps)?.get(pd).cloned()
}

/// Endpoint properties (RFC 7285 §11.4.1): `<map>.pid` by longest-prefix match over the network
/// maps given, any other property from `other`. A property without a value is omitted for that
/// endpoint only. `dependent-vtags` lists the network maps whose `pid` was asked for.
pub fn endpoint_properties(
    properties: &[String],
    endpoints: &[(TypedAddr, String)],
    maps: &[&NetworkMapView],
    mut other: impl FnMut(&str, TypedAddr) -> Option<Value>,
) -> EndpointPropResponse {
    let mut used: BTreeMap<&str, &VersionTag> = BTreeMap::new();
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for (addr, spelling) in endpoints {
        let entry = out.entry(spelling.clone()).or_default();
        for prop in properties {
            let pid_map =
                prop.strip_suffix(".pid").and_then(|rid| maps.iter().find(|m| m.vtag.resource_id == rid));
            let value = match pid_map {
                Some(m) => {
                    used.insert(m.vtag.resource_id.as_str(), &m.vtag);
                    m.pid_of(addr.0).map(Value::from)
                }
                None => other(prop, *addr),
            };
            if let Some(v) = value {
                entry.insert(prop.clone(), v);
            }
        }
    }
    let meta =
        ResponseMeta { dependent_vtags: Some(used.into_values().cloned().collect()), ..Default::default() };
    EndpointPropResponse { meta, endpoint_properties: out, extra: Map::new() }
}

/// A content hash usable as a version tag (RFC 7285 §10.3 recommends one): 32 hex digits from
/// two independent 64-bit FNV-1a passes.
pub fn content_tag(data: &[u8]) -> String {
    let fnv =
        |seed: u64| data.iter().fold(seed, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map() -> NetworkMapView {
        let r: NetworkMapResponse = serde_json::from_value(json!({
            "meta": {"vtag": {"resource-id": "net", "tag": "t1"}},
            "network-map": {
                "default": {"ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"]},
                "PID2": {"ipv4": ["192.0.2.0/24"]},
                "PID3": {"ipv4": ["192.0.2.0/25", "192.0.2.128/25"], "ipv6": ["2001:db8::/32"]}
            }
        }))
        .unwrap();
        NetworkMapView::new(r).unwrap()
    }

    #[test]
    fn lookups_and_dense_ranks() {
        let m = map();
        assert_eq!(m.pid_of("192.0.2.1".parse().unwrap()), Some("PID3"));
        assert_eq!(m.pid_of("198.51.100.1".parse().unwrap()), Some("default"));
        assert_eq!(m.pid_of("2001:db8::9".parse().unwrap()), Some("PID3"));
        let r = Ranks::new([5.0, 1.0, 5.0, 3.5].into_iter());
        assert_eq!([r.rank(1.0), r.rank(3.5), r.rank(5.0)], [1, 2, 3]);
    }

    #[test]
    fn ordinal_constraints_apply_to_ranks() {
        let pairs = vec![
            ("a".to_string(), "x".to_string(), json!(10)),
            ("a".to_string(), "y".to_string(), json!(20)),
            ("a".to_string(), "z".to_string(), json!(10)),
        ];
        let c = [Constraint::parse("le 1").unwrap()];
        let out = assemble(pairs, &CostType::new("routingcost", "ordinal"), &c);
        assert_eq!(serde_json::to_value(out).unwrap(), json!({"a": {"x": 1, "z": 1}}));
    }

    #[test]
    fn overlapping_maps_are_refused() {
        let r: NetworkMapResponse = serde_json::from_value(json!({
            "meta": {"vtag": {"resource-id": "net", "tag": "t1"}},
            "network-map": {"A": {"ipv4": ["10.0.0.0/8"]}, "B": {"ipv4": ["10.1.2.3/8"]}}
        }))
        .unwrap();
        assert!(matches!(NetworkMapView::new(r), Err(MapError::Overlap { .. })));
    }
}
