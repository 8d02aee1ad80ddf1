//! End-to-end: invalid input. A corpus of malformed requests (bad JSON, wrong types, missing
//! fields, bad addresses and identifiers, oversized bodies, wrong methods, media types and
//! paths, a looping `Via`) each gets the right status and an `application/alto-error+json`
//! body from the shield, and none of it reaches the origin (the origin's counters do not
//! move). `check-config` reports every problem of a bad file with its key path and exits 64.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};
use support::*;

const NET: &str = "my-default-network-map";
const PID_PROP: &str = "my-default-network-map.pid";

const BAD_ADDRESSES: &[&str] = &[
    "ipv4:1.2.3",
    "ipv4:256.1.1.1",
    "ipv4:01.2.3.4",
    "ipv4:10.0.0.1/8",
    "ipv4:",
    "ipv4: 10.0.0.1",
    "ipv6:zz::1",
    "ipv6:1.2.3.4",
    "ipv6:fe80::1%eth0",
    "ipv6:2001:db8:::1",
    "mac:00:11:22:33:44:55",
    "10.0.0.1",
    "",
];

fn deep(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

/// Bodies that are not valid requests for a POST resource kind (its `accepts`).
fn corpus(accepts: &str) -> Vec<(String, Vec<u8>)> {
    let j = |v: Value| serde_json::to_vec(&v).expect("json");
    let rc = cost_type("routingcost", "numerical");
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("empty body".into(), vec![]),
        ("null".into(), b"null".to_vec()),
        ("array".into(), b"[]".to_vec()),
        ("number".into(), b"42".to_vec()),
        ("string".into(), b"\"pids\"".to_vec()),
        ("truncated object".into(), b"{\"pids\": [\"pid-a\", ".to_vec()),
        ("trailing garbage".into(), b"{} garbage".to_vec()),
        ("non-UTF-8 bytes".into(), b"\xff\xfe\xfd\x00".to_vec()),
        ("lone surrogate escape".into(), b"{\"pids\": [\"\\ud800\"]}".to_vec()),
        ("single quotes".into(), b"{'pids': []}".to_vec()),
        ("NaN".into(), b"{\"pids\": NaN}".to_vec()),
        ("deep nesting".into(), deep(20_000).into_bytes()),
        ("empty object".into(), j(json!({}))),
    ];
    match accepts {
        NETWORK_MAP_FILTER => {
            out.push(("pids numbers".into(), j(json!({"pids": [1, 2]}))));
            out.push(("pids object".into(), j(json!({"pids": {"srcs": []}}))));
            out.push(("bad PID name".into(), j(json!({"pids": ["bad pid!"]}))));
            out.push(("empty PID name".into(), j(json!({"pids": [""]}))));
            out.push(("bad address type".into(), j(json!({"pids": [], "address-types": ["ip-v4"]}))));
        }
        COST_MAP_FILTER => {
            out.push(("cost-type null".into(), j(json!({"cost-type": null}))));
            out.push((
                "bad metric identifier".into(),
                j(json!({"cost-type": cost_type("bad metric!", "numerical")})),
            ));
            out.push(("priv: alone".into(), j(json!({"cost-type": cost_type("priv:", "numerical")}))));
            out.push(("unknown mode".into(), j(json!({"cost-type": cost_type("routingcost", "fuzzy")}))));
            for c in ["le five", "lt 1e999", "le NaN", "eq 1 2", "<= 5", ""] {
                out.push((format!("constraint {c:?}"), j(json!({"cost-type": rc, "constraints": [c]}))));
            }
            out.push(("bad PID in dsts".into(), j(json!({"cost-type": rc, "pids": {"dsts": ["bad pid!"]}}))));
        }
        ENDPOINT_PROP_PARAMS => {
            let ok = json!(["ipv4:10.0.0.1"]);
            out.push(("no properties".into(), j(json!({"properties": [], "endpoints": ok}))));
            out.push((
                "bad property identifier".into(),
                j(json!({"properties": ["bad prop!"], "endpoints": ok})),
            ));
            out.push(("endpoint a number".into(), j(json!({"properties": [PID_PROP], "endpoints": [7]}))));
            for a in BAD_ADDRESSES {
                out.push((
                    format!("endpoint {a:?}"),
                    j(json!({"properties": [PID_PROP], "endpoints": ["ipv4:10.0.0.1", a]})),
                ));
            }
        }
        ENDPOINT_COST_PARAMS => {
            let one = json!(["ipv4:10.0.0.1"]);
            out.push(("endpoints empty object".into(), j(json!({"cost-type": rc, "endpoints": {}}))));
            out.push((
                "srcs and dsts absent, with null".into(),
                j(json!({"cost-type": rc, "endpoints": {"srcs": null}})),
            ));
            out.push(("unknown metric".into(), j(json!({"cost-type": cost_type("nonsense", "numerical"), "endpoints": {"srcs": one, "dsts": one}}))));
            for a in BAD_ADDRESSES {
                out.push((
                    format!("src {a:?}"),
                    j(json!({"cost-type": rc, "endpoints": {"srcs": [a], "dsts": one}})),
                ));
                out.push((
                    format!("dst {a:?}"),
                    j(json!({"cost-type": rc, "endpoints": {"srcs": one, "dsts": ["ipv4:10.0.0.2", a]}})),
                ));
            }
        }
        other => panic!("no corpus for {other}"),
    }
    out
}

/// One request of the corpus and what must come back.
struct Case {
    what: String,
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
    /// Codes allowed; empty: any registered code.
    codes: Vec<String>,
    field: Option<String>,
    field_prefix: Option<String>,
    value: Option<Value>,
    /// Methods the `Allow` header must list (405).
    allow: Option<&'static str>,
    /// Send over HTTP/2 (a refused big body must not reset the connection under the answer).
    h2: bool,
}

impl Case {
    fn new(what: impl Into<String>, method: Method, url: &str, status: u16) -> Case {
        Case {
            what: what.into(),
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            status,
            codes: Vec::new(),
            field: None,
            field_prefix: None,
            value: None,
            allow: None,
            h2: false,
        }
    }

    fn header(mut self, k: &str, v: &str) -> Case {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    fn body(mut self, b: impl Into<Vec<u8>>) -> Case {
        self.body = b.into();
        self
    }

    fn code(mut self, c: &str) -> Case {
        self.codes = vec![c.to_string()];
        self
    }
}

/// Sends a case and says what is wrong with the answer, if anything.
async fn check(h1: &TestClient, h2: &TestClient, c: &Case) -> Option<String> {
    let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let client = if c.h2 { h2 } else { h1 };
    let r = match client.try_request(c.method.clone(), &c.url, &headers, Bytes::from(c.body.clone())).await {
        Ok(r) => r,
        Err(e) => return Some(format!("no answer: {e}")),
    };
    if r.status.as_u16() != c.status {
        return Some(format!("status {} (want {}): {}", r.status, c.status, r.describe()));
    }
    let e = match alto_error(&r) {
        Ok(e) => e,
        Err(m) => return Some(m),
    };
    if c.codes.is_empty() {
        if !REGISTERED_CODES.contains(&e.code.as_str()) {
            return Some(format!("unregistered code {}", e.code));
        }
    } else if !c.codes.contains(&e.code) {
        return Some(format!("code {} (want one of {:?})", e.code, c.codes));
    }
    if c.status != 400 && e.syntax_error.as_deref().is_none_or(|t| t.trim().is_empty()) {
        return Some(format!("{} without a syntax-error text naming the cause: {}", c.status, r.describe()));
    }
    if c.field.is_some() && e.field != c.field {
        return Some(format!("field {:?} (want {:?})", e.field, c.field));
    }
    if let Some(p) = &c.field_prefix {
        if !e.field.as_deref().is_some_and(|f| f.starts_with(p.as_str())) {
            return Some(format!("field {:?} (want one under {p:?})", e.field));
        }
    }
    if c.value.is_some() && e.value != c.value {
        return Some(format!("value {:?} (want {:?})", e.value, c.value));
    }
    if e.value.is_some() && e.field.is_none() {
        return Some("value without field (RFC 7285 §8.5.2)".into());
    }
    if let Some(allowed) = c.allow {
        let allow = r.header_all("allow");
        if !allow.split(',').any(|m| m.trim().eq_ignore_ascii_case(allowed)) {
            return Some(format!("Allow `{allow}` does not list {allowed}"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_requests_are_refused_by_the_shield_and_never_reach_the_origin() {
    let origin = Origin::with_data(&[]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("cache.default_ttl", "5m")
            .str("limits.max_body", "256KiB"),
    )
    .await;
    let h1 = TestClient::tls(Proto::Http1, &cert);
    let h2 = TestClient::tls(Proto::Http2, &cert);
    let dir = Directory::fetch(&h1, &shield.directory_url()).await;
    let posts: Vec<String> = dir.ids().into_iter().filter(|id| dir.accepts(id).is_some()).collect();
    let gets: Vec<String> = dir.ids().into_iter().filter(|id| dir.accepts(id).is_none()).collect();
    assert_eq!(posts.len(), 4, "{:?}", dir.ids());

    // The shield's Via token, and a Via naming another hop, which is no loop.
    let r = get_from(&h1, &dir, NET).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let via = r.header("via").expect("the shield's answers carry Via").to_string();
    let r = h1
        .request(Method::GET, &dir.uri(NET), &[("accept", NETWORK_MAP), ("via", "1.1 some-other-proxy")], "")
        .await;
    assert_eq!(r.status, 200, "a Via from another hop is not a loop: {}", r.describe());

    let mut cases: Vec<Case> = Vec::new();
    // The origin's own fixture of invalid requests, now answered by the shield.
    let doc: Value =
        serde_json::from_slice(&std::fs::read(fixture("origin/invalid-requests.json")).expect("fixture"))
            .expect("fixture JSON");
    for case in doc["cases"].as_array().expect("cases") {
        let id = case["resource"].as_str().expect("resource");
        let mut c = Case::new(format!("fixture {id} {}", case["body"]), Method::POST, &dir.uri(id), 400)
            .header("content-type", &dir.accepts(id).expect("accepts"))
            .header("accept", &accept_for(&dir.media_type(id)))
            .body(serde_json::to_vec(&case["body"]).expect("json"));
        c.codes = case["codes"]
            .as_array()
            .expect("codes")
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        c.field = case.get("field").and_then(Value::as_str).map(String::from);
        c.field_prefix = case.get("field-prefix").and_then(Value::as_str).map(String::from);
        c.value = case.get("value").cloned();
        cases.push(c);
    }
    // Precise expectations for a few ECS mistakes the fixture has not.
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let rc = cost_type("routingcost", "numerical");
    let ecs_case = |what: &str, body: Value| {
        Case::new(what, Method::POST, &dir.uri(&ecs), 400)
            .header("content-type", ENDPOINT_COST_PARAMS)
            .header("accept", &accept_for(ENDPOINT_COST))
            .body(serde_json::to_vec(&body).expect("json"))
    };
    let mut c = ecs_case(
        "ECS bad source",
        json!({"cost-type": rc, "endpoints": {"srcs": ["ipv4:10.0.0.300"], "dsts": ["ipv4:10.0.0.2"]}}),
    )
    .code("E_INVALID_FIELD_VALUE");
    c.field = Some("endpoints/srcs".into());
    c.value = Some(json!("ipv4:10.0.0.300"));
    cases.push(c);
    let mut c = ecs_case(
        "ECS cost-mode missing",
        json!({"cost-type": {"cost-metric": "routingcost"}, "endpoints": {"dsts": ["ipv4:10.0.0.2"]}}),
    )
    .code("E_MISSING_FIELD");
    c.field = Some("cost-type/cost-mode".into());
    cases.push(c);
    let mut c = ecs_case(
        "ECS dsts a number",
        json!({"cost-type": rc, "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": 5}}),
    )
    .code("E_INVALID_FIELD_TYPE");
    c.field = Some("endpoints/dsts".into());
    cases.push(c);
    let mut c = ecs_case("ECS truncated JSON", Value::Null).code("E_SYNTAX");
    c.body = b"{\"cost-type\": ".to_vec();
    cases.push(c);

    // Generic corpus per POST kind.
    for id in &posts {
        let accepts = dir.accepts(id).expect("accepts");
        for (name, body) in corpus(&accepts) {
            cases.push(
                Case::new(format!("{id}: {name}"), Method::POST, &dir.uri(id), 400)
                    .header("content-type", &accepts)
                    .header("accept", &accept_for(&dir.media_type(id)))
                    .body(body),
            );
        }
    }

    // 404: paths the shield's IRD does not list.
    for path in [
        "/no-such-resource",
        "/directory/extra",
        "/networkmap/nope",
        "/costmap/routingcost",
        "/metrics",
        "/bump",
    ] {
        cases.push(Case::new(format!("GET {path}"), Method::GET, &shield.url(path), 404).code("E_SYNTAX"));
        cases.push(
            Case::new(format!("POST {path}"), Method::POST, &shield.url(path), 404)
                .code("E_SYNTAX")
                .header("content-type", ENDPOINT_COST_PARAMS)
                .body("{}"),
        );
    }

    // 405 with Allow (on URIs that offer one method only: two IRD entries may share a URI,
    // one GET and one POST).
    let uris_of = |ids: &[String]| ids.iter().map(|id| dir.uri(id)).collect::<BTreeSet<String>>();
    let (get_uris, post_uris) = (uris_of(&gets), uris_of(&posts));
    let gets: Vec<String> = gets.iter().filter(|id| !post_uris.contains(&dir.uri(id))).cloned().collect();
    let posts_only: Vec<String> =
        posts.iter().filter(|id| !get_uris.contains(&dir.uri(id))).cloned().collect();
    for id in &gets {
        for m in [Method::POST, Method::DELETE, Method::PUT] {
            let mut c = Case::new(format!("{m} {id}"), m, &dir.uri(id), 405)
                .code("E_SYNTAX")
                .header("content-type", COST_MAP_FILTER)
                .body("{}");
            c.allow = Some("GET");
            cases.push(c);
        }
    }
    for id in &posts_only {
        for m in [Method::GET, Method::DELETE] {
            let mut c = Case::new(format!("{m} {id}"), m, &dir.uri(id), 405).code("E_SYNTAX");
            c.allow = Some("POST");
            cases.push(c);
        }
    }
    let mut c =
        Case::new("PUT /directory", Method::PUT, &shield.directory_url(), 405).code("E_SYNTAX").body("{}");
    c.allow = Some("GET");
    cases.push(c);

    // 406: an Accept that excludes the resource's media type.
    for id in &gets {
        cases.push(
            Case::new(format!("GET {id} accepting text/html"), Method::GET, &dir.uri(id), 406)
                .code("E_SYNTAX")
                .header("accept", "text/html"),
        );
    }
    cases.push(
        Case::new("GET network map accepting a cost map", Method::GET, &dir.uri(NET), 406)
            .code("E_SYNTAX")
            .header("accept", COST_MAP),
    );
    cases.push(
        Case::new("GET /directory accepting text/html", Method::GET, &shield.directory_url(), 406)
            .code("E_SYNTAX")
            .header("accept", "text/html"),
    );
    for id in &posts {
        let body = serde_json::to_vec(&sample_request(&dir, id).expect("POST")).expect("json");
        cases.push(
            Case::new(format!("POST {id} accepting application/json only"), Method::POST, &dir.uri(id), 406)
                .code("E_SYNTAX")
                .header("content-type", &dir.accepts(id).expect("accepts"))
                .header("accept", "application/json")
                .body(body),
        );
    }

    // 413: over limits.max_body (256 KiB), valid JSON otherwise, on every POST resource.
    for id in &posts {
        let mut body = sample_request(&dir, id).expect("POST");
        body["x-padding"] = json!("p".repeat(300 * 1024));
        let mut c = Case::new(format!("POST {id} with a 300 KiB body"), Method::POST, &dir.uri(id), 413)
            .code("E_SYNTAX")
            .header("content-type", &dir.accepts(id).expect("accepts"))
            .body(serde_json::to_vec(&body).expect("json"));
        c.h2 = true;
        cases.push(c);
    }

    // 415: a wrong or missing Content-Type with a valid body.
    for id in &posts {
        let body = serde_json::to_vec(&sample_request(&dir, id).expect("POST")).expect("json");
        let other = if *id == ecs { NETWORK_MAP_FILTER } else { ENDPOINT_COST_PARAMS };
        for ct in [Some("application/json"), Some("text/plain"), Some(other), Some("garbage"), None] {
            let mut c =
                Case::new(format!("POST {id} with Content-Type {ct:?}"), Method::POST, &dir.uri(id), 415)
                    .code("E_SYNTAX")
                    .body(body.clone());
            if let Some(ct) = ct {
                c = c.header("content-type", ct);
            }
            cases.push(c);
        }
    }

    // 508: the request already passed through this shield.
    let looped = format!("1.1 other-proxy, {via}");
    for v in [via.as_str(), looped.as_str()] {
        cases.push(
            Case::new(format!("GET {NET} with Via `{v}`"), Method::GET, &dir.uri(NET), 508)
                .code("E_SYNTAX")
                .header("via", v),
        );
        let body = serde_json::to_vec(&sample_request(&dir, &ecs).expect("POST")).expect("json");
        cases.push(
            Case::new(format!("POST {ecs} with Via `{v}`"), Method::POST, &dir.uri(&ecs), 508)
                .code("E_SYNTAX")
                .header("via", v)
                .header("content-type", ENDPOINT_COST_PARAMS)
                .body(body),
        );
    }

    let origin_before = origin.metrics().await;
    let shield_before = shield.metrics().await;
    let mut failures = Vec::new();
    for c in &cases {
        if let Some(p) = check(&h1, &h2, c).await {
            failures.push(format!("{}: {p}", c.what));
        }
    }
    let origin_after = origin.metrics().await;
    let shield_after = shield.metrics().await;
    assert!(
        failures.is_empty(),
        "{} of {} invalid requests answered wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing reached the origin (the IRD may be re-fetched on the shield's own schedule).
    let served = "altoshield_origin_served_total";
    let labels: BTreeSet<String> = label_values(&origin_after, served, "resource")
        .into_iter()
        .chain(label_values(&origin_before, served, "resource"))
        .collect();
    for id in labels.iter().filter(|l| *l != "directory") {
        assert_eq!(
            metric(&origin_after, served, &[("resource", id)]),
            metric(&origin_before, served, &[("resource", id)]),
            "invalid requests reached the origin's `{id}`"
        );
    }
    // The shield counted each as rejected, and nothing else.
    let requests = "altoshield_requests_total";
    for outcome in label_values(&shield_after, requests, "outcome") {
        let d = metric(&shield_after, requests, &[("outcome", &outcome)])
            - metric(&shield_before, requests, &[("outcome", &outcome)]);
        let want = if outcome == "rejected" { cases.len() as f64 } else { 0.0 };
        assert_eq!(d, want, "altoshield_requests_total{{outcome=\"{outcome}\"}} moved by {d}");
    }
    let d = metric(&shield_after, "altoshield_origin_requests_total", &[])
        - metric(&shield_before, "altoshield_origin_requests_total", &[]);
    let dir_fetches = metric(&origin_after, served, &[("resource", "directory")])
        - metric(&origin_before, served, &[("resource", "directory")]);
    assert_eq!(
        d, dir_fetches,
        "the shield's origin requests during the corpus, besides its own IRD refreshes"
    );
    // Still serving.
    let r = get_from(&h1, &dir, NET).await;
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------------------------
// check-config
// ---------------------------------------------------------------------------------------------

fn check_config(path: &std::path::Path) -> Exit {
    run_to_exit(BIN, &["check-config", path.to_str().expect("utf-8")], Duration::from_secs(20))
}

/// The output lines (stdout and stderr) that mention `key`.
fn lines_naming<'a>(exit: &'a Exit, key: &str) -> Vec<&'a str> {
    exit.stdout.lines().chain(exit.stderr.lines()).filter(|l| l.contains(key)).collect()
}

#[test]
fn check_config_reports_every_problem_with_its_key_path_and_exits_64() {
    let dir = TempDir::new("altoshield-test-check-config");
    let cert = TestCert::new();

    // A good file (TLS with existing files), and a good plain one: exit 0.
    let good = ShieldConfig::new("http://127.0.0.1:8081/directory")
        .tls(&cert)
        .str("cache.default_ttl", "1m30s")
        .str("cache.max_bytes", "64MiB")
        .str("limits.header_timeout", "500ms")
        .list("listen.trusted_proxies", &["127.0.0.1/32", "::1/128"])
        .list("listen.allow", &["10.0.0.0/8"])
        .raw("limits.per_client_rps", "0")
        .str("ecs.mode", "forward");
    let p = dir.write("good.toml", good.render());
    let e = check_config(&p);
    assert_eq!(e.code, Some(0), "a good file: {e:?}\n{}", good.render());
    let plain = ShieldConfig::new("http://127.0.0.1:8081/directory").plain();
    let p = dir.write("plain.toml", plain.render());
    let e = check_config(&p);
    assert_eq!(e.code, Some(0), "a good plain-HTTP file: {e:?}\n{}", plain.render());

    // Many problems at once: every one reported, each on its own line with its key path.
    let missing = dir.join("no-such-cert.pem");
    let bad = ShieldConfig::new("ftp://127.0.0.1/directory")
        .str("listen.addr", "not-an-address")
        .path("listen.cert", &missing)
        .path("listen.key", &dir.join("no-such-key.pem"))
        .list("listen.allow", &["10.0.0.0/33"])
        .list("listen.trusted_proxies", &["not-a-cidr"])
        .str("origin.timeout", "soon")
        .str("cache.default_ttl", "30 parsecs")
        .str("cache.max_bytes", "lots")
        .str("limits.max_body", "1MB!")
        .str("ecs.mode", "psychic");
    let p = dir.write("bad.toml", bad.render());
    let e = check_config(&p);
    assert_eq!(e.code, Some(64), "a bad file exits 64: {e:?}");
    let keys = [
        "listen.addr",
        "listen.cert",
        "listen.key",
        "listen.allow",
        "listen.trusted_proxies",
        "origin.ird",
        "origin.timeout",
        "cache.default_ttl",
        "cache.max_bytes",
        "limits.max_body",
        "ecs.mode",
    ];
    let mut seen_lines = BTreeSet::new();
    let mut missing_keys = Vec::new();
    for key in keys {
        let lines = lines_naming(&e, key);
        match lines.first() {
            None => missing_keys.push(key),
            Some(l) => {
                seen_lines.insert(l.to_string());
            }
        }
    }
    assert!(
        missing_keys.is_empty(),
        "problems not reported with their key path: {missing_keys:?}\nstdout:\n{}\nstderr:\n{}",
        e.stdout,
        e.stderr
    );
    assert_eq!(seen_lines.len(), keys.len(), "one problem per line:\n{}{}", e.stdout, e.stderr);

    // The same file refuses to serve, with the same exit code, before binding anything.
    let s = run_to_exit(BIN, &["serve", "--config", p.to_str().expect("utf-8")], Duration::from_secs(20));
    assert_eq!(s.code, Some(64), "serve with a bad file: {s:?}");
    assert!(!s.stdout.contains("listening on"), "serve with a bad file bound a listener: {}", s.stdout);

    // Other bad files: a missing origin, an unknown key, a wrong type, not TOML, no file.
    let cases: Vec<(&str, String, &str)> = vec![
        ("no origin.ird", "[listen]\ntls = false\n".to_string(), "origin.ird"),
        ("unknown key", format!("{}[cache]\ndefault_tll = \"1s\"\n", plain.render()), "default_tll"),
        ("wrong type", format!("{}\n[limits]\nmax_in_flight = \"many\"\n", plain.render()), "max_in_flight"),
        ("not TOML", "this is [not toml\n".to_string(), ""),
    ];
    for (what, text, key) in cases {
        let p = dir.write(&format!("{}.toml", what.replace(' ', "-")), &text);
        let e = check_config(&p);
        assert_eq!(e.code, Some(64), "{what}: exit code; {e:?}\nfile:\n{text}");
        assert!(!e.stdout.trim().is_empty() || !e.stderr.trim().is_empty(), "{what}: nothing printed");
        if !key.is_empty() {
            assert!(!lines_naming(&e, key).is_empty(), "{what}: no line names `{key}`: {e:?}");
        }
    }
    let e = check_config(&dir.join("does-not-exist.toml"));
    assert_eq!(e.code, Some(64), "a missing file: {e:?}");
}
