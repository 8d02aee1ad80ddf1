//! The swarm load generator (`altoshield loadgen`, DESIGN §8): drives any ALTO server, directly
//! or through a proxy, with the epoch-driven P2P swarm of DESIGN §1, and reports the client's
//! view (requests, latency, errors) beside the origin's (its `/metrics` counters).
//!
//! A run: read the origin's counters (`--origin-metrics`); read the IRD at the target as a
//! client would and find the network map, the endpoint cost resource and a cost map
//! ([`target`]); draw peer addresses from the network map ([`swarm`]); run the swarm, paced by
//! epochs or flat out (`--max-rate`), while sampling the origin every second ([`drive`]); read
//! the counters again and summarise ([`report`]), optionally writing the timeline
//! ([`timeline`]).
//!
//! Everything is bounded: every exchange by `--timeout`, the run by `--epochs`/`--duration`
//! (what is still in flight at the end gets one timeout more, then is abandoned). The load
//! generator must not panic on anything a server says: a bad target is a [`LoadgenError`].

mod client;
mod drive;
pub mod report;
pub mod stats;
pub mod swarm;
mod target;
pub mod timeline;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

pub use client::Trust;
pub use report::Report;
pub use swarm::Policy;

use self::client::{Client, ClientOptions, Req};
use self::stats::{OriginCounters, Recorder};

/// Epochs run when neither `--epochs` nor `--duration` is given (paced mode).
pub const DEFAULT_EPOCHS: u32 = 10;
/// How long `--max-rate` runs when neither `--epochs` nor `--duration` is given.
pub const DEFAULT_MAX_RATE_DURATION: Duration = Duration::from_secs(10);
/// The longest `--max-rate` run bounded only by `--epochs`.
pub const MAX_RATE_TIME_CAP: Duration = Duration::from_secs(600);

/// Everything a run is told (the `altoshield loadgen` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// The root IRD's URL.
    pub target: String,
    pub peers: usize,
    pub epoch: Duration,
    pub new_per_epoch: usize,
    pub policy: Policy,
    pub max_active: usize,
    pub max_candidates: usize,
    pub availability: f64,
    pub threshold: f64,
    pub churn: f64,
    /// Clients that re-fetch the network map and a cost map every epoch.
    pub map_clients: usize,
    /// Peers' first requests are spread over this; `None`: one epoch.
    pub jitter: Option<Duration>,
    pub duration: Option<Duration>,
    pub epochs: Option<u32>,
    pub max_rate: bool,
    pub trust: Trust,
    pub http2: bool,
    /// Connections per server.
    pub connections: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub streams: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub seed: u64,
    /// The origin's Prometheus `/metrics` URL.
    pub origin_metrics: Option<String>,
    /// Where `timeline.csv` and `timeline.svg` go.
    pub out: Option<PathBuf>,
    /// Draw a progress bar on standard error (only when it is a terminal).
    pub progress: bool,
    /// Shown before the progress bar.
    pub label: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: String::new(),
            peers: 1000,
            epoch: Duration::from_secs(30),
            new_per_epoch: 5,
            policy: Policy::All,
            max_active: 8,
            max_candidates: 50,
            availability: 0.8,
            threshold: 0.3,
            churn: 0.05,
            map_clients: 0,
            jitter: None,
            duration: None,
            epochs: None,
            max_rate: false,
            trust: Trust::System,
            http2: false,
            connections: 32,
            streams: 8,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            seed: 1,
            origin_metrics: None,
            out: None,
            progress: true,
            label: None,
        }
    }
}

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The options do not make sense (exit 64).
    #[error("{0}")]
    Usage(String),
    /// The target or the origin's metrics cannot be used (exit 1).
    #[error("{0}")]
    Target(String),
    /// The timeline could not be written (exit 1).
    #[error("{0}")]
    Output(String),
}

/// The bounds of a run, from the options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// Epochs (rounds over every peer with `--max-rate`); `None`: until `end`.
    pub epochs: Option<u32>,
    /// No request starts after this much time into the swarm.
    pub end: Duration,
}

impl Options {
    fn check(&self) -> Result<(Uri, Plan), LoadgenError> {
        let bad = |m: String| Err(LoadgenError::Usage(m));
        let target: Uri = match self.target.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => u,
            _ => return bad(format!("--target `{}` is not an absolute http(s) URL", self.target)),
        };
        if self.peers < 2 {
            return bad("--peers must be at least 2".into());
        }
        if self.new_per_epoch == 0 {
            return bad("--new-per-epoch must be at least 1".into());
        }
        if self.epoch.is_zero() {
            return bad("--epoch must be longer than 0".into());
        }
        if self.connections == 0 || self.streams == 0 {
            return bad("--connections and --streams must be at least 1".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return bad("--timeout must be longer than 0".into());
        }
        if self.max_active == 0 {
            return bad("--max-active must be at least 1".into());
        }
        for (name, v) in
            [("--availability", self.availability), ("--threshold", self.threshold), ("--churn", self.churn)]
        {
            if !(0.0..=1.0).contains(&v) {
                return bad(format!("{name} must be between 0 and 1"));
            }
        }
        if self.epochs == Some(0) || self.duration.is_some_and(|d| d.is_zero()) {
            return bad("--epochs and --duration must be more than 0".into());
        }
        if let Some(url) = &self.origin_metrics {
            if !url.parse::<Uri>().is_ok_and(|u| u.scheme_str().is_some() && u.host().is_some()) {
                return bad(format!("--origin-metrics `{url}` is not an absolute http(s) URL"));
            }
        }
        let plan = if self.max_rate {
            let cap = if self.epochs.is_some() { MAX_RATE_TIME_CAP } else { DEFAULT_MAX_RATE_DURATION };
            Plan { epochs: self.epochs, end: self.duration.unwrap_or(cap) }
        } else {
            let epochs = match (self.epochs, self.duration) {
                (Some(n), _) => n,
                (None, Some(d)) => (d.as_secs_f64() / self.epoch.as_secs_f64()).ceil().max(1.0) as u32,
                (None, None) => DEFAULT_EPOCHS,
            };
            let all = self.epoch.saturating_mul(epochs);
            Plan { epochs: Some(epochs), end: self.duration.map_or(all, |d| d.min(all)) }
        };
        Ok((target, plan))
    }

    fn client_options(&self, http2: bool, connections: usize) -> ClientOptions {
        ClientOptions {
            trust: self.trust.clone(),
            http2,
            connections,
            streams: self.streams,
            connect_timeout: self.connect_timeout,
            timeout: self.timeout,
        }
    }
}

/// Runs the swarm described by `options` against its target and returns the summary.
pub async fn run(options: Options) -> Result<Report, LoadgenError> {
    let (target_uri, plan) = options.check()?;
    let client = Client::new(options.client_options(options.http2, options.connections))
        .map_err(LoadgenError::Usage)?;
    let metrics = match &options.origin_metrics {
        Some(url) => {
            let uri: Uri = url.parse().map_err(|e| LoadgenError::Usage(format!("--origin-metrics: {e}")))?;
            let c = Client::new(options.client_options(false, 1)).map_err(LoadgenError::Usage)?;
            Some(Arc::new(MetricsSource { client: c, uri }))
        }
        None => None,
    };
    let rec = Arc::new(Recorder::new());
    let before = match &metrics {
        Some(m) => Some(m.read().await.map_err(LoadgenError::Target)?),
        None => None,
    };

    let target = target::discover(&client, &rec, &target_uri).await?;
    let addrs: Vec<String> = swarm::draw_addresses(&target.prefixes, options.peers, options.seed)
        .into_iter()
        .map(swarm::typed)
        .collect();
    if addrs.len() < 2 {
        return Err(LoadgenError::Target(format!(
            "the network map at {} has too few host addresses for a swarm",
            target.network_map.uri
        )));
    }
    if addrs.len() < options.peers {
        tracing::warn!(
            "the network map holds only {} distinct host addresses: {} peers",
            addrs.len(),
            addrs.len()
        );
    }
    let pids = target.view.as_ref().map(|v| {
        let set: std::collections::HashSet<&str> = addrs
            .iter()
            .filter_map(|a| a.split_once(':').and_then(|(_, ip)| ip.parse().ok()))
            .filter_map(|ip| v.pid_of(ip))
            .collect();
        set.len()
    });

    let ctx = Arc::new(drive::Ctx::new(&options, client, rec.clone(), &target, addrs)?);
    let sampler = metrics.clone().zip(before.clone()).map(|(m, b)| {
        let rec = rec.clone();
        tokio::spawn(async move { sample_every_second(m, rec, b).await })
    });
    let elapsed_drive = drive::run(ctx.clone(), &options, plan).await;
    if let Some(s) = sampler {
        s.abort();
    }
    let origin = match (&metrics, &before) {
        (Some(m), Some(b)) => {
            let after = m.read().await;
            let since_start = rec.start().elapsed();
            match after {
                Ok(after) => {
                    // Whatever the last sample missed belongs to the last second.
                    let sampled = rec.totals(since_start).seconds.iter().fold((0.0, 0.0), |acc, s| {
                        (acc.0 + s.origin_requests.unwrap_or(0.0), acc.1 + s.origin_pairs.unwrap_or(0.0))
                    });
                    let d = after.since(b);
                    let (rq, pr) = (d.served_total() - sampled.0, d.pairs_total() - sampled.1);
                    let last = (since_start.as_secs_f64().ceil() as usize).max(1) - 1;
                    rec.origin_sample(last, rq.max(0.0), pr.max(0.0));
                    Some(report::Origin { url: m.uri.to_string(), delta: d })
                }
                Err(e) => {
                    tracing::warn!("cannot read the origin's counters after the run: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let elapsed = rec.start().elapsed();
    let report = Report {
        target: target_uri.to_string(),
        ecs_id: target.ecs.id.clone(),
        network_map_id: target.network_map.id.clone(),
        peers: ctx.peer_count(),
        pids,
        options: options.clone(),
        plan,
        elapsed,
        swarm_time: elapsed_drive,
        totals: rec.totals(elapsed),
        origin,
    };
    if let Some(dir) = &options.out {
        timeline::write(dir, &report.totals.seconds, report.elapsed, &report.chart_title())
            .map_err(LoadgenError::Output)?;
    }
    Ok(report)
}

/// The origin's `/metrics`, read with its own small client.
#[derive(Debug)]
struct MetricsSource {
    client: Client,
    uri: Uri,
}

impl MetricsSource {
    async fn read(&self) -> Result<OriginCounters, String> {
        let req = Req::get(self.uri.clone(), "text/plain");
        let outcome = self.client.send(&req).await;
        let what = || format!("cannot read the origin's metrics at {}", self.uri);
        let answer = outcome.result.map_err(|f| format!("{}: {f}", what()))?;
        if !answer.status.is_success() {
            return Err(format!("{}: status {}", what(), answer.status));
        }
        let text = std::str::from_utf8(&answer.body).map_err(|_| format!("{}: not text", what()))?;
        let counters = OriginCounters::parse(text);
        if counters.served.is_empty() && !text.contains("altoshield_origin_served") {
            return Err(format!("{}: no altoshield_origin_served_total counter there", what()));
        }
        Ok(counters)
    }
}

/// Every second of the run, the origin's work since the previous second.
async fn sample_every_second(m: Arc<MetricsSource>, rec: Arc<Recorder>, mut prev: OriginCounters) {
    let start = tokio::time::Instant::from_std(rec.start());
    let mut second = 0usize;
    loop {
        second += 1;
        tokio::time::sleep_until(start + Duration::from_secs(second as u64)).await;
        // A slow or failed read leaves its second empty; the next one catches up.
        if let Ok(Ok(now)) = tokio::time::timeout(Duration::from_secs(1), m.read()).await {
            let d = now.since(&prev);
            rec.origin_sample(second - 1, d.served_total(), d.pairs_total());
            prev = now;
        }
    }
}
