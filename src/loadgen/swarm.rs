//! The simulated swarm (DESIGN §1, §8): peer addresses drawn from a network map, and what each
//! peer asks for and does every epoch.
//!
//! Pure: no IO and no clock. Every peer has its own splitmix64 stream derived from the run's
//! seed and its index, so a seed gives the same swarm whatever order the network answers in.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnet::IpNet;

use crate::rng::{mix, SplitMix64};

/// Salts, so that address draws and peer behaviour use unrelated streams of one seed.
const ADDRESS_SALT: u64 = 0x6164_6472_6573_7365;
const PEER_SALT: u64 = 0x7065_6572_7365_6564;

/// Which candidates a peer asks to have ranked each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Every candidate and active peer, every epoch: the naive client.
    All,
    /// Only the peers learned this epoch: the client that follows the load-reduction advice.
    New,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::All => "all",
            Policy::New => "new",
        }
    }
}

/// How every peer of the swarm behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Peers learned per epoch (from a tracker or peer exchange).
    pub new_per_epoch: usize,
    pub policy: Policy,
    /// Active peers a peer keeps; it tries its best-ranked candidates until it has this many.
    pub max_active: usize,
    /// Candidates kept; the worst-ranked are forgotten beyond this.
    pub max_candidates: usize,
    /// Probability that a tried candidate is online and has the data.
    pub availability: f64,
    /// Simulated throughput (0 to 1, better for better-ranked peers) a candidate must reach to
    /// become active; below it the candidate is dead.
    pub threshold: f64,
    /// Probability per epoch that an active peer leaves (and is dead from then on).
    pub churn: f64,
}

/// The `ipv4:`/`ipv6:` typed form of an address, as ALTO requests spell endpoints.
pub fn typed(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("ipv4:{a}"),
        IpAddr::V6(a) => format!("ipv6:{a}"),
    }
}

/// Draws `n` distinct host addresses from `prefixes`, each from a prefix chosen uniformly, so
/// that peers fall into many PIDs. Catch-all prefixes (IPv4 shorter than /8, IPv6 shorter than
/// /16, such as a default PID's `0.0.0.0/0`) are left out unless nothing else is there. Returns
/// fewer than `n` when the prefixes hold too few hosts.
pub fn draw_addresses(prefixes: &[IpNet], n: usize, seed: u64) -> Vec<IpAddr> {
    let specific: Vec<IpNet> = prefixes
        .iter()
        .copied()
        .filter(|p| match p {
            IpNet::V4(p) => p.prefix_len() >= 8,
            IpNet::V6(p) => p.prefix_len() >= 16,
        })
        .collect();
    let pool = if specific.is_empty() { prefixes.to_vec() } else { specific };
    if pool.is_empty() {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(mix(seed ^ ADDRESS_SALT));
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut attempts = 0usize;
    while out.len() < n && attempts < n.saturating_mul(50).max(1000) {
        attempts += 1;
        let net = pool[rng.below(pool.len() as u64) as usize];
        let addr = host_in(net, &mut rng);
        if seen.insert(addr) {
            out.push(addr);
        }
    }
    out
}

/// A random host address inside `net`: not the network address (nor the IPv4 broadcast
/// address) when the prefix has room for hosts.
fn host_in(net: IpNet, rng: &mut SplitMix64) -> IpAddr {
    match net {
        IpNet::V4(n) => {
            let bits = 32 - u32::from(n.prefix_len());
            let base = u32::from(n.network());
            let offset = match bits {
                0 => 0,
                1 => rng.below(2) as u32,
                _ => 1 + rng.below((1u64 << bits) - 2) as u32,
            };
            IpAddr::V4(Ipv4Addr::from(base | offset))
        }
        IpNet::V6(n) => {
            // 64 random bits are plenty: the interface identifier.
            let bits = (128 - u32::from(n.prefix_len())).min(64);
            let base = u128::from(n.network());
            let offset = match bits {
                0 => 0,
                64 => u128::from(rng.next_u64().max(1)),
                _ => u128::from(1 + rng.below((1u64 << bits) - 1)),
            };
            IpAddr::V6(Ipv6Addr::from(base | offset))
        }
    }
}

/// A candidate peer and the rank it was last given (`None`: not ranked yet, or its ranking
/// failed).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    peer: u32,
    rank: Option<u64>,
}

/// One peer's view of the swarm.
#[derive(Debug, Clone)]
pub struct Peer {
    index: u32,
    rng: SplitMix64,
    /// Every peer this one has ever learned (so it is not learned again).
    known: HashSet<u32>,
    candidates: Vec<Candidate>,
    active: Vec<u32>,
    dead: usize,
}

/// What a peer does in one epoch: whom it asks about.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The peers to rank, by swarm index; empty when the peer has nothing to ask.
    pub dsts: Vec<u32>,
}

impl Peer {
    pub fn new(index: u32, seed: u64) -> Peer {
        Peer {
            index,
            rng: SplitMix64::new(mix(seed ^ PEER_SALT ^ mix(u64::from(index)))),
            known: HashSet::new(),
            candidates: Vec::new(),
            active: Vec::new(),
            dead: 0,
        }
    }

    /// Starts an epoch in a swarm of `swarm` peers: active peers leave at the churn rate, the
    /// peer learns up to `new_per_epoch` peers it never saw, and says whom it asks to rank.
    pub fn begin_epoch(&mut self, b: &Behaviour, swarm: u32) -> Query {
        let before = self.active.len();
        let rng = &mut self.rng;
        self.active.retain(|_| rng.unit() >= b.churn);
        self.dead += before - self.active.len();

        let mut learned = Vec::with_capacity(b.new_per_epoch);
        let room = (swarm as usize).saturating_sub(1 + self.known.len());
        let want = b.new_per_epoch.min(room);
        let mut attempts = 0;
        while learned.len() < want && attempts < want * 20 + 20 {
            attempts += 1;
            let p = self.rng.below(u64::from(swarm)) as u32;
            if p != self.index && self.known.insert(p) {
                learned.push(p);
            }
        }
        self.candidates.extend(learned.iter().map(|&peer| Candidate { peer, rank: None }));
        let dsts = match b.policy {
            Policy::New => learned,
            Policy::All => {
                self.candidates.iter().map(|c| c.peer).chain(self.active.iter().copied()).collect()
            }
        };
        Query { dsts }
    }

    /// Ends an epoch: `ranks` are the ordinal costs the server gave the asked peers (`None`
    /// when the request failed). The peer tries its best-ranked candidates until it has
    /// `max_active` active peers; each one becomes active if it is available and its simulated
    /// throughput (a draw that favours better ranks) reaches the threshold, dead otherwise.
    pub fn end_epoch(&mut self, b: &Behaviour, ranks: Option<&HashMap<u32, u64>>) {
        let Some(ranks) = ranks else { return };
        for c in &mut self.candidates {
            if let Some(r) = ranks.get(&c.peer) {
                c.rank = Some(*r);
            }
        }
        // Best first; unranked last, in the order they were learned.
        self.candidates.sort_by_key(|c| c.rank.unwrap_or(u64::MAX));
        let tries = b.max_active.saturating_sub(self.active.len()).min(self.candidates.len());
        for c in self.candidates.drain(..tries) {
            let rank = c.rank.unwrap_or(8).max(1) as f64;
            let available = self.rng.unit() < b.availability;
            let throughput = self.rng.unit() / (1.0 + 0.5 * (rank - 1.0));
            if available && throughput >= b.threshold {
                self.active.push(c.peer);
            } else {
                self.dead += 1;
            }
        }
        self.candidates.truncate(b.max_candidates);
    }

    pub fn active(&self) -> usize {
        self.active.len()
    }

    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    pub fn dead(&self) -> usize {
        self.dead
    }
}

/// The body of an ordinal `routingcost` endpoint-cost request from `src` to `dsts` (typed
/// addresses, which need no JSON escaping).
pub fn ecs_body<'a>(src: &str, dsts: impl Iterator<Item = &'a str>) -> Bytes {
    let mut s = String::with_capacity(160 + 32 * 20);
    s.push_str(r#"{"cost-type":{"cost-mode":"ordinal","cost-metric":"routingcost"},"endpoints":{"srcs":[""#);
    s.push_str(src);
    s.push_str(r#""],"dsts":["#);
    for (i, d) in dsts.enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(d);
        s.push('"');
    }
    s.push_str("]}}");
    Bytes::from(s)
}

/// The ordinal costs an endpoint-cost answer gives from `src` to each asked peer, by peer
/// index; `None` when the body is not an endpoint-cost answer.
pub fn ranks_from(body: &[u8], src: &str, asked: &[u32], addrs: &[String]) -> Option<HashMap<u32, u64>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let row = v.get("endpoint-cost-map")?.as_object()?.get(src)?.as_object()?;
    let mut out = HashMap::with_capacity(asked.len());
    for &p in asked {
        let rank = addrs.get(p as usize).and_then(|a| row.get(a)).and_then(|c| {
            c.as_u64().or_else(|| c.as_f64().filter(|x| x.is_finite() && *x >= 0.0).map(|x| x as u64))
        });
        if let Some(r) = rank {
            out.insert(p, r);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(policy: Policy) -> Behaviour {
        Behaviour {
            new_per_epoch: 5,
            policy,
            max_active: 4,
            max_candidates: 30,
            availability: 0.8,
            threshold: 0.3,
            churn: 0.1,
        }
    }

    #[test]
    fn addresses_are_distinct_hosts_inside_specific_prefixes() {
        let prefixes: Vec<IpNet> =
            ["0.0.0.0/0", "10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "::/0", "198.51.100.7/32"]
                .iter()
                .map(|p| p.parse().unwrap())
                .collect();
        let addrs = draw_addresses(&prefixes, 200, 7);
        assert_eq!(addrs.len(), 200);
        assert_eq!(addrs.iter().collect::<HashSet<_>>().len(), 200);
        for a in &addrs {
            let inside: Vec<&IpNet> = prefixes[1..].iter().filter(|p| p.contains(a)).collect();
            assert!(!inside.is_empty(), "{a} is only in a catch-all prefix");
            assert!(!prefixes.iter().any(|p| p.prefix_len() < 32 && p.network() == *a), "{a}");
        }
        assert_eq!(draw_addresses(&prefixes, 200, 7), addrs, "same seed, same draw");
        assert_ne!(draw_addresses(&prefixes, 200, 8), addrs);
        // A /32 holds one host: asking for more gives what there is.
        let one = vec!["198.51.100.7/32".parse().unwrap()];
        assert_eq!(draw_addresses(&one, 5, 1), vec!["198.51.100.7".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn policy_new_asks_only_for_newly_learned_peers() {
        let b = behaviour(Policy::New);
        let mut p = Peer::new(0, 1);
        let mut seen = HashSet::new();
        for _ in 0..5 {
            let q = p.begin_epoch(&b, 1000);
            assert_eq!(q.dsts.len(), 5);
            assert!(!q.dsts.contains(&0), "a peer never ranks itself");
            for d in &q.dsts {
                assert!(seen.insert(*d), "peer {d} learned twice");
            }
            let ranks: HashMap<u32, u64> =
                q.dsts.iter().enumerate().map(|(i, d)| (*d, i as u64 + 1)).collect();
            p.end_epoch(&b, Some(&ranks));
        }
    }

    #[test]
    fn policy_all_asks_for_candidates_and_active_peers() {
        let b = behaviour(Policy::All);
        let mut p = Peer::new(3, 1);
        let q = p.begin_epoch(&b, 1000);
        assert_eq!(q.dsts.len(), 5);
        let ranks: HashMap<u32, u64> = q.dsts.iter().map(|d| (*d, 1)).collect();
        p.end_epoch(&b, Some(&ranks));
        let tried = 4;
        assert_eq!(p.active() + p.dead(), tried);
        assert_eq!(p.candidates(), 1);
        let q2 = p.begin_epoch(&b, 1000);
        // The one left-over candidate, 5 new ones, and the active peers that did not churn.
        assert_eq!(q2.dsts.len(), 1 + 5 + p.active());
    }

    #[test]
    fn a_small_swarm_runs_out_of_peers_to_learn() {
        let b = behaviour(Policy::New);
        let mut p = Peer::new(0, 1);
        let mut total = 0;
        for _ in 0..10 {
            let q = p.begin_epoch(&b, 8);
            total += q.dsts.len();
            p.end_epoch(&b, None);
        }
        assert_eq!(total, 7, "7 other peers in a swarm of 8");
    }

    #[test]
    fn bodies_and_ranks_round_trip() {
        let addrs = vec!["ipv4:10.0.0.1".to_string(), "ipv4:10.0.0.2".into(), "ipv6:2001:db8::1".into()];
        let body = ecs_body(&addrs[0], [1u32, 2].iter().map(|&i| addrs[i as usize].as_str()));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["endpoints"]["dsts"][1], "ipv6:2001:db8::1");
        assert_eq!(v["cost-type"]["cost-mode"], "ordinal");
        let answer =
            br#"{"meta":{},"endpoint-cost-map":{"ipv4:10.0.0.1":{"ipv4:10.0.0.2":2,"ipv6:2001:db8::1":1}}}"#;
        let ranks = ranks_from(answer, &addrs[0], &[1, 2], &addrs).unwrap();
        assert_eq!(ranks, HashMap::from([(1, 2), (2, 1)]));
        assert!(ranks_from(b"not json", &addrs[0], &[1], &addrs).is_none());
    }
}
