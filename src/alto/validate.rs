//! Request validation (RFC 7285 §8.5, §11.3–§11.5): a POST body is checked against the rules of its
//! resource kind and the resource's advertised capabilities, and becomes a typed request or
//! exactly one [`AltoError`] carrying the code, the full field path and the offending value.
//!
//! Extension fields (RFC 8189 `multi-cost-types`, `testable-cost-types`, `or-constraints`,
//! RFC 8896 `calendared`, anything else) are kept in the typed request's `extra`, never rejected
//! as unknown.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::addr::TypedAddr;
use super::constraint::Constraint;
use super::error::AltoError;
use super::ident;
use super::media;
use super::types::{
    Capabilities, CostMapFilter, CostType, EndpointCostParams, EndpointFilter, EndpointPropParams, IrdEntry,
    NetworkMapFilter, PidFilter,
};

/// The POST resource kinds of RFC 7285, told apart by their `accepts` media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostKind {
    FilteredNetworkMap,
    FilteredCostMap,
    EndpointProp,
    EndpointCost,
}

impl PostKind {
    /// The kind that accepts `media_type`, if it is one RFC 7285 defines.
    pub fn from_accepts(media_type: &str) -> Option<PostKind> {
        let essence = media::MediaRange::parse(media_type)?.essence();
        match essence.as_str() {
            media::NETWORK_MAP_FILTER => Some(PostKind::FilteredNetworkMap),
            media::COST_MAP_FILTER => Some(PostKind::FilteredCostMap),
            media::ENDPOINT_PROP_PARAMS => Some(PostKind::EndpointProp),
            media::ENDPOINT_COST_PARAMS => Some(PostKind::EndpointCost),
            _ => None,
        }
    }
}

/// What a resource's IRD entry lets a request ask for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceCaps {
    /// The offered cost types, resolved from `cost-type-names` through the IRD's `meta.cost-types`.
    pub cost_types: Vec<CostType>,
    /// `cost-constraints` (default false).
    pub cost_constraints: bool,
    /// `prop-types` (also read from the legacy spelling `properties`).
    pub prop_types: Vec<String>,
    /// RFC 8189 `max-cost-types` (0: no multi-cost).
    pub max_cost_types: usize,
}

impl ResourceCaps {
    /// Reads the capabilities of `entry`; names missing from `cost_types` are skipped.
    pub fn from_entry(entry: &IrdEntry, cost_types: &BTreeMap<String, CostType>) -> ResourceCaps {
        let default = Capabilities::default();
        let caps = entry.capabilities.as_ref().unwrap_or(&default);
        let names = caps.cost_type_names.iter().flatten();
        let prop_types = caps.prop_types.clone().unwrap_or_else(|| {
            caps.extra
                .get("properties")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default()
        });
        ResourceCaps {
            cost_types: names
                .filter_map(|n| cost_types.get(n))
                .map(|t| CostType::new(&t.cost_metric, &t.cost_mode))
                .collect(),
            cost_constraints: caps.cost_constraints.unwrap_or(false),
            prop_types,
            max_cost_types: caps.extra.get("max-cost-types").and_then(Value::as_u64).unwrap_or(0) as usize,
        }
    }

    fn offers(&self, t: &CostType) -> bool {
        self.cost_types.iter().any(|o| o.same_type(t))
    }
}

/// A validated POST request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    FilteredNetworkMap(NetworkMapFilter),
    FilteredCostMap(CostMapFilter),
    EndpointProp(EndpointPropParams),
    EndpointCost(EndpointCostParams),
}

impl Request {
    /// The request as JSON.
    pub fn to_value(&self) -> Value {
        let v = match self {
            Request::FilteredNetworkMap(r) => serde_json::to_value(r),
            Request::FilteredCostMap(r) => serde_json::to_value(r),
            Request::EndpointProp(r) => serde_json::to_value(r),
            Request::EndpointCost(r) => serde_json::to_value(r),
        };
        // These types serialise to JSON objects of strings, arrays and values: cannot fail.
        v.unwrap_or(Value::Null)
    }
}

/// Parses and validates a POST body of `kind` against `caps`.
pub fn validate(kind: PostKind, caps: &ResourceCaps, body: &[u8]) -> Result<Request, AltoError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| AltoError::syntax(format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(AltoError::syntax("the request body must be a JSON object"));
    };
    match kind {
        PostKind::FilteredNetworkMap => network_map_filter(obj).map(Request::FilteredNetworkMap),
        PostKind::FilteredCostMap => cost_map_filter(obj, caps).map(Request::FilteredCostMap),
        PostKind::EndpointProp => endpoint_prop(obj, caps).map(Request::EndpointProp),
        PostKind::EndpointCost => endpoint_cost(obj, caps).map(Request::EndpointCost),
    }
}

fn network_map_filter(mut obj: Map<String, Value>) -> Result<NetworkMapFilter, AltoError> {
    let pids = required(&mut obj, "pids", "pids")?;
    let pids = string_array(pids, "pids", |s| pid_syntax(s, "pids"))?;
    let address_types = obj
        .remove("address-types")
        .map(|v| {
            string_array(v, "address-types", |s| {
                check_syntax(ident::is_address_type(s), "address-types", s, "address type")
            })
        })
        .transpose()?;
    Ok(NetworkMapFilter { pids, address_types, extra: obj })
}

fn cost_map_filter(mut obj: Map<String, Value>, caps: &ResourceCaps) -> Result<CostMapFilter, AltoError> {
    let (cost_type, n_types) = cost_types(&mut obj, caps)?;
    let constraints = constraints(&mut obj, caps, n_types)?;
    let pids = match obj.remove("pids") {
        None => None,
        Some(Value::Object(mut p)) => {
            let mut list = |key: &str| -> Result<Vec<String>, AltoError> {
                let path = format!("pids/{key}");
                match p.remove(key) {
                    None => Ok(Vec::new()),
                    Some(v) => string_array(v, &path, |s| pid_syntax(s, &path)),
                }
            };
            let (srcs, dsts) = (list("srcs")?, list("dsts")?);
            Some(PidFilter { srcs, dsts, extra: p })
        }
        Some(_) => return Err(AltoError::invalid_type("pids")),
    };
    Ok(CostMapFilter { cost_type, constraints, pids, extra: obj })
}

fn endpoint_prop(mut obj: Map<String, Value>, caps: &ResourceCaps) -> Result<EndpointPropParams, AltoError> {
    let properties = required(&mut obj, "properties", "properties")?;
    let properties = string_array(properties, "properties", |s| {
        check_syntax(ident::is_property_name(s), "properties", s, "endpoint property name")?;
        if caps.prop_types.iter().any(|p| p == s) {
            Ok(())
        } else {
            Err(AltoError::invalid_value("properties", &Value::from(s)))
        }
    })?;
    non_empty(&properties, "properties")?;
    let endpoints = required(&mut obj, "endpoints", "endpoints")?;
    let endpoints = string_array(endpoints, "endpoints", |s| typed_addr(s, "endpoints"))?;
    non_empty(&endpoints, "endpoints")?;
    Ok(EndpointPropParams { properties, endpoints, extra: obj })
}

fn endpoint_cost(mut obj: Map<String, Value>, caps: &ResourceCaps) -> Result<EndpointCostParams, AltoError> {
    let (cost_type, n_types) = cost_types(&mut obj, caps)?;
    let constraints = constraints(&mut obj, caps, n_types)?;
    let Value::Object(mut ep) = required(&mut obj, "endpoints", "endpoints")? else {
        return Err(AltoError::invalid_type("endpoints"));
    };
    let mut list = |key: &str| -> Result<Option<Vec<String>>, AltoError> {
        let path = format!("endpoints/{key}");
        ep.remove(key).map(|v| string_array(v, &path, |s| typed_addr(s, &path))).transpose()
    };
    let (srcs, dsts) = (list("srcs")?, list("dsts")?);
    let empty = |l: &Option<Vec<String>>| l.as_ref().is_none_or(Vec::is_empty);
    if empty(&srcs) && empty(&dsts) {
        // Each empty list stands for the client's own address (RFC 7285 §11.5.1.3), but not both.
        return Err(AltoError::missing("endpoints/dsts"));
    }
    Ok(EndpointCostParams {
        cost_type,
        constraints,
        endpoints: EndpointFilter { srcs, dsts, extra: ep },
        extra: obj,
    })
}

/// `cost-type`, or RFC 8189 `multi-cost-types` where the resource offers multi-cost.
/// Returns the single cost type (if any) and how many cost types the request names.
fn cost_types(
    obj: &mut Map<String, Value>,
    caps: &ResourceCaps,
) -> Result<(Option<CostType>, usize), AltoError> {
    let multi = caps.max_cost_types > 0 && obj.contains_key("multi-cost-types");
    if multi {
        if obj.contains_key("cost-type") {
            return Err(AltoError::syntax(
                "cost-type and multi-cost-types are mutually exclusive (RFC 8189 §4.1.1)",
            ));
        }
        let Some(Value::Array(types)) = obj.get("multi-cost-types") else {
            return Err(AltoError::invalid_type("multi-cost-types"));
        };
        if types.is_empty() || types.len() > caps.max_cost_types {
            return Err(AltoError::invalid_value("multi-cost-types", &Value::from(types.len())));
        }
        for t in types {
            cost_type(t, "multi-cost-types", caps)?;
        }
        // The list stays in `extra` verbatim: its order is significant.
        return Ok((None, types.len()));
    }
    let t = required(obj, "cost-type", "cost-type")?;
    Ok((Some(cost_type(&t, "cost-type", caps)?), 1))
}

fn cost_type(v: &Value, path: &str, caps: &ResourceCaps) -> Result<CostType, AltoError> {
    let Value::Object(o) = v else { return Err(AltoError::invalid_type(path)) };
    let member = |name: &str, valid: fn(&str) -> bool, what: &str| -> Result<String, AltoError> {
        let p = format!("{path}/{name}");
        match o.get(name) {
            None => Err(AltoError::missing(p)),
            Some(Value::String(s)) if valid(s) => Ok(s.clone()),
            Some(Value::String(s)) => Err(AltoError::syntax(format!("{p}: `{s}` is not a valid {what}"))),
            Some(_) => Err(AltoError::invalid_type(p)),
        }
    };
    let metric = member("cost-metric", ident::is_cost_metric, "cost metric")?;
    let mode = member("cost-mode", ident::is_cost_mode, "cost mode")?;
    let mut t = CostType::new(&metric, &mode);
    // `description` is ignored (RFC 7285 §10.7); other members (RFC 9439 `cost-context`) are kept.
    t.extra = o
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "cost-metric" | "cost-mode" | "description"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(Value::String(d)) = o.get("description") {
        t.description = Some(d.clone());
    }
    if !caps.offers(&t) {
        return Err(if caps.cost_types.iter().any(|o| o.cost_metric == metric) {
            AltoError::invalid_value(format!("{path}/cost-mode"), &Value::from(mode))
        } else {
            AltoError::invalid_value(format!("{path}/cost-metric"), &Value::from(metric))
        });
    }
    Ok(t)
}

fn constraints(
    obj: &mut Map<String, Value>,
    caps: &ResourceCaps,
    n_types: usize,
) -> Result<Option<Vec<String>>, AltoError> {
    let Some(v) = obj.remove("constraints") else { return Ok(None) };
    let list = string_array(v, "constraints", |s| {
        if !caps.cost_constraints {
            return Err(AltoError::invalid_value("constraints", &Value::from(s)));
        }
        match Constraint::parse(s) {
            Some(c) if c.index.is_none_or(|i| caps.max_cost_types > 0 && i < n_types) => Ok(()),
            _ => Err(AltoError::invalid_value("constraints", &Value::from(s))),
        }
    })?;
    Ok(Some(list))
}

/// Removes a required member.
fn required(obj: &mut Map<String, Value>, key: &str, path: &str) -> Result<Value, AltoError> {
    obj.remove(key).ok_or_else(|| AltoError::missing(path))
}

/// An array whose elements are strings passing `check`. A bad element is reported with the
/// array's path and the element as `value` (RFC 7285 §8.5.2).
fn string_array(
    v: Value,
    path: &str,
    check: impl Fn(&str) -> Result<(), AltoError>,
) -> Result<Vec<String>, AltoError> {
    let Value::Array(items) = v else { return Err(AltoError::invalid_type(path)) };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(s) => check(&s).map(|()| s),
            other => Err(AltoError::invalid_value(path, &other)),
        })
        .collect()
}

fn non_empty(list: &[String], path: &str) -> Result<(), AltoError> {
    if list.is_empty() {
        Err(AltoError::invalid_value(path, &Value::Array(Vec::new())))
    } else {
        Ok(())
    }
}

fn check_syntax(ok: bool, path: &str, s: &str, what: &str) -> Result<(), AltoError> {
    if ok {
        Ok(())
    } else {
        Err(AltoError::syntax(format!("{path}: `{}` is not a valid {what}", truncate(s))))
    }
}

fn pid_syntax(s: &str, path: &str) -> Result<(), AltoError> {
    check_syntax(ident::is_pid_name(s), path, s, "PID name")
}

fn typed_addr(s: &str, path: &str) -> Result<(), AltoError> {
    TypedAddr::parse(s).map(|_| ()).map_err(|_| AltoError::invalid_value(path, &Value::from(s)))
}

/// Error texts quote client input; keep them short.
fn truncate(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 80;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alto::ErrorCode;
    use serde_json::json;

    fn caps() -> ResourceCaps {
        ResourceCaps {
            cost_types: vec![
                CostType::new("routingcost", "numerical"),
                CostType::new("routingcost", "ordinal"),
            ],
            cost_constraints: true,
            prop_types: vec!["net.pid".into()],
            max_cost_types: 0,
        }
    }

    fn err(kind: PostKind, body: Value) -> AltoError {
        validate(kind, &caps(), body.to_string().as_bytes()).unwrap_err()
    }

    #[test]
    fn endpoint_cost_errors_name_field_and_value() {
        let e = err(PostKind::EndpointCost, json!({"endpoints": {"dsts": ["ipv4:1.2.3.4"]}}));
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::MissingField, Some("cost-type")));
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-mode": "ordinal"}, "endpoints": {"dsts": ["ipv4:1.2.3.4"]}}),
        );
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::MissingField, Some("cost-type/cost-metric")));
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": 5, "cost-mode": "ordinal"}, "endpoints": {"dsts": ["ipv4:1.2.3.4"]}}),
        );
        assert_eq!(
            (e.code, e.field.as_deref()),
            (ErrorCode::InvalidFieldType, Some("cost-type/cost-metric"))
        );
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": "hopcount", "cost-mode": "ordinal"}, "endpoints": {"dsts": ["ipv4:1.2.3.4"]}}),
        );
        assert_eq!(
            (e.code, e.field.as_deref(), e.value.as_deref()),
            (ErrorCode::InvalidFieldValue, Some("cost-type/cost-metric"), Some("hopcount"))
        );
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "array"}, "endpoints": {"dsts": ["ipv4:1.2.3.4"]}}),
        );
        assert_eq!((e.field.as_deref(), e.value.as_deref()), (Some("cost-type/cost-mode"), Some("array")));
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "endpoints": {"srcs": ["ipv4:1.2.3.4"], "dsts": ["ipv4:1.2.3.4", "ipv4:999.1.1.1"]}}),
        );
        assert_eq!(
            (e.code, e.field.as_deref(), e.value.as_deref()),
            (ErrorCode::InvalidFieldValue, Some("endpoints/dsts"), Some("ipv4:999.1.1.1"))
        );
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "endpoints": {"dsts": [7]}}),
        );
        assert_eq!(
            (e.code, e.field.as_deref(), e.value.as_deref()),
            (ErrorCode::InvalidFieldValue, Some("endpoints/dsts"), Some("7"))
        );
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "endpoints": {}}),
        );
        assert_eq!(e.code, ErrorCode::MissingField);
        let e = err(
            PostKind::EndpointCost,
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"}, "constraints": ["le ten"], "endpoints": {"dsts": ["ipv4:1.2.3.4"]}}),
        );
        assert_eq!((e.field.as_deref(), e.value.as_deref()), (Some("constraints"), Some("le ten")));
    }

    #[test]
    fn json_errors_are_syntax_errors() {
        for body in [&b"{"[..], b"[]", b"null", b"\"x\"", b"{\"a\":}", &[0xff, 0xfe]] {
            let e = validate(PostKind::EndpointCost, &caps(), body).unwrap_err();
            assert_eq!(e.code, ErrorCode::Syntax, "{body:?}");
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            validate(PostKind::FilteredNetworkMap, &caps(), deep.as_bytes()).unwrap_err().code,
            ErrorCode::Syntax
        );
    }

    #[test]
    fn extensions_are_kept() {
        let body = json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "numerical"}, "calendared": [true],
            "endpoints": {"srcs": ["ipv4:1.2.3.4"], "dsts": ["ipv4:1.2.3.5"]}});
        let Request::EndpointCost(r) =
            validate(PostKind::EndpointCost, &caps(), body.to_string().as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.extra["calendared"], json!([true]));
    }

    #[test]
    fn constraints_need_the_capability() {
        let mut c = caps();
        c.cost_constraints = false;
        let body = json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "numerical"}, "constraints": ["le 5"]});
        let e = validate(PostKind::FilteredCostMap, &c, body.to_string().as_bytes()).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::InvalidFieldValue, Some("constraints")));
        let body =
            json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "numerical"}, "constraints": []});
        assert!(validate(PostKind::FilteredCostMap, &c, body.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn properties_must_be_offered() {
        let body = json!({"properties": ["other.pid"], "endpoints": ["ipv4:1.2.3.4"]});
        let e = validate(PostKind::EndpointProp, &caps(), body.to_string().as_bytes()).unwrap_err();
        assert_eq!((e.code, e.value.as_deref()), (ErrorCode::InvalidFieldValue, Some("other.pid")));
        let body = json!({"properties": ["net.pid"], "endpoints": []});
        assert_eq!(
            validate(PostKind::EndpointProp, &caps(), body.to_string().as_bytes()).unwrap_err().code,
            ErrorCode::InvalidFieldValue
        );
    }
}
