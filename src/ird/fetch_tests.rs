//! Tests of fetching an IRD closure from a hand-written origin on 127.0.0.1:0.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::Uri;
use serde_json::{json, Value};

use super::*;
use crate::upstream::test_server::{response, Action, TestServer};
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError};

fn uri(s: &str) -> Uri {
    s.parse().expect("test uri")
}

fn ids(dir: &Directory) -> Vec<&str> {
    dir.resources.keys().map(String::as_str).collect()
}

/// An origin serving `pages` (path → (status, content type, body)), counting fetches per path.
async fn origin(
    pages: HashMap<String, (u16, String, String)>,
) -> (TestServer, Arc<Mutex<HashMap<String, usize>>>) {
    let counts = Arc::new(Mutex::new(HashMap::new()));
    let seen = counts.clone();
    let server = TestServer::start(move |req| {
        if let Ok(mut c) = seen.lock() {
            *c.entry(req.path.clone()).or_insert(0) += 1;
        }
        match pages.get(&req.path) {
            Some((status, ct, body)) => Action::Reply(response(&format!("{status} X"), ct, body)),
            None => Action::Reply(response("404 Not Found", "text/plain", "")),
        }
    })
    .await;
    (server, counts)
}

fn page(body: Value) -> (u16, String, String) {
    (200, "application/alto-directory+json".into(), body.to_string())
}

fn upstream() -> Upstream {
    Upstream::new(&UpstreamConfig::default()).expect("upstream")
}

#[tokio::test]
async fn closure_follows_relative_delegations_and_stops_at_loops() {
    let root = json!({
        "meta": {"default-alto-network-map": "nm"},
        "resources": {
            "nm": {"uri": "/networkmap", "media-type": "application/alto-networkmap+json"},
            "sub": {"uri": "maps/sub", "media-type": "application/alto-directory+json"}
        }
    });
    let sub = json!({
        "resources": {
            "fnm": {"uri": "filtered", "media-type": "application/alto-networkmap+json",
                    "accepts": "application/alto-networkmapfilter+json", "uses": ["nm"]},
            "back": {"uri": "../directory", "media-type": "application/alto-directory+json"},
            "itself": {"uri": "sub", "media-type": "application/alto-directory+json"}
        }
    });
    let mut pages = HashMap::new();
    pages.insert("/directory".to_string(), page(root));
    pages.insert(
        "/maps/sub".to_string(),
        (200, "application/alto-directory+json; charset=utf-8".into(), sub.to_string()),
    );
    let (mut server, counts) = origin(pages).await;
    let root_uri = server.url("/directory");

    let closure = fetch_closure(&upstream(), &root_uri).await.expect("closure");
    let fetched: Vec<String> = closure.iter().map(|(u, _)| u.path().to_string()).collect();
    assert_eq!(fetched, ["/directory", "/maps/sub"]);
    let counts = counts.lock().expect("counts").clone();
    assert_eq!(counts.get("/directory"), Some(&1), "the loop back to the root is not followed");
    assert_eq!(counts.get("/maps/sub"), Some(&1));
    let first = server.requests.recv().await.expect("request");
    assert_eq!(first.header("accept"), Some("application/alto-directory+json,application/alto-error+json"));

    let dir = flatten(&closure, "https://127.0.0.1:8443").expect("flatten");
    assert_eq!(ids(&dir), ["fnm", "nm"]);
    assert_eq!(dir.resources["fnm"].origin_uri, server.url("/maps/filtered"));
    assert_eq!(dir.resources["fnm"].entry.uri, "https://127.0.0.1:8443/maps/filtered");
    assert_eq!(dir.resources["fnm"].uses, ["nm"]);
}

#[tokio::test]
async fn closure_is_capped() {
    // Every IRD delegates to a fresh one: an endless chain.
    let mut server = TestServer::start(|req| {
        let n: usize = req.path.trim_start_matches("/d/").parse().unwrap_or(0);
        let body = json!({
            "meta": {"default-alto-network-map": "nm"},
            "resources": {
                "next": {"uri": format!("/d/{}", n + 1), "media-type": "application/alto-directory+json"}
            }
        });
        Action::Reply(response("200 OK", "application/alto-directory+json", &body.to_string()))
    })
    .await;
    let err = fetch_closure(&upstream(), &server.url("/d/0")).await.expect_err("endless");
    assert!(matches!(err, IrdError::TooManyIrds { max: MAX_IRDS, .. }), "{err:?}");
    let mut fetched = 0;
    while server.requests.try_recv().is_ok() {
        fetched += 1;
    }
    assert_eq!(fetched, MAX_IRDS, "it stops fetching at the cap");
}

#[tokio::test]
async fn fetch_errors_name_the_uri() {
    let mut pages = HashMap::new();
    pages.insert("/json".to_string(), (200, "application/json".into(), "{}".into()));
    pages.insert(
        "/broken".to_string(),
        (200, "application/alto-directory+json".into(), "{\"resources\":".into()),
    );
    pages.insert(
        "/not-ird".to_string(),
        (200, "application/alto-directory+json".into(), r#"{"meta":{}}"#.into()),
    );
    pages.insert(
        "/error".to_string(),
        (503, "application/alto-error+json".into(), r#"{"meta":{"code":"E_SYNTAX"}}"#.into()),
    );
    pages.insert(
        "/delegates-to-missing".to_string(),
        page(json!({"meta": {"default-alto-network-map": "nm"}, "resources": {
            "gone": {"uri": "/missing", "media-type": "application/alto-directory+json"}}})),
    );
    let (server, _) = origin(pages).await;
    let up = upstream();
    let fetch = |path: &str| {
        let (up, uri) = (up.clone(), server.url(path));
        async move { fetch_closure(&up, &uri).await.expect_err("must fail") }
    };

    let err = fetch("/json").await;
    assert!(matches!(&err, IrdError::MediaType { got, .. } if got == "application/json"), "{err:?}");
    assert!(err.to_string().contains(&server.url("/json").to_string()), "{err}");
    assert!(matches!(fetch("/broken").await, IrdError::InvalidJson { .. }));
    let err = fetch("/not-ird").await;
    assert!(matches!(&err, IrdError::NotIrd { reason, .. } if reason.contains("resources")), "{err:?}");
    assert!(matches!(fetch("/error").await, IrdError::Status { status: 503, .. }));
    let err = fetch("/delegates-to-missing").await;
    assert!(matches!(&err, IrdError::Status { status: 404, uri } if uri.ends_with("/missing")), "{err:?}");

    let refused = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        listener.local_addr().expect("addr")
    };
    let err = fetch_closure(&up, &uri(&format!("http://{refused}/directory"))).await.expect_err("refused");
    assert!(matches!(err, IrdError::Upstream { source: UpstreamError::Connect(_), .. }), "{err:?}");
}
