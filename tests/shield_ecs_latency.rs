//! Latency of the endpoint-cost levels, measured end to end on loopback (ignored by default:
//! run `cargo test --release --test shield_ecs_latency -- --ignored --nocapture`): an exact-cache
//! hit, an answer assembled entirely from the pair cache, a synthesized answer, and a lone miss
//! in `aggregate` against one in `forward` (no batching delay beyond the origin's latency).

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const ROUNDS: usize = 300;

fn body(src: &str) -> Value {
    json!({"cost-type": cost_type("routingcost", "numerical"),
           "endpoints": {"srcs": [src], "dsts": ["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv6:2001:db8:c::1",
                                                 "ipv4:8.8.8.8", "ipv4:198.51.100.7", "ipv4:10.1.2.3"]}})
}

async fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Median time of `ROUNDS` requests made by `make(i)`, after one warm-up request each.
async fn measure(mode: &str, make: impl Fn(usize) -> Value, warm: bool) -> Duration {
    let origin = Origin::with_data(&[]);
    let config = ShieldConfig::new(&origin.directory_url()).plain().raw("ecs.mode", &format!("\"{mode}\""));
    let shield = Shield::start_ready(&config).await;
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let id = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    // The cost map (synthesis) and a first pair fetch (aggregate) out of the way.
    let r = post_to(&client, &dir, &id, &body("ipv4:10.9.9.9")).await;
    assert_eq!(r.status, 200);
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let b = make(i);
        if warm {
            assert_eq!(post_to(&client, &dir, &id, &b).await.status, 200);
        }
        let started = Instant::now();
        let r = post_to(&client, &dir, &id, &b).await;
        samples.push(started.elapsed());
        assert_eq!(r.status, 200);
    }
    median(samples).await
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement: run explicitly, in release mode"]
async fn endpoint_cost_latency_by_level() {
    let same = |_: usize| body("ipv4:10.1.2.3");
    let exact_hit = measure("forward", same, true).await;
    // The same pairs every time, asked in a different order: no exact-cache entry, all pairs cached.
    let from_pairs = measure(
        "aggregate",
        |i| {
            let mut b = body("ipv4:10.1.2.3");
            let dsts = b["endpoints"]["dsts"].as_array_mut().expect("dsts");
            dsts.rotate_left(i % 6);
            b
        },
        true,
    )
    .await;
    let synthesized =
        measure("synthesize", |i| body(&format!("ipv4:10.{}.{}.1", i / 250, i % 250)), false).await;
    let miss_forward =
        measure("forward", |i| body(&format!("ipv4:10.{}.{}.1", i / 250, i % 250)), false).await;
    let miss_aggregate =
        measure("aggregate", |i| body(&format!("ipv4:10.{}.{}.1", i / 250, i % 250)), false).await;
    eprintln!(
        "median latency: exact-cache hit {exact_hit:?}; all pairs from the pair cache {from_pairs:?}; \
         synthesized {synthesized:?}; lone miss forward {miss_forward:?}; lone miss aggregate {miss_aggregate:?}"
    );
}
