//! The summary of a run, printed on standard output. Scripts rely on two kinds of line (DESIGN
//! §8): `requests sent: N` (every request that left) and `requests sent <resource-id>: N` (one
//! per resource), comparable with an origin's `altoshield_origin_served_total`.

use std::fmt::Write as _;
use std::time::Duration;

use super::stats::{OriginCounters, Totals};
use super::{Options, Plan};

/// What the origin did during the run, from its counters before and after.
#[derive(Debug, Clone)]
pub struct Origin {
    /// Its `/metrics` URL.
    pub url: String,
    /// Counter increases during the run, by resource.
    pub delta: OriginCounters,
}

/// The summary of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: String,
    /// The endpoint cost resource the swarm asked.
    pub ecs_id: String,
    pub network_map_id: String,
    pub peers: usize,
    /// PIDs the peers fall into, when the network map could be indexed.
    pub pids: Option<usize>,
    pub options: Options,
    pub(crate) plan: Plan,
    /// From the first request (the IRD) to the end.
    pub elapsed: Duration,
    /// The swarm itself, after discovery.
    pub swarm_time: Duration,
    pub totals: Totals,
    pub origin: Option<Origin>,
}

impl Report {
    /// Requests per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.totals.sent_total() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Endpoint-cost requests the origin received.
    pub fn origin_ecs_requests(&self) -> Option<f64> {
        self.origin.as_ref().map(|o| o.delta.served.get(&self.ecs_id).copied().unwrap_or(0.0))
    }

    /// Endpoint-cost pairs the origin computed.
    pub fn origin_ecs_pairs(&self) -> Option<f64> {
        self.origin.as_ref().map(|o| o.delta.pairs_total())
    }

    /// Every request the origin received (all resources).
    pub fn origin_requests(&self) -> Option<f64> {
        self.origin.as_ref().map(|o| o.delta.served_total())
    }

    /// Client endpoint-cost requests per origin endpoint-cost request.
    pub fn request_reduction(&self) -> Option<f64> {
        self.origin_ecs_requests().map(|o| ratio(self.totals.ecs_requests as f64, o))
    }

    /// Client pairs per origin pair.
    pub fn pair_reduction(&self) -> Option<f64> {
        self.origin_ecs_pairs().map(|o| ratio(self.totals.ecs_pairs as f64, o))
    }

    /// Every client request per origin request.
    pub fn total_reduction(&self) -> Option<f64> {
        self.origin_requests().map(|o| ratio(self.totals.sent_total() as f64, o))
    }

    /// The swarm's settings on one line.
    pub fn settings(&self) -> String {
        let o = &self.options;
        let pids = self.pids.map(|n| format!(" in {n} PIDs")).unwrap_or_default();
        let pacing = if o.max_rate {
            let rounds = self.plan.epochs.map(|n| format!("{n} rounds, ")).unwrap_or_default();
            format!("max rate: {rounds}at most {}", secs(self.plan.end))
        } else {
            format!(
                "{} epochs of {}, policy {}, {} new peers per epoch, {} map clients",
                self.plan.epochs.unwrap_or(super::DEFAULT_EPOCHS),
                secs(o.epoch),
                o.policy.as_str(),
                o.new_per_epoch,
                o.map_clients
            )
        };
        let proto = if o.http2 {
            format!("HTTP/2, {} connections x {} streams", o.connections, o.streams)
        } else {
            format!("HTTP/1.1, {} connections", o.connections)
        };
        format!("{} peers{pids}; {pacing}; {proto}", self.peers)
    }

    /// The title of the timeline chart.
    pub fn chart_title(&self) -> String {
        format!("altoshield loadgen: {} peers against {}", self.peers, self.target)
    }

    /// The summary printed at the end of `altoshield loadgen`.
    pub fn render(&self) -> String {
        let t = &self.totals;
        let mut out = String::new();
        let _ = writeln!(out, "target: {}", self.target);
        let _ = writeln!(out, "swarm: {}", self.settings());
        let _ = writeln!(out, "ran: {} (swarm {})", secs(self.elapsed), secs(self.swarm_time));
        let _ = writeln!(out);
        let width = t.sent.keys().map(String::len).max().unwrap_or(0).max(8);
        let _ = writeln!(out, "{:<width$}  {:>10}  {:>8}", "resource", "sent", "errors");
        for (id, n) in &t.sent {
            let errors = t.failed.get(id).copied().unwrap_or(0);
            let _ = writeln!(out, "{id:<width$}  {n:>10}  {errors:>8}");
        }
        for (id, errors) in t.failed.iter().filter(|(id, _)| !t.sent.contains_key(*id)) {
            let _ = writeln!(out, "{id:<width$}  {:>10}  {errors:>8}", 0);
        }
        let _ = writeln!(out, "{:<width$}  {:>10}  {:>8}", "total", t.sent_total(), t.error_total());
        let _ = writeln!(out);
        let _ = writeln!(out, "requests sent: {}", t.sent_total());
        for (id, n) in &t.sent {
            let _ = writeln!(out, "requests sent {id}: {n}");
        }
        let _ = writeln!(out, "requests/s: {:.1}", self.rate());
        let q = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
        let _ = writeln!(
            out,
            "latency ms: p50 {}  p90 {}  p99 {}  max {}",
            q(t.latency_ms(0.50)),
            q(t.latency_ms(0.90)),
            q(t.latency_ms(0.99)),
            q(t.max_ms())
        );
        let _ = writeln!(out, "endpoint-cost requests: {}, pairs asked: {}", t.ecs_requests, t.ecs_pairs);
        let _ = writeln!(out, "errors: {}", t.error_total());
        for (kind, n) in &t.errors {
            let first = t.first_error.get(kind).map(|m| one_line(m, 160)).unwrap_or_default();
            let _ = writeln!(out, "  {kind}: {n} (first: {first})");
        }
        if let Some(o) = &self.origin {
            let _ = writeln!(out);
            let _ = writeln!(out, "origin during the run ({}):", o.url);
            for (id, n) in &o.delta.served {
                let _ = writeln!(out, "  served {id}: {n:.0}");
            }
            let _ = writeln!(out, "  requests: {:.0}", o.delta.served_total());
            let _ =
                writeln!(out, "  endpoint-cost requests: {:.0}", self.origin_ecs_requests().unwrap_or(0.0));
            let _ = writeln!(out, "  endpoint-cost pairs: {:.0}", o.delta.pairs_total());
            let _ = writeln!(
                out,
                "reduction: endpoint-cost requests {} (client {} / origin {:.0}), pairs {} (client {} / origin {:.0})",
                factor(self.request_reduction()),
                t.ecs_requests,
                self.origin_ecs_requests().unwrap_or(0.0),
                factor(self.pair_reduction()),
                t.ecs_pairs,
                o.delta.pairs_total()
            );
        }
        out
    }
}

fn ratio(client: f64, origin: f64) -> f64 {
    if origin > 0.0 {
        client / origin
    } else if client > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// `12.3x`, or `inf` when the origin saw none.
pub fn factor(f: Option<f64>) -> String {
    match f {
        Some(f) if f.is_infinite() => "inf (origin saw none)".into(),
        Some(f) => format!("{f:.2}x"),
        None => "-".into(),
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 && (s - s.round()).abs() < 1e-9 {
        format!("{s:.0}s")
    } else if s >= 1.0 {
        format!("{s:.1}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if flat.chars().count() > max {
        flat.chars().take(max).collect::<String>() + "…"
    } else {
        flat
    }
}
