//! Endpoint-cost answering above the exact cache (DESIGN §5, the load-reduction ladder):
//! `ecs.mode = "synthesize"` (endpoint costs computed from the cached network map and the
//! numerical cost map of the same metric: longest-prefix match, then lookup; ordinal by local
//! dense ranking) and `ecs.mode = "auto"` (forward and compare with that local computation until
//! `ecs.auto_warmup` origin answers have matched, then answer locally while a sample
//! (`ecs.auto_sample`) is still forwarded and compared; the first mismatch switches the resource
//! to `aggregate` until `POST /ecs/reset`).
//!
//! `ecs.mode = "aggregate"` (and `auto` after a mismatch) answers numerical requests from the
//! pair cache ([`pairs`]), asking the origin only for missing pairs; ordinal ones by ranking
//! numerical pairs only with `ecs.rank_locally = true`.
//!
//! It owns the per-resource `auto` state and the decision whether an endpoint-cost request may
//! be answered above the exact cache. It must not: answer locally an ordinal request with
//! constraints, a request with extension members (multi-cost, calendared, …) or constraints it
//! cannot evaluate; serve a local answer computed from maps that are not of the current
//! generation, or from the maps of another server than the endpoint-cost resource's; or change
//! anything in `forward` mode.

mod pairs;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};

use super::fetch::{self, Role};
use super::handler::{finish_fetch, rekey, Prepared};
use super::local;
use super::metrics::Outcome;
use super::respond::{self, status, Wants};
use super::Shield;
use crate::alto::compute;
use crate::alto::constraint::Constraint;
use crate::alto::types::{CostType, EndpointCostParams};
use crate::alto::validate::Request;
use crate::alto::{media, TypedAddr};
use crate::cache::{Entry, Key};
use crate::config::EcsMode;
use crate::http::Body;
use crate::ird::{Directory, Resource};

/// The most pairs one request is computed locally for; larger ones go to the origin (the
/// reference origin refuses more than this by default, and the shield must answer as it does).
const MAX_LOCAL_PAIRS: u64 = 1_000_000;

/// Where `auto` stands for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoState {
    /// Forwarding and comparing; `matched` origin answers have equalled the local computation.
    Warmup { matched: u64 },
    /// Answering locally, a sample still forwarded and compared.
    Trusted,
    /// An origin answer differed: `aggregate` until an operator resets the resource.
    Mismatched,
}

impl AutoState {
    /// The name shown in `/cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            AutoState::Warmup { .. } => "warmup",
            AutoState::Trusted => "local",
            AutoState::Mismatched => "aggregate",
        }
    }
}

/// The shield's endpoint-cost state: `auto` per resource, and the sampling dice.
#[derive(Debug)]
pub struct EcsState {
    auto: Mutex<HashMap<String, AutoState>>,
    pairs: pairs::PairCache,
    rng: Mutex<crate::rng::SplitMix64>,
}

impl Default for EcsState {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        EcsState {
            auto: Mutex::new(HashMap::new()),
            pairs: pairs::PairCache::default(),
            rng: Mutex::new(crate::rng::SplitMix64::new(seed)),
        }
    }
}

impl Shield {
    /// Returns a resource to `auto` verification (warm-up from zero). `false` for an ID the
    /// served IRD does not have.
    pub fn ecs_reset(&self, resource: &str) -> bool {
        if !self.directory().is_some_and(|d| d.resources.contains_key(resource)) {
            return false;
        }
        self.ecs_states().remove(resource);
        true
    }

    /// Drops the cached endpoint-cost pairs of `resource` (all when `None`).
    pub fn ecs_purge(&self, resource: Option<&str>) {
        self.ecs.pairs.purge(resource);
    }

    /// The `auto` state of every endpoint-cost resource of the served IRD, for `/cache`.
    pub fn ecs_view(&self) -> serde_json::Value {
        let Some(dir) = self.directory() else { return serde_json::json!({}) };
        let states = self.ecs_states();
        let mut out = BTreeMap::new();
        for r in dir.resources.values() {
            if r.post_kind != Some(crate::alto::validate::PostKind::EndpointCost) {
                continue;
            }
            let view = match self.config.ecs.mode {
                EcsMode::Auto => {
                    let s = states.get(&r.id).copied().unwrap_or_else(|| self.initial_auto_state());
                    let matched = match s {
                        AutoState::Warmup { matched } => matched,
                        AutoState::Trusted => self.config.ecs.auto_warmup,
                        AutoState::Mismatched => 0,
                    };
                    serde_json::json!({ "mode": "auto", "state": s.as_str(), "matched": matched })
                }
                EcsMode::Aggregate => serde_json::json!({ "mode": "aggregate", "state": "aggregate" }),
                mode => serde_json::json!({ "mode": mode.as_str(), "state": mode.as_str() }),
            };
            let mut view = view;
            view["pairs"] = serde_json::json!(self.ecs.pairs.count(&r.id));
            out.insert(r.id.clone(), view);
        }
        serde_json::to_value(out).unwrap_or_default()
    }

    fn ecs_states(&self) -> std::sync::MutexGuard<'_, HashMap<String, AutoState>> {
        self.ecs.auto.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn initial_auto_state(&self) -> AutoState {
        if self.config.ecs.auto_warmup == 0 {
            AutoState::Trusted
        } else {
            AutoState::Warmup { matched: 0 }
        }
    }

    fn auto_state(&self, resource: &str) -> AutoState {
        let initial = self.initial_auto_state();
        *self.ecs_states().entry(resource.to_string()).or_insert(initial)
    }

    /// One counted comparison of an origin answer with the local computation.
    fn auto_compared(&self, resource: &str, matched: bool) {
        let initial = self.initial_auto_state();
        let warmup = self.config.ecs.auto_warmup;
        let mut states = self.ecs_states();
        let state = states.entry(resource.to_string()).or_insert(initial);
        if !matched {
            self.metrics.ecs_mismatch(resource);
            if *state != AutoState::Mismatched {
                tracing::warn!(
                    resource,
                    "endpoint costs from the origin differ from those computed from its maps; \
                     aggregating this resource until POST /ecs/reset"
                );
            }
            *state = AutoState::Mismatched;
            return;
        }
        if let AutoState::Warmup { matched } = *state {
            let matched = matched + 1;
            *state = if matched >= warmup { AutoState::Trusted } else { AutoState::Warmup { matched } };
            if *state == AutoState::Trusted {
                tracing::info!(resource, matched, "endpoint costs verified; answering locally");
            }
        }
    }

    fn sampled(&self) -> bool {
        let p = self.config.ecs.auto_sample;
        p > 0.0 && self.ecs.rng.lock().unwrap_or_else(|e| e.into_inner()).unit() < p
    }
}

/// A request that may be computed locally: its cost type, constraints and endpoints.
struct Plan {
    cost_type: CostType,
    constraints: Vec<Constraint>,
    srcs: Vec<(TypedAddr, String)>,
    dsts: Vec<(TypedAddr, String)>,
}

impl Plan {
    fn pairs(&self) -> u64 {
        self.srcs.len() as u64 * self.dsts.len() as u64
    }
}

/// What the rules allow to compute locally (DESIGN §5): one plain cost type, numerical
/// constraints without an index, ordinal without constraints, no extension members.
fn plan(r: &EndpointCostParams) -> Option<Plan> {
    if !r.extra.is_empty() || !r.endpoints.extra.is_empty() {
        return None;
    }
    let cost_type = r.cost_type.as_ref().filter(|t| t.extra.is_empty())?;
    let texts = r.constraints.as_deref().unwrap_or_default();
    let constraints: Vec<Constraint> = texts.iter().filter_map(|c| Constraint::parse(c)).collect();
    if constraints.len() != texts.len() {
        return None;
    }
    let computable = match cost_type.cost_mode.as_str() {
        "numerical" => constraints.iter().all(|c| c.index.is_none()),
        // Constraints on ranks depend on the whole answer: only the origin answers those.
        "ordinal" => constraints.is_empty(),
        _ => false,
    };
    if !computable {
        return None;
    }
    let plan = Plan {
        cost_type: cost_type.clone(),
        constraints,
        srcs: compute::endpoints(r.endpoints.srcs.as_deref().unwrap_or_default()),
        dsts: compute::endpoints(r.endpoints.dsts.as_deref().unwrap_or_default()),
    };
    (!plan.srcs.is_empty() && !plan.dsts.is_empty() && plan.pairs() <= MAX_LOCAL_PAIRS).then_some(plan)
}

/// A locally computed answer (keyed by canonical spellings), with the generation it belongs to.
struct Computed {
    entry: Arc<Entry>,
    generation: Arc<str>,
    value: serde_json::Value,
}

/// Computes the answer from the current generation's network map and numerical cost map;
/// `None` when those are not at hand (then the request is forwarded).
async fn compute_local(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    plan: &Plan,
) -> Option<Computed> {
    // The maps describe the server that serves the default network map: an endpoint-cost
    // resource of another server (a delegated IRD) is never computed from them.
    let nm_res = dir.resources.get(&dir.default_network_map)?;
    if nm_res.origin_uri.authority() != res.origin_uri.authority() {
        return None;
    }
    let found = match local::numerical_cost_map(shield, dir, &plan.cost_type.cost_metric).await {
        Ok(found) => found,
        Err(e) => {
            tracing::debug!(resource = %res.id, error = %e, "no numerical cost map; forwarding");
            None
        }
    };
    let (gen, source, numerical) = found?;
    // The network map must itself still be servable.
    let nm = gen.maps.get(dir.default_network_map.as_str())?;
    if nm.staleness(Instant::now()) > shield.config.cache.stale_while_revalidate {
        return None;
    }
    let answer = compute::endpoint_cost(
        &gen.view,
        &numerical.cost_map,
        &plan.srcs,
        &plan.dsts,
        &plan.cost_type,
        &plan.constraints,
    );
    let value = serde_json::to_value(&answer).ok()?;
    let body = Bytes::from(serde_json::to_vec(&value).ok()?);
    let media_type =
        HeaderValue::from_str(&res.media_type).unwrap_or(HeaderValue::from_static(media::ENDPOINT_COST));
    let now = Instant::now();
    // As fresh as the maps it was computed from.
    let ttl = source
        .ttl
        .saturating_sub(source.age(now))
        .min(nm.ttl.saturating_sub(nm.age(now)))
        .max(Duration::from_secs(1));
    let entry = Entry::new(Arc::from(res.id.as_str()), media_type, body, ttl, Some(gen.tag.clone()));
    Some(Computed { entry: Arc::new(entry), generation: gen.tag.clone(), value })
}

/// Answers an endpoint-cost request above the exact cache when `ecs.mode` allows it; `None`
/// means "take the regular path" (exact cache, coalescing, forwarding).
pub(super) async fn answer(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    prepared: &Prepared,
    wants: &Wants,
) -> Option<Response<Body>> {
    let mode = shield.config.ecs.mode;
    if mode == EcsMode::Forward {
        return None;
    }
    let Request::EndpointCost(r) = &prepared.request else { return None };
    // A fresh exact-cache hit is the cheapest correct answer in every mode: leave it to the
    // regular path before doing any per-pair work.
    if exact_hit(shield, res, prepared) {
        return None;
    }
    let plan = plan(r)?;
    if mode == EcsMode::Aggregate {
        return aggregate(shield, dir, res, prepared, wants, &plan).await;
    }
    if mode == EcsMode::Synthesize {
        let computed = compute_local(shield, dir, res, &plan).await?;
        return Some(serve_local(shield, res, prepared, wants, &plan, &computed));
    }
    match shield.auto_state(&res.id) {
        AutoState::Mismatched => aggregate(shield, dir, res, prepared, wants, &plan).await,
        AutoState::Trusted if !shield.sampled() => {
            let computed = compute_local(shield, dir, res, &plan).await?;
            Some(serve_local(shield, res, prepared, wants, &plan, &computed))
        }
        _ => verify(shield, dir, res, prepared, wants, &plan).await,
    }
}

/// Whether the exact cache holds a fresh answer to this very request for the current generation.
fn exact_hit(shield: &Shield, res: &Resource, prepared: &Prepared) -> bool {
    let Some(gen) = shield.generation() else { return false };
    let key = Key::Post(Arc::from(res.id.as_str()), gen.tag.clone(), prepared.canonical.clone());
    shield.store.get(&key).is_some_and(|e| e.is_fresh(Instant::now()))
}

fn serve_local(
    shield: &Shield,
    res: &Resource,
    prepared: &Prepared,
    wants: &Wants,
    plan: &Plan,
    computed: &Computed,
) -> Response<Body> {
    shield.metrics.request(&res.id, Outcome::local);
    shield.metrics.ecs_pairs(&res.id, "local", plan.pairs());
    let entry = rekey(&computed.entry, &prepared.spellings);
    respond::entry(&entry, wants, status::LOCAL, &shield.via_header)
}

/// Forwards the request (coalesced, as the regular path does) and, when this request led the
/// origin fetch, compares the origin's answer with the local computation. Only the leader
/// computes, after its fetch: a herd waiting on the same fetch does no per-request work. The
/// client gets the origin's answer.
async fn verify(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    prepared: &Prepared,
    wants: &Wants,
    plan: &Plan,
) -> Option<Response<Body>> {
    let gen = shield.generation()?;
    let key = Key::Post(Arc::from(res.id.as_str()), gen.tag.clone(), prepared.canonical.clone());
    let cached = shield.store.get(&key);
    let swr = shield.config.cache.stale_while_revalidate;
    if cached.as_ref().is_some_and(|e| e.staleness(Instant::now()) <= swr) {
        // An exact-cache hit (fresh, or stale and refreshed in the background): the regular
        // path serves it; nothing new to compare.
        return None;
    }
    let result = fetch::post(shield, dir, res, prepared.canonical.clone()).await;
    if let Ok((reply, Role::Miss)) = &result {
        if reply.status == StatusCode::OK {
            shield.metrics.ecs_pairs(&res.id, "origin", plan.pairs());
            compare(shield, dir, res, plan, &gen.tag, &reply.body).await;
        }
    }
    let result = result.map(|(mut reply, role)| {
        if let Some(e) = &reply.entry {
            reply.entry = Some(rekey(e, &prepared.spellings));
        }
        (reply, role)
    });
    let stale = cached.map(|e| rekey(&e, &prepared.spellings));
    Some(finish_fetch(shield, res, result, stale.as_deref(), wants))
}

/// Compares an origin answer, fetched while `generation` was current, with the local
/// computation, and counts the comparison only if the network-map version was the same before
/// and after it. A mismatch may only mean that the origin has published a version the shield
/// has not seen yet: the origin is asked which version it serves first, and the mismatch counts
/// only if that is still the generation the comparison used.
async fn compare(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    plan: &Plan,
    generation: &Arc<str>,
    origin_body: &Bytes,
) {
    let Some(computed) = compute_local(shield, dir, res, plan).await else { return };
    if computed.generation != *generation {
        return;
    }
    let origin: Option<serde_json::Value> = serde_json::from_slice(origin_body).ok();
    if origin.as_ref() == Some(&computed.value) {
        shield.auto_compared(&res.id, true);
        return;
    }
    match pairs::origin_version(shield, dir).await {
        None => {
            tracing::debug!(resource = %res.id, "cannot tell the origin's network-map version; not counted");
            return;
        }
        Some(tag) if *tag != **generation => {
            tracing::debug!(resource = %res.id, "the origin's network map changed under a comparison; not counted");
            return;
        }
        Some(_) => {}
    }
    tracing::debug!(resource = %res.id, "origin endpoint costs differ from the local computation");
    shield.auto_compared(&res.id, false);
}

/// `aggregate`: numerical costs from the pair cache and the origin (missing pairs only), then
/// ranked (ordinal, only with `ecs.rank_locally`) and filtered by the constraints per pair.
/// `None` (forward as is) for ordinal without `rank_locally`, or when the pairs cannot be had.
async fn aggregate(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    prepared: &Prepared,
    wants: &Wants,
    plan: &Plan,
) -> Option<Response<Body>> {
    let metric = plan.cost_type.cost_metric.as_str();
    if plan.cost_type.is_ordinal() {
        let numerical = CostType::new(metric, "numerical");
        let offered = res.caps.cost_types.iter().any(|t| t.same_type(&numerical));
        if !shield.config.ecs.rank_locally || !offered {
            return None;
        }
    }
    let srcs: Vec<TypedAddr> = plan.srcs.iter().map(|(a, _)| *a).collect();
    let dsts: Vec<TypedAddr> = plan.dsts.iter().map(|(a, _)| *a).collect();
    let gen = shield.generation()?;
    let got = pairs::gather(shield, dir, res, metric, &srcs, &dsts).await?;
    let answer =
        compute::endpoint_cost_with(&plan.srcs, &plan.dsts, &plan.cost_type, &plan.constraints, |s, d| {
            got.costs.get(&(s, d)).cloned().flatten()
        });
    let body = Bytes::from(serde_json::to_vec(&answer).ok()?);
    let media_type =
        HeaderValue::from_str(&res.media_type).unwrap_or(HeaderValue::from_static(media::ENDPOINT_COST));
    let entry = Entry::new(
        Arc::from(res.id.as_str()),
        media_type,
        body,
        shield.config.cache.default_ttl,
        Some(gen.tag.clone()),
    );
    shield.metrics.ecs_pairs(&res.id, "cache", got.from_cache);
    shield.metrics.ecs_pairs(&res.id, "origin", got.from_origin);
    let (outcome, cache_status) =
        if got.from_origin > 0 { (Outcome::aggregated, AGGREGATED) } else { (Outcome::local, status::LOCAL) };
    shield.metrics.request(&res.id, outcome);
    let entry = rekey(&Arc::new(entry), &prepared.spellings);
    Some(respond::entry(&entry, wants, cache_status, &shield.via_header))
}

/// `Cache-Status` of an answer that needed origin work for part of its pairs.
const AGGREGATED: &str = "altoshield; fwd=partial; detail=aggregated";
