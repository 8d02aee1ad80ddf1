//! Answers computed locally from the maps of the current generation (DESIGN §5, "local
//! filtering"): filtered network maps, filtered cost maps (numerical constraints evaluated,
//! ordinal answers re-ranked from the numerical map of the same metric; ordinal with constraints
//! never), and endpoint-property `pid` lookups. Each equals what the origin returns: the origin's
//! answers are computed by the same core functions from the same maps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderValue;

use super::fetch::{self, ShieldError};
use super::{Generation, Shield};
use crate::alto::compute;
use crate::alto::constraint::Constraint;
use crate::alto::media::{self, MediaRange};
use crate::alto::types::{CostMapResponse, CostType};
use crate::alto::validate::Request;
use crate::cache::Entry;
use crate::ird::{Directory, Resource};

/// A locally computed answer, as a stored entry (so `ETag`, gzip and 304 work as for any
/// other), with the generation it belongs to.
#[derive(Debug)]
pub(super) struct Local {
    pub entry: Arc<Entry>,
    pub generation: Arc<str>,
}

/// Computes `request` locally when that is correct and the maps it needs are at hand (fetching
/// a full cost map once per version if needed); `None` means "forward it".
pub(super) async fn answer(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    request: &Request,
) -> Result<Option<Local>, ShieldError> {
    let nm = dir.default_network_map.as_str();
    if !res.uses.iter().any(|u| u == nm) && !matches!(request, Request::EndpointProp(_)) {
        return Ok(None);
    }
    match request {
        Request::FilteredNetworkMap(r) if r.extra.is_empty() => {
            let Some(gen) = shield.generation() else { return Ok(None) };
            let Some(source) = fresh(shield, &gen, nm) else { return Ok(None) };
            let answer = compute::filter_network_map(&gen.view.response, r);
            Ok(Some(local(res, &gen, &source, serde_json::to_vec(&answer))))
        }
        Request::FilteredCostMap(r)
            if r.extra.is_empty() && r.pids.as_ref().is_none_or(|p| p.extra.is_empty()) =>
        {
            let Some(cost_type) = r.cost_type.as_ref().filter(|t| t.extra.is_empty()) else {
                return Ok(None);
            };
            let constraints: Vec<Constraint> =
                r.constraints.iter().flatten().filter_map(|c| Constraint::parse(c)).collect();
            let computable = match cost_type.cost_mode.as_str() {
                "numerical" => constraints.iter().all(|c| c.index.is_none()),
                // Constraints on ranks depend on the whole answer: only the origin answers those.
                "ordinal" => constraints.is_empty(),
                _ => false,
            };
            if !computable {
                return Ok(None);
            }
            let Some((gen, source, numerical)) =
                numerical_cost_map(shield, dir, &cost_type.cost_metric).await?
            else {
                return Ok(None);
            };
            let answer = compute::filter_cost_map(&numerical, cost_type, &constraints, r.pids.as_ref());
            Ok(Some(local(res, &gen, &source, serde_json::to_vec(&answer))))
        }
        Request::EndpointProp(r) if r.extra.is_empty() => {
            let pid_property = format!("{nm}.pid");
            if !r.properties.iter().all(|p| *p == pid_property) {
                return Ok(None);
            }
            let Some(gen) = shield.generation() else { return Ok(None) };
            let Some(source) = fresh(shield, &gen, nm) else { return Ok(None) };
            let endpoints = compute::endpoints(&r.endpoints);
            let answer = compute::endpoint_properties(&r.properties, &endpoints, &[&gen.view], |_, _| None);
            Ok(Some(local(res, &gen, &source, serde_json::to_vec(&answer))))
        }
        _ => Ok(None),
    }
}

/// The entry of a generation map if it may still be served (fresh, or stale within
/// `stale_while_revalidate`, in which case the regular GET path refreshes it).
fn fresh(shield: &Shield, gen: &Generation, id: &str) -> Option<Arc<Entry>> {
    let e = gen.maps.get(id)?;
    (e.staleness(Instant::now()) <= shield.config.cache.stale_while_revalidate).then(|| e.clone())
}

fn local(
    res: &Resource,
    gen: &Generation,
    source: &Entry,
    body: Result<Vec<u8>, serde_json::Error>,
) -> Local {
    let media_type =
        HeaderValue::from_str(&res.media_type).unwrap_or(HeaderValue::from_static(media::COST_MAP));
    // The answer is as fresh as the map it was cut from.
    let ttl = source.ttl.saturating_sub(source.age(Instant::now())).max(Duration::from_secs(1));
    let body = Bytes::from(body.unwrap_or_default());
    let entry = Entry::new(Arc::from(res.id.as_str()), media_type, body, ttl, Some(gen.tag.clone()));
    Local { entry: Arc::new(entry), generation: gen.tag.clone() }
}

/// The GET cost map of the default network map that offers `metric` in `mode`, per the IRD.
pub(super) fn cost_map_resource<'a>(dir: &'a Directory, metric: &str, mode: &str) -> Option<&'a Resource> {
    let wanted = CostType::new(metric, mode);
    dir.resources.values().find(|r| {
        r.accepts.is_none()
            && MediaRange::parse(&r.media_type).is_some_and(|m| m.essence() == media::COST_MAP)
            && r.uses.contains(&dir.default_network_map)
            && r.caps.cost_types.iter().any(|t| t.same_type(&wanted))
    })
}

/// The numerical cost map of `metric` for the current generation, parsed: from the generation
/// when it holds a servable copy, else fetched once (coalesced) and installed. `None` when the
/// IRD offers no such map or it cannot be had consistently.
pub(super) async fn numerical_cost_map(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    metric: &str,
) -> Result<Option<(Arc<Generation>, Arc<Entry>, Arc<CostMapResponse>)>, ShieldError> {
    let Some(res) = cost_map_resource(dir, metric, "numerical") else { return Ok(None) };
    for attempt in 0..2 {
        if let Some(gen) = shield.generation() {
            if let Some(entry) = fresh(shield, &gen, &res.id) {
                let tag_matches =
                    |m: &CostMapResponse| m.meta.dependent_vtags.iter().flatten().any(|v| *v.tag == *gen.tag);
                if let Some(parsed) = entry.cost_map().filter(|m| tag_matches(m)) {
                    return Ok(Some((gen, entry, parsed)));
                }
            }
        }
        if attempt == 0 {
            fetch::get(shield, dir, res).await?;
        }
    }
    Ok(None)
}
