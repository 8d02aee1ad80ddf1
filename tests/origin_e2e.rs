//! End-to-end tests of the reference origin (`altoshield origin`): the real binary on an
//! ephemeral port, real sockets, plain and TLS, HTTP/1.1 and HTTP/2. Each test asserts what a
//! client or an operator notices: status, media type, body, headers, counters, exit codes.
//! Resources are found through the IRD, as a client finds them.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use ipnet::IpNet;
use serde_json::{json, Value};
use support::*;

const NET: &str = "my-default-network-map";
const PID_PROP: &str = "my-default-network-map.pid";
const SERVED: &str = "altoshield_origin_served_total";
const ECS_PAIRS: &str = "altoshield_origin_ecs_pairs_total";

fn ct(metric: &str, mode: &str) -> Value {
    json!({"cost-metric": metric, "cost-mode": mode})
}

/// The cost type named by a resource's first `cost-type-names` entry, as a request writes it.
fn first_cost_type(dir: &Directory, id: &str) -> Value {
    let name =
        dir.cost_type_names(id).into_iter().next().unwrap_or_else(|| panic!("`{id}` offers no cost type"));
    let t = &dir.json["meta"]["cost-types"][&name];
    json!({"cost-metric": t["cost-metric"], "cost-mode": t["cost-mode"]})
}

/// A valid request body for a POST resource, built from its IRD entry; `None` for GET.
fn valid_request(dir: &Directory, id: &str) -> Option<Value> {
    let accepts = dir.accepts(id)?;
    Some(match accepts.as_str() {
        NETWORK_MAP_FILTER => json!({"pids": []}),
        COST_MAP_FILTER => json!({"cost-type": first_cost_type(dir, id)}),
        ENDPOINT_PROP_PARAMS => {
            let prop = dir.entry(id)["capabilities"]["prop-types"][0].clone();
            json!({"properties": [prop], "endpoints": ["ipv4:10.0.0.1", "ipv6:2001:db8::1"]})
        }
        ENDPOINT_COST_PARAMS => json!({"cost-type": first_cost_type(dir, id),
            "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.2", "ipv6:2001:db8::1"]}}),
        other => panic!("resource `{id}` accepts {other}, which these tests do not model"),
    })
}

/// Sends the valid request of resource `id` to `base` + its path (or to its URI when `base`
/// is `None`).
async fn exercise(
    client: &TestClient,
    dir: &Directory,
    id: &str,
    base: Option<&str>,
) -> Result<Response, RequestError> {
    let uri = match base {
        Some(b) => dir.rebased_uri(id, b),
        None => dir.uri(id),
    };
    let accept = accept_for(&dir.media_type(id));
    match (valid_request(dir, id), dir.accepts(id)) {
        (Some(body), Some(ct)) => {
            let body = serde_json::to_vec(&body).expect("serialise");
            client.try_request(Method::POST, &uri, &[("content-type", &ct), ("accept", &accept)], body).await
        }
        _ => client.try_request(Method::GET, &uri, &[("accept", &accept)], Bytes::new()).await,
    }
}

async fn post(client: &TestClient, dir: &Directory, id: &str, body: &Value) -> Response {
    let ct = dir.accepts(id).unwrap_or_else(|| panic!("`{id}` is not a POST resource"));
    client.post_json(&dir.uri(id), &ct, Some(&accept_for(&dir.media_type(id))), body).await
}

async fn get(client: &TestClient, dir: &Directory, id: &str) -> Response {
    client.get(&dir.uri(id), Some(&accept_for(&dir.media_type(id)))).await
}

/// GETs or POSTs `id` and asserts a 200 with the resource's media type; returns the JSON.
async fn fetch_ok(client: &TestClient, dir: &Directory, id: &str, body: Option<&Value>) -> Value {
    let r = match body {
        Some(b) => post(client, dir, id, b).await,
        None => get(client, dir, id).await,
    };
    assert_eq!(r.status, StatusCode::OK, "{id} {body:?}: {}", r.describe());
    assert_eq!(r.media_type(), Some(dir.media_type(id)), "{id}: {}", r.describe());
    r.json()
}

async fn metrics(client: &TestClient, origin: &Origin) -> String {
    client.metrics_text(&origin.metrics_url()).await
}

// ---------------------------------------------------------------------------------------------
// The IRD and its resources
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ird_lists_every_resource_and_each_answers_with_its_media_type() {
    let origin = Origin::with_data(&[]);
    assert!(origin.addr.port() != 0 && origin.addr.ip().is_loopback(), "{}", origin.startup_line);
    assert_eq!(origin.startup_line, format!("origin listening on http://127.0.0.1:{}", origin.addr.port()));
    assert!(
        origin.process.early_stdout.is_empty(),
        "stdout before the start-up line: {:?}",
        origin.process.early_stdout
    );
    let client = TestClient::http1();

    // No Accept header means */*.
    let r = client.get(&origin.directory_url(), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.describe());
    assert_eq!(r.media_type().as_deref(), Some(DIRECTORY));
    let dir = Directory { json: r.json() };
    serde_json::from_value::<altoshield::alto::types::Ird>(dir.json.clone())
        .expect("IRD parses as the IRD model");

    let ids: BTreeSet<String> = dir.ids().into_iter().collect();
    let want: BTreeSet<String> = [
        NET,
        "costmap-routingcost-numerical",
        "costmap-routingcost-ordinal",
        "costmap-hopcount-numerical",
        "costmap-hopcount-ordinal",
        "filtered-network-map",
        "filtered-cost-map",
        "endpoint-property",
        "endpoint-cost",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(ids, want, "IRD resources");

    let meta = &dir.json["meta"];
    assert_eq!(dir.default_network_map(), NET);
    for (name, metric, mode) in [
        ("num-routingcost", "routingcost", "numerical"),
        ("ord-routingcost", "routingcost", "ordinal"),
        ("num-hopcount", "hopcount", "numerical"),
        ("ord-hopcount", "hopcount", "ordinal"),
    ] {
        assert_eq!(meta["cost-types"][name]["cost-metric"], metric, "meta.cost-types.{name}: {meta}");
        assert_eq!(meta["cost-types"][name]["cost-mode"], mode, "meta.cost-types.{name}: {meta}");
    }

    // Entries: media types, accepts, capabilities, uses.
    assert_eq!(dir.media_type(NET), NETWORK_MAP);
    assert_eq!(dir.accepts(NET), None);
    for (metric, mode) in [
        ("routingcost", "numerical"),
        ("routingcost", "ordinal"),
        ("hopcount", "numerical"),
        ("hopcount", "ordinal"),
    ] {
        let id = format!("costmap-{metric}-{mode}");
        assert_eq!(dir.media_type(&id), COST_MAP, "{id}");
        assert_eq!(dir.accepts(&id), None, "{id}");
        let names = dir.cost_type_names(&id);
        assert_eq!(names.len(), 1, "{id}: a cost map offers exactly one cost type");
        assert_eq!(first_cost_type(&dir, &id), ct(metric, mode), "{id}: its cost type");
        assert_eq!(dir.entry(&id)["uses"], json!([NET]), "{id} uses");
        assert_eq!(dir.cost_map_for(metric, mode).as_deref(), Some(id.as_str()));
    }
    assert_eq!(dir.find_one(NETWORK_MAP, Some(NETWORK_MAP_FILTER)), "filtered-network-map");
    assert_eq!(dir.find_one(COST_MAP, Some(COST_MAP_FILTER)), "filtered-cost-map");
    assert_eq!(dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS)), "endpoint-property");
    assert_eq!(dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS)), "endpoint-cost");
    for id in ["filtered-cost-map", "endpoint-cost"] {
        let caps = &dir.entry(id)["capabilities"];
        let names: BTreeSet<String> = dir.cost_type_names(id).into_iter().collect();
        let all: BTreeSet<String> = ["num-routingcost", "ord-routingcost", "num-hopcount", "ord-hopcount"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(names, all, "{id} cost-type-names");
        assert_eq!(caps["cost-constraints"], json!(true), "{id} capabilities: {caps}");
    }
    assert_eq!(dir.entry("filtered-cost-map")["uses"], json!([NET]));
    assert_eq!(dir.entry("filtered-network-map")["uses"], json!([NET]));
    assert!(
        dir.entry("endpoint-cost").get("uses").is_none(),
        "ECS MUST NOT declare uses (RFC 7285 §11.5.1.5)"
    );
    let props: BTreeSet<&str> = dir.entry("endpoint-property")["capabilities"]["prop-types"]
        .as_array()
        .expect("prop-types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(props, BTreeSet::from([PID_PROP, "priv:region"]));

    // Absolute URIs at the bound address; each resource answers with its exact media type and
    // a body of the right model.
    for id in dir.ids() {
        let uri = dir.uri(&id);
        assert!(
            uri.starts_with(&format!("{}/", origin.base_url)),
            "{id}: uri {uri} is not under {}",
            origin.base_url
        );
        let r = exercise(&client, &dir, &id, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(r.status, StatusCode::OK, "{id}: {}", r.describe());
        assert_eq!(r.header("content-type"), Some(dir.media_type(&id).as_str()), "{id}: exact Content-Type");
        use altoshield::alto::types::*;
        let parsed = match dir.media_type(&id).as_str() {
            NETWORK_MAP => {
                serde_json::from_slice::<NetworkMapResponse>(&r.body).map(|m| m.meta.vtag.is_some())
            }
            COST_MAP => serde_json::from_slice::<CostMapResponse>(&r.body).map(|m| {
                m.meta.cost_type.is_some() && m.meta.dependent_vtags.as_ref().is_some_and(|d| d.len() == 1)
            }),
            ENDPOINT_PROP => serde_json::from_slice::<EndpointPropResponse>(&r.body)
                .map(|m| m.meta.dependent_vtags.is_some()),
            ENDPOINT_COST => {
                serde_json::from_slice::<EndpointCostResponse>(&r.body).map(|m| m.meta.cost_type.is_some())
            }
            other => panic!("unexpected media type {other}"),
        };
        assert!(
            parsed.unwrap_or_else(|e| panic!("{id}: {e}: {}", r.text_prefix(300))),
            "{id}: required meta missing: {}",
            r.text_prefix(300)
        );
    }
    assert!(
        origin.process.later_stdout().is_empty(),
        "stdout after start-up: {:?}",
        origin.process.later_stdout()
    );
}

#[tokio::test]
async fn public_url_sets_the_ird_uris() {
    let origin = Origin::with_data(&["--public-url", "https://alto.example.test"]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    assert_eq!(dir.ids().len(), 9);
    for id in dir.ids() {
        let uri = dir.uri(&id);
        assert!(uri.starts_with("https://alto.example.test/"), "{id}: {uri}");
        // The same path answers at the bound address.
        let r = exercise(&client, &dir, &id, Some(&origin.base_url))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{id} at {}: {}",
            dir.rebased_uri(&id, &origin.base_url),
            r.describe()
        );
    }
}

#[tokio::test]
async fn accept_negotiation() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let net = dir.uri(NET);
    for accept in [
        NETWORK_MAP,
        "*/*",
        "application/*",
        "application/alto-networkmap+json;q=0.5, */*;q=0.1",
        "Application/ALTO-NetworkMap+JSON",
    ] {
        let r = client.get(&net, Some(accept)).await;
        assert_eq!(r.status, StatusCode::OK, "Accept: {accept}: {}", r.describe());
        assert_eq!(r.media_type().as_deref(), Some(NETWORK_MAP));
    }
    for accept in [
        COST_MAP,
        "text/html",
        "application/alto-networkmap+json;q=0",
        "*/*, application/alto-networkmap+json;q=0",
    ] {
        let r = client.get(&net, Some(accept)).await;
        let e = assert_alto_error(&r, 406, "E_SYNTAX", &format!("GET network map, Accept: {accept}"));
        assert!(e.syntax_error.is_some_and(|t| !t.is_empty()), "406 names its cause");
    }
    let body = valid_request(&dir, "endpoint-cost").expect("ECS body");
    let r = client.post_json(&dir.uri("endpoint-cost"), ENDPOINT_COST_PARAMS, Some(NETWORK_MAP), &body).await;
    assert_alto_error(&r, 406, "E_SYNTAX", "POST ECS accepting only a network map");
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_errors_carry_alto_error_bodies() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let syntax_text = |e: &AltoErrorBody, what: &str| {
        assert!(
            e.syntax_error.as_deref().is_some_and(|t| !t.trim().is_empty()),
            "{what}: syntax-error text missing: {e:?}"
        )
    };

    for path in
        ["/no-such-resource", "/directory/extra", "/networkmap/nope", "/costmap/routingcost", "/metricsx"]
    {
        let r = client.get(&origin.url(path), None).await;
        let e = assert_alto_error(&r, 404, "E_SYNTAX", &format!("GET {path}"));
        syntax_text(&e, path);
        let r = client.post(&origin.url(path), Some(ENDPOINT_COST_PARAMS), None, "{}").await;
        assert_alto_error(&r, 404, "E_SYNTAX", &format!("POST {path}"));
    }

    // 405 with Allow.
    let cases: [(Method, String, &str); 5] = [
        (Method::POST, dir.uri(NET), "GET"),
        (Method::DELETE, dir.uri("costmap-routingcost-ordinal"), "GET"),
        (Method::PUT, origin.directory_url(), "GET"),
        (Method::GET, dir.uri("filtered-cost-map"), "POST"),
        (Method::GET, dir.uri("endpoint-cost"), "POST"),
    ];
    for (method, uri, allowed) in cases {
        let what = format!("{method} {uri}");
        let r = client.request(method, &uri, &[("content-type", COST_MAP_FILTER)], "{}").await;
        let e = assert_alto_error(&r, 405, "E_SYNTAX", &what);
        syntax_text(&e, &what);
        let allow = r.header_all("allow");
        assert!(
            allow.split(',').any(|m| m.trim().eq_ignore_ascii_case(allowed)),
            "{what}: Allow `{allow}` should list {allowed}"
        );
    }

    // 406.
    let r = client.get(&dir.uri(NET), Some(COST_MAP)).await;
    let e = assert_alto_error(&r, 406, "E_SYNTAX", "GET network map accepting a cost map");
    syntax_text(&e, "406");
    let r = client.get(&origin.directory_url(), Some("text/html")).await;
    assert_alto_error(&r, 406, "E_SYNTAX", "GET directory accepting text/html");

    // 415: wrong or missing Content-Type on every POST resource.
    for id in ["filtered-network-map", "filtered-cost-map", "endpoint-property", "endpoint-cost"] {
        let body = serde_json::to_vec(&valid_request(&dir, id).expect("POST")).expect("json");
        let other = if id == "endpoint-cost" { NETWORK_MAP_FILTER } else { ENDPOINT_COST_PARAMS };
        for content_type in [Some("application/json"), Some("text/plain"), Some(other), None] {
            let what = format!("POST {id} with Content-Type {content_type:?}");
            let r = client.post(&dir.uri(id), content_type, None, body.clone()).await;
            let e = assert_alto_error(&r, 415, "E_SYNTAX", &what);
            syntax_text(&e, &what);
        }
        // Parameters on the right type are fine.
        let accepts = dir.accepts(id).expect("accepts");
        let r =
            client.post(&dir.uri(id), Some(&format!("{accepts}; charset=utf-8")), None, body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{id} with charset parameter: {}", r.describe());
    }
}

#[tokio::test]
async fn bodies_over_max_body_get_413() {
    let origin = Origin::with_data(&["--max-body", "1KiB"]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let pad = |n: usize| json!({"cost-type": ct("routingcost", "numerical"), "x-padding": "p".repeat(n)});
    let small = serde_json::to_vec(&pad(800)).expect("json");
    assert!(small.len() < 1024);
    let r = client.post(&dir.uri("filtered-cost-map"), Some(COST_MAP_FILTER), None, small).await;
    assert_eq!(r.status, StatusCode::OK, "a body under the limit: {}", r.describe());
    let big = serde_json::to_vec(&pad(3000)).expect("json");
    for id in ["filtered-network-map", "filtered-cost-map", "endpoint-property", "endpoint-cost"] {
        let r = client.post(&dir.uri(id), Some(&dir.accepts(id).expect("accepts")), None, big.clone()).await;
        let e = assert_alto_error(&r, 413, "E_SYNTAX", &format!("{id}: 3 KiB body over a 1 KiB limit"));
        assert!(e.syntax_error.is_some_and(|t| !t.is_empty()));
    }
    // A chunked body (no Content-Length) is limited too.
    let path = path_of(&dir.uri("filtered-cost-map"));
    let chunk = format!("{{\"cost-type\": {{\"cost-metric\": \"routingcost\", \"cost-mode\": \"numerical\"}}, \"x\": \"{}\"}}", "p".repeat(2000));
    let mut conn = RawConn::connect(origin.addr, Duration::from_secs(10)).expect("connect");
    conn.send(
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {COST_MAP_FILTER}\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
    )
    .expect("send");
    let r = conn.read_response().expect("an answer to a chunked body over the limit");
    assert_eq!(r.status, 413, "chunked body over the limit: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some(ALTO_ERROR));

    // The default limit is 1 MiB (HTTP/2 here, so the unread rest of the body cannot reset the
    // connection under the answer).
    let origin = Origin::with_data(&[]);
    let h2 = TestClient::http2();
    let dir = Directory::fetch(&h2, &origin.directory_url()).await;
    let big = serde_json::to_vec(&pad(1_100_000)).expect("json");
    let r = h2.post(&dir.uri("filtered-cost-map"), Some(COST_MAP_FILTER), None, big).await;
    assert_alto_error(&r, 413, "E_SYNTAX", "1.1 MB body over the default 1 MiB limit");
}

/// The cases of `tests/fixtures/origin/invalid-requests.json`: each body must get a 400 with
/// one of the listed codes, and the listed `field` (or a field under `field-prefix`) and
/// `value`.
#[tokio::test]
async fn invalid_requests_get_400_with_code_and_field() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let path = fixture("origin/invalid-requests.json");
    let doc: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read fixture")).expect("fixture JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let id = case["resource"].as_str().expect("resource");
        let codes: Vec<&str> =
            case["codes"].as_array().expect("codes").iter().filter_map(Value::as_str).collect();
        let field = case.get("field").and_then(Value::as_str);
        let prefix = case.get("field-prefix").and_then(Value::as_str);
        let value = case.get("value");
        let r = post(&client, &dir, id, &case["body"]).await;
        let problem = match alto_error(&r) {
            _ if r.status != StatusCode::BAD_REQUEST => Some(format!("status {}", r.status)),
            Err(m) => Some(m),
            Ok(e) if !codes.contains(&e.code.as_str()) => Some(format!("code {}", e.code)),
            Ok(e) if field.is_some() && e.field.as_deref() != field => Some(format!("field {:?}", e.field)),
            Ok(e) if prefix.is_some_and(|p| !e.field.as_deref().is_some_and(|f| f.starts_with(p))) => {
                Some(format!("field {:?}", e.field))
            }
            Ok(e) if value.is_some() && e.value.as_ref() != value => Some(format!("value {:?}", e.value)),
            Ok(e) if e.value.is_some() && e.field.is_none() => {
                Some("value without field (RFC 7285 §8.5.2)".into())
            }
            Ok(_) => None,
        };
        if let Some(p) = problem {
            failures.push(format!(
                "POST {id} {}\n  expected {case}\n  got {p}: {}",
                case["body"],
                r.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid requests answered wrongly:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// New versions
// ---------------------------------------------------------------------------------------------

/// prefix → PID of a network map answer.
fn prefix_owners(map: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (pid, group) in map["network-map"].as_object().expect("network-map object") {
        for prefixes in group.as_object().expect("address group").values() {
            for p in prefixes.as_array().expect("prefix list") {
                out.insert(p.as_str().expect("prefix").to_string(), pid.clone());
            }
        }
    }
    out
}

/// Longest-prefix match done here, independently of the crate.
fn lpm(map: &Value, addr: IpAddr) -> Option<String> {
    prefix_owners(map)
        .into_iter()
        .filter_map(|(p, pid)| p.parse::<IpNet>().ok().map(|n| (n, pid)))
        .filter(|(n, _)| n.contains(&addr))
        .max_by_key(|(n, _)| n.prefix_len())
        .map(|(_, pid)| pid)
}

fn typed(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("ipv4:{a}"),
        IpAddr::V6(a) => format!("ipv6:{a}"),
    }
}

/// Addresses that exercise every prefix of a map: each prefix's first and last address.
fn probe_addresses(map: &Value) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = prefix_owners(map)
        .keys()
        .filter_map(|p| p.parse::<IpNet>().ok())
        .flat_map(|n| [n.network(), n.broadcast()])
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The resource ids a client needs, found through the IRD (so that generated data sets, whose
/// ids differ, are checked the same way).
struct Ids {
    net: String,
    pid_prop: String,
    num_maps: Vec<String>,
    fnm: String,
    fcm: String,
    eps: String,
    ecs: String,
}

fn ids(dir: &Directory) -> Ids {
    let net = dir.default_network_map();
    Ids {
        pid_prop: format!("{net}.pid"),
        num_maps: dir
            .find(COST_MAP, None)
            .into_iter()
            .filter(|id| first_cost_type(dir, id)["cost-mode"] == "numerical")
            .collect(),
        fnm: dir.find_one(NETWORK_MAP, Some(NETWORK_MAP_FILTER)),
        fcm: dir.find_one(COST_MAP, Some(COST_MAP_FILTER)),
        eps: dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS)),
        ecs: dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS)),
        net,
    }
}

/// Checks that EPS `pid` answers agree with an LPM (done here) over `map` for the first and
/// last address of every prefix, and that ECS numerical routingcost answers equal the cost
/// map's entry for those PIDs.
async fn assert_consistent(client: &TestClient, dir: &Directory, map: &Value, costs: &Value, what: &str) {
    let ids = ids(dir);
    let addrs = probe_addresses(map);
    let endpoints: Vec<String> = addrs.iter().map(|a| typed(*a)).collect();
    let eps =
        fetch_ok(client, dir, &ids.eps, Some(&json!({"properties": [ids.pid_prop], "endpoints": endpoints})))
            .await;
    let mut wrong = Vec::new();
    for a in &addrs {
        let want = lpm(map, *a);
        let got = eps["endpoint-properties"][typed(*a)][&ids.pid_prop].as_str().map(String::from);
        if got != want {
            wrong.push(format!("pid of {a}: {got:?}, longest match says {want:?}"));
        }
    }
    let sample: Vec<String> = endpoints.iter().step_by((endpoints.len() / 10).max(1)).cloned().collect();
    let body =
        json!({"cost-type": ct("routingcost", "numerical"), "endpoints": {"srcs": sample, "dsts": sample}});
    let ecs = fetch_ok(client, dir, &ids.ecs, Some(&body)).await;
    let pid =
        |t: &str| lpm(map, t.split_once(':').expect("typed").1.parse().expect("ip")).expect("complete map");
    for s in &sample {
        for d in &sample {
            let want = costs["cost-map"].get(pid(s)).and_then(|r| r.get(pid(d))).map(normalize_numbers);
            let got = ecs["endpoint-cost-map"].get(s).and_then(|r| r.get(d)).map(normalize_numbers);
            if got != want {
                wrong.push(format!("ECS {s} → {d}: {got:?}, the maps say {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{what}: {} inconsistencies:\n{}", wrong.len(), wrong.join("\n"));
}

/// Bumps an origin started with `args` and checks that everything moved to the new version.
async fn check_bump(args: &[&str]) {
    let origin = Origin::start(args);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let ids = ids(&dir);
    assert!(!ids.num_maps.is_empty(), "no numerical cost map");
    let rc_num = dir.cost_map_for("routingcost", "numerical").expect("routingcost numerical map");
    let net1 = fetch_ok(&client, &dir, &ids.net, None).await;
    let tag1 = net1["meta"]["vtag"]["tag"].as_str().expect("tag").to_string();
    let mut before = BTreeMap::new();
    for id in &ids.num_maps {
        before.insert(id.clone(), fetch_ok(&client, &dir, id, None).await);
    }
    assert_consistent(&client, &dir, &net1, &before[&rc_num], "before the bump").await;

    // Any or no body, no Content-Type.
    let r = client.post(&origin.url("/bump"), None, None, Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK, "POST /bump: {}", r.describe());
    let bumped = r.json();
    assert_eq!(bumped["network-map"]["resource-id"], json!(ids.net), "{bumped}");
    let tag2 = bumped["network-map"]["tag"].as_str().expect("tag").to_string();
    assert_ne!(tag1, tag2, "a bump must publish a new tag");
    let vt2 = vtag(&ids.net, &tag2);

    let net2 = fetch_ok(&client, &dir, &ids.net, None).await;
    assert_eq!(net2["meta"]["vtag"], vt2, "network map after the bump");
    for id in dir.find(COST_MAP, None) {
        let m = fetch_ok(&client, &dir, &id, None).await;
        assert_eq!(m["meta"]["dependent-vtags"], json!([vt2]), "{id} after the bump");
    }
    let fnm = fetch_ok(&client, &dir, &ids.fnm, Some(&json!({"pids": []}))).await;
    assert_eq!(fnm["meta"]["vtag"], vt2);
    assert_eq!(fnm["network-map"], net2["network-map"], "filtered (all PIDs) = full map");
    for mode in ["numerical", "ordinal"] {
        let fcm =
            fetch_ok(&client, &dir, &ids.fcm, Some(&json!({"cost-type": ct("routingcost", mode)}))).await;
        assert_eq!(fcm["meta"]["dependent-vtags"], json!([vt2]), "filtered cost map {mode}");
        let full_id = dir.cost_map_for("routingcost", mode).expect("routingcost map");
        let full = fetch_ok(&client, &dir, &full_id, None).await;
        assert_eq!(
            normalize_answer(&fcm),
            normalize_answer(&full),
            "unfiltered filtered cost map = full map ({mode})"
        );
    }
    let eps = fetch_ok(
        &client,
        &dir,
        &ids.eps,
        Some(&json!({"properties": [ids.pid_prop], "endpoints": ["ipv4:10.1.2.3"]})),
    )
    .await;
    assert_eq!(eps["meta"]["dependent-vtags"], json!([vt2]));

    // Some prefix moved PID.
    let (o1, o2) = (prefix_owners(&net1), prefix_owners(&net2));
    let moved: Vec<_> = o1.iter().filter(|(p, pid)| o2.get(*p).is_some_and(|p2| p2 != *pid)).collect();
    assert!(!moved.is_empty(), "no prefix moved PID:\nbefore {o1:?}\nafter {o2:?}");

    // Every numerical cost changed.
    for id in &ids.num_maps {
        let after = fetch_ok(&client, &dir, id, None).await;
        let mut common = 0;
        let mut unchanged = Vec::new();
        for (s, row) in before[id]["cost-map"].as_object().expect("cost-map") {
            for (d, v) in row.as_object().expect("row") {
                if let Some(v2) = after["cost-map"].get(s).and_then(|r| r.get(d)) {
                    common += 1;
                    if normalize_numbers(v) == normalize_numbers(v2) {
                        unchanged.push(format!("{s}→{d}={v}"));
                    }
                }
            }
        }
        assert!(common > 0, "{id}: no pair survived the bump");
        assert!(unchanged.is_empty(), "{id}: costs unchanged by the bump: {unchanged:?}");
        if *id == rc_num {
            assert_consistent(&client, &dir, &net2, &after, "after the bump").await;
        }
    }

    // A second bump: yet another tag. A tag seen before would name two different sets of
    // costs, and a version-aware cache keyed on it would serve the old ones.
    let r = client.post(&origin.url("/bump"), Some("application/json"), None, "{\"why\": \"test\"}").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.describe());
    let tag3 = r.json()["network-map"]["tag"].as_str().expect("tag").to_string();
    let net3 = fetch_ok(&client, &dir, &ids.net, None).await;
    assert_eq!(net3["meta"]["vtag"]["tag"], json!(tag3));
    let cost3 = fetch_ok(&client, &dir, &rc_num, None).await;
    assert!(
        tag3 != tag2 && tag3 != tag1,
        "the second bump re-published tag {tag3} (tags: {tag1}, {tag2}, {tag3}); network map identical to that \
         version's: {}; routingcost map identical to version 1's: {}",
        if tag3 == tag1 { net3["network-map"] == net1["network-map"] } else { net3["network-map"] == net2["network-map"] },
        cost3["cost-map"] == before[&rc_num]["cost-map"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bump_publishes_a_new_version_everywhere() {
    let data = origin_data_dir();
    check_bump(&["--data", data.to_str().expect("utf-8")]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bump_publishes_a_new_version_of_generated_data() {
    check_bump(&["--generate", "--pids", "8", "--prefixes-per-pid", "4", "--seed", "3"]).await;
}

/// What the shield relies on: a network-map tag names one content, for the network map and for
/// every map that depends on it, and versions only move forward, even for readers racing bumps.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_always_names_the_same_maps_and_versions_only_move_forward() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let origin = Origin::with_data(&[]);
    let client = TestClient::http2();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let first = fetch_ok(&client, &dir, NET, None).await;
    let mut tags = vec![first["meta"]["vtag"]["tag"].as_str().expect("tag").to_string()];

    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (client, dir, stop) = (client.clone(), dir.clone(), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            // (network map tag, its map, cost map tag, its costs), in the order read.
            let mut seen = Vec::new();
            for _ in 0..2_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let net = fetch_ok(&client, &dir, NET, None).await;
                let cost = fetch_ok(&client, &dir, "costmap-routingcost-numerical", None).await;
                seen.push((
                    net["meta"]["vtag"]["tag"].as_str().expect("tag").to_string(),
                    net["network-map"].clone(),
                    cost["meta"]["dependent-vtags"][0]["tag"].as_str().expect("tag").to_string(),
                    cost["cost-map"].clone(),
                ));
            }
            seen
        }));
    }
    for _ in 0..6 {
        let r = client.post(&origin.url("/bump"), None, None, Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.describe());
        tags.push(r.json()["network-map"]["tag"].as_str().expect("tag").to_string());
    }
    stop.store(true, Ordering::Relaxed);

    let mut nets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut costs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut backwards = Vec::new();
    let index = |t: &str| tags.iter().position(|x| x == t);
    for reader in readers {
        let seen = reader.await.expect("reader");
        let mut last = 0;
        for (nt, nm, ct, cm) in seen {
            nets.entry(nt.clone()).or_default().insert(nm.to_string());
            costs.entry(ct.clone()).or_default().insert(normalize_numbers(&cm).to_string());
            let (Some(ni), Some(ci)) = (index(&nt), index(&ct)) else {
                backwards.push(format!("a tag never announced by /bump: {nt} / {ct}"));
                continue;
            };
            if ni < last || ci < ni {
                backwards.push(format!(
                    "read version {ni} then cost map of version {ci} after having seen version {last}"
                ));
            }
            last = last.max(ci);
        }
    }
    let distinct: BTreeSet<&String> = tags.iter().collect();
    assert_eq!(distinct.len(), tags.len(), "bumps re-published a tag: {tags:?}");
    for (t, contents) in nets.iter() {
        assert_eq!(contents.len(), 1, "tag {t} named {} different network maps", contents.len());
    }
    for (t, contents) in costs.iter() {
        assert_eq!(contents.len(), 1, "dependent tag {t} named {} different cost maps", contents.len());
    }
    assert!(backwards.is_empty(), "versions went backwards: {:?}", &backwards[..backwards.len().min(10)]);
}

#[tokio::test]
async fn sighup_publishes_a_new_version() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let net1 = fetch_ok(&client, &dir, NET, None).await;
    let tag1 = net1["meta"]["vtag"]["tag"].clone();
    let cost1 = fetch_ok(&client, &dir, "costmap-routingcost-numerical", None).await;
    origin.process.signal("HUP");
    // A signal has no acknowledgement: poll for the new version, bounded.
    let net2 = eventually(Duration::from_secs(10), || async {
        let m = fetch_ok(&client, &dir, NET, None).await;
        (m["meta"]["vtag"]["tag"] != tag1).then_some(m)
    })
    .await
    .expect("SIGHUP did not publish a new network map within 10 s");
    let vt2 = net2["meta"]["vtag"].clone();
    let cost2 = fetch_ok(&client, &dir, "costmap-routingcost-numerical", None).await;
    assert_eq!(cost2["meta"]["dependent-vtags"], json!([vt2]));
    assert_ne!(cost1["cost-map"], cost2["cost-map"], "costs changed");
    // Still serving after the signal.
    let r = client.get(&origin.directory_url(), None).await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn metrics_count_exactly_what_was_served() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let m0 = metrics(&client, &origin).await;

    let dir = Directory::fetch(&client, &origin.directory_url()).await; // directory 1
    let r = client.get(&origin.directory_url(), None).await; // directory 2
    assert_eq!(r.status, 200);
    for _ in 0..3 {
        fetch_ok(&client, &dir, NET, None).await; // network map 1..3
    }
    assert_eq!(client.get(&dir.uri(NET), Some(COST_MAP)).await.status, 406); // network map 4
    assert_eq!(client.post(&dir.uri(NET), None, None, "x").await.status, 405); // network map 5
    fetch_ok(&client, &dir, "costmap-routingcost-numerical", None).await; // 1
    let m_mid = metrics(&client, &origin).await; // not counted
    let fcm = json!({"cost-type": ct("routingcost", "numerical"), "pids": {"srcs": ["pid-a"]}});
    fetch_ok(&client, &dir, "filtered-cost-map", Some(&fcm)).await; // fcm 1
    fetch_ok(&client, &dir, "filtered-cost-map", Some(&fcm)).await; // fcm 2
    assert_eq!(
        client.post(&dir.uri("filtered-cost-map"), Some(COST_MAP_FILTER), None, "{").await.status,
        400
    ); // 3
    assert_eq!(
        client.post(&dir.uri("filtered-cost-map"), Some("application/json"), None, "{}").await.status,
        415
    ); // 4
    assert_eq!(client.get(&dir.uri("filtered-cost-map"), None).await.status, 405); // 5
    for path in ["/nope", "/nope/deeper", "/costmap/filtered/x"] {
        assert_eq!(client.get(&origin.url(path), None).await.status, 404); // unknown 1..3
    }
    let bump = client.post(&origin.url("/bump"), None, None, Bytes::new()).await; // not counted
    assert_eq!(bump.status, 200);
    let ecs = |srcs: Option<Vec<&str>>, dsts: Vec<&str>, constraints: Vec<&str>| {
        let mut endpoints = json!({"dsts": dsts});
        if let Some(s) = srcs {
            endpoints["srcs"] = json!(s);
        }
        json!({"cost-type": ct("routingcost", "numerical"), "constraints": constraints, "endpoints": endpoints})
    };
    let ecs_requests = [
        // 2 distinct sources (one spelled twice) × 3 distinct destinations = 6
        ecs(
            Some(vec!["ipv6:2001:db8::1", "ipv6:2001:DB8:0::1", "ipv4:10.0.0.2"]),
            vec!["ipv4:192.0.2.1", "ipv4:192.0.2.2", "ipv4:192.0.2.3", "ipv4:192.0.2.3"],
            vec![],
        ),
        ecs(
            Some(vec!["ipv4:10.0.0.1"]),
            vec!["ipv4:192.0.2.1", "ipv4:192.0.2.2", "ipv4:192.0.2.3", "ipv4:8.8.8.8"],
            vec![],
        ), // 4
        ecs(Some(vec!["ipv4:10.0.0.1"]), vec!["ipv4:192.0.2.1", "ipv4:192.0.2.2"], vec!["lt 0"]), // 2, answer empty
        ecs(None, vec!["ipv4:192.0.2.1", "ipv4:192.0.2.2", "ipv4:192.0.2.3"], vec![]), // client × 3 = 3
    ];
    for body in &ecs_requests {
        fetch_ok(&client, &dir, "endpoint-cost", Some(body)).await;
    }
    let bad = ecs(Some(vec!["ipv4:10.0.0.1"]), vec!["ipv4:999.0.0.1"], vec![]);
    assert_eq!(post(&client, &dir, "endpoint-cost", &bad).await.status, 400); // counted, 0 pairs
    fetch_ok(
        &client,
        &dir,
        "endpoint-property",
        Some(&json!({"properties": ["priv:region"], "endpoints": ["ipv4:10.0.0.1"]})),
    )
    .await;
    fetch_ok(&client, &dir, "filtered-network-map", Some(&json!({"pids": ["pid-a"]}))).await;

    let m1 = metrics(&client, &origin).await;
    let served = |m: &str, r: &str| metric(m, SERVED, &[("resource", r)]);
    let expected = [
        ("directory", 2.0),
        (NET, 5.0),
        ("costmap-routingcost-numerical", 1.0),
        ("costmap-routingcost-ordinal", 0.0),
        ("filtered-cost-map", 5.0),
        ("unknown", 3.0),
        ("endpoint-cost", 5.0),
        ("endpoint-property", 1.0),
        ("filtered-network-map", 1.0),
    ];
    let mut wrong = Vec::new();
    for (res, want) in expected {
        let got = served(&m1, res) - served(&m0, res);
        if got != want {
            wrong.push(format!("{SERVED}{{resource=\"{res}\"}} moved by {got}, expected {want}"));
        }
    }
    let total: f64 = expected.iter().map(|(_, n)| n).sum();
    let got_total = metric(&m1, SERVED, &[]) - metric(&m0, SERVED, &[]);
    if got_total != total {
        wrong.push(format!(
            "all {SERVED} series moved by {got_total}, expected {total} (/metrics and /bump must not count); labels: {:?}",
            label_values(&m1, SERVED, "resource")
        ));
    }
    let pairs = metric(&m1, ECS_PAIRS, &[("resource", "endpoint-cost")])
        - metric(&m0, ECS_PAIRS, &[("resource", "endpoint-cost")]);
    if pairs != 15.0 {
        wrong.push(format!(
            "{ECS_PAIRS}{{resource=\"endpoint-cost\"}} moved by {pairs}, expected 6+4+2+3 = 15"
        ));
    }
    assert!(wrong.is_empty(), "{}\n\nmetrics before:\n{m0}\nmetrics after:\n{m1}", wrong.join("\n"));
    // The mid-run scrape saw the work done until then, and the scrape itself was not counted.
    assert_eq!(served(&m_mid, "directory") - served(&m0, "directory"), 2.0);
    assert_eq!(served(&m_mid, NET) - served(&m0, NET), 5.0);
    for res in label_values(&m1, SERVED, "resource") {
        assert!(
            res == "directory" || res == "unknown" || dir.resources().contains_key(&res),
            "unexpected resource label {res:?} (label values must be bounded)"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn http2_prior_knowledge_on_plain_tcp() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http2();
    let r = client.get(&origin.directory_url(), None).await;
    assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_2), "{}", r.describe());
    let dir = Directory { json: r.json() };
    for id in dir.ids() {
        let r = exercise(&client, &dir, &id, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_2), "{id}: {}", r.describe());
        assert_eq!(r.media_type(), Some(dir.media_type(&id)));
    }
    // Many concurrent streams on the shared connection, identical answers.
    let body = json!({"cost-type": ct("routingcost", "ordinal"),
        "endpoints": {"srcs": ["ipv4:10.1.2.3"], "dsts": ["ipv4:192.0.2.5", "ipv4:203.0.113.70", "ipv4:8.8.8.8"]}});
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (client, uri, body) = (client.clone(), dir.uri("endpoint-cost"), body.clone());
        tasks.push(tokio::spawn(
            async move { client.post_json(&uri, ENDPOINT_COST_PARAMS, None, &body).await },
        ));
    }
    let mut bodies = BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("task");
        assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_2), "{}", r.describe());
        bodies.insert(r.json().to_string());
    }
    assert_eq!(bodies.len(), 1, "concurrent identical requests got different answers: {bodies:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_http1_and_h2() {
    let cert = TestCert::new();
    let origin = Origin::with_data(&["--cert", cert.cert_arg(), "--key", cert.key_arg()]);
    assert_eq!(origin.startup_line, format!("origin listening on https://127.0.0.1:{}", origin.addr.port()));
    assert!(origin.base_url.starts_with("https://"));

    let h1 = TestClient::tls(Proto::Http1, &cert);
    let r = h1.get(&origin.directory_url(), None).await;
    assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_11), "{}", r.describe());
    let dir = Directory { json: r.json() };
    for id in dir.ids() {
        assert!(
            dir.uri(&id).starts_with(&format!("https://127.0.0.1:{}/", origin.addr.port())),
            "{id}: {}",
            dir.uri(&id)
        );
        let r =
            exercise(&h1, &dir, &id, None).await.unwrap_or_else(|e| panic!("{id} over TLS HTTP/1.1: {e}"));
        assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_11), "{id}: {}", r.describe());
    }

    let h2 = TestClient::tls(Proto::Http2, &cert);
    let mut tasks = Vec::new();
    for id in dir.ids().into_iter().cycle().take(40) {
        let (h2, dir) = (h2.clone(), dir.clone());
        tasks.push(tokio::spawn(async move { (exercise(&h2, &dir, &id, None).await, id) }));
    }
    for t in tasks {
        let (r, id) = t.await.expect("task");
        let r = r.unwrap_or_else(|e| panic!("{id} over TLS h2: {e}"));
        assert_eq!((r.status, r.version), (StatusCode::OK, Version::HTTP_2), "{id}: {}", r.describe());
        assert_eq!(r.media_type(), Some(dir.media_type(&id)));
    }

    // TLS is real: a client that does not trust the certificate gets no answer.
    let stranger = TestClient::http1();
    let res = stranger.try_request(Method::GET, &origin.directory_url(), &[], Bytes::new()).await;
    assert!(
        matches!(res, Err(RequestError::Failed(_))),
        "an untrusted certificate must fail the handshake: {res:?}"
    );
}

#[test]
fn http1_keep_alive_serves_several_requests_on_one_connection() {
    let origin = Origin::with_data(&[]);
    let mut conn = RawConn::connect(origin.addr, Duration::from_secs(10)).expect("connect");
    conn.send(b"GET /directory HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
    let ird = conn.read_response().expect("IRD answer");
    assert_eq!(ird.status, 200);
    let dir: Value = serde_json::from_slice(&ird.body).expect("IRD JSON");
    let net_path = path_of(dir["resources"][NET]["uri"].as_str().expect("uri"));
    let ecs_path = path_of(dir["resources"]["endpoint-cost"]["uri"].as_str().expect("uri"));
    conn.send(
        format!("GET {net_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {NETWORK_MAP}\r\n\r\n").as_bytes(),
    )
    .expect("send");
    let net = conn.read_response().expect("network map on the same connection");
    assert_eq!(net.status, 200);
    assert_eq!(net.header("content-type"), Some(NETWORK_MAP));
    let body = r#"{"cost-type":{"cost-metric":"routingcost","cost-mode":"numerical"},"endpoints":{"srcs":["ipv4:10.2.0.1"],"dsts":["ipv4:192.0.2.5"]}}"#;
    // Two requests written back to back (pipelined), answered in order.
    let req = format!(
        "POST {ecs_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ENDPOINT_COST_PARAMS}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.send(format!("{req}{req}").as_bytes()).expect("send");
    for i in 0..2 {
        let r = conn.read_response().unwrap_or_else(|e| panic!("pipelined answer {i}: {e}"));
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            normalize_numbers(&v["endpoint-cost-map"]["ipv4:10.2.0.1"]["ipv4:192.0.2.5"]),
            normalize_numbers(&json!(10))
        );
    }
    // A malformed request line gets an error, not a hang.
    conn.send(b"NONSENSE\r\n\r\n").expect("send");
    match conn.read_response() {
        Ok(r) => assert!((400..500).contains(&r.status), "malformed request line: {}", r.status),
        Err(e) => assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "hang: {e}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Knobs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn delay_ms_delays_every_alto_answer() {
    let origin = Origin::with_data(&["--delay-ms", "400"]);
    let client = TestClient::http1();
    let started = Instant::now();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let ird_took = started.elapsed();
    assert!(ird_took >= Duration::from_millis(400), "IRD answered after {ird_took:?}");
    for id in [NET, "endpoint-cost"] {
        let started = Instant::now();
        let r = exercise(&client, &dir, id, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        let took = started.elapsed();
        assert_eq!(r.status, 200);
        assert!(took >= Duration::from_millis(400), "{id} answered after {took:?}, less than --delay-ms 400");
    }
}

#[tokio::test]
async fn max_age_adds_cache_control_only_when_asked() {
    let plain = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &plain.directory_url()).await;
    for id in dir.ids() {
        let r = exercise(&client, &dir, &id, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(r.status, 200);
        assert!(
            !r.header_all("cache-control").contains("max-age"),
            "{id}: freshness without --max-age: {:?}",
            r.headers
        );
        assert!(r.header("expires").is_none(), "{id}: Expires without --max-age");
    }
    let origin = Origin::with_data(&["--max-age", "60"]);
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    for id in [NET.to_string(), "costmap-routingcost-numerical".to_string()] {
        let r = exercise(&client, &dir, &id, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(r.status, 200);
        let cc = r.header_all("cache-control");
        assert!(cc.split(',').any(|d| d.trim() == "max-age=60"), "{id}: Cache-Control `{cc}`");
    }
}

/// ECS numerical routingcost for `addrs` × `addrs` against the map-derived costs; returns the
/// pairs that differ (value or presence).
async fn ecs_deviations(client: &TestClient, dir: &Directory, addrs: &[&str]) -> Vec<String> {
    let eps = fetch_ok(
        client,
        dir,
        "endpoint-property",
        Some(&json!({"properties": [PID_PROP], "endpoints": addrs})),
    )
    .await;
    let costs = fetch_ok(client, dir, "costmap-routingcost-numerical", None).await;
    let ecs = fetch_ok(
        client,
        dir,
        "endpoint-cost",
        Some(&json!({"cost-type": ct("routingcost", "numerical"), "endpoints": {"srcs": addrs, "dsts": addrs}})),
    )
    .await;
    let pid = |a: &str| eps["endpoint-properties"][a][PID_PROP].as_str().expect("pid").to_string();
    let mut diff = Vec::new();
    for s in addrs {
        for d in addrs {
            let from_maps = costs["cost-map"].get(pid(s)).and_then(|r| r.get(pid(d))).map(normalize_numbers);
            let from_ecs = ecs["endpoint-cost-map"].get(*s).and_then(|r| r.get(*d)).map(normalize_numbers);
            if from_maps != from_ecs {
                diff.push(format!("{s}→{d}: maps {from_maps:?}, ECS {from_ecs:?}"));
            }
        }
    }
    diff
}

#[tokio::test]
async fn ecs_deviate_makes_endpoint_costs_differ_from_the_maps() {
    let addrs = [
        "ipv4:10.1.2.3",
        "ipv4:10.2.0.1",
        "ipv4:192.0.2.200",
        "ipv4:192.0.2.5",
        "ipv4:203.0.113.70",
        "ipv4:203.0.113.5",
        "ipv4:8.8.8.8",
        "ipv6:2001:db8:a::1",
        "ipv6:2001:db8:c:1::5",
    ];
    let client = TestClient::http1();
    let faithful = Origin::with_data(&[]);
    let dir = Directory::fetch(&client, &faithful.directory_url()).await;
    let diff = ecs_deviations(&client, &dir, &addrs).await;
    assert!(diff.is_empty(), "without --ecs-deviate ECS must follow the maps: {diff:?}");

    let deviating = Origin::with_data(&["--ecs-deviate"]);
    let dir = Directory::fetch(&client, &deviating.directory_url()).await;
    let diff = ecs_deviations(&client, &dir, &addrs).await;
    assert!(!diff.is_empty(), "with --ecs-deviate some endpoint cost must differ from the map-derived one");
}

#[tokio::test]
async fn delegate_adds_a_directory_entry() {
    let target = "http://127.0.0.1:9/other/directory";
    let origin = Origin::with_data(&["--delegate", target]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let e = dir.entry("delegated-directory");
    assert_eq!(e["uri"], target, "{e}");
    assert_eq!(e["media-type"], DIRECTORY, "{e}");
    assert_eq!(dir.find(DIRECTORY, None), vec!["delegated-directory".to_string()]);
    // Everything else is still there and served.
    assert_eq!(dir.ids().len(), 10);
    let plain = Origin::with_data(&[]);
    let plain_dir = Directory::fetch(&client, &plain.directory_url()).await;
    assert!(plain_dir.find(DIRECTORY, None).is_empty(), "no delegation entry without --delegate");
}

#[tokio::test]
async fn id_prefix_renames_every_resource_and_cost_type() {
    let origin = Origin::with_data(&["--id-prefix", "up1-"]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let net = "up1-my-default-network-map";
    for id in dir.ids() {
        assert!(id.starts_with("up1-"), "resource id {id}");
        for name in dir.cost_type_names(&id) {
            assert!(name.starts_with("up1-"), "{id}: cost type name {name}");
            assert!(
                dir.json["meta"]["cost-types"].get(&name).is_some(),
                "{id}: {name} not in meta.cost-types"
            );
        }
        let r = exercise(&client, &dir, &id, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(r.status, 200, "{id}: {}", r.describe());
    }
    for name in dir.json["meta"]["cost-types"].as_object().expect("cost-types").keys() {
        assert!(name.starts_with("up1-"), "meta.cost-types name {name}");
    }
    assert_eq!(dir.default_network_map(), net);
    let m = fetch_ok(&client, &dir, net, None).await;
    assert_eq!(m["meta"]["vtag"]["resource-id"], net);
    let c =
        fetch_ok(&client, &dir, &dir.cost_map_for("routingcost", "numerical").expect("cost map"), None).await;
    assert_eq!(c["meta"]["dependent-vtags"][0]["resource-id"], net);
    let eps_id = dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS));
    let prop = format!("{net}.pid");
    let eps = fetch_ok(
        &client,
        &dir,
        &eps_id,
        Some(&json!({"properties": [prop], "endpoints": ["ipv4:10.1.2.3"]})),
    )
    .await;
    assert_eq!(eps["endpoint-properties"]["ipv4:10.1.2.3"][&prop], "pid-a-core");
    let text = metrics(&client, &origin).await;
    assert_eq!(metric(&text, SERVED, &[("resource", net)]), 2.0, "metrics use the prefixed ids:\n{text}");
}

#[tokio::test]
async fn generated_data_is_deterministic_and_well_formed() {
    let args = ["--generate", "--pids", "5", "--prefixes-per-pid", "3", "--seed", "7"];
    let (a, b) = (Origin::start(&args), Origin::start(&args));
    let client = TestClient::http1();
    let (da, db) = (
        Directory::fetch(&client, &a.directory_url()).await,
        Directory::fetch(&client, &b.directory_url()).await,
    );
    assert_eq!(da.ids(), db.ids());
    let maps: Vec<String> = da.find(NETWORK_MAP, None).into_iter().chain(da.find(COST_MAP, None)).collect();
    assert!(maps.len() >= 3, "a network map and cost maps: {maps:?}");
    assert!(
        da.cost_map_for("routingcost", "numerical").is_some()
            && da.cost_map_for("routingcost", "ordinal").is_some()
    );
    for id in &maps {
        let (ra, rb) = (get(&client, &da, id).await, get(&client, &db, id).await);
        assert_eq!(ra.status, 200, "{id}");
        assert!(ra.body == rb.body, "{id}: same flags must give the same bytes");
    }
    let net_id = da.default_network_map();
    let net = fetch_ok(&client, &da, &net_id, None).await;
    check_generated_map(&net, 5, 3);
    let costs =
        fetch_ok(&client, &da, &da.cost_map_for("routingcost", "numerical").expect("map"), None).await;
    assert_consistent(&client, &da, &net, &costs, "generated data").await;

    // A different seed gives different data.
    let c = Origin::start(&["--generate", "--pids", "5", "--prefixes-per-pid", "3", "--seed", "8"]);
    let dc = Directory::fetch(&client, &c.directory_url()).await;
    let other = get(&client, &dc, &dc.default_network_map()).await;
    assert!(other.body != get(&client, &da, &net_id).await.body, "seed 8 generated the same map as seed 7");

    // The default with no data flags is --generate --pids 50 --prefixes-per-pid 10 --seed 1.
    let (d, e) = (
        Origin::start(&[]),
        Origin::start(&["--generate", "--pids", "50", "--prefixes-per-pid", "10", "--seed", "1"]),
    );
    let (dd, de) = (
        Directory::fetch(&client, &d.directory_url()).await,
        Directory::fetch(&client, &e.directory_url()).await,
    );
    let (nd, ne) = (
        get(&client, &dd, &dd.default_network_map()).await,
        get(&client, &de, &de.default_network_map()).await,
    );
    assert!(nd.body == ne.body, "the default data set is not --pids 50 --prefixes-per-pid 10 --seed 1");
    check_generated_map(&nd.json(), 50, 10);
}

/// A generated map: one default PID with `0.0.0.0/0` and `::/0`; `pids` other PIDs, each with
/// `per_pid` IPv4 prefixes and some IPv6; no prefix in two PIDs; some prefixes nested.
fn check_generated_map(net: &Value, pids: usize, per_pid: usize) {
    let map = net["network-map"].as_object().expect("network-map");
    let has = |g: &Value, t: &str, p: &str| g[t].as_array().is_some_and(|a| a.iter().any(|x| x == p));
    let defaults: Vec<&String> = map
        .iter()
        .filter(|(_, g)| has(g, "ipv4", "0.0.0.0/0") && has(g, "ipv6", "::/0"))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(defaults.len(), 1, "one default PID holding 0.0.0.0/0 and ::/0: {net}");
    let others: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| *k != defaults[0]).collect();
    assert_eq!(others.len(), pids, "PIDs besides the default");
    for (pid, g) in &others {
        assert_eq!(g["ipv4"].as_array().map(Vec::len), Some(per_pid), "{pid}: IPv4 prefixes {g}");
        assert!(g["ipv6"].as_array().is_some_and(|a| !a.is_empty()), "{pid}: no IPv6 prefix {g}");
    }
    let owners = prefix_owners(net);
    let count: usize = map
        .values()
        .flat_map(|g| g.as_object().expect("group").values())
        .map(|a| a.as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(owners.len(), count, "the same prefix appears twice");
    let nets: Vec<(IpNet, &String)> =
        owners.iter().map(|(p, pid)| (p.parse::<IpNet>().expect("prefix"), pid)).collect();
    let nested = nets.iter().any(|(n, pid)| {
        n.prefix_len() > 0
            && nets.iter().any(|(m, other)| m.prefix_len() > 0 && m != n && m.contains(n) && other != pid)
    });
    assert!(nested, "no prefix nests inside another PID's prefix");
}

// ---------------------------------------------------------------------------------------------
// Fault injection
// ---------------------------------------------------------------------------------------------

/// The labels and valid requests of every ALTO path: the root IRD plus each resource.
async fn clean_directory(client: &TestClient) -> (Origin, Directory) {
    let twin = Origin::with_data(&[]);
    let dir = Directory::fetch(client, &twin.directory_url()).await;
    (twin, dir)
}

/// Sends the IRD request and every resource's valid request to `base`; returns (label,
/// outcome) pairs.
async fn hit_everything(
    client: &TestClient,
    dir: &Directory,
    base: &str,
) -> Vec<(String, Result<Response, RequestError>)> {
    let mut tasks = Vec::new();
    let ird = {
        let (client, url) = (client.clone(), format!("{base}/directory"));
        tokio::spawn(async move { client.try_request(Method::GET, &url, &[], Bytes::new()).await })
    };
    tasks.push(("directory".to_string(), ird));
    for id in dir.ids() {
        let (client, dir, base, id2) = (client.clone(), dir.clone(), base.to_string(), id.clone());
        tasks.push((id, tokio::spawn(async move { exercise(&client, &dir, &id2, Some(&base)).await })));
    }
    let mut out = Vec::new();
    for (label, t) in tasks {
        out.push((label, t.await.expect("task")));
    }
    out
}

async fn assert_each_counted_once(client: &TestClient, origin: &Origin, labels: &[String]) {
    let text = metrics(client, origin).await;
    for l in labels {
        assert_eq!(
            metric(&text, SERVED, &[("resource", l)]),
            1.0,
            "{SERVED}{{resource=\"{l}\"}} after one request:\n{text}"
        );
    }
    assert_eq!(metric(&text, SERVED, &[]), labels.len() as f64, "total served:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_5xx_answers_503_with_retry_after() {
    let client = TestClient::http1();
    let (_twin, dir) = clean_directory(&client).await;
    let origin = Origin::with_data(&["--fault-5xx", "1"]);
    let results = hit_everything(&client, &dir, &origin.base_url).await;
    let mut labels = Vec::new();
    for (label, res) in results {
        let r = res.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{label}: {}", r.describe());
        assert!(
            r.header("retry-after").is_some_and(|v| !v.trim().is_empty()),
            "{label}: 503 without Retry-After"
        );
        labels.push(label);
    }
    assert_each_counted_once(&client, &origin, &labels).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_malformed_answers_200_with_bodies_that_do_not_parse() {
    let client = TestClient::http1();
    let (_twin, dir) = clean_directory(&client).await;
    let origin = Origin::with_data(&["--fault-malformed", "1"]);
    let results = hit_everything(&client, &dir, &origin.base_url).await;
    let mut labels = Vec::new();
    for (label, res) in results {
        let r = res.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(r.status, StatusCode::OK, "{label}: {}", r.describe());
        assert!(r.try_json().is_err(), "{label}: the malformed body parses: {}", r.text_prefix(200));
        labels.push(label);
    }
    assert_each_counted_once(&client, &origin, &labels).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_drop_closes_connections_without_an_answer() {
    let client = TestClient::http1().with_timeout(Duration::from_secs(10));
    let (_twin, dir) = clean_directory(&client).await;
    let origin = Origin::with_data(&["--fault-drop", "1"]);
    let results = hit_everything(&client, &dir, &origin.base_url).await;
    let mut labels = Vec::new();
    for (label, res) in results {
        assert!(
            matches!(res, Err(RequestError::Failed(_))),
            "{label}: expected a connection error, got {res:?}"
        );
        labels.push(label);
    }
    assert_each_counted_once(&client, &origin, &labels).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_hang_never_answers() {
    let client = TestClient::http1();
    let (_twin, dir) = clean_directory(&client).await;
    let origin = Origin::with_data(&["--fault-hang", "1"]);
    let impatient = TestClient::http1().with_timeout(Duration::from_millis(1500));
    let results = hit_everything(&impatient, &dir, &origin.base_url).await;
    let mut labels = Vec::new();
    for (label, res) in results {
        assert!(matches!(res, Err(RequestError::Timeout)), "{label}: expected a client timeout, got {res:?}");
        labels.push(label);
    }
    // /metrics itself is never faulted.
    assert_each_counted_once(&client, &origin, &labels).await;
}

#[tokio::test]
async fn fault_rates_mix_outcomes_reproducibly_with_a_seed() {
    let client = TestClient::http1();
    let run = |seed: &'static str| {
        let client = client.clone();
        async move {
            let origin = Origin::with_data(&["--fault-5xx", "0.5", "--fault-seed", seed]);
            let mut statuses = Vec::new();
            for _ in 0..40 {
                statuses.push(client.get(&origin.directory_url(), None).await.status.as_u16());
            }
            let text = metrics(&client, &origin).await;
            assert_eq!(metric(&text, SERVED, &[("resource", "directory")]), 40.0);
            statuses
        }
    };
    let first = run("11").await;
    assert!(first.contains(&200) && first.contains(&503), "rate 0.5 over 40 requests: {first:?}");
    assert!(first.iter().all(|s| *s == 200 || *s == 503), "{first:?}");
    let again = run("11").await;
    assert_eq!(first, again, "the same --fault-seed must give the same sequence");
}

// ---------------------------------------------------------------------------------------------
// Malformed input corpus
// ---------------------------------------------------------------------------------------------

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

/// Invalid bodies for a POST resource kind (identified by its `accepts`).
fn corpus(accepts: &str) -> Vec<(String, Vec<u8>)> {
    let j = |v: Value| serde_json::to_vec(&v).expect("json");
    let rc = ct("routingcost", "numerical");
    let mut out: Vec<(String, Vec<u8>)> = vec![
        ("empty body".into(), vec![]),
        ("null".into(), b"null".to_vec()),
        ("whitespace".into(), b"   \n".to_vec()),
        ("array".into(), b"[]".to_vec()),
        ("number".into(), b"42".to_vec()),
        ("string".into(), b"\"pids\"".to_vec()),
        ("true".into(), b"true".to_vec()),
        ("truncated object".into(), b"{\"pids\": [\"pid-a\", ".to_vec()),
        ("truncated string".into(), b"{\"cost-type\": {\"cost-metric\": \"routingc".to_vec()),
        ("trailing garbage".into(), b"{} garbage".to_vec()),
        ("non-UTF-8 bytes".into(), b"\xff\xfe\xfd\x00".to_vec()),
        (
            "non-UTF-8 inside a string".into(),
            b"{\"pids\": [\"\xc3\x28\"], \"properties\": [\"\xff\"]}".to_vec(),
        ),
        ("lone surrogate escape".into(), b"{\"pids\": [\"\\ud800\"]}".to_vec()),
        ("single quotes".into(), b"{'pids': []}".to_vec()),
        ("NaN".into(), b"{\"pids\": NaN}".to_vec()),
        ("deep nesting, 100000 levels".into(), deep(100_000).into_bytes()),
        (
            "deep nesting in a field".into(),
            format!(
                "{{\"pids\": {}, \"cost-type\": {}, \"endpoints\": {}}}",
                deep(50_000),
                deep(1_000),
                deep(1_000)
            )
            .into_bytes(),
        ),
        ("deep objects".into(), format!("{}{}", "{\"a\":".repeat(20_000), "}".repeat(20_000)).into_bytes()),
        ("empty object".into(), j(json!({}))),
    ];
    let many = |n: usize, f: &dyn Fn(usize) -> String| (0..n).map(f).collect::<Vec<String>>();
    let addr = |i: usize| format!("ipv4:10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256);
    match accepts {
        NETWORK_MAP_FILTER => {
            out.push(("pids a string".into(), j(json!({"pids": "pid-a"}))));
            out.push(("pids numbers".into(), j(json!({"pids": [1, 2]}))));
            out.push(("pids null element".into(), j(json!({"pids": [null]}))));
            out.push(("pids object".into(), j(json!({"pids": {"srcs": []}}))));
            out.push(("bad PID name".into(), j(json!({"pids": ["bad pid!"]}))));
            out.push(("PID name too long".into(), j(json!({"pids": ["p".repeat(65)]}))));
            out.push(("empty PID name".into(), j(json!({"pids": [""]}))));
            out.push(("address-types a string".into(), j(json!({"pids": [], "address-types": "ipv4"}))));
            out.push(("bad address type".into(), j(json!({"pids": [], "address-types": ["ip-v4"]}))));
            let mut pids = many(50_000, &|i| format!("p{i}"));
            pids.push("bad pid!".into());
            out.push(("50000 PIDs and a bad one".into(), j(json!({"pids": pids}))));
            out.push(("50000 numbers".into(), j(json!({"pids": vec![0; 50_000]}))));
        }
        COST_MAP_FILTER => {
            out.push(("cost-type a string".into(), j(json!({"cost-type": "routingcost"}))));
            out.push(("cost-type an array".into(), j(json!({"cost-type": []}))));
            out.push(("cost-type null".into(), j(json!({"cost-type": null}))));
            out.push(("unknown metric".into(), j(json!({"cost-type": ct("latency", "numerical")}))));
            out.push((
                "bad metric identifier".into(),
                j(json!({"cost-type": ct("bad metric!", "numerical")})),
            ));
            out.push(("priv: alone".into(), j(json!({"cost-type": ct("priv:", "numerical")}))));
            out.push(("unknown mode".into(), j(json!({"cost-type": ct("routingcost", "fuzzy")}))));
            out.push((
                "metric a number".into(),
                j(json!({"cost-type": {"cost-metric": 1, "cost-mode": "numerical"}})),
            ));
            out.push(("constraints a string".into(), j(json!({"cost-type": rc, "constraints": "le 5"}))));
            for c in
                ["le", "le five", "lt 1e999", "le NaN", "ge inf", "le 0x10", "eq 1 2", "<= 5", "[0] le 5", ""]
            {
                out.push((format!("constraint {c:?}"), j(json!({"cost-type": rc, "constraints": [c]}))));
            }
            out.push(("constraint a number".into(), j(json!({"cost-type": rc, "constraints": [5]}))));
            out.push(("pids an array".into(), j(json!({"cost-type": rc, "pids": []}))));
            out.push(("pids.srcs a string".into(), j(json!({"cost-type": rc, "pids": {"srcs": "pid-a"}}))));
            out.push(("bad PID in dsts".into(), j(json!({"cost-type": rc, "pids": {"dsts": ["bad pid!"]}}))));
            let mut pids = many(50_000, &|i| format!("p{i}"));
            pids.push("bad pid!".into());
            out.push((
                "50000 srcs and a bad one".into(),
                j(json!({"cost-type": rc, "pids": {"srcs": pids}})),
            ));
        }
        ENDPOINT_PROP_PARAMS => {
            let ok = json!(["ipv4:10.0.0.1"]);
            out.push(("no properties".into(), j(json!({"properties": [], "endpoints": ok}))));
            out.push(("no endpoints".into(), j(json!({"properties": [PID_PROP], "endpoints": []}))));
            out.push(("endpoints missing".into(), j(json!({"properties": [PID_PROP]}))));
            out.push(("properties a string".into(), j(json!({"properties": PID_PROP, "endpoints": ok}))));
            out.push((
                "unoffered property".into(),
                j(json!({"properties": ["other-map.pid"], "endpoints": ok})),
            ));
            out.push((
                "bad property identifier".into(),
                j(json!({"properties": ["bad prop!"], "endpoints": ok})),
            ));
            out.push(("priv: alone".into(), j(json!({"properties": ["priv:"], "endpoints": ok}))));
            out.push(("endpoint a number".into(), j(json!({"properties": [PID_PROP], "endpoints": [7]}))));
            for a in BAD_ADDRESSES {
                out.push((
                    format!("endpoint {a:?}"),
                    j(json!({"properties": [PID_PROP], "endpoints": ["ipv4:10.0.0.1", a]})),
                ));
            }
            let mut eps = many(50_000, &addr);
            eps.push("ipv4:bad".into());
            out.push((
                "50000 endpoints and a bad one".into(),
                j(json!({"properties": [PID_PROP], "endpoints": eps})),
            ));
        }
        ENDPOINT_COST_PARAMS => {
            let one = json!(["ipv4:10.0.0.1"]);
            out.push(("cost-type missing".into(), j(json!({"endpoints": {"srcs": one, "dsts": one}}))));
            out.push(("endpoints missing".into(), j(json!({"cost-type": rc}))));
            out.push(("endpoints an array".into(), j(json!({"cost-type": rc, "endpoints": one}))));
            out.push(("endpoints empty object".into(), j(json!({"cost-type": rc, "endpoints": {}}))));
            out.push((
                "srcs and dsts empty".into(),
                j(json!({"cost-type": rc, "endpoints": {"srcs": [], "dsts": []}})),
            ));
            out.push((
                "srcs a string".into(),
                j(json!({"cost-type": rc, "endpoints": {"srcs": "ipv4:10.0.0.1", "dsts": one}})),
            ));
            out.push((
                "unknown mode".into(),
                j(json!({"cost-type": ct("routingcost", "bogus"), "endpoints": {"srcs": one, "dsts": one}})),
            ));
            out.push((
                "bad constraint".into(),
                j(json!({"cost-type": rc, "constraints": ["lt"], "endpoints": {"srcs": one, "dsts": one}})),
            ));
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
            let mut dsts = many(50_000, &addr);
            dsts.push("ipv6:bad".into());
            out.push((
                "50000 dsts and a bad one".into(),
                j(json!({"cost-type": rc, "endpoints": {"srcs": one, "dsts": dsts}})),
            ));
        }
        other => panic!("no corpus for {other}"),
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_inputs_get_4xx_alto_errors_never_500_never_a_hang() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let posts: Vec<String> = dir.ids().into_iter().filter(|id| dir.accepts(id).is_some()).collect();
    assert_eq!(posts.len(), 4);
    let mut failures = Vec::new();
    let mut sent = 0;
    for id in &posts {
        let accepts = dir.accepts(id).expect("accepts");
        let uri = dir.uri(id);
        let mut cases: Vec<(String, Option<String>, Vec<u8>)> =
            corpus(&accepts).into_iter().map(|(n, b)| (n, Some(accepts.clone()), b)).collect();
        // Wrong media types with a valid body.
        let body = serde_json::to_vec(&valid_request(&dir, id).expect("POST")).expect("json");
        for ct in [
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/alto-error+json",
            "garbage",
            "",
        ] {
            cases.push((format!("Content-Type {ct:?}"), Some(ct.to_string()), body.clone()));
        }
        cases.push(("no Content-Type".into(), None, body.clone()));
        for other in &posts {
            let o = dir.accepts(other).expect("accepts");
            if o != accepts {
                cases.push((format!("Content-Type of {other}"), Some(o), body.clone()));
            }
        }
        for (name, ct, bytes) in cases {
            sent += 1;
            let mut headers = vec![("accept", accept_for(&dir.media_type(id)))];
            if let Some(ct) = &ct {
                headers.push(("content-type", ct.clone()));
            }
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let res = client.try_request(Method::POST, &uri, &headers, bytes).await;
            let problem = match &res {
                Err(e) => Some(format!("no answer: {e}")),
                Ok(r) if !r.status.is_client_error() => Some(format!("status {}", r.status)),
                Ok(r) => match alto_error(r) {
                    Err(m) => Some(m),
                    Ok(e) if r.status == 400 && !REGISTERED_CODES.contains(&e.code.as_str()) => {
                        Some(format!("unregistered code {}", e.code))
                    }
                    Ok(_) => None,
                },
            };
            if let Some(p) = problem {
                let shown = res.as_ref().map(|r| r.describe()).unwrap_or_default();
                failures.push(format!("{id} / {name} (Content-Type {ct:?}): {p} {shown}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} malformed requests answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Big but valid: answered, not refused, in time.
    let eps: Vec<String> =
        (0..50_000).map(|i| format!("ipv4:10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256)).collect();
    let r =
        post(&client, &dir, "endpoint-property", &json!({"properties": [PID_PROP], "endpoints": eps})).await;
    assert_eq!(r.status, 200, "50,000 valid endpoints: {}", r.describe());
    assert_eq!(r.json()["endpoint-properties"].as_object().map(|m| m.len()), Some(50_000));
    // Still alive and well.
    let r = client.get(&origin.directory_url(), None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn max_ecs_pairs_refuses_bigger_queries() {
    let origin = Origin::with_data(&["--max-ecs-pairs", "100"]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    let addrs = |n: usize, third: u8| (0..n).map(|i| format!("ipv4:10.{third}.0.{i}")).collect::<Vec<_>>();
    let body = |s: usize, d: usize| json!({"cost-type": ct("routingcost", "numerical"), "endpoints": {"srcs": addrs(s, 1), "dsts": addrs(d, 2)}});
    let r = post(&client, &dir, "endpoint-cost", &body(10, 10)).await;
    assert_eq!(r.status, 200, "100 pairs with --max-ecs-pairs 100: {}", r.describe());
    let r = post(&client, &dir, "endpoint-cost", &body(11, 10)).await;
    assert!(r.status.is_client_error(), "110 pairs over --max-ecs-pairs 100: {}", r.describe());
    alto_error(&r).unwrap_or_else(|m| panic!("{m}"));
    let text = metrics(&client, &origin).await;
    assert_eq!(
        metric(&text, ECS_PAIRS, &[("resource", "endpoint-cost")]),
        100.0,
        "refused pairs are not computed:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_flags_exit_64_with_one_line() {
    let nonexistent = std::env::temp_dir().join(unique_name("altoshield-no-such-data"));
    let overlapping = fixture("origin/overlapping");
    let cases: Vec<Vec<String>> = vec![
        vec!["--listen".into(), "nonsense".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--data".into(), nonexistent.display().to_string()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--data".into(), overlapping.display().to_string()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--generate".into(), "--pids".into(), "0".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--fault-5xx".into(), "2".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--fault-hang".into(), "-0.5".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--fault-drop".into(), "NaN".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--max-body".into(), "lots".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--delay-ms".into(), "soon".into()],
        vec!["--listen".into(), "127.0.0.1:0".into(), "--no-such-flag".into()],
    ];
    let mut failures = Vec::new();
    for args in cases {
        let mut full = vec!["origin"];
        full.extend(args.iter().map(String::as_str));
        let exit = run_to_exit(BIN, &full, Duration::from_secs(20));
        let lines = exit.stderr_lines();
        if exit.code != Some(64) || lines.len() != 1 || exit.stdout.contains("listening") {
            failures.push(format!(
                "altoshield {}: exit {:?}{}, {} stderr lines: {:?}, stdout {:?}",
                full.join(" "),
                exit.code,
                if exit.timed_out { " (still running after 20 s)" } else { "" },
                lines.len(),
                lines,
                exit.stdout
            ));
        }
    }
    assert!(failures.is_empty(), "bad flags must exit 64 with one line on stderr:\n{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The helpers themselves
// ---------------------------------------------------------------------------------------------

#[test]
fn prometheus_parser_reads_labels_escapes_and_totals() {
    let text = "# HELP altoshield_origin_served Requests.\n\
                # TYPE altoshield_origin_served counter\n\
                altoshield_origin_served_total{resource=\"directory\"} 3\n\
                altoshield_origin_served_total{resource=\"a,b\",kind=\"x\\\"y\"} 2.5\n\
                altoshield_origin_served_total{resource=\"unknown\"} 1 1700000000\n\
                other_metric 7\n\
                inf_metric{} +Inf\n";
    assert_eq!(metric(text, SERVED, &[("resource", "directory")]), 3.0);
    assert_eq!(metric(text, SERVED, &[("resource", "a,b")]), 2.5);
    assert_eq!(metric(text, SERVED, &[("kind", "x\"y")]), 2.5);
    assert_eq!(metric(text, SERVED, &[("resource", "unknown")]), 1.0);
    assert_eq!(metric(text, SERVED, &[]), 6.5);
    assert_eq!(metric(text, SERVED, &[("resource", "nope")]), 0.0);
    assert_eq!(metric(text, "other_metric", &[]), 7.0);
    assert_eq!(metric(text, "inf_metric", &[]), f64::INFINITY);
    assert_eq!(label_values(text, SERVED, "resource"), vec!["a,b", "directory", "unknown"]);
}

#[test]
fn startup_lines_parse() {
    let (url, addr) = parse_startup_url("origin listening on https://[::1]:8443", Origin::STARTUP_PREFIX);
    assert_eq!(url, "https://[::1]:8443");
    assert_eq!(addr, "[::1]:8443".parse().expect("addr"));
    assert_eq!(path_of("http://127.0.0.1:1/costmap/x?y=1"), "/costmap/x?y=1");
    assert_eq!(path_of("https://h"), "/");
}

#[tokio::test]
async fn ipv6_listener_prints_brackets_and_sees_ipv6_clients() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let data = origin_data_dir();
    let args = ["origin", "--listen", "[::1]:0", "--data", data.to_str().expect("utf-8")];
    let process = ServerProcess::spawn(BIN, &args, &[Origin::STARTUP_PREFIX], STARTUP_TIMEOUT)
        .expect("origin on [::1]");
    let (base, addr) = parse_startup_url(&process.ready_lines[0], Origin::STARTUP_PREFIX);
    assert_eq!(process.ready_lines[0], format!("origin listening on http://[::1]:{}", addr.port()));
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &format!("{base}/directory")).await;
    assert!(dir.uri(NET).starts_with(&format!("http://[::1]:{}/", addr.port())), "{}", dir.uri(NET));
    // With no srcs, the source is the client's own (IPv6) address, in PID default.
    let r = post(
        &client,
        &dir,
        "endpoint-cost",
        &json!({"cost-type": ct("routingcost", "numerical"),
        "endpoints": {"dsts": ["ipv4:10.0.0.1"]}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.describe());
    assert_eq!(
        normalize_numbers(&r.json()["endpoint-cost-map"]),
        normalize_numbers(&json!({"ipv6:::1": {"ipv4:10.0.0.1": 50}}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_herd_of_concurrent_connections_is_served() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let dir = Directory::fetch(&client, &origin.directory_url()).await;
    // HTTP/1.1 carries one request at a time per connection, so 500 requests in flight from
    // one pooled client open about 500 connections; a barrier releases them together.
    let n = 500;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, dir, barrier) = (client.clone(), dir.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"cost-type": ct("routingcost", "ordinal"),
                "endpoints": {"srcs": [format!("ipv4:10.1.{}.{}", i / 256, i % 256)], "dsts": ["ipv4:192.0.2.5", "ipv4:8.8.8.8"]}});
            barrier.wait().await;
            post(&client, &dir, "endpoint-cost", &body).await.status
        }));
    }
    let mut statuses = BTreeMap::new();
    for t in tasks {
        *statuses.entry(t.await.expect("task").as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, BTreeMap::from([(200, n)]), "statuses of {n} concurrent requests");
    let text = metrics(&client, &origin).await;
    assert_eq!(metric(&text, SERVED, &[("resource", "endpoint-cost")]), n as f64);
    assert_eq!(metric(&text, ECS_PAIRS, &[("resource", "endpoint-cost")]), 2.0 * n as f64);
}
