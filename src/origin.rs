//! The reference origin ALTO server (`altoshield origin`, DESIGN §7): a complete RFC 7285 server
//! over the pure core, with knobs for testing (latency, fault injection, freshness headers,
//! new map versions on demand, endpoint costs that deviate from the maps) and counters of what
//! it served.
//!
//! It owns its data and versions; the protocol rules it applies are all in [`crate::alto`].

pub mod data;
pub mod generate;
pub mod metrics;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;

use self::data::{DataError, Dataset, Version};
use crate::alto::types::VersionTag;

/// Where the origin's data comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    Dir(PathBuf),
    Generate { pids: usize, prefixes_per_pid: usize, seed: u64 },
}

/// Rates (0 to 1) of injected faults, drawn per ALTO request.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// 503 with `Retry-After`.
    pub http_5xx: f64,
    /// 200 with a truncated body.
    pub malformed: f64,
    /// The connection closed with no answer.
    pub drop: f64,
    /// No answer at all (until the client gives up).
    pub hang: f64,
    pub seed: u64,
}

/// Everything `altoshield origin` is told on its command line.
#[derive(Debug, Clone)]
pub struct OriginOptions {
    pub source: DataSource,
    /// Base of the IRD's absolute URIs; default `<scheme>://<bound address>`.
    pub public_url: Option<String>,
    /// Added to every ALTO answer.
    pub delay: Duration,
    /// Sends `Cache-Control: max-age=S` when set.
    pub max_age: Option<u64>,
    /// Delegated IRDs to list in the root IRD.
    pub delegate: Vec<String>,
    /// Prefixed to every resource-id and cost-type name.
    pub id_prefix: String,
    pub faults: Faults,
    /// Endpoint costs deviate from the PID-level maps (an origin with finer data).
    pub ecs_deviate: bool,
    pub max_body: u64,
    pub max_ecs_pairs: u64,
}

impl Default for OriginOptions {
    fn default() -> Self {
        OriginOptions {
            source: DataSource::Generate { pids: 50, prefixes_per_pid: 10, seed: 1 },
            public_url: None,
            delay: Duration::ZERO,
            max_age: None,
            delegate: Vec::new(),
            id_prefix: String::new(),
            faults: Faults::default(),
            ecs_deviate: false,
            max_body: 1 << 20,
            max_ecs_pairs: 1_000_000,
        }
    }
}

/// A loaded origin, ready to serve.
#[derive(Debug, Clone)]
pub struct Origin {
    state: Arc<server::State>,
}

impl Origin {
    /// Loads or generates the data and builds version 0 of every map.
    pub fn new(options: OriginOptions) -> Result<Origin, DataError> {
        let dataset = match &options.source {
            DataSource::Dir(dir) => Dataset::load(dir)?,
            DataSource::Generate { pids, prefixes_per_pid, seed } => {
                generate::generate(*pids, *prefixes_per_pid, *seed)
            }
        };
        let mut dataset = dataset;
        dataset.network_map_id = format!("{}{}", options.id_prefix, dataset.network_map_id);
        dataset.check().map_err(DataError::Invalid)?;
        let version = dataset.version(0)?;
        let fault_rng = crate::rng::SplitMix64::new(options.faults.seed);
        Ok(Origin {
            state: Arc::new(server::State {
                dataset,
                options,
                current: RwLock::new(Arc::new(version)),
                bump_lock: tokio::sync::Mutex::new(()),
                fault_rng: Mutex::new(fault_rng),
                metrics: metrics::OriginMetrics::default(),
                ird: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Serves on `listener` until `shutdown` resolves. `base_url` is the default base of the
    /// IRD's URIs (the scheme and bound address).
    pub async fn run(
        self,
        listener: TcpListener,
        base_url: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let base = self.state.options.public_url.clone().unwrap_or_else(|| base_url.to_string());
        let _ = self.state.ird.set(server::build_ird(&self.state, base.trim_end_matches('/')));
        let state = self.state.clone();
        crate::http::serve(
            listener,
            tls,
            move |req, peer: SocketAddr| server::handle(state.clone(), req, peer),
            shutdown,
            Duration::from_secs(5),
        )
        .await;
    }

    /// Publishes the next map version; answers begun after this returns use it.
    pub async fn bump(&self) -> Result<VersionTag, DataError> {
        server::bump(&self.state).await
    }

    /// The current map version.
    pub fn current(&self) -> Arc<Version> {
        self.state.current()
    }
}
