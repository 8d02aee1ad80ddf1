//! The request path, as straight-line code: admit → route → validate → cache → coalesce →
//! forward → store → respond. Every refusal is an ALTO error; nothing invalid reaches the origin.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::fetch::{self, Reply, Role, ShieldError};
use super::local;
use super::metrics::Outcome;
use super::respond::{self, status, Wants};
use super::Shield;
use crate::alto::validate::{self, Request as AltoRequest};
use crate::alto::{canon, media, TypedAddr};
use crate::cache::Key;
use crate::http::{self as h, Body};
use crate::ird::{Directory, Resource};

/// What the connection layer knows about a request's origin.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client address from a PROXY protocol header sent by a trusted proxy.
    pub proxied: Option<IpAddr>,
}

/// Answers one client request.
pub async fn handle(shield: Arc<Shield>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
    // Global in-flight limit: shed rather than queue, so overload never turns into a hang.
    let Some(_in_flight) = shield.enter() else {
        return rejected(
            &shield,
            "unknown",
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight",
            Some("1"),
        );
    };
    let client = client_addr(&shield, &req, conn);
    // The resource label is only worked out for refusals: the hot path knows its resource.
    let label = || resource_label(&shield, req.uri().path(), req.method());
    if !shield.allowed(client) {
        return rejected(&shield, &label(), StatusCode::FORBIDDEN, "client address not allowed", None);
    }
    if let Err(retry) = shield.rate.check(client, Instant::now()) {
        let secs = crate::admit::rate::retry_after_secs(retry).to_string();
        return rejected(
            &shield,
            &label(),
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded",
            Some(&secs),
        );
    }
    if looped(&shield, &req) {
        return rejected(
            &shield,
            &label(),
            StatusCode::LOOP_DETECTED,
            "request already passed through this shield",
            None,
        );
    }
    let wants = Wants::of(req.method(), req.headers());
    if req.uri().path() == "/directory" {
        return directory(&shield, &req, &wants);
    }
    let Some(dir) = shield.directory() else {
        return rejected(
            &shield,
            &label(),
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the origin's IRD is not loaded yet",
            Some("1"),
        );
    };
    let method = if req.method() == Method::HEAD { Method::GET } else { req.method().clone() };
    let Some(res) = dir.resource(req.uri().path(), &method).cloned() else {
        let label = label();
        return not_found_or_not_allowed(&shield, &dir, &req, &label);
    };
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if !media::accepts(accept, &res.media_type) {
        return rejected(
            &shield,
            &res.id,
            StatusCode::NOT_ACCEPTABLE,
            &format!("this resource answers {}", res.media_type),
            None,
        );
    }
    if res.accepts.is_none() {
        get(&shield, &dir, &res, &wants).await
    } else {
        post(&shield, &dir, &res, req, client, &wants).await
    }
}

/// The client's real address: the PROXY header's, or `X-Forwarded-For` when the peer is a
/// trusted proxy, else the peer's. An IPv4-mapped IPv6 address counts as IPv4.
fn client_addr(shield: &Shield, req: &Request<Incoming>, conn: ConnInfo) -> IpAddr {
    let peer = crate::admit::normalize(conn.peer.ip());
    if let Some(ip) = conn.proxied {
        return crate::admit::normalize(ip);
    }
    if shield.trusted(peer) {
        let values: Vec<&str> =
            req.headers().get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
        if !values.is_empty() {
            return crate::admit::normalize(crate::admit::forwarded_for(
                &values,
                &shield.config.listen.trusted_proxies,
                peer,
            ));
        }
    }
    peer
}

/// Whether the request carries this shield's own `Via` entry: tiers must not loop.
fn looped(shield: &Shield, req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::VIA)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|hop| hop.split_whitespace().nth(1) == Some(shield.via.as_str())))
}

/// The `resource` label of a path: a resource-id of the IRD, `directory`, or `unknown`.
fn resource_label(shield: &Shield, path: &str, method: &Method) -> String {
    if path == "/directory" {
        return "directory".into();
    }
    let method = if method == Method::HEAD { Method::GET } else { method.clone() };
    shield
        .directory()
        .and_then(|d| {
            d.resource(path, &method)
                .or_else(|| {
                    d.by_path.get(path).and_then(|ids| ids.first()).and_then(|id| d.resources.get(id))
                })
                .map(|r| r.id.clone())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn rejected(
    shield: &Shield,
    resource: &str,
    status: StatusCode,
    cause: &str,
    retry_after: Option<&str>,
) -> Response<Body> {
    shield.metrics.request(resource, Outcome::rejected);
    let mut resp = h::refuse(status, cause);
    if let Some(secs) = retry_after.and_then(|s| HeaderValue::from_str(s).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, secs);
    }
    respond::finish(resp, "", &shield.via_header)
}

fn not_found_or_not_allowed(
    shield: &Shield,
    dir: &Directory,
    req: &Request<Incoming>,
    label: &str,
) -> Response<Body> {
    let path = req.uri().path();
    let Some(ids) = dir.by_path.get(path) else {
        return rejected(shield, label, StatusCode::NOT_FOUND, &format!("no resource at {path}"), None);
    };
    let mut allow: Vec<&str> = ids
        .iter()
        .filter_map(|id| dir.resources.get(id))
        .map(|r| if r.accepts.is_some() { "POST" } else { "GET, HEAD" })
        .collect();
    allow.sort_unstable();
    allow.dedup();
    let mut resp = rejected(
        shield,
        label,
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} is not allowed here", req.method()),
        None,
    );
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

/// `GET /directory`: the flattened, rewritten IRD.
fn directory(shield: &Shield, req: &Request<Incoming>, wants: &Wants) -> Response<Body> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut resp =
            rejected(shield, "directory", StatusCode::METHOD_NOT_ALLOWED, "the IRD is read with GET", None);
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if !media::accepts(accept, media::DIRECTORY) {
        return rejected(
            shield,
            "directory",
            StatusCode::NOT_ACCEPTABLE,
            "the IRD is application/alto-directory+json",
            None,
        );
    }
    let Some(ird) = shield.ird() else {
        return rejected(
            shield,
            "directory",
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the origin's IRD is not loaded yet",
            Some("1"),
        );
    };
    shield.metrics.request("directory", Outcome::hit);
    respond::entry(&ird, wants, &status::hit(ird.ttl_left(Instant::now()).max(0)), &shield.via_header)
}

/// A GET resource: from the generation (the network map and its dependents) or the TTL store.
async fn get(shield: &Arc<Shield>, dir: &Arc<Directory>, res: &Resource, wants: &Wants) -> Response<Body> {
    let versioned = fetch::is_versioned(dir, res);
    let now = Instant::now();
    let cached = if versioned {
        shield.generation().and_then(|g| g.maps.get(res.id.as_str()).cloned())
    } else {
        shield.store.get(&Key::Get(Arc::from(res.id.as_str())))
    };
    if let Some(entry) = &cached {
        if entry.is_fresh(now) {
            shield.metrics.request(&res.id, Outcome::hit);
            return respond::entry(entry, wants, &status::hit(entry.ttl_left(now)), &shield.via_header);
        }
        if entry.staleness(now) <= shield.config.cache.stale_while_revalidate {
            // Serve stale now; one background refresh (coalesced with any under way).
            let (s, d, r) = (shield.clone(), dir.clone(), res.clone());
            tokio::spawn(async move {
                let result = fetch::get(&s, &d, &r).await;
                if let Err(e) = result {
                    tracing::warn!(resource = %r.id, error = %e, "background refresh failed");
                }
            });
            shield.metrics.request(&res.id, Outcome::stale);
            return respond::entry(entry, wants, &status::stale(entry.ttl_left(now)), &shield.via_header);
        }
    }
    let result = fetch::get(shield, dir, res).await;
    finish_fetch(shield, res, result, cached.as_deref(), wants)
}

/// A POST resource: validated, canonicalised, answered from the exact cache or the origin.
async fn post(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    req: Request<Incoming>,
    client: IpAddr,
    wants: &Wants,
) -> Response<Body> {
    let accepts = res.accepts.clone().unwrap_or_default();
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if !media::content_type_is(content_type, &accepts) {
        return rejected(
            shield,
            &res.id,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("expected Content-Type {accepts}"),
            None,
        );
    }
    let body = match h::read_body(req, shield.config.limits.max_body).await {
        Ok(b) => b,
        Err(e) => {
            shield.metrics.request(&res.id, Outcome::rejected);
            return respond::finish(h::body_error_response(&e), "", &shield.via_header);
        }
    };
    let Some(kind) = res.post_kind else {
        // A POST type the core does not model: forwarded as is, identical bodies coalesced.
        let result = fetch::post(shield, dir, res, body).await;
        return finish_fetch(shield, res, result, None, wants);
    };
    let prepared = match prepare(shield, res, kind, body, client) {
        Ok(p) => p,
        Err(e) => {
            shield.metrics.request(&res.id, Outcome::rejected);
            return respond::finish(h::alto_error(StatusCode::BAD_REQUEST, &e), "", &shield.via_header);
        }
    };
    // Endpoint costs above the exact cache, as `ecs.mode` allows (nothing in `forward`).
    if let Some(resp) = super::ecs::answer(shield, dir, res, &prepared, wants).await {
        return resp;
    }
    let (canonical, spellings) = (prepared.canonical.clone(), &prepared.spellings);
    let now = Instant::now();
    let cached = shield.generation().and_then(|g| {
        shield.store.get(&Key::Post(Arc::from(res.id.as_str()), g.tag.clone(), canonical.clone()))
    });
    if let Some(entry) = cached.as_ref().filter(|e| e.is_fresh(now)) {
        shield.metrics.request(&res.id, Outcome::hit);
        let entry = rekey(entry, spellings);
        return respond::entry(&entry, wants, &status::hit(entry.ttl_left(now)), &shield.via_header);
    }
    // Computed locally from the current maps when that is correct (filtered maps, `pid` lookups).
    match local::answer(shield, dir, res, &prepared.request).await {
        Ok(Some(answer)) => {
            let key = Key::Post(Arc::from(res.id.as_str()), answer.generation.clone(), canonical.clone());
            shield.store.insert(key, answer.entry.clone());
            shield.metrics.request(&res.id, Outcome::local);
            let entry = rekey(&answer.entry, spellings);
            return respond::entry(&entry, wants, status::LOCAL, &shield.via_header);
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(resource = %res.id, error = %e, "no local answer; forwarding"),
    }
    if let Some(entry) = &cached {
        if entry.staleness(now) <= shield.config.cache.stale_while_revalidate {
            let (s, d, r, c) = (shield.clone(), dir.clone(), res.clone(), canonical.clone());
            tokio::spawn(async move {
                if let Err(e) = fetch::post(&s, &d, &r, c).await {
                    tracing::warn!(resource = %r.id, error = %e, "background refresh failed");
                }
            });
            shield.metrics.request(&res.id, Outcome::stale);
            let entry = rekey(entry, spellings);
            return respond::entry(&entry, wants, &status::stale(entry.ttl_left(now)), &shield.via_header);
        }
    }
    let result = fetch::post(shield, dir, res, canonical).await.map(|(mut reply, role)| {
        if let Some(e) = &reply.entry {
            reply.entry = Some(rekey(e, spellings));
        }
        (reply, role)
    });
    let cached = cached.map(|e| rekey(&e, spellings));
    finish_fetch(shield, res, result, cached.as_deref(), wants)
}

/// A validated request ready to be looked up: its canonical form and the client's spellings.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The canonical request, implicit endpoints filled in.
    pub(super) request: AltoRequest,
    pub(super) canonical: Bytes,
    pub(super) spellings: Spellings,
}

impl Prepared {
    pub(super) fn weight(&self) -> usize {
        self.canonical.len() + self.spellings.weight()
    }
}

/// Validates and canonicalises a POST body. Requests that name all their endpoints are
/// remembered by their exact bytes, so the clients that repeat a request every epoch skip the
/// JSON work entirely; requests with implicit endpoints depend on the client and are not.
fn prepare(
    shield: &Shield,
    res: &Resource,
    kind: validate::PostKind,
    body: Bytes,
    client: IpAddr,
) -> Result<Arc<Prepared>, crate::alto::AltoError> {
    let memo_key = (Arc::<str>::from(res.id.as_str()), body);
    if let Some(p) = shield.prepared.get(&memo_key) {
        return Ok(p);
    }
    let request = validate::validate(kind, &res.caps, &memo_key.1)?;
    let implicit = match &request {
        AltoRequest::EndpointCost(r) => {
            [&r.endpoints.srcs, &r.endpoints.dsts].iter().any(|l| l.as_ref().is_none_or(Vec::is_empty))
        }
        _ => false,
    };
    let request = with_implicit_endpoints(request, client);
    let spellings = spellings(&request);
    let request = canon::into_canonical(request);
    let prepared =
        Arc::new(Prepared { canonical: Bytes::from(canon::to_bytes(&request)), spellings, request });
    if !implicit {
        shield.prepared.insert(memo_key, prepared.clone());
    }
    Ok(prepared)
}

/// Turns a fetch result into the response, serving a stale copy when the origin fails and
/// `stale_if_error` allows.
pub(super) fn finish_fetch(
    shield: &Shield,
    res: &Resource,
    result: Result<(Reply, Role), ShieldError>,
    stale: Option<&crate::cache::Entry>,
    wants: &Wants,
) -> Response<Body> {
    let now = Instant::now();
    let serve_stale = |stale: Option<&crate::cache::Entry>| {
        stale.filter(|e| e.staleness(now) <= shield.config.cache.stale_if_error).map(|e| {
            shield.metrics.request(&res.id, Outcome::stale);
            respond::entry(e, wants, &status::stale(e.ttl_left(now)), &shield.via_header)
        })
    };
    match result {
        Ok((reply, role)) => {
            if reply.status.is_server_error() {
                if let Some(resp) = serve_stale(stale) {
                    return resp;
                }
            }
            let outcome = match (role, reply.status.is_server_error()) {
                (_, true) => Outcome::error,
                (Role::Miss, false) => Outcome::miss,
                (Role::Coalesced, false) => Outcome::coalesced,
            };
            shield.metrics.request(&res.id, outcome);
            let cache_status = match role {
                Role::Miss => status::miss(reply.status.as_u16(), reply.stored),
                Role::Coalesced => status::coalesced(),
            };
            respond::reply(&reply, wants, &cache_status, &shield.via_header)
        }
        Err(e) => {
            if let Some(resp) = serve_stale(stale) {
                return resp;
            }
            tracing::debug!(resource = %res.id, error = %e, "answering with an error");
            shield.metrics.request(&res.id, Outcome::error);
            respond::error(&e, &shield.via_header)
        }
    }
}

/// Fills an endpoint-cost request's empty or absent `srcs` / `dsts` with the client's own
/// address (RFC 7285 §11.5.1.3): the origin would otherwise see the shield's.
fn with_implicit_endpoints(request: AltoRequest, client: IpAddr) -> AltoRequest {
    let AltoRequest::EndpointCost(mut r) = request else { return request };
    let me = TypedAddr::from_peer(client).to_string();
    for list in [&mut r.endpoints.srcs, &mut r.endpoints.dsts] {
        if list.as_ref().is_none_or(Vec::is_empty) {
            *list = Some(vec![me.clone()]);
        }
    }
    AltoRequest::EndpointCost(r)
}

/// The client's own spellings of the addresses it sent, where they differ from the canonical
/// ones: per list, because a server keys sources by their spelling in `srcs` and destinations by
/// theirs in `dsts`, even when one address appears in both, spelled differently.
#[derive(Debug, Clone, Default)]
pub(super) struct Spellings {
    /// Outer keys: endpoint-cost sources, endpoint-property endpoints.
    pub(super) outer: Vec<(String, String)>,
    /// Inner keys: endpoint-cost destinations.
    pub(super) inner: Vec<(String, String)>,
}

impl Spellings {
    fn is_empty(&self) -> bool {
        self.outer.is_empty() && self.inner.is_empty()
    }

    fn weight(&self) -> usize {
        self.outer.iter().chain(&self.inner).map(|(a, b)| a.len() + b.len()).sum()
    }
}

fn spellings(request: &AltoRequest) -> Spellings {
    match request {
        AltoRequest::EndpointProp(r) => Spellings { outer: first_spellings(&r.endpoints), inner: Vec::new() },
        AltoRequest::EndpointCost(r) => Spellings {
            outer: first_spellings(r.endpoints.srcs.as_deref().unwrap_or_default()),
            inner: first_spellings(r.endpoints.dsts.as_deref().unwrap_or_default()),
        },
        _ => Spellings::default(),
    }
}

/// The first spelling of each address in one list (as a server answering the request keys it),
/// where it is not the canonical one.
fn first_spellings(list: &[String]) -> Vec<(String, String)> {
    let mut first: Vec<(String, String)> = Vec::new();
    for s in list {
        let Ok(a) = TypedAddr::parse(s) else { continue };
        // A parsed `ipv4:` address is canonical as written (the parser refuses leading zeros).
        let canonical = if s.starts_with("ipv4:") { s.clone() } else { a.to_string() };
        if !first.iter().any(|(c, _)| *c == canonical) {
            first.push((canonical, s.clone()));
        }
    }
    first.retain(|(canonical, spelled)| canonical != spelled);
    first
}

/// An answer keyed back to the client's own spellings of its addresses. Most clients spell
/// canonically, and then the stored entry is served as it is.
pub(super) fn rekey(entry: &Arc<crate::cache::Entry>, spellings: &Spellings) -> Arc<crate::cache::Entry> {
    if spellings.is_empty() {
        return entry.clone();
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&entry.body) else {
        return entry.clone();
    };
    let rename = |map: &mut serde_json::Map<String, serde_json::Value>, spellings: &[(String, String)]| {
        for (canonical, spelled) in spellings {
            if let Some(v) = map.remove(canonical) {
                map.insert(spelled.clone(), v);
            }
        }
    };
    for member in ["endpoint-cost-map", "endpoint-properties"] {
        if let Some(serde_json::Value::Object(outer)) = value.get_mut(member) {
            rename(outer, &spellings.outer);
            if member == "endpoint-cost-map" && !spellings.inner.is_empty() {
                for inner in outer.values_mut() {
                    if let serde_json::Value::Object(inner) = inner {
                        rename(inner, &spellings.inner);
                    }
                }
            }
        }
    }
    let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    let mut e = crate::cache::Entry::new(
        entry.resource.clone(),
        entry.media_type.clone(),
        body,
        entry.ttl,
        entry.generation.clone(),
    );
    e.stored_at = entry.stored_at;
    Arc::new(e)
}

#[cfg(test)]
mod tests {
    use super::first_spellings;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_spelling_of_each_address_is_kept_when_it_is_not_canonical() {
        let got = first_spellings(&list(&[
            "ipv4:192.0.2.1",
            "IPV4:192.0.2.1",
            "IPV4:198.51.100.7",
            "ipv4:198.51.100.7",
            "IPv6:2001:DB8::1",
            "ipv6:2001:db8::1",
            "ipv6:2001:db8::2",
        ]));
        let want = [("ipv4:198.51.100.7", "IPV4:198.51.100.7"), ("ipv6:2001:db8::1", "IPv6:2001:DB8::1")];
        let want: Vec<(String, String)> = want.iter().map(|(c, s)| (c.to_string(), s.to_string())).collect();
        assert_eq!(got, want);
    }
}
