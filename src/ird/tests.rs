//! Tests of IRD flattening over the RFC example IRDs and hand-made closures (plain data).

use http::{Method, Uri};
use serde_json::{json, Value};

use super::*;

const PUBLIC: &str = "https://shield.example.net/";
const PUBLIC_BASE: &str = "https://shield.example.net";

fn fixture(name: &str) -> Ird {
    let path = format!("{}/tests/fixtures/ird/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ird(value: Value) -> Ird {
    serde_json::from_value(value).expect("test IRD")
}

fn entry(value: Value) -> IrdEntry {
    serde_json::from_value(value).expect("test IRD entry")
}

fn uri(s: &str) -> Uri {
    s.parse().expect("test uri")
}

/// The RFC 7285 §9.2.3 root IRD and its §9.2.4 delegated IRD, at the URIs the RFC gives.
fn rfc7285_closure() -> Vec<(Uri, Ird)> {
    vec![
        (uri("http://alto.example.com/directory"), fixture("rfc7285-ird-response.json")),
        (uri("http://custom.alto.example.com/maps"), fixture("rfc7285-ird-delegated-response.json")),
    ]
}

fn ids(dir: &Directory) -> Vec<&str> {
    dir.resources.keys().map(String::as_str).collect()
}

#[test]
fn rfc7285_delegation_is_flattened() {
    let dir = flatten(&rfc7285_closure(), PUBLIC).expect("flatten");
    assert_eq!(
        ids(&dir),
        [
            "endpoint-cost",
            "endpoint-property",
            "filtered-cost-map",
            "filtered-network-map",
            "my-default-network-map",
            "numerical-hopcount-cost-map",
            "numerical-routing-cost-map",
            "ordinal-hopcount-cost-map",
            "ordinal-routing-cost-map",
        ],
        "the delegated IRD's resources are in, the delegation entry is out"
    );
    assert_eq!(dir.default_network_map, "my-default-network-map");
    // Both IRDs define the same four cost types: nothing to rename.
    assert_eq!(
        dir.cost_types.keys().collect::<Vec<_>>(),
        ["num-hop", "num-routing", "ord-hop", "ord-routing"]
    );

    let fcm = &dir.resources["filtered-cost-map"];
    assert_eq!(fcm.origin_uri, uri("http://custom.alto.example.com/costmap/filtered"));
    assert_eq!(fcm.path, "/costmap/filtered");
    assert_eq!(fcm.entry.uri, "https://shield.example.net/costmap/filtered");
    assert_eq!(fcm.post_kind, Some(PostKind::FilteredCostMap));
    assert_eq!(fcm.caps.cost_types.len(), 4);
    assert!(fcm.caps.cost_constraints);
    // `uses` from the delegated IRD names a root resource and is kept (SPEC §9 item 6).
    assert_eq!(fcm.uses, ["my-default-network-map"]);

    let ecs = &dir.resources["endpoint-cost"];
    assert_eq!(ecs.post_kind, Some(PostKind::EndpointCost));
    assert_eq!(ecs.accepts.as_deref(), Some("application/alto-endpointcostparams+json"));
    let eps = &dir.resources["endpoint-property"];
    assert_eq!(eps.caps.prop_types, ["my-default-network-map.pid", "priv:ietf-example-prop"]);
    let nm = &dir.resources["my-default-network-map"];
    assert_eq!((nm.post_kind, nm.accepts.as_deref(), nm.path.as_str()), (None, None, "/networkmap"));

    for r in dir.resources.values() {
        assert_eq!(r.entry.uri, format!("{PUBLIC_BASE}{}", r.path), "{}", r.id);
        assert!(r.path.starts_with('/'));
    }
}

#[test]
fn served_body_is_the_rewritten_ird() {
    let dir = flatten(&rfc7285_closure(), PUBLIC).expect("flatten");
    let served: Ird = serde_json::from_slice(&dir.body).expect("the body is an IRD");
    assert_eq!(served.meta.default_network_map.as_deref(), Some("my-default-network-map"));
    assert_eq!(served.meta.cost_types.as_ref(), Some(&dir.cost_types));
    assert_eq!(served.resources.len(), dir.resources.len());
    for (id, entry) in &served.resources {
        assert_eq!(entry, &dir.resources[id].entry);
        assert!(entry.uri.starts_with("https://shield.example.net/"), "{id}: {}", entry.uri);
    }
    assert!(!served.resources.values().any(|e| e.media_type == "application/alto-directory+json"));
}

#[test]
fn routing_finds_entries_by_path_and_method() {
    let mut closure = rfc7285_closure();
    // A GET and a POST resource at one origin path share the shield path.
    closure[0].1.resources.insert(
        "filtered-default-network-map".into(),
        entry(json!({
            "uri": "http://alto.example.com/networkmap",
            "media-type": "application/alto-networkmap+json",
            "accepts": "application/alto-networkmapfilter+json"
        })),
    );
    let dir = flatten(&closure, PUBLIC).expect("flatten");
    let mut shared = dir.by_path["/networkmap"].clone();
    shared.sort();
    assert_eq!(shared, ["filtered-default-network-map", "my-default-network-map"]);
    let id = |path: &str, m: Method| dir.resource(path, &m).map(|r| r.id.as_str());
    assert_eq!(id("/networkmap", Method::GET), Some("my-default-network-map"));
    assert_eq!(id("/networkmap", Method::HEAD), Some("my-default-network-map"));
    assert_eq!(id("/networkmap", Method::POST), Some("filtered-default-network-map"));
    assert_eq!(id("/networkmap", Method::PUT), None);
    assert_eq!(id("/endpointcost/lookup", Method::POST), Some("endpoint-cost"));
    assert_eq!(id("/endpointcost/lookup", Method::GET), None);
    assert_eq!(id("/nowhere", Method::GET), None);
    assert_eq!(dir.methods("/networkmap"), [Method::GET, Method::HEAD, Method::POST]);
    assert_eq!(dir.methods("/endpointcost/lookup"), [Method::POST]);
    assert!(dir.methods("/nowhere").is_empty());
    for (path, ids) in &dir.by_path {
        for id in ids {
            assert_eq!(&dir.resources[id].path, path);
        }
    }
}

#[test]
fn origin_uris_map_back_to_the_shield() {
    let dir = flatten(&rfc7285_closure(), PUBLIC).expect("flatten");
    let shield = |s: &str| dir.origin_to_shield(&uri(s));
    assert_eq!(
        shield("http://alto.example.com/costmap/num/routingcost").as_deref(),
        Some("https://shield.example.net/costmap/num/routingcost")
    );
    assert_eq!(
        shield("http://ALTO.example.com:80/networkmap").as_deref(),
        Some("https://shield.example.net/networkmap")
    );
    assert_eq!(
        shield("http://custom.alto.example.com/maps").as_deref(),
        Some("https://shield.example.net/directory")
    );
    assert_eq!(
        shield("http://alto.example.com/directory").as_deref(),
        Some("https://shield.example.net/directory")
    );
    assert_eq!(shield("https://alto.example.com/networkmap"), None, "another scheme is another origin");
    assert_eq!(shield("http://alto.example.com/elsewhere"), None);
}

#[test]
fn relative_uris_are_resolved_against_their_ird() {
    let root = ird(json!({
        "meta": {"default-alto-network-map": "nm"},
        "resources": {
            "nm": {"uri": "networkmap", "media-type": "application/alto-networkmap+json"},
            "cm": {"uri": "../costmap?type=num", "media-type": "application/alto-costmap+json"},
            "ecs": {"uri": "//ecs.example.org/lookup", "media-type": "application/alto-endpointcost+json",
                    "accepts": "application/alto-endpointcostparams+json"},
            "sub": {"uri": "sub/", "media-type": "application/alto-directory+json"}
        }
    }));
    let sub = ird(json!({"resources": {
        "fnm": {"uri": "filtered", "media-type": "application/alto-networkmap+json",
                "accepts": "application/alto-networkmapfilter+json"},
        "abs": {"uri": "/top", "media-type": "application/alto-propmap+json"}
    }}));
    let closure = vec![
        (uri("https://origin.example/alto/directory"), root),
        (uri("https://origin.example/alto/sub/"), sub),
    ];
    let dir = flatten(&closure, "http://127.0.0.1:8443").expect("flatten");
    let origin = |id: &str| dir.resources[id].origin_uri.to_string();
    assert_eq!(origin("nm"), "https://origin.example/alto/networkmap");
    assert_eq!(origin("cm"), "https://origin.example/costmap?type=num");
    assert_eq!(origin("ecs"), "https://ecs.example.org/lookup");
    assert_eq!(origin("fnm"), "https://origin.example/alto/sub/filtered");
    assert_eq!(origin("abs"), "https://origin.example/top");
    assert_eq!(dir.resources["cm"].path, "/costmap", "the shield path has no query");
    assert_eq!(dir.resources["nm"].entry.uri, "http://127.0.0.1:8443/alto/networkmap");
}

#[test]
fn colliding_cost_type_is_renamed_and_names_follow() {
    let root = fixture("rfc7285-ird-response.json");
    // The delegated IRD defines `num-routing` as something else and uses it; `ord-hop` matches
    // the root's, and `num-hop` differs only by description, which is not a collision.
    let delegated = ird(json!({
        "meta": {"cost-types": {
            "num-routing": {"cost-mode": "numerical", "cost-metric": "delay-ow", "cost-source": "estimation"},
            "num-hop": {"cost-mode": "numerical", "cost-metric": "hopcount", "description": "hops"},
            "ord-hop": {"cost-mode": "ordinal", "cost-metric": "hopcount"}
        }},
        "resources": {
            "delay-map": {"uri": "/delay", "media-type": "application/alto-costmap+json",
                          "capabilities": {"cost-type-names": ["num-routing"]},
                          "uses": ["my-default-network-map"]},
            "delay-ecs": {"uri": "/delay/ecs", "media-type": "application/alto-endpointcost+json",
                          "accepts": "application/alto-endpointcostparams+json",
                          "capabilities": {"cost-type-names": ["num-routing", "ord-hop", "num-hop"],
                                           "testable-cost-type-names": ["num-routing"],
                                           "calendar-attributes": [{"cost-type-names": ["num-routing"],
                                                                    "time-interval-size": 3600}]}}
        }
    }));
    let closure = vec![
        (uri("http://alto.example.com/directory"), root),
        (uri("http://alto.example.com/sub"), delegated),
    ];
    let dir = flatten(&closure, PUBLIC).expect("flatten");

    assert_eq!(
        dir.cost_types.keys().collect::<Vec<_>>(),
        ["num-hop", "num-routing", "num-routing-2", "ord-hop", "ord-routing"]
    );
    assert_eq!(dir.cost_types["num-routing"].cost_metric, "routingcost", "the root's definition stays");
    assert_eq!(dir.cost_types["num-routing-2"].cost_metric, "delay-ow");
    assert_eq!(dir.cost_types["num-routing-2"].extra["cost-source"], "estimation");

    let caps = |id: &str| dir.resources[id].entry.capabilities.clone().expect("capabilities");
    assert_eq!(caps("delay-map").cost_type_names.expect("names"), ["num-routing-2"]);
    let ecs = caps("delay-ecs");
    assert_eq!(ecs.cost_type_names.expect("names"), ["num-routing-2", "ord-hop", "num-hop"]);
    assert_eq!(ecs.extra["testable-cost-type-names"], json!(["num-routing-2"]));
    assert_eq!(ecs.extra["calendar-attributes"][0]["cost-type-names"], json!(["num-routing-2"]));
    assert_eq!(ecs.extra["calendar-attributes"][0]["time-interval-size"], 3600);
    // Capabilities resolve through the renamed types.
    assert_eq!(dir.resources["delay-map"].caps.cost_types, [CostType::new("delay-ow", "numerical")]);
    // The root's resources keep the root's names.
    assert_eq!(caps("numerical-routing-cost-map").cost_type_names.expect("names"), ["num-routing"]);
    assert_eq!(
        dir.resources["numerical-routing-cost-map"].caps.cost_types,
        [CostType::new("routingcost", "numerical")]
    );
}

#[test]
fn a_third_definition_gets_the_next_suffix() {
    let with_type = |metric: &str, res: &str| {
        ird(json!({
            "meta": {
                "default-alto-network-map": "nm",
                "cost-types": {"c": {"cost-mode": "numerical", "cost-metric": metric}}
            },
            "resources": {res: {"uri": format!("/{res}"), "media-type": "application/alto-costmap+json",
                                "capabilities": {"cost-type-names": ["c"]}}}
        }))
    };
    let mut root = with_type("routingcost", "a");
    root.resources
        .insert("nm".into(), entry(json!({"uri": "/nm", "media-type": "application/alto-networkmap+json"})));
    let closure = vec![
        (uri("http://o/1"), root),
        (uri("http://o/2"), with_type("hopcount", "b")),
        (uri("http://o/3"), with_type("delay-ow", "c")),
        (uri("http://o/4"), with_type("hopcount", "d")),
    ];
    let dir = flatten(&closure, PUBLIC).expect("flatten");
    let names = |id: &str| dir.resources[id].entry.capabilities.clone().and_then(|c| c.cost_type_names);
    assert_eq!(names("a"), Some(vec!["c".to_string()]));
    assert_eq!(names("b"), Some(vec!["c-2".to_string()]));
    assert_eq!(names("c"), Some(vec!["c-3".to_string()]));
    assert_eq!(names("d"), Some(vec!["c-2".to_string()]), "an equal definition reuses the renamed name");
}

#[test]
fn duplicated_resource_id_keeps_the_first() {
    let mut closure = rfc7285_closure();
    let dup = ird(json!({"resources": {"my-default-network-map": {
        "uri": "http://custom.alto.example.com/other-networkmap",
        "media-type": "application/alto-networkmap+json"
    }}}));
    closure[1].1.resources.extend(dup.resources);
    let dir = flatten(&closure, PUBLIC).expect("flatten");
    assert_eq!(dir.resources["my-default-network-map"].origin_uri, uri("http://alto.example.com/networkmap"));
    assert_eq!(dir.resource("/other-networkmap", &Method::GET).map(|r| r.id.as_str()), None);
}

#[test]
fn paths_are_unique_and_fall_back_to_resource_ids() {
    let root = ird(json!({
        "meta": {"default-alto-network-map": "nm"},
        "resources": {
            "nm": {"uri": "http://a.example/networkmap", "media-type": "application/alto-networkmap+json"},
            "nm-b": {"uri": "http://b.example/networkmap", "media-type": "application/alto-networkmap+json"},
            "props": {"uri": "http://a.example/directory", "media-type": "application/alto-propmap+json"},
            "under-r": {"uri": "http://a.example/r/nm", "media-type": "application/alto-costmap+json"},
            "odd id/x": {"uri": "http://a.example/odd", "media-type": "application/alto-costmap+json"},
            "e1": {"uri": "http://a.example/ecs", "media-type": "application/alto-endpointcost+json",
                   "accepts": "application/alto-endpointcostparams+json"},
            "e2": {"uri": "http://b.example/ecs", "media-type": "application/alto-endpointcost+json",
                   "accepts": "application/alto-endpointcostparams+json"}
        }
    }));
    let dir = flatten(&[(uri("http://a.example/directory"), root)], PUBLIC).expect("flatten");
    let path = |id: &str| dir.resources[id].path.as_str();
    assert_eq!(path("nm"), "/r/nm", "same path on two hosts");
    assert_eq!(path("nm-b"), "/r/nm-b");
    assert_eq!(path("props"), "/r/props", "/directory is the flattened IRD's");
    assert_eq!(path("under-r"), "/r/under-r", "an origin path under /r/ could collide with a fallback");
    assert_eq!(path("odd id/x"), "/odd");
    assert_eq!(path("e1"), "/r/e1");
    assert_eq!(path("e2"), "/r/e2");
    let mut seen = std::collections::HashSet::new();
    for r in dir.resources.values() {
        assert!(seen.insert((r.is_post(), r.path.clone())), "{} shares its path", r.id);
    }
    assert_eq!(
        dir.resource("/r/nm", &Method::GET).map(|r| r.origin_uri.to_string()).as_deref(),
        Some("http://a.example/networkmap")
    );

    // A resource-id that is not a clean path segment is percent-encoded.
    let root = ird(json!({
        "meta": {"default-alto-network-map": "nm"},
        "resources": {
            "nm": {"uri": "/directory", "media-type": "application/alto-networkmap+json"},
            "odd id/x": {"uri": "/directory", "media-type": "application/alto-costmap+json"}
        }
    }));
    let dir = flatten(&[(uri("http://a.example/d"), root)], PUBLIC).expect("flatten");
    assert_eq!(dir.resources["odd id/x"].path, "/r/odd%20id%2Fx");
}

#[test]
fn streaming_resources_are_left_out() {
    let with_default = |mut ird: Ird| {
        ird.meta.default_network_map = Some("my-network-map".into());
        ird
    };
    let sse = with_default(fixture("rfc8895-ird-resources-fragment.json"));
    let dir = flatten(&[(uri("https://alto.example.com/directory"), sse)], PUBLIC).expect("flatten");
    assert_eq!(
        ids(&dir),
        [
            "my-filtered-cost-map",
            "my-hopcount-map",
            "my-network-map",
            "my-props",
            "my-pv",
            "my-routingcost-map",
            "my-simple-filtered-cost-map"
        ]
    );
    // Known `accepts` but an answer type the core does not model: forwarded unvalidated.
    assert_eq!(dir.resources["my-pv"].post_kind, None);
    assert_eq!(dir.resources["my-props"].post_kind, None, "the RFC's typo'd media type is not an EPS");
    assert_eq!(
        dir.resources["my-props"].accepts.as_deref(),
        Some("application/alto-endpointpropparams+json")
    );
    assert_eq!(dir.resources["my-simple-filtered-cost-map"].post_kind, Some(PostKind::FilteredCostMap));

    let tips = with_default(fixture("rfc9569-ird-resources-fragment.json"));
    let dir = flatten(&[(uri("https://alto.example.com/directory"), tips)], PUBLIC).expect("flatten");
    assert_eq!(
        ids(&dir),
        ["my-hopcount-map", "my-network-map", "my-routingcost-map", "my-simple-filtered-cost-map"]
    );
    let served: Value = serde_json::from_slice(&dir.body).expect("json");
    assert!(served["resources"].get("update-my-costs-tips").is_none());
}

#[test]
fn unknown_members_are_kept() {
    let root = ird(json!({
        "meta": {"default-alto-network-map": "nm", "x-meta": 1},
        "resources": {
            "nm": {"uri": "/nm", "media-type": "application/alto-networkmap+json", "x-entry": {"a": [1]},
                   "capabilities": {"x-cap": true}}
        },
        "x-top": "root"
    }));
    let sub = ird(json!({"meta": {"x-meta": 2, "x-sub": "s"}, "resources": {}, "x-top": "sub"}));
    let closure = vec![(uri("http://o/directory"), root), (uri("http://o/sub"), sub)];
    let dir = flatten(&closure, PUBLIC).expect("flatten");
    let served: Value = serde_json::from_slice(&dir.body).expect("json");
    assert_eq!(served["meta"]["x-meta"], 1, "the root's meta wins");
    assert_eq!(served["meta"]["x-sub"], "s");
    assert_eq!(served["x-top"], "root");
    assert_eq!(served["resources"]["nm"]["x-entry"], json!({"a": [1]}));
    assert_eq!(served["resources"]["nm"]["capabilities"]["x-cap"], true);
    assert!(served["meta"].get("cost-types").is_none(), "no cost types: none made up");
}

#[test]
fn flatten_errors() {
    let no_default = fixture("rfc7285-ird-delegated-response.json");
    let err = flatten(&[(uri("http://o/directory"), no_default.clone())], PUBLIC).expect_err("no default");
    assert!(matches!(&err, IrdError::NoDefaultNetworkMap { uri } if uri == "http://o/directory"), "{err:?}");

    let mut dangling = no_default;
    dangling.meta.default_network_map = Some("absent".into());
    let err = flatten(&[(uri("http://o/directory"), dangling)], PUBLIC).expect_err("dangling default");
    assert!(matches!(&err, IrdError::UnknownDefaultNetworkMap { id, .. } if id == "absent"), "{err:?}");

    assert!(matches!(flatten(&[], PUBLIC), Err(IrdError::Empty)));
    for bad in ["", "shield.example.net", "ftp://shield.example.net", "https://shield.example.net/?q"] {
        assert!(matches!(flatten(&rfc7285_closure(), bad), Err(IrdError::PublicUrl(_))), "{bad:?}");
    }
}
