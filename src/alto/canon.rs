//! Canonical forms of POST requests (SPEC §8.2): the cache and coalescing key.
//!
//! Only spec-backed normalisations: sets are sorted and de-duplicated (addresses compared as
//! addresses), `description` is dropped, absent lists are written as their empty equivalents,
//! unknown fields are kept, and order-significant arrays (`multi-cost-types`,
//! `testable-cost-types`, `calendared`) are left alone. Equal canonical forms must get the same
//! answer from a correct origin.

use serde_json::Value;

use super::addr::TypedAddr;
use super::types::{CostType, Extra, PidFilter};
use super::validate::Request;

/// The canonical form of a validated request.
pub fn canonicalize(req: &Request) -> Request {
    into_canonical(req.clone())
}

/// [`canonicalize`], consuming the request.
pub fn into_canonical(mut req: Request) -> Request {
    match &mut req {
        Request::FilteredNetworkMap(r) => {
            set(&mut r.pids);
            if let Some(types) = &mut r.address_types {
                set(types);
            }
            if r.address_types.as_ref().is_some_and(Vec::is_empty) {
                r.address_types = None;
            }
            extras(&mut r.extra);
        }
        Request::FilteredCostMap(r) => {
            if let Some(t) = &mut r.cost_type {
                cost_type(t);
            }
            constraints(&mut r.constraints);
            let pids = r.pids.get_or_insert_with(PidFilter::default);
            set(&mut pids.srcs);
            set(&mut pids.dsts);
            extras(&mut r.extra);
        }
        Request::EndpointProp(r) => {
            set(&mut r.properties);
            addresses(&mut r.endpoints);
            extras(&mut r.extra);
        }
        Request::EndpointCost(r) => {
            if let Some(t) = &mut r.cost_type {
                cost_type(t);
            }
            constraints(&mut r.constraints);
            for list in [&mut r.endpoints.srcs, &mut r.endpoints.dsts] {
                addresses(list.get_or_insert_with(Vec::new));
            }
            extras(&mut r.extra);
        }
    }
    req
}

/// The canonical form as compact JSON: the bytes a key is made of, and the body forwarded
/// upstream. Members come out in a fixed order (the modelled fields first, then unknown members
/// sorted by name), so equal canonical forms give equal bytes.
pub fn canonical_bytes(req: &Request) -> Vec<u8> {
    to_bytes(&canonicalize(req))
}

/// The bytes of a request that is already canonical (see [`canonical_bytes`]).
pub fn to_bytes(req: &Request) -> Vec<u8> {
    // These types hold strings, arrays and JSON values only: serialising cannot fail.
    let bytes = match req {
        Request::FilteredNetworkMap(r) => serde_json::to_vec(r),
        Request::FilteredCostMap(r) => serde_json::to_vec(r),
        Request::EndpointProp(r) => serde_json::to_vec(r),
        Request::EndpointCost(r) => serde_json::to_vec(r),
    };
    bytes.unwrap_or_default()
}

fn set(list: &mut Vec<String>) {
    list.sort_unstable();
    list.dedup();
}

/// Typed addresses: compared as addresses, written in canonical spelling, sorted by address.
/// Strings that do not parse (validation lets none through) are kept as they are, after the
/// addresses.
pub fn addresses(list: &mut Vec<String>) {
    let mut parsed: Vec<(Option<TypedAddr>, String)> = list
        .drain(..)
        .map(|s| match TypedAddr::parse(&s) {
            // A parsed `ipv4:` address is already canonical (the parser refuses leading zeros);
            // only other spellings need formatting.
            Ok(a) if s.starts_with("ipv4:") => (Some(a), s),
            Ok(a) => (Some(a), a.to_string()),
            Err(_) => (None, s),
        })
        .collect();
    parsed.sort_unstable_by(|a, b| match (&a.0, &b.0) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.1.cmp(&b.1),
    });
    parsed.dedup_by(|a, b| a.1 == b.1);
    list.extend(parsed.into_iter().map(|(_, s)| s));
}

fn cost_type(t: &mut CostType) {
    t.description = None;
}

fn constraints(c: &mut Option<Vec<String>>) {
    if let Some(list) = c {
        for s in list.iter_mut() {
            *s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        }
        set(list);
    }
    if c.as_ref().is_some_and(Vec::is_empty) {
        *c = None;
    }
}

/// Extension members with spec-backed normalisations: descriptions dropped from RFC 8189 cost
/// type lists (their order kept), `or-constraints` sorted at both levels (an OR of ANDs).
fn extras(extra: &mut Extra) {
    for key in ["multi-cost-types", "testable-cost-types"] {
        if let Some(Value::Array(types)) = extra.get_mut(key) {
            for t in types.iter_mut() {
                if let Value::Object(o) = t {
                    o.remove("description");
                }
            }
        }
    }
    if let Some(Value::Array(ors)) = extra.get_mut("or-constraints") {
        if ors.iter().all(|a| a.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
            let mut groups: Vec<Vec<String>> = ors
                .iter()
                .map(|a| {
                    a.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
                })
                .collect();
            for g in groups.iter_mut() {
                set(g);
            }
            groups.sort();
            groups.dedup();
            *ors = groups.into_iter().map(Value::from).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alto::validate::{validate, PostKind, ResourceCaps};
    use serde_json::json;

    fn ecs(body: Value) -> Vec<u8> {
        let caps = ResourceCaps {
            cost_types: vec![CostType::new("routingcost", "ordinal")],
            cost_constraints: true,
            ..Default::default()
        };
        canonical_bytes(&validate(PostKind::EndpointCost, &caps, body.to_string().as_bytes()).unwrap())
    }

    #[test]
    fn spelling_order_duplicates_and_description_do_not_matter() {
        let a = ecs(
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal", "description": "x"},
            "endpoints": {"srcs": ["ipv6:2001:DB8::1"], "dsts": ["ipv4:10.0.0.2", "ipv4:10.0.0.1", "ipv4:10.0.0.2"]}}),
        );
        let b = ecs(
            json!({"endpoints": {"dsts": ["ipv4:10.0.0.1", "ipv4:10.0.0.2"], "srcs": ["ipv6:2001:db8:0::1"]},
            "cost-type": {"cost-mode": "ordinal", "cost-metric": "routingcost"}}),
        );
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a).unwrap(),
            r#"{"cost-type":{"cost-metric":"routingcost","cost-mode":"ordinal"},"endpoints":{"srcs":["ipv6:2001:db8::1"],"dsts":["ipv4:10.0.0.1","ipv4:10.0.0.2"]}}"#
        );
    }

    #[test]
    fn constraints_are_a_set_and_unknown_fields_stay() {
        let a = ecs(
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "constraints": ["le 5", "ge  1", "le 5"],
            "x-ext": [3, 1], "endpoints": {"dsts": ["ipv4:10.0.0.1"]}}),
        );
        let b = ecs(
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "constraints": ["ge 1", "le 5"],
            "x-ext": [3, 1], "endpoints": {"dsts": ["ipv4:10.0.0.1"], "srcs": []}}),
        );
        assert_eq!(a, b);
        let c = ecs(
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "constraints": ["ge 1", "le 5"],
            "x-ext": [1, 3], "endpoints": {"dsts": ["ipv4:10.0.0.1"]}}),
        );
        assert_ne!(a, c, "unknown arrays keep their order");
    }
}
