//! Tests of the origin client against hand-written servers on 127.0.0.1:0.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, StatusCode};
use tokio::sync::Semaphore;

use super::test_server::{response, Action, TestServer};
use super::*;

fn config() -> UpstreamConfig {
    UpstreamConfig { timeout: Duration::from_secs(10), ..UpstreamConfig::default() }
}

fn client(cfg: &UpstreamConfig) -> Upstream {
    Upstream::new(cfg).expect("upstream client")
}

fn ok_json(body: &str) -> Action {
    Action::Reply(response("200 OK", "application/alto-networkmap+json", body))
}

#[tokio::test]
async fn get_round_trip() {
    let mut server = TestServer::start(|_| ok_json(r#"{"network-map":{}}"#)).await;
    let up = client(&config());
    let resp = up
        .send(UpstreamRequest::get(server.url("/networkmap"), "application/alto-networkmap+json"))
        .await
        .expect("answer");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.headers["content-type"], "application/alto-networkmap+json");
    assert_eq!(resp.body, Bytes::from_static(br#"{"network-map":{}}"#));
    let got = server.requests.recv().await.expect("request");
    assert_eq!((got.method.as_str(), got.path.as_str()), ("GET", "/networkmap"));
    assert_eq!(got.header("accept"), Some("application/alto-networkmap+json"));
    assert_eq!(got.header("content-type"), None);
}

#[tokio::test]
async fn post_round_trip_with_headers() {
    let mut server = TestServer::start(|r| {
        Action::Reply(response(
            "200 OK",
            "application/alto-endpointcost+json",
            &String::from_utf8_lossy(&r.body),
        ))
    })
    .await;
    let up = client(&config());
    let body = Bytes::from_static(br#"{"endpoints":{"srcs":["ipv4:192.0.2.2"]}}"#);
    let req = UpstreamRequest {
        method: Method::POST,
        uri: server.url("/endpointcost/lookup"),
        accept: "application/alto-endpointcost+json,application/alto-error+json".into(),
        content_type: Some("application/alto-endpointcostparams+json".into()),
        body: body.clone(),
        headers: vec![(HeaderName::from_static("via"), HeaderValue::from_static("1.1 altoshield"))],
    };
    let resp = up.send(req).await.expect("answer");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body, body, "the server echoes the body it received");
    let got = server.requests.recv().await.expect("request");
    assert_eq!(got.method, "POST");
    assert_eq!(got.header("accept"), Some("application/alto-endpointcost+json,application/alto-error+json"));
    assert_eq!(got.header("content-type"), Some("application/alto-endpointcostparams+json"));
    assert_eq!(got.header("via"), Some("1.1 altoshield"));
    assert_eq!(got.body, body);
}

#[tokio::test]
async fn keep_alive_reuses_the_connection() {
    let server = TestServer::start(|_| ok_json("{}")).await;
    let up = client(&config());
    for _ in 0..3 {
        let resp = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("answer");
        assert_eq!(resp.status, StatusCode::OK);
    }
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn connect_refused_is_a_connect_error() {
    let addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let up = client(&config());
    let uri = format!("http://{addr}/directory").parse().expect("uri");
    let err = up.send(UpstreamRequest::get(uri, "*/*")).await.expect_err("nothing listens");
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    assert_eq!(err.status_label(), "connect_error");
}

#[tokio::test]
async fn closed_without_answer_is_retried_exactly_once() {
    let server = TestServer::start(|_| Action::Close).await;
    let up = client(&config());
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("never answered");
    assert!(matches!(err, UpstreamError::Broken(_)), "{err:?}");
    assert_eq!(err.status_label(), "invalid_response");
    assert_eq!(server.accepts(), 2, "one attempt and one retry");
}

#[tokio::test]
async fn first_connection_closed_then_second_answers() {
    let server = TestServer::start(|r| if r.conn == 0 { Action::Close } else { ok_json("{}") }).await;
    let up = client(&config());
    let resp = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("retried");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(server.accepts(), 2);
}

#[tokio::test]
async fn pooled_connection_closed_by_the_origin_is_retried() {
    // The first connection answers once, then closes when the next request arrives on it: the
    // race of an origin closing an idle keep-alive connection just as the shield reuses it.
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = seen.clone();
    let server = TestServer::start(move |r| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if r.conn == 0 && n > 0 {
            Action::Close
        } else {
            ok_json("{}")
        }
    })
    .await;
    let up = client(&config());
    up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("first");
    let resp = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("second, retried");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(server.accepts(), 2);
}

#[tokio::test]
async fn error_status_is_passed_on_and_not_retried() {
    let server = TestServer::start(|_| {
        Action::Reply(response("503 Service Unavailable", "application/alto-error+json", r#"{"meta":{}}"#))
    })
    .await;
    let up = client(&config());
    let resp = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("an answer");
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn body_broken_midway_is_not_retried() {
    let server = TestServer::start(|_| {
        Action::ReplyThenClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789".to_vec())
    })
    .await;
    let up = client(&config());
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("truncated");
    assert!(matches!(err, UpstreamError::Broken(_)), "{err:?}");
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn malformed_answer_is_broken_and_not_retried() {
    let server = TestServer::start(|_| Action::ReplyThenClose(b"garbage garbage\r\n\r\n".to_vec())).await;
    let up = client(&config());
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("malformed");
    assert!(matches!(err, UpstreamError::Broken(_)), "{err:?}");
    assert_eq!(err.status_label(), "invalid_response");
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn hanging_origin_times_out() {
    let server = TestServer::start(|_| Action::Hang).await;
    let timeout = Duration::from_millis(300);
    let up = client(&UpstreamConfig { timeout, ..config() });
    let started = std::time::Instant::now();
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("hangs");
    assert!(matches!(err, UpstreamError::Timeout), "{err:?}");
    assert_eq!(err.status_label(), "timeout");
    // A bound, not a measurement: the timeout must fire, not some much later default.
    assert!(started.elapsed() < timeout + Duration::from_secs(5));
    assert_eq!(server.accepts(), 1, "timeouts are not retried");
}

#[tokio::test]
async fn oversize_body_is_refused() {
    let big = "x".repeat(1000);
    let server = TestServer::start(move |_| ok_json(&big)).await;
    let up = client(&UpstreamConfig { max_body: 100, ..config() });
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("too large");
    assert!(matches!(err, UpstreamError::TooLarge(100)), "{err:?}");
}

#[tokio::test]
async fn oversize_chunked_body_is_refused() {
    let chunk = "y".repeat(80);
    let answer = format!(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n{chunk}\r\n50\r\n{chunk}\r\n0\r\n\r\n"
    );
    let server = TestServer::start(move |_| Action::Reply(answer.clone().into_bytes())).await;
    let up = client(&UpstreamConfig { max_body: 100, ..config() });
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("too large");
    assert!(matches!(err, UpstreamError::TooLarge(100)), "{err:?}");
    // The same answer fits under a larger cap.
    let up = client(&UpstreamConfig { max_body: 160, ..config() });
    let resp = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("fits");
    assert_eq!(resp.body.len(), 160);
}

#[tokio::test]
async fn concurrency_toward_the_origin_is_bounded() {
    let gate = Arc::new(Semaphore::new(0));
    let held = gate.clone();
    let mut server =
        TestServer::start(move |_| Action::Gated(held.clone(), response("200 OK", "a/b", "{}"))).await;
    let up = client(&UpstreamConfig { max_in_flight: 2, ..config() });
    let uri = server.url("/m");
    let spawn = |up: &Upstream| {
        let (up, uri) = (up.clone(), uri.clone());
        tokio::spawn(async move { up.send(UpstreamRequest::get(uri, "*/*")).await })
    };
    let (a, b) = (spawn(&up), spawn(&up));
    server.requests.recv().await.expect("first held");
    server.requests.recv().await.expect("second held");
    let c = spawn(&up);
    // Asserting an absence needs some wait; a short one can only make the test pass wrongly,
    // never fail wrongly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.requests.try_recv().is_err(), "a third request reached the origin");
    assert!(!c.is_finished());
    gate.add_permits(1);
    server.requests.recv().await.expect("the third goes once one finished");
    gate.add_permits(2);
    for task in [a, b, c] {
        let resp = task.await.expect("task").expect("answer");
        assert_eq!(resp.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn waiting_for_a_permit_counts_against_the_timeout() {
    let server = TestServer::start(|_| ok_json("{}")).await;
    let up = client(&UpstreamConfig { max_in_flight: 1, timeout: Duration::from_millis(300), ..config() });
    let taken = up.inner.permits.acquire().await.expect("permit");
    let err = up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect_err("no permit");
    assert!(matches!(err, UpstreamError::Overloaded), "{err:?}");
    assert_eq!(server.accepts(), 0);
    drop(taken);
    up.send(UpstreamRequest::get(server.url("/m"), "*/*")).await.expect("permit free again");
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// Self-signed PEM files for `127.0.0.1` and `localhost` in a fresh temporary directory.
struct Pem {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pem {
    fn new(tag: &str) -> Pem {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("altoshield-upstream-{}-{tag}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("certificate");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write cert");
        std::fs::write(&key_path, key_pair.serialize_pem()).expect("write key");
        Pem { dir, cert: cert_path, key: key_path }
    }
}

impl Drop for Pem {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An HTTPS server (the crate's own server loop) that answers with the HTTP version it saw.
async fn tls_server(server: &Pem, client_ca: Option<&Path>) -> std::net::SocketAddr {
    let tls = crate::tls::server_config(&server.cert, &server.key, client_ca).expect("server tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = |req: http::Request<hyper::body::Incoming>, _| async move {
        Ok(crate::http::ok("text/plain", Bytes::from(format!("{:?}", req.version()))))
    };
    tokio::spawn(crate::http::serve(
        listener,
        Some(Arc::new(tls)),
        handle,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    addr
}

#[tokio::test]
async fn https_with_own_roots_negotiates_h2() {
    let pem = Pem::new("h2");
    let addr = tls_server(&pem, None).await;
    let up = client(&UpstreamConfig { ca: Some(pem.cert.clone()), ..config() });
    let uri = format!("https://{addr}/directory").parse().expect("uri");
    let resp = up.send(UpstreamRequest::get(uri, "*/*")).await.expect("answer");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body, Bytes::from_static(b"HTTP/2.0"));
}

#[tokio::test]
async fn https_with_client_certificate() {
    let (server_pem, client_pem) = (Pem::new("srv"), Pem::new("cli"));
    let addr = tls_server(&server_pem, Some(&client_pem.cert)).await;
    let uri: Uri = format!("https://{addr}/").parse().expect("uri");

    let with_cert = client(&UpstreamConfig {
        ca: Some(server_pem.cert.clone()),
        cert: Some(client_pem.cert.clone()),
        key: Some(client_pem.key.clone()),
        ..config()
    });
    let resp = with_cert.send(UpstreamRequest::get(uri.clone(), "*/*")).await.expect("answer");
    assert_eq!(resp.status, StatusCode::OK);

    let without = client(&UpstreamConfig { ca: Some(server_pem.cert.clone()), ..config() });
    assert!(without.send(UpstreamRequest::get(uri, "*/*")).await.is_err(), "the server wants a certificate");
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_fails_to_connect() {
    let (pem, other) = (Pem::new("untrusted"), Pem::new("other"));
    let addr = tls_server(&pem, None).await;
    let up = client(&UpstreamConfig { ca: Some(other.cert.clone()), ..config() });
    let uri = format!("https://{addr}/").parse().expect("uri");
    let err = up.send(UpstreamRequest::get(uri, "*/*")).await.expect_err("untrusted");
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
}

#[test]
fn builds_outside_a_runtime() {
    // The binary may build its clients before it starts the runtime.
    Upstream::new(&UpstreamConfig::default()).expect("upstream client");
}

#[test]
fn setup_errors_name_the_file() {
    let missing = PathBuf::from("/nonexistent/altoshield/ca.pem");
    let err = Upstream::new(&UpstreamConfig { ca: Some(missing), ..config() }).expect_err("missing file");
    assert!(err.to_string().contains("/nonexistent/altoshield/ca.pem"), "{err}");

    let pem = Pem::new("half");
    let err =
        Upstream::new(&UpstreamConfig { cert: Some(pem.cert.clone()), ..config() }).expect_err("no key");
    assert!(matches!(err, UpstreamSetupError::HalfClientCert), "{err:?}");

    let err = Upstream::new(&UpstreamConfig { max_in_flight: 0, ..config() }).expect_err("no permits");
    assert!(matches!(err, UpstreamSetupError::NoConcurrency), "{err:?}");
}
