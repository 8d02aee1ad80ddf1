//! End-to-end: map versions. After the origin publishes a new network map (`POST /bump`), the
//! shield (with a 1 s TTL) serves the new network map and cost maps whose `dependent-vtags`
//! name it, switching them together: clients polling in a tight loop during the switch never
//! get a cost map of an older version than a network map already served, and never an older
//! version after a newer one (DESIGN §5).

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// The versions seen so far, in publication order (index = version number).
#[derive(Debug, Default)]
struct Versions {
    tags: Mutex<Vec<String>>,
}

impl Versions {
    fn index(&self, tag: &str) -> Option<usize> {
        self.tags.lock().unwrap_or_else(|p| p.into_inner()).iter().position(|t| t == tag)
    }

    fn publish(&self, tag: &str) {
        self.tags.lock().unwrap_or_else(|p| p.into_inner()).push(tag.to_string());
    }
}

/// The tag a map answer belongs to: a network map's `vtag`, a cost map's one `dependent-vtags`
/// entry (which must name the network map `net`).
fn version_tag(v: &Value, net: &str) -> Result<String, String> {
    let vt = if v.get("network-map").is_some() {
        v["meta"]["vtag"].clone()
    } else {
        let deps = v["meta"]["dependent-vtags"].as_array().ok_or("cost map without dependent-vtags")?;
        if deps.len() != 1 {
            return Err(format!("dependent-vtags {deps:?}"));
        }
        deps[0].clone()
    };
    if vt["resource-id"] != net {
        return Err(format!("version names {} instead of {net}", vt["resource-id"]));
    }
    vt["tag"].as_str().map(String::from).ok_or_else(|| format!("no tag in {vt}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_is_picked_up_and_served_consistently() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("cache.default_ttl", "1s")
            .str("cache.stale_while_revalidate", "1s"),
    )
    .await;
    let client = TestClient::tls(Proto::Http2, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let cost_maps = dir.find(COST_MAP, None);
    assert!(cost_maps.len() >= 2, "cost maps: {cost_maps:?}");
    let plain = TestClient::http1();
    let odir = Directory::fetch(&plain, &origin.directory_url()).await;

    let first = get_from(&client, &dir, &net).await;
    assert_eq!(first.status, 200, "{}", first.describe());
    let versions = Arc::new(Versions::default());
    versions.publish(&version_tag(&first.json(), &net).expect("network map version"));

    // Pollers: each request notes the newest version served to anyone before it was sent; its
    // answer must not be older.
    let newest = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut pollers = Vec::new();
    // Poller 0 alternates network map and first cost map on one connection; the others poll
    // one resource each on their own connections.
    // The last one asks the filtered cost map (a POST answer that depends on the network map).
    let fcm = dir.find_one(COST_MAP, Some(COST_MAP_FILTER));
    let fcm_body =
        serde_json::to_vec(&json!({"cost-type": cost_type("routingcost", "numerical")})).expect("json");
    let plans: Vec<Vec<String>> = vec![
        vec![net.clone(), cost_maps[0].clone()],
        vec![net.clone()],
        vec![cost_maps[0].clone()],
        vec![cost_maps[1].clone(), net.clone()],
        vec![fcm.clone(), net.clone()],
    ];
    for plan in plans {
        let (client, dir, net, fcm_body) =
            (TestClient::tls(Proto::Http1, &cert), dir.clone(), net.clone(), fcm_body.clone());
        let (versions, newest, stop, rounds, violations) = (
            Arc::clone(&versions),
            Arc::clone(&newest),
            Arc::clone(&stop),
            Arc::clone(&rounds),
            Arc::clone(&violations),
        );
        pollers.push(tokio::spawn(async move {
            let fail = |m: String| violations.lock().unwrap_or_else(|p| p.into_inner()).push(m);
            while !stop.load(Ordering::SeqCst) {
                for id in &plan {
                    let floor = newest.load(Ordering::SeqCst);
                    let accept = accept_for(&dir.media_type(id));
                    let sent = match dir.accepts(id) {
                        None => {
                            client
                                .try_request(http::Method::GET, &dir.uri(id), &[("accept", &accept)], "")
                                .await
                        }
                        Some(ct) => {
                            client
                                .try_request(
                                    http::Method::POST,
                                    &dir.uri(id),
                                    &[("accept", &accept), ("content-type", &ct)],
                                    fcm_body.clone(),
                                )
                                .await
                        }
                    };
                    let r = match sent {
                        Ok(r) => r,
                        Err(e) => {
                            fail(format!("GET {id}: {e}"));
                            continue;
                        }
                    };
                    if r.status != 200 {
                        fail(format!("GET {id}: {}", r.describe()));
                        continue;
                    }
                    let tag =
                        match r.try_json().map_err(|e| e.to_string()).and_then(|v| version_tag(&v, &net)) {
                            Ok(t) => t,
                            Err(e) => {
                                fail(format!("GET {id}: {e}"));
                                continue;
                            }
                        };
                    let Some(v) = versions.index(&tag) else {
                        fail(format!("GET {id}: tag {tag} was never published"));
                        continue;
                    };
                    if v < floor {
                        fail(format!(
                            "GET {id}: version {v} ({tag}) served after version {floor} had been served"
                        ));
                    }
                    newest.fetch_max(v, Ordering::SeqCst);
                }
                rounds.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // An ECS answer cached under the first version.
    let ecs = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let query = json!({"cost-type": cost_type("routingcost", "numerical"),
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.2", "ipv6:2001:db8::1"]}});
    let mut last_ecs = post_to(&client, &dir, &ecs, &query).await.json();
    let r = post_to(&client, &dir, &ecs, &query).await;
    assert!(cache_status_has(&r, "hit"), "the ECS answer is cached: {}", r.header_all("cache-status"));

    // An EPS pid lookup of every prefix's first address, answered under the first version.
    let eps = dir.find_one(ENDPOINT_PROP, Some(ENDPOINT_PROP_PARAMS));
    let net_map = first.json();
    let mut probes = Vec::new();
    for group in net_map["network-map"].as_object().expect("network-map").values() {
        for p in group["ipv4"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            probes.push(format!("ipv4:{}", p.split('/').next().unwrap_or(p)));
        }
    }
    let eps_query = json!({"properties": [format!("{net}.pid")], "endpoints": probes});
    let r = post_to(&client, &dir, &eps, &eps_query).await;
    assert_eq!(r.status, 200, "{}", r.describe());

    for bump in 1..=2usize {
        let r = plain.post(&origin.url("/bump"), None, None, "").await;
        assert_eq!(r.status, 200, "POST /bump: {}", r.describe());
        let tag = r.json()["network-map"]["tag"].as_str().expect("bumped tag").to_string();
        versions.publish(&tag);
        // Within a few seconds, the network map and every cost map are of the new version.
        let switched = eventually(Duration::from_secs(15), || async {
            for id in std::iter::once(&net).chain(cost_maps.iter()) {
                let r = get_from(&client, &dir, id).await;
                if r.status != 200 || version_tag(&r.json(), &net).ok().as_deref() != Some(tag.as_str()) {
                    return None;
                }
            }
            Some(())
        })
        .await;
        assert!(switched.is_some(), "bump {bump}: the shield did not serve version {tag} within 15 s");
        // The new version's content is the origin's.
        for id in std::iter::once(&net).chain(cost_maps.iter()) {
            let s = get_from(&client, &dir, id).await;
            let o = get_from(&plain, &odir, id).await;
            assert!(s.body == o.body, "bump {bump}: {id} through the shield differs from the origin's");
        }
        // Answers that depend on the network map follow it: the cached ECS answer of the old
        // version is not served any more (the bump changed every cost), and the filtered cost
        // map names the new version.
        let s = post_to(&client, &dir, &ecs, &query).await;
        let o = post_to(&plain, &odir, &ecs, &query).await;
        assert_eq!(s.status, 200, "{}", s.describe());
        assert_eq!(
            normalize_answer(&s.json()),
            normalize_answer(&o.json()),
            "bump {bump}: the ECS answer after the switch is the origin's new one (Cache-Status `{}`)",
            s.header_all("cache-status")
        );
        assert_ne!(
            normalize_answer(&s.json()),
            normalize_answer(&last_ecs),
            "bump {bump}: the ECS costs changed"
        );
        last_ecs = s.json();
        // EPS `pid` answers follow the new network map too.
        let s = post_to(&client, &dir, &eps, &eps_query).await;
        let o = post_to(&plain, &odir, &eps, &eps_query).await;
        assert_eq!(
            normalize_answer(&s.json()),
            normalize_answer(&o.json()),
            "bump {bump}: the EPS pid answer after the switch is the origin's (Cache-Status `{}`)",
            s.header_all("cache-status")
        );
        let s =
            post_to(&client, &dir, &fcm, &json!({"cost-type": cost_type("routingcost", "numerical")})).await;
        assert_eq!(
            version_tag(&s.json(), &net).ok().as_deref(),
            Some(tag.as_str()),
            "bump {bump}: filtered cost map"
        );
        // Let the pollers go on for a while on the new version.
        let until = rounds.load(Ordering::SeqCst) + 40;
        let more = eventually(Duration::from_secs(15), || async {
            (rounds.load(Ordering::SeqCst) >= until).then_some(())
        })
        .await;
        assert!(more.is_some(), "pollers stalled");
    }
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        p.await.expect("poller");
    }
    let violations = violations.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        violations.is_empty(),
        "{} inconsistent answers during the switches (first 20):\n{}",
        violations.len(),
        violations.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(newest.load(Ordering::SeqCst), 2, "the pollers saw the last version");
}

#[tokio::test(flavor = "multi_thread")]
async fn within_stale_while_revalidate_no_client_waits_on_a_refresh() {
    let origin =
        Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5", "--delay-ms", "200"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(
        &ShieldConfig::new(&origin.directory_url())
            .tls(&cert)
            .str("cache.default_ttl", "1s")
            .str("cache.stale_while_revalidate", "30s"),
    )
    .await;
    let client = TestClient::tls(Proto::Http1, &cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let net = dir.default_network_map();
    let cost = dir.cost_map_for("routingcost", "numerical").expect("cost map");
    for id in [&net, &cost] {
        get_from(&client, &dir, id).await;
    }
    let before = origin.metrics().await;
    let started = std::time::Instant::now();
    let mut waited = Vec::new();
    let mut n = 0;
    // Three TTLs' worth of polling: every answer comes from the cache, fresh or stale.
    while started.elapsed() < Duration::from_secs(3) {
        for id in [&net, &cost] {
            let r = get_from(&client, &dir, id).await;
            assert_eq!(r.status, 200, "{}", r.describe());
            n += 1;
            if !cache_status_has(&r, "hit") {
                waited.push(format!("{id}: {}", r.header_all("cache-status")));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        waited.is_empty(),
        "{} of {n} answers waited on the origin within stale_while_revalidate: {waited:?}",
        waited.len()
    );
    let after = origin.metrics().await;
    let served = |t: &str| metric(t, "altoshield_origin_served_total", &[("resource", &net)]);
    assert!(served(&after) > served(&before), "the network map was revalidated in the background");
}
