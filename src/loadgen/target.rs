//! Finding what to load, as an ALTO client would: the root IRD at the target URL (and the IRDs
//! it delegates to), the default network map, the endpoint cost resource offering ordinal
//! `routingcost`, and a cost map for the map clients; then the network map itself, whose
//! prefixes the swarm's addresses are drawn from.
//!
//! Every request made here is recorded like the swarm's (the IRD as resource `directory`, as
//! the reference origin counts it), so `requests sent` covers the whole run.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Instant;

use http::{StatusCode, Uri};
use ipnet::IpNet;

use super::client::{Client, Req};
use super::stats::Recorder;
use super::LoadgenError;
use crate::alto::compute::{parse_prefix, NetworkMapView};
use crate::alto::media;
use crate::alto::types::{CostType, Ird, NetworkMapResponse};
use crate::ird::uri;

/// Most IRDs followed through delegations.
const MAX_IRDS: usize = 16;
/// The label IRD fetches are counted under (the reference origin's).
pub const DIRECTORY_ID: &str = "directory";

const IRD_ACCEPT: &str = "application/alto-directory+json,application/alto-error+json";
const NETWORK_MAP_ACCEPT: &str = "application/alto-networkmap+json,application/alto-error+json";
pub const COST_MAP_ACCEPT: &str = "application/alto-costmap+json,application/alto-error+json";
pub const ECS_ACCEPT: &str = "application/alto-endpointcost+json,application/alto-error+json";

/// A resource of the IRD the load generator uses.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    /// Absolute.
    pub uri: Uri,
}

/// What the IRD offers the swarm.
#[derive(Debug)]
pub struct Target {
    pub network_map: Resource,
    pub ecs: Resource,
    /// For map clients: ordinal `routingcost` if offered, else numerical, else any cost map.
    pub cost_map: Option<Resource>,
    /// Every prefix of the network map.
    pub prefixes: Vec<IpNet>,
    /// The network map indexed, to count the PIDs peers fall into (`None` if it cannot be).
    pub view: Option<NetworkMapView>,
}

/// Reads the IRD closure at `ird` and the default network map.
pub async fn discover(client: &Client, rec: &Recorder, ird: &Uri) -> Result<Target, LoadgenError> {
    let irds = fetch_irds(client, rec, ird).await?;
    let root = &irds[0].1;
    let mut entries = Vec::new();
    for (at, doc) in &irds {
        let cost_types = doc.meta.cost_types.clone().unwrap_or_default();
        for (id, e) in &doc.resources {
            let Some(u) = uri::resolve(at, &e.uri) else { continue };
            let types: Vec<CostType> = e
                .capabilities
                .as_ref()
                .and_then(|c| c.cost_type_names.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|n| cost_types.get(n).cloned())
                .collect();
            entries.push(Entry {
                id: id.clone(),
                uri: u,
                media_type: essence(&e.media_type),
                accepts: e.accepts.as_deref().map(essence),
                types,
            });
        }
    }
    let ordinal_rc = |t: &CostType| t.cost_metric == "routingcost" && t.cost_mode == "ordinal";
    let ecs = entries
        .iter()
        .find(|e| {
            e.media_type == media::ENDPOINT_COST
                && e.accepts.as_deref() == Some(media::ENDPOINT_COST_PARAMS)
                && e.types.iter().any(ordinal_rc)
        })
        .ok_or_else(|| {
            LoadgenError::Target(format!(
                "the IRD at {ird} offers no endpoint cost resource with ordinal routingcost"
            ))
        })?;
    let get_maps =
        |mt: &'static str| entries.iter().filter(move |e| e.media_type == mt && e.accepts.is_none());
    let network_map = root
        .meta
        .default_network_map
        .as_ref()
        .and_then(|id| get_maps(media::NETWORK_MAP).find(|e| &e.id == id))
        .or_else(|| get_maps(media::NETWORK_MAP).next())
        .ok_or_else(|| LoadgenError::Target(format!("the IRD at {ird} lists no network map")))?;
    let cost_map = get_maps(media::COST_MAP)
        .find(|e| e.types.iter().any(ordinal_rc))
        .or_else(|| {
            get_maps(media::COST_MAP).find(|e| {
                e.types.iter().any(|t| t.cost_metric == "routingcost" && t.cost_mode == "numerical")
            })
        })
        .or_else(|| get_maps(media::COST_MAP).next());

    let here = server_of(ird);
    let mut elsewhere = Vec::new();
    for (at, _) in irds.iter().skip(1) {
        if server_of(at) != here {
            elsewhere.push((DIRECTORY_ID.to_string(), at.clone()));
        }
    }
    for e in [Some(ecs), Some(network_map), cost_map].into_iter().flatten() {
        if server_of(&e.uri) != here {
            elsewhere.push((e.id.clone(), e.uri.clone()));
        }
    }

    // Said before the network map is fetched: it explains a failure there.
    for (id, uri) in &elsewhere {
        tracing::warn!(
            "the IRD points {id} at {uri}, not at {here}: those requests do not go through the target"
        );
    }
    let nm = Resource { id: network_map.id.clone(), uri: network_map.uri.clone() };
    let (prefixes, view) = fetch_network_map(client, rec, &nm).await?;
    Ok(Target {
        network_map: nm,
        ecs: Resource { id: ecs.id.clone(), uri: ecs.uri.clone() },
        cost_map: cost_map.map(|e| Resource { id: e.id.clone(), uri: e.uri.clone() }),
        prefixes,
        view,
    })
}

struct Entry {
    id: String,
    uri: Uri,
    media_type: String,
    accepts: Option<String>,
    types: Vec<CostType>,
}

fn essence(media_type: &str) -> String {
    media::MediaRange::parse(media_type)
        .map(|m| m.essence())
        .unwrap_or_else(|| media_type.trim().to_ascii_lowercase())
}

/// `scheme://host:port` with the default port filled in: requests to another one do not go
/// through the target.
pub fn server_of(u: &Uri) -> String {
    let scheme = u.scheme_str().unwrap_or("").to_ascii_lowercase();
    let host = u.host().unwrap_or("").to_ascii_lowercase();
    let port = u.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{host}:{port}")
}

/// GETs `req`, recording it under `id`; a transport failure or a non-200 answer is an error
/// naming `what`.
async fn get_ok(
    client: &Client,
    rec: &Recorder,
    id: &str,
    req: &Req,
    what: &str,
) -> Result<super::client::Answer, LoadgenError> {
    let started = Instant::now();
    let outcome = client.send(req).await;
    rec.record(id, started, &outcome, None);
    let answer = outcome
        .result
        .map_err(|f| LoadgenError::Target(format!("cannot get {what} from {}: {f}", req.uri)))?;
    if answer.status != StatusCode::OK {
        return Err(LoadgenError::Target(format!(
            "{} answered {}{} instead of {what}",
            req.uri,
            answer.status,
            alto_error_hint(&answer.body)
        )));
    }
    Ok(answer)
}

/// `: E_SYNTAX (…)` when the body is an ALTO error, so the one-line message says why.
fn alto_error_hint(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else { return String::new() };
    let code = v.pointer("/meta/code").and_then(|c| c.as_str());
    let text = v.pointer("/meta/syntax-error").and_then(|c| c.as_str());
    match (code, text) {
        (Some(c), Some(t)) => format!(": {c} ({t})"),
        (Some(c), None) => format!(": {c}"),
        _ => String::new(),
    }
}

async fn fetch_irds(client: &Client, rec: &Recorder, root: &Uri) -> Result<Vec<(Uri, Ird)>, LoadgenError> {
    let mut queue = VecDeque::from([root.clone()]);
    let mut seen = HashSet::from([uri::canonical(root)]);
    let mut out = Vec::new();
    while let Some(at) = queue.pop_front() {
        if out.len() == MAX_IRDS {
            tracing::warn!(root = %root, "more than {MAX_IRDS} delegated IRDs; the rest are not read");
            break;
        }
        let answer = get_ok(client, rec, DIRECTORY_ID, &Req::get(at.clone(), IRD_ACCEPT), "an IRD").await?;
        let ct = answer.content_type.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if !media::content_type_is(ct.as_deref(), media::DIRECTORY) {
            return Err(LoadgenError::Target(format!(
                "{at} is not an ALTO IRD: its media type is {}, not {}",
                ct.as_deref().unwrap_or("(none)"),
                media::DIRECTORY
            )));
        }
        let ird: Ird = serde_json::from_slice(&answer.body)
            .map_err(|e| LoadgenError::Target(format!("{at} is not an ALTO IRD: {e}")))?;
        for e in ird.resources.values() {
            if e.accepts.is_none() && essence(&e.media_type) == media::DIRECTORY {
                if let Some(next) = uri::resolve(&at, &e.uri) {
                    if seen.insert(uri::canonical(&next)) {
                        queue.push_back(next);
                    }
                }
            }
        }
        out.push((at, ird));
    }
    Ok(out)
}

async fn fetch_network_map(
    client: &Client,
    rec: &Recorder,
    nm: &Resource,
) -> Result<(Vec<IpNet>, Option<NetworkMapView>), LoadgenError> {
    let req = Req::get(nm.uri.clone(), NETWORK_MAP_ACCEPT);
    let answer = get_ok(client, rec, &nm.id, &req, "a network map").await?;
    let map: NetworkMapResponse = serde_json::from_slice(&answer.body)
        .map_err(|e| LoadgenError::Target(format!("the network map at {} is not one: {e}", nm.uri)))?;
    let mut prefixes = Vec::new();
    let mut uniq = HashSet::new();
    for group in map.network_map.values() {
        let all: BTreeMap<&String, &Vec<String>> = group.iter().collect();
        for (family, list) in all {
            if family != "ipv4" && family != "ipv6" {
                continue;
            }
            for p in list.iter().filter_map(|p| parse_prefix(p)) {
                if uniq.insert(p) {
                    prefixes.push(p);
                }
            }
        }
    }
    if prefixes.is_empty() {
        return Err(LoadgenError::Target(format!("the network map at {} holds no IP prefix", nm.uri)));
    }
    Ok((prefixes, NetworkMapView::new(map).ok()))
}
