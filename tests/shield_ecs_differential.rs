//! Differential, end to end: random endpoint-cost request streams (numerical and ordinal, with
//! and without constraints, IPv4 and IPv6, differently spelled addresses, implicit sources,
//! overlapping candidate sets from concurrent clients) through the shield in every `ecs.mode`,
//! each answer compared (as JSON) with the reference origin's answer to the same request,
//! including across `POST /bump`: until the shield serves the new network-map version an answer
//! may equal the pre-bump or the post-bump origin answer, and only the post-bump one after.
//! Bounded case counts (seeded), so it stays a few seconds.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Deterministic pseudo-random numbers (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Addresses across the fixture's PIDs (and outside them), each with its spellings.
fn pool() -> Vec<Vec<String>> {
    let v4 = [
        "10.1.2.3",
        "10.200.0.9",
        "192.0.2.1",
        "192.0.2.200",
        "198.51.100.7",
        "198.51.100.200",
        "203.0.113.5",
        "203.0.113.70",
        "8.8.8.8",
        "127.0.0.1",
    ];
    let mut out: Vec<Vec<String>> = v4.iter().map(|a| vec![format!("ipv4:{a}")]).collect();
    for (short, long) in [
        ("2001:db8:a::1", "2001:0DB8:000A:0000:0000:0000:0000:0001"),
        ("2001:db8:b::7", "2001:DB8:B:0::7"),
        ("2001:db8:c::1", "2001:db8:c:0:0:0:0:1"),
        ("2001:db8:c:1::5", "2001:DB8:C:1::5"),
        ("2001:db8:ffff::1", "2001:DB8:FFFF::1"),
    ] {
        out.push(vec![format!("ipv6:{short}"), format!("ipv6:{long}")]);
    }
    out
}

fn random_request(rng: &mut Rng, pool: &[Vec<String>]) -> Value {
    let metric = ["routingcost", "hopcount"][rng.below(2)];
    let mode = if rng.below(3) == 0 { "ordinal" } else { "numerical" };
    // One spelling per address per request.
    let variant = rng.below(2);
    let pick = |rng: &mut Rng, n: usize| -> Vec<String> {
        let mut chosen: Vec<String> = Vec::new();
        for _ in 0..n {
            let a = &pool[rng.below(pool.len())];
            let s = a[variant.min(a.len() - 1)].clone();
            if !chosen.contains(&s) {
                chosen.push(s);
            }
        }
        chosen
    };
    let n_srcs = rng.below(3);
    let srcs = pick(rng, n_srcs);
    let n_dsts = 1 + rng.below(6);
    let dsts = pick(rng, n_dsts);
    let mut body = json!({"cost-type": cost_type(metric, mode), "endpoints": {"dsts": dsts}});
    if !srcs.is_empty() {
        body["endpoints"]["srcs"] = json!(srcs);
    }
    if rng.below(3) == 0 {
        let op = ["le", "ge", "lt", "gt", "eq"][rng.below(5)];
        let value = if mode == "ordinal" { 1 + rng.below(4) } else { rng.below(25) };
        let mut constraints = vec![format!("{op} {value}")];
        if rng.below(2) == 0 {
            constraints.push(format!("ge {}", rng.below(5)));
        }
        body["constraints"] = json!(constraints);
    }
    body
}

async fn network_map_tag(client: &TestClient, dir: &Directory) -> String {
    let net = dir.default_network_map();
    let r = get_from(client, dir, &net).await;
    r.json()["meta"]["vtag"]["tag"].as_str().unwrap_or_default().to_string()
}

async fn differential(ecs: &[(&str, &str)], seed: u64) {
    let origin = Origin::with_data(&[]);
    // Short freshness, so the shield picks the bumped network map up within a second or two.
    let mut config = ShieldConfig::new(&origin.directory_url())
        .plain()
        .str("cache.default_ttl", "1s")
        .str("cache.stale_while_revalidate", "1s");
    for (k, v) in ecs {
        config = config.raw(k, v);
    }
    let shield = Shield::start_ready(&config).await;
    let client = Arc::new(TestClient::http1());
    let direct = Arc::new(TestClient::http1());
    let dir = Arc::new(Directory::fetch(&client, &shield.directory_url()).await);
    let odir = Arc::new(Directory::fetch(&direct, &origin.directory_url()).await);
    let id = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let pool = pool();
    let mut rng = Rng(seed);
    let send = |body: Value| {
        let (client, dir, id) = (client.clone(), dir.clone(), id.clone());
        tokio::spawn(async move {
            let r = post_to(&client, &dir, &id, &body).await;
            (body, r.status, r.try_json().ok())
        })
    };

    // Before any bump: every answer equals the origin's.
    let mut kept = Vec::new();
    for _round in 0..8 {
        let tasks: Vec<_> = (0..8).map(|_| send(random_request(&mut rng, &pool))).collect();
        for t in tasks {
            let (body, status, answer) = t.await.expect("task");
            assert_eq!(status, 200, "{ecs:?} {body}");
            let expected = post_to(&direct, &odir, &id, &body).await;
            assert_eq!(answer, expected.try_json().ok(), "{ecs:?} {body}");
            kept.push((body, expected.json()));
        }
    }

    // Across a bump: the old or the new answer until the shield serves the new version.
    let r = direct.post(&origin.url("/bump"), None, None, "").await;
    assert_eq!(r.status, 200, "POST /bump: {}", r.describe());
    let new_tag = r.json()["network-map"]["tag"].as_str().unwrap_or_default().to_string();
    let mut post_bump = Vec::new();
    for (body, _) in &kept {
        post_bump.push(post_to(&direct, &odir, &id, body).await.json());
    }
    for ((body, before), after) in kept.iter().zip(&post_bump) {
        let r = post_to(&client, &dir, &id, body).await;
        assert_eq!(r.status, 200, "{ecs:?} {body}");
        let got = r.json();
        assert!(got == *before || got == *after, "{ecs:?} {body}: neither the old nor the new answer: {got}");
    }
    let switched = eventually(Duration::from_secs(15), || async {
        (network_map_tag(&client, &dir).await == new_tag).then_some(())
    })
    .await;
    assert!(switched.is_some(), "{ecs:?}: the shield did not serve version {new_tag}");
    for ((body, _), after) in kept.iter().zip(&post_bump) {
        let r = post_to(&client, &dir, &id, body).await;
        assert_eq!(r.json(), *after, "{ecs:?} {body}: after the switch only the new answer");
    }
    // New requests after the switch.
    for _ in 0..16 {
        let body = random_request(&mut rng, &pool);
        let got = post_to(&client, &dir, &id, &body).await;
        let expected = post_to(&direct, &odir, &id, &body).await;
        assert_eq!(got.try_json().ok(), expected.try_json().ok(), "{ecs:?} {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_equals_the_origin() {
    differential(&[("ecs.mode", "\"forward\"")], 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_equals_the_origin() {
    differential(&[("ecs.mode", "\"aggregate\"")], 2).await;
    differential(&[("ecs.mode", "\"aggregate\""), ("ecs.rank_locally", "true"), ("ecs.merge_waste", "4")], 3)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn synthesize_equals_the_origin() {
    differential(&[("ecs.mode", "\"synthesize\"")], 4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_equals_the_origin() {
    differential(&[("ecs.mode", "\"auto\""), ("ecs.auto_warmup", "3"), ("ecs.auto_sample", "0.2")], 5).await;
}
