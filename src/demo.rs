//! `altoshield demo` (DESIGN §9): what the shield buys, with no setup. In one process, on
//! loopback: a generated reference origin with realistic latency, the shield in front of it
//! over TLS with a self-signed certificate made at start-up, and the same swarm run twice,
//! once directly against the origin and once through the shield; then a side-by-side table and
//! the timeline (CSV and SVG) in a folder.
//!
//! It owns no logic of its own beyond wiring: the origin is [`crate::origin`], the shield
//! [`crate::shield`] and [`crate::server`], the swarm [`crate::loadgen`]. It must not touch the
//! network beyond 127.0.0.1, and it must finish by itself (the swarm is bounded).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

use crate::config::{self, EcsMode};
use crate::loadgen::report::factor;
use crate::loadgen::{self, timeline, Policy, Report, Trust};
use crate::origin::{DataSource, Origin, OriginOptions};
use crate::upstream::{Upstream, UpstreamConfig};

/// Added to every origin answer: a real origin computes, looks up and crosses a network.
pub const ORIGIN_DELAY: Duration = Duration::from_millis(20);
/// How long the shield may take to load the origin's IRD and network map.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The `ecs.mode`s the demo would use, best first; it takes the first the shield accepts.
const PREFERRED_MODES: [EcsMode; 3] = [EcsMode::Auto, EcsMode::Aggregate, EcsMode::Forward];

/// `altoshield demo`'s options (none are needed).
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// A much smaller swarm, for tests.
    pub quick: bool,
    /// Where to write the timeline; default `./altoshield-demo-<date>-<time>/`.
    pub out: Option<PathBuf>,
}

/// What the demo found.
#[derive(Debug)]
pub struct DemoOutcome {
    /// The side-by-side table, ready to print.
    pub table: String,
    /// Holds `timeline.csv`, `timeline.svg`, `cert.pem` and one folder per run.
    pub folder: PathBuf,
    pub direct: Report,
    pub shielded: Report,
    pub mode: EcsMode,
}

/// The swarm both runs use.
#[derive(Debug, Clone, Copy)]
struct Swarm {
    pids: usize,
    peers: usize,
    new_per_epoch: usize,
    map_clients: usize,
    epochs: u32,
    epoch: Duration,
}

const FULL: Swarm = Swarm {
    pids: 50,
    peers: 250,
    new_per_epoch: 5,
    map_clients: 25,
    epochs: 15,
    epoch: Duration::from_secs(1),
};
const QUICK: Swarm = Swarm {
    pids: 10,
    peers: 40,
    new_per_epoch: 3,
    map_clients: 2,
    epochs: 3,
    epoch: Duration::from_millis(500),
};

/// Runs the demo and returns its table and folder.
pub async fn run(options: DemoOptions) -> anyhow::Result<DemoOutcome> {
    let swarm = if options.quick { QUICK } else { FULL };
    let folder = make_folder(options.out)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // The origin: generated data, a realistic delay, plain HTTP on loopback.
    let origin = tokio::task::spawn_blocking(move || {
        Origin::new(OriginOptions {
            source: DataSource::Generate { pids: swarm.pids, prefixes_per_pid: 10, seed: 1 },
            delay: ORIGIN_DELAY,
            ..OriginOptions::default()
        })
    })
    .await?
    .context("generating the origin's data")?;
    let origin_listener = TcpListener::bind("127.0.0.1:0").await.context("binding the origin")?;
    let origin_url = format!("http://{}", origin_listener.local_addr()?);
    let base = origin_url.clone();
    let origin_task = tokio::spawn({
        let stop = stopped(stop_rx.clone());
        async move { origin.run(origin_listener, &base, None, stop).await }
    });

    // The shield, with a certificate made now and trusted only by this demo's swarm.
    let (cert, tls) = self_signed(&folder)?;
    let mode = best_mode();
    let config = shield_config(mode, &origin_url)?;
    let upstream = Upstream::new(&UpstreamConfig {
        ca: None,
        cert: None,
        key: None,
        connect_timeout: config.origin.connect_timeout,
        timeout: config.origin.timeout,
        max_in_flight: config.origin.max_in_flight,
        max_body: config.origin.max_body,
    })?;
    let shield_listener = TcpListener::bind("127.0.0.1:0").await.context("binding the shield")?;
    let shield_url = format!("https://{}", shield_listener.local_addr()?);
    let shield = crate::shield::Shield::new(config, shield_url.clone(), upstream);
    let maintain = tokio::spawn(crate::shield::maintain(shield.clone()));
    let server_task =
        tokio::spawn(crate::server::serve(shield.clone(), shield_listener, Some(tls), stopped(stop_rx)));
    let ready = async {
        while !shield.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(READY_TIMEOUT, ready)
        .await
        .map_err(|_| anyhow!("the shield did not load the origin's IRD within {READY_TIMEOUT:?}"))?;

    let metrics = format!("{origin_url}/metrics");
    let run_swarm = |target: String, trust: Trust, label: &str, dir: &str| loadgen::Options {
        target,
        peers: swarm.peers,
        epoch: swarm.epoch,
        epochs: Some(swarm.epochs),
        new_per_epoch: swarm.new_per_epoch,
        policy: Policy::All,
        map_clients: swarm.map_clients,
        connections: 64,
        trust,
        origin_metrics: Some(metrics.clone()),
        out: Some(folder.join(dir)),
        label: Some(label.to_string()),
        ..loadgen::Options::default()
    };
    let direct =
        loadgen::run(run_swarm(format!("{origin_url}/directory"), Trust::System, "direct", "direct"))
            .await
            .context("the swarm against the origin")?;
    let shielded = loadgen::run(run_swarm(
        format!("{shield_url}/directory"),
        Trust::Roots(vec![cert]),
        "through altoshield",
        "through-altoshield",
    ))
    .await
    .context("the swarm through the shield")?;

    let _ = stop_tx.send(true);
    maintain.abort();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let _ = server_task.await;
        let _ = origin_task.await;
    })
    .await;

    write_timeline(&folder, &direct, &shielded)?;
    let table = table(swarm, mode, &direct, &shielded, &folder);
    Ok(DemoOutcome { table, folder, direct, shielded, mode })
}

/// The first of [`PREFERRED_MODES`] that the shield's configuration accepts, so the demo shows
/// the strongest mode this build has.
fn best_mode() -> EcsMode {
    PREFERRED_MODES
        .into_iter()
        .find(|m| config::parse(&config_text(*m, "http://127.0.0.1:1")).is_ok())
        .unwrap_or(EcsMode::Forward)
}

fn config_text(mode: EcsMode, origin_url: &str) -> String {
    format!(
        "[listen]\ntls = false\n\n[origin]\nird = \"{origin_url}/directory\"\n\n[ecs]\nmode = \"{mode}\"\n"
    )
}

/// The shield's configuration: every default, `ecs.mode` as chosen. TLS is set up here rather
/// than from files, so `listen.tls` only matters for the IRD's scheme, given explicitly.
fn shield_config(mode: EcsMode, origin_url: &str) -> anyhow::Result<config::Config> {
    let mut config =
        config::parse(&config_text(mode, origin_url)).map_err(|e| anyhow!("shield config: {e}"))?;
    config.listen.tls = true;
    Ok(config)
}

/// A certificate for `localhost` and `127.0.0.1`, its PEM copy in `folder` (to `curl
/// --cacert` the shield while it runs), and a server config serving it with ALPN h2/http1.1.
fn self_signed(folder: &Path) -> anyhow::Result<(CertificateDer<'static>, Arc<rustls::ServerConfig>)> {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .context("making a self-signed certificate")?;
    std::fs::write(folder.join("cert.pem"), cert.pem())
        .with_context(|| format!("writing {}", folder.join("cert.pem").display()))?;
    let der = cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let mut server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((der, Arc::new(server)))
}

fn make_folder(out: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let folder = match out {
        Some(dir) => dir,
        None => {
            let stamp = timestamp();
            let mut candidate = PathBuf::from(format!("altoshield-demo-{stamp}"));
            let mut n = 2;
            while candidate.exists() {
                candidate = PathBuf::from(format!("altoshield-demo-{stamp}-{n}"));
                n += 1;
            }
            candidate
        }
    };
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    Ok(std::path::absolute(&folder).unwrap_or(folder))
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `timeline.csv` (both runs, a `run` column first) and `timeline.svg` (client load against
/// the origin's load, direct and through the shield).
fn write_timeline(folder: &Path, direct: &Report, shielded: &Report) -> anyhow::Result<()> {
    let mut csv = format!("run,{}\n", timeline::CSV_HEADER);
    for (name, r) in [("direct", direct), ("through-altoshield", shielded)] {
        for (t, s) in r.totals.seconds.iter().enumerate() {
            csv.push_str(name);
            csv.push(',');
            timeline::csv_row(&mut csv, t, s);
        }
    }
    std::fs::write(folder.join("timeline.csv"), csv).context("writing timeline.csv")?;
    let whole = |r: &Report| timeline::whole_seconds(&r.totals.seconds, r.elapsed).to_vec();
    let (direct_s, shielded_s) = (whole(direct), whole(shielded));
    let mut lines = vec![timeline::client_series(&shielded_s, "client requests/s")];
    lines.extend(timeline::origin_series(&direct_s, "origin requests/s, direct"));
    lines.extend(timeline::origin_series(&shielded_s, "origin requests/s, through altoshield"));
    let title = format!("altoshield demo: {} peers, origin load with and without the shield", shielded.peers);
    let svg = timeline::svg(&title, &lines).map_err(|e| anyhow!(e))?;
    std::fs::write(folder.join("timeline.svg"), svg).context("writing timeline.svg")?;
    Ok(())
}

/// The side-by-side table.
fn table(s: Swarm, mode: EcsMode, direct: &Report, shielded: &Report, folder: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "altoshield demo: a generated origin ({} PIDs, +{} ms per answer) on loopback, and the same swarm\n\
         ({} peers, policy all, {} new peers per epoch, {} map clients, {} epochs of {}) run directly\n\
         against it, then through altoshield (TLS, ecs.mode = \"{mode}\", starting with an empty cache).\n",
        s.pids,
        ORIGIN_DELAY.as_millis(),
        direct.peers,
        s.new_per_epoch,
        s.map_clients,
        s.epochs,
        if s.epoch.subsec_millis() == 0 {
            format!("{}s", s.epoch.as_secs())
        } else {
            format!("{}ms", s.epoch.as_millis())
        }
    );
    type Row<'a> = (&'a str, Box<dyn Fn(&Report) -> String>);
    let rows: Vec<Row> = vec![
        ("client requests", Box::new(|r| r.totals.sent_total().to_string())),
        ("  endpoint-cost", Box::new(|r| r.totals.ecs_requests.to_string())),
        ("  maps and IRD", Box::new(|r| (r.totals.sent_total() - r.totals.ecs_requests).to_string())),
        ("client endpoint-cost pairs", Box::new(|r| r.totals.ecs_pairs.to_string())),
        ("origin requests", Box::new(|r| num(r.origin_requests()))),
        ("  endpoint-cost", Box::new(|r| num(r.origin_ecs_requests()))),
        ("  maps and IRD", Box::new(|r| num(origin_maps(r)))),
        ("origin endpoint-cost pairs", Box::new(|r| num(r.origin_ecs_pairs()))),
        ("client p50 ms", Box::new(|r| ms(r.totals.latency_ms(0.5)))),
        ("client p99 ms", Box::new(|r| ms(r.totals.latency_ms(0.99)))),
        ("errors", Box::new(|r| r.totals.error_total().to_string())),
        ("reduction: endpoint-cost requests", Box::new(|r| factor(r.request_reduction()))),
        ("reduction: endpoint-cost pairs", Box::new(|r| factor(r.pair_reduction()))),
        ("reduction: map and IRD requests", Box::new(|r| factor(map_reduction(r)))),
        ("reduction: all requests", Box::new(|r| factor(r.total_reduction()))),
    ];
    let _ = writeln!(out, "{:<36}{:>12}{:>22}", "", "direct", "through altoshield");
    for (name, f) in rows {
        let _ = writeln!(out, "{name:<36}{:>12}{:>22}", f(direct), f(shielded));
    }
    let _ = writeln!(
        out,
        "\n(reduction = what the clients asked / what reached the origin; the timeline, per run and both\n\
         together, is in {})",
        folder.display()
    );
    out
}

/// Origin requests other than endpoint-cost ones: maps and IRDs.
fn origin_maps(r: &Report) -> Option<f64> {
    Some(r.origin_requests()? - r.origin_ecs_requests()?)
}

fn map_reduction(r: &Report) -> Option<f64> {
    let client = (r.totals.sent_total() - r.totals.ecs_requests) as f64;
    origin_maps(r).map(|o| if o > 0.0 { client / o } else { f64::INFINITY })
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_dates() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }

    #[test]
    fn the_chosen_mode_is_accepted_by_the_configuration() {
        let mode = best_mode();
        assert!(shield_config(mode, "http://127.0.0.1:1").is_ok());
    }
}
