//! Latency of the endpoint-cost levels, end to end over TLS on loopback: what one client waits
//! for an answer from each level of DESIGN §5, one request at a time on one keep-alive HTTP/1.1
//! connection (light load: the shield has nothing else to do).
//!
//! - an exact-cache hit (the same request again), in `forward` and in `aggregate`;
//! - an answer assembled entirely from the pair cache (`aggregate`): each request a different
//!   20-destination subset of 60 destinations whose pairs are cached, so never an exact hit;
//!   numerical, and ordinal ranked locally (`ecs.rank_locally = true`);
//! - a synthesized answer (`synthesize`): a new source each time;
//! - a lone miss (a new source each time, all 20 pairs missing): `forward`, `aggregate` without
//!   a merge window, and `aggregate` with `ecs.merge_window = "2ms"`; for the aggregate ones the
//!   shield's own `altoshield_ecs_merge_wait_seconds` says how long the misses queued.
//!
//! Besides the client's latency, the shield's own CPU time per request (from
//! `/proc/<pid>/task/*/schedstat`) says what each level costs the shield, free of the loopback
//! and scheduling noise that the two share on a small machine.
//!
//! Each answer's `Cache-Status` is checked against the level the case claims to measure, and
//! every answer must be a 200: a fast error must never look like a fast answer.
//!
//! `cargo bench --bench ecs_latency` (`BENCH_ROUNDS=500` for a quick run; default 2,000 per
//! case; `BENCH_CASES=miss` runs the cases whose name contains `miss`). Everything binds and connects to 127.0.0.1 only.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use altoshield::rng::SplitMix64;
use serde_json::{json, Value};
use support::*;

const DESTINATIONS: usize = 20;
const CANDIDATES: usize = 60;
const WINDOW: &str = "2ms";

/// What the shield must say it did for a case's requests.
#[derive(Clone, Copy)]
enum Level {
    Hit,
    Local,
    Miss,
    Aggregated,
}

impl Level {
    fn matches(self, cache_status: &str) -> bool {
        match self {
            Level::Hit => cache_status.starts_with("altoshield; hit; ttl="),
            Level::Local => cache_status == "altoshield; hit; detail=local",
            Level::Miss => cache_status.contains("fwd=miss") && cache_status.contains("stored"),
            Level::Aggregated => cache_status.contains("detail=aggregated"),
        }
    }
}

struct Case {
    name: &'static str,
    ecs: &'static [(&'static str, &'static str)],
    level: Level,
    /// The body of measured request `i` (after the case's warm-up).
    make: fn(&mut Requests, usize) -> Value,
    /// Requests sent before measuring (to fill the pair cache).
    warm: fn(&mut Requests) -> Vec<Value>,
}

/// Addresses for the requests, and the subsets already sent (so a pair-cache case never repeats
/// a request and becomes an exact hit).
struct Requests {
    rng: SplitMix64,
    candidates: Vec<String>,
    sent: HashSet<Vec<usize>>,
}

impl Requests {
    fn new() -> Requests {
        let candidates =
            (0..CANDIDATES).map(|i| format!("ipv4:172.{}.{}.9", 16 + i / 200, i % 200)).collect();
        Requests { rng: SplitMix64::new(7), candidates, sent: HashSet::new() }
    }

    fn first(&self) -> Vec<String> {
        self.candidates[..DESTINATIONS].to_vec()
    }

    /// A `DESTINATIONS`-subset of the candidates never sent before.
    fn fresh_subset(&mut self) -> Vec<String> {
        loop {
            let mut picked: Vec<usize> = Vec::with_capacity(DESTINATIONS);
            while picked.len() < DESTINATIONS {
                let i = self.rng.below(CANDIDATES as u64) as usize;
                if !picked.contains(&i) {
                    picked.push(i);
                }
            }
            let mut key = picked.clone();
            key.sort_unstable();
            if self.sent.insert(key) {
                return picked.into_iter().map(|i| self.candidates[i].clone()).collect();
            }
        }
    }
}

fn body(mode: &str, src: &str, dsts: &[String]) -> Value {
    json!({"cost-type": cost_type("routingcost", mode), "endpoints": {"srcs": [src], "dsts": dsts}})
}

/// A source never used before: request `i`'s own.
fn new_source(i: usize) -> String {
    format!("ipv4:10.{}.{}.{}", i / 60_000, (i / 240) % 250, 1 + i % 240)
}

const SOURCE: &str = "ipv4:192.168.7.7";

fn nothing(_: &mut Requests) -> Vec<Value> {
    Vec::new()
}

fn same_request(r: &mut Requests) -> Vec<Value> {
    vec![body("numerical", SOURCE, &r.first())]
}

fn all_candidates(r: &mut Requests) -> Vec<Value> {
    vec![body("numerical", SOURCE, &r.candidates)]
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "exact-cache hit (forward)",
            ecs: &[("ecs.mode", "\"forward\"")],
            level: Level::Hit,
            make: |r, _| body("numerical", SOURCE, &r.first()),
            warm: same_request,
        },
        Case {
            name: "exact-cache hit (aggregate)",
            ecs: &[("ecs.mode", "\"aggregate\"")],
            level: Level::Hit,
            make: |r, _| body("numerical", SOURCE, &r.first()),
            warm: same_request,
        },
        Case {
            name: "exact-cache hit, destinations reordered (aggregate)",
            ecs: &[("ecs.mode", "\"aggregate\"")],
            level: Level::Hit,
            make: |r, _| {
                let mut dsts = r.first();
                for i in (1..dsts.len()).rev() {
                    dsts.swap(i, r.rng.below(i as u64 + 1) as usize);
                }
                body("numerical", SOURCE, &dsts)
            },
            warm: same_request,
        },
        Case {
            name: "all pairs from the pair cache, numerical",
            ecs: &[("ecs.mode", "\"aggregate\"")],
            level: Level::Local,
            make: |r, _| {
                let dsts = r.fresh_subset();
                body("numerical", SOURCE, &dsts)
            },
            warm: all_candidates,
        },
        Case {
            name: "all pairs from the pair cache, ordinal ranked",
            ecs: &[("ecs.mode", "\"aggregate\""), ("ecs.rank_locally", "true")],
            level: Level::Local,
            make: |r, _| {
                let dsts = r.fresh_subset();
                body("ordinal", SOURCE, &dsts)
            },
            warm: all_candidates,
        },
        Case {
            name: "synthesized (new source)",
            ecs: &[("ecs.mode", "\"synthesize\"")],
            level: Level::Local,
            make: |r, i| body("numerical", &new_source(i), &r.first()),
            warm: nothing,
        },
        Case {
            name: "lone miss (forward)",
            ecs: &[("ecs.mode", "\"forward\"")],
            level: Level::Miss,
            make: |r, i| body("numerical", &new_source(i), &r.first()),
            warm: nothing,
        },
        Case {
            name: "lone miss (aggregate, no window)",
            ecs: &[("ecs.mode", "\"aggregate\"")],
            level: Level::Aggregated,
            make: |r, i| body("numerical", &new_source(i), &r.first()),
            warm: nothing,
        },
        Case {
            name: "lone miss (aggregate, window 2ms)",
            ecs: &[("ecs.mode", "\"aggregate\""), ("ecs.merge_window", "\"2ms\"")],
            level: Level::Aggregated,
            make: |r, i| body("numerical", &new_source(i), &r.first()),
            warm: nothing,
        },
    ]
}

struct Measured {
    name: &'static str,
    sorted: Vec<Duration>,
    /// The shield's CPU time per request, in µs.
    cpu_us: Option<f64>,
    /// Mean and largest-bucket bound of the shield's merge-wait histogram, when it saw misses.
    merge_wait: Option<(f64, f64)>,
}

/// CPU time used so far by every live thread of process `pid`, in ns.
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let used = |task: std::fs::DirEntry| -> Option<u64> {
        std::fs::read_to_string(task.path().join("schedstat")).ok()?.split_whitespace().next()?.parse().ok()
    };
    Some(tasks.flatten().filter_map(used).sum())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Upper bound of the highest non-empty bucket of histogram `name`.
fn highest_bucket(metrics: &str, name: &str) -> Option<f64> {
    let bucket = format!("{name}_bucket");
    let mut last_count = 0.0;
    let mut highest = None;
    for s in parse_samples(metrics).into_iter().filter(|s| s.name == bucket) {
        let le = s.labels.iter().find(|(k, _)| k == "le").map(|(_, v)| v.clone())?;
        if s.value > last_count {
            highest = Some(le.parse::<f64>().unwrap_or(f64::INFINITY));
        }
        last_count = s.value;
    }
    highest
}

async fn run(case: &Case, origin: &Origin, cert: &TestCert, rounds: usize) -> Measured {
    let mut config = ShieldConfig::new(&origin.directory_url()).tls(cert);
    for (k, v) in case.ecs {
        config = config.raw(k, v);
    }
    let shield = Shield::start_ready(&config).await;
    let client = TestClient::tls(Proto::Http1, cert);
    let dir = Directory::fetch(&client, &shield.directory_url()).await;
    let id = dir.find_one(ENDPOINT_COST, Some(ENDPOINT_COST_PARAMS));
    let mut requests = Requests::new();
    // The network and cost maps are loaded by the first endpoint-cost request in every mode.
    let mut warm = (case.warm)(&mut requests);
    warm.push(body("numerical", "ipv4:192.168.200.1", &requests.first()));
    for b in warm {
        let r = post_to(&client, &dir, &id, &b).await;
        assert_eq!(r.status, 200, "{}: warm-up {b}: {}", case.name, r.describe());
    }
    let before = shield.metrics().await;
    let cpu_before = cpu_ns(shield.process.pid());
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let b = (case.make)(&mut requests, i);
        let started = Instant::now();
        let r = post_to(&client, &dir, &id, &b).await;
        samples.push(started.elapsed());
        assert_eq!(r.status, 200, "{}: {b}: {}", case.name, r.describe());
        let status = r.header("cache-status").unwrap_or_default();
        assert!(case.level.matches(status), "{}: request {i} answered `{status}`", case.name);
    }
    let cpu = cpu_ns(shield.process.pid()).zip(cpu_before).map(|(a, b)| (a - b) as f64 / 1e3 / rounds as f64);
    let after = shield.metrics().await;
    let wait = "altoshield_ecs_merge_wait_seconds";
    let delta = |suffix: &str| {
        let name = format!("{wait}_{suffix}");
        metric(&after, &name, &[]) - metric(&before, &name, &[])
    };
    let merge_wait = match delta("count") {
        n if n > 0.0 => Some((delta("sum") / n, highest_bucket(&after, wait).unwrap_or(f64::NAN))),
        _ => None,
    };
    samples.sort_unstable();
    Measured { name: case.name, sorted: samples, cpu_us: cpu, merge_wait }
}

fn main() {
    let rounds = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000usize).max(10);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        // 200 PIDs × 20 prefixes; no added origin latency, so a miss shows the shield's own work.
        let origin = Origin::start(&["--generate", "--pids", "200", "--prefixes-per-pid", "20"]);
        let cert = TestCert::new();
        let mut results = Vec::new();
        let only = std::env::var("BENCH_CASES").unwrap_or_default();
        for case in cases().into_iter().filter(|c| c.name.contains(only.as_str())) {
            eprintln!("measuring: {} ({rounds} requests)", case.name);
            results.push(run(&case, &origin, &cert, rounds).await);
        }
        println!();
        println!("endpoint-cost latency by level: 1 × {DESTINATIONS} pairs, TLS, HTTP/1.1, one connection, {rounds} requests each");
        println!(
            "{:<48} {:>9} {:>9} {:>9} {:>12}   merge wait (mean / highest bucket)",
            "level", "p50 µs", "p90 µs", "p99 µs", "shield CPU µs"
        );
        for m in &results {
            let wait = m.merge_wait.map_or(String::new(), |(mean, top)| {
                format!("{:.1} µs / ≤ {:.0} µs", mean * 1e6, top * 1e6)
            });
            let cpu = m.cpu_us.map_or("?".to_string(), |c| format!("{c:.0}"));
            println!(
                "{:<48} {:>9.0} {:>9.0} {:>9.0} {cpu:>12}   {wait}",
                m.name,
                us(quantile(&m.sorted, 0.5)),
                us(quantile(&m.sorted, 0.9)),
                us(quantile(&m.sorted, 0.99)),
            );
        }
        let p50 = |name: &str| results.iter().find(|m| m.name == name).map(|m| us(quantile(&m.sorted, 0.5)));
        if let (Some(hit), Some(parsed), Some(pairs), Some(ranked)) = (
            p50("exact-cache hit (aggregate)"),
            p50("exact-cache hit, destinations reordered (aggregate)"),
            p50("all pairs from the pair cache, numerical"),
            p50("all pairs from the pair cache, ordinal ranked"),
        ) {
            println!(
                "pair-cache answer (p50) over an exact hit of a new body: numerical +{:.0} µs, ordinal +{:.0} µs; \
                 over a repeated body: +{:.0} µs, +{:.0} µs",
                pairs - parsed,
                ranked - parsed,
                pairs - hit,
                ranked - hit
            );
        }
        if let (Some(fwd), Some(agg), Some(win)) = (
            p50("lone miss (forward)"),
            p50("lone miss (aggregate, no window)"),
            p50("lone miss (aggregate, window 2ms)"),
        ) {
            println!(
                "lone miss over forward (p50): aggregate +{:.0} µs, with a {WINDOW} window +{:.0} µs",
                agg - fwd,
                win - fwd
            );
        }
    });
}
