//! End-to-end: answers computed locally from cached maps (DESIGN §5, "local filtering").
//! Filtered network maps, filtered cost maps (numerical constraints, ordinal re-ranked) and
//! endpoint `pid` lookups equal the origin's answers and, once the full maps are cached, cost the
//! origin nothing; what must not be computed locally (ordinal with constraints, other properties)
//! still goes to the origin.

mod support;

use serde_json::{json, Value};
use support::*;

const SERVED: &str = "altoshield_origin_served_total";

fn served(text: &str, resource: &str) -> f64 {
    metric(text, SERVED, &[("resource", resource)])
}

#[tokio::test(flavor = "multi_thread")]
async fn filtered_maps_and_pid_lookups_are_computed_locally_and_equal_the_origin() {
    let origin = Origin::with_data(&[]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&cert)).await;
    let client = TestClient::tls(Proto::Http2, &cert);
    let direct = TestClient::http1();
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let origin_dir = Directory::fetch(&direct, &origin.directory_url()).await;
    let fcm = dir.find_one(COST_MAP, Some(COST_MAP_FILTER));
    let fnm = dir.find_one(NETWORK_MAP, Some(NETWORK_MAP_FILTER));
    let eps = dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS));
    let pid_prop = format!("{}.pid", dir.default_network_map());

    let local_requests: Vec<(&str, Value)> = vec![
        (&fcm, json!({"cost-type": cost_type("routingcost", "numerical")})),
        (
            &fcm,
            json!({"cost-type": cost_type("routingcost", "numerical"), "constraints": ["le 12", "ge 2"],
            "pids": {"srcs": ["pid-a", "pid-b", "no-such-pid"], "dsts": []}}),
        ),
        (
            &fcm,
            json!({"cost-type": cost_type("routingcost", "ordinal"), "pids": {"srcs": ["pid-a"], "dsts": ["pid-c", "pid-c-edge", "pid-b"]}}),
        ),
        (&fcm, json!({"cost-type": cost_type("hopcount", "ordinal")})),
        (&fcm, json!({"cost-type": cost_type("hopcount", "numerical"), "constraints": ["eq 4"]})),
        (&fnm, json!({"pids": ["pid-a", "pid-c-edge", "unknown"]})),
        (&fnm, json!({"pids": [], "address-types": ["ipv6"]})),
        (
            &eps,
            json!({"properties": [pid_prop.clone()], "endpoints": ["ipv4:10.1.2.3", "ipv4:192.0.2.200", "ipv6:2001:DB8:C:1::5", "ipv4:8.8.8.8"]}),
        ),
    ];
    // Warm up once: the first filtered cost-map request per metric fetches the full map.
    for (id, body) in &local_requests {
        let r = post_to(&client, &dir, id, body).await;
        assert_eq!(r.status, 200, "{id} {body}: {}", r.describe());
    }
    let before = origin.metrics().await;
    for (id, body) in &local_requests {
        let through = post_to(&client, &dir, id, body).await;
        assert_eq!(through.status, 200, "{id} {body}: {}", through.describe());
        let status = through.header("cache-status").unwrap_or_default().to_string();
        assert!(status.contains("hit"), "{id} {body}: Cache-Status {status}");
        let direct_answer = post_to(&direct, &origin_dir, id, body).await;
        assert_eq!(
            through.json(),
            direct_answer.json(),
            "{id} {body}: the shield's answer differs from the origin's"
        );
    }
    let after = origin.metrics().await;
    for id in [&fcm, &fnm, &eps] {
        let by_shield = served(&after, id) - served(&before, id);
        let direct_calls = local_requests.iter().filter(|(r, _)| r == id).count() as f64;
        assert_eq!(by_shield, direct_calls, "{id}: only the test's own direct requests reached the origin");
    }

    // A new request of each kind, never seen: computed locally, zero origin requests.
    let before = origin.metrics().await;
    for (id, body) in [
        (
            &fcm,
            json!({"cost-type": cost_type("routingcost", "ordinal"), "pids": {"srcs": ["pid-b-host"], "dsts": []}}),
        ),
        (&eps, json!({"properties": [pid_prop.clone()], "endpoints": ["ipv4:203.0.113.70"]})),
        (&fnm, json!({"pids": ["default"]})),
    ] {
        let r = post_to(&client, &dir, id, &body).await;
        assert_eq!(r.status, 200, "{id} {body}: {}", r.describe());
        assert_eq!(r.header("cache-status"), Some("altoshield; hit; detail=local"), "{id} {body}");
    }
    let after = origin.metrics().await;
    for id in [&fcm, &fnm, &eps] {
        assert_eq!(served(&after, id), served(&before, id), "{id}: a local answer reached the origin");
    }
    let m = shield.metrics().await;
    assert!(metric(&m, "altoshield_requests_total", &[("resource", &fcm), ("outcome", "local")]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ordinal_constraints_and_other_properties_still_reach_the_origin() {
    let origin = Origin::with_data(&[]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&cert)).await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let fcm = dir.find_one(COST_MAP, Some(COST_MAP_FILTER));
    let eps = dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS));
    let before = origin.metrics().await;
    let r = post_to(
        &client,
        &dir,
        &fcm,
        &json!({"cost-type": cost_type("routingcost", "ordinal"), "constraints": ["le 2"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.header("cache-status").unwrap_or_default().contains("fwd=miss"), "{}", r.describe());
    let r =
        post_to(&client, &dir, &eps, &json!({"properties": ["priv:region"], "endpoints": ["ipv4:10.1.2.3"]}))
            .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(r.json()["endpoint-properties"]["ipv4:10.1.2.3"]["priv:region"], "north-core");
    let after = origin.metrics().await;
    assert_eq!(served(&after, &fcm) - served(&before, &fcm), 1.0);
    assert_eq!(served(&after, &eps) - served(&before, &eps), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_in_srcs_and_dsts_keeps_each_spelling_in_every_mode() {
    let origin = Origin::with_data(&[]);
    let direct = TestClient::http1();
    let origin_dir = Directory::fetch(&direct, &origin.directory_url()).await;
    let body = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv6:2001:db8:a::1", "ipv4:10.1.2.3"], "dsts": ["ipv6:2001:DB8:A::1", "IPv4:10.1.2.3", "ipv4:192.0.2.5"]}});
    let ecs = origin_dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let want = post_to(&direct, &origin_dir, &ecs, &body).await.json();
    for mode in ["forward", "synthesize", "aggregate"] {
        let shield =
            Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).plain().str("ecs.mode", mode))
                .await;
        let client = TestClient::http1();
        let dir = Directory::fetch(&client, &shield.directory_url()).await;
        for round in 0..2 {
            let r = post_to(&client, &dir, &ecs, &body).await;
            assert_eq!(r.status, 200, "{mode}: {}", r.describe());
            assert_eq!(r.json(), want, "{mode}, round {round}: keys must follow each list's own spelling");
        }
    }
}
