//! The shield's configuration: the `altoshield.toml` format, every default, and its validation.
//!
//! A file goes through two forms. `raw` mirrors the file key for key (serde with
//! `deny_unknown_fields`), keeping every value as it was written; `build` converts each value into
//! the typed form below (`Duration`, `SocketAddr`, `IpNet`, `http::Uri`, checked paths) and checks
//! the rules between keys, collecting every problem, each with its dotted key path, before failing.
//! [`parse`] works on text and never reads the configuration file itself; [`load`] reads the file.
//!
//! This module must not open sockets, read the contents of TLS material (it only checks that the
//! named files exist and are readable; their contents are checked when TLS is set up), log, or
//! exit: problems are values, and the caller decides how to print them (`check-config` prints one
//! per line and exits 64).
//!
//! Every limit the shield enforces is a field here with a named `DEFAULT_*` constant, and
//! `config/altoshield.toml` documents every key with its default.

mod build;
mod raw;
#[cfg(test)]
mod tests;
pub mod units;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

/// Where `altoshield serve` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "config/altoshield.toml";

/// `listen.addr`: the data plane's address.
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8443);
/// `listen.tls`: serve HTTPS.
pub const DEFAULT_LISTEN_TLS: bool = true;
/// `admin.addr`: the admin listener's address (loopback, so no token is needed).
pub const DEFAULT_ADMIN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

/// `origin.connect_timeout`: time to open a connection (TCP and TLS) to the origin.
pub const DEFAULT_ORIGIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// `origin.timeout`: time for the origin's whole answer, headers and body.
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// `origin.max_in_flight`: concurrent requests toward the origin.
pub const DEFAULT_ORIGIN_MAX_IN_FLIGHT: usize = 256;
/// `origin.max_body`: the largest origin answer accepted (full maps can be large).
pub const DEFAULT_ORIGIN_MAX_BODY: u64 = 256 << 20;
/// `origin.ird_refresh`: how often the origin's IRD is fetched again.
pub const DEFAULT_IRD_REFRESH: Duration = Duration::from_secs(60);

/// `cache.default_ttl`: freshness of an answer that carries no `Cache-Control`/`Expires`.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// `cache.stale_while_revalidate`: how long a stale answer may be served while it is refreshed.
pub const DEFAULT_STALE_WHILE_REVALIDATE: Duration = Duration::from_secs(10);
/// `cache.stale_if_error`: how long a stale answer may be served while the origin fails.
pub const DEFAULT_STALE_IF_ERROR: Duration = Duration::from_secs(5 * 60);
/// `cache.max_bytes`: the cache's memory budget.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 512 << 20;
/// The smallest `cache.max_bytes` accepted: below it a single map would not fit.
pub const MIN_CACHE_MAX_BYTES: u64 = 1 << 20;

/// `ecs.mode`: `auto`, as DESIGN §5 says: verified against the origin, then local.
pub const DEFAULT_ECS_MODE: EcsMode = EcsMode::Auto;
/// `ecs.rank_locally`: whether the origin's ordinal costs are ranks of its numerical ones.
pub const DEFAULT_RANK_LOCALLY: bool = false;
/// `ecs.merge_waste`: how many pairs a merged origin request may compute per pair asked for.
pub const DEFAULT_MERGE_WASTE: f64 = 1.0;
/// `ecs.merge_window`: how long a miss on an idle lane waits for others to join its origin request.
pub const DEFAULT_MERGE_WINDOW: Duration = Duration::ZERO;
/// The longest `ecs.merge_window` accepted: a window is a short delay, never a schedule.
pub const MAX_MERGE_WINDOW: Duration = Duration::from_secs(1);
/// `ecs.auto_warmup`: origin answers compared with the local computation before `auto` trusts it.
pub const DEFAULT_AUTO_WARMUP: u64 = 200;
/// `ecs.auto_sample`: fraction of requests still compared once `auto` trusts local answers.
pub const DEFAULT_AUTO_SAMPLE: f64 = 0.01;

/// `limits.max_body`: the largest request body accepted from a client (413 beyond).
pub const DEFAULT_MAX_BODY: u64 = 1 << 20;
/// `limits.per_client_rps`: requests per second per client address; 0 turns the limit off, so
/// one load generator on loopback is never throttled by default.
pub const DEFAULT_PER_CLIENT_RPS: u32 = 0;
/// `limits.max_in_flight`: requests being handled at once, over all clients (503 beyond).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 20_000;
/// `limits.max_connections`: open client connections (a herd of 1,000 from one address is normal).
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
/// `limits.header_timeout`: time for a client to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.handshake_timeout`: time for a client to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `limits.coalesce_timeout`: how long a request waits on another request's origin fetch before
/// it is answered 504; longer than `origin.timeout` plus one retry's connect, so a waiter does not
/// give up before the fetch it waits on does.
pub const DEFAULT_COALESCE_TIMEOUT: Duration = Duration::from_secs(15);
/// `limits.shutdown_grace`: how long in-flight requests may finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The shield's validated configuration: what `altoshield serve` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[listen]`: the data plane.
    pub listen: Listen,
    /// `[admin]`: the admin listener.
    pub admin: Admin,
    /// `[origin]`: the origin ALTO server and how it is reached.
    pub origin: Origin,
    /// `[cache]`: freshness and memory.
    pub cache: Cache,
    /// `[ecs]`: how endpoint cost queries are answered.
    pub ecs: Ecs,
    /// `[limits]`: what one client, and all of them together, may use.
    pub limits: Limits,
}

impl Config {
    /// Every default, with `ird` as the origin. Not validated: with the default `listen.tls`, set
    /// `listen.cert` and `listen.key` (or `listen.tls = false`) before serving.
    pub fn with_origin(ird: http::Uri) -> Self {
        Config {
            listen: Listen::default(),
            admin: Admin::default(),
            origin: Origin::new(ird),
            cache: Cache::default(),
            ecs: Ecs::default(),
            limits: Limits::default(),
        }
    }
}

/// `[listen]`: the data plane listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    /// Address to bind; port 0 picks a free one.
    pub addr: SocketAddr,
    /// Serve HTTPS (true) or plain HTTP (false).
    pub tls: bool,
    /// PEM certificate chain; present whenever `tls` is true.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`; present whenever `tls` is true.
    pub key: Option<PathBuf>,
    /// PEM trust roots for client certificates: when set, clients must present one.
    pub client_ca: Option<PathBuf>,
    /// Base of the IRD's absolute URIs, without a trailing slash; `None`: [`Listen::base_url`].
    pub public_url: Option<String>,
    /// Peers whose PROXY protocol header or `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Client prefixes admitted; empty admits every client.
    pub allow: Vec<IpNet>,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            addr: DEFAULT_LISTEN_ADDR,
            tls: DEFAULT_LISTEN_TLS,
            cert: None,
            key: None,
            client_ca: None,
            public_url: None,
            trusted_proxies: Vec::new(),
            allow: Vec::new(),
        }
    }
}

impl Listen {
    /// `"https"` or `"http"`, per `tls`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The base URL of the IRD's URIs: `public_url` if set, else the scheme and `bound` (the
    /// address actually bound, IPv6 in brackets).
    pub fn base_url(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.clone(),
            None => format!("{}://{bound}", self.scheme()),
        }
    }
}

/// `[admin]`: the admin listener (metrics, health, cache control).
#[derive(Clone, PartialEq)]
pub struct Admin {
    /// Address to bind; a non-loopback address requires `token`.
    pub addr: SocketAddr,
    /// Bearer token the POST routes require; printable ASCII without spaces.
    pub token: Option<String>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin { addr: DEFAULT_ADMIN_ADDR, token: None }
    }
}

// By hand, so that the token never reaches a log line.
impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// `[origin]`: the origin ALTO server.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// The origin's root IRD, an absolute `http://` or `https://` URL.
    pub ird: http::Uri,
    /// PEM trust roots for the origin's certificate; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate presented to the origin (always with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Time to connect (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for the whole answer.
    pub timeout: Duration,
    /// Concurrent origin requests.
    pub max_in_flight: usize,
    /// Largest origin answer accepted, in bytes.
    pub max_body: u64,
    /// Interval between IRD fetches.
    pub ird_refresh: Duration,
}

impl Origin {
    /// Every default, with `ird` as the root IRD.
    pub fn new(ird: http::Uri) -> Self {
        Origin {
            ird,
            ca: None,
            cert: None,
            key: None,
            connect_timeout: DEFAULT_ORIGIN_CONNECT_TIMEOUT,
            timeout: DEFAULT_ORIGIN_TIMEOUT,
            max_in_flight: DEFAULT_ORIGIN_MAX_IN_FLIGHT,
            max_body: DEFAULT_ORIGIN_MAX_BODY,
            ird_refresh: DEFAULT_IRD_REFRESH,
        }
    }
}

/// `[cache]`: freshness and memory of the caches.
#[derive(Debug, Clone, PartialEq)]
pub struct Cache {
    /// Freshness of answers without freshness headers.
    pub default_ttl: Duration,
    /// Stale answers are served this long while a refresh runs.
    pub stale_while_revalidate: Duration,
    /// Stale answers are served this long while the origin fails.
    pub stale_if_error: Duration,
    /// Memory budget in bytes, at least [`MIN_CACHE_MAX_BYTES`].
    pub max_bytes: u64,
}

impl Default for Cache {
    fn default() -> Self {
        Cache {
            default_ttl: DEFAULT_TTL,
            stale_while_revalidate: DEFAULT_STALE_WHILE_REVALIDATE,
            stale_if_error: DEFAULT_STALE_IF_ERROR,
            max_bytes: DEFAULT_CACHE_MAX_BYTES,
        }
    }
}

/// `ecs.mode`: how endpoint cost queries are answered (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EcsMode {
    /// Exact cache and coalescing only.
    Forward,
    /// Pair cache and merging; local ranking only with `rank_locally`.
    Aggregate,
    /// Answers from the network and cost maps, trusted.
    Synthesize,
    /// Forward and compare until verified, then answer locally while sampling.
    Auto,
}

impl EcsMode {
    /// Every mode, in the order the documentation lists them.
    pub const ALL: [EcsMode; 4] = [EcsMode::Forward, EcsMode::Aggregate, EcsMode::Synthesize, EcsMode::Auto];

    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            EcsMode::Forward => "forward",
            EcsMode::Aggregate => "aggregate",
            EcsMode::Synthesize => "synthesize",
            EcsMode::Auto => "auto",
        }
    }
}

impl Default for EcsMode {
    fn default() -> Self {
        DEFAULT_ECS_MODE
    }
}

impl fmt::Display for EcsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[ecs]`: endpoint cost service answering.
#[derive(Debug, Clone, PartialEq)]
pub struct Ecs {
    /// The mode.
    pub mode: EcsMode,
    /// The origin's ordinal costs are ranks of its numerical ones.
    pub rank_locally: bool,
    /// Pairs a merged origin request may compute per pair asked for, at least 1.0.
    pub merge_waste: f64,
    /// How long pair misses on an idle lane wait for others before their origin request leaves;
    /// zero: they leave at once (while the lane is busy they queue for its next round anyway).
    pub merge_window: Duration,
    /// Matching origin answers before `auto` trusts local ones.
    pub auto_warmup: u64,
    /// Fraction of requests still compared afterwards, in [0, 1].
    pub auto_sample: f64,
}

impl Default for Ecs {
    fn default() -> Self {
        Ecs {
            mode: DEFAULT_ECS_MODE,
            rank_locally: DEFAULT_RANK_LOCALLY,
            merge_waste: DEFAULT_MERGE_WASTE,
            merge_window: DEFAULT_MERGE_WINDOW,
            auto_warmup: DEFAULT_AUTO_WARMUP,
            auto_sample: DEFAULT_AUTO_SAMPLE,
        }
    }
}

/// `[limits]`: bounds on what clients may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body: u64,
    /// Requests per second per client address; 0 is off.
    pub per_client_rps: u32,
    /// Requests handled at once.
    pub max_in_flight: usize,
    /// Open client connections.
    pub max_connections: usize,
    /// Time to receive a request's headers.
    pub header_timeout: Duration,
    /// Time to complete a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a request waits on another's origin fetch before 504.
    pub coalesce_timeout: Duration,
    /// Time in-flight requests get to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: DEFAULT_MAX_BODY,
            per_client_rps: DEFAULT_PER_CLIENT_RPS,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            coalesce_timeout: DEFAULT_COALESCE_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`"listen.addr"`), or `""` for the file as a whole.
    pub key: String,
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
}

impl Problem {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem { key: key.into(), message: message.into() }
    }
}

/// `<key>: <message>`, or the message alone for a file-level problem.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a configuration; displayed one per line. Never empty.
#[derive(Debug, thiserror::Error)]
#[error("{}", Lines(.problems))]
pub struct ConfigError {
    /// The problems, in the order of the sections and keys.
    pub problems: Vec<Problem>,
}

struct Lines<'a>(&'a [Problem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Parses and validates a configuration file's text. Paths it names are checked relative to the
/// current directory; the configuration file itself is never read here.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let config = raw::read(text, &mut problems).and_then(|raw| build::build(raw, &mut problems));
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => {
            if problems.is_empty() {
                // `build` reports why it has no configuration; this only guards the invariant.
                problems.push(Problem::new("", "invalid configuration"));
            }
            Err(ConfigError { problems })
        }
    }
}

/// Reads the file at `path` and [`parse`]s it; an unreadable file is one problem with key `""`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![Problem::new("", format!("cannot read {}: {}", path.display(), build::io_reason(&e)))],
    })?;
    parse(&text)
}

/// What `altoshield check-config PATH` runs: [`load`], so it reports exactly what `serve` would.
pub fn check(path: &Path) -> Result<Config, ConfigError> {
    load(path)
}
