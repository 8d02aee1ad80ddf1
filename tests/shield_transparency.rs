//! End-to-end: the shield is transparent. Over real TLS (a certificate made here, trusted by
//! the client), HTTP/1.1 and HTTP/2, every resource of the origin's IRD answers through the
//! shield what the origin answers directly; the served IRD points only at the shield; a
//! delegated IRD on a second origin is flattened into the shield's one IRD; ETag/304, gzip,
//! `Via`, `Age` and `Cache-Status` behave as DESIGN §4 and §6 say. Resources are found through
//! the IRD, as a client finds them.

mod support;

use std::collections::BTreeSet;

use http::{Method, StatusCode, Version};
use serde_json::{json, Value};
use support::*;

/// Several valid bodies for a POST resource, built from its IRD entry (its cost types and
/// property types), so that every kind of query is compared, not just one.
fn bodies_for(dir: &Directory, id: &str) -> Vec<Value> {
    let accepts = dir.accepts(id).expect("POST resource");
    let cost_types: Vec<Value> = dir
        .cost_type_names(id)
        .iter()
        .map(|n| {
            let t = &dir.json["meta"]["cost-types"][n];
            cost_type(t["cost-metric"].as_str().unwrap_or(""), t["cost-mode"].as_str().unwrap_or(""))
        })
        .collect();
    match accepts.as_str() {
        NETWORK_MAP_FILTER => vec![
            json!({"pids": []}),
            json!({"pids": ["pid-a", "pid-b", "no-such-pid"]}),
            json!({"pids": ["pid-c"], "address-types": ["ipv6"]}),
        ],
        COST_MAP_FILTER => {
            let mut v: Vec<Value> = cost_types.iter().map(|t| json!({"cost-type": t})).collect();
            v.push(json!({"cost-type": cost_types[0], "pids": {"srcs": ["pid-a"], "dsts": ["pid-b", "pid-c"]}}));
            v.push(json!({"cost-type": cost_types[0], "constraints": ["ge 0"], "pids": {"srcs": [], "dsts": []}}));
            // Constraints on every cost type, ordinal ones included (never computed locally).
            for t in &cost_types {
                v.push(json!({"cost-type": t, "constraints": ["le 3"]}));
                v.push(json!({"cost-type": t, "constraints": ["gt 1", "lt 20"], "pids": {"srcs": ["pid-a", "pid-b"]}}));
            }
            v
        }
        ENDPOINT_PROP_PARAMS => {
            let props = dir.entry(id)["capabilities"]["prop-types"].clone();
            vec![json!({"properties": props,
                "endpoints": ["ipv4:10.1.2.3", "ipv4:192.0.2.200", "ipv6:2001:db8:c:1::5", "ipv4:198.51.100.7"]})]
        }
        ENDPOINT_COST_PARAMS => cost_types
            .iter()
            .map(|t| {
                json!({"cost-type": t, "endpoints": {"srcs": ["ipv4:10.1.2.3", "ipv4:192.0.2.1"],
                    "dsts": ["ipv4:192.0.2.200", "ipv4:203.0.113.70", "ipv6:2001:db8:a::1", "ipv4:10.9.9.9"]}})
            })
            .collect(),
        other => panic!("`{id}` accepts {other}, not modelled here"),
    }
}

/// Asserts that `id` answers the same through the shield (`sdir`) as at the origin (`odir`):
/// GET bytes identical, POST answers equal as JSON; same status and media type.
async fn assert_same_answers(
    shield_client: &TestClient,
    sdir: &Directory,
    origin_client: &TestClient,
    odir: &Directory,
    id: &str,
) {
    let proto = shield_client.proto;
    match sdir.accepts(id) {
        None => {
            let s = get_from(shield_client, sdir, id).await;
            let o = get_from(origin_client, odir, id).await;
            assert_eq!(s.status, StatusCode::OK, "{proto:?} GET {id} through the shield: {}", s.describe());
            assert_eq!(s.media_type(), o.media_type(), "{proto:?} GET {id}: media type");
            assert_eq!(s.media_type(), Some(sdir.media_type(id)), "{proto:?} GET {id}: the IRD's media type");
            assert!(
                s.body == o.body,
                "{proto:?} GET {id}: body differs from the origin's\nshield: {}\norigin: {}",
                s.text_prefix(600),
                o.text_prefix(600)
            );
            if proto == Proto::Http2 {
                assert_eq!(s.version, Version::HTTP_2, "{id}: an h2 client gets HTTP/2");
            }
        }
        Some(_) => {
            for body in bodies_for(sdir, id) {
                let s = post_to(shield_client, sdir, id, &body).await;
                let o = post_to(origin_client, odir, id, &body).await;
                assert_eq!(
                    s.status,
                    o.status,
                    "{proto:?} POST {id} {body}: shield {} / origin {}",
                    s.describe(),
                    o.describe()
                );
                assert_eq!(s.status, StatusCode::OK, "{proto:?} POST {id} {body}: {}", s.describe());
                assert_eq!(s.media_type(), o.media_type(), "{proto:?} POST {id} {body}: media type");
                assert_eq!(
                    normalize_answer(&s.json()),
                    normalize_answer(&o.json()),
                    "{proto:?} POST {id} {body}: answer differs from the origin's"
                );
            }
        }
    }
}

/// Asserts the shield's IRD lists exactly `want` (entries as the origin(s) list them, URIs
/// aside), with every URI absolute under the shield's public URL.
fn assert_rewritten(sdir: &Directory, shield: &Shield, want: &[(&Directory, String)]) {
    let ids: BTreeSet<String> = sdir.ids().into_iter().collect();
    let want_ids: BTreeSet<String> = want.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids, want_ids, "the shield's IRD resources");
    for (odir, id) in want {
        let (s, o) = (sdir.entry(id), odir.entry(id));
        for key in ["media-type", "accepts", "uses"] {
            assert_eq!(s.get(key), o.get(key), "{id}: `{key}` in the shield's IRD: {s} vs origin {o}");
        }
        // Capabilities are kept; cost-type names may only be renamed on a collision, which
        // these tests avoid, so they are equal too.
        assert_eq!(s.get("capabilities"), o.get("capabilities"), "{id}: capabilities");
        for name in sdir.cost_type_names(id) {
            assert_eq!(
                sdir.json["meta"]["cost-types"][&name], odir.json["meta"]["cost-types"][&name],
                "{id}: cost type {name}"
            );
        }
    }
    for id in sdir.ids() {
        let uri = sdir.uri(&id);
        assert!(
            uri.starts_with(&format!("{}/", shield.url)),
            "{id}: uri {uri} does not point at the shield's public URL {}",
            shield.url
        );
    }
    assert!(
        sdir.find(DIRECTORY, None).is_empty(),
        "the shield's IRD is flat, with no delegation entry: {:?}",
        sdir.find(DIRECTORY, None)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_resource_answers_as_the_origin_does_over_h1_and_h2() {
    let origin = Origin::with_data(&[]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("ecs.mode", "forward"),
    )
    .await;
    assert!(shield.url.starts_with("https://127.0.0.1:"), "start-up line: {}", shield.url);
    assert!(shield.admin_url.starts_with("http://127.0.0.1:"), "admin start-up line: {}", shield.admin_url);
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;

    for proto in [Proto::Http1, Proto::Http2] {
        let client = TestClient::tls(proto, &cert);
        // No Accept header means */*.
        let r = client.get(&shield.directory_url(), None).await;
        assert_eq!(r.status, StatusCode::OK, "{proto:?} GET /directory: {}", r.describe());
        assert_eq!(r.media_type().as_deref(), Some(DIRECTORY));
        if proto == Proto::Http2 {
            assert_eq!(r.version, Version::HTTP_2);
        }
        let sdir = Directory::fetch(&client, &shield.directory_url()).await;
        let want: Vec<(&Directory, String)> = odir.ids().into_iter().map(|id| (&odir, id)).collect();
        assert_rewritten(&sdir, &shield, &want);
        assert_eq!(sdir.default_network_map(), odir.default_network_map());
        assert_eq!(sdir.json["meta"]["cost-types"], odir.json["meta"]["cost-types"], "meta.cost-types");
        for id in sdir.ids() {
            assert_same_answers(&client, &sdir, &plain, &odir, &id).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delegated_ird_is_flattened_and_its_resources_answer_through_the_shield() {
    let sub =
        Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--id-prefix", "sub-"]);
    let root = Origin::with_data(&["--delegate", &sub.directory_url()]);
    let cert = TestCert::new();
    let shield =
        Shield::start_ready(&ShieldConfig::new(&root.directory_url()).tls(&cert).str("ecs.mode", "forward"))
            .await;
    let plain = TestClient::http1();
    let rdir = Directory::fetch(&plain, &root.directory_url()).await;
    let bdir = Directory::fetch(&plain, &sub.directory_url()).await;
    let delegations = rdir.find(DIRECTORY, None);
    assert_eq!(delegations.len(), 1, "the root origin lists its delegation: {:?}", rdir.ids());

    let client = TestClient::tls(Proto::Http2, &cert);
    let sdir = Directory::fetch(&client, &shield.directory_url()).await;
    let mut want: Vec<(&Directory, String)> =
        rdir.ids().into_iter().filter(|id| !delegations.contains(id)).map(|id| (&rdir, id)).collect();
    want.extend(bdir.ids().into_iter().map(|id| (&bdir, id)));
    assert_rewritten(&sdir, &shield, &want);
    assert_eq!(sdir.default_network_map(), rdir.default_network_map(), "the root IRD's default network map");
    let sub_ids = bdir.ids();
    assert!(sub_ids.iter().all(|id| id.starts_with("sub-")) && sub_ids.len() >= 5, "{sub_ids:?}");

    // The delegated resources answer through the shield as at their own origin, and reach it.
    let before = sub.metrics().await;
    for id in &sub_ids {
        assert_same_answers(&client, &sdir, &plain, &bdir, id).await;
    }
    let after = sub.metrics().await;
    let sub_net = bdir.find(NETWORK_MAP, None);
    assert_eq!(sub_net.len(), 1, "{sub_ids:?}");
    let served = |t: &str, id: &str| metric(t, "altoshield_origin_served_total", &[("resource", id)]);
    let ecs = bdir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    assert!(
        served(&after, &ecs) > served(&before, &ecs),
        "the delegated ECS ({ecs}) was answered by its own origin through the shield"
    );
    // And the root's resources are still there.
    for id in rdir.ids().into_iter().filter(|id| !delegations.contains(id)) {
        assert_same_answers(&client, &sdir, &plain, &rdir, &id).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_304_gzip_via_age_and_cache_status() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("ecs.mode", "forward"),
    )
    .await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let cost = dir.cost_map_for("routingcost", "numerical").expect("a numerical routingcost map");
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;

    for id in [&net, &cost] {
        let accept = accept_for(&dir.media_type(id));
        let first = get_from(&client, &dir, id).await;
        assert_eq!(first.status, StatusCode::OK, "{id}: {}", first.describe());
        // Served twice: the second is a fresh hit whatever the first was.
        let r = get_from(&client, &dir, id).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(
            cache_status_has(&r, "hit") && cache_status_ttl(&r).is_some_and(|t| t >= 0),
            "{id}: second GET: Cache-Status `{}` should be `altoshield; hit; ttl=N`",
            r.header_all("cache-status")
        );
        assert!(r.header("via").is_some_and(|v| !v.is_empty()), "{id}: no Via header");
        let age = r.header("age").unwrap_or_else(|| panic!("{id}: no Age header"));
        assert!(age.trim().parse::<u64>().is_ok(), "{id}: Age `{age}` is not a number of seconds");
        let o = get_from(&plain, &odir, id).await;
        assert!(r.body == o.body, "{id}: the cached copy differs from the origin's");

        // ETag and 304.
        let etag = r.header("etag").unwrap_or_else(|| panic!("{id}: no ETag")).to_string();
        let nm = client
            .request(Method::GET, &dir.uri(id), &[("accept", &accept), ("if-none-match", &etag)], "")
            .await;
        assert_eq!(nm.status, StatusCode::NOT_MODIFIED, "{id}: If-None-Match {etag}: {}", nm.describe());
        assert!(nm.body.is_empty(), "{id}: a 304 has no body");
        assert_eq!(nm.header("etag"), Some(etag.as_str()), "{id}: the 304 repeats the ETag");
        let other = client
            .request(
                Method::GET,
                &dir.uri(id),
                &[("accept", &accept), ("if-none-match", "\"not-this-one\"")],
                "",
            )
            .await;
        assert_eq!(other.status, StatusCode::OK, "{id}: a non-matching If-None-Match: {}", other.describe());
        let any = client
            .request(Method::GET, &dir.uri(id), &[("accept", &accept), ("if-none-match", "*")], "")
            .await;
        assert_eq!(any.status, StatusCode::NOT_MODIFIED, "{id}: If-None-Match: *");

        // gzip (both maps are well over 1 KiB here).
        assert!(r.body.len() >= 1024, "{id}: test data too small ({} bytes)", r.body.len());
        let gz = client
            .request(Method::GET, &dir.uri(id), &[("accept", &accept), ("accept-encoding", "gzip")], "")
            .await;
        assert_eq!(gz.status, StatusCode::OK);
        assert_eq!(
            gz.header("content-encoding"),
            Some("gzip"),
            "{id}: Accept-Encoding: gzip on {} bytes",
            r.body.len()
        );
        let unzipped = gunzip(&gz.body).unwrap_or_else(|e| panic!("{id}: not gzip: {e}"));
        assert!(unzipped == r.body.as_ref(), "{id}: gunzipped body differs from the identity body");
        assert!(gz.body.len() < r.body.len(), "{id}: compressed body is not smaller");
        assert_eq!(gz.media_type(), Some(dir.media_type(id)), "{id}: media type of the gzip answer");
        let id_enc = client
            .request(Method::GET, &dir.uri(id), &[("accept", &accept), ("accept-encoding", "identity")], "")
            .await;
        assert!(id_enc.header("content-encoding").is_none_or(|e| e == "identity"));
        assert!(id_enc.body == r.body);
    }

    // A POST: miss, then hit, with the origin asked once.
    let body = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.2", "ipv6:2001:db8::1"]}});
    let before = origin.served(&ecs).await;
    let first = post_to(&client, &dir, &ecs, &body).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.describe());
    let cs = first.header_all("cache-status");
    for p in ["fwd=miss", "fwd-status=200", "stored"] {
        assert!(cache_status_has(&first, p), "first ECS: Cache-Status `{cs}` lacks `{p}`");
    }
    let second = post_to(&client, &dir, &ecs, &body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert!(
        cache_status_has(&second, "hit") && cache_status_ttl(&second).is_some_and(|t| t >= 0),
        "second ECS: Cache-Status `{}`",
        second.header_all("cache-status")
    );
    assert_eq!(second.json(), first.json());
    assert_eq!(origin.served(&ecs).await - before, 1.0, "the origin answered the ECS once");
    assert_eq!(second.media_type().as_deref(), Some(ENDPOINT_COST));
    assert!(second.header("age").is_some(), "a cached POST answer carries Age");
    assert!(second.header("via").is_some(), "a cached POST answer carries Via");

    // A big POST answer is gzipped too (over HTTP/2 as well).
    let dsts: Vec<String> = (0..80).map(|i| format!("ipv4:10.0.{}.{}", i / 10, i % 10 + 1)).collect();
    let big = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.9.0.1"], "dsts": dsts}});
    for proto in [Proto::Http1, Proto::Http2] {
        let c = TestClient::tls(proto, &cert);
        let headers =
            [("content-type", ENDPOINT_COST_PARAMS), ("accept", ENDPOINT_COST), ("accept-encoding", "gzip")];
        let r =
            c.request(Method::POST, &dir.uri(&ecs), &headers, serde_json::to_vec(&big).expect("json")).await;
        assert_eq!(r.status, StatusCode::OK, "{proto:?}: {}", r.describe());
        assert_eq!(
            r.header("content-encoding"),
            Some("gzip"),
            "{proto:?}: a big ECS answer with gzip accepted"
        );
        let plain_body = gunzip(&r.body).expect("gzip");
        let v: Value = serde_json::from_slice(&plain_body).expect("JSON");
        assert_eq!(v["endpoint-cost-map"]["ipv4:10.9.0.1"].as_object().map(|m| m.len()), Some(80));
        assert!(plain_body.len() >= 1024);
    }

    // The directory has an ETag and answers 304 too.
    let d = client.get(&shield.directory_url(), Some(DIRECTORY)).await;
    let etag = d.header("etag").expect("the IRD has an ETag").to_string();
    let nm = client
        .request(Method::GET, &shield.directory_url(), &[("accept", DIRECTORY), ("if-none-match", &etag)], "")
        .await;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED, "GET /directory If-None-Match: {}", nm.describe());
}

#[tokio::test(flavor = "multi_thread")]
async fn public_url_and_plain_http_listeners() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;

    // listen.public_url decides every URI of the served IRD.
    let cert = TestCert::new();
    let public = "https://alto.example.net:8443/base";
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&cert).str("listen.public_url", public),
    )
    .await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let sdir = Directory::fetch(&client, &shield.directory_url()).await;
    for id in sdir.ids() {
        let uri = sdir.uri(&id);
        assert!(
            uri.starts_with(&format!("{public}/")),
            "{id}: {uri} is not under listen.public_url {public}"
        );
    }

    // listen.tls = false: plain HTTP, HTTP/1.1 and h2c, with the default public URL.
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).plain()).await;
    assert!(
        shield.url.starts_with("http://127.0.0.1:"),
        "start-up line with listen.tls = false: {}",
        shield.url
    );
    for proto in [Proto::Http1, Proto::Http2] {
        let client = TestClient::new(proto);
        let sdir = Directory::fetch(&client, &shield.directory_url()).await;
        let want: Vec<(&Directory, String)> = odir.ids().into_iter().map(|id| (&odir, id)).collect();
        assert_rewritten(&sdir, &shield, &want);
        for id in sdir.ids() {
            assert_same_answers(&client, &sdir, &plain, &odir, &id).await;
        }
    }
}

/// The canonical form of a typed address (`IPv4:…` → `ipv4:…`, IPv6 in RFC 5952 form).
fn canonical(addr: &str) -> String {
    let (kind, a) = addr.split_once(':').expect("typed address");
    let ip: std::net::IpAddr = a.parse().unwrap_or_else(|e| panic!("{addr}: {e}"));
    format!("{}:{ip}", kind.to_ascii_lowercase())
}

/// Re-keys an answer's data member (`endpoint-properties`, or each level of
/// `endpoint-cost-map`) by canonical address.
fn canonical_keys(v: &Value, member: &str) -> Value {
    let mut v = v.clone();
    if let Some(map) = v.get_mut(member).and_then(Value::as_object_mut) {
        let rekeyed: serde_json::Map<String, Value> = map
            .iter()
            .map(|(k, row)| {
                let row = match (member, row.as_object()) {
                    ("endpoint-cost-map", Some(r)) => {
                        Value::Object(r.iter().map(|(d, c)| (canonical(d), c.clone())).collect())
                    }
                    _ => row.clone(),
                };
                (canonical(k), row)
            })
            .collect();
        *map = rekeyed;
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_are_keyed_by_the_clients_own_spelling_of_its_addresses() {
    let origin = Origin::with_data(&[]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&cert)).await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let plain = TestClient::http1();
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;
    let spelled = ["IPv4:10.1.2.3", "ipv6:2001:DB8:A::1", "ipv6:2001:db8:c:1:0:0:0:5", "ipv4:192.0.2.200"];
    let canon: Vec<String> = spelled.iter().map(|a| canonical(a)).collect();

    let eps = dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS));
    let props = dir.entry(&eps)["capabilities"]["prop-types"].clone();
    let r = post_to(&client, &dir, &eps, &json!({"properties": props, "endpoints": spelled})).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let got = r.json();
    let keys: BTreeSet<&str> = got["endpoint-properties"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, spelled.iter().copied().collect(), "EPS answer keyed by the client's spelling: {got}");
    let o = post_to(&plain, &odir, &eps, &json!({"properties": props, "endpoints": canon})).await.json();
    assert_eq!(
        normalize_answer(&canonical_keys(&got, "endpoint-properties")),
        normalize_answer(&canonical_keys(&o, "endpoint-properties")),
        "EPS values"
    );

    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let q = |srcs: &[&str], dsts: &[&str]| json!({"cost-type": cost_type("routingcost", "numerical"), "endpoints": {"srcs": srcs, "dsts": dsts}});
    let r = post_to(&client, &dir, &ecs, &q(&spelled[..2], &spelled[2..])).await;
    assert_eq!(r.status, 200, "{}", r.describe());
    let got = r.json();
    let map = got["endpoint-cost-map"].as_object().expect("endpoint-cost-map");
    assert_eq!(
        map.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        spelled[..2].iter().copied().collect()
    );
    for row in map.values() {
        let dsts: BTreeSet<&str> =
            row.as_object().map(|r| r.keys().map(String::as_str).collect()).unwrap_or_default();
        // (A pair the origin has no cost for may be left out: RFC 7285 §11.5.1.6.)
        let asked: BTreeSet<&str> = spelled[2..].iter().copied().collect();
        assert!(
            dsts.is_subset(&asked) && !dsts.is_empty(),
            "ECS destinations in the client's spelling: {got}"
        );
    }
    let c: Vec<&str> = canon.iter().map(String::as_str).collect();
    let o = post_to(&plain, &odir, &ecs, &q(&c[..2], &c[2..])).await.json();
    assert_eq!(
        normalize_answer(&canonical_keys(&got, "endpoint-cost-map")),
        normalize_answer(&canonical_keys(&o, "endpoint-cost-map")),
        "ECS values"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn accept_and_content_type_variants_a_client_may_send_are_served() {
    let origin = Origin::with_data(&[]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&cert)).await;
    let client = TestClient::tls(Proto::Http2, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    for accept in [
        "*/*",
        "application/*",
        "application/alto-networkmap+json;q=0.9, application/alto-error+json",
        "text/html, application/alto-networkmap+json",
        "application/alto-directory+json,application/alto-networkmap+json,application/alto-error+json",
    ] {
        let r = client.get(&dir.uri(&net), Some(accept)).await;
        assert_eq!(r.status, 200, "Accept `{accept}`: {}", r.describe());
        assert_eq!(r.media_type().as_deref(), Some(NETWORK_MAP));
    }
    for id in dir.ids().into_iter().filter(|id| dir.accepts(id).is_some()) {
        let accepts = dir.accepts(&id).expect("accepts");
        let body = serde_json::to_vec(&sample_request(&dir, &id).expect("POST")).expect("json");
        for ct in [format!("{accepts}; charset=utf-8"), accepts.to_ascii_uppercase()] {
            let r = client.post(&dir.uri(&id), Some(&ct), None, body.clone()).await;
            assert_eq!(r.status, 200, "{id} with Content-Type `{ct}`: {}", r.describe());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_origins_max_age_decides_freshness() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--max-age", "2"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("cache.default_ttl", "5m")
            .str("ecs.mode", "forward"),
    )
    .await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let cost = dir.cost_map_for("routingcost", "numerical").expect("cost map");
    let body = sample_request(&dir, &ecs).expect("POST");
    post_to(&client, &dir, &ecs, &body).await;
    let r = post_to(&client, &dir, &ecs, &body).await;
    assert!(cache_status_has(&r, "hit"), "{}", r.header_all("cache-status"));
    let ttl = cache_status_ttl(&r).expect("ttl");
    assert!(ttl <= 2, "Cache-Control: max-age=2 from the origin, yet ttl={ttl} (default_ttl 5m)");
    get_from(&client, &dir, &cost).await;
    let r = get_from(&client, &dir, &cost).await;
    let ttl = cache_status_ttl(&r).unwrap_or_else(|| panic!("no ttl: {}", r.header_all("cache-status")));
    assert!(ttl <= 2, "{cost}: Cache-Control: max-age=2 from the origin, yet ttl={ttl}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tiers_compose_an_edge_shield_in_front_of_a_regional_shield_over_tls() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let regional_cert = TestCert::new();
    let regional = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url()).tls(&regional_cert).str("ecs.mode", "forward"),
    )
    .await;
    let edge_cert = TestCert::new();
    let edge = Shield::start_ready(
        &ShieldConfig::new(&regional.directory_url())
            .tls(&edge_cert)
            .path("origin.ca", &regional_cert.cert_path)
            .str("ecs.mode", "forward"),
    )
    .await;
    let client = TestClient::tls(Proto::Http2, &edge_cert);
    let plain = TestClient::http1();
    let sdir = Directory::fetch(&client, &edge.directory_url()).await;
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;
    let want: Vec<(&Directory, String)> = odir.ids().into_iter().map(|id| (&odir, id)).collect();
    assert_rewritten(&sdir, &edge, &want);
    for id in sdir.ids() {
        assert_same_answers(&client, &sdir, &plain, &odir, &id).await;
    }
    // A query new to both tiers reaches the origin once, however often it is asked.
    let ecs = sdir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let body = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.9.8.7"], "dsts": ["ipv4:10.6.5.4"]}});
    let before = origin.served(&ecs).await;
    for _ in 0..3 {
        let r = post_to(&client, &sdir, &ecs, &body).await;
        assert_eq!(r.status, 200, "{}", r.describe());
    }
    assert_eq!(origin.served(&ecs).await - before, 1.0, "two tiers, three identical queries");
}

/// RFC 9110 §8.8.1 and §8.8.3: a strong validator is unique across the representations of a
/// resource, and a different content coding is a different representation. So the gzip and
/// identity answers of one map must not share one strong ETag (nginx, for one, weakens it);
/// each still revalidates to 304.
#[tokio::test(flavor = "multi_thread")]
async fn gzip_and_identity_answers_do_not_share_a_strong_etag() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&cert)).await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let url = dir.uri(&net);
    let identity = client.request(Method::GET, &url, &[("accept", NETWORK_MAP)], "").await;
    let gz =
        client.request(Method::GET, &url, &[("accept", NETWORK_MAP), ("accept-encoding", "gzip")], "").await;
    assert_eq!(gz.header("content-encoding"), Some("gzip"), "{}", gz.describe());
    let (e1, e2) = (identity.header("etag").expect("ETag"), gz.header("etag").expect("ETag"));
    assert!(
        e1 != e2 || e2.starts_with("W/"),
        "the identity and gzip answers of {net} carry the same strong ETag {e1} (Content-Length {} vs {})",
        identity.body.len(),
        gz.body.len()
    );
    let nm = client
        .request(
            Method::GET,
            &url,
            &[("accept", NETWORK_MAP), ("accept-encoding", "gzip"), ("if-none-match", e2)],
            "",
        )
        .await;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED, "revalidating the gzip answer: {}", nm.describe());
}
