//! The seed's epoch-driven P2P workload through the shield, per `ecs.mode` (issue 4, "Origin
//! work on the seed's workload"): 500 peers, 10 epochs; every epoch each peer re-ranks its
//! retained candidates plus a few new ones, with its own address as the source, all peers of an
//! epoch arriving together, against an origin with 20 ms latency. Asserts on the origin's
//! counters and prints the figures (`cargo test --test shield_ecs_swarm -- --nocapture`). In
//! front of an origin whose endpoint costs deviate from its maps, `auto` must switch to
//! `aggregate` and every answer after the first epoch must be the origin's own.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use altoshield::rng::SplitMix64;
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

/// A number in `0..n` from the workload's generator.
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    rng.below(n as u64) as usize
}

/// Every epoch's requests: per peer, its source and its candidate set.
fn workload() -> Vec<Vec<Value>> {
    let mut rng = SplitMix64::new(7);
    let addrs: Vec<String> = (0..PEERS).map(peer_addr).collect();
    let mut candidates: Vec<Vec<usize>> = (0..PEERS)
        .map(|p| {
            let mut c: Vec<usize> = Vec::new();
            while c.len() < CANDIDATES {
                let q = below(&mut rng, PEERS);
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
                    let q = below(&mut rng, PEERS);
                    if q != p && !c.contains(&q) {
                        let slot = below(&mut rng, c.len());
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

/// Which answers are compared with the origin's own.
#[derive(Clone, Copy, PartialEq)]
enum Check {
    /// Every 25th answer of the last 250.
    Sample,
    /// Every answer after the first epoch.
    AfterFirstEpoch,
}

async fn run(ecs: &[(&str, &str)]) -> Figures {
    run_against(&[], ecs, Check::Sample).await.0
}

/// The swarm through a shield with `ecs` in front of an origin with 20 ms latency and
/// `origin_args`; the figures, and the shield's metrics at the end.
async fn run_against(origin_args: &[&str], ecs: &[(&str, &str)], check: Check) -> (Figures, String) {
    let mut args = vec!["--delay-ms", "20"];
    args.extend_from_slice(origin_args);
    let origin = Origin::with_data(&args);
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
    let (mut last, mut checked) = (Vec::new(), Vec::new());
    for (epoch, requests) in epochs.iter().enumerate() {
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
                if check == Check::AfterFirstEpoch && epoch > 0 {
                    checked.push((body.clone(), answer.clone()));
                }
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
    // The answers checked equal the origin's own.
    if check == Check::Sample {
        checked = last.into_iter().step_by(25).collect();
    }
    let direct = Arc::new(TestClient::http1());
    let origin_dir = Arc::new(Directory::fetch(&direct, &origin.directory_url()).await);
    for chunk in checked.chunks(CONCURRENCY) {
        let mut tasks = Vec::new();
        for (body, answer) in chunk {
            let (body, answer) = (body.clone(), answer.clone());
            let (direct, origin_dir, id) = (direct.clone(), origin_dir.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let expected = post_to(&direct, &origin_dir, &id, &body).await;
                assert_eq!(answer, expected.json(), "{body}");
            }));
        }
        for t in tasks {
            t.await.expect("check task");
        }
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
    (figures, shield.metrics().await)
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

#[tokio::test(flavor = "multi_thread")]
async fn auto_in_front_of_a_deviating_origin_switches_to_aggregate_and_answers_as_it_does() {
    let ecs = [("ecs.mode", "\"auto\""), ("ecs.auto_warmup", "50"), ("ecs.auto_sample", "0.01")];
    let (f, m) = run_against(&["--ecs-deviate"], &ecs, Check::AfterFirstEpoch).await;
    let ecs_id = "endpoint-cost";
    assert!(metric(&m, "altoshield_ecs_mismatches_total", &[("resource", ecs_id)]) >= 1.0);
    // Never trusted: no endpoint cost was synthesised; after the switch, pairs come from the
    // pair cache and the origin, and every answer after the first epoch was the origin's.
    let local = metric(&m, "altoshield_ecs_pairs_total", &[("resource", ecs_id), ("source", "local")]);
    assert_eq!(local, 0.0, "answers computed from the maps of a deviating origin");
    let cached = metric(&m, "altoshield_ecs_pairs_total", &[("resource", ecs_id), ("source", "cache")]);
    assert!(cached > 0.0, "the switch to aggregate did not happen");
    // Numerical requests now cost the origin only their new pairs; ordinal ones (a fifth, not
    // ranked locally without `ecs.rank_locally`) are forwarded whole.
    assert!(f.pairs < f.asked_pairs as f64 / 2.0, "{} origin pairs for {} asked", f.pairs, f.asked_pairs);
}
