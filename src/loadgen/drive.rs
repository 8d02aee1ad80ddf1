//! Running the swarm: one task per peer and per map client, paced by epochs, or a fixed set of
//! workers sending flat out (`--max-rate`); and the progress bar.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Method};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;

use super::client::{Client, Pool, Req};
use super::stats::Recorder;
use super::swarm::{self, Behaviour, Peer};
use super::target::{self, Target};
use super::{LoadgenError, Options, Plan};
use crate::alto::media;
use crate::rng::{mix, SplitMix64};

/// What every task of a run shares.
#[derive(Debug)]
pub(super) struct Ctx {
    client: Client,
    rec: Arc<Recorder>,
    behaviour: Behaviour,
    /// Typed peer addresses, by peer index.
    addrs: Vec<String>,
    ecs_id: String,
    ecs_pool: Arc<Pool>,
    /// The endpoint-cost request without its body.
    ecs: Req,
    network_map: (String, Req),
    cost_map: Option<(String, Req)>,
}

impl Ctx {
    pub fn new(
        o: &Options,
        client: Client,
        rec: Arc<Recorder>,
        target: &Target,
        addrs: Vec<String>,
    ) -> Result<Ctx, LoadgenError> {
        let ecs_pool = client.pool(&target.ecs.uri).map_err(LoadgenError::Target)?;
        let ecs = Req {
            method: Method::POST,
            uri: target.ecs.uri.clone(),
            accept: HeaderValue::from_static(target::ECS_ACCEPT),
            content_type: Some(HeaderValue::from_static(media::ENDPOINT_COST_PARAMS)),
            if_none_match: None,
            body: Bytes::new(),
        };
        let nm_accept = "application/alto-networkmap+json,application/alto-error+json";
        Ok(Ctx {
            client,
            rec,
            behaviour: Behaviour {
                new_per_epoch: o.new_per_epoch,
                policy: o.policy,
                max_active: o.max_active,
                max_candidates: o.max_candidates,
                availability: o.availability,
                threshold: o.threshold,
                churn: o.churn,
            },
            addrs,
            ecs_id: target.ecs.id.clone(),
            ecs_pool,
            ecs,
            network_map: (target.network_map.id.clone(), Req::get(target.network_map.uri.clone(), nm_accept)),
            cost_map: target
                .cost_map
                .as_ref()
                .map(|c| (c.id.clone(), Req::get(c.uri.clone(), target::COST_MAP_ACCEPT))),
        })
    }

    pub fn peer_count(&self) -> usize {
        self.addrs.len()
    }

    /// One peer's epochs: learn, ask for a ranking, act on it.
    async fn peer(self: Arc<Self>, index: u32, seed: u64, start: tokio::time::Instant, o: Timing) {
        let mut peer = Peer::new(index, seed);
        let offset = o.jitter.mul_f64(SplitMix64::new(mix(seed ^ u64::from(index))).unit());
        let swarm_size = self.addrs.len() as u32;
        let src = self.addrs[index as usize].as_str();
        for e in 0..o.epochs {
            let at = offset + o.epoch.saturating_mul(e);
            if at >= o.end {
                break;
            }
            tokio::time::sleep_until(start + at).await;
            let q = peer.begin_epoch(&self.behaviour, swarm_size);
            if q.dsts.is_empty() {
                continue;
            }
            let body = swarm::ecs_body(src, q.dsts.iter().map(|&d| self.addrs[d as usize].as_str()));
            let started = Instant::now();
            let outcome = self.ecs_pool.send_body(&self.ecs, body).await;
            let error = self.rec.record(&self.ecs_id, started, &outcome, Some(q.dsts.len() as u64));
            let ranks = match (&outcome.result, error) {
                (Ok(a), None) => {
                    let r = swarm::ranks_from(&a.body, src, &q.dsts, &self.addrs);
                    if r.is_none() {
                        let text = String::from_utf8_lossy(&a.body[..a.body.len().min(200)]).into_owned();
                        self.rec.invalid_answer(&self.ecs_id, format!("not an endpoint-cost answer: {text}"));
                    }
                    r
                }
                _ => None,
            };
            peer.end_epoch(&self.behaviour, ranks.as_ref());
        }
    }

    /// One map client: the network map and the cost map every epoch, revalidated with the
    /// `ETag` each last came with.
    async fn map_client(self: Arc<Self>, index: u32, seed: u64, start: tokio::time::Instant, o: Timing) {
        let offset = o.jitter.mul_f64(SplitMix64::new(mix(seed ^ 0x6d61_7073 ^ u64::from(index))).unit());
        let mut maps: Vec<(String, Req)> = vec![self.network_map.clone()];
        maps.extend(self.cost_map.clone());
        for e in 0..o.epochs {
            let at = offset + o.epoch.saturating_mul(e);
            if at >= o.end {
                break;
            }
            tokio::time::sleep_until(start + at).await;
            for (id, req) in &mut maps {
                let started = Instant::now();
                let outcome = self.client.send(req).await;
                self.rec.record(id, started, &outcome, None);
                if let Ok(a) = &outcome.result {
                    if a.status.is_success() {
                        req.if_none_match = a.etag.clone();
                    }
                }
            }
        }
    }
}

/// Pacing of one run.
#[derive(Debug, Clone, Copy)]
struct Timing {
    epoch: Duration,
    epochs: u32,
    jitter: Duration,
    end: Duration,
}

/// Runs the swarm to its end; returns how long it ran.
pub(super) async fn run(ctx: Arc<Ctx>, o: &Options, plan: Plan) -> Duration {
    let started = Instant::now();
    let bar = progress(o, plan, ctx.addrs.len() as u64);
    let ticker = bar.clone().map(|(bar, unit)| tokio::spawn(tick(bar, unit, ctx.rec.clone(), started)));
    // In flight at the end: one more timeout to finish, then abandoned.
    let hard_stop = plan.end + o.timeout + o.connect_timeout + Duration::from_secs(1);
    let mut tasks = JoinSet::new();
    if o.max_rate {
        spawn_max_rate(&ctx, o, plan, &mut tasks);
    } else {
        let start = tokio::time::Instant::now();
        let timing = Timing {
            epoch: o.epoch,
            epochs: plan.epochs.unwrap_or(super::DEFAULT_EPOCHS),
            jitter: o.jitter.unwrap_or(o.epoch),
            end: plan.end,
        };
        for i in 0..ctx.addrs.len() as u32 {
            tasks.spawn(ctx.clone().peer(i, o.seed, start, timing));
        }
        for i in 0..o.map_clients as u32 {
            tasks.spawn(ctx.clone().map_client(i, o.seed, start, timing));
        }
    }
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(hard_stop, all_done).await.is_err() {
        tracing::warn!("requests still unanswered at the end of the run were abandoned");
        tasks.abort_all();
    }
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some((bar, _)) = bar {
        bar.finish_and_clear();
    }
    started.elapsed()
}

/// `--max-rate`: every peer's first ranking request, precomputed, sent round after round by
/// `connections` (× `streams` with HTTP/2) workers that never wait between requests. The same
/// bodies come back every round, so a caching server answers from its cache after the first.
fn spawn_max_rate(ctx: &Arc<Ctx>, o: &Options, plan: Plan, tasks: &mut JoinSet<()>) {
    let bodies: Arc<Vec<(Bytes, u64)>> = Arc::new(
        (0..ctx.addrs.len() as u32)
            .map(|i| {
                let q = Peer::new(i, o.seed).begin_epoch(&ctx.behaviour, ctx.addrs.len() as u32);
                let dsts = q.dsts.iter().map(|&d| ctx.addrs[d as usize].as_str());
                (swarm::ecs_body(&ctx.addrs[i as usize], dsts), q.dsts.len() as u64)
            })
            .collect(),
    );
    let limit = plan.epochs.map_or(u64::MAX, |n| u64::from(n) * bodies.len() as u64);
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + plan.end;
    let workers = if o.http2 { o.connections * o.streams } else { o.connections };
    for _ in 0..workers {
        let (ctx, bodies, next) = (ctx.clone(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let started = Instant::now();
                if i >= limit || started >= deadline {
                    break;
                }
                let (body, pairs) = &bodies[(i % bodies.len() as u64) as usize];
                let outcome = ctx.ecs_pool.send_body(&ctx.ecs, body.clone()).await;
                ctx.rec.record(&ctx.ecs_id, started, &outcome, Some(*pairs));
            }
        });
    }
}

/// What the progress bar counts.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Paced epochs elapsed.
    Epochs(Duration),
    /// `--max-rate` rounds over every peer.
    Rounds(u64),
    /// `--max-rate` seconds.
    Seconds,
}

fn progress(o: &Options, plan: Plan, peers: u64) -> Option<(ProgressBar, Unit)> {
    if !o.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let (len, unit, name) = match (o.max_rate, plan.epochs) {
        (false, n) => (u64::from(n.unwrap_or(super::DEFAULT_EPOCHS)), Unit::Epochs(o.epoch), "epochs"),
        (true, Some(n)) => (u64::from(n), Unit::Rounds(peers.max(1)), "rounds"),
        (true, None) => (plan.end.as_secs().max(1), Unit::Seconds, "s"),
    };
    let bar = ProgressBar::new(len);
    let template =
        format!("{{prefix}}[{{elapsed_precise}}] {{bar:30.cyan/blue}} {{pos}}/{{len}} {name}  {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    if let Some(label) = &o.label {
        bar.set_prefix(format!("{label} "));
    }
    Some((bar, unit))
}

async fn tick(bar: ProgressBar, unit: Unit, rec: Arc<Recorder>, started: Instant) {
    let mut every = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0u64);
    loop {
        every.tick().await;
        let now = Instant::now();
        let done = rec.finished.load(Ordering::Relaxed);
        let rate = (done - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-3);
        last = (now, done);
        let pos = match unit {
            Unit::Epochs(epoch) => (started.elapsed().as_secs_f64() / epoch.as_secs_f64()) as u64,
            Unit::Rounds(peers) => done / peers,
            Unit::Seconds => started.elapsed().as_secs(),
        };
        bar.set_position(pos.min(bar.length().unwrap_or(pos)));
        bar.set_message(format!(
            "{rate:>8.0} req/s  {done} requests  {} errors",
            rec.failed.load(Ordering::Relaxed)
        ));
    }
}
