//! End-to-end: request coalescing. A herd of identical requests on a cold cache, released
//! together by a barrier, reaches the origin exactly once (the origin's own counter says so),
//! and every client gets the same complete answer; requests that differ only in the order,
//! duplication or spelling of their endpoints are one request to the origin, and each client
//! gets its own spelling back.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Value};
use support::*;
use tokio::sync::Barrier;

/// How many h2 connections carry a herd: bounded, as a real herd of clients would be spread.
const CONNECTIONS: usize = 50;
const HERD: usize = 1000;

const REQUESTS: &str = "altoshield_requests_total";
const ORIGIN_REQUESTS: &str = "altoshield_origin_requests_total";
const WAIT_COUNT: &str = "altoshield_coalesced_wait_seconds_count";

async fn start(delay_ms: &str) -> (Origin, TestCert, Shield) {
    let origin =
        Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--delay-ms", delay_ms]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("ecs.mode", "forward"),
    )
    .await;
    (origin, cert, shield)
}

/// `CONNECTIONS` HTTP/2 clients, each with its connection already open (so that the herd
/// measures the shield, not TLS handshakes).
async fn warm_clients(cert: &TestCert, shield: &Shield) -> Vec<TestClient> {
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let c = TestClient::tls(Proto::Http2, cert);
        let r = c.get(&shield.directory_url(), None).await;
        assert_eq!(r.status, 200, "warm-up: {}", r.describe());
        clients.push(c);
    }
    clients
}

/// What one herd member got.
#[derive(Debug)]
struct Got {
    status: u16,
    body: bytes::Bytes,
    cache_status: Vec<String>,
}

/// Sends `requests[i]` (URL, content type or `None` for GET, body) for every i at once: each
/// task waits on one barrier, then sends over `clients[i % len]`.
async fn herd(
    clients: &[TestClient],
    accept: &str,
    requests: Vec<(String, Option<String>, Vec<u8>)>,
) -> Vec<Got> {
    let barrier = Arc::new(Barrier::new(requests.len()));
    let mut tasks = Vec::new();
    for (i, (url, ct, body)) in requests.into_iter().enumerate() {
        let client = clients[i % clients.len()].clone();
        let barrier = Arc::clone(&barrier);
        let accept = accept.to_string();
        tasks.push(tokio::spawn(async move {
            let mut headers = vec![("accept", accept.as_str())];
            if let Some(ct) = ct.as_deref() {
                headers.push(("content-type", ct));
            }
            let method = if ct.is_some() { http::Method::POST } else { http::Method::GET };
            barrier.wait().await;
            match client.try_request(method, &url, &headers, body).await {
                Ok(r) => Got {
                    status: r.status.as_u16(),
                    cache_status: cache_status(&r).unwrap_or_default(),
                    body: r.body,
                },
                Err(e) => {
                    Got { status: 0, body: bytes::Bytes::from(e.to_string()), cache_status: Vec::new() }
                }
            }
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("herd task"));
    }
    out
}

fn outcomes(before: &str, after: &str, resource: &str) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for outcome in label_values(after, REQUESTS, "outcome") {
        let d = metric(after, REQUESTS, &[("resource", resource), ("outcome", &outcome)])
            - metric(before, REQUESTS, &[("resource", resource), ("outcome", &outcome)]);
        if d != 0.0 {
            m.insert(outcome, d);
        }
    }
    m
}

/// The herd's answers: all 200 with one body, exactly one leader (`fwd=miss … stored`), the
/// rest collapsed onto it or served from what it stored; the shield's counters agree.
fn check_herd(got: &[Got], before: &str, after: &str, resource: &str, what: &str) {
    let failed: Vec<String> = got
        .iter()
        .filter(|g| g.status != 200)
        .take(5)
        .map(|g| format!("{} {}", g.status, String::from_utf8_lossy(&g.body[..g.body.len().min(200)])))
        .collect();
    assert!(failed.is_empty(), "{what}: some of the herd failed, e.g. {failed:?}");
    let bodies: BTreeSet<&[u8]> = got.iter().map(|g| g.body.as_ref()).collect();
    assert_eq!(bodies.len(), 1, "{what}: the herd got {} different bodies", bodies.len());
    let has = |g: &Got, p: &str| g.cache_status.iter().any(|x| x == p);
    let leaders = got.iter().filter(|g| has(g, "fwd=miss") && has(g, "stored")).count();
    let collapsed = got.iter().filter(|g| has(g, "collapsed")).count();
    let hits = got.iter().filter(|g| has(g, "hit")).count();
    assert_eq!(
        leaders, 1,
        "{what}: exactly one answer is the origin fetch (`fwd=miss; fwd-status=200; stored`)"
    );
    assert_eq!(
        leaders + collapsed + hits,
        got.len(),
        "{what}: every other answer is `fwd=miss; collapsed` or `hit`; Cache-Status values seen: {:?}",
        got.iter().map(|g| g.cache_status.join("; ")).collect::<BTreeSet<_>>()
    );
    assert!(collapsed > 0, "{what}: nobody waited on the leader's fetch (all {hits} others were hits)");
    let o = outcomes(before, after, resource);
    let want: BTreeMap<String, f64> = [("miss", leaders), ("coalesced", collapsed), ("hit", hits)]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n as f64))
        .collect();
    assert_eq!(
        o, want,
        "{what}: altoshield_requests_total deltas for {resource} vs the Cache-Status headers"
    );
    let origin_reqs = metric(after, ORIGIN_REQUESTS, &[("resource", resource)])
        - metric(before, ORIGIN_REQUESTS, &[("resource", resource)]);
    assert_eq!(origin_reqs, 1.0, "{what}: altoshield_origin_requests_total delta for {resource}");
    assert!(
        metric(after, WAIT_COUNT, &[]) >= metric(before, WAIT_COUNT, &[]) + collapsed as f64,
        "{what}: {WAIT_COUNT} did not count the {collapsed} waits ({} → {})",
        metric(before, WAIT_COUNT, &[]),
        metric(after, WAIT_COUNT, &[])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_identical_endpoint_cost_requests_reach_the_origin_once() {
    let (origin, cert, shield) = start("50").await;
    let clients = warm_clients(&cert, &shield).await;
    let dir = Directory::fetch(&clients[0], &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let body = serde_json::to_vec(&json!({"cost-type": cost_type("routingcost", "ordinal"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.2", "ipv4:10.0.0.3", "ipv6:2001:db8::1"]}}))
    .expect("json");
    let uri = dir.uri(&ecs);

    let origin_before = origin.served(&ecs).await;
    let before = shield.metrics().await;
    let requests =
        (0..HERD).map(|_| (uri.clone(), Some(ENDPOINT_COST_PARAMS.to_string()), body.clone())).collect();
    let got = herd(&clients, &accept_for(ENDPOINT_COST), requests).await;
    let after = shield.metrics().await;
    assert_eq!(
        origin.served(&ecs).await - origin_before,
        1.0,
        "the origin's ECS counter after a herd of {HERD}"
    );
    check_herd(&got, &before, &after, &ecs, "ECS herd");
    let v: Value = serde_json::from_slice(&got[0].body).expect("JSON");
    assert_eq!(v["endpoint-cost-map"]["ipv4:10.0.0.1"].as_object().map(|r| r.len()), Some(3), "{v}");
}

/// Purges GET resource `pick(dir)` from a ready shield, then sends it a herd of GETs.
async fn get_herd_after_purge(pick: fn(&Directory) -> String) {
    // A slow origin keeps the leader's fetch open while a loaded 2-core machine delivers the whole
    // herd, so that the herd really meets a fetch in flight.
    let (origin, cert, shield) = start("300").await;
    let clients = warm_clients(&cert, &shield).await;
    let dir = Directory::fetch(&clients[0], &shield.directory_url()).await;
    let id = pick(&dir);
    let media = dir.media_type(&id);
    // Fetched once, so that it is cached whatever the shield loads at start-up.
    let r = get_from(&clients[0], &dir, &id).await;
    assert_eq!(r.status, 200, "{id}: {}", r.describe());

    // Drop it to make the cache cold.
    let r = shield.purge(Some(&id)).await;
    assert_eq!(r.status, 200, "purge {id}: {}", r.describe());
    let purged = r.json()["purged"].as_u64().unwrap_or_else(|| panic!("purge answer {}", r.text()));
    assert!(
        purged >= 1,
        "{id} was cached (it was just served), yet `POST /cache/purge?resource={id}` purged {purged}"
    );

    let origin_before = origin.served(&id).await;
    let before = shield.metrics().await;
    let requests = (0..HERD).map(|_| (dir.uri(&id), None, Vec::new())).collect();
    let got = herd(&clients, &accept_for(&media), requests).await;
    let after = shield.metrics().await;
    assert_eq!(
        origin.served(&id).await - origin_before,
        1.0,
        "the origin's {id} counter after a herd of {HERD}"
    );
    // If the shield re-fetched the purged map by itself before the herd arrived, nobody is a
    // leader: accept that, but still demand a single origin request and one body.
    let leaders = got.iter().filter(|g| g.cache_status.iter().any(|p| p == "stored")).count();
    if leaders == 1 {
        check_herd(&got, &before, &after, &id, &format!("{id} herd"));
    } else {
        assert!(got.iter().all(|g| g.status == 200), "{id} herd: failures");
        let bodies: BTreeSet<&[u8]> = got.iter().map(|g| g.body.as_ref()).collect();
        assert_eq!(bodies.len(), 1);
    }
    let direct =
        TestClient::http1().get(&format!("{}{}", origin.base_url, path_of(&dir.uri(&id))), None).await;
    assert!(got[0].body == direct.body, "the herd got the origin's {id} byte for byte");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_gets_of_a_purged_cost_map_reach_the_origin_once() {
    get_herd_after_purge(|dir| dir.cost_map_for("routingcost", "numerical").expect("routingcost map")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_gets_of_a_purged_network_map_reach_the_origin_once() {
    get_herd_after_purge(|dir| dir.default_network_map()).await;
}

/// The canonical form of a typed address (`ipv6:2001:DB8::1` → `ipv6:2001:db8::1`).
fn canonical(addr: &str) -> String {
    let (kind, a) = addr.split_once(':').expect("typed address");
    let ip: IpAddr = a.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    format!("{}:{ip}", kind.to_ascii_lowercase())
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_differing_only_in_order_duplicates_or_spelling_share_one_origin_request() {
    let (origin, cert, shield) = start("100").await;
    let clients = warm_clients(&cert, &shield).await;
    let dir = Directory::fetch(&clients[0], &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let rc = cost_type("routingcost", "numerical");
    let variants: Vec<(Vec<&str>, Vec<&str>, Value)> = vec![
        (vec!["ipv4:10.0.0.1"], vec!["ipv4:10.0.0.2", "ipv6:2001:db8::1"], rc.clone()),
        (vec!["ipv4:10.0.0.1"], vec!["ipv6:2001:db8::1", "ipv4:10.0.0.2"], rc.clone()),
        (
            vec!["ipv4:10.0.0.1", "ipv4:10.0.0.1"],
            vec!["ipv4:10.0.0.2", "ipv6:2001:db8::1", "ipv4:10.0.0.2"],
            rc.clone(),
        ),
        (vec!["ipv4:10.0.0.1"], vec!["ipv6:2001:DB8::1", "ipv4:10.0.0.2"], rc.clone()),
        (vec!["ipv4:10.0.0.1"], vec!["ipv4:10.0.0.2", "ipv6:2001:db8:0:0:0:0:0:1"], rc.clone()),
        (vec!["IPv4:10.0.0.1"], vec!["ipv6:2001:0db8::0001", "ipv4:10.0.0.2"], rc.clone()),
        (
            vec!["ipv4:10.0.0.1"],
            vec!["ipv4:10.0.0.2", "ipv6:2001:db8::1"],
            json!({"cost-metric": "routingcost", "cost-mode": "numerical", "description": "ignored by the server"}),
        ),
    ];
    let per_variant = 30;
    let mut requests = Vec::new();
    let mut which = Vec::new();
    for _ in 0..per_variant {
        for (i, (srcs, dsts, ct)) in variants.iter().enumerate() {
            let body = json!({"cost-type": ct, "endpoints": {"srcs": srcs, "dsts": dsts}});
            requests.push((
                dir.uri(&ecs),
                Some(ENDPOINT_COST_PARAMS.to_string()),
                serde_json::to_vec(&body).expect("json"),
            ));
            which.push(i);
        }
    }
    let origin_before = origin.served(&ecs).await;
    let got = herd(&clients, &accept_for(ENDPOINT_COST), requests).await;
    assert_eq!(
        origin.served(&ecs).await - origin_before,
        1.0,
        "{} requests in {} spellings of one query: the origin's ECS counter",
        got.len(),
        variants.len()
    );

    let mut canonical_answer: Option<BTreeMap<(String, String), Value>> = None;
    for (g, i) in got.iter().zip(which) {
        let (srcs, dsts, _) = &variants[i];
        assert_eq!(g.status, 200, "variant {i}: {}", String::from_utf8_lossy(&g.body));
        let v: Value = serde_json::from_slice(&g.body).expect("JSON answer");
        let map = v["endpoint-cost-map"].as_object().unwrap_or_else(|| panic!("variant {i}: {v}"));
        let want_srcs: BTreeSet<String> = srcs.iter().map(|s| s.to_string()).collect();
        let got_srcs: BTreeSet<String> = map.keys().cloned().collect();
        assert_eq!(
            got_srcs, want_srcs,
            "variant {i}: the answer's sources are keyed by the client's own spelling"
        );
        let want_dsts: BTreeSet<String> = dsts.iter().map(|s| s.to_string()).collect();
        let mut costs = BTreeMap::new();
        for (s, row) in map {
            let row = row.as_object().expect("row");
            let got_dsts: BTreeSet<String> = row.keys().cloned().collect();
            assert_eq!(got_dsts, want_dsts, "variant {i}: destinations of {s} in the client's own spelling");
            for (d, c) in row {
                costs.insert((canonical(s), canonical(d)), normalize_numbers(c));
            }
        }
        match &canonical_answer {
            None => canonical_answer = Some(costs),
            Some(first) => assert_eq!(&costs, first, "variant {i}: the same costs as every other spelling"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_are_part_of_the_key_and_passed_on() {
    let (origin, cert, shield) = start("0").await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let base = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.2"]}});
    let with = |v: Value| {
        let mut b = base.clone();
        b["x-extension"] = v;
        b
    };
    let before = origin.served(&ecs).await;
    for (body, new) in [
        (base.clone(), true),
        (with(json!(1)), true),
        (with(json!(2)), true),
        (with(json!(1)), false),
        (base.clone(), false),
    ] {
        let r = post_to(&client, &dir, &ecs, &body).await;
        assert_eq!(r.status, 200, "{body}: {}", r.describe());
        assert_eq!(
            cache_status_has(&r, "fwd=miss"),
            new,
            "{body}: Cache-Status `{}`: an unknown field is kept in the key",
            r.header_all("cache-status")
        );
    }
    assert_eq!(origin.served(&ecs).await - before, 3.0, "three distinct queries reached the origin");
}

/// Pingora's "dangling leader": the client whose request started the origin fetch goes away
/// while others wait on that fetch. The others still get their answer.
#[tokio::test(flavor = "multi_thread")]
async fn waiters_still_get_their_answer_when_the_leading_client_disconnects() {
    let (origin, cert, shield) = start("600").await;
    let clients = warm_clients(&cert, &shield).await;
    let dir = Directory::fetch(&clients[0], &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let body = serde_json::to_vec(&json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.44"]}}))
    .expect("json");
    let before = origin.served(&ecs).await;

    // The leader: a raw TLS connection that sends the request and will be closed unanswered.
    let config =
        Arc::new(tls_client_config(std::slice::from_ref(&cert.cert_der), None, &[b"http/1.1".as_slice()]));
    let mut leader = tls_connect(shield.addr, None, b"", config).await.expect("TLS");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {ENDPOINT_COST_PARAMS}\r\nContent-Length: {}\r\n\r\n",
        path_of(&dir.uri(&ecs)),
        shield.addr,
        body.len()
    );
    use tokio::io::AsyncWriteExt;
    leader.write_all(head.as_bytes()).await.expect("write");
    leader.write_all(&body).await.expect("write");
    leader.flush().await.expect("flush");
    let reached = eventually(std::time::Duration::from_secs(5), || async {
        (origin.served(&ecs).await > before).then_some(())
    })
    .await;
    assert!(reached.is_some(), "the leader's request never reached the origin");

    // Followers join the fetch in flight.
    const FOLLOWERS: usize = 10;
    let mut tasks = Vec::new();
    for i in 0..FOLLOWERS {
        let (client, url, body) = (clients[i % clients.len()].clone(), dir.uri(&ecs), body.clone());
        tasks.push(tokio::spawn(async move {
            client
                .try_request(
                    http::Method::POST,
                    &url,
                    &[("content-type", ENDPOINT_COST_PARAMS), ("accept", ENDPOINT_COST)],
                    body,
                )
                .await
        }));
    }
    let joined = eventually(std::time::Duration::from_secs(5), || async {
        let m = shield.metrics().await;
        (metric(&m, "altoshield_in_flight_requests", &[]) >= (FOLLOWERS + 1) as f64).then_some(())
    })
    .await;
    assert!(joined.is_some(), "the followers never were in flight beside the leader");
    drop(leader); // the leading client goes away

    let mut bodies = BTreeSet::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(r) => {
                assert_eq!(r.status, 200, "a follower after the leader left: {}", r.describe());
                bodies.insert(r.body);
            }
            Err(e) => panic!("a follower got no answer after the leader left: {e}"),
        }
    }
    assert_eq!(bodies.len(), 1);
    let n = origin.served(&ecs).await - before;
    assert!(n <= 2.0, "the origin was asked {n} times for one query");
}
