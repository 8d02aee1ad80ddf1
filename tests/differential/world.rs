//! The differential test's random world: a topology's resources and addresses, learnt from the
//! origin, and the random requests drawn from them (maps, filtered maps, property lookups and
//! endpoint costs, with addresses spelled in every way the RFCs allow).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use altoshield::rng::SplitMix64;
use ipnet::IpNet;
use serde_json::{json, Value};

use crate::support::*;

/// Addresses most requests draw from, shared by every client.
const HOT: usize = 6;

// ---------------------------------------------------------------------------------------------
// Random choices
// ---------------------------------------------------------------------------------------------

/// True with probability 1/n.
pub(crate) fn one_in(rng: &mut SplitMix64, n: u64) -> bool {
    rng.below(n) == 0
}

pub(crate) fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

fn shuffle<T>(rng: &mut SplitMix64, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i as u64 + 1) as usize);
    }
}

/// A random address inside `net`.
fn random_in(rng: &mut SplitMix64, net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let host = u32::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | (rng.next_u64() as u32 & host)))
        }
        IpNet::V6(n) => {
            let host = u128::MAX.checked_shr(u32::from(n.prefix_len())).unwrap_or(0);
            let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | (r & host)))
        }
    }
}

/// The addresses just before and just after `net` (where they exist).
pub(crate) fn neighbours(net: IpNet) -> Vec<IpAddr> {
    match net {
        IpNet::V4(n) => [u32::from(n.network()).checked_sub(1), u32::from(n.broadcast()).checked_add(1)]
            .into_iter()
            .flatten()
            .map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .collect(),
        IpNet::V6(n) => [u128::from(n.network()).checked_sub(1), u128::from(n.broadcast()).checked_add(1)]
            .into_iter()
            .flatten()
            .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .collect(),
    }
}

/// A typed address in one of its many valid spellings: the address type in any case (the core
/// compares it case-insensitively), an IPv6 address in any RFC 4291 §2.2 text form.
fn spell(rng: &mut SplitMix64, ip: IpAddr) -> String {
    let (kind, text) = match ip {
        IpAddr::V4(a) => ("ipv4", a.to_string()),
        IpAddr::V6(a) => ("ipv6", spell_v6(rng, a)),
    };
    let kind = match rng.below(8) {
        0 => kind.to_ascii_uppercase(),
        1 => format!("IP{}", &kind[2..]),
        _ => kind.to_string(),
    };
    format!("{kind}:{text}")
}

fn spell_v6(rng: &mut SplitMix64, a: Ipv6Addr) -> String {
    let segs = a.segments();
    let upper = one_in(rng, 3);
    let group = |rng: &mut SplitMix64, s: u16| {
        let digits = format!("{s:x}");
        let width = digits.len() + rng.below(5 - digits.len() as u64) as usize;
        let g = format!("{digits:0>width$}");
        if upper {
            g.to_ascii_uppercase()
        } else {
            g
        }
    };
    let text = match rng.below(6) {
        // RFC 5952, as `std` prints it.
        0 | 1 => a.to_string(),
        2 => a.to_string().to_ascii_uppercase(),
        // Every group written out.
        3 => segs.iter().map(|s| group(rng, *s)).collect::<Vec<_>>().join(":"),
        // `::` over some run of zero groups, not necessarily the longest.
        4 => {
            let zero_runs: Vec<(usize, usize)> = (0..8)
                .flat_map(|i| (i + 1..=8).map(move |j| (i, j)))
                .filter(|&(i, j)| segs[i..j].iter().all(|s| *s == 0))
                .collect();
            if zero_runs.is_empty() {
                segs.iter().map(|s| group(rng, *s)).collect::<Vec<_>>().join(":")
            } else {
                let (i, j) = *pick(rng, &zero_runs);
                let head: Vec<String> = segs[..i].iter().map(|s| group(rng, *s)).collect();
                let tail: Vec<String> = segs[j..].iter().map(|s| group(rng, *s)).collect();
                format!("{}::{}", head.join(":"), tail.join(":"))
            }
        }
        // The last 32 bits as a dotted quad.
        _ => {
            let head: Vec<String> = segs[..6].iter().map(|s| group(rng, *s)).collect();
            let tail = Ipv4Addr::from((u32::from(segs[6]) << 16) | u32::from(segs[7]));
            format!("{}:{tail}", head.join(":"))
        }
    };
    assert_eq!(text.parse::<Ipv6Addr>().ok(), Some(a), "the generator spelled {a} as {text}");
    text
}

fn json_number(rng: &mut SplitMix64, x: f64) -> String {
    match rng.below(8) {
        0 => format!("{x:e}"),
        1 if x.fract() == 0.0 => format!("{x:.1}"),
        _ => format!("{x}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The world a case draws its requests from
// ---------------------------------------------------------------------------------------------

/// The shield's resources, found through its IRD as a client finds them.
#[derive(Debug, Clone)]
pub(crate) struct Resources {
    pub(crate) network_map: String,
    /// Every GET map (the network map and the cost maps).
    pub(crate) maps: Vec<String>,
    pub(crate) fnm: String,
    pub(crate) fcm: String,
    pub(crate) eps: String,
    pub(crate) ecs: String,
}

impl Resources {
    pub(crate) fn find(dir: &Directory) -> Resources {
        let mut maps = dir.find(COST_MAP, None);
        maps.push(dir.default_network_map());
        Resources {
            network_map: dir.default_network_map(),
            maps,
            fnm: dir.find_one(NETWORK_MAP, Some(NETWORK_MAP_FILTER)),
            fcm: dir.find_one(COST_MAP, Some(COST_MAP_FILTER)),
            eps: dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS)),
            ecs: dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS)),
        }
    }
}

/// What requests are made of: the data set as a client learns it from the origin.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) res: Resources,
    pub(crate) pids: Vec<String>,
    /// Every address the streams use.
    pub(crate) pool: Vec<IpAddr>,
    /// The few addresses most endpoints are drawn from, shared by every client.
    pub(crate) hot: Vec<IpAddr>,
    /// (metric, mode) offered by the filtered cost map and by the endpoint-cost resource.
    pub(crate) fcm_types: Vec<(String, String)>,
    pub(crate) ecs_types: Vec<(String, String)>,
    /// The distinct numerical costs of each metric, so constraints cut somewhere.
    pub(crate) costs: BTreeMap<String, Vec<f64>>,
    pub(crate) pid_property: String,
    pub(crate) other_properties: Vec<String>,
}

/// The (metric, mode) pairs resource `id` offers.
fn cost_types_of(dir: &Directory, id: &str) -> Vec<(String, String)> {
    dir.cost_type_names(id)
        .iter()
        .map(|n| {
            let t = &dir.json["meta"]["cost-types"][n];
            let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
            (s("cost-metric"), s("cost-mode"))
        })
        .collect()
}

impl World {
    /// Reads the network map, the numerical cost maps and the offered types from the origin whose
    /// directory is `dir`.
    pub(crate) async fn learn(
        client: &TestClient,
        dir: &Directory,
        res: Resources,
        rng: &mut SplitMix64,
    ) -> World {
        let nm = get_from(client, dir, &res.network_map).await.json();
        let groups = nm["network-map"].as_object().expect("network map has a `network-map` object");
        let pids: Vec<String> = groups.keys().cloned().collect();
        let prefixes: Vec<IpNet> = groups
            .values()
            .flat_map(|g| g.as_object().into_iter().flat_map(|g| g.values()))
            .flat_map(|list| list.as_array().into_iter().flatten())
            .filter_map(|p| p.as_str().and_then(|p| p.parse::<IpNet>().ok()))
            .filter(|n| n.prefix_len() > 0)
            .collect();
        assert!(!prefixes.is_empty(), "the network map has no prefix besides the default routes");
        let pool = address_pool(rng, &prefixes);
        let mut hot = pool.clone();
        shuffle(rng, &mut hot);
        hot.truncate(HOT);

        let fcm_types = cost_types_of(dir, &res.fcm);
        let ecs_types = cost_types_of(dir, &res.ecs);
        let mut costs = BTreeMap::new();
        for (metric, _) in fcm_types.iter().chain(&ecs_types) {
            if costs.contains_key(metric) {
                continue;
            }
            let id = dir.cost_map_for(metric, "numerical").expect("a numerical cost map per metric");
            let map = get_from(client, dir, &id).await.json();
            let mut values: Vec<f64> = map["cost-map"]
                .as_object()
                .into_iter()
                .flat_map(|rows| rows.values())
                .filter_map(Value::as_object)
                .flat_map(|row| row.values().filter_map(Value::as_f64))
                .collect();
            values.sort_by(f64::total_cmp);
            values.dedup();
            costs.insert(metric.clone(), values);
        }

        let props: Vec<String> = dir.entry(&res.eps)["capabilities"]["prop-types"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(String::from))
            .collect();
        let pid_property = format!("{}.pid", res.network_map);
        assert!(props.contains(&pid_property), "the property resource offers no `{pid_property}`");
        let other_properties = props.into_iter().filter(|p| *p != pid_property).collect();
        World { res, pids, pool, hot, fcm_types, ecs_types, costs, pid_property, other_properties }
    }

    pub(crate) fn request(&self, rng: &mut SplitMix64) -> Req {
        let (resource, body) = match rng.below(20) {
            0 => (pick(rng, &self.res.maps).clone(), None),
            1..=3 => (self.res.fnm.clone(), Some(self.network_map_filter(rng))),
            4..=7 => (self.res.fcm.clone(), Some(self.cost_map_filter(rng))),
            8..=10 => (self.res.eps.clone(), Some(self.property_lookup(rng))),
            _ => (self.res.ecs.clone(), Some(self.endpoint_cost(rng))),
        };
        Req { resource, body }
    }

    /// Some PIDs (none: every PID), with an unknown one or a duplicate now and then.
    fn pid_subset(&self, rng: &mut SplitMix64, min: u64, max: u64) -> Vec<String> {
        let n = min + rng.below(max - min + 1);
        let mut out: Vec<String> = (0..n).map(|_| pick(rng, &self.pids).clone()).collect();
        if one_in(rng, 4) {
            let known = pick(rng, &self.pids).to_ascii_uppercase();
            out.push(pick(rng, &["no-such-pid".to_string(), "pid-99999".to_string(), known]).clone());
        }
        if !out.is_empty() && one_in(rng, 6) {
            out.push(out[0].clone());
        }
        shuffle(rng, &mut out);
        out
    }

    fn network_map_filter(&self, rng: &mut SplitMix64) -> Value {
        let mut body = json!({"pids": self.pid_subset(rng, 0, 4)});
        if one_in(rng, 2) {
            const TYPES: [&[&str]; 4] = [&[], &["ipv4"], &["ipv6"], &["ipv6", "ipv4"]];
            body["address-types"] = json!(pick(rng, &TYPES));
        }
        body
    }

    fn cost_map_filter(&self, rng: &mut SplitMix64) -> Value {
        let (metric, mode) = pick(rng, &self.fcm_types).clone();
        let mut body = json!({"cost-type": cost_type(&metric, &mode)});
        if !one_in(rng, 4) {
            let mut pids = json!({});
            for key in ["srcs", "dsts"] {
                match rng.below(6) {
                    0 => {}
                    1 => pids[key] = json!([]),
                    _ => pids[key] = json!(self.pid_subset(rng, 1, 4)),
                }
            }
            body["pids"] = pids;
        }
        if one_in(rng, 3) {
            body["constraints"] = json!(self.constraints(rng, &metric, &mode));
        }
        body
    }

    fn property_lookup(&self, rng: &mut SplitMix64) -> Value {
        let mut properties = vec![self.pid_property.clone()];
        if !self.other_properties.is_empty() && one_in(rng, 4) {
            let other = pick(rng, &self.other_properties).clone();
            if one_in(rng, 2) {
                properties = vec![other];
            } else {
                properties.push(other);
            }
        }
        let endpoints: Vec<String> = self.endpoints(rng, 1, 8).into_iter().map(|(_, s)| s).collect();
        json!({"properties": properties, "endpoints": endpoints})
    }

    fn endpoint_cost(&self, rng: &mut SplitMix64) -> Value {
        let (metric, mode) = pick(rng, &self.ecs_types).clone();
        // Absent or empty `srcs` (or, less often, `dsts`) mean the client itself (§11.5.1.3).
        let srcs = match rng.below(8) {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(self.endpoints(rng, 1, 3)),
        };
        let implicit_srcs = srcs.as_ref().is_none_or(Vec::is_empty);
        let mut dsts = match rng.below(16) {
            0 if !implicit_srcs => None,
            1 if !implicit_srcs => Some(Vec::new()),
            _ => Some(self.endpoints(rng, 1, 6)),
        };
        // One address as a source and as a destination, spelled differently.
        if let (Some(s), Some(d)) = (&srcs, &mut dsts) {
            if !s.is_empty() && !d.is_empty() && one_in(rng, 4) {
                let (ip, _) = pick(rng, s);
                d.push((*ip, spell(rng, *ip)));
            }
        }
        let strings = |l: Vec<(IpAddr, String)>| l.into_iter().map(|(_, s)| s).collect::<Vec<_>>();
        let mut endpoints = json!({});
        if let Some(s) = srcs {
            endpoints["srcs"] = json!(strings(s));
        }
        if let Some(d) = dsts {
            endpoints["dsts"] = json!(strings(d));
        }
        let mut body = json!({"cost-type": cost_type(&metric, &mode), "endpoints": endpoints});
        if one_in(rng, 3) {
            body["constraints"] = json!(self.constraints(rng, &metric, &mode));
        }
        body
    }

    /// `min..=max` endpoints, mostly from the shared pool, each spelled at random; now and then
    /// one address twice, spelled differently.
    pub(crate) fn endpoints(&self, rng: &mut SplitMix64, min: u64, max: u64) -> Vec<(IpAddr, String)> {
        let n = min + rng.below(max - min + 1);
        let mut out: Vec<(IpAddr, String)> = (0..n)
            .map(|_| {
                let ip = if one_in(rng, 5) { *pick(rng, &self.pool) } else { *pick(rng, &self.hot) };
                (ip, spell(rng, ip))
            })
            .collect();
        if one_in(rng, 5) {
            let (ip, _) = *pick(rng, &out);
            let again = (ip, spell(rng, ip));
            let at = rng.below(out.len() as u64 + 1) as usize;
            out.insert(at, again);
        }
        out
    }

    /// One or two constraints (RFC 7285 §11.3.2.3), bounds near the metric's actual costs
    /// (numerical) or small ranks (ordinal).
    pub(crate) fn constraints(&self, rng: &mut SplitMix64, metric: &str, mode: &str) -> Vec<String> {
        let n = 1 + rng.below(2);
        (0..n)
            .map(|_| {
                let op = *pick(rng, &["gt", "lt", "ge", "le", "eq"]);
                let value = if mode == "ordinal" {
                    (1 + rng.below(6)) as f64
                } else {
                    let c = *pick(rng, self.costs.get(metric).map(Vec::as_slice).unwrap_or(&[1.0]));
                    match rng.below(4) {
                        0 => c + 0.5,
                        1 => c - 1.0,
                        _ => c,
                    }
                };
                format!("{op} {}", json_number(rng, value))
            })
            .collect()
    }
}

/// Addresses for the streams: hosts of random prefixes (every IPv6 one, so nested /56s and the
/// rest of their /48s both appear), their network and last addresses and the addresses just
/// outside them, addresses outside every prefix but the default routes, the default routes'
/// own edges, and an IPv4-mapped IPv6 address.
fn address_pool(rng: &mut SplitMix64, prefixes: &[IpNet]) -> Vec<IpAddr> {
    let mut pool = BTreeSet::new();
    let (mut v4, v6): (Vec<IpNet>, Vec<IpNet>) = prefixes.iter().partition(|n| matches!(n, IpNet::V4(_)));
    shuffle(rng, &mut v4);
    for net in v4.iter().take(40).chain(&v6) {
        pool.insert(random_in(rng, *net));
        if one_in(rng, 3) {
            pool.insert(net.network());
        }
        if one_in(rng, 3) {
            pool.insert(net.broadcast());
        }
        if one_in(rng, 4) {
            pool.extend(neighbours(*net));
        }
    }
    let inside_any = |ip: &IpAddr| prefixes.iter().any(|n| n.contains(ip));
    let mut outside = 0;
    while outside < 6 {
        let candidate = if outside % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(rng.next_u64() as u32))
        } else {
            let net: IpNet = pick(rng, &["2001:db8::/32", "fd00::/8", "2000::/3"]).parse().expect("prefix");
            random_in(rng, net)
        };
        if !inside_any(&candidate) {
            pool.insert(candidate);
            outside += 1;
        }
    }
    for edge in ["0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"] {
        pool.insert(edge.parse().expect("address"));
    }
    let mapped = pool.iter().find_map(|ip| match ip {
        IpAddr::V4(a) if !a.is_unspecified() => Some(IpAddr::V6(a.to_ipv6_mapped())),
        _ => None,
    });
    pool.extend(mapped);
    pool.into_iter().collect()
}

/// One request: a GET of a map (no body) or a POST.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) resource: String,
    pub(crate) body: Option<Value>,
}

impl fmt::Display for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body {
            Some(b) => write!(f, "POST {} {b}", self.resource),
            None => write!(f, "GET {}", self.resource),
        }
    }
}
