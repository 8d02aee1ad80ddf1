//! End-to-end: who gets in, and as whom. The allow-list (403), the in-flight limit (503 with
//! `Retry-After`), client certificates (no HTTP answer without one), certificates replaced on
//! disk (served to new connections without a restart, old connections kept), and the client's
//! real address from `X-Forwarded-For` or the PROXY protocol when, and only when, the peer is
//! a trusted proxy: it decides the allow-list and the implicit ECS source (RFC 7285 §11.5.1).
//!
//! Linux routes all of 127.0.0.0/8 to loopback, so a client bound to 127.0.0.2 is a second,
//! untrusted peer on the same machine.

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::*;
use tokio::sync::Barrier;

const GEN: [&str; 5] = ["--generate", "--pids", "20", "--prefixes-per-pid", "5"];
const UNTRUSTED: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test(flavor = "multi_thread")]
async fn a_client_outside_allow_gets_403_and_nothing_reaches_the_origin() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).list("listen.allow", &["10.0.0.0/8"]),
    )
    .await;
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;
    let before = origin.metrics().await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let r = client.get(&shield.directory_url(), None).await;
    assert_alto_error(&r, 403, "E_SYNTAX", "GET /directory from 127.0.0.1 outside 10.0.0.0/8");
    let ecs = odir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let body = sample_request(&odir, &ecs).expect("POST");
    let r = client.post_json(&odir.rebased_uri(&ecs, &shield.url), ENDPOINT_COST_PARAMS, None, &body).await;
    assert_alto_error(&r, 403, "E_SYNTAX", "POST ECS from outside the allow-list");
    let net = odir.default_network_map();
    let r = client.get(&odir.rebased_uri(&net, &shield.url), None).await;
    assert_eq!(r.status, 403, "{}", r.describe());
    let after = origin.metrics().await;
    for id in [ecs.as_str(), net.as_str()] {
        let served = |t: &str| metric(t, "altoshield_origin_served_total", &[("resource", id)]);
        assert_eq!(served(&after), served(&before), "{id}: a refused client's request reached the origin");
    }
    let m = shield.metrics().await;
    assert!(metric(&m, "altoshield_requests_total", &[("outcome", "rejected")]) >= 3.0, "rejections counted");
    // The admin listener is not subject to the data plane's allow-list.
    assert_eq!(shield.readyz().await, Some(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn over_max_in_flight_a_request_gets_503_with_retry_after() {
    let origin =
        Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--delay-ms", "500"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .raw("limits.max_in_flight", "1")
            .str("ecs.mode", "forward"),
    )
    .await;
    let clients = [TestClient::tls(Proto::Http1, &cert), TestClient::tls(Proto::Http1, &cert)];
    let dir = Directory::fetch(&clients[0], &shield.directory_url()).await;
    Directory::fetch(&clients[1], &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let barrier = Arc::new(Barrier::new(2));
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let (client, dir, ecs, barrier) = (client.clone(), dir.clone(), ecs.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            // Different queries: each needs the origin, so each stays in flight ≥ 500 ms.
            let body = json!({"cost-type": cost_type("routingcost", "numerical"),
                "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": [format!("ipv4:10.0.1.{i}")]}});
            barrier.wait().await;
            post_to(&client, &dir, &ecs, &body).await
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.expect("task"));
    }
    got.sort_by_key(|r| r.status);
    assert_eq!(
        got.iter().map(|r| r.status.as_u16()).collect::<Vec<_>>(),
        vec![200, 503],
        "two concurrent requests with max_in_flight = 1: {:?}",
        got.iter().map(|r| r.describe()).collect::<Vec<_>>()
    );
    let refused = &got[1];
    let retry = refused.header("retry-after").unwrap_or_else(|| panic!("503 without Retry-After"));
    assert!(retry.trim().parse::<u64>().is_ok(), "Retry-After `{retry}`");
    alto_error(refused).unwrap_or_else(|m| panic!("the 503 is an ALTO error: {m}"));
    // Once the first is done, the limit lets the next one in.
    let body = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.2.1"]}});
    let r = post_to(&clients[1], &dir, &ecs, &body).await;
    assert_eq!(r.status, 200, "{}", r.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_client_ca_only_clients_with_a_certificate_from_that_ca_get_an_answer() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let ca = TestCa::new("altoshield test client CA");
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).path("listen.client_ca", &ca.cert_path),
    )
    .await;

    for proto in [Proto::Http1, Proto::Http2] {
        let anonymous = TestClient::tls(proto, &cert).with_timeout(Duration::from_secs(5));
        match anonymous.try_request(Method::GET, &shield.directory_url(), &[], "").await {
            Ok(r) => panic!("{proto:?}: a client without a certificate got an HTTP answer: {}", r.describe()),
            Err(RequestError::Failed(_)) => {}
            Err(RequestError::Timeout) => {
                panic!("{proto:?}: a client without a certificate was left hanging")
            }
        }
        let stranger = TestClient::tls_with_identity(proto, &cert, &ClientIdentity::self_signed("stranger"))
            .with_timeout(Duration::from_secs(5));
        match stranger.try_request(Method::GET, &shield.directory_url(), &[], "").await {
            Ok(r) => panic!("{proto:?}: a certificate from another CA got an HTTP answer: {}", r.describe()),
            Err(RequestError::Failed(_)) => {}
            Err(RequestError::Timeout) => {
                panic!("{proto:?}: a client with a foreign certificate was left hanging")
            }
        }
        let member = TestClient::tls_with_identity(proto, &cert, &ca.issue_client("member"));
        let dir = Directory::fetch(&member, &shield.directory_url()).await;
        let r = get_from(&member, &dir, &dir.default_network_map()).await;
        assert_eq!(r.status, StatusCode::OK, "{proto:?}: a client certificate from the CA: {}", r.describe());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_replaced_on_disk_is_served_to_new_connections_without_a_restart() {
    let origin = Origin::start(&GEN);
    let old = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&old)).await;
    let roots_old = [old.cert_der.clone()];
    assert_eq!(presented_certificate(shield.addr, &roots_old).await.expect("TLS"), old.cert_der);
    // A connection opened before the change, trusting only the old certificate.
    let kept = TestClient::tls(Proto::Http2, &old);
    let r = kept.get(&shield.directory_url(), None).await;
    assert_eq!(r.status, 200);

    let new = TestCert::new();
    let new_key = std::fs::read(&new.key_path).expect("read new key");
    std::fs::write(&old.cert_path, &new.cert_pem).expect("overwrite cert");
    std::fs::write(&old.key_path, &new_key).expect("overwrite key");
    let roots = [old.cert_der.clone(), new.cert_der.clone()];
    let changed = eventually(Duration::from_secs(20), || async {
        match presented_certificate(shield.addr, &roots).await {
            Ok(c) if c == new.cert_der => Some(()),
            _ => None,
        }
    })
    .await;
    assert!(
        changed.is_some(),
        "new connections did not get the certificate written over the files within 20 s"
    );
    let fresh = TestClient::tls(Proto::Http1, &new);
    let r = fresh.get(&shield.directory_url(), None).await;
    assert_eq!(r.status, 200, "a client trusting only the new certificate: {}", r.describe());
    // The connection opened before is still served (it could not reconnect: it trusts only
    // the old certificate).
    let r = kept.get(&shield.directory_url(), None).await;
    assert_eq!(r.status, 200, "the connection opened before the change: {}", r.describe());
    assert!(shield.process.stderr_text().len() < 1_000_000);
}

/// An ECS query for the client's own address as source (`srcs` absent), or as destination
/// (`dsts` empty).
fn implicit(srcs_absent: bool) -> Value {
    let rc = cost_type("routingcost", "numerical");
    if srcs_absent {
        json!({"cost-type": rc, "endpoints": {"dsts": ["ipv4:10.0.0.2", "ipv6:2001:db8::1"]}})
    } else {
        json!({"cost-type": rc, "endpoints": {"srcs": ["ipv4:10.0.0.2"], "dsts": []}})
    }
}

/// The same query with `addr` written in, as the origin must see it.
fn explicit(srcs_absent: bool, addr: &str) -> Value {
    let rc = cost_type("routingcost", "numerical");
    if srcs_absent {
        json!({"cost-type": rc, "endpoints": {"srcs": [addr], "dsts": ["ipv4:10.0.0.2", "ipv6:2001:db8::1"]}})
    } else {
        json!({"cost-type": rc, "endpoints": {"srcs": ["ipv4:10.0.0.2"], "dsts": [addr]}})
    }
}

/// Asserts that an implicit-address answer is the origin's answer for `addr`, keyed by `addr`.
async fn assert_answered_for(
    r: &Response,
    srcs_absent: bool,
    addr: &str,
    origin: &Origin,
    odir: &Directory,
    ecs: &str,
    what: &str,
) {
    assert_eq!(r.status, 200, "{what}: {}", r.describe());
    let got = r.json();
    let direct = post_to(&TestClient::http1(), odir, ecs, &explicit(srcs_absent, addr)).await;
    assert_eq!(direct.status, 200, "{what}: the origin directly: {}", direct.describe());
    let want = direct.json();
    let map = &got["endpoint-cost-map"];
    if srcs_absent {
        let srcs: Vec<&String> = map.as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(srcs, vec![addr], "{what}: the implicit source is the client's address: {got}");
    } else {
        let dsts: Vec<&String> =
            map["ipv4:10.0.0.2"].as_object().map(|m| m.keys().collect()).unwrap_or_default();
        assert_eq!(dsts, vec![addr], "{what}: the implicit destination is the client's address: {got}");
    }
    assert_eq!(normalize_answer(&got), normalize_answer(&want), "{what}: the origin's answer for {addr}");
    let _ = origin;
}

#[tokio::test(flavor = "multi_thread")]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .list("listen.trusted_proxies", &["127.0.0.1/32"])
            .list("listen.allow", &["10.0.0.0/8", "127.0.0.0/8"])
            .str("ecs.mode", "forward"),
    )
    .await;
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;
    let trusted = TestClient::tls(Proto::Http1, &cert);
    let untrusted = TestClient::tls_from(Proto::Http1, &cert, UNTRUSTED);
    let dir = Directory::fetch(&trusted, &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let accept = accept_for(ENDPOINT_COST);
    let send = |client: &TestClient, xff: Option<&str>, body: &Value| {
        let mut headers =
            vec![("content-type", ENDPOINT_COST_PARAMS.to_string()), ("accept", accept.clone())];
        if let Some(x) = xff {
            headers.push(("x-forwarded-for", x.to_string()));
        }
        let (client, url, body) = (client.clone(), dir.uri(&ecs), serde_json::to_vec(body).expect("json"));
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.request(Method::POST, &url, &h, body).await
        }
    };

    for srcs_absent in [true, false] {
        let q = implicit(srcs_absent);
        let w = if srcs_absent { "srcs absent" } else { "dsts empty" };
        // No proxy header: the socket's address.
        let r = send(&trusted, None, &q).await;
        assert_answered_for(&r, srcs_absent, "ipv4:127.0.0.1", &origin, &odir, &ecs, &format!("{w}, no XFF"))
            .await;
        // A trusted proxy's X-Forwarded-For.
        let r = send(&trusted, Some("10.1.2.3"), &q).await;
        assert_answered_for(
            &r,
            srcs_absent,
            "ipv4:10.1.2.3",
            &origin,
            &odir,
            &ecs,
            &format!("{w}, trusted XFF"),
        )
        .await;
        // A chain: the proxy appended what it saw; the client's own claim on the left is not
        // trusted (walk from the right, skipping trusted proxies).
        let r = send(&trusted, Some("192.0.2.99, 10.4.5.6"), &q).await;
        assert_answered_for(
            &r,
            srcs_absent,
            "ipv4:10.4.5.6",
            &origin,
            &odir,
            &ecs,
            &format!("{w}, XFF chain"),
        )
        .await;
        // An untrusted peer's X-Forwarded-For is ignored.
        let r = send(&untrusted, Some("10.1.2.3"), &q).await;
        assert_answered_for(
            &r,
            srcs_absent,
            "ipv4:127.0.0.2",
            &origin,
            &odir,
            &ecs,
            &format!("{w}, untrusted XFF"),
        )
        .await;
    }

    // The allow-list judges the forwarded address from a trusted peer, the socket's otherwise.
    let q = sample_request(&dir, &ecs).expect("POST");
    let r = send(&trusted, Some("192.0.2.99"), &q).await;
    assert_alto_error(&r, 403, "E_SYNTAX", "trusted XFF outside the allow-list");
    let r = send(&trusted, Some("10.7.7.7"), &q).await;
    assert_eq!(r.status, 200, "trusted XFF inside the allow-list: {}", r.describe());
    let r = send(&untrusted, Some("192.0.2.99"), &q).await;
    assert_eq!(
        r.status,
        200,
        "an untrusted peer's XFF is ignored, and 127.0.0.2 is allowed: {}",
        r.describe()
    );
}

/// Sends one HTTP/1.1 POST over TLS on a fresh connection from `local`, after writing
/// `preamble` (a PROXY header) on the TCP stream.
async fn post_with_preamble(
    shield: &Shield,
    cert: &TestCert,
    local: Option<IpAddr>,
    preamble: &str,
    path: &str,
    body: &Value,
) -> Result<Response, String> {
    let config = Arc::new(tls_client_config(std::slice::from_ref(&cert.cert_der), None, &[b"http/1.1"]));
    let tls = tls_connect(shield.addr, local, preamble.as_bytes(), config).await?;
    let host = shield.addr.to_string();
    http1_over(
        tls,
        Method::POST,
        path,
        &[("host", &host), ("content-type", ENDPOINT_COST_PARAMS), ("accept", &accept_for(ENDPOINT_COST))],
        serde_json::to_vec(body).expect("json"),
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_protocol_header_counts_only_from_trusted_proxies() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .list("listen.trusted_proxies", &["127.0.0.1/32"])
            .list("listen.allow", &["10.0.0.0/8", "127.0.0.0/8"])
            .str("ecs.mode", "forward"),
    )
    .await;
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;
    let dir = Directory::fetch(&TestClient::tls(Proto::Http1, &cert), &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let path = path_of(&dir.uri(&ecs));
    let port = shield.addr.port();
    let header = |src: &str| format!("PROXY TCP4 {src} 127.0.0.1 40000 {port}\r\n");

    let q = implicit(true);
    let r = post_with_preamble(&shield, &cert, None, &header("10.1.2.3"), &path, &q)
        .await
        .expect("PROXY from a trusted peer");
    assert_answered_for(&r, true, "ipv4:10.1.2.3", &origin, &odir, &ecs, "PROXY from a trusted peer").await;
    let r = post_with_preamble(&shield, &cert, None, &header("192.0.2.99"), &path, &q).await.expect("answer");
    assert_alto_error(&r, 403, "E_SYNTAX", "PROXY source outside the allow-list");
    // A trusted peer may also connect directly, without the header.
    let r = post_with_preamble(&shield, &cert, None, "", &path, &q).await.expect("no PROXY header");
    assert_answered_for(&r, true, "ipv4:127.0.0.1", &origin, &odir, &ecs, "trusted peer without PROXY").await;
    // From an untrusted peer the header is not believed: the connection is refused, or the
    // answer is for the socket's address.
    match post_with_preamble(&shield, &cert, Some(UNTRUSTED), &header("10.1.2.3"), &path, &q).await {
        Err(_) => {}
        Ok(r) if r.status.is_client_error() => {}
        Ok(r) => {
            assert_answered_for(
                &r,
                true,
                "ipv4:127.0.0.2",
                &origin,
                &odir,
                &ecs,
                "PROXY from an untrusted peer",
            )
            .await
        }
    }
    // The shield is still serving.
    let r = post_with_preamble(&shield, &cert, Some(UNTRUSTED), "", &path, &q)
        .await
        .expect("untrusted, no header");
    assert_answered_for(&r, true, "ipv4:127.0.0.2", &origin, &odir, &ecs, "untrusted peer without PROXY")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn over_per_client_rps_a_client_gets_429_with_retry_after_and_others_do_not() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).raw("limits.per_client_rps", "5"),
    )
    .await;
    let busy = TestClient::tls(Proto::Http2, &cert);
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..40 {
        let r = busy.get(&shield.directory_url(), None).await;
        statuses.push(r.status.as_u16());
        if r.status == StatusCode::TOO_MANY_REQUESTS && refused.is_none() {
            refused = Some(r);
        }
    }
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
    assert!(statuses[0] == 200, "the first request is within any rate: {statuses:?}");
    let r = refused.unwrap_or_else(|| {
        panic!("40 back-to-back requests at per_client_rps = 5 were never refused: {statuses:?}")
    });
    let retry = r.header("retry-after").unwrap_or_else(|| panic!("429 without Retry-After"));
    assert!(retry.trim().parse::<u64>().is_ok_and(|s| s >= 1), "Retry-After `{retry}`");
    alto_error(&r).unwrap_or_else(|m| panic!("the 429 is an ALTO error: {m}"));
    // The limit is per client: another address is not throttled by the busy one.
    let other = TestClient::tls_from(Proto::Http1, &cert, UNTRUSTED);
    let r = other.get(&shield.directory_url(), None).await;
    assert_eq!(r.status, 200, "another client right after the busy one was refused: {}", r.describe());
    let m = shield.metrics().await;
    let refusals = statuses.iter().filter(|s| **s == 429).count() as f64;
    assert!(metric(&m, "altoshield_requests_total", &[("outcome", "rejected")]) >= refusals);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_never_finishes_its_headers_is_cut_off_after_header_timeout() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("limits.header_timeout", "1s"),
    )
    .await;
    let config = Arc::new(tls_client_config(std::slice::from_ref(&cert.cert_der), None, &[b"http/1.1"]));
    let mut tls = tls_connect(shield.addr, None, b"", config).await.expect("TLS");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.expect("write");
    tls.flush().await.expect("flush");
    let sent = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), tls.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a connection with unfinished headers was kept open over 6 s (header_timeout 1s)");
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(4), "cut off after {took:?}");
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "what the slow client got: {text:?}");
    // Others are served meanwhile and after.
    let r = TestClient::tls(Proto::Http1, &cert).get(&shield.directory_url(), None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv4_mapped_peer_on_a_dual_stack_listener_counts_as_ipv4() {
    let origin = Origin::start(&GEN);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("listen.addr", "[::]:0")
            .list("listen.allow", &["127.0.0.0/8"])
            .str("ecs.mode", "forward"),
    )
    .await;
    assert!(shield.url.starts_with("https://[::]:"), "IPv6 in brackets on the start-up line: {}", shield.url);
    // Reach it over IPv4: the peer is ::ffff:127.0.0.1 on the socket.
    let base = format!("https://127.0.0.1:{}", shield.addr.port());
    let client = TestClient::tls(Proto::Http1, &cert);
    let r = client.get(&format!("{base}/directory"), None).await;
    assert_eq!(
        r.status,
        200,
        "an IPv4 client allowed by 127.0.0.0/8 through a dual-stack socket: {}",
        r.describe()
    );
    let dir = Directory { json: r.json() };
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let r =
        client.post_json(&dir.rebased_uri(&ecs, &base), ENDPOINT_COST_PARAMS, None, &implicit(true)).await;
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;
    assert_answered_for(&r, true, "ipv4:127.0.0.1", &origin, &odir, &ecs, "IPv4-mapped peer").await;
}
