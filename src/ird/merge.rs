//! Flattening an IRD closure into the one IRD the shield serves. Pure: plain data in, a
//! [`Directory`] out.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use http::Uri;
use serde_json::Value;

use super::{essence, uri, Directory, IrdError, Resource, DIRECTORY_PATH};
use crate::alto::media;
use crate::alto::types::{CostType, Extra, Ird, IrdEntry, IrdMeta};
use crate::alto::validate::{PostKind, ResourceCaps};

/// Where resources go whose origin path cannot be kept: `/r/<resource-id>`.
const FALLBACK_PREFIX: &str = "/r/";

/// RFC 9569 TIPS media types: a TIPS resource is streaming, left out until supported.
const TIPS: &str = "application/alto-tips+json";
const TIPS_PARAMS: &str = "application/alto-tipsparams+json";

/// Flattens `irds` (the root IRD first, each with the URI it came from) into the directory the
/// shield serves at `public_url`:
/// * delegation entries are dropped (their IRDs' resources are in the closure); streaming
///   resources (SSE, TIPS) are dropped;
/// * a resource-id defined twice keeps its first definition, in closure order, with a warning;
/// * `meta.cost-types` are merged; a name whose definition differs from the one already merged
///   is renamed `<name>-2` (`-3`, ...) and the cost-type names in that IRD's capabilities
///   follow;
/// * each resource keeps its origin path on the shield when that path is unique among the
///   resources of its method, else it moves to `/r/<resource-id>`; every `uri` becomes
///   `public_url` + path;
/// * the root IRD's `default-alto-network-map` is required and must name a GET resource;
/// * `uses`, capabilities and unknown members are kept as they are.
pub fn flatten(irds: &[(Uri, Ird)], public_url: &str) -> Result<Directory, IrdError> {
    let public = public_base(public_url)?;
    let Some((root_uri, root)) = irds.first() else { return Err(IrdError::Empty) };
    let default_network_map = root
        .meta
        .default_network_map
        .clone()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| IrdError::NoDefaultNetworkMap { uri: root_uri.to_string() })?;

    let mut cost_types = BTreeMap::new();
    let renames: Vec<HashMap<String, String>> =
        irds.iter().map(|(_, ird)| merge_cost_types(&mut cost_types, &ird.meta)).collect();

    let kept = collect_entries(irds, &renames);
    let paths = assign_paths(&kept);

    let mut resources = BTreeMap::new();
    let mut by_path: HashMap<String, Vec<String>> = HashMap::new();
    let mut shield_by_origin = HashMap::new();
    for ((id, origin_uri, mut entry), path) in kept.into_iter().zip(paths) {
        let shield_url = format!("{public}{path}");
        entry.uri = shield_url.clone();
        shield_by_origin.entry(uri::canonical(&origin_uri)).or_insert(shield_url);
        by_path.entry(path.clone()).or_default().push(id.clone());
        let resource = Resource {
            id: id.clone(),
            origin_uri,
            path,
            media_type: entry.media_type.clone(),
            accepts: entry.accepts.clone(),
            post_kind: post_kind(&entry),
            caps: ResourceCaps::from_entry(&entry, &cost_types),
            uses: entry.uses.clone().unwrap_or_default(),
            entry,
        };
        resources.insert(id, resource);
    }
    // Each IRD of the closure is now part of the one flattened directory.
    for (ird_uri, _) in irds {
        shield_by_origin
            .entry(uri::canonical(ird_uri))
            .or_insert_with(|| format!("{public}{DIRECTORY_PATH}"));
    }

    if resources.get(&default_network_map).is_none_or(Resource::is_post) {
        return Err(IrdError::UnknownDefaultNetworkMap {
            uri: root_uri.to_string(),
            id: default_network_map,
        });
    }

    let served = Ird {
        meta: IrdMeta {
            cost_types: (!cost_types.is_empty()).then(|| cost_types.clone()),
            default_network_map: Some(default_network_map.clone()),
            extra: merged_extras(irds.iter().map(|(_, ird)| &ird.meta.extra)),
        },
        resources: resources.iter().map(|(id, r)| (id.clone(), r.entry.clone())).collect(),
        extra: merged_extras(irds.iter().map(|(_, ird)| &ird.extra)),
    };
    let body = serde_json::to_vec(&served).map_err(|e| IrdError::Serialize(e.to_string()))?;

    Ok(Directory {
        resources,
        cost_types,
        default_network_map,
        body: Bytes::from(body),
        by_path,
        shield_by_origin,
    })
}

/// `public_url` without its trailing slash, checked to be an absolute `http(s)` URL.
fn public_base(public_url: &str) -> Result<String, IrdError> {
    let base = public_url.trim().trim_end_matches('/');
    let bad = || IrdError::PublicUrl(public_url.to_string());
    let parsed: Uri = base.parse().map_err(|_| bad())?;
    let http = matches!(parsed.scheme_str(), Some("http" | "https"));
    if !http || parsed.host().is_none_or(str::is_empty) || parsed.query().is_some() {
        return Err(bad());
    }
    Ok(base.to_string())
}

/// Merges one IRD's `meta.cost-types` into `merged`; returns that IRD's renames.
fn merge_cost_types(merged: &mut BTreeMap<String, CostType>, meta: &IrdMeta) -> HashMap<String, String> {
    let mut renames = HashMap::new();
    for (name, ct) in meta.cost_types.iter().flatten() {
        // `description` is prose (RFC 7285 §10.7); metric, mode and extension members (RFC 9439
        // `cost-source`, `parameters`) define the type.
        let same = |other: &CostType| other.same_type(ct) && other.extra == ct.extra;
        let mut candidate = name.clone();
        let mut n = 2;
        let merged_name = loop {
            match merged.get(&candidate) {
                None => {
                    merged.insert(candidate.clone(), ct.clone());
                    break candidate;
                }
                Some(existing) if same(existing) => break candidate,
                Some(_) => {
                    candidate = format!("{name}-{n}");
                    n += 1;
                }
            }
        };
        if merged_name != *name {
            tracing::warn!(cost_type = %name, renamed = %merged_name,
                "cost type name defined differently by two IRDs of the closure; renamed");
            renames.insert(name.clone(), merged_name);
        }
    }
    renames
}

/// The entries the shield proxies, in closure order: (resource-id, origin URI, entry with its
/// cost-type names renamed).
fn collect_entries(irds: &[(Uri, Ird)], renames: &[HashMap<String, String>]) -> Vec<(String, Uri, IrdEntry)> {
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    for ((base, ird), renames) in irds.iter().zip(renames) {
        for (id, entry) in &ird.resources {
            if essence(&entry.media_type) == media::DIRECTORY {
                continue;
            }
            if is_streaming(entry) {
                tracing::debug!(ird = %base, resource = %id, "streaming resource left out of the IRD");
                continue;
            }
            if seen.contains(id) {
                tracing::warn!(ird = %base, resource = %id,
                    "resource-id defined twice in the IRD closure; keeping the first definition");
                continue;
            }
            let Some(origin_uri) = uri::resolve(base, &entry.uri) else {
                tracing::warn!(ird = %base, resource = %id, uri = %entry.uri,
                    "resource with an unusable URI left out of the IRD");
                continue;
            };
            let mut entry = entry.clone();
            if !renames.is_empty() {
                rename_cost_types(&mut entry, renames);
            }
            seen.insert(id.clone());
            kept.push((id.clone(), origin_uri, entry));
        }
    }
    kept
}

/// SSE update streams (RFC 8895) and TIPS (RFC 9569).
fn is_streaming(entry: &IrdEntry) -> bool {
    let media_type = essence(&entry.media_type);
    media_type == media::EVENT_STREAM
        || media_type == TIPS
        || entry.accepts.as_deref().is_some_and(|a| essence(a) == TIPS_PARAMS)
}

/// Follows cost-type renames in every capability that lists cost-type names: RFC 7285
/// `cost-type-names`, RFC 8189 `testable-cost-type-names`, and nested lists such as RFC 8896
/// `calendar-attributes[].cost-type-names`.
fn rename_cost_types(entry: &mut IrdEntry, renames: &HashMap<String, String>) {
    let Some(caps) = entry.capabilities.as_mut() else { return };
    for name in caps.cost_type_names.iter_mut().flatten() {
        if let Some(new) = renames.get(name) {
            name.clone_from(new);
        }
    }
    for (key, value) in caps.extra.iter_mut() {
        rename_in_value(key, value, renames);
    }
}

fn rename_in_value(key: &str, value: &mut Value, renames: &HashMap<String, String>) {
    match value {
        Value::Array(items) if key.ends_with("cost-type-names") => {
            for item in items {
                if let Some(new) = item.as_str().and_then(|s| renames.get(s)) {
                    *item = Value::String(new.clone());
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rename_in_value("", v, renames)),
        Value::Object(members) => members.iter_mut().for_each(|(k, v)| rename_in_value(k, v, renames)),
        _ => {}
    }
}

/// The shield path of each entry, in order.
fn assign_paths(kept: &[(String, Uri, IrdEntry)]) -> Vec<String> {
    let key = |uri: &Uri, entry: &IrdEntry| (entry.accepts.is_some(), uri.path().to_string());
    let mut count: HashMap<(bool, String), usize> = HashMap::new();
    for (_, uri, entry) in kept {
        *count.entry(key(uri, entry)).or_default() += 1;
    }
    kept.iter()
        .map(|(id, uri, entry)| {
            let path = uri.path();
            let unique = count.get(&key(uri, entry)) == Some(&1);
            // `/directory` is the flattened IRD's; `/r/` is where fallbacks go, so an origin
            // path there could collide with a fallback.
            if unique && path != DIRECTORY_PATH && !path.starts_with(FALLBACK_PREFIX) && path.starts_with('/')
            {
                path.to_string()
            } else {
                format!("{FALLBACK_PREFIX}{}", encode_segment(id))
            }
        })
        .collect()
}

/// Percent-encodes a resource-id for use as one path segment. Valid ids (RFC 7285 §10.2:
/// alphanumerics, `-`, `:`, `@`, `_`, `.`) pass unchanged.
fn encode_segment(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The POST kind the core validates, only when the entry is the RFC 7285 resource it looks
/// like: a known `accepts` with a different answer type (e.g. RFC 9275 path vectors, which
/// accept ECS parameters but answer multipart) is forwarded unvalidated.
fn post_kind(entry: &IrdEntry) -> Option<PostKind> {
    let kind = PostKind::from_accepts(entry.accepts.as_deref()?)?;
    let answers = match kind {
        PostKind::FilteredNetworkMap => media::NETWORK_MAP,
        PostKind::FilteredCostMap => media::COST_MAP,
        PostKind::EndpointProp => media::ENDPOINT_PROP,
        PostKind::EndpointCost => media::ENDPOINT_COST,
    };
    (essence(&entry.media_type) == answers).then_some(kind)
}

/// Unknown members of several objects, the first definition of each member winning.
fn merged_extras<'a>(extras: impl Iterator<Item = &'a Extra>) -> Extra {
    let mut out = Extra::new();
    for extra in extras {
        for (k, v) in extra {
            if !out.contains_key(k) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}
