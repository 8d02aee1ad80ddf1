//! End-to-end: endpoint costs above the exact cache (DESIGN §5), `ecs.mode = "synthesize"` and
//! `ecs.mode = "auto"`. Every answer through the shield equals (as JSON) the reference origin's
//! answer to the same request; synthesis and trusted `auto` cost the origin no endpoint-cost
//! request; `auto` in front of an origin whose endpoint costs deviate from its maps never answers
//! locally; `POST /ecs/reset` returns a resource to verification.

mod support;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::*;

const ECS_LABEL: &str = "endpoint-cost";
const LOCAL: &str = "altoshield; hit; detail=local";

/// Requests the rules allow to compute locally: numerical with and without constraints,
/// ordinal without, IPv4 and IPv6, non-canonical spellings, implicit source.
fn local_requests() -> Vec<Value> {
    let dsts = json!(["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv6:2001:DB8:C:1::5", "ipv4:8.8.8.8"]);
    vec![
        json!({"cost-type": cost_type("routingcost", "numerical"),
               "endpoints": {"srcs": ["ipv4:10.1.2.3", "ipv6:2001:db8:a::1"], "dsts": dsts.clone()}}),
        json!({"cost-type": cost_type("routingcost", "numerical"), "constraints": ["le 12", "ge 2"],
               "endpoints": {"srcs": ["ipv4:10.1.2.3", "ipv4:198.51.100.9"], "dsts": dsts.clone()}}),
        json!({"cost-type": cost_type("routingcost", "ordinal"),
               "endpoints": {"srcs": ["ipv4:10.1.2.3"], "dsts": dsts.clone()}}),
        json!({"cost-type": cost_type("hopcount", "ordinal"),
               "endpoints": {"srcs": ["ipv6:2001:0db8:000a:0000:0000:0000:0000:0001"],
                             "dsts": ["ipv6:2001:db8:b::7", "ipv6:2001:DB8:B:0::7", "ipv4:203.0.113.1"]}}),
        json!({"cost-type": cost_type("hopcount", "numerical"),
               "endpoints": {"dsts": ["ipv4:10.200.0.1", "ipv4:192.0.2.1", "ipv6:2001:db8:c::1"]}}),
        json!({"cost-type": cost_type("routingcost", "numerical"), "constraints": ["gt 1000"],
               "endpoints": {"srcs": ["ipv4:10.9.9.9"], "dsts": ["ipv4:192.0.2.5"]}}),
    ]
}

/// The same request sent through the shield and straight to the origin.
struct Setup {
    origin: Origin,
    shield: Shield,
    client: TestClient,
    direct: TestClient,
    dir: Directory,
    origin_dir: Directory,
    ecs: String,
}

async fn setup(origin_args: &[&str], ecs: &[(&str, &str)]) -> Setup {
    let origin = Origin::with_data(origin_args);
    let mut config = ShieldConfig::new(&origin.directory_url()).plain();
    for (k, v) in ecs {
        config = config.raw(k, v);
    }
    let shield = Shield::start_ready(&config).await;
    let client = TestClient::http1();
    let direct = TestClient::http1();
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let origin_dir = Directory::fetch(&direct, &origin.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    Setup { origin, shield, client, direct, dir, origin_dir, ecs }
}

impl Setup {
    /// Sends `body` through the shield, checks it equals the origin's answer, returns the
    /// shield's `Cache-Status`.
    async fn check(&self, body: &Value) -> String {
        let through = post_to(&self.client, &self.dir, &self.ecs, body).await;
        assert_eq!(through.status, 200, "{body}: {}", through.describe());
        let direct = post_to(&self.direct, &self.origin_dir, &self.ecs, body).await;
        assert_eq!(direct.status, 200, "{body}: {}", direct.describe());
        assert_eq!(through.json(), direct.json(), "{body}: the shield's answer differs from the origin's");
        through.header("cache-status").unwrap_or_default().to_string()
    }

    async fn served(&self) -> f64 {
        self.origin.served(ECS_LABEL).await
    }

    async fn admin_post(&self, path: &str) -> Response {
        TestClient::http1().request(Method::POST, &self.shield.admin(path), &[], Bytes::new()).await
    }

    async fn ecs_state(&self) -> String {
        let r = TestClient::http1().get(&self.shield.admin("/cache"), None).await;
        r.json()["ecs"][&self.ecs]["state"].as_str().unwrap_or_default().to_string()
    }
}

/// A request never sent before (a fresh source address each time).
fn fresh_request(i: u32) -> Value {
    json!({"cost-type": cost_type("routingcost", if i % 2 == 0 { "numerical" } else { "ordinal" }),
           "endpoints": {"srcs": [format!("ipv4:10.{}.{}.7", i / 200, i % 200)],
                         "dsts": ["ipv4:192.0.2.200", "ipv4:203.0.113.70", format!("ipv6:2001:db8:c::{i:x}")]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn synthesize_answers_equal_the_origins_without_origin_endpoint_cost_requests() {
    let s = setup(&[], &[("ecs.mode", "\"synthesize\"")]).await;
    let before = s.served().await;
    let requests = local_requests();
    for body in &requests {
        let status = s.check(body).await;
        assert_eq!(status, LOCAL, "{body}");
    }
    // Only the test's own direct requests reached the origin's endpoint-cost service.
    assert_eq!(s.served().await - before, requests.len() as f64);

    // Ordinal with constraints and requests with extension members are never computed locally.
    let before = s.served().await;
    let ordinal_constrained = json!({"cost-type": cost_type("routingcost", "ordinal"), "constraints": ["le 2"],
        "endpoints": {"srcs": ["ipv4:10.1.2.3"], "dsts": ["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv4:8.8.8.8"]}});
    let status = s.check(&ordinal_constrained).await;
    assert!(status.contains("fwd=miss"), "{status}");
    assert_eq!(s.served().await - before, 2.0, "one through the shield, one direct");

    let m = s.shield.metrics().await;
    let local = metric(&m, "altoshield_requests_total", &[("resource", &s.ecs), ("outcome", "local")]);
    assert_eq!(local, requests.len() as f64);
    let pairs = metric(&m, "altoshield_ecs_pairs_total", &[("resource", &s.ecs), ("source", "local")]);
    assert!(pairs >= requests.len() as f64, "{pairs}");
    let r = TestClient::http1().get(&s.shield.admin("/cache"), None).await;
    assert_eq!(r.json()["ecs"][&s.ecs]["mode"], "synthesize");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_is_the_default_and_forwards_during_warm_up() {
    let s = setup(&[], &[]).await;
    assert_eq!(s.ecs_state().await, "warmup");
    for body in local_requests() {
        let status = s.check(&body).await;
        assert!(status.contains("fwd=miss"), "{body}: {status}");
    }
    let r = TestClient::http1().get(&s.shield.admin("/cache"), None).await;
    assert_eq!(r.json()["ecs"][&s.ecs]["matched"], local_requests().len());
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_verifies_then_answers_locally_and_can_be_reset() {
    let s = setup(&[], &[("ecs.mode", "\"auto\""), ("ecs.auto_warmup", "5"), ("ecs.auto_sample", "0")]).await;
    assert_eq!(s.ecs_state().await, "warmup");
    // Warm-up: forwarded (the origin's answers), each compared.
    for i in 0..5 {
        let status = s.check(&fresh_request(i)).await;
        assert!(status.contains("fwd=miss"), "warm-up request {i}: {status}");
    }
    assert_eq!(s.ecs_state().await, "local");
    // Trusted: every request computed locally, zero origin endpoint-cost requests.
    let before = s.served().await;
    let requests = local_requests();
    for body in &requests {
        assert_eq!(s.check(body).await, LOCAL, "{body}");
    }
    for i in 100..110 {
        assert_eq!(s.check(&fresh_request(i)).await, LOCAL);
    }
    let direct_calls = requests.len() as f64 + 10.0;
    assert_eq!(s.served().await - before, direct_calls, "only the direct requests reached the origin");
    let m = s.shield.metrics().await;
    assert_eq!(metric(&m, "altoshield_ecs_mismatches_total", &[("resource", &s.ecs)]), 0.0);

    // Reset: back to warm-up, forwarding again.
    let r = s.admin_post(&format!("/ecs/reset?resource={}", s.ecs)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json(), json!({"reset": s.ecs}));
    assert_eq!(s.ecs_state().await, "warmup");
    let status = s.check(&fresh_request(500)).await;
    assert!(status.contains("fwd=miss"), "{status}");
    let r = s.admin_post("/ecs/reset?resource=no-such-resource").await;
    assert_eq!(r.status, 404, "{}", r.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_never_trusts_an_origin_whose_endpoint_costs_deviate() {
    let s = setup(
        &["--ecs-deviate"],
        &[("ecs.mode", "\"auto\""), ("ecs.auto_warmup", "5"), ("ecs.auto_sample", "0")],
    )
    .await;
    // The first comparison is a mismatch: the resource switches to aggregate (pairs from the
    // origin), never to synthesis.
    let status = s.check(&fresh_request(0)).await;
    assert!(status.contains("fwd=miss"), "{status}");
    assert_eq!(s.ecs_state().await, "aggregate");
    let mut bodies: Vec<Value> = (1..12).map(fresh_request).collect();
    bodies.extend(local_requests());
    for body in &bodies {
        s.check(body).await;
    }
    assert_eq!(s.ecs_state().await, "aggregate");
    let m = s.shield.metrics().await;
    assert!(metric(&m, "altoshield_ecs_mismatches_total", &[("resource", &s.ecs)]) >= 1.0);
    assert_eq!(metric(&m, "altoshield_ecs_pairs_total", &[("resource", &s.ecs), ("source", "local")]), 0.0);
    // A reset verifies again, and the deviation is caught again.
    let r = s.admin_post(&format!("/ecs/reset?resource={}", s.ecs)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(s.ecs_state().await, "warmup");
    assert!(s.check(&fresh_request(900)).await.contains("fwd=miss"));
    assert_eq!(s.ecs_state().await, "aggregate");
}

const ORIGIN_PAIRS: &str = "altoshield_origin_ecs_pairs_total";

async fn origin_pairs(s: &Setup) -> f64 {
    metric(&s.origin.metrics().await, ORIGIN_PAIRS, &[("resource", ECS_LABEL)])
}

fn numerical(srcs: &[&str], dsts: &[&str]) -> Value {
    json!({"cost-type": cost_type("routingcost", "numerical"), "endpoints": {"srcs": srcs, "dsts": dsts}})
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_asks_the_origin_only_for_missing_pairs() {
    for deviate in [false, true] {
        let args: &[&str] = if deviate { &["--ecs-deviate"] } else { &[] };
        let s = setup(args, &[("ecs.mode", "\"aggregate\""), ("ecs.rank_locally", "true")]).await;
        // Each request is checked against the origin directly, which costs the origin its pairs
        // too: measure the shield's share as the total minus the direct requests' pairs.
        let mut direct_pairs = 0.0;
        let before = origin_pairs(&s).await;
        direct_pairs += 3.0;
        let a = numerical(&["ipv4:10.1.2.3"], &["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv4:8.8.8.8"]);
        assert!(s.check(&a).await.contains("detail=aggregated"));
        assert_eq!(origin_pairs(&s).await - before - direct_pairs, 3.0, "deviate={deviate}");
        // Two of three pairs cached (one spelled differently): one pair from the origin.
        direct_pairs += 3.0;
        let b = numerical(&["ipv4:10.1.2.3"], &["ipv4:203.0.113.70", "ipv4:8.8.8.8", "ipv6:2001:DB8:C::1"]);
        assert!(s.check(&b).await.contains("detail=aggregated"));
        assert_eq!(origin_pairs(&s).await - before - direct_pairs, 4.0, "deviate={deviate}");
        // Every pair cached: local, with constraints and ordinal (rank_locally) too.
        direct_pairs += 2.0;
        let c = numerical(&["ipv4:10.1.2.3"], &["ipv6:2001:db8:c:0::1", "ipv4:192.0.2.200"]);
        assert_eq!(s.check(&c).await, LOCAL);
        let mut d = numerical(&["ipv4:10.1.2.3"], &["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv4:8.8.8.8"]);
        d["constraints"] = json!(["le 10"]);
        direct_pairs += 3.0;
        let d = d;
        assert_eq!(s.check(&d).await, LOCAL);
        let mut e = numerical(&["ipv4:10.1.2.3"], &["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv4:8.8.8.8"]);
        e["cost-type"] = cost_type("routingcost", "ordinal");
        direct_pairs += 3.0;
        let e = e;
        assert_eq!(s.check(&e).await, LOCAL);
        assert_eq!(origin_pairs(&s).await - before - direct_pairs, 4.0, "deviate={deviate}");
        // Ordinal with constraints: forwarded as is.
        let mut f = e.clone();
        f["constraints"] = json!(["le 1"]);
        direct_pairs += 3.0;
        let f = f;
        assert!(s.check(&f).await.contains("fwd=miss"));
        assert_eq!(origin_pairs(&s).await - before - direct_pairs, 7.0, "deviate={deviate}");
        for body in local_requests() {
            s.check(&body).await;
        }
        let m = s.shield.metrics().await;
        assert!(
            metric(&m, "altoshield_ecs_pairs_total", &[("resource", &s.ecs), ("source", "cache")]) >= 8.0
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregate_a_cold_herd_costs_each_pair_once() {
    let s = setup(&[], &[("ecs.mode", "\"aggregate\"")]).await;
    let dsts: Vec<String> = (1..=20).map(|i| format!("ipv4:203.0.113.{i}")).collect();
    let dsts: Vec<&str> = dsts.iter().map(String::as_str).collect();
    let before = origin_pairs(&s).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        // Overlapping candidate sets of one source: pairs shared between requests.
        let body = numerical(&["ipv4:10.1.2.3"], &dsts[(i % 10)..(i % 10) + 10]);
        let (client, dir, ecs) = (TestClient::http1(), s.dir.clone(), s.ecs.clone());
        tasks.push(tokio::spawn(async move {
            let r = post_to(&client, &dir, &ecs, &body).await;
            (body, r.status, r.json())
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    let computed = origin_pairs(&s).await - before;
    // Windows [k, k + 10) for k in 0..10 cover 19 distinct destinations.
    assert_eq!(computed, 19.0, "each distinct pair computed once by the origin");
    for (body, status, answer) in answers {
        assert_eq!(status, 200);
        let direct = post_to(&s.direct, &s.origin_dir, &s.ecs, &body).await;
        assert_eq!(answer, direct.json(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_mode_never_answers_endpoint_costs_locally() {
    let s = setup(&[], &[("ecs.mode", "\"forward\"")]).await;
    for body in local_requests() {
        let status = s.check(&body).await;
        assert!(status.contains("fwd=miss"), "{body}: {status}");
    }
}

/// A merged origin request the origin refuses is retried per client: the origin here computes at
/// most 4 pairs per request, the clients ask for 2 each (one asks for 5), `ecs.merge_waste = 4`
/// lets their misses merge (4 clients × 2 destinations = 32 pairs computed for 8 needed), and a
/// 100 ms `ecs.merge_window` makes them leave together. Every client asking for 2 pairs gets the
/// origin's answer; the one asking for 5 gets the origin's own refusal.
#[tokio::test(flavor = "multi_thread")]
async fn aggregate_retries_a_refused_merged_request_per_client() {
    let s = setup(
        &["--max-ecs-pairs", "4", "--delay-ms", "50"],
        &[("ecs.mode", "\"aggregate\""), ("ecs.merge_waste", "4"), ("ecs.merge_window", "\"100ms\"")],
    )
    .await;
    const CLIENTS: usize = 12;
    let bad = 5;
    let bodies: Vec<Value> = (0..CLIENTS)
        .map(|i| {
            let dsts: Vec<String> = if i == bad {
                (0..5).map(|k| format!("ipv4:203.0.113.{}", 100 + k)).collect()
            } else {
                vec![format!("ipv4:192.0.2.{}", 10 + i), format!("ipv4:203.0.113.{}", 10 + i)]
            };
            json!({"cost-type": cost_type("routingcost", "numerical"),
                   "endpoints": {"srcs": [format!("ipv4:10.1.{i}.1")], "dsts": dsts}})
        })
        .collect();
    // Connected first, then released together, so their misses meet in one merge window.
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for body in bodies {
        let (dir, ecs, gate, url) = (s.dir.clone(), s.ecs.clone(), gate.clone(), s.shield.directory_url());
        tasks.push(tokio::spawn(async move {
            let client = TestClient::http1();
            assert_eq!(client.get(&url, None).await.status, 200);
            gate.wait().await;
            let r = post_to(&client, &dir, &ecs, &body).await;
            (body, r)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    for (i, (body, through)) in answers.iter().enumerate() {
        let direct = post_to(&s.direct, &s.origin_dir, &s.ecs, body).await;
        if i == bad {
            assert_eq!(direct.status, 400, "{body}: the origin refuses 5 pairs: {}", direct.describe());
        } else {
            assert_eq!(through.status, 200, "{body}: {}", through.describe());
            // Its pairs came from the retried pair fetch, not from forwarding the request as is.
            let status = through.header("cache-status").unwrap_or_default();
            assert!(status.contains("detail=aggregated"), "{body}: {status}");
        }
        assert_eq!(through.status, direct.status, "{body}: {}", through.describe());
        assert_eq!(through.json(), direct.json(), "{body}");
    }
    // Some origin requests carried several clients' misses (and were refused: more than 4 pairs).
    let m = s.shield.metrics().await;
    let per = "altoshield_ecs_clients_per_origin_request";
    let (fetches, clients) =
        (metric(&m, &format!("{per}_count"), &[]), metric(&m, &format!("{per}_sum"), &[]));
    assert!(clients > fetches, "no merged origin request: {fetches} requests for {clients} clients");
    let refused = metric(&m, "altoshield_origin_requests_total", &[("resource", &s.ecs), ("status", "400")]);
    assert!(refused >= 2.0, "the merged request and the 5-pair client's were refused: {refused}");
    // The first misses waited for the window before leaving.
    let waited = metric(&m, "altoshield_ecs_merge_wait_seconds_sum", &[]);
    assert!(waited >= 0.1, "merge wait {waited} s");
}
