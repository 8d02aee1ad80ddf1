//! End-to-end: origin failures. A dead origin: cached maps are served stale within
//! `stale_if_error`, then errors come fast. A hanging origin: 504 after `origin.timeout`. An
//! origin answering garbage: 502, and the garbage is never cached. An origin that is not up
//! when the shield starts: the shield becomes ready once it is.
//!
//! The hanging and lying origins sit behind a [`Relay`] that the shield knows as its origin,
//! so that the shield can first load a good IRD and then meet the fault.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{json, Value};
use support::*;

const GEN: [&str; 5] = ["--generate", "--pids", "20", "--prefixes-per-pid", "5"];

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_origin_means_stale_maps_within_stale_if_error_then_fast_errors() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("cache.default_ttl", "1s")
            .str("cache.stale_while_revalidate", "0s")
            .str("cache.stale_if_error", "3s")
            .str("origin.timeout", "1s")
            .str("origin.connect_timeout", "1s"),
    )
    .await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let good = get_from(&client, &dir, &net).await;
    assert_eq!(good.status, 200, "{}", good.describe());

    drop(origin); // killed and reaped
    let killed = Instant::now();
    let mut stale = Vec::new();
    let mut error = None;
    while killed.elapsed() < Duration::from_secs(20) {
        let sent = Instant::now();
        let r = get_from(&client, &dir, &net).await;
        let took = sent.elapsed();
        match r.status.as_u16() {
            200 => {
                assert!(r.body == good.body, "a map served while the origin is down is the last good copy");
                if cache_status_has(&r, "detail=stale") {
                    let ttl = cache_status_ttl(&r);
                    assert!(
                        cache_status_has(&r, "hit") && ttl.is_some_and(|t| t <= 0),
                        "stale answer: Cache-Status `{}` should be `altoshield; hit; ttl=-N; detail=stale`",
                        r.header_all("cache-status")
                    );
                    stale.push(killed.elapsed());
                }
            }
            502 | 504 => {
                error = Some((killed.elapsed(), took, r));
                break;
            }
            other => panic!("unexpected {other} while the origin is down: {}", r.describe()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!stale.is_empty(), "the cached network map was never served stale after the origin died");
    let (at, took, r) = error.expect("no 502/504 within 20 s of the origin's death (stale_if_error is 3 s)");
    assert!(took < Duration::from_secs(3), "the error after stale_if_error took {took:?}");
    alto_error(&r).unwrap_or_else(|m| panic!("the 5xx is an ALTO error: {m}"));
    // TTL 1 s + stale_if_error 3 s after the last fetch, which was no earlier than the kill
    // minus the test's set-up; generous slack for a debug build.
    assert!(at < Duration::from_secs(10), "stale answers went on for {at:?} after the origin died");
    // And it stays an error, still fast.
    let sent = Instant::now();
    let again = get_from(&client, &dir, &net).await;
    assert!(matches!(again.status.as_u16(), 502 | 504), "{}", again.describe());
    assert!(sent.elapsed() < Duration::from_secs(3));
}

/// A relay in front of two origins serving the same generated data (same flags, same bytes):
/// a good one, and one with `fault` flags. The shield's origin is the relay, which starts on
/// the good origin.
struct Faulty {
    relay: Relay,
    good: Origin,
    bad: Origin,
    cert: TestCert,
    shield: Shield,
}

async fn faulty(fault: &[&str]) -> Faulty {
    let relay = Relay::start().await;
    let public = relay.url("");
    let mut args: Vec<&str> = GEN.to_vec();
    args.extend(["--public-url", public.as_str()]);
    let good = Origin::start(&args);
    args.extend_from_slice(fault);
    let bad = Origin::start(&args);
    relay.switch(Some(good.addr));
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&relay.url("/directory"))
            .tls(&cert)
            .str("origin.timeout", "1s")
            .str("ecs.mode", "forward"),
    )
    .await;
    Faulty { relay, good, bad, cert, shield }
}

fn ecs_body(dst: &str) -> Value {
    json!({"cost-type": cost_type("routingcost", "numerical"), "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": [dst]}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_origin_gives_504_after_origin_timeout() {
    let f = faulty(&["--fault-hang", "1"]).await;
    let client = TestClient::tls(Proto::Http1, &f.cert);
    let dir = Directory::fetch(&client, &f.shield.directory_url()).await;
    let net = dir.default_network_map();
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let r = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.2")).await;
    assert_eq!(r.status, 200, "through the good origin: {}", r.describe());

    f.relay.switch(Some(f.bad.addr));
    let before = f.bad.served(&ecs).await;
    let sent = Instant::now();
    let r = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.3")).await;
    let took = sent.elapsed();
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "a hanging origin: {}", r.describe());
    alto_error(&r).unwrap_or_else(|m| panic!("the 504 is an ALTO error: {m}"));
    assert!(took < Duration::from_millis(2500), "504 after {took:?} with origin.timeout = 1s");
    assert!(f.bad.served(&ecs).await > before, "the request reached the hanging origin");
    let m = f.shield.metrics().await;
    assert!(
        metric(&m, "altoshield_origin_requests_total", &[("resource", &ecs), ("status", "timeout")]) >= 1.0,
        "altoshield_origin_requests_total{{status=\"timeout\"}}"
    );
    // Cached maps are still served, at once.
    let sent = Instant::now();
    let r = get_from(&client, &dir, &net).await;
    assert_eq!(r.status, 200, "a cached map while the origin hangs: {}", r.describe());
    assert!(sent.elapsed() < Duration::from_millis(900), "a cached map waited on the hanging origin");
    let _ = &f.good;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_origin_answer_is_a_502_and_is_never_cached() {
    let f = faulty(&["--fault-malformed", "1"]).await;
    let client = TestClient::tls(Proto::Http1, &f.cert);
    let dir = Directory::fetch(&client, &f.shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let body = ecs_body("ipv4:10.0.0.7");

    f.relay.switch(Some(f.bad.addr));
    let m0 = f.shield.metrics().await;
    for attempt in 1..=2 {
        let before = f.bad.served(&ecs).await;
        let r = post_to(&client, &dir, &ecs, &body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_GATEWAY,
            "attempt {attempt}, truncated origin answer: {}",
            r.describe()
        );
        alto_error(&r).unwrap_or_else(|m| panic!("the 502 is an ALTO error: {m}"));
        assert_eq!(
            f.bad.served(&ecs).await - before,
            1.0,
            "attempt {attempt}: the request went to the origin (nothing was cached from the bad answer)"
        );
    }
    let m1 = f.shield.metrics().await;
    let d = |name: &str, labels: &[(&str, &str)]| metric(&m1, name, labels) - metric(&m0, name, labels);
    assert_eq!(
        d("altoshield_origin_requests_total", &[("resource", &ecs), ("status", "invalid_response")]),
        2.0
    );
    assert_eq!(d("altoshield_requests_total", &[("resource", &ecs), ("outcome", "error")]), 2.0);

    // Back to a good origin: the same query is fetched and answered properly.
    f.relay.switch(Some(f.good.addr));
    let before = f.good.served(&ecs).await;
    let r = post_to(&client, &dir, &ecs, &body).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(r.json()["endpoint-cost-map"]["ipv4:10.0.0.1"]["ipv4:10.0.0.7"].is_number(), "{}", r.text());
    assert_eq!(f.good.served(&ecs).await - before, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shield_started_before_its_origin_becomes_ready_when_the_origin_comes_up() {
    let addr = unused_addr();
    let cert = TestCert::new();
    let shield = Shield::start(
        &ShieldConfig::new(&format!("http://{addr}/directory"))
            .tls(&cert)
            .str("origin.connect_timeout", "1s"),
    );
    let admin = TestClient::http1();
    let r = admin.get(&shield.admin("/healthz"), None).await;
    assert_eq!(r.status, 200, "/healthz while the origin is down: {}", r.describe());
    assert_eq!(shield.readyz().await, Some(503), "/readyz while the origin is down");
    let client = TestClient::tls(Proto::Http1, &cert);
    let r = client.try_request(http::Method::GET, &shield.directory_url(), &[], "").await;
    match r {
        Ok(r) => assert!(r.status.is_server_error(), "/directory before the IRD is loaded: {}", r.describe()),
        Err(e) => panic!("the shield must answer even before it is ready: {e}"),
    }

    let origin = Origin::start_on(addr, &GEN);
    shield.wait_ready().await;
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let r = get_from(&client, &dir, &net).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert!(origin.served(&net).await >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_by_the_origin_is_retried_once_then_502() {
    let f = faulty(&["--fault-drop", "1"]).await;
    let client = TestClient::tls(Proto::Http1, &f.cert);
    let dir = Directory::fetch(&client, &f.shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    f.relay.switch(Some(f.bad.addr));
    let before = f.bad.served(&ecs).await;
    let sent = Instant::now();
    let r = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.9")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "an origin that drops every connection: {}", r.describe());
    alto_error(&r).unwrap_or_else(|m| panic!("the 502 is an ALTO error: {m}"));
    assert!(sent.elapsed() < Duration::from_secs(3), "took {:?}", sent.elapsed());
    assert_eq!(
        f.bad.served(&ecs).await - before,
        2.0,
        "an ALTO POST whose connection broke before any answer byte is retried exactly once (DESIGN §4.7)"
    );
    let _ = &f.good;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_503_with_retry_after_is_passed_through_when_nothing_stale_exists() {
    let f = faulty(&["--fault-5xx", "1"]).await;
    let client = TestClient::tls(Proto::Http1, &f.cert);
    let dir = Directory::fetch(&client, &f.shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    f.relay.switch(Some(f.bad.addr));
    let before = f.bad.served(&ecs).await;
    let r = post_to(&client, &dir, &ecs, &ecs_body("ipv4:10.0.0.11")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "an origin answering 503: {}", r.describe());
    assert!(r.header("retry-after").is_some(), "the origin's Retry-After is passed through: {:?}", r.headers);
    alto_error(&r).unwrap_or_else(|m| panic!("the 503 is an ALTO error: {m}"));
    assert!(f.bad.served(&ecs).await > before);
    let m = f.shield.metrics().await;
    assert!(metric(&m, "altoshield_origin_requests_total", &[("resource", &ecs), ("status", "503")]) >= 1.0);
    let _ = &f.good;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_origin_alto_error_is_passed_through_unchanged() {
    let origin =
        Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--max-ecs-pairs", "4"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("ecs.mode", "forward"),
    )
    .await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let odir = Directory::fetch(&TestClient::http1(), &origin.directory_url()).await;
    // Valid for the shield, refused by this origin (6 pairs over its limit of 4).
    let body = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1", "ipv4:10.0.0.2"], "dsts": ["ipv4:10.0.0.3", "ipv4:10.0.0.4", "ipv4:10.0.0.5"]}});
    let direct = post_to(&TestClient::http1(), &odir, &ecs, &body).await;
    assert_eq!(direct.status, 400, "the origin itself refuses: {}", direct.describe());
    let before = origin.served(&ecs).await;
    let r = post_to(&client, &dir, &ecs, &body).await;
    assert_eq!(r.status, direct.status, "{}", r.describe());
    assert_eq!(r.media_type().as_deref(), Some(ALTO_ERROR));
    assert_eq!(r.json(), direct.json(), "the origin's ALTO error, unchanged");
    assert_eq!(origin.served(&ecs).await - before, 1.0);
}
