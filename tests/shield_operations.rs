//! End-to-end: the operator's view. `/metrics` counts exactly the outcomes and origin requests
//! a test caused; the admin routes answer as DESIGN §6 lists; SIGTERM under load lets the
//! requests in flight finish with 200 and the process exit 0.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};
use support::*;

const REQUESTS: &str = "altoshield_requests_total";
const ORIGIN_REQUESTS: &str = "altoshield_origin_requests_total";
const SERVED: &str = "altoshield_origin_served_total";

/// Every (resource, outcome) series of `altoshield_requests_total` that moved.
fn request_deltas(before: &str, after: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for s in parse_samples(after).into_iter().filter(|s| s.name == REQUESTS) {
        let get = |k: &str| s.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let (resource, outcome) = (get("resource"), get("outcome"));
        let d = s.value - metric(before, REQUESTS, &[("resource", &resource), ("outcome", &outcome)]);
        if d != 0.0 {
            *out.entry((resource, outcome)).or_insert(0.0) += d;
        }
    }
    out
}

fn ecs_body(dst: &str) -> Value {
    json!({"cost-type": cost_type("routingcost", "numerical"), "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": [dst]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_admin_routes_show_exactly_what_happened() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("ecs.mode", "forward"),
    )
    .await;
    let client = TestClient::tls(Proto::Http2, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    // Make sure the network map is cached, so that its GETs below are hits.
    let r = get_from(&client, &dir, &net).await;
    assert_eq!(r.status, 200);

    let admin = TestClient::http1();
    let r = admin.get(&shield.admin("/healthz"), None).await;
    assert_eq!(r.status, 200, "/healthz: {}", r.describe());
    assert_eq!(shield.readyz().await, Some(200));

    let m0 = shield.metrics().await;
    let o0 = origin.metrics().await;
    // What the test causes:
    let a = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.2")).await; // miss
    let b = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.2")).await; // hit
    let c = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.3")).await; // miss
    let g1 = get_from(&client, &dir, &net).await; // hit
    let g2 = get_from(&client, &dir, &net).await; // hit
    let nf = client.get(&shield.url("/no-such-resource"), None).await; // rejected, unknown
    let bad = client.post(&dir.uri(&ecs), Some("text/plain"), None, "{}").await; // rejected, ecs
    for (r, want) in [(&a, 200), (&b, 200), (&c, 200), (&g1, 200), (&g2, 200), (&nf, 404), (&bad, 415)] {
        assert_eq!(r.status.as_u16(), want, "{}", r.describe());
    }
    assert!(cache_status_has(&a, "fwd=miss") && cache_status_has(&c, "fwd=miss"), "misses");
    assert!(
        cache_status_has(&b, "hit") && cache_status_has(&g1, "hit") && cache_status_has(&g2, "hit"),
        "hits"
    );
    let m1 = shield.metrics().await;
    let o1 = origin.metrics().await;

    let want: BTreeMap<(String, String), f64> = [
        ((ecs.clone(), "miss".to_string()), 2.0),
        ((ecs.clone(), "hit".to_string()), 1.0),
        ((ecs.clone(), "rejected".to_string()), 1.0),
        ((net.clone(), "hit".to_string()), 2.0),
        (("unknown".to_string(), "rejected".to_string()), 1.0),
    ]
    .into_iter()
    .collect();
    assert_eq!(request_deltas(&m0, &m1), want, "altoshield_requests_total deltas");
    let d = |t1: &str, t0: &str, name: &str, labels: &[(&str, &str)]| {
        metric(t1, name, labels) - metric(t0, name, labels)
    };
    assert_eq!(
        d(&m1, &m0, ORIGIN_REQUESTS, &[("resource", &ecs), ("status", "200")]),
        2.0,
        "origin requests for {ecs}"
    );
    assert_eq!(
        d(&m1, &m0, ORIGIN_REQUESTS, &[]),
        d(&o1, &o0, SERVED, &[]),
        "the shield's origin requests = what the origin served"
    );
    assert_eq!(d(&o1, &o0, SERVED, &[("resource", &ecs)]), 2.0, "the origin's ECS counter");
    assert_eq!(d(&o1, &o0, SERVED, &[("resource", &net)]), 0.0, "the origin's network-map counter");
    assert_eq!(metric(&m1, "altoshield_in_flight_requests", &[]), 0.0, "nothing in flight at rest");
    let entries = metric(&m1, "altoshield_cache_entries", &[]);
    let bytes = metric(&m1, "altoshield_cache_bytes", &[]);
    assert!(entries >= 3.0, "cache entries: the network map and two ECS answers at least, got {entries}");
    assert!(bytes > 0.0, "cache bytes {bytes}");
    for name in
        ["altoshield_origin_request_duration_seconds_count", "altoshield_coalesced_wait_seconds_count"]
    {
        assert!(parse_samples(&m1).iter().any(|s| s.name == name), "{name} is exposed");
    }

    // /cache describes the store.
    let r = admin.get(&shield.admin("/cache"), None).await;
    assert_eq!(r.status, 200, "/cache: {}", r.describe());
    assert!(r.json().is_object(), "/cache is a JSON object: {}", r.text_prefix(300));

    // Purge: unknown resource 404; one resource; then its next request is a miss again.
    let r = shield.purge(Some("no-such-resource")).await;
    assert_eq!(r.status, 404, "purge of an unknown resource: {}", r.describe());
    let r = shield.purge(Some(&ecs)).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["purged"], json!(2), "purging {ecs} drops its two cached answers: {}", r.text());
    let before = origin.served(&ecs).await;
    let again = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.2")).await;
    assert!(cache_status_has(&again, "fwd=miss"), "after a purge: {}", again.header_all("cache-status"));
    assert_eq!(origin.served(&ecs).await - before, 1.0);
    let r = shield.purge(None).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.json()["purged"].as_u64().is_some_and(|n| n >= 1), "purge all: {}", r.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_requests_in_flight_and_exits_zero() {
    let origin =
        Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--delay-ms", "300"]);
    let cert = TestCert::new();
    let mut shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("ecs.mode", "forward"),
    )
    .await;
    let clients: Vec<TestClient> = (0..4).map(|_| TestClient::tls(Proto::Http2, &cert)).collect();
    let dir = Directory::fetch(&clients[0], &shield.directory_url()).await;
    for c in &clients {
        c.get(&shield.directory_url(), None).await;
    }
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    const N: usize = 20;
    let mut tasks = Vec::new();
    for i in 0..N {
        let (client, dir, ecs) = (clients[i % clients.len()].clone(), dir.clone(), ecs.clone());
        tasks.push(tokio::spawn(async move {
            let body = ecs_body(&format!("ipv4:10.0.3.{i}"));
            let url = dir.uri(&ecs);
            client
                .try_request(
                    Method::POST,
                    &url,
                    &[("content-type", ENDPOINT_COST_PARAMS), ("accept", &accept_for(ENDPOINT_COST))],
                    serde_json::to_vec(&body).expect("json"),
                )
                .await
        }));
    }
    // Wait until all of them are inside the shield (each waits ≥ 300 ms on the origin).
    let inside = eventually(Duration::from_secs(10), || async {
        let m = shield.metrics().await;
        (metric(&m, "altoshield_in_flight_requests", &[]) >= N as f64).then_some(())
    })
    .await;
    assert!(inside.is_some(), "the {N} requests never were in flight together");
    shield.process.signal("TERM");

    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.expect("task") {
            Ok(r) => assert_eq!(r.status, 200, "request {i} in flight at SIGTERM: {}", r.describe()),
            Err(e) => panic!("request {i} in flight at SIGTERM got no answer: {e}"),
        }
    }
    let status = tokio::task::block_in_place(|| shield.process.wait_exit(Duration::from_secs(15)));
    let status = status.unwrap_or_else(|| panic!("no exit within 15 s of SIGTERM (shutdown_grace 10 s)"));
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status:?}");
    // Stopped accepting: nothing listens on the data plane any more.
    let after = TestClient::tls(Proto::Http1, &cert).with_timeout(Duration::from_secs(3));
    assert!(after.try_request(Method::GET, &shield.directory_url(), &[], "").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_listener_off_loopback_requires_the_token_for_its_post_routes() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let cert = TestCert::new();
    let shield = Shield::start(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("admin.addr", "0.0.0.0:0")
            .str("admin.token", "s3cret-token"),
    );
    assert!(shield.admin_url.starts_with("http://0.0.0.0:"), "{}", shield.admin_url);
    let admin = format!("http://127.0.0.1:{}", shield.admin_addr.port());
    let client = TestClient::http1();
    let ready = eventually(READY_TIMEOUT, || async {
        let r = client.try_request(Method::GET, &format!("{admin}/readyz"), &[], "").await.ok()?;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(ready.is_some(), "not ready: {}", shield.process.stderr_text());
    let r = client.get(&format!("{admin}/metrics"), None).await;
    assert_eq!(r.status, 200, "GET /metrics needs no token: {}", r.describe());
    let purge = format!("{admin}/cache/purge");
    for auth in [None, Some("Bearer wrong"), Some("s3cret-token"), Some("Basic czNjcmV0LXRva2Vu")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let r = client.request(Method::POST, &purge, &headers, "").await;
        assert_eq!(r.status, 401, "POST /cache/purge with Authorization {auth:?}: {}", r.describe());
    }
    let r = client.request(Method::POST, &purge, &[("authorization", "Bearer s3cret-token")], "").await;
    assert_eq!(r.status, 200, "with the token: {}", r.describe());
    assert!(r.json()["purged"].is_u64());
}
