//! The RFC example bodies (copied into `tests/fixtures/rfc/`, see its `README.md`) used as test
//! vectors for the pure ALTO core: typed round trips that lose no field, request validation
//! against the capabilities the RFC's own IRDs advertise, extension fields passing through the
//! base models, local computations over the RFC maps, and a table of malformed requests with the
//! error each one must produce.

use std::collections::BTreeMap;
use std::net::IpAddr;

use altoshield::alto::canon::{canonical_bytes, canonicalize};
use altoshield::alto::compute::{
    endpoint_properties, endpoints, filter_cost_map, filter_network_map, MapError, NetworkMapView,
};
use altoshield::alto::types::{
    CostMapFilter, CostMapResponse, CostType, EndpointAddrGroup, EndpointCostParams, EndpointCostResponse,
    EndpointPropParams, EndpointPropResponse, ErrorResponse, Extra, Ird, NetworkMapFilter,
    NetworkMapResponse, ResponseMeta, VersionTag,
};
use altoshield::alto::validate::{validate, PostKind, Request, ResourceCaps};
use altoshield::alto::{AltoError, ErrorCode};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The text of a fixture in `tests/fixtures/rfc/`.
fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/rfc/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// Parses a fixture into `T`, checks that re-serialising gives the same JSON (no member lost,
/// none added), and returns the typed value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str) -> T {
    let original = fixture_json(name);
    let typed: T = serde_json::from_value(original.clone())
        .unwrap_or_else(|e| panic!("{name} does not parse into {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(back, original, "{name}: re-serialised {} differs", std::any::type_name::<T>());
    typed
}

fn root_ird() -> Ird {
    serde_json::from_str(&fixture("rfc7285-ird-response.json")).unwrap()
}

fn delegated_ird() -> Ird {
    serde_json::from_str(&fixture("rfc7285-ird-delegated-response.json")).unwrap()
}

/// The capabilities of one resource of an IRD, resolved through that IRD's `meta.cost-types`.
fn caps_of(ird: &Ird, resource: &str) -> ResourceCaps {
    let entry = ird.resources.get(resource).unwrap_or_else(|| panic!("no resource {resource}"));
    ResourceCaps::from_entry(entry, ird.meta.cost_types.as_ref().unwrap_or(&BTreeMap::new()))
}

fn validate_json(kind: PostKind, caps: &ResourceCaps, body: &Value) -> Result<Request, AltoError> {
    validate(kind, caps, body.to_string().as_bytes())
}

fn network_map_view(name: &str) -> NetworkMapView {
    NetworkMapView::new(serde_json::from_str(&fixture(name)).unwrap()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// RFC 7285 messages: typed round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7285_ird_round_trips_with_its_cost_types_and_capabilities() {
    let ird: Ird = round_trip("rfc7285-ird-response.json");
    assert_eq!(ird.meta.default_network_map.as_deref(), Some("my-default-network-map"));
    let types = ird.meta.cost_types.as_ref().unwrap();
    assert_eq!(types.len(), 4);
    assert_eq!(types["num-routing"].description.as_deref(), Some("My default"));
    assert!(types["ord-hop"].same_type(&CostType::new("hopcount", "ordinal")));
    assert_eq!(ird.resources.len(), 6);
    let ecs = &ird.resources["endpoint-cost"];
    assert_eq!(ecs.accepts.as_deref(), Some("application/alto-endpointcostparams+json"));
    let caps = ecs.capabilities.as_ref().unwrap();
    assert_eq!(caps.cost_constraints, Some(true));
    assert_eq!(caps.cost_type_names.as_ref().unwrap().len(), 4);
    let eps = ird.resources["endpoint-property"].capabilities.as_ref().unwrap();
    assert_eq!(eps.prop_types, Some(strings(&["my-default-network-map.pid", "priv:ietf-example-prop"])));
    assert_eq!(ird.resources["numerical-routing-cost-map"].uses, Some(strings(&["my-default-network-map"])));
}

#[test]
fn rfc7285_delegated_ird_round_trips_and_keeps_uses_into_the_root_ird() {
    let ird: Ird = round_trip("rfc7285-ird-delegated-response.json");
    assert_eq!(ird.meta.default_network_map, None, "a delegated IRD names no default map");
    assert_eq!(ird.resources.len(), 4);
    for entry in ird.resources.values() {
        assert_eq!(entry.uses, Some(strings(&["my-default-network-map"])));
    }
}

#[test]
fn rfc7285_maps_and_responses_round_trip() {
    let nm: NetworkMapResponse = round_trip("rfc7285-networkmap-response.json");
    assert_eq!(nm.meta.vtag.as_ref().unwrap().resource_id, "my-default-network-map");
    assert_eq!(nm.network_map["PID3"]["ipv6"], strings(&["::/0"]));

    let cm: CostMapResponse = round_trip("rfc7285-costmap-response.json");
    assert!(cm.meta.cost_type.as_ref().unwrap().same_type(&CostType::new("routingcost", "numerical")));
    assert_eq!(cm.meta.dependent_vtags.as_ref().unwrap().len(), 1);
    assert_eq!(cm.cost_map["PID3"].get("PID3"), None, "the omitted pair stays omitted");
    assert_eq!(cm.cost_map["PID2"]["PID3"], json!(15));

    let fnm: NetworkMapResponse = round_trip("rfc7285-filtered-networkmap-response.json");
    assert_eq!(fnm.network_map["PID2"]["ipv4"], strings(&["198.51.100.128/24"]), "host bits kept verbatim");

    let fcm: CostMapResponse = round_trip("rfc7285-filtered-costmap-response.json");
    assert_eq!(fcm.cost_map["PID1"].len(), 3);

    let eps: EndpointPropResponse = round_trip("rfc7285-endpointprop-response.json");
    assert_eq!(eps.endpoint_properties["ipv4:192.0.2.34"]["priv:ietf-example-prop"], json!("1"));
    assert_eq!(eps.endpoint_properties["ipv4:203.0.113.129"].len(), 1, "a missing property stays missing");

    let ecs: EndpointCostResponse = round_trip("rfc7285-endpointcost-response.json");
    assert!(ecs.meta.cost_type.as_ref().unwrap().is_ordinal());
    assert_eq!(ecs.endpoint_cost_map["ipv4:192.0.2.2"]["ipv4:203.0.113.45"], json!(3));

    let group: EndpointAddrGroup = round_trip("rfc7285-endpoint-addr-group.json");
    assert_eq!(group["ipv6"].len(), 2);
}

#[test]
fn rfc7285_requests_round_trip_through_their_typed_models() {
    let fnm: NetworkMapFilter = round_trip("rfc7285-filtered-networkmap-request.json");
    assert_eq!(fnm.pids, strings(&["PID1", "PID2"]));
    assert_eq!(fnm.address_types, None);

    let fcm: CostMapFilter = round_trip("rfc7285-filtered-costmap-request.json");
    assert_eq!(fcm.pids.as_ref().unwrap().dsts, strings(&["PID1", "PID2", "PID3"]));

    let eps: EndpointPropParams = round_trip("rfc7285-endpointprop-request.json");
    assert_eq!(eps.endpoints, strings(&["ipv4:192.0.2.34", "ipv4:203.0.113.129"]));

    let ecs: EndpointCostParams = round_trip("rfc7285-endpointcost-request.json");
    assert_eq!(ecs.endpoints.srcs, Some(strings(&["ipv4:192.0.2.2"])));
    assert_eq!(ecs.endpoints.dsts.as_ref().map(Vec::len), Some(3));
}

#[test]
fn extension_error_bodies_round_trip() {
    for name in [
        "rfc8895-streamcontrol-error-response.json",
        "rfc8895-updatestream-error-response.json",
        "rfc9569-tips-error-response.json",
    ] {
        let e: ErrorResponse = round_trip(name);
        assert_eq!(e.meta.code, "E_INVALID_FIELD_VALUE", "{name}");
        assert!(e.meta.field.is_some() && e.meta.value.is_some(), "{name}");
    }
    let e: ErrorResponse =
        serde_json::from_str(&fixture("rfc8895-updatestream-error-response.json")).unwrap();
    assert_eq!(e.meta.field.as_deref(), Some("add/my-network-map/resource-id"));
    assert_eq!(e.meta.value, Some(json!("my-networkmap/#")));
}

#[test]
fn error_bodies_keep_unknown_codes_array_values_and_extra_members() {
    // RFC 8895 §7.6 allows an array `value`; older servers send pre-RFC codes. Both pass through.
    let body = json!({"meta": {"code": "E_JSON_VALUE_TYPE", "field": "remove", "value": ["s1", "s2"],
                               "x-detail": {"n": 1}}, "x-top": true});
    let e: ErrorResponse = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(e.meta.value, Some(json!(["s1", "s2"])));
    assert_eq!(e.meta.extra["x-detail"], json!({"n": 1}));
    assert_eq!(serde_json::to_value(&e).unwrap(), body);
}

#[test]
fn core_error_bodies_have_the_rfc_shape() {
    let e = validate_json(
        PostKind::EndpointCost,
        &caps_of(&root_ird(), "endpoint-cost"),
        &json!({
            "cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"},
            "endpoints": {"dsts": [42]}
        }),
    )
    .unwrap_err();
    let body: ErrorResponse = serde_json::from_slice(&e.to_body()).unwrap();
    assert_eq!(body.meta.code, "E_INVALID_FIELD_VALUE");
    assert_eq!(body.meta.field.as_deref(), Some("endpoints/dsts"));
    assert_eq!(body.meta.value, Some(json!("42")), "RFC 7285 §8.5.2: value is a string");
}

// ---------------------------------------------------------------------------------------------
// The verbatim (invalid) IRD and the LPM example
// ---------------------------------------------------------------------------------------------

#[test]
fn verbatim_rfc7285_ird_with_trailing_comma_is_refused_with_a_position() {
    let text = fixture("rfc7285-ird-response.verbatim-INVALID-JSON.txt");
    let err = serde_json::from_str::<Ird>(&text).unwrap_err();
    assert!(err.is_syntax(), "{err}");
    // The stray comma ends line 56; the parser notices it at the `}` that follows.
    assert_eq!(err.line(), 57, "reported at the `}}` after the comma: {err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("line {}", err.line())) && msg.contains("column"), "{msg}");
    // And the corrected file differs from it by that one comma only.
    let corrected = fixture("rfc7285-ird-response.json");
    assert_eq!(text.replacen("        },\n     },", "        }\n     },", 1), corrected);
}

#[test]
fn rfc7285_lpm_example_maps_192_0_2_1_to_pid3() {
    let mut map: NetworkMapResponse =
        serde_json::from_str(&fixture("rfc7285-networkmap-lpm-example.json")).unwrap();
    assert!(map.meta.vtag.is_none());
    assert!(matches!(NetworkMapView::new(map.clone()), Err(MapError::NoVtag)), "a view needs a vtag");
    map.meta.vtag = Some(VersionTag::new("lpm-example", "1"));
    let view = NetworkMapView::new(map).unwrap();
    assert_eq!(view.pid_of(ip("192.0.2.1")), Some("PID3"), "the RFC 7285 §11.2.2 answer");
    assert_eq!(view.pid_of(ip("192.0.2.255")), Some("PID3"));
    assert_eq!(view.pid_of(ip("198.51.100.7")), Some("PID2"));
    assert_eq!(view.pid_of(ip("203.0.113.1")), Some("PID1"));
    assert_eq!(view.pid_of(ip("2001:db8::1")), Some("PID0"));
    assert_eq!(view.pid_of(ip("::ffff:192.0.2.1")), Some("PID0"), "an IPv4-mapped IPv6 address is IPv6");
}

#[test]
fn rfc7285_network_map_indexes_and_answers_longest_prefix_lookups() {
    let view = network_map_view("rfc7285-networkmap-response.json");
    assert_eq!(view.pids(), ["PID1", "PID2", "PID3"]);
    assert_eq!(view.prefix_count(), 5);
    assert_eq!(view.pid_of(ip("198.51.100.1")), Some("PID1"));
    assert_eq!(view.pid_of(ip("198.51.100.127")), Some("PID1"));
    assert_eq!(view.pid_of(ip("198.51.100.128")), Some("PID2"));
    assert_eq!(view.pid_of(ip("192.0.2.255")), Some("PID1"));
    assert_eq!(view.pid_of(ip("192.0.3.0")), Some("PID3"));
    assert_eq!(view.pid_of(ip("2001:db8::1")), Some("PID3"));
}

#[test]
fn rfc7285_filtered_network_map_example_overlaps_once_host_bits_are_cleared() {
    // `198.51.100.128/24` (PID2) is `198.51.100.0/24`, which PID1 also lists (SPEC §9 item 4).
    let map: NetworkMapResponse =
        serde_json::from_str(&fixture("rfc7285-filtered-networkmap-response.json")).unwrap();
    match NetworkMapView::new(map) {
        Err(MapError::Overlap { prefix, first, second }) => {
            assert_eq!(prefix.to_string(), "198.51.100.0/24");
            assert_eq!((first.as_str(), second.as_str()), ("PID1", "PID2"));
        }
        other => panic!("expected an overlap, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 7285 requests validated against the RFC's own IRDs
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7285_capabilities_are_read_from_the_ird() {
    let ecs = caps_of(&root_ird(), "endpoint-cost");
    assert!(ecs.cost_constraints);
    assert_eq!(ecs.cost_types.len(), 4);
    assert!(ecs.cost_types.iter().any(|t| t.same_type(&CostType::new("hopcount", "ordinal"))));
    assert_eq!(ecs.max_cost_types, 0);
    let eps = caps_of(&root_ird(), "endpoint-property");
    assert_eq!(eps.prop_types, strings(&["my-default-network-map.pid", "priv:ietf-example-prop"]));
    assert!(eps.cost_types.is_empty() && !eps.cost_constraints);
    let map = caps_of(&root_ird(), "numerical-routing-cost-map");
    assert_eq!(map.cost_types, vec![CostType::new("routingcost", "numerical")]);
    let fnm = caps_of(&delegated_ird(), "filtered-network-map");
    assert_eq!(fnm, ResourceCaps::default());
}

#[test]
fn rfc7285_ird_accepts_types_name_the_post_kinds() {
    let kind = |ird: &Ird, id: &str| ird.resources[id].accepts.as_deref().and_then(PostKind::from_accepts);
    assert_eq!(kind(&root_ird(), "endpoint-cost"), Some(PostKind::EndpointCost));
    assert_eq!(kind(&root_ird(), "endpoint-property"), Some(PostKind::EndpointProp));
    assert_eq!(kind(&delegated_ird(), "filtered-network-map"), Some(PostKind::FilteredNetworkMap));
    assert_eq!(kind(&delegated_ird(), "filtered-cost-map"), Some(PostKind::FilteredCostMap));
    assert_eq!(kind(&root_ird(), "my-default-network-map"), None, "a GET resource has no accepts");
    assert_eq!(
        PostKind::from_accepts("Application/ALTO-CostMapFilter+JSON; charset=utf-8"),
        Some(PostKind::FilteredCostMap)
    );
    assert_eq!(PostKind::from_accepts("application/alto-propmapparams+json"), None);
}

#[test]
fn rfc7285_filtered_network_map_request_validates() {
    let body = fixture_json("rfc7285-filtered-networkmap-request.json");
    let req = validate_json(
        PostKind::FilteredNetworkMap,
        &caps_of(&delegated_ird(), "filtered-network-map"),
        &body,
    )
    .unwrap();
    let Request::FilteredNetworkMap(r) = &req else { panic!("wrong kind: {req:?}") };
    assert_eq!(r.pids, strings(&["PID1", "PID2"]));
    assert_eq!(req.to_value(), body);
}

#[test]
fn rfc7285_filtered_cost_map_request_validates() {
    let body = fixture_json("rfc7285-filtered-costmap-request.json");
    let req =
        validate_json(PostKind::FilteredCostMap, &caps_of(&delegated_ird(), "filtered-cost-map"), &body)
            .unwrap();
    let Request::FilteredCostMap(r) = &req else { panic!("wrong kind: {req:?}") };
    assert_eq!(r.cost_type, Some(CostType::new("routingcost", "numerical")));
    assert_eq!(req.to_value(), body);
}

#[test]
fn rfc7285_endpoint_cost_request_validates() {
    let body = fixture_json("rfc7285-endpointcost-request.json");
    let req = validate_json(PostKind::EndpointCost, &caps_of(&root_ird(), "endpoint-cost"), &body).unwrap();
    let Request::EndpointCost(r) = &req else { panic!("wrong kind: {req:?}") };
    assert!(r.cost_type.as_ref().unwrap().is_ordinal());
    assert_eq!(req.to_value(), body);
}

#[test]
fn rfc7285_endpoint_property_request_validates_once_its_typo_is_corrected() {
    let caps = caps_of(&root_ird(), "endpoint-property");
    let verbatim = fixture_json("rfc7285-endpointprop-request.json");
    let e = validate_json(PostKind::EndpointProp, &caps, &verbatim).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidFieldValue);
    assert_eq!(e.field.as_deref(), Some("properties"));
    assert_eq!(e.value.as_deref(), Some("my-default-networkmap.pid"));

    let corrected: Value = serde_json::from_str(
        &fixture("rfc7285-endpointprop-request.json")
            .replace("my-default-networkmap.pid", "my-default-network-map.pid"),
    )
    .unwrap();
    let req = validate_json(PostKind::EndpointProp, &caps, &corrected).unwrap();
    let Request::EndpointProp(r) = &req else { panic!("wrong kind: {req:?}") };
    assert_eq!(r.properties, strings(&["my-default-network-map.pid", "priv:ietf-example-prop"]));
    assert_eq!(req.to_value(), corrected);
}

#[test]
fn rfc7285_requests_are_refused_by_the_wrong_kind_of_resource() {
    // The ECS request sent to the EPS resource, and the EPS request to the filtered network map.
    let caps = caps_of(&root_ird(), "endpoint-property");
    let e = validate_json(PostKind::EndpointProp, &caps, &fixture_json("rfc7285-endpointcost-request.json"))
        .unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), (ErrorCode::MissingField, Some("properties")));
    let e = validate_json(
        PostKind::FilteredNetworkMap,
        &ResourceCaps::default(),
        &fixture_json("rfc7285-endpointprop-request.json"),
    )
    .unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), (ErrorCode::MissingField, Some("pids")));
    // An ordinal ECS request against the numerical-only cost map capabilities names the mode.
    let e = validate_json(
        PostKind::EndpointCost,
        &caps_of(&root_ird(), "numerical-routing-cost-map"),
        &fixture_json("rfc7285-endpointcost-request.json"),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref(), e.value.as_deref()),
        (ErrorCode::InvalidFieldValue, Some("cost-type/cost-mode"), Some("ordinal"))
    );
}

// ---------------------------------------------------------------------------------------------
// Local computations over the RFC 7285 maps
// ---------------------------------------------------------------------------------------------

#[test]
fn rfc7285_pid_properties_computed_from_the_network_map_match_the_rfc_response() {
    let view = network_map_view("rfc7285-networkmap-response.json");
    let expected: EndpointPropResponse =
        serde_json::from_str(&fixture("rfc7285-endpointprop-response.json")).unwrap();
    let props = strings(&["my-default-network-map.pid", "priv:ietf-example-prop"]);
    let eps = endpoints(&strings(&["ipv4:192.0.2.34", "ipv4:203.0.113.129"]));
    let got = endpoint_properties(&props, &eps, &[&view], |prop, addr| {
        (prop == "priv:ietf-example-prop" && addr.0 == ip("192.0.2.34")).then(|| json!("1"))
    });
    assert_eq!(got.endpoint_properties, expected.endpoint_properties);
    // The RFC's vtags are illustrative (they differ between examples); the resource must match.
    assert_eq!(got.meta.dependent_vtags, Some(vec![view.vtag.clone()]));
    assert_eq!(expected.meta.dependent_vtags.unwrap()[0].resource_id, view.vtag.resource_id);
}

#[test]
fn rfc7285_filtered_network_map_is_cut_from_the_full_map_with_its_vtag() {
    let full: NetworkMapResponse =
        serde_json::from_str(&fixture("rfc7285-networkmap-response.json")).unwrap();
    let req: NetworkMapFilter =
        serde_json::from_str(&fixture("rfc7285-filtered-networkmap-request.json")).unwrap();
    let got = filter_network_map(&full, &req);
    assert_eq!(got.meta.vtag, full.meta.vtag, "RFC 7285 §11.3.1.6: the full map's vtag");
    assert_eq!(got.network_map.keys().collect::<Vec<_>>(), ["PID1", "PID2"]);
    assert_eq!(got.network_map["PID1"], full.network_map["PID1"]);
    assert_eq!(got.network_map["PID2"], full.network_map["PID2"]);
    // Restricted to ipv6: every PID stays, those without ipv6 prefixes with an empty group.
    let v6 = NetworkMapFilter { pids: vec![], address_types: Some(strings(&["ipv6"])), extra: Extra::new() };
    let got = filter_network_map(&full, &v6);
    assert_eq!(got.network_map["PID3"], BTreeMap::from([("ipv6".to_string(), strings(&["::/0"]))]));
    assert!(got.network_map["PID1"].is_empty());
}

#[test]
fn rfc7285_filtered_cost_map_is_cut_from_the_full_cost_map() {
    let full: CostMapResponse = serde_json::from_str(&fixture("rfc7285-costmap-response.json")).unwrap();
    let req: CostMapFilter = serde_json::from_str(&fixture("rfc7285-filtered-costmap-request.json")).unwrap();
    let rfc: CostMapResponse =
        serde_json::from_str(&fixture("rfc7285-filtered-costmap-response.json")).unwrap();
    let numerical = CostType::new("routingcost", "numerical");
    let got = filter_cost_map(&full, &numerical, &[], req.pids.as_ref());
    // Same shape as the RFC's filtered answer; values from the full map (the RFC's are illustrative).
    let shape = |m: &CostMapResponse| -> Vec<(String, Vec<String>)> {
        m.cost_map.iter().map(|(s, row)| (s.clone(), row.keys().cloned().collect())).collect()
    };
    assert_eq!(shape(&got), shape(&rfc));
    assert_eq!(got.cost_map["PID1"], full.cost_map["PID1"]);
    assert_eq!(got.meta.dependent_vtags, full.meta.dependent_vtags);
    assert_eq!(got.meta.cost_type, Some(numerical));
    // In ordinal mode the three values 1, 5, 10 become the dense ranks 1, 2, 3.
    let got = filter_cost_map(&full, &CostType::new("routingcost", "ordinal"), &[], req.pids.as_ref());
    assert_eq!(
        serde_json::to_value(&got.cost_map).unwrap(),
        json!({"PID1": {"PID1": 1, "PID2": 2, "PID3": 3}})
    );
}

// ---------------------------------------------------------------------------------------------
// Extensions pass through the base models
// ---------------------------------------------------------------------------------------------

/// The cost types the RFC 8189 fragment's capabilities name (the fragment has no `meta`).
fn rfc8189_cost_types() -> BTreeMap<String, CostType> {
    BTreeMap::from([
        ("num-routingcost".to_string(), CostType::new("routingcost", "numerical")),
        ("num-hopcount".to_string(), CostType::new("hopcount", "numerical")),
        ("num-bwscore".to_string(), CostType::new("bwscore", "numerical")),
    ])
}

#[test]
fn rfc8189_ird_fragment_keeps_multi_cost_capabilities() {
    let original = fixture_json("rfc8189-ird-resources-fragment.json");
    let ird: Ird = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(serde_json::to_value(&ird).unwrap()["resources"], original["resources"]);
    let ext = ird.resources["filtered-cost-map-extended"].capabilities.as_ref().unwrap();
    assert_eq!(ext.extra["max-cost-types"], json!(3));
    assert_eq!(ext.extra["testable-cost-type-names"], json!(["num-routingcost", "num-hopcount"]));
    assert_eq!(ext.cost_type_names.as_ref().map(Vec::len), Some(3));

    let caps = ResourceCaps::from_entry(&ird.resources["filtered-cost-map-extended"], &rfc8189_cost_types());
    assert_eq!((caps.max_cost_types, caps.cost_types.len(), caps.cost_constraints), (3, 3, false));
    let caps = ResourceCaps::from_entry(&ird.resources["filtered-multicost-map"], &rfc8189_cost_types());
    assert_eq!((caps.max_cost_types, caps.cost_types.len(), caps.cost_constraints), (2, 2, true));
}

#[test]
fn rfc8189_multi_cost_requests_validate_and_keep_their_order() {
    let ird: Ird = serde_json::from_str(&fixture("rfc8189-ird-resources-fragment.json")).unwrap();
    let caps = ResourceCaps::from_entry(&ird.resources["filtered-multicost-map"], &rfc8189_cost_types());
    let types = json!([{"cost-metric": "routingcost", "cost-mode": "numerical"},
                       {"cost-metric": "hopcount", "cost-mode": "numerical", "description": "hops"}]);
    let body = json!({"multi-cost-types": types, "constraints": ["[0] le 5", "[1] le 4"],
                      "pids": {"srcs": ["PID1"], "dsts": ["PID2", "PID3"]}});
    let req = validate_json(PostKind::FilteredCostMap, &caps, &body).unwrap();
    let Request::FilteredCostMap(r) = &req else { panic!("wrong kind: {req:?}") };
    assert_eq!(r.cost_type, None);
    assert_eq!(r.extra["multi-cost-types"], types, "kept verbatim, in order");
    // The canonical form drops the description but keeps the order of the list.
    let canon: Value = serde_json::from_slice(&canonical_bytes(&req)).unwrap();
    assert_eq!(
        canon["multi-cost-types"],
        json!([{"cost-metric": "routingcost", "cost-mode": "numerical"}, {"cost-metric": "hopcount", "cost-mode": "numerical"}])
    );
    let mut swapped = body.clone();
    swapped["multi-cost-types"] = json!([types[1], types[0]]);
    let swapped = validate_json(PostKind::FilteredCostMap, &caps, &swapped).unwrap();
    assert_ne!(canonical_bytes(&swapped), canonical_bytes(&req), "multi-cost-types order is significant");

    // An index past the named cost types, or more types than `max-cost-types`, is refused.
    let mut bad = body.clone();
    bad["constraints"] = json!(["[2] le 5"]);
    let e = validate_json(PostKind::FilteredCostMap, &caps, &bad).unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref(), e.value.as_deref()),
        (ErrorCode::InvalidFieldValue, Some("constraints"), Some("[2] le 5"))
    );
    let mut bad = body.clone();
    bad["multi-cost-types"] = json!([types[0], types[1], types[0]]);
    let e = validate_json(PostKind::FilteredCostMap, &caps, &bad).unwrap_err();
    assert_eq!((e.code, e.field.as_deref()), (ErrorCode::InvalidFieldValue, Some("multi-cost-types")));
    let mut bad = body.clone();
    bad["cost-type"] = types[0].clone();
    assert_eq!(validate_json(PostKind::FilteredCostMap, &caps, &bad).unwrap_err().code, ErrorCode::Syntax);
    let mut bad = body;
    bad["multi-cost-types"] = json!([{"cost-metric": "bwscore", "cost-mode": "numerical"}]);
    let e = validate_json(PostKind::FilteredCostMap, &caps, &bad).unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref(), e.value.as_deref()),
        (ErrorCode::InvalidFieldValue, Some("multi-cost-types/cost-metric"), Some("bwscore"))
    );
}

fn calendar_caps() -> ResourceCaps {
    ResourceCaps { cost_types: vec![CostType::new("throughputrating", "numerical")], ..Default::default() }
}

#[test]
fn rfc8896_calendar_request_validates_and_keeps_calendared() {
    let body = fixture_json("rfc8896-calendar-filtered-costmap-request.json");
    let req = validate_json(PostKind::FilteredCostMap, &calendar_caps(), &body).unwrap();
    let Request::FilteredCostMap(r) = &req else { panic!("wrong kind: {req:?}") };
    assert_eq!(r.extra["calendared"], json!([true]));
    assert_eq!(req.to_value(), body);
    let canon: Value = serde_json::from_slice(&canonical_bytes(&req)).unwrap();
    assert_eq!(canon["calendared"], json!([true]));
    let Request::FilteredCostMap(c) = canonicalize(&req) else { panic!() };
    assert_eq!(c.extra["calendared"], json!([true]));
    // Without `calendared` the key differs: a single value is a different answer.
    let mut plain = body;
    plain.as_object_mut().unwrap().remove("calendared");
    let plain = validate_json(PostKind::FilteredCostMap, &calendar_caps(), &plain).unwrap();
    assert_ne!(canonical_bytes(&plain), canonical_bytes(&req));
}

#[test]
fn rfc8896_calendar_response_keeps_its_attributes_and_array_costs() {
    let cm: CostMapResponse = round_trip("rfc8896-calendar-filtered-costmap-response.json");
    let attrs = &cm.meta.extra["calendar-response-attributes"];
    assert_eq!(attrs[0]["calendar-start-time"], json!("Tue, 1 Jul 2019 13:00:00 GMT"));
    assert_eq!(attrs[0]["number-of-intervals"], json!(12));
    for (src, row) in &cm.cost_map {
        for (dst, v) in row {
            assert_eq!(v.as_array().map(Vec::len), Some(12), "{src}->{dst}: {v}");
        }
    }
    assert_eq!(cm.cost_map["PID1"]["PID1"][0], json!(1));
}

/// RFC 9240 defines no type here; this is the shape of a property map with the core's meta.
#[derive(Debug, Serialize, Deserialize)]
struct PropertyMap {
    meta: ResponseMeta,
    #[serde(rename = "property-map")]
    property_map: BTreeMap<String, Map<String, Value>>,
    #[serde(flatten)]
    extra: Extra,
}

#[test]
fn rfc9240_property_maps_round_trip_with_response_meta() {
    for name in [
        "rfc9240-propmap-full-response.json",
        "rfc9240-propmap-filtered-1-response.json",
        "rfc9240-propmap-filtered-2-response.json",
        "rfc9240-propmap-filtered-3-response.json",
    ] {
        let pm: PropertyMap = round_trip(name);
        let meta: ResponseMeta = round_trip_value(&fixture_json(name)["meta"]);
        let deps = meta.dependent_vtags.as_ref().unwrap();
        let ids: Vec<&str> = deps.iter().map(|v| v.resource_id.as_str()).collect();
        assert_eq!(ids, ["default-network-map", "alt-network-map"], "{name}: `uses` order kept");
        assert_eq!(pm.meta, meta);
        assert!(!pm.property_map.is_empty());
    }
}

/// Like [`round_trip`], for a value instead of a fixture.
fn round_trip_value<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let typed: T = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&typed).unwrap(), v);
    typed
}

fn delay_caps() -> ResourceCaps {
    ResourceCaps {
        cost_types: vec![CostType::new("delay-ow", "numerical"), CostType::new("delay-ow:p99", "numerical")],
        ..Default::default()
    }
}

#[test]
fn rfc9439_endpoint_cost_requests_validate_and_responses_round_trip() {
    for (request, response) in [
        ("rfc9439-endpointcost-delay-ow-request.json", "rfc9439-endpointcost-delay-ow-response.json"),
        (
            "rfc9439-endpointcost-delay-ow-ipv6-request.json",
            "rfc9439-endpointcost-delay-ow-ipv6-response.json",
        ),
    ] {
        let body = fixture_json(request);
        let req = validate_json(PostKind::EndpointCost, &delay_caps(), &body).unwrap();
        assert_eq!(req.to_value(), body, "{request}");
        let resp: EndpointCostResponse = round_trip(response);
        assert_eq!(resp.meta.cost_type.as_ref().unwrap().cost_metric, "delay-ow");
        let Request::EndpointCost(r) = &req else { panic!() };
        let srcs = r.endpoints.srcs.as_ref().unwrap();
        assert_eq!(
            resp.endpoint_cost_map.keys().collect::<Vec<_>>(),
            srcs.iter().collect::<Vec<_>>(),
            "{response}"
        );
    }
    // RFC 7285 capabilities do not offer delay-ow.
    let e = validate_json(
        PostKind::EndpointCost,
        &caps_of(&root_ird(), "endpoint-cost"),
        &fixture_json("rfc9439-endpointcost-delay-ow-request.json"),
    )
    .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref(), e.value.as_deref()),
        (ErrorCode::InvalidFieldValue, Some("cost-type/cost-metric"), Some("delay-ow"))
    );
}

#[test]
fn rfc9439_cost_context_and_statistical_suffix_are_kept() {
    let mut body = fixture_json("rfc9439-endpointcost-delay-ow-request.json");
    body["cost-type"]["cost-context"] = json!({"cost-source": "sla", "parameters": {"x": 1}});
    body["cost-type"]["cost-metric"] = json!("delay-ow:p99");
    let req = validate_json(PostKind::EndpointCost, &delay_caps(), &body).unwrap();
    let Request::EndpointCost(r) = &req else { panic!() };
    let t = r.cost_type.as_ref().unwrap();
    assert_eq!(t.cost_metric, "delay-ow:p99");
    assert_eq!(t.extra["cost-context"], body["cost-type"]["cost-context"]);
    let canon: Value = serde_json::from_slice(&canonical_bytes(&req)).unwrap();
    assert_eq!(canon["cost-type"]["cost-context"], body["cost-type"]["cost-context"]);
    // A response carrying a cost-context keeps it too.
    let mut resp = fixture_json("rfc9439-endpointcost-delay-ow-response.json");
    resp["meta"]["cost-type"]["cost-context"] = json!({"cost-source": "estimation"});
    let typed: EndpointCostResponse = round_trip_value(&resp);
    assert_eq!(typed.meta.cost_type.unwrap().extra["cost-context"], json!({"cost-source": "estimation"}));
}

// ---------------------------------------------------------------------------------------------
// Malformed requests
// ---------------------------------------------------------------------------------------------

/// Capabilities under which every kind of request can be well-formed: the RFC 7285 ECS
/// capabilities (four cost types, constraints allowed) plus the EPS property types.
fn full_caps() -> ResourceCaps {
    let mut caps = caps_of(&root_ird(), "endpoint-cost");
    caps.prop_types = caps_of(&root_ird(), "endpoint-property").prop_types;
    caps
}

fn no_constraint_caps() -> ResourceCaps {
    ResourceCaps { cost_constraints: false, ..full_caps() }
}

const ORD: &str = r#""cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}"#;

/// One malformed request and the single error it must produce.
struct Case {
    kind: PostKind,
    body: String,
    code: ErrorCode,
    field: Option<&'static str>,
    value: Option<&'static str>,
    caps: fn() -> ResourceCaps,
}

fn case(kind: PostKind, body: impl Into<String>, code: ErrorCode, field: Option<&'static str>) -> Case {
    Case { kind, body: body.into(), code, field, value: None, caps: full_caps }
}

fn bad_value(kind: PostKind, body: impl Into<String>, field: &'static str, value: &'static str) -> Case {
    Case { value: Some(value), ..case(kind, body, ErrorCode::InvalidFieldValue, Some(field)) }
}

fn ecs(endpoints: &str) -> String {
    format!(r#"{{{ORD}, "endpoints": {endpoints}}}"#)
}

fn eps(properties: &str, endpoints: &str) -> String {
    format!(r#"{{"properties": {properties}, "endpoints": {endpoints}}}"#)
}

fn fcm(rest: &str) -> String {
    format!(r#"{{{ORD}{rest}}}"#)
}

fn malformed_cases() -> Vec<Case> {
    use ErrorCode::*;
    use PostKind::*;
    let deep_inside = format!(r#"{{"pids": {}{}}}"#, "[".repeat(5000), "]".repeat(5000));
    let nested_100 = format!(r#"{{"pids": [{}{}]}}"#, "[".repeat(100), "]".repeat(100));
    vec![
        // --- any kind: not one JSON object (wrong type, truncated, trailing data, nested too deep)
        case(FilteredNetworkMap, "", Syntax, None),
        case(FilteredNetworkMap, "[]", Syntax, None),
        case(EndpointCost, "null", Syntax, None),
        case(EndpointProp, r#""properties""#, Syntax, None),
        case(FilteredNetworkMap, r#"{"pids": ["PID1"]"#, Syntax, None),
        case(FilteredNetworkMap, r#"{"pids": ["PID1"]} {}"#, Syntax, None),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "pids": {"srcs": ["PID1""#,
            Syntax,
            None,
        ),
        case(EndpointCost, ecs(r#"{"dsts": ["ipv4:192.0.2.1"],}"#), Syntax, None),
        case(FilteredNetworkMap, deep_inside, Syntax, None),
        case(EndpointProp, format!("{}{}", "{\"a\":".repeat(1000), "}".repeat(1000)), Syntax, None),
        // --- filtered network map
        case(FilteredNetworkMap, "{}", MissingField, Some("pids")),
        case(FilteredNetworkMap, r#"{"address-types": ["ipv4"]}"#, MissingField, Some("pids")),
        case(FilteredNetworkMap, r#"{"pids": "PID1"}"#, InvalidFieldType, Some("pids")),
        case(FilteredNetworkMap, r#"{"pids": {"PID1": true}}"#, InvalidFieldType, Some("pids")),
        case(FilteredNetworkMap, r#"{"pids": null}"#, InvalidFieldType, Some("pids")),
        bad_value(FilteredNetworkMap, r#"{"pids": ["PID1", 7]}"#, "pids", "7"),
        bad_value(FilteredNetworkMap, r#"{"pids": [null]}"#, "pids", "null"),
        case(FilteredNetworkMap, nested_100, InvalidFieldValue, Some("pids")),
        case(FilteredNetworkMap, r#"{"pids": ["has space"]}"#, Syntax, None),
        case(FilteredNetworkMap, r#"{"pids": [""]}"#, Syntax, None),
        case(FilteredNetworkMap, format!(r#"{{"pids": ["{}"]}}"#, "p".repeat(65)), Syntax, None),
        case(FilteredNetworkMap, r#"{"pids": ["pïd"]}"#, Syntax, None),
        case(
            FilteredNetworkMap,
            r#"{"pids": [], "address-types": "ipv4"}"#,
            InvalidFieldType,
            Some("address-types"),
        ),
        case(FilteredNetworkMap, r#"{"pids": [], "address-types": ["ip-v4"]}"#, Syntax, None),
        bad_value(FilteredNetworkMap, r#"{"pids": [], "address-types": [4]}"#, "address-types", "4"),
        // --- filtered cost map
        case(FilteredCostMap, "{}", MissingField, Some("cost-type")),
        case(FilteredCostMap, r#"{"pids": {"srcs": ["PID1"]}}"#, MissingField, Some("cost-type")),
        case(FilteredCostMap, r#"{"cost-type": "routingcost"}"#, InvalidFieldType, Some("cost-type")),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "routingcost"}}"#,
            MissingField,
            Some("cost-type/cost-mode"),
        ),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-mode": "ordinal"}}"#,
            MissingField,
            Some("cost-type/cost-metric"),
        ),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "routingcost", "cost-mode": 1}}"#,
            InvalidFieldType,
            Some("cost-type/cost-mode"),
        ),
        bad_value(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "bwscore", "cost-mode": "numerical"}}"#,
            "cost-type/cost-metric",
            "bwscore",
        ),
        bad_value(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "routingcost", "cost-mode": "array"}}"#,
            "cost-type/cost-mode",
            "array",
        ),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "a@b", "cost-mode": "numerical"}}"#,
            Syntax,
            None,
        ),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "priv:", "cost-mode": "numerical"}}"#,
            Syntax,
            None,
        ),
        case(
            FilteredCostMap,
            r#"{"cost-type": {"cost-metric": "routingcost", "cost-mode": "no mode"}}"#,
            Syntax,
            None,
        ),
        // RFC 8189 members are not understood where max-cost-types is 0: cost-type is still required.
        case(
            FilteredCostMap,
            r#"{"multi-cost-types": [{"cost-metric": "routingcost", "cost-mode": "ordinal"}]}"#,
            MissingField,
            Some("cost-type"),
        ),
        Case {
            value: Some("le 5"),
            caps: no_constraint_caps,
            ..case(
                FilteredCostMap,
                fcm(r#", "constraints": ["le 5"]"#),
                InvalidFieldValue,
                Some("constraints"),
            )
        },
        bad_value(FilteredCostMap, fcm(r#", "constraints": ["le ten"]"#), "constraints", "le ten"),
        bad_value(FilteredCostMap, fcm(r#", "constraints": ["ne 3"]"#), "constraints", "ne 3"),
        bad_value(FilteredCostMap, fcm(r#", "constraints": ["ge 1", "le 0x10"]"#), "constraints", "le 0x10"),
        bad_value(FilteredCostMap, fcm(r#", "constraints": ["[0] le 5"]"#), "constraints", "[0] le 5"),
        bad_value(FilteredCostMap, fcm(r#", "constraints": [5]"#), "constraints", "5"),
        case(FilteredCostMap, fcm(r#", "constraints": "le 5""#), InvalidFieldType, Some("constraints")),
        case(FilteredCostMap, fcm(r#", "pids": ["PID1"]"#), InvalidFieldType, Some("pids")),
        case(FilteredCostMap, fcm(r#", "pids": {"srcs": "PID1"}"#), InvalidFieldType, Some("pids/srcs")),
        case(FilteredCostMap, fcm(r#", "pids": {"dsts": ["a b"]}"#), Syntax, None),
        bad_value(FilteredCostMap, fcm(r#", "pids": {"srcs": [], "dsts": [null]}"#), "pids/dsts", "null"),
        // --- endpoint property
        case(EndpointProp, r#"{"endpoints": ["ipv4:192.0.2.1"]}"#, MissingField, Some("properties")),
        case(EndpointProp, r#"{"properties": ["priv:ietf-example-prop"]}"#, MissingField, Some("endpoints")),
        case(
            EndpointProp,
            eps(r#""priv:ietf-example-prop""#, r#"["ipv4:192.0.2.1"]"#),
            InvalidFieldType,
            Some("properties"),
        ),
        case(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#""ipv4:192.0.2.1""#),
            InvalidFieldType,
            Some("endpoints"),
        ),
        bad_value(EndpointProp, eps("[]", r#"["ipv4:192.0.2.1"]"#), "properties", "[]"),
        bad_value(EndpointProp, eps(r#"["priv:ietf-example-prop"]"#, "[]"), "endpoints", "[]"),
        bad_value(EndpointProp, eps(r#"["pid"]"#, r#"["ipv4:192.0.2.1"]"#), "properties", "pid"),
        bad_value(
            EndpointProp,
            eps(r#"["other-map.pid"]"#, r#"["ipv4:192.0.2.1"]"#),
            "properties",
            "other-map.pid",
        ),
        bad_value(EndpointProp, eps(r#"[{"p": 1}]"#, r#"["ipv4:192.0.2.1"]"#), "properties", r#"{"p":1}"#),
        case(EndpointProp, eps(r#"["bad prop"]"#, r#"["ipv4:192.0.2.1"]"#), Syntax, None),
        case(EndpointProp, eps(r#"["map.pid.x y"]"#, r#"["ipv4:192.0.2.1"]"#), Syntax, None),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:1.2.3"]"#),
            "endpoints",
            "ipv4:1.2.3",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv6:::g"]"#),
            "endpoints",
            "ipv6:::g",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:01.2.3.4"]"#),
            "endpoints",
            "ipv4:01.2.3.4",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:1.2.3.4", "192.0.2.1"]"#),
            "endpoints",
            "192.0.2.1",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:256.1.1.1"]"#),
            "endpoints",
            "ipv4:256.1.1.1",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:::ffff:1.2.3.4"]"#),
            "endpoints",
            "ipv4:::ffff:1.2.3.4",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv6:192.0.2.1"]"#),
            "endpoints",
            "ipv6:192.0.2.1",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv6:fe80::1%eth0"]"#),
            "endpoints",
            "ipv6:fe80::1%eth0",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:192.0.2.0/24"]"#),
            "endpoints",
            "ipv4:192.0.2.0/24",
        ),
        bad_value(
            EndpointProp,
            eps(r#"["priv:ietf-example-prop"]"#, r#"["mac:00:11:22:33:44:55"]"#),
            "endpoints",
            "mac:00:11:22:33:44:55",
        ),
        bad_value(EndpointProp, eps(r#"["priv:ietf-example-prop"]"#, "[true]"), "endpoints", "true"),
        // --- endpoint cost
        case(EndpointCost, r#"{"endpoints": {"dsts": ["ipv4:192.0.2.1"]}}"#, MissingField, Some("cost-type")),
        case(EndpointCost, fcm(""), MissingField, Some("endpoints")),
        case(EndpointCost, ecs(r#"["ipv4:192.0.2.1"]"#), InvalidFieldType, Some("endpoints")),
        case(EndpointCost, ecs("{}"), MissingField, Some("endpoints/dsts")),
        case(EndpointCost, ecs(r#"{"srcs": [], "dsts": []}"#), MissingField, Some("endpoints/dsts")),
        case(EndpointCost, ecs(r#"{"srcs": []}"#), MissingField, Some("endpoints/dsts")),
        case(EndpointCost, ecs(r#"{"srcs": "ipv4:192.0.2.1"}"#), InvalidFieldType, Some("endpoints/srcs")),
        case(
            EndpointCost,
            ecs(r#"{"dsts": {"ipv4:192.0.2.1": 1}}"#),
            InvalidFieldType,
            Some("endpoints/dsts"),
        ),
        bad_value(
            EndpointCost,
            ecs(r#"{"srcs": ["ipv4:1.2.3"], "dsts": ["ipv4:192.0.2.1"]}"#),
            "endpoints/srcs",
            "ipv4:1.2.3",
        ),
        bad_value(
            EndpointCost,
            ecs(r#"{"dsts": ["ipv4:192.0.2.1", "ipv6:::g"]}"#),
            "endpoints/dsts",
            "ipv6:::g",
        ),
        bad_value(EndpointCost, ecs(r#"{"srcs": ["ipv4:01.2.3.4"]}"#), "endpoints/srcs", "ipv4:01.2.3.4"),
        bad_value(EndpointCost, ecs(r#"{"dsts": [1]}"#), "endpoints/dsts", "1"),
        bad_value(
            EndpointCost,
            r#"{"cost-type": {"cost-metric": "delay-ow", "cost-mode": "numerical"}, "endpoints": {"dsts": ["ipv4:192.0.2.1"]}}"#,
            "cost-type/cost-metric",
            "delay-ow",
        ),
        bad_value(
            EndpointCost,
            r#"{"cost-type": {"cost-metric": "hopcount", "cost-mode": "array"}, "endpoints": {"dsts": ["ipv4:192.0.2.1"]}}"#,
            "cost-type/cost-mode",
            "array",
        ),
        Case {
            value: Some("lt 3"),
            caps: no_constraint_caps,
            ..case(
                EndpointCost,
                format!(r#"{{{ORD}, "constraints": ["lt 3"], "endpoints": {{"dsts": ["ipv4:192.0.2.1"]}}}}"#),
                InvalidFieldValue,
                Some("constraints"),
            )
        },
        bad_value(
            EndpointCost,
            format!(r#"{{{ORD}, "constraints": ["lt"], "endpoints": {{"dsts": ["ipv4:192.0.2.1"]}}}}"#),
            "constraints",
            "lt",
        ),
    ]
}

#[test]
fn malformed_requests_produce_exactly_the_expected_error() {
    let cases = malformed_cases();
    let mut failures = Vec::new();
    for c in &cases {
        let shown: String = c.body.chars().take(120).collect();
        match validate(c.kind, &(c.caps)(), c.body.as_bytes()) {
            Ok(r) => failures.push(format!("{:?} {shown}: accepted as {r:?}", c.kind)),
            Err(e) => {
                let value_ok = c.value.is_none() || e.value.as_deref() == c.value;
                if e.code != c.code || e.field.as_deref() != c.field || !value_ok {
                    failures.push(format!(
                        "{:?} {shown}: got {:?} field={:?} value={:?}, want {:?} field={:?} value={:?}",
                        c.kind, e.code, e.field, e.value, c.code, c.field, c.value
                    ));
                }
                if e.code == ErrorCode::Syntax {
                    assert!(
                        e.syntax_error.as_deref().is_some_and(|t| !t.is_empty()),
                        "E_SYNTAX without a text: {shown}"
                    );
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn json_syntax_errors_say_where() {
    let e = validate(PostKind::FilteredNetworkMap, &ResourceCaps::default(), b"{\n  \"pids\": [\"PID1\",\n")
        .unwrap_err();
    let text = e.syntax_error.unwrap();
    assert!(text.contains("line 3"), "{text}");
    let e =
        validate(PostKind::FilteredNetworkMap, &ResourceCaps::default(), br#"{"pids": [,]}"#).unwrap_err();
    assert!(e.syntax_error.unwrap().contains("column 11"));
}

#[test]
fn each_malformed_case_is_a_small_edit_of_a_valid_request() {
    // Guards the table above: the well-formed neighbours of the cases are accepted, so the
    // errors come from the one fault each case injects.
    let ok = [
        (PostKind::FilteredNetworkMap, r#"{"pids": ["PID1"], "address-types": ["ipv4"]}"#.to_string()),
        (PostKind::FilteredNetworkMap, r#"{"pids": []}"#.to_string()),
        (PostKind::FilteredCostMap, fcm(r#", "constraints": ["ge 1", "le 10"], "pids": {"srcs": [], "dsts": ["PID1"]}"#)),
        (PostKind::FilteredCostMap, fcm(r#", "multi-cost-types": "ignored: no multi-cost capability""#)),
        (PostKind::EndpointProp, eps(r#"["priv:ietf-example-prop"]"#, r#"["ipv4:1.2.3.4", "ipv6:::1", "IPv4:192.0.2.1"]"#)),
        (PostKind::EndpointCost, ecs(r#"{"dsts": ["ipv4:192.0.2.1"]}"#)),
        (PostKind::EndpointCost, ecs(r#"{"srcs": ["ipv6:::ffff:1.2.3.4"], "dsts": []}"#)),
        (
            PostKind::EndpointCost,
            r#"{"cost-type": {"cost-metric": "hopcount", "cost-mode": "numerical", "description": 5}, "endpoints": {"dsts": ["ipv4:192.0.2.1"]}}"#.to_string(),
        ),
    ];
    for (kind, body) in ok {
        if let Err(e) = validate(kind, &full_caps(), body.as_bytes()) {
            panic!("{kind:?} {body}: refused with {e}");
        }
    }
}
