//! The origin's request handling: routing, fault injection, HTTP checks, validation through the
//! core, and answers computed from the current map version.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::data::{DataError, Dataset, Version};
use super::metrics::OriginMetrics;
use super::OriginOptions;
use crate::alto::compute::{self, NetworkMapView};
use crate::alto::constraint::Constraint;
use crate::alto::types::{CostType, Ird, IrdEntry, IrdMeta, VersionTag};
use crate::alto::validate::{self, PostKind, Request as AltoRequest, ResourceCaps};
use crate::alto::{media, AltoError, TypedAddr};
use crate::http::{self as h, Body, DropConnection};
use crate::rng::{mix, SplitMix64};

/// Shared by every connection of one origin.
#[derive(Debug)]
pub(super) struct State {
    pub dataset: Dataset,
    pub options: OriginOptions,
    pub current: RwLock<Arc<Version>>,
    /// Serialises bumps, so versions are built one at a time.
    pub bump_lock: tokio::sync::Mutex<()>,
    pub fault_rng: Mutex<SplitMix64>,
    pub metrics: OriginMetrics,
    /// The IRD, built once the base URL is known.
    pub ird: OnceLock<Built>,
}

/// The IRD as served, and what the POST resources accept.
#[derive(Debug)]
pub(super) struct Built {
    bytes: Bytes,
    caps: BTreeMap<String, ResourceCaps>,
}

impl State {
    pub fn current(&self) -> Arc<Version> {
        // A poisoned lock only means a panic elsewhere mid-swap of an Arc: the value is intact.
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A resource-id or cost-type name with the configured prefix (the network map's id is
    /// prefixed once, when the data is loaded).
    fn id(&self, name: &str) -> String {
        format!("{}{}", self.options.id_prefix, name)
    }
}

/// What a path names.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    Directory,
    NetworkMap,
    CostMap { metric: String, ordinal: bool },
    Post(PostKind),
    Metrics,
    Bump,
    Unknown,
}

fn route(state: &State, path: &str) -> Route {
    match path {
        "/directory" => Route::Directory,
        "/networkmap" => Route::NetworkMap,
        "/networkmap/filtered" => Route::Post(PostKind::FilteredNetworkMap),
        "/costmap/filtered" => Route::Post(PostKind::FilteredCostMap),
        "/endpointprop/lookup" => Route::Post(PostKind::EndpointProp),
        "/endpointcost/lookup" => Route::Post(PostKind::EndpointCost),
        "/metrics" => Route::Metrics,
        "/bump" => Route::Bump,
        _ => {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                ["costmap", metric, mode @ ("numerical" | "ordinal")]
                    if state.dataset.metrics.contains_key(*metric) =>
                {
                    Route::CostMap { metric: (*metric).to_string(), ordinal: *mode == "ordinal" }
                }
                _ => Route::Unknown,
            }
        }
    }
}

impl Route {
    /// The resource-id counted for this route; `None` for the routes that are not counted.
    fn resource(&self, state: &State) -> Option<String> {
        Some(match self {
            Route::Directory => "directory".into(),
            Route::NetworkMap => state.dataset.network_map_id.clone(),
            Route::CostMap { metric, ordinal } => state.id(&cost_map_id(metric, *ordinal)),
            Route::Post(kind) => state.id(post_id(*kind)),
            Route::Unknown => "unknown".into(),
            Route::Metrics | Route::Bump => return None,
        })
    }

    /// The media type of a successful answer.
    fn media_type(&self) -> &'static str {
        match self {
            Route::Directory => media::DIRECTORY,
            Route::NetworkMap | Route::Post(PostKind::FilteredNetworkMap) => media::NETWORK_MAP,
            Route::CostMap { .. } | Route::Post(PostKind::FilteredCostMap) => media::COST_MAP,
            Route::Post(PostKind::EndpointProp) => media::ENDPOINT_PROP,
            Route::Post(PostKind::EndpointCost) => media::ENDPOINT_COST,
            Route::Metrics | Route::Bump | Route::Unknown => "application/json",
        }
    }
}

fn cost_map_id(metric: &str, ordinal: bool) -> String {
    format!("costmap-{metric}-{}", if ordinal { "ordinal" } else { "numerical" })
}

fn cost_type_name(metric: &str, ordinal: bool) -> String {
    format!("{}-{metric}", if ordinal { "ord" } else { "num" })
}

fn post_id(kind: PostKind) -> &'static str {
    match kind {
        PostKind::FilteredNetworkMap => "filtered-network-map",
        PostKind::FilteredCostMap => "filtered-cost-map",
        PostKind::EndpointProp => "endpoint-property",
        PostKind::EndpointCost => "endpoint-cost",
    }
}

fn accepts_of(kind: PostKind) -> &'static str {
    match kind {
        PostKind::FilteredNetworkMap => media::NETWORK_MAP_FILTER,
        PostKind::FilteredCostMap => media::COST_MAP_FILTER,
        PostKind::EndpointProp => media::ENDPOINT_PROP_PARAMS,
        PostKind::EndpointCost => media::ENDPOINT_COST_PARAMS,
    }
}

/// The root IRD with absolute URIs under `base`.
pub(super) fn build_ird(state: &State, base: &str) -> Built {
    let nm = state.dataset.network_map_id.clone();
    let mut cost_types = BTreeMap::new();
    let mut resources = BTreeMap::new();
    let entry = |path: &str, media_type: &str| IrdEntry {
        uri: format!("{base}{path}"),
        media_type: media_type.into(),
        accepts: None,
        capabilities: None,
        uses: None,
        extra: Default::default(),
    };
    resources.insert(nm.clone(), entry("/networkmap", media::NETWORK_MAP));
    let mut all_names = Vec::new();
    for metric in state.dataset.metrics.keys() {
        for ordinal in [false, true] {
            let name = state.id(&cost_type_name(metric, ordinal));
            cost_types
                .insert(name.clone(), CostType::new(metric, if ordinal { "ordinal" } else { "numerical" }));
            let mode = if ordinal { "ordinal" } else { "numerical" };
            let mut e = entry(&format!("/costmap/{metric}/{mode}"), media::COST_MAP);
            e.capabilities = Some(caps(json!({ "cost-type-names": [name.clone()] })));
            e.uses = Some(vec![nm.clone()]);
            resources.insert(state.id(&cost_map_id(metric, ordinal)), e);
            all_names.push(name);
        }
    }
    let mut post = |kind: PostKind, path: &str, media_type: &str, capabilities: Option<Value>, uses: bool| {
        let mut e = entry(path, media_type);
        e.accepts = Some(accepts_of(kind).into());
        e.capabilities = capabilities.map(caps);
        e.uses = uses.then(|| vec![nm.clone()]);
        resources.insert(state.id(post_id(kind)), e);
    };
    post(PostKind::FilteredNetworkMap, "/networkmap/filtered", media::NETWORK_MAP, None, true);
    let cost_caps = json!({ "cost-type-names": all_names, "cost-constraints": true });
    post(PostKind::FilteredCostMap, "/costmap/filtered", media::COST_MAP, Some(cost_caps.clone()), true);
    let mut props = vec![format!("{nm}.pid")];
    props.extend(state.dataset.properties.keys().cloned());
    post(
        PostKind::EndpointProp,
        "/endpointprop/lookup",
        media::ENDPOINT_PROP,
        Some(json!({ "prop-types": props })),
        false,
    );
    post(PostKind::EndpointCost, "/endpointcost/lookup", media::ENDPOINT_COST, Some(cost_caps), false);
    for (i, url) in state.options.delegate.iter().enumerate() {
        let id =
            if i == 0 { "delegated-directory".to_string() } else { format!("delegated-directory-{}", i + 1) };
        let mut e = entry("", media::DIRECTORY);
        e.uri = url.clone();
        resources.insert(state.id(&id), e);
    }
    let ird = Ird {
        meta: IrdMeta {
            cost_types: Some(cost_types.clone()),
            default_network_map: Some(nm),
            extra: Default::default(),
        },
        resources,
        extra: Default::default(),
    };
    let caps = ird
        .resources
        .iter()
        .filter(|(_, e)| e.accepts.is_some())
        .map(|(id, e)| (id.clone(), ResourceCaps::from_entry(e, &cost_types)))
        .collect();
    Built { bytes: Bytes::from(serde_json::to_vec(&ird).unwrap_or_default()), caps }
}

fn caps(v: Value) -> crate::alto::types::Capabilities {
    serde_json::from_value(v).unwrap_or_default()
}

/// Publishes the next version (built off the async threads: a big map takes a while).
pub(super) async fn bump(state: &Arc<State>) -> Result<VersionTag, DataError> {
    let _guard = state.bump_lock.lock().await;
    let next = state.current().number + 1;
    let st = state.clone();
    let version = tokio::task::spawn_blocking(move || st.dataset.version(next))
        .await
        .map_err(|e| DataError::Invalid(format!("building version {next}: {e}")))??;
    let vtag = version.vtag.clone();
    *state.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(version);
    tracing::info!(version = next, tag = %vtag.tag, "published a new map version");
    Ok(vtag)
}

/// The fault drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    Unavailable,
    Malformed,
    Drop,
    Hang,
}

fn draw_fault(state: &State) -> Fault {
    let f = &state.options.faults;
    if f.http_5xx + f.malformed + f.drop + f.hang <= 0.0 {
        return Fault::None;
    }
    let x = state.fault_rng.lock().unwrap_or_else(|e| e.into_inner()).unit();
    let mut edge = 0.0;
    for (rate, fault) in [
        (f.http_5xx, Fault::Unavailable),
        (f.malformed, Fault::Malformed),
        (f.drop, Fault::Drop),
        (f.hang, Fault::Hang),
    ] {
        edge += rate;
        if x < edge {
            return fault;
        }
    }
    Fault::None
}

/// Answers one request.
pub(super) async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, DropConnection> {
    let route = route(&state, req.uri().path());
    match route {
        Route::Metrics => return Ok(metrics_response(&state)),
        Route::Bump => {
            return Ok(match bump(&state).await {
                Ok(vtag) => {
                    h::ok("application/json", Bytes::from(json!({ "network-map": vtag }).to_string()))
                }
                Err(e) => {
                    tracing::error!(error = %e, "bump failed");
                    h::refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("bump failed: {e}"))
                }
            })
        }
        _ => {}
    }
    if let Some(resource) = route.resource(&state) {
        state.metrics.served(&resource);
    }
    if !state.options.delay.is_zero() {
        tokio::time::sleep(state.options.delay).await;
    }
    let fault = draw_fault(&state);
    match fault {
        Fault::Unavailable => {
            let mut resp = h::refuse(StatusCode::SERVICE_UNAVAILABLE, "injected fault: service unavailable");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(resp);
        }
        Fault::Drop => return Err(DropConnection),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Err(DropConnection);
        }
        Fault::None | Fault::Malformed => {}
    }
    let mut resp = answer(&state, &route, req, peer).await;
    if fault == Fault::Malformed && resp.status() == StatusCode::OK {
        let body =
            http_body_util::BodyExt::collect(resp.body_mut()).await.map(|c| c.to_bytes()).unwrap_or_default();
        *resp.body_mut() = Body::new(body.slice(..body.len() / 2));
    }
    if let Some(age) = state.options.max_age {
        if resp.status() == StatusCode::OK {
            if let Ok(v) = HeaderValue::from_str(&format!("max-age={age}")) {
                resp.headers_mut().insert(header::CACHE_CONTROL, v);
            }
        }
    }
    Ok(resp)
}

async fn answer(state: &State, route: &Route, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    if *route == Route::Unknown {
        return h::refuse(StatusCode::NOT_FOUND, format!("no resource at {}", req.uri().path()));
    }
    let post = matches!(route, Route::Post(_));
    let method_ok =
        if post { req.method() == Method::POST } else { matches!(*req.method(), Method::GET | Method::HEAD) };
    if !method_ok {
        let mut resp =
            h::refuse(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed here", req.method()));
        let allow = if post { "POST" } else { "GET, HEAD" };
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        return resp;
    }
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
    if !media::accepts(accept, route.media_type()) {
        return h::refuse(
            StatusCode::NOT_ACCEPTABLE,
            format!("this resource answers {}", route.media_type()),
        );
    }
    let version = state.current();
    match route {
        Route::Directory => {
            h::ok(media::DIRECTORY, state.ird.get().map(|b| b.bytes.clone()).unwrap_or_default())
        }
        Route::NetworkMap => h::ok(media::NETWORK_MAP, version.network_map_bytes.clone()),
        Route::CostMap { metric, ordinal } => match version.cost_maps.get(metric) {
            Some(m) => h::ok(
                media::COST_MAP,
                if *ordinal { m.ordinal_bytes.clone() } else { m.numerical_bytes.clone() },
            ),
            None => h::refuse(StatusCode::NOT_FOUND, "no such cost map"),
        },
        Route::Post(kind) => {
            let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            if !media::content_type_is(content_type, accepts_of(*kind)) {
                return h::refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("expected Content-Type {}", accepts_of(*kind)),
                );
            }
            let body = match h::read_body(req, state.options.max_body).await {
                Ok(b) => b,
                Err(e) => return h::body_error_response(&e),
            };
            let caps = state
                .ird
                .get()
                .and_then(|b| b.caps.get(&state.id(post_id(*kind))))
                .cloned()
                .unwrap_or_default();
            match validate::validate(*kind, &caps, &body).and_then(|r| compute_post(state, &version, r, peer))
            {
                Ok(bytes) => h::ok(route.media_type(), bytes),
                Err(e) => h::alto_error(StatusCode::BAD_REQUEST, &e),
            }
        }
        Route::Metrics | Route::Bump | Route::Unknown => {
            h::refuse(StatusCode::NOT_FOUND, "not an ALTO resource")
        }
    }
}

fn compute_post(
    state: &State,
    version: &Version,
    req: AltoRequest,
    peer: SocketAddr,
) -> Result<Bytes, AltoError> {
    let encode = |v: Result<Vec<u8>, serde_json::Error>| {
        v.map(Bytes::from).map_err(|e| AltoError::syntax(e.to_string()))
    };
    match req {
        AltoRequest::FilteredNetworkMap(r) => {
            encode(serde_json::to_vec(&compute::filter_network_map(&version.network_map.response, &r)))
        }
        AltoRequest::FilteredCostMap(r) => {
            let cost_type = single_cost_type(r.cost_type.as_ref())?;
            let constraints = parse_constraints(r.constraints.as_deref());
            let maps = version.cost_maps.get(&cost_type.cost_metric).ok_or_else(|| {
                AltoError::invalid_value("cost-type/cost-metric", &Value::from(cost_type.cost_metric.clone()))
            })?;
            encode(serde_json::to_vec(&compute::filter_cost_map(
                &maps.numerical,
                cost_type,
                &constraints,
                r.pids.as_ref(),
            )))
        }
        AltoRequest::EndpointProp(r) => {
            let endpoints = compute::endpoints(&r.endpoints);
            let maps: [&NetworkMapView; 1] = [&version.network_map];
            let resp = compute::endpoint_properties(&r.properties, &endpoints, &maps, |prop, addr| {
                version.properties.get(prop).and_then(|p| p.lookup(addr.0))
            });
            encode(serde_json::to_vec(&resp))
        }
        AltoRequest::EndpointCost(r) => {
            let cost_type = single_cost_type(r.cost_type.as_ref())?;
            let constraints = parse_constraints(r.constraints.as_deref());
            let client = TypedAddr::from_peer(peer.ip()).to_string();
            let implicit = |l: &Option<Vec<String>>| match l {
                Some(l) if !l.is_empty() => l.clone(),
                _ => vec![client.clone()],
            };
            let srcs = compute::endpoints(&implicit(&r.endpoints.srcs));
            let dsts = compute::endpoints(&implicit(&r.endpoints.dsts));
            let pairs = srcs.len() as u64 * dsts.len() as u64;
            if pairs > state.options.max_ecs_pairs {
                return Err(AltoError::invalid_value(
                    "endpoints",
                    &Value::from(format!(
                        "{pairs} pairs; this server computes at most {}",
                        state.options.max_ecs_pairs
                    )),
                ));
            }
            let maps = version.cost_maps.get(&cost_type.cost_metric).ok_or_else(|| {
                AltoError::invalid_value("cost-type/cost-metric", &Value::from(cost_type.cost_metric.clone()))
            })?;
            let nm = &version.network_map;
            let costs = &maps.numerical.cost_map;
            let resp = compute::endpoint_cost_with(&srcs, &dsts, cost_type, &constraints, |s, d| {
                let v = compute::pid_pair_cost(nm, costs, s, d)?;
                Some(if state.options.ecs_deviate { deviate(&v, s, d) } else { v })
            });
            state.metrics.ecs_pairs(&state.id(post_id(PostKind::EndpointCost)), pairs);
            encode(serde_json::to_vec(&resp))
        }
    }
}

/// An endpoint-level cost that differs from the PID-level one by 1 to 3, as finer data would.
fn deviate(v: &Value, s: TypedAddr, d: TypedAddr) -> Value {
    let delta =
        1 + mix(super::data::hash_str(&s.to_string()) ^ super::data::hash_str(&d.to_string()).rotate_left(7))
            % 3;
    match (v.as_u64(), v.as_f64()) {
        (Some(n), _) => Value::from(n + delta),
        (None, Some(x)) => serde_json::Number::from_f64(x + delta as f64).map_or(v.clone(), Value::Number),
        _ => v.clone(),
    }
}

/// The one cost type of a request; multi-cost requests are not offered by this origin.
fn single_cost_type(t: Option<&CostType>) -> Result<&CostType, AltoError> {
    t.ok_or_else(|| AltoError::missing("cost-type"))
}

fn parse_constraints(list: Option<&[String]>) -> Vec<Constraint> {
    // Validation has already refused anything that does not parse.
    list.unwrap_or_default().iter().filter_map(|s| Constraint::parse(s)).collect()
}

fn metrics_response(state: &State) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(state.metrics.encode())));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}
