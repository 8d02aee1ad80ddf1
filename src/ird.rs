//! The shield's Information Resource Directory (DESIGN §4 "The IRD"): fetching the origin's root
//! IRD with its whole closure of delegated IRDs ([`fetch_closure`]), and flattening that closure
//! into the one IRD the shield serves ([`flatten`], pure): one `resources` map, merged cost
//! types, every URI pointing at the shield, streaming resources left out. The resulting
//! [`Directory`] is also the shield's routing table, from its paths to origin URIs.
//!
//! It must not judge resources beyond what routing needs: capabilities, `uses` and unknown
//! members are passed on as the origin wrote them (`uses` may name resources of another IRD of
//! the closure, as RFC 7285 §9.2.4 does), and request validation stays in [`crate::alto`].

mod merge;
pub mod uri;

#[cfg(test)]
mod fetch_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, StatusCode, Uri};

use crate::alto::media;
use crate::alto::types::{CostType, Ird, IrdEntry};
use crate::alto::validate::{PostKind, ResourceCaps};
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest};

pub use merge::flatten;

/// Most IRDs a closure may hold. Real deployments have a handful; the cap stops a misbehaving
/// origin that mints fresh delegation URIs from keeping the shield fetching forever.
pub const MAX_IRDS: usize = 64;

/// Where the shield serves the flattened IRD (DESIGN §3: the root IRD is at `GET /directory`).
pub const DIRECTORY_PATH: &str = "/directory";

/// The `Accept` of IRD fetches: the directory, or an ALTO error explaining why not.
const IRD_ACCEPT: &str = "application/alto-directory+json,application/alto-error+json";

/// Why the IRD closure could not be fetched or flattened; each names the URI at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IrdError {
    #[error("fetching the IRD {uri}: {source}")]
    Upstream { uri: String, source: UpstreamError },
    #[error("the IRD {uri} answered with status {status}")]
    Status { uri: String, status: u16 },
    #[error("the IRD {uri} has media type {got:?}, not application/alto-directory+json")]
    MediaType { uri: String, got: String },
    #[error("the IRD {uri} is not valid JSON: {reason}")]
    InvalidJson { uri: String, reason: String },
    #[error("the answer from {uri} is JSON but not an IRD: {reason}")]
    NotIrd { uri: String, reason: String },
    #[error("the root IRD {uri} has no meta.default-alto-network-map")]
    NoDefaultNetworkMap { uri: String },
    #[error("the root IRD {uri} names {id:?} as its default network map, which no GET resource is")]
    UnknownDefaultNetworkMap { uri: String, id: String },
    #[error("the IRD closure of {root} holds more than {max} IRDs")]
    TooManyIrds { root: String, max: usize },
    #[error("there is no IRD to flatten")]
    Empty,
    #[error("the public URL {0:?} is not an absolute http or https URL")]
    PublicUrl(String),
    #[error("serialising the flattened IRD: {0}")]
    Serialize(String),
}

/// The flattened IRD the shield serves, and its routing table.
#[derive(Debug, Clone)]
pub struct Directory {
    /// Every proxied resource, by resource-id.
    pub resources: BTreeMap<String, Resource>,
    /// The merged `meta.cost-types`, after renames.
    pub cost_types: BTreeMap<String, CostType>,
    /// `meta.default-alto-network-map` of the root IRD.
    pub default_network_map: String,
    /// The rewritten IRD as served (`application/alto-directory+json`).
    pub body: Bytes,
    /// Shield path → resource-ids served there (a GET and a POST entry may share a path).
    pub by_path: HashMap<String, Vec<String>>,
    /// Canonical origin URI ([`uri::canonical`]) → shield URL, for redirect rewriting.
    shield_by_origin: HashMap<String, String>,
}

/// One proxied resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    /// Absolute: where the shield forwards.
    pub origin_uri: Uri,
    /// The shield's path for it.
    pub path: String,
    pub media_type: String,
    /// `Some` for a POST resource: the request media type.
    pub accepts: Option<String>,
    /// The RFC 7285 POST kind the core validates; `None` for GET resources and for POST
    /// resources the core does not model (those are forwarded as they are).
    pub post_kind: Option<PostKind>,
    /// From the entry's capabilities, resolved through the merged cost types.
    pub caps: ResourceCaps,
    pub uses: Vec<String>,
    /// The rewritten entry as served.
    pub entry: IrdEntry,
}

impl Resource {
    /// Whether clients reach it with POST.
    pub fn is_post(&self) -> bool {
        self.accepts.is_some()
    }
}

impl Directory {
    /// The resource served at `path` for `method`: GET and HEAD find the entry without
    /// `accepts`, POST the entry with one.
    pub fn resource(&self, path: &str, method: &Method) -> Option<&Resource> {
        let want_post = match *method {
            Method::GET | Method::HEAD => false,
            Method::POST => true,
            _ => return None,
        };
        self.by_path
            .get(path)?
            .iter()
            .filter_map(|id| self.resources.get(id))
            .find(|r| r.is_post() == want_post)
    }

    /// The methods `path` answers (for `Allow` on a 405); empty for an unknown path.
    pub fn methods(&self, path: &str) -> Vec<Method> {
        let Some(ids) = self.by_path.get(path) else { return Vec::new() };
        let resources: Vec<&Resource> = ids.iter().filter_map(|id| self.resources.get(id)).collect();
        let mut out = Vec::new();
        if resources.iter().any(|r| !r.is_post()) {
            out.extend([Method::GET, Method::HEAD]);
        }
        if resources.iter().any(|r| r.is_post()) {
            out.push(Method::POST);
        }
        out
    }

    /// The shield URL of an origin URI (a resource's, or an IRD's of the closure, which maps to
    /// the flattened directory). For rewriting redirect `Location`s: resolve a relative
    /// `Location` with [`uri::resolve`] first.
    pub fn origin_to_shield(&self, origin_uri: &Uri) -> Option<String> {
        self.shield_by_origin.get(&uri::canonical(origin_uri)).cloned()
    }
}

/// Fetches the IRD at `root` and every IRD it delegates to, transitively: root first, then
/// breadth first in resource-id order. Each IRD is fetched once, so delegation loops end; the
/// closure may hold at most [`MAX_IRDS`]. Any IRD that cannot be had fails the whole fetch,
/// since serving part of a closure would make resources vanish downstream.
pub async fn fetch_closure(upstream: &Upstream, root: &Uri) -> Result<Vec<(Uri, Ird)>, IrdError> {
    let mut queue = VecDeque::from([root.clone()]);
    let mut seen = HashSet::from([uri::canonical(root)]);
    let mut out = Vec::new();
    while let Some(at) = queue.pop_front() {
        if out.len() == MAX_IRDS {
            return Err(IrdError::TooManyIrds { root: root.to_string(), max: MAX_IRDS });
        }
        let ird = fetch_one(upstream, &at).await?;
        for (id, entry) in &ird.resources {
            if !is_delegation(entry) {
                continue;
            }
            match uri::resolve(&at, &entry.uri) {
                Some(target) => {
                    if seen.insert(uri::canonical(&target)) {
                        queue.push_back(target);
                    }
                }
                None => tracing::warn!(ird = %at, resource = %id, uri = %entry.uri,
                    "delegated IRD with an unusable URI; skipped"),
            }
        }
        out.push((at, ird));
    }
    Ok(out)
}

async fn fetch_one(upstream: &Upstream, at: &Uri) -> Result<Ird, IrdError> {
    let uri = || at.to_string();
    let resp = upstream
        .send(UpstreamRequest::get(at.clone(), IRD_ACCEPT))
        .await
        .map_err(|source| IrdError::Upstream { uri: uri(), source })?;
    if resp.status != StatusCode::OK {
        return Err(IrdError::Status { uri: uri(), status: resp.status.as_u16() });
    }
    let content_type =
        resp.headers.get(CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !media::content_type_is(content_type.as_deref(), media::DIRECTORY) {
        return Err(IrdError::MediaType { uri: uri(), got: content_type.unwrap_or_default() });
    }
    let value: serde_json::Value = serde_json::from_slice(&resp.body)
        .map_err(|e| IrdError::InvalidJson { uri: uri(), reason: e.to_string() })?;
    serde_json::from_value(value).map_err(|e| IrdError::NotIrd { uri: uri(), reason: e.to_string() })
}

/// `type/subtype` of a media type, lower-cased; the trimmed input if it does not parse.
fn essence(media_type: &str) -> String {
    media::MediaRange::parse(media_type)
        .map(|m| m.essence())
        .unwrap_or_else(|| media_type.trim().to_ascii_lowercase())
}

/// An entry naming another IRD. Only GET ones are followed: an IRD is fetched with GET
/// (RFC 7285 §9.2); a directory entry with `accepts` is not a delegation anyone can follow.
fn is_delegation(entry: &IrdEntry) -> bool {
    entry.accepts.is_none() && essence(&entry.media_type) == media::DIRECTORY
}
