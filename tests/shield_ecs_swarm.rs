//! The seed's epoch-driven P2P workload through the shield, per `ecs.mode` (issue 4, "Origin
//! work on the seed's workload"): 500 peers, 10 epochs; every epoch each peer re-ranks its
//! retained candidates plus a few new ones, with its own address as the source, all peers of an
//! epoch arriving together, against an origin with 20 ms latency. Asserts on the origin's
//! counters and prints the figures (`cargo test --test shield_ecs_swarm -- --nocapture`).

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{json, Value};
use support::*;

const PEERS: usize = 500;
const EPOCHS: usize = 10;
const CANDIDATES: usize = 12;
const NEW_PER_EPOCH: usize = 2;
const CONCURRENCY: usize = 250;

fn peer_addr(i: usize) -> String {
    match i % 4 {
        0 => format!("ipv6:2001:db8:{}::{:x}", ["a", "b", "c"][i % 3], i + 1),
        1 => format!("ipv4:10.{}.{}.{}", i % 3, i / 256, i % 256),
        2 => format!("ipv4:203.0.113.{}", i % 256),
        _ => format!("ipv4:198.51.{}.{}", 100 + i % 2, i % 256),
    }
}

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Every epoch's requests: per peer, its source and its candidate set.
fn workload() -> Vec<Vec<Value>> {
    let mut rng = Rng(7);
    let addrs: Vec<String> = (0..PEERS).map(peer_addr).collect();
    let mut candidates: Vec<Vec<usize>> = (0..PEERS)
        .map(|p| {
            let mut c: Vec<usize> = Vec::new();
            while c.len() < CANDIDATES {
                let q = rng.below(PEERS);
                if q != p && !c.contains(&q) {
                    c.push(q);
                }
            }
            c
        })
        .collect();
    let mut epochs = Vec::new();
    for epoch in 0..EPOCHS {
        let mut requests = Vec::new();
        for (p, c) in candidates.iter_mut().enumerate() {
            if epoch > 0 {
                for _ in 0..NEW_PER_EPOCH {
                    let q = rng.below(PEERS);
                    if q != p && !c.contains(&q) {
                        let slot = rng.below(c.len());
                        c[slot] = q;
                    }
                }
            }
            let mode = if p % 5 == 0 { "ordinal" } else { "numerical" };
            let dsts: Vec<&str> = c.iter().map(|q| addrs[*q].as_str()).collect();
            requests.push(json!({
                "cost-type": {"cost-metric": "routingcost", "cost-mode": mode},
                "endpoints": {"srcs": [addrs[p].as_str()], "dsts": dsts}
            }));
        }
        epochs.push(requests);
    }
    epochs
}

fn pairs_of(body: &Value) -> Vec<(String, String)> {
    let list = |k: &str| -> Vec<String> {
        body["endpoints"][k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let dsts = list("dsts");
    list("srcs").into_iter().flat_map(|s| dsts.iter().map(move |d| (s.clone(), d.clone()))).collect()
}

struct Figures {
    /// Endpoint-cost requests the origin served.
    requests: f64,
    /// Requests the origin served for every resource (maps, version checks, the IRD).
    all_requests: f64,
    pairs: f64,
    asked_pairs: usize,
    distinct_pairs: usize,
    client_requests: usize,
}

async fn run(ecs: &[(&str, &str)]) -> Figures {
    let origin = Origin::with_data(&["--delay-ms", "20"]);
    let mut config = ShieldConfig::new(&origin.directory_url()).plain();
    for (k, v) in ecs {
        config = config.raw(k, v);
    }
    let shield = Shield::start_ready(&config).await;
    let client = Arc::new(TestClient::http1());
    let dir = Arc::new(Directory::fetch(&client, &shield.directory_url()).await);
    let id = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let epochs = workload();
    let before = origin.metrics().await;
    let (mut asked, mut distinct, mut n) = (0, HashSet::new(), 0);
    let mut last = Vec::new();
    for requests in &epochs {
        for chunk in requests.chunks(CONCURRENCY) {
            let mut tasks = Vec::new();
            for body in chunk {
                let pairs = pairs_of(body);
                asked += pairs.len();
                distinct.extend(pairs);
                n += 1;
                let (client, dir, id, body) = (client.clone(), dir.clone(), id.clone(), body.clone());
                tasks.push(tokio::spawn(async move {
                    let r = post_to(&client, &dir, &id, &body).await;
                    (body, r.status, r.json())
                }));
            }
            last.clear();
            for t in tasks {
                let (body, status, answer) = t.await.expect("request task");
                assert_eq!(status, 200, "{body}");
                last.push((body, answer));
            }
        }
    }
    let after = origin.metrics().await;
    let count = |text: &str, name: &str| metric(text, name, &[("resource", "endpoint-cost")]);
    let figures = Figures {
        requests: count(&after, "altoshield_origin_served_total")
            - count(&before, "altoshield_origin_served_total"),
        all_requests: metric(&after, "altoshield_origin_served_total", &[])
            - metric(&before, "altoshield_origin_served_total", &[]),
        pairs: count(&after, "altoshield_origin_ecs_pairs_total")
            - count(&before, "altoshield_origin_ecs_pairs_total"),
        asked_pairs: asked,
        distinct_pairs: distinct.len(),
        client_requests: n,
    };
    // A sample of the last epoch's answers equals the origin's own.
    let direct = TestClient::http1();
    let origin_dir = Directory::fetch(&direct, &origin.directory_url()).await;
    for (body, answer) in last.iter().step_by(25) {
        let expected = post_to(&direct, &origin_dir, &id, body).await;
        assert_eq!(*answer, expected.json(), "{body}");
    }
    eprintln!(
        "ecs {ecs:?}: {} client requests, {} pairs asked ({} distinct); origin: {} endpoint-cost requests, \
         {} pairs; {} requests to all resources",
        figures.client_requests,
        figures.asked_pairs,
        figures.distinct_pairs,
        figures.requests,
        figures.pairs,
        figures.all_requests
    );
    figures
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_sends_every_pair_to_the_origin() {
    let f = run(&[("ecs.mode", "\"forward\"")]).await;
    // Only a peer whose candidates did not change between epochs repeats a request exactly.
    assert!(f.requests >= 0.95 * f.client_requests as f64, "{} origin requests", f.requests);
    assert!(f.pairs >= 0.95 * f.asked_pairs as f64, "{} origin pairs", f.pairs);
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_with_local_ranking_computes_each_pair_about_once() {
    let f = run(&[("ecs.mode", "\"aggregate\""), ("ecs.rank_locally", "true")]).await;
    assert!(
        f.pairs <= 1.1 * f.distinct_pairs as f64,
        "origin computed {} pairs for {} distinct",
        f.pairs,
        f.distinct_pairs
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn synthesize_sends_no_endpoint_cost_request() {
    let f = run(&[("ecs.mode", "\"synthesize\"")]).await;
    assert_eq!((f.requests, f.pairs), (0.0, 0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_sends_only_the_warm_up_and_the_sample() {
    let f = run(&[("ecs.mode", "\"auto\""), ("ecs.auto_warmup", "50"), ("ecs.auto_sample", "0.01")]).await;
    // Warm-up requests of the first epoch arrive together: all of them may be in flight before
    // the 50th match is counted, so the bound is one concurrent batch, plus the sample.
    let bound = CONCURRENCY as f64 + 0.01 * f.client_requests as f64 * 2.0 + 10.0;
    assert!(f.requests <= bound, "{} origin requests, bound {bound}", f.requests);
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_merging_with_waste_trades_pairs_for_requests() {
    let f =
        run(&[("ecs.mode", "\"aggregate\""), ("ecs.rank_locally", "true"), ("ecs.merge_waste", "4.0")]).await;
    assert!(
        f.pairs <= 4.0 * f.distinct_pairs as f64,
        "origin computed {} pairs for {} distinct",
        f.pairs,
        f.distinct_pairs
    );
}
