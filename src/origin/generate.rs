//! Deterministic synthetic data (`altoshield origin --generate`): the same flags give the same
//! bytes. PIDs get M IPv4 prefixes each (/16 to /24, about a fifth of them nested inside another
//! PID's prefix), an IPv6 /48 (every fourth PID also a /56 inside its neighbour's /48), and sit
//! at random points of a plane whose distances give the routing costs. A `default` PID holds
//! `0.0.0.0/0` and `::/0`.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::Value;

use super::data::Dataset;
use crate::alto::types::{CostMapData, EndpointAddrGroup};
use crate::rng::SplitMix64;

/// The cost between the default PID and anything.
const DEFAULT_PID_COST: u64 = 200;

/// Generates `pids` PIDs (plus the default one) with `per_pid` IPv4 prefixes each.
pub fn generate(pids: usize, per_pid: usize, seed: u64) -> Dataset {
    let mut rng = SplitMix64::new(seed);
    let names: Vec<String> = (1..=pids).map(|i| format!("pid-{i:05}")).collect();
    let mut seen: HashSet<Ipv4Net> = HashSet::new();
    let mut all: Vec<Ipv4Net> = Vec::with_capacity(pids * per_pid);
    let mut network_map: BTreeMap<String, EndpointAddrGroup> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let mut v4 = Vec::with_capacity(per_pid);
        while v4.len() < per_pid {
            let net = if !all.is_empty() && rng.below(5) == 0 {
                nested_in(all[rng.below(all.len() as u64) as usize], &mut rng)
            } else {
                Some(fresh_v4(&mut rng))
            };
            if let Some(net) = net.filter(|n| seen.insert(*n)) {
                all.push(net);
                v4.push(net.to_string());
            }
        }
        let n = i as u32;
        let mut v6 = vec![v6_48(n).to_string()];
        if i % 4 == 3 {
            let outer = v6_48(n - 1).network().segments();
            let inner = Ipv6Addr::new(outer[0], outer[1], outer[2], 0x0100, 0, 0, 0, 0);
            v6.push(Ipv6Net::new(inner, 56).map(|n| n.to_string()).unwrap_or_default());
        }
        let group = EndpointAddrGroup::from([("ipv4".to_string(), v4), ("ipv6".to_string(), v6)]);
        network_map.insert(name.clone(), group);
    }
    network_map.insert(
        "default".into(),
        EndpointAddrGroup::from([
            ("ipv4".to_string(), vec!["0.0.0.0/0".into()]),
            ("ipv6".to_string(), vec!["::/0".into()]),
        ]),
    );

    let points: Vec<(f64, f64)> = names.iter().map(|_| (rng.unit() * 1000.0, rng.unit() * 1000.0)).collect();
    let mut routing = CostMapData::new();
    for (i, src) in names.iter().enumerate() {
        let mut row: BTreeMap<String, Value> = names
            .iter()
            .enumerate()
            .map(|(j, dst)| {
                let (a, b) = (points[i], points[j]);
                let dist = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
                (dst.clone(), Value::from(1 + (dist / 10.0).round() as u64))
            })
            .collect();
        row.insert("default".into(), Value::from(DEFAULT_PID_COST));
        routing.insert(src.clone(), row);
    }
    let default_row = network_map.keys().map(|p| (p.clone(), Value::from(DEFAULT_PID_COST))).collect();
    routing.insert("default".into(), default_row);

    Dataset {
        network_map_id: "default-network-map".into(),
        network_map,
        metrics: BTreeMap::from([("routingcost".to_string(), routing)]),
        properties: BTreeMap::new(),
    }
}

/// A random /16 to /24 outside 0/8, 127/8 and 224/3.
fn fresh_v4(rng: &mut SplitMix64) -> Ipv4Net {
    let first = loop {
        let b = 1 + rng.below(223) as u32;
        if b != 127 {
            break b;
        }
    };
    let addr = (first << 24) | (rng.next_u64() as u32 & 0x00ff_ffff);
    let len = 16 + rng.below(9) as u8;
    Ipv4Net::new(Ipv4Addr::from(addr), len).map(|n| n.trunc()).unwrap_or_default()
}

/// A random prefix 1 to 4 bits longer inside `parent`, at most /28.
fn nested_in(parent: Ipv4Net, rng: &mut SplitMix64) -> Option<Ipv4Net> {
    let plen = parent.prefix_len();
    if plen >= 28 {
        return None;
    }
    let len = plen + 1 + rng.below(u64::from((28 - plen).min(4))) as u8;
    let host_bits = u32::MAX.checked_shr(u32::from(plen)).unwrap_or(0);
    let addr = u32::from(parent.network()) | (rng.next_u64() as u32 & host_bits);
    Ipv4Net::new(Ipv4Addr::from(addr), len).ok().map(|n| n.trunc())
}

/// PID `n`'s IPv6 /48, inside fd00::/8.
fn v6_48(n: u32) -> Ipv6Net {
    let addr = Ipv6Addr::new(0xfd00, (n >> 16) as u16, n as u16, 0, 0, 0, 0, 0);
    Ipv6Net::new(addr, 48).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_complete_and_indexable() {
        let a = generate(20, 5, 7);
        let b = generate(20, 5, 7);
        assert_eq!(a.network_map, b.network_map);
        assert_eq!(a.metrics, b.metrics);
        assert_ne!(generate(20, 5, 8).network_map, a.network_map);
        assert!(a.check().is_ok());
        let v = a.version(0).unwrap();
        assert_eq!(v.network_map.pids().len(), 21);
        assert_eq!(v.network_map.prefix_count(), 20 * 5 + 20 + 5 + 2);
        assert_eq!(v.network_map.pid_of("127.0.0.1".parse().unwrap()), Some("default"));
        let bumped = a.version(1).unwrap();
        assert_ne!(bumped.vtag, v.vtag);
        assert!(bumped.network_map.prefix_count() == v.network_map.prefix_count());
    }
}
