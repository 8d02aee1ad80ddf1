//! The `altoshield` command: parses the command line, sets up logging, runs the chosen
//! subcommand, and maps failures to exit codes (0 success, 64 bad usage or configuration,
//! 1 runtime failure).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use altoshield::config::units;
use altoshield::origin::{DataSource, Faults, Origin, OriginOptions};

const EXIT_USAGE: u8 = 64;
const EXIT_RUNTIME: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "altoshield",
    version,
    about = "A caching ALTO (RFC 7285) proxy, its reference origin, and tools"
)]
struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the caching ALTO proxy.
    Serve(ServeArgs),
    /// Validate a configuration file and print every problem.
    CheckConfig {
        /// The configuration file.
        path: PathBuf,
    },
    /// Run the reference origin ALTO server.
    Origin(Box<OriginArgs>),
    /// Run the epoch-driven P2P swarm against any ALTO server and report the load.
    Loadgen(Box<LoadgenArgs>),
    /// Origin, shield and swarm on loopback, no setup: prints the load reduction.
    Demo(DemoArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// The configuration file.
    #[arg(long, default_value = altoshield::config::DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

#[derive(Args, Debug)]
struct OriginArgs {
    /// Serve the data set in DIR (network-map.json, costmap-*.json, properties.json).
    #[arg(long, value_name = "DIR", conflicts_with = "generate")]
    data: Option<PathBuf>,
    /// Serve generated data (the default when --data is not given).
    #[arg(long)]
    generate: bool,
    /// Generated PIDs (besides the default PID).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pids: u32,
    /// Generated IPv4 prefixes per PID.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    prefixes_per_pid: u32,
    /// Seed of the generated data: the same flags give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Base URL of the IRD's absolute URIs (default: the scheme and bound address).
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Milliseconds added to every ALTO answer.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Send `Cache-Control: max-age=S` on answers.
    #[arg(long, value_name = "S")]
    max_age: Option<u64>,
    /// PEM certificate chain: serve HTTPS.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// PEM private key for --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// List a delegated IRD at URL in the root IRD (repeatable).
    #[arg(long, value_name = "URL")]
    delegate: Vec<String>,
    /// Prefix for every resource-id and cost-type name.
    #[arg(long, default_value = "")]
    id_prefix: String,
    /// Rate (0 to 1) of answers replaced by 503 with Retry-After.
    #[arg(long = "fault-5xx", default_value_t = 0.0, value_parser = rate)]
    fault_5xx: f64,
    /// Rate of 200 answers with a truncated body.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    fault_malformed: f64,
    /// Rate of requests whose connection is closed with no answer.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    fault_drop: f64,
    /// Rate of requests that are never answered.
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    fault_hang: f64,
    /// Seed of the fault draws.
    #[arg(long, default_value_t = 1)]
    fault_seed: u64,
    /// Make endpoint costs deviate from the PID-level maps (an origin with finer data).
    #[arg(long)]
    ecs_deviate: bool,
    /// Largest request body accepted.
    #[arg(long, default_value = "1MiB", value_parser = size)]
    max_body: u64,
    /// Most (source, destination) pairs one endpoint-cost request may ask for.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_ecs_pairs: u64,
}

#[derive(Args, Debug)]
struct LoadgenArgs {
    /// The root IRD of the ALTO server to load (an origin, a shield, any RFC 7285 server).
    #[arg(long, value_name = "IRD_URL")]
    target: String,
    /// Peers in the swarm; their addresses are drawn from the network map's prefixes.
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Epoch length (compressed time: `1s`).
    #[arg(long, default_value = "30s", value_parser = duration)]
    epoch: Duration,
    /// Peers each peer learns per epoch.
    #[arg(long, default_value_t = 5)]
    new_per_epoch: usize,
    /// Whom a peer asks to rank: `all` candidates and active peers, or only the `new` ones.
    #[arg(long, value_enum, default_value_t = PolicyArg::All)]
    policy: PolicyArg,
    /// Active peers a peer keeps.
    #[arg(long, default_value_t = 8)]
    max_active: usize,
    /// Candidates a peer keeps.
    #[arg(long, default_value_t = 50)]
    max_candidates: usize,
    /// Probability that a tried candidate is available.
    #[arg(long, default_value_t = 0.8, value_parser = rate)]
    availability: f64,
    /// Simulated throughput (0 to 1) a candidate needs to become active.
    #[arg(long, default_value_t = 0.3, value_parser = rate)]
    threshold: f64,
    /// Probability per epoch that an active peer leaves.
    #[arg(long, default_value_t = 0.05, value_parser = rate)]
    churn: f64,
    /// Map clients re-fetching the network map and a cost map every epoch (with If-None-Match).
    #[arg(long, default_value_t = 0)]
    map_clients: usize,
    /// Peers' first requests are spread over this (default: one epoch).
    #[arg(long, value_parser = duration)]
    jitter: Option<Duration>,
    /// Stop after this long.
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
    /// Stop after this many epochs (rounds over every peer with --max-rate); default 10 epochs.
    #[arg(long)]
    epochs: Option<u32>,
    /// No pacing: every peer's first ranking request, again and again, as fast as the
    /// connections allow (default 10s).
    #[arg(long)]
    max_rate: bool,
    /// PEM trust roots for https targets (default: the system's).
    #[arg(long, value_name = "PEM", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Accept any certificate.
    #[arg(long)]
    insecure: bool,
    /// HTTP/2 (ALPN h2 over TLS, prior knowledge over plain HTTP).
    #[arg(long)]
    http2: bool,
    /// Connections per server.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Bound on each request (connect, send, whole answer).
    #[arg(long, default_value = "10s", value_parser = duration)]
    timeout: Duration,
    /// Seed of the swarm: the same flags and answers give the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The origin's /metrics URL: report its requests and pairs during the run.
    #[arg(long, value_name = "METRICS_URL")]
    origin_metrics: Option<String>,
    /// Write timeline.csv and timeline.svg into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    All,
    New,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// A small, fast run (for tests).
    #[arg(long, hide = true)]
    quick: bool,
    /// Where to write the timeline (default ./altoshield-demo-<date>-<time>/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

fn duration(s: &str) -> Result<Duration, String> {
    units::parse_duration(s)
}

fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a rate between 0 and 1")),
    }
}

fn size(s: &str) -> Result<u64, String> {
    units::parse_size(s)
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl ToString) -> Failure {
    Failure { code: EXIT_USAGE, message: message.to_string() }
}

fn runtime(message: impl ToString) -> Failure {
    Failure { code: EXIT_RUNTIME, message: message.to_string() }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line: clap's first line, without its usage block.
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("bad usage").trim();
            eprintln!("altoshield: {} (see --help)", line.trim_start_matches("error: "));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The demo talks to a person: only warnings and errors from its servers.
    let quiet = matches!(cli.command, Command::Demo(_));
    init_logging(cli.log_format, if quiet { "warn" } else { "info" });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("altoshield: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => run_serve(args).await,
            Command::CheckConfig { path } => check_config(&path),
            Command::Origin(args) => run_origin(*args).await,
            Command::Loadgen(args) => run_loadgen(*args).await,
            Command::Demo(args) => run_demo(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("altoshield: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Prints a start-up line on standard output, alone and flushed at once: scripts wait for it.
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Every problem of a configuration file, one per line with its key path.
fn config_failure(e: altoshield::config::ConfigError) -> Failure {
    let lines: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
    usage(lines.join("\naltoshield: "))
}

fn check_config(path: &std::path::Path) -> Result<(), Failure> {
    altoshield::config::check(path).map_err(config_failure)?;
    println!("{}: ok", path.display());
    Ok(())
}

async fn run_serve(a: ServeArgs) -> Result<(), Failure> {
    use altoshield::{admin, server, shield, tls, upstream};
    let config = altoshield::config::load(&a.config).map_err(config_failure)?;
    let tls = match (&config.listen.cert, &config.listen.key) {
        (Some(cert), Some(key)) if config.listen.tls => {
            let reloading = tls::ReloadingCert::load(cert, key).map_err(usage)?;
            let server = reloading.server_config(config.listen.client_ca.as_deref()).map_err(usage)?;
            Some((reloading, Arc::new(server)))
        }
        _ => None,
    };
    let upstream = upstream::Upstream::new(&upstream::UpstreamConfig {
        ca: config.origin.ca.clone(),
        cert: config.origin.cert.clone(),
        key: config.origin.key.clone(),
        connect_timeout: config.origin.connect_timeout,
        timeout: config.origin.timeout,
        max_in_flight: config.origin.max_in_flight,
        max_body: config.origin.max_body,
    })
    .map_err(usage)?;
    let listener = tokio::net::TcpListener::bind(config.listen.addr)
        .await
        .map_err(|e| runtime(format!("cannot listen on {}: {e}", config.listen.addr)))?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.addr)
        .await
        .map_err(|e| runtime(format!("cannot listen on {} (admin): {e}", config.admin.addr)))?;
    let local = listener.local_addr().map_err(runtime)?;
    let admin_local = admin_listener.local_addr().map_err(runtime)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = config.listen.public_url.clone().unwrap_or_else(|| format!("{scheme}://{local}"));
    announce(&format!("listening on {scheme}://{local}"));
    announce(&format!("admin on http://{admin_local}"));

    let shield = shield::Shield::new(config, public_url.trim_end_matches('/').to_string(), upstream);
    tokio::spawn(shield::maintain(shield.clone()));
    if let Some((certs, _)) = &tls {
        tokio::spawn(watch_certificates(certs.clone()));
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let admin_task = tokio::spawn(admin::serve(shield.clone(), admin_listener, stopped(stop_rx.clone())));
    tokio::spawn(async move {
        altoshield::http::shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop_tx.send(true);
    });
    server::serve(shield, listener, tls.map(|(_, c)| c), stopped(stop_rx)).await;
    let _ = admin_task.await;
    Ok(())
}

/// Reloads the serving certificate on SIGHUP and when its files change on disk; new
/// connections get the new certificate, open ones keep theirs.
async fn watch_certificates(certs: Arc<altoshield::tls::ReloadingCert>) {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let result = if forced { certs.reload().map(|()| true) } else { certs.reload_if_changed() };
        match result {
            Ok(true) => tracing::info!("TLS certificate reloaded"),
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "TLS certificate reload failed; keeping the current one"),
        }
    }
}

async fn run_origin(a: OriginArgs) -> Result<(), Failure> {
    let source = match a.data {
        Some(dir) => DataSource::Dir(dir),
        None => DataSource::Generate {
            pids: a.pids as usize,
            prefixes_per_pid: a.prefixes_per_pid as usize,
            seed: a.seed,
        },
    };
    if let Some(url) = &a.public_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(usage(format!("--public-url `{url}` must start with http:// or https://")));
        }
    }
    let tls = match (&a.cert, &a.key) {
        (Some(cert), Some(key)) => {
            Some(Arc::new(altoshield::tls::server_config(cert, key, None).map_err(usage)?))
        }
        _ => None,
    };
    let options = OriginOptions {
        source,
        public_url: a.public_url,
        delay: Duration::from_millis(a.delay_ms),
        max_age: a.max_age,
        delegate: a.delegate,
        id_prefix: a.id_prefix,
        faults: Faults {
            http_5xx: a.fault_5xx,
            malformed: a.fault_malformed,
            drop: a.fault_drop,
            hang: a.fault_hang,
            seed: a.fault_seed,
        },
        ecs_deviate: a.ecs_deviate,
        max_body: a.max_body,
        max_ecs_pairs: a.max_ecs_pairs,
    };
    let origin = tokio::task::spawn_blocking(move || Origin::new(options))
        .await
        .map_err(runtime)?
        .map_err(|e| usage(format!("origin data: {e}")))?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .map_err(|e| runtime(format!("cannot listen on {}: {e}", a.listen)))?;
    let local = listener.local_addr().map_err(runtime)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://{local}");
    announce(&format!("origin listening on {base}"));

    let bumper = origin.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(e) = bumper.bump().await {
                tracing::error!(error = %e, "SIGHUP: bump failed");
            }
        }
    });
    origin.run(listener, &base, tls, altoshield::http::shutdown_signal()).await;
    Ok(())
}

async fn run_loadgen(a: LoadgenArgs) -> Result<(), Failure> {
    use altoshield::loadgen::{self, LoadgenError, Policy, Trust};
    let trust = match (a.ca, a.insecure) {
        (Some(ca), _) => Trust::CaFile(ca),
        (None, true) => Trust::Insecure,
        (None, false) => Trust::System,
    };
    let options = loadgen::Options {
        target: a.target,
        peers: a.peers,
        epoch: a.epoch,
        new_per_epoch: a.new_per_epoch,
        policy: match a.policy {
            PolicyArg::All => Policy::All,
            PolicyArg::New => Policy::New,
        },
        max_active: a.max_active,
        max_candidates: a.max_candidates,
        availability: a.availability,
        threshold: a.threshold,
        churn: a.churn,
        map_clients: a.map_clients,
        jitter: a.jitter,
        duration: a.duration,
        epochs: a.epochs,
        max_rate: a.max_rate,
        trust,
        http2: a.http2,
        connections: a.connections,
        streams: a.streams,
        timeout: a.timeout,
        connect_timeout: a.timeout.min(Duration::from_secs(5)),
        seed: a.seed,
        origin_metrics: a.origin_metrics,
        out: a.out,
        progress: true,
        label: None,
    };
    let report = loadgen::run(options).await.map_err(|e| match e {
        LoadgenError::Usage(m) => usage(m),
        other => runtime(other),
    })?;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(report.render().as_bytes());
    let _ = out.flush();
    Ok(())
}

async fn run_demo(a: DemoArgs) -> Result<(), Failure> {
    let options = altoshield::demo::DemoOptions { quick: a.quick, out: a.out };
    let outcome = altoshield::demo::run(options).await.map_err(|e| runtime(format!("demo: {e:#}")))?;
    let errors = outcome.shielded.totals.error_total();
    // The folder is the last line: scripts take it from there.
    announce(&format!("{}\n{}", outcome.table, outcome.folder.display()));
    if errors > 0 {
        return Err(runtime(format!("demo: {errors} errors through the shield (see the table)")));
    }
    Ok(())
}
