//! Forwarding to the origin and keeping versions straight: one coalesced origin request per key,
//! every answer checked before it is stored, the network map and its dependents switched as one
//! generation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;

use super::{FlightKey, Generation, Shield};
use crate::alto::compute::NetworkMapView;
use crate::alto::media::{self, MediaRange};
use crate::alto::types::{
    CostMapResponse, EndpointCostResponse, EndpointPropResponse, Ird, NetworkMapResponse,
};
use crate::cache::Entry;
use crate::coalesce::{Fetched, Outcome};
use crate::ird::{Directory, Resource};
use crate::upstream::{UpstreamError, UpstreamRequest};

/// An answer on its way to clients, from the origin or the cache.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub media_type: HeaderValue,
    pub body: Bytes,
    /// Origin headers passed on (`Retry-After`, a rewritten `Location`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The stored form of a 200 answer (with its `ETag` and gzip copy).
    pub entry: Option<Arc<Entry>>,
    /// Whether the answer went into the cache.
    pub stored: bool,
}

/// Why the shield could not produce an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShieldError {
    #[error("origin request for {resource} failed: {error}")]
    Upstream { resource: String, error: UpstreamError },
    #[error("origin answer for {resource} is invalid: {reason}")]
    Invalid { resource: String, reason: String },
    #[error("the origin's answer for {resource} names network map version {got}, not {want}")]
    Inconsistent { resource: String, got: String, want: String },
    #[error("waited {0:?} for another request's origin fetch")]
    WaitTimeout(Duration),
    #[error("not ready: the origin's IRD or default network map is not loaded yet")]
    NotReady,
    #[error("origin IRD: {0}")]
    Ird(String),
}

impl ShieldError {
    /// The HTTP status this failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ShieldError::Upstream { error: UpstreamError::Timeout, .. } | ShieldError::WaitTimeout(_) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ShieldError::Upstream { error: UpstreamError::Overloaded, .. }
            | ShieldError::Inconsistent { .. }
            | ShieldError::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            ShieldError::Upstream { .. } | ShieldError::Invalid { .. } | ShieldError::Ird(_) => {
                StatusCode::BAD_GATEWAY
            }
        }
    }
}

/// How a reply was obtained, for `Cache-Status` and the `outcome` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// This request's own origin fetch.
    Miss,
    /// Shared another request's fetch.
    Coalesced,
}

/// Runs `fetch` once per key at a time; maps the coalescer's outcomes to replies.
async fn coalesced<F, Fut>(
    shield: &Arc<Shield>,
    key: FlightKey,
    fetch: F,
) -> Result<(Reply, Role), ShieldError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Fetched<Reply>, ShieldError>>,
{
    let timeout = shield.config.limits.coalesce_timeout;
    match shield.flights.run(key, timeout, fetch).await {
        Outcome::Led(reply) => Ok((reply, Role::Miss)),
        Outcome::Joined { value, waited } => {
            shield.metrics.coalesced_wait(waited.as_secs_f64());
            Ok((value, Role::Coalesced))
        }
        Outcome::Failed { error, led, waited } => {
            if !led {
                shield.metrics.coalesced_wait(waited.as_secs_f64());
            }
            Err(error)
        }
        Outcome::Uncacheable { fetched, .. } => fetched.map(|r| (r, Role::Miss)),
        Outcome::TimedOut { waited } => {
            shield.metrics.coalesced_wait(waited.as_secs_f64());
            Err(ShieldError::WaitTimeout(waited))
        }
    }
}

/// Fetches the IRD closure and installs the flattened directory; resources that disappeared
/// upstream have their cached answers dropped.
pub(super) async fn load_directory(shield: &Arc<Shield>) -> Result<Arc<Directory>, ShieldError> {
    let root: http::Uri = shield.config.origin.ird.clone();
    let irds = crate::ird::fetch_closure(&shield.upstream, &root)
        .await
        .map_err(|e| ShieldError::Ird(e.to_string()))?;
    let dir = Arc::new(
        crate::ird::flatten(&irds, &shield.public_url).map_err(|e| ShieldError::Ird(e.to_string()))?,
    );
    if let Some(old) = shield.directory() {
        for gone in old.resources.keys().filter(|id| !dir.resources.contains_key(*id)) {
            tracing::info!(resource = %gone, "resource left the origin's IRD; dropping its cached answers");
            shield.purge(Some(gone));
        }
    }
    shield.set_directory(dir.clone());
    Ok(dir)
}

/// Refreshes the default network map (coalesced), switching generations if its tag changed.
pub(super) async fn refresh_network_map(shield: &Arc<Shield>) -> Result<(), ShieldError> {
    let dir = shield.directory().ok_or(ShieldError::NotReady)?;
    let res = dir.resources.get(&dir.default_network_map).cloned().ok_or_else(|| {
        ShieldError::Ird(format!("the default network map `{}` is not in the IRD", dir.default_network_map))
    })?;
    refetch(shield, &dir, &res).await.map(|_| ())
}

/// Whether a GET resource belongs to the generation: the default network map itself, or a GET
/// map that uses it.
pub(super) fn is_versioned(dir: &Directory, res: &Resource) -> bool {
    res.accepts.is_none()
        && (res.id == dir.default_network_map || res.uses.contains(&dir.default_network_map))
}

/// A GET, fetched through the coalescer: a versioned map is installed into the generation (see
/// [`is_versioned`]), anything else is stored by TTL alone.
pub(super) async fn get(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
) -> Result<(Reply, Role), ShieldError> {
    fetch_get(shield, dir, res, true).await
}

/// Like [`get`], but always asks the origin, even when a fresh copy is cached: for refreshing the
/// network map ahead of its expiry, and when an answer names another version.
pub(super) async fn refetch(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
) -> Result<(Reply, Role), ShieldError> {
    fetch_get(shield, dir, res, false).await
}

async fn fetch_get(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    fresh_will_do: bool,
) -> Result<(Reply, Role), ShieldError> {
    let key = FlightKey::Get(Arc::from(res.id.as_str()));
    coalesced(shield, key, || async {
        // A request that missed the cache just before another's fetch stored its answer becomes
        // leader of a new flight: look again before asking the origin a second time.
        if fresh_will_do {
            if let Some(entry) = cached_get(shield, dir, res).filter(|e| e.is_fresh(Instant::now())) {
                return Ok(Fetched::Shared(cached_reply(entry)));
            }
        }
        let (reply, info) = origin_fetch(shield, dir, res, None).await?;
        if reply.status != StatusCode::OK {
            return Ok(Fetched::Private(reply));
        }
        let reply = if res.id == dir.default_network_map {
            install_network_map(shield, dir, res, reply, info).await?
        } else if is_versioned(dir, res) {
            install_dependent(shield, dir, res, reply, info).await?
        } else {
            if let (true, Some(entry)) = (reply.stored, reply.entry.clone()) {
                shield.store.insert(crate::cache::Key::Get(Arc::from(res.id.as_str())), entry);
            }
            reply
        };
        Ok(Fetched::Shared(reply))
    })
    .await
}

/// The cached copy of a GET resource: from the generation for versioned maps, else the store.
pub(super) fn cached_get(shield: &Shield, dir: &Directory, res: &Resource) -> Option<Arc<Entry>> {
    if is_versioned(dir, res) {
        shield.generation().and_then(|g| g.maps.get(res.id.as_str()).cloned())
    } else {
        shield.store.get(&crate::cache::Key::Get(Arc::from(res.id.as_str())))
    }
}

/// A stored entry as a reply.
fn cached_reply(entry: Arc<Entry>) -> Reply {
    Reply {
        status: StatusCode::OK,
        media_type: entry.media_type.clone(),
        body: entry.body.clone(),
        headers: Vec::new(),
        entry: Some(entry),
        stored: true,
    }
}

/// Installs a fetched default network map: the same tag refreshes it in place; a new tag starts a
/// new generation, with the dependents that were cached refetched for it first (so clients
/// switch to a complete set at once).
async fn install_network_map(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    reply: Reply,
    info: AnswerInfo,
) -> Result<Reply, ShieldError> {
    let entry = reply.entry.clone().ok_or_else(|| invalid(res, "no body"))?;
    let tag: Arc<str> =
        Arc::from(info.tag.ok_or_else(|| invalid(res, "network map without meta.vtag"))?.as_str());
    let current = shield.generation();
    if let Some(g) = current.as_ref().filter(|g| g.tag == tag) {
        let mut next = (**g).clone();
        next.maps.insert(Arc::from(res.id.as_str()), entry);
        swap_if_same(shield, &g.tag, next);
        return Ok(Reply { stored: true, ..reply });
    }
    let body = entry.body.clone();
    let view = tokio::task::spawn_blocking(move || -> Result<NetworkMapView, String> {
        let parsed: NetworkMapResponse = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        NetworkMapView::new(parsed).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| invalid(res, &e.to_string()))?
    .map_err(|e| invalid(res, &e))?;

    let mut maps = std::collections::HashMap::new();
    maps.insert(Arc::from(res.id.as_str()), entry);
    if let Some(old) = current.as_ref() {
        // Refetch the dependents clients were using, for the new version, before switching.
        let deps: Vec<Resource> = old
            .maps
            .keys()
            .filter(|id| ***id != *res.id)
            .filter_map(|id| dir.resources.get(&**id).cloned())
            .collect();
        let mut set = tokio::task::JoinSet::new();
        for d in deps {
            let (shield, dir) = (shield.clone(), dir.clone());
            set.spawn(async move {
                let result = origin_fetch(&shield, &dir, &d, None).await;
                (d, result)
            });
        }
        while let Some(joined) = set.join_next().await {
            let Ok((d, result)) = joined else { continue };
            match result {
                Ok((r, i)) if r.status == StatusCode::OK && i.tag.as_deref() == Some(&*tag) => {
                    if let Some(e) = r.entry {
                        maps.insert(Arc::from(d.id.as_str()), e);
                    }
                }
                Ok(_) | Err(_) => {
                    tracing::info!(resource = %d.id, "not refreshed with the new network map; fetched on demand")
                }
            }
        }
    }
    let next = Generation { tag: tag.clone(), view: Arc::new(view), maps };
    *shield.generation.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(next));
    tracing::info!(tag = %tag, "serving a new network map version");
    Ok(Reply { stored: true, ..reply })
}

/// Installs a fetched dependent of the network map into the generation it names; an answer
/// naming another version makes the shield refresh the network map first, and is refused if
/// the two still disagree.
async fn install_dependent(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    reply: Reply,
    info: AnswerInfo,
) -> Result<Reply, ShieldError> {
    let tag = info.tag.ok_or_else(|| invalid(res, "no dependent-vtags naming the default network map"))?;
    let mut refreshed = false;
    loop {
        let gen = shield.generation().ok_or(ShieldError::NotReady)?;
        if *gen.tag == *tag {
            if reply.stored {
                if let Some(entry) = reply.entry.clone() {
                    let mut next = (*gen).clone();
                    next.maps.insert(Arc::from(res.id.as_str()), entry);
                    swap_if_same(shield, &gen.tag, next);
                }
            }
            return Ok(reply);
        }
        if refreshed {
            return Err(ShieldError::Inconsistent {
                resource: res.id.clone(),
                got: tag,
                want: gen.tag.to_string(),
            });
        }
        // The dependent names another version: the network map may have moved on.
        let nm = dir.resources.get(&dir.default_network_map).cloned().ok_or(ShieldError::NotReady)?;
        Box::pin(refetch(shield, dir, &nm)).await?;
        refreshed = true;
    }
}

/// Replaces the generation if it still has `tag` (a concurrent switch wins).
fn swap_if_same(shield: &Shield, tag: &Arc<str>, next: Generation) {
    let mut slot = shield.generation.write().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_some_and(|g| g.tag == *tag) {
        *slot = Some(Arc::new(next));
    }
}

/// A POST answer: coalesced per canonical request, stored under the generation it belongs to.
pub(super) async fn post(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    canonical: Bytes,
) -> Result<(Reply, Role), ShieldError> {
    let key = FlightKey::Post(Arc::from(res.id.as_str()), canonical.clone());
    coalesced(shield, key, || async {
        let gen_before = shield.generation().map(|g| g.tag.clone());
        // A request that missed the cache just before another's fetch stored its answer becomes
        // leader of a new flight: look again before asking the origin a second time.
        if let Some(gen) = &gen_before {
            let key = crate::cache::Key::Post(Arc::from(res.id.as_str()), gen.clone(), canonical.clone());
            if let Some(entry) = shield.store.get(&key).filter(|e| e.is_fresh(Instant::now())) {
                return Ok(Fetched::Shared(cached_reply(entry)));
            }
        }
        let (reply, info) = origin_fetch(shield, dir, res, Some(canonical.clone())).await?;
        if reply.status != StatusCode::OK {
            return Ok(Fetched::Private(reply));
        }
        let mut generation = gen_before.clone();
        if let Some(tag) = info.tag.as_deref() {
            // Answers carrying the network map's tag must match the version being served.
            if generation.as_deref() != Some(tag) {
                let nm = dir.resources.get(&dir.default_network_map).cloned().ok_or(ShieldError::NotReady)?;
                refetch(shield, dir, &nm).await?;
                generation = shield.generation().map(|g| g.tag.clone());
                if generation.as_deref() != Some(tag) {
                    return Err(ShieldError::Inconsistent {
                        resource: res.id.clone(),
                        got: tag.to_string(),
                        want: generation.as_deref().unwrap_or("none").to_string(),
                    });
                }
            }
        }
        let storable = reply.stored && res.post_kind.is_some();
        let same_version = shield.generation().map(|g| g.tag.clone()) == generation;
        match (storable && same_version, reply.entry.clone(), generation) {
            (true, Some(entry), Some(gen)) => {
                shield.store.insert(
                    crate::cache::Key::Post(Arc::from(res.id.as_str()), gen, canonical.clone()),
                    entry,
                );
                Ok(Fetched::Shared(reply))
            }
            _ => Ok(Fetched::Shared(Reply { stored: false, ..reply })),
        }
    })
    .await
}

/// What the shield learnt from an answer's body.
#[derive(Debug, Default)]
pub(super) struct AnswerInfo {
    /// The default network map's tag the answer names (`vtag` of the network map,
    /// `dependent-vtags` of a dependent).
    tag: Option<String>,
}

/// One origin request: sent, timed, counted, and its answer checked. A 200 answer that is not
/// what its media type promises is an error (never stored); other statuses pass through.
pub(super) async fn origin_fetch(
    shield: &Arc<Shield>,
    dir: &Directory,
    res: &Resource,
    body: Option<Bytes>,
) -> Result<(Reply, AnswerInfo), ShieldError> {
    let (method, content_type) = match (&res.accepts, &body) {
        (Some(accepts), Some(_)) => (Method::POST, Some(accepts.clone())),
        _ => (Method::GET, None),
    };
    let req = UpstreamRequest {
        method,
        uri: res.origin_uri.clone(),
        accept: format!("{},{}", res.media_type, media::ERROR),
        content_type,
        body: body.unwrap_or_default(),
        headers: vec![(header::VIA, shield.via_header.clone())],
    };
    let started = Instant::now();
    let result = shield.upstream.send(req).await;
    let seconds = started.elapsed().as_secs_f64();
    let resp = match result {
        Ok(resp) => resp,
        Err(error) => {
            shield.metrics.origin_request(&res.id, error.status_label(), seconds);
            return Err(ShieldError::Upstream { resource: res.id.clone(), error });
        }
    };
    let checked = check_answer(shield, dir, res, resp.status, &resp.headers, resp.body);
    let label = match &checked {
        Err(ShieldError::Invalid { .. }) => "invalid_response".to_string(),
        _ => resp.status.as_u16().to_string(),
    };
    shield.metrics.origin_request(&res.id, &label, seconds);
    if let Err(e) = &checked {
        tracing::warn!(error = %e, "origin answer refused");
    }
    checked
}

fn invalid(res: &Resource, reason: &str) -> ShieldError {
    ShieldError::Invalid { resource: res.id.clone(), reason: reason.to_string() }
}

fn check_answer(
    shield: &Shield,
    dir: &Directory,
    res: &Resource,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(Reply, AnswerInfo), ShieldError> {
    let content_type = headers.get(header::CONTENT_TYPE).cloned();
    let mut passed = Vec::new();
    for name in [header::RETRY_AFTER, header::LAST_MODIFIED] {
        if let Some(v) = headers.get(&name) {
            passed.push((name, v.clone()));
        }
    }
    if status != StatusCode::OK {
        if status.is_redirection() {
            if let Some(loc) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                let rewritten = loc
                    .parse::<http::Uri>()
                    .ok()
                    .and_then(|u| dir.origin_to_shield(&u))
                    .and_then(|s| HeaderValue::from_str(&s).ok())
                    .unwrap_or_else(|| HeaderValue::from_static("/directory"));
                passed.push((header::LOCATION, rewritten));
            }
        }
        let media_type = content_type.unwrap_or(HeaderValue::from_static(media::ERROR));
        let reply = Reply { status, media_type, body, headers: passed, entry: None, stored: false };
        return Ok((reply, AnswerInfo::default()));
    }
    let got = content_type.as_ref().and_then(|v| v.to_str().ok()).and_then(MediaRange::parse);
    let want = MediaRange::parse(&res.media_type);
    match (&got, &want) {
        (Some(g), Some(w)) if g.essence() == w.essence() => {}
        _ => {
            let shown = content_type.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("none");
            return Err(invalid(res, &format!("media type {shown}, expected {}", res.media_type)));
        }
    }
    let tag = answer_tag(&res.media_type, &body, &dir.default_network_map)
        .map_err(|reason| invalid(res, &reason))?;
    let (ttl, storable) = freshness(headers, shield.config.cache.default_ttl);
    let media_type =
        HeaderValue::from_str(&res.media_type).unwrap_or(HeaderValue::from_static("application/json"));
    let generation = None;
    let mut entry = Entry::new(Arc::from(res.id.as_str()), media_type.clone(), body.clone(), ttl, generation);
    entry.last_modified = headers.get(header::LAST_MODIFIED).cloned();
    let reply =
        Reply { status, media_type, body, headers: passed, entry: Some(Arc::new(entry)), stored: storable };
    Ok((reply, AnswerInfo { tag }))
}

/// Checks that a 200 body is what its media type promises and returns the default network
/// map's tag it names, if any.
fn answer_tag(media_type: &str, body: &[u8], default_map: &str) -> Result<Option<String>, String> {
    let essence = MediaRange::parse(media_type).map(|m| m.essence()).unwrap_or_default();
    let dependent = |deps: Option<&Vec<crate::alto::types::VersionTag>>| {
        deps.and_then(|d| d.iter().find(|v| v.resource_id == default_map)).map(|v| v.tag.clone())
    };
    let err = |e: serde_json::Error| format!("not a valid {essence} body: {e}");
    Ok(match essence.as_str() {
        media::NETWORK_MAP => {
            let m: NetworkMapResponse = serde_json::from_slice(body).map_err(err)?;
            let vtag = m.meta.vtag.ok_or("network map without meta.vtag")?;
            (vtag.resource_id == default_map).then_some(vtag.tag)
        }
        media::COST_MAP => dependent(
            serde_json::from_slice::<CostMapResponse>(body).map_err(err)?.meta.dependent_vtags.as_ref(),
        ),
        media::ENDPOINT_PROP => dependent(
            serde_json::from_slice::<EndpointPropResponse>(body).map_err(err)?.meta.dependent_vtags.as_ref(),
        ),
        media::ENDPOINT_COST => {
            serde_json::from_slice::<EndpointCostResponse>(body).map_err(err)?;
            None
        }
        media::DIRECTORY => {
            serde_json::from_slice::<Ird>(body).map_err(err)?;
            None
        }
        e if e.ends_with("+json") || e == "application/json" => {
            let v: Value = serde_json::from_slice(body).map_err(err)?;
            let deps =
                v.pointer("/meta/dependent-vtags").cloned().and_then(|d| serde_json::from_value(d).ok());
            dependent(deps.as_ref())
        }
        _ => None,
    })
}

/// Freshness from `Cache-Control` (`s-maxage`, `max-age`) or `Expires`, else the default TTL;
/// `no-store` and `private` answers are not stored.
fn freshness(headers: &HeaderMap, default_ttl: Duration) -> (Duration, bool) {
    let mut ttl = None;
    let mut storable = true;
    for v in headers.get_all(header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()) {
        for directive in v.split(',').map(str::trim) {
            let (name, value) =
                directive.split_once('=').map_or((directive, None), |(n, v)| (n, Some(v.trim_matches('"'))));
            match name.to_ascii_lowercase().as_str() {
                "no-store" | "private" => storable = false,
                "no-cache" => ttl = Some(Duration::ZERO),
                "s-maxage" => ttl = value.and_then(|s| s.parse().ok()).map(Duration::from_secs).or(ttl),
                "max-age" if ttl.is_none() => {
                    ttl = value.and_then(|s| s.parse().ok()).map(Duration::from_secs)
                }
                _ => {}
            }
        }
    }
    if ttl.is_none() {
        let date =
            |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).and_then(httpdate_parse);
        if let (Some(expires), Some(now)) =
            (date(header::EXPIRES), date(header::DATE).or_else(|| Some(std::time::SystemTime::now())))
        {
            ttl = Some(expires.duration_since(now).unwrap_or(Duration::ZERO));
        }
    }
    (ttl.unwrap_or(default_ttl), storable)
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn httpdate_parse(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [h, m, sec] = hms.as_slice() else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + sec;
    u64::try_from(secs).ok().map(|s| std::time::UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_rules() {
        let mut h = HeaderMap::new();
        assert_eq!(freshness(&h, Duration::from_secs(30)), (Duration::from_secs(30), true));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=5"));
        assert_eq!(freshness(&h, Duration::from_secs(30)), (Duration::from_secs(5), true));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5, s-maxage=7"));
        assert_eq!(freshness(&h, Duration::from_secs(30)).0, Duration::from_secs(7));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        assert!(!freshness(&h, Duration::from_secs(30)).1);
        let mut h = HeaderMap::new();
        h.insert(header::DATE, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        h.insert(header::EXPIRES, HeaderValue::from_static("Sun, 06 Nov 1994 08:50:37 GMT"));
        assert_eq!(freshness(&h, Duration::from_secs(30)).0, Duration::from_secs(60));
    }

    #[test]
    fn imf_fixdate() {
        let t = httpdate_parse("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        assert!(httpdate_parse("garbage").is_none());
    }
}
