//! The endpoint-cost pair cache (`ecs.mode = "aggregate"`, DESIGN §5): numerical costs per
//! (resource, metric, source, destination), addresses compared as addresses, valid for one
//! network-map generation and the origin answer's TTL. A request asks the origin only for the
//! pairs it lacks (as numerical requests without constraints, sources with the same missing
//! destinations together, so no pair nobody asked for is computed); pairs another request is
//! fetching are waited for, not fetched again; pairs the origin omits are remembered as absent.
//!
//! Misses of different requests for the same (resource, metric) leave together, group-commit
//! style: while `LANE_IN_FLIGHT` rounds of origin requests are under way, new misses queue and
//! go in the next round, merged only where srcs × dsts computes no pair nobody asked for, unless
//! `ecs.merge_waste` allows a bounded ratio. A miss on an idle lane leaves at once, or after
//! `ecs.merge_window` when one is configured. A merged request the origin refuses (4xx) is
//! retried per client, concurrently, so one bad request cannot fail the others. The pair cache is bounded by `cache.max_bytes` (reckoned at `PAIR_BYTES` a pair).
//!
//! Endpoint-cost answers name no version, and the origin may publish a new network map before
//! the shield sees it: pairs fetched then belong to a version the shield does not know, and
//! mixed with cached pairs they would make an answer no version of the origin gives. So after
//! each round of pair fetches one small request asks the origin which network-map version it
//! serves ([`origin_tag`]); a round's pairs are stored, and served beside other pairs, only if
//! that is still the generation they were asked for. A request whose pairs all come from one
//! origin answer is one version by itself and is answered without waiting for that check.
//!
//! It owns the pair tables, their in-flight claims and the merge queues. It must not: cache
//! anything but numerical costs; keep a pair across a generation change; serve a pair past its
//! TTL; leave a claim behind when the claiming request is dropped (a guard releases it and wakes
//! the waiters); merge requests of different generations; store or mix pairs whose version the
//! origin has not confirmed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;
use tokio::sync::watch;

use super::super::fetch;
use super::super::Shield;
use crate::alto::types::{CostType, EndpointCostParams, EndpointCostResponse, EndpointFilter};
use crate::alto::validate::Request;
use crate::alto::{canon, TypedAddr};
use crate::ird::{Directory, Resource};

/// Bytes a cached pair is reckoned to take: the pair cache holds at most `cache.max_bytes`
/// divided by this, over all tables, and is emptied when a new answer would exceed it.
const PAIR_BYTES: u64 = 256;
/// Pairs asked for in one origin request at most.
const MAX_PAIRS_PER_FETCH: usize = 10_000;

type Pair = (TypedAddr, TypedAddr);

/// One (resource, metric)'s pairs for one generation.
#[derive(Debug, Default)]
struct Table {
    generation: Arc<str>,
    /// A cost, or `None` for a pair the origin omitted; with its expiry.
    pairs: HashMap<Pair, (Option<Value>, Instant)>,
    /// Pairs being fetched, by the id of the flight fetching them.
    claimed: HashMap<Pair, u64>,
    flights: HashMap<u64, watch::Receiver<()>>,
}

/// Every pair table.
#[derive(Debug, Default)]
pub struct PairCache {
    tables: Mutex<HashMap<(String, String), Table>>,
    lanes: Mutex<HashMap<(String, String), Lane>>,
    next_flight: std::sync::atomic::AtomicU64,
}

impl PairCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Table>> {
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pairs cached for `resource`, absent ones included.
    pub fn count(&self, resource: &str) -> usize {
        self.lock().iter().filter(|((r, _), _)| r == resource).map(|(_, t)| t.pairs.len()).sum()
    }

    /// Drops every pair of `resource` (all when `None`).
    pub fn purge(&self, resource: Option<&str>) {
        self.lock().retain(|(r, _), _| resource.is_some_and(|id| id != r));
    }
}

/// The table of (resource, metric) for `generation`, emptied when the generation changed.
fn table<'a>(
    tables: &'a mut HashMap<(String, String), Table>,
    resource: &str,
    metric: &str,
    generation: &Arc<str>,
) -> &'a mut Table {
    let t = tables.entry((resource.to_string(), metric.to_string())).or_default();
    if t.generation != *generation {
        t.pairs.clear();
        t.generation = generation.clone();
    }
    t
}

/// Releases a flight's claims when dropped (also when the request is cancelled) and wakes the
/// requests waiting on it.
struct Claim {
    shield: Arc<Shield>,
    key: (String, String),
    id: u64,
    pairs: Vec<Pair>,
    done: Option<watch::Sender<()>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut tables = self.shield.ecs.pairs.lock();
        if let Some(t) = tables.get_mut(&self.key) {
            for p in &self.pairs {
                if t.claimed.get(p) == Some(&self.id) {
                    t.claimed.remove(p);
                }
            }
            t.flights.remove(&self.id);
        }
        drop(tables);
        // Dropping the sender wakes every request waiting on this flight.
        drop(self.done.take());
    }
}

/// How a request's pairs were obtained.
#[derive(Debug, Default)]
pub struct Gathered {
    /// Numerical cost (or absence) of every pair asked for.
    pub costs: HashMap<Pair, Option<Value>>,
    pub from_cache: u64,
    pub from_origin: u64,
}

/// The numerical costs of `metric` for `srcs` × `dsts`, from the pair cache, from flights under
/// way and from the origin for the rest. `None` when they cannot all be had (the request is then
/// forwarded as it is, so the client gets the origin's own answer or error).
pub async fn gather(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    metric: &str,
    srcs: &[TypedAddr],
    dsts: &[TypedAddr],
) -> Option<Gathered> {
    let key = (res.id.clone(), metric.to_string());
    let mut out = Gathered::default();
    for round in 0..3 {
        let generation = shield.generation()?.tag.clone();
        let now = Instant::now();
        let mut wait: Vec<watch::Receiver<()>> = Vec::new();
        let mut mine: Vec<Pair> = Vec::new();
        let id = shield.ecs.pairs.next_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = watch::channel(());
        {
            let mut tables = shield.ecs.pairs.lock();
            let t = table(&mut tables, &res.id, metric, &generation);
            let mut waiting_on = Vec::new();
            for s in srcs {
                for d in dsts {
                    let p = (*s, *d);
                    if out.costs.contains_key(&p) {
                        continue;
                    }
                    match t.pairs.get(&p) {
                        Some((v, expires)) if *expires > now => {
                            out.costs.insert(p, v.clone());
                            out.from_cache += 1;
                            continue;
                        }
                        _ => {}
                    }
                    match t.claimed.get(&p) {
                        Some(other) => {
                            if !waiting_on.contains(other) {
                                waiting_on.push(*other);
                                if let Some(r) = t.flights.get(other) {
                                    wait.push(r.clone());
                                }
                            }
                        }
                        None if round < 2 => {
                            t.claimed.insert(p, id);
                            mine.push(p);
                        }
                        None => return None,
                    }
                }
            }
            if !mine.is_empty() {
                t.flights.insert(id, rx);
            }
        }
        if mine.is_empty() && wait.is_empty() {
            return Some(out);
        }
        // Every pair of the request is missing and nobody else is fetching any: its answer can be
        // one origin answer, consistent by itself.
        let whole = out.costs.is_empty() && wait.is_empty() && mine.len() == srcs.len() * dsts.len();
        if !mine.is_empty() {
            let claim = Claim { shield: shield.clone(), key: key.clone(), id, pairs: mine, done: Some(tx) };
            let fetched = fetch_pairs(shield, dir, res, metric, &generation, claim, whole).await?;
            out.from_origin += fetched.len() as u64;
            out.costs.extend(fetched);
        }
        let timeout = shield.config.limits.coalesce_timeout;
        for mut r in wait {
            // Woken when the other flight's sender is dropped (done, failed or cancelled).
            let _ = tokio::time::timeout(timeout, r.changed()).await;
        }
    }
    None
}

/// Asks the origin for the claimed pairs (numerical, no constraints), sources with the same
/// missing destinations in one request. The claim is released once the pairs are stored (or
/// failed): by the round that fetched them when this request's answer may go before the version
/// check, else here, after the answers, which come after it. `None` on any failure.
async fn fetch_pairs(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    metric: &str,
    generation: &Arc<str>,
    claim: Claim,
    whole: bool,
) -> Option<HashMap<Pair, Option<Value>>> {
    // Per source its missing destinations; then sources with equal sets grouped.
    let mut by_src: BTreeMap<TypedAddr, Vec<TypedAddr>> = BTreeMap::new();
    for (s, d) in &claim.pairs {
        by_src.entry(*s).or_default().push(*d);
    }
    let mut groups: BTreeMap<Vec<TypedAddr>, Vec<TypedAddr>> = BTreeMap::new();
    for (s, ds) in by_src {
        groups.entry(ds).or_default().push(s);
    }
    // Bounded origin requests: the sources split when the product is large.
    let mut parts: Vec<(Vec<TypedAddr>, Vec<TypedAddr>)> = Vec::new();
    for (dsts, srcs) in groups {
        let per = (MAX_PAIRS_PER_FETCH / dsts.len().max(1)).max(1);
        parts.extend(srcs.chunks(per).map(|chunk| (chunk.to_vec(), dsts.clone())));
    }
    let mut claim = Some(claim);
    let one_answer = whole && parts.len() == 1;
    let mut waiting = Vec::new();
    for (srcs, dsts) in parts {
        let passed = if one_answer { claim.take() } else { None };
        waiting.push(submit(shield, dir, res, metric, generation, srcs, dsts, passed));
    }
    let mut out = HashMap::new();
    for rx in waiting {
        out.extend(rx.await.ok()??);
    }
    drop(claim);
    Some(out)
}

/// Rounds of origin pair requests allowed under way per (resource, metric); further misses
/// queue and leave together in the next round (group commit).
const LANE_IN_FLIGHT: usize = 8;

type Costs = HashMap<Pair, Option<Value>>;

/// One request's missing pairs (`srcs` × `dsts`), waiting for a round.
struct Job {
    generation: Arc<str>,
    /// When it was queued: the merge wait is measured from here to its round's start.
    queued: Instant,
    srcs: Vec<TypedAddr>,
    dsts: Vec<TypedAddr>,
    /// Set when these are all the request's pairs: it is answered from its origin answer at
    /// once, and the round releases the claim after the version check.
    claim: Option<Claim>,
    reply: Option<tokio::sync::oneshot::Sender<Option<Costs>>>,
}

impl Job {
    fn answer(&mut self, costs: Option<Costs>) {
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(costs);
        }
    }
}

/// The queue of one (resource, metric).
#[derive(Default)]
pub struct Lane {
    in_flight: usize,
    pending: Vec<Job>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("in_flight", &self.in_flight)
            .field("pending", &self.pending.len())
            .finish()
    }
}

type Answer = tokio::sync::oneshot::Receiver<Option<Costs>>;

/// Queues `srcs` × `dsts` for the origin. With a free slot, a driver task is started that sends
/// the queue in rounds until it is empty; otherwise the job waits for the running drivers.
#[allow(clippy::too_many_arguments)]
fn submit(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    metric: &str,
    generation: &Arc<str>,
    srcs: Vec<TypedAddr>,
    dsts: Vec<TypedAddr>,
    claim: Option<Claim>,
) -> Answer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let key = (res.id.clone(), metric.to_string());
    let job =
        Job { generation: generation.clone(), queued: Instant::now(), srcs, dsts, claim, reply: Some(tx) };
    let start = {
        let mut lanes = shield.ecs.pairs.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(key.clone()).or_default();
        lane.pending.push(job);
        let start = lane.in_flight < LANE_IN_FLIGHT;
        if start {
            lane.in_flight += 1;
        }
        start
    };
    if start {
        // A task of its own: the queue is served even if this client goes away.
        let (shield, dir, res, metric) = (shield.clone(), dir.clone(), res.clone(), metric.to_string());
        tokio::spawn(async move { drive(shield, dir, res, metric, key).await });
    }
    rx
}

/// Sends the lane's queue in rounds until it is empty. A driver started on an idle lane first
/// waits `ecs.merge_window` (if any) for other misses to join its first round.
async fn drive(
    shield: Arc<Shield>,
    dir: Arc<Directory>,
    res: Resource,
    metric: String,
    key: (String, String),
) {
    let window = shield.config.ecs.merge_window;
    if !window.is_zero() {
        // The timer rounds deadlines up to its next millisecond tick: asking for one tick less
        // brings the wait to about the window instead of up to a tick beyond it (measured with
        // a 2 ms window: 1.9–2.2 ms on average, `altoshield_ecs_merge_wait_seconds`).
        let tick = Duration::from_millis(1);
        tokio::time::sleep(if window > tick { window - tick } else { window }).await;
    }
    loop {
        let jobs = {
            let mut lanes = shield.ecs.pairs.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let Some(lane) = lanes.get_mut(&key) else { return };
            if lane.pending.is_empty() {
                lane.in_flight = lane.in_flight.saturating_sub(1);
                return;
            }
            std::mem::take(&mut lane.pending)
        };
        let now = Instant::now();
        for job in &jobs {
            shield.metrics.ecs_merge_wait(now.saturating_duration_since(job.queued).as_secs_f64());
        }
        // The round's origin requests leave together.
        let mut round = tokio::task::JoinSet::new();
        for batch in pack(jobs, shield.config.ecs.merge_waste) {
            let (shield, dir, res, metric) = (shield.clone(), dir.clone(), res.clone(), metric.clone());
            round.spawn(async move { run_batch(&shield, &dir, &res, &metric, batch).await });
        }
        let mut answered: Vec<Answered> = Vec::new();
        while let Some(done) = round.join_next().await {
            answered.extend(done.unwrap_or_default());
        }
        settle(&shield, &dir, &res, &metric, answered).await;
    }
}

/// One origin pair answer (`None`: failed) and the jobs it answers.
struct Answered {
    generation: Arc<str>,
    costs: Option<(Costs, Instant)>,
    jobs: Vec<Job>,
}

/// Ends a round: asks the origin which network-map version it serves now, stores the round's
/// pairs if that is still the generation they were asked for, and answers the jobs still
/// waiting (with nothing when the version moved on or could not be told: their requests are
/// then forwarded as they are). A newer version at the origin refreshes the network map.
async fn settle(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    metric: &str,
    answered: Vec<Answered>,
) {
    let tag =
        if answered.iter().any(|a| a.costs.is_some()) { origin_version(shield, dir).await } else { None };
    let current = shield.generation().map(|g| g.tag.clone());
    for mut a in answered {
        let confirmed = tag.as_deref() == Some(&*a.generation) && current.as_deref() == Some(&*a.generation);
        let costs = a.costs.take().filter(|_| confirmed);
        if let Some((costs, expires)) = &costs {
            store(shield, res, metric, &a.generation, costs, *expires);
        }
        for mut job in a.jobs {
            job.answer(costs.as_ref().map(|(all, _)| pick(all, &job.srcs, &job.dsts)));
        }
    }
}

/// [`origin_tag`], and when it is not the generation the shield serves, a network-map refresh
/// in the background (so the shield catches up now rather than at the map's expiry).
pub(in crate::shield) async fn origin_version(shield: &Arc<Shield>, dir: &Arc<Directory>) -> Option<String> {
    let tag = origin_tag(shield, dir).await?;
    if shield.generation().is_none_or(|g| *g.tag != *tag) {
        tracing::debug!(tag = %tag, "the origin serves another network-map version; refreshing it");
        let shield = shield.clone();
        tokio::spawn(async move {
            if let Err(e) = fetch::refresh_network_map(&shield).await {
                tracing::warn!(error = %e, "network map refresh failed; serving what is cached");
            }
        });
    }
    Some(tag)
}

/// The network-map version the origin serves now, asked with the smallest request that names
/// it: a one-address `pid` lookup (its `dependent-vtags` name the map's tag) when the IRD offers
/// one, else (or when the lookup's answer does not name it) the network map itself. `None` when
/// the origin cannot be reached or does not say.
async fn origin_tag(shield: &Arc<Shield>, dir: &Arc<Directory>) -> Option<String> {
    let map = dir.default_network_map.as_str();
    let pid = format!("{map}.pid");
    let lookup = dir.resources.values().find(|r| {
        r.post_kind == Some(crate::alto::validate::PostKind::EndpointProp) && r.caps.prop_types.contains(&pid)
    });
    if let Some(lookup) = lookup {
        let body = serde_json::json!({"properties": [pid], "endpoints": ["ipv4:0.0.0.0"]});
        let body = Bytes::from(serde_json::to_vec(&body).ok()?);
        let (reply, _) = fetch::origin_fetch(shield, dir, lookup, Some(body)).await.ok()?;
        if let Some(tag) = named_tag(&reply.body, map).filter(|_| reply.status == StatusCode::OK) {
            return Some(tag);
        }
        tracing::debug!(resource = %lookup.id, "the pid lookup does not name the network-map version; asking the map");
    }
    let res = dir.resources.get(map)?;
    fetch::refetch(shield, dir, res).await.ok()?;
    shield.generation().map(|g| g.tag.to_string())
}

/// The tag that an answer's `dependent-vtags` give network map `map`.
fn named_tag(body: &[u8], map: &str) -> Option<String> {
    let answer: Value = serde_json::from_slice(body).ok()?;
    let tags = answer.get("meta")?.get("dependent-vtags")?.as_array()?;
    let tag = tags.iter().find(|t| t.get("resource-id").and_then(Value::as_str) == Some(map))?;
    tag.get("tag").and_then(Value::as_str).map(str::to_string)
}

/// Groups jobs into origin requests: jobs join a batch only while the batch's srcs × dsts stays
/// within `waste` times the pairs its jobs need (1.0: only jobs that add no pair nobody asked
/// for, such as the same source) and within the per-request bound; same generation only.
fn pack(jobs: Vec<Job>, waste: f64) -> Vec<Vec<Job>> {
    struct Batch {
        srcs: std::collections::BTreeSet<TypedAddr>,
        dsts: std::collections::BTreeSet<TypedAddr>,
        needed: usize,
        jobs: Vec<Job>,
    }
    let mut batches: Vec<Batch> = Vec::new();
    for job in jobs {
        let needed = job.srcs.len() * job.dsts.len();
        let fits = |b: &Batch| {
            if b.jobs.first().is_some_and(|j| j.generation != job.generation) {
                return false;
            }
            let srcs = b.srcs.len() + job.srcs.iter().filter(|s| !b.srcs.contains(s)).count();
            let dsts = b.dsts.len() + job.dsts.iter().filter(|d| !b.dsts.contains(d)).count();
            let computed = srcs * dsts;
            computed <= MAX_PAIRS_PER_FETCH && computed as f64 <= waste * (b.needed + needed) as f64
        };
        match batches.iter_mut().find(|b| fits(b)) {
            Some(b) => {
                b.srcs.extend(job.srcs.iter().copied());
                b.dsts.extend(job.dsts.iter().copied());
                b.needed += needed;
                b.jobs.push(job);
            }
            None => batches.push(Batch {
                srcs: job.srcs.iter().copied().collect(),
                dsts: job.dsts.iter().copied().collect(),
                needed,
                jobs: vec![job],
            }),
        }
    }
    batches.into_iter().map(|b| b.jobs).collect()
}

/// One origin request for a batch. Jobs holding all of their request's pairs are answered at
/// once; the rest wait for the round's version check. A merged request the origin refuses is
/// retried per job, all at once, so one bad request cannot fail the others; any other failure
/// fails the batch (each client's request is then forwarded as it is).
async fn run_batch(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    metric: &str,
    mut batch: Vec<Job>,
) -> Vec<Answered> {
    let Some(generation) = batch.first().map(|j| j.generation.clone()) else { return Vec::new() };
    let union = |part: fn(&Job) -> &[TypedAddr]| -> Vec<TypedAddr> {
        let set: std::collections::BTreeSet<TypedAddr> =
            batch.iter().flat_map(|j| part(j).iter().copied()).collect();
        set.into_iter().collect()
    };
    let (srcs, dsts) = (union(|j| &j.srcs), union(|j| &j.dsts));
    shield.metrics.ecs_clients_per_fetch(batch.len() as u64);
    match fetch_group(shield, dir, res, metric, &srcs, &dsts).await {
        Ok((all, expires)) => {
            for job in batch.iter_mut().filter(|j| j.claim.is_some()) {
                job.answer(Some(pick(&all, &job.srcs, &job.dsts)));
            }
            vec![Answered { generation, costs: Some((all, expires)), jobs: batch }]
        }
        Err(Failure::Refused) if batch.len() > 1 => {
            let mut retries = tokio::task::JoinSet::new();
            for mut job in batch {
                let (shield, dir, res) = (shield.clone(), dir.clone(), res.clone());
                let (metric, generation) = (metric.to_string(), generation.clone());
                retries.spawn(async move {
                    shield.metrics.ecs_clients_per_fetch(1);
                    let mine = fetch_group(&shield, &dir, &res, &metric, &job.srcs, &job.dsts).await.ok();
                    if job.claim.is_some() {
                        job.answer(mine.as_ref().map(|(all, _)| all.clone()));
                    }
                    Answered { generation, costs: mine, jobs: vec![job] }
                });
            }
            let mut answered = Vec::new();
            while let Some(done) = retries.join_next().await {
                answered.extend(done.ok());
            }
            answered
        }
        Err(_) => vec![Answered { generation, costs: None, jobs: batch }],
    }
}

fn pick(all: &Costs, srcs: &[TypedAddr], dsts: &[TypedAddr]) -> Costs {
    let mut out = HashMap::with_capacity(srcs.len() * dsts.len());
    for s in srcs {
        for d in dsts {
            out.insert((*s, *d), all.get(&(*s, *d)).cloned().flatten());
        }
    }
    out
}

/// Why an origin pair request gave no pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The origin refused the request (4xx).
    Refused,
    /// Any other failure: transport, timeout, 5xx, an answer that does not parse.
    Failed,
}

/// Asks the origin for `srcs` × `dsts` (numerical, no constraints): every pair's cost, pairs
/// the origin omits as absent, and when they expire.
async fn fetch_group(
    shield: &Arc<Shield>,
    dir: &Arc<Directory>,
    res: &Resource,
    metric: &str,
    srcs: &[TypedAddr],
    dsts: &[TypedAddr],
) -> Result<(Costs, Instant), Failure> {
    let request = Request::EndpointCost(EndpointCostParams {
        cost_type: Some(CostType::new(metric, "numerical")),
        constraints: None,
        endpoints: EndpointFilter {
            srcs: Some(srcs.iter().map(ToString::to_string).collect()),
            dsts: Some(dsts.iter().map(ToString::to_string).collect()),
            extra: Default::default(),
        },
        extra: Default::default(),
    });
    let body = Bytes::from(canon::canonical_bytes(&request));
    let (reply, _) = fetch::post(shield, dir, res, body).await.map_err(|_| Failure::Failed)?;
    if reply.status.is_client_error() {
        return Err(Failure::Refused);
    }
    if reply.status != StatusCode::OK {
        return Err(Failure::Failed);
    }
    let answer: EndpointCostResponse = serde_json::from_slice(&reply.body).map_err(|_| Failure::Failed)?;
    let mut given: HashMap<Pair, Value> = HashMap::new();
    for (s, row) in &answer.endpoint_cost_map {
        let Ok(s) = TypedAddr::parse(s) else { continue };
        for (d, v) in row {
            if let Ok(d) = TypedAddr::parse(d) {
                given.insert((s, d), v.clone());
            }
        }
    }
    let mut out = HashMap::with_capacity(srcs.len() * dsts.len());
    for s in srcs {
        for d in dsts {
            out.insert((*s, *d), given.get(&(*s, *d)).cloned());
        }
    }
    let ttl = reply.entry.as_ref().map_or(shield.config.cache.default_ttl, |e| e.ttl);
    Ok((out, Instant::now() + ttl.max(Duration::from_millis(1))))
}

/// Stores confirmed pairs of `generation`, emptying every table first when they would exceed
/// the pair budget.
fn store(
    shield: &Shield,
    res: &Resource,
    metric: &str,
    generation: &Arc<str>,
    costs: &Costs,
    expires: Instant,
) {
    let mut tables = shield.ecs.pairs.lock();
    let total: usize = tables.values().map(|t| t.pairs.len()).sum();
    let max = usize::try_from(shield.config.cache.max_bytes / PAIR_BYTES).unwrap_or(usize::MAX);
    if total + costs.len() > max {
        for t in tables.values_mut() {
            t.pairs.clear();
        }
    }
    let t = table(&mut tables, &res.id, metric, generation);
    for (p, v) in costs {
        t.pairs.insert(*p, (v.clone(), expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> TypedAddr {
        TypedAddr::parse(s).expect("address")
    }

    fn job(srcs: &[&str], dsts: &[&str]) -> Job {
        let (reply, _) = tokio::sync::oneshot::channel();
        Job {
            generation: Arc::from("g1"),
            queued: Instant::now(),
            srcs: srcs.iter().map(|s| a(s)).collect(),
            dsts: dsts.iter().map(|d| a(d)).collect(),
            claim: None,
            reply: Some(reply),
        }
    }

    fn shapes(batches: &[Vec<Job>]) -> Vec<usize> {
        batches.iter().map(Vec::len).collect()
    }

    #[test]
    fn the_version_is_read_from_the_dependent_vtags_naming_the_map() {
        let body = br#"{"meta":{"dependent-vtags":[{"resource-id":"other","tag":"x"},
            {"resource-id":"net","tag":"t2"}]},"endpoint-properties":{}}"#;
        assert_eq!(named_tag(body, "net").as_deref(), Some("t2"));
        assert_eq!(named_tag(body, "missing"), None);
        assert_eq!(named_tag(br#"{"meta":{}}"#, "net"), None);
        assert_eq!(named_tag(b"not json", "net"), None);
    }

    #[test]
    fn without_waste_only_requests_that_compute_no_extra_pair_merge() {
        let jobs = vec![
            job(&["ipv4:10.0.0.1"], &["ipv4:10.0.0.2", "ipv4:10.0.0.3"]),
            // Same source: merged, no pair nobody asked for.
            job(&["ipv4:10.0.0.1"], &["ipv4:10.0.0.4"]),
            // Another source and other destinations: 2 × 4 computed for 3 + 1 + 1 needed.
            job(&["ipv4:10.0.0.9"], &["ipv4:10.0.0.5"]),
            // Same destination set as the first: merged.
            job(&["ipv4:10.0.0.7"], &["ipv4:10.0.0.2", "ipv4:10.0.0.3", "ipv4:10.0.0.4"]),
        ];
        let batches = pack(jobs, 1.0);
        assert_eq!(shapes(&batches), [3, 1]);
    }

    #[test]
    fn waste_allows_a_bounded_ratio_and_generations_never_mix() {
        let jobs = vec![
            job(&["ipv4:10.0.0.1"], &["ipv4:10.0.0.2", "ipv4:10.0.0.3"]),
            job(&["ipv4:10.0.0.9"], &["ipv4:10.0.0.2", "ipv4:10.0.0.5"]),
        ];
        // 2 × 3 = 6 computed for 4 needed.
        assert_eq!(shapes(&pack(jobs, 1.4)), [1, 1]);
        let jobs = vec![
            job(&["ipv4:10.0.0.1"], &["ipv4:10.0.0.2", "ipv4:10.0.0.3"]),
            job(&["ipv4:10.0.0.9"], &["ipv4:10.0.0.2", "ipv4:10.0.0.5"]),
        ];
        assert_eq!(shapes(&pack(jobs, 1.5)), [2]);
        let mut other = job(&["ipv4:10.0.0.1"], &["ipv4:10.0.0.4"]);
        other.generation = Arc::from("g2");
        let jobs = vec![job(&["ipv4:10.0.0.1"], &["ipv4:10.0.0.2"]), other];
        assert_eq!(shapes(&pack(jobs, 4.0)), [1, 1]);
    }
}
