//! What a run measured: requests sent by resource, answers and errors by kind, latency in HDR
//! histograms (the whole run, and each second for the timeline), and the origin's counters
//! sampled from its `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Failure, Outcome};

/// Latencies are recorded in microseconds, from 1 µs to an hour, 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How a request failed, as the summary counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    /// An answer with a status other than 2xx or 304.
    Status(u16),
    /// A 200 whose body was not the answer asked for.
    InvalidAnswer,
    Timeout,
    Connect,
    Tls,
    Broken,
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorKind::Status(s) => write!(f, "status {s}"),
            ErrorKind::InvalidAnswer => f.write_str("invalid answer"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Connect => f.write_str("connection failure"),
            ErrorKind::Tls => f.write_str("TLS failure"),
            ErrorKind::Broken => f.write_str("broken connection"),
        }
    }
}

impl ErrorKind {
    pub fn of(failure: &Failure) -> ErrorKind {
        match failure {
            Failure::Connect(_) => ErrorKind::Connect,
            Failure::Tls(_) => ErrorKind::Tls,
            Failure::Timeout => ErrorKind::Timeout,
            Failure::Broken(_) => ErrorKind::Broken,
        }
    }
}

/// One second of the run, for the timeline.
#[derive(Debug, Clone, Default)]
pub struct Second {
    /// Requests finished in this second (answered or failed).
    pub requests: u64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests the origin received in this second (from `--origin-metrics`).
    pub origin_requests: Option<f64>,
    /// Endpoint-cost pairs the origin computed in this second.
    pub origin_pairs: Option<f64>,
}

/// Everything recorded, at the end of a run.
#[derive(Debug, Clone)]
pub struct Totals {
    pub sent: BTreeMap<String, u64>,
    /// Errors by resource.
    pub failed: BTreeMap<String, u64>,
    pub answered: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// First error message of each kind, for the summary.
    pub first_error: BTreeMap<ErrorKind, String>,
    pub ecs_requests: u64,
    pub ecs_pairs: u64,
    pub latency: Histogram<u64>,
    pub seconds: Vec<Second>,
}

/// Shared by every task of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    /// Live figures for the progress bar.
    pub finished: AtomicU64,
    pub failed: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    sent: BTreeMap<String, u64>,
    failed: BTreeMap<String, u64>,
    answered: u64,
    errors: BTreeMap<ErrorKind, u64>,
    first_error: BTreeMap<ErrorKind, String>,
    ecs_requests: u64,
    ecs_pairs: u64,
    latency: Histogram<u64>,
    seconds: Vec<Second>,
    /// The second being filled, and its latencies.
    current: usize,
    current_latency: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // Constant bounds: `new_with_bounds` fails only on bounds like low = 0 or high < 2 * low.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("constant histogram bounds are valid")
}

fn ms(h: &Histogram<u64>, q: f64) -> Option<f64> {
    (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1000.0)
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                sent: BTreeMap::new(),
                failed: BTreeMap::new(),
                answered: 0,
                errors: BTreeMap::new(),
                first_error: BTreeMap::new(),
                ecs_requests: 0,
                ecs_pairs: 0,
                latency: histogram(),
                seconds: Vec::new(),
                current: 0,
                current_latency: histogram(),
            }),
        }
    }

    /// When the run's clock started (second 0 of the timeline).
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Records one request to resource `id` begun at `started`; `ecs_pairs` is `Some` for an
    /// endpoint-cost request (its sources × destinations). Returns the error kind, if any.
    pub fn record(
        &self,
        id: &str,
        started: Instant,
        outcome: &Outcome,
        ecs_pairs: Option<u64>,
    ) -> Option<ErrorKind> {
        let error = match &outcome.result {
            Ok(a) if a.status.is_success() || a.status == http::StatusCode::NOT_MODIFIED => None,
            Ok(a) => Some(ErrorKind::Status(a.status.as_u16())),
            Err(f) => Some(ErrorKind::of(f)),
        };
        let message = || match &outcome.result {
            Ok(a) => format!("{} {}", a.status, String::from_utf8_lossy(&a.body[..a.body.len().min(200)])),
            Err(f) => f.to_string(),
        };
        self.count(id, started, outcome.sent, outcome.result.is_ok(), error, message, ecs_pairs);
        error
    }

    /// Marks an already recorded answer from `id` as invalid (a 200 that is not what was
    /// asked for).
    pub fn invalid_answer(&self, id: &str, detail: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *g.failed.entry(id.to_string()).or_default() += 1;
        *g.errors.entry(ErrorKind::InvalidAnswer).or_default() += 1;
        g.first_error.entry(ErrorKind::InvalidAnswer).or_insert(detail);
        let now = self.start.elapsed().as_secs() as usize;
        g.advance(now);
        if let Some(s) = g.seconds.get_mut(now) {
            s.errors += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        id: &str,
        started: Instant,
        sent: bool,
        answered: bool,
        error: Option<ErrorKind>,
        message: impl FnOnce() -> String,
        ecs_pairs: Option<u64>,
    ) {
        self.finished.fetch_add(1, Ordering::Relaxed);
        if error.is_some() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Read the clock under the lock, so seconds only move forward.
        let now = Instant::now();
        let second = now.duration_since(self.start).as_secs() as usize;
        g.advance(second);
        if sent {
            match g.sent.get_mut(id) {
                Some(n) => *n += 1,
                None => {
                    g.sent.insert(id.to_string(), 1);
                }
            }
            if let Some(pairs) = ecs_pairs {
                g.ecs_requests += 1;
                g.ecs_pairs += pairs;
            }
        }
        if answered {
            g.answered += 1;
            let us = now.duration_since(started).as_micros().clamp(1, u128::from(MAX_LATENCY_US)) as u64;
            let _ = g.latency.record(us);
            let _ = g.current_latency.record(us);
        }
        if let Some(kind) = error {
            *g.failed.entry(id.to_string()).or_default() += 1;
            *g.errors.entry(kind).or_default() += 1;
            g.first_error.entry(kind).or_insert_with(message);
        }
        let slot = &mut g.seconds[second];
        slot.requests += 1;
        slot.errors += u64::from(error.is_some());
    }

    /// Stores the origin's work during second `second` of the run.
    pub fn origin_sample(&self, second: usize, requests: f64, pairs: f64) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.advance(second);
        let s = &mut g.seconds[second];
        s.origin_requests = Some(s.origin_requests.unwrap_or(0.0) + requests);
        s.origin_pairs = Some(s.origin_pairs.unwrap_or(0.0) + pairs);
    }

    /// Everything recorded, with the timeline covering at least `elapsed`.
    pub fn totals(&self, elapsed: Duration) -> Totals {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let last = (elapsed.as_secs_f64().ceil() as usize).max(1) - 1;
        let current = g.current;
        g.advance(last.max(current));
        // The current second stays open (more may finish in it): its figures so far.
        let (p50, p99) = (ms(&g.current_latency, 0.50), ms(&g.current_latency, 0.99));
        let current = g.current;
        if let Some(s) = g.seconds.get_mut(current) {
            s.p50_ms = p50;
            s.p99_ms = p99;
        }
        Totals {
            sent: g.sent.clone(),
            failed: g.failed.clone(),
            answered: g.answered,
            errors: g.errors.clone(),
            first_error: g.first_error.clone(),
            ecs_requests: g.ecs_requests,
            ecs_pairs: g.ecs_pairs,
            latency: g.latency.clone(),
            seconds: g.seconds.clone(),
        }
    }
}

impl Inner {
    /// Makes `second` the current second, closing the ones before it.
    fn advance(&mut self, second: usize) {
        if self.seconds.len() <= second {
            self.seconds.resize_with(second + 1, Second::default);
        }
        if second > self.current {
            self.close_current();
            self.current = second;
        }
    }

    fn close_current(&mut self) {
        let h = std::mem::replace(&mut self.current_latency, histogram());
        if let Some(s) = self.seconds.get_mut(self.current) {
            s.p50_ms = ms(&h, 0.50);
            s.p99_ms = ms(&h, 0.99);
        }
    }
}

impl Totals {
    pub fn sent_total(&self) -> u64 {
        self.sent.values().sum()
    }

    pub fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Latency at quantile `q` in milliseconds, `None` without answers.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        ms(&self.latency, q)
    }

    pub fn max_ms(&self) -> Option<f64> {
        (!self.latency.is_empty()).then(|| self.latency.max() as f64 / 1000.0)
    }
}

/// The origin's counters at one moment, summed by resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OriginCounters {
    /// `altoshield_origin_served_total` by resource.
    pub served: BTreeMap<String, f64>,
    /// `altoshield_origin_ecs_pairs_total` by resource.
    pub pairs: BTreeMap<String, f64>,
}

impl OriginCounters {
    /// Reads the two counters from a Prometheus text exposition; other lines are ignored.
    pub fn parse(text: &str) -> OriginCounters {
        let mut out = OriginCounters::default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let (series, value) = match line.rsplit_once(char::is_whitespace) {
                Some((s, v)) => (s.trim(), v),
                None => continue,
            };
            let Ok(value) = value.parse::<f64>() else { continue };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let target = match name {
                "altoshield_origin_served_total" => &mut out.served,
                "altoshield_origin_ecs_pairs_total" => &mut out.pairs,
                _ => continue,
            };
            let resource = label(labels, "resource").unwrap_or_default();
            *target.entry(resource).or_default() += value;
        }
        out
    }

    // Folded from +0.0: an empty `sum()` of floats is -0.0, which prints as "-0".
    pub fn served_total(&self) -> f64 {
        self.served.values().fold(0.0, |a, b| a + b)
    }

    pub fn pairs_total(&self) -> f64 {
        self.pairs.values().fold(0.0, |a, b| a + b)
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &OriginCounters) -> OriginCounters {
        let diff = |now: &BTreeMap<String, f64>, then: &BTreeMap<String, f64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v != 0.0)
                .collect()
        };
        OriginCounters { served: diff(&self.served, &before.served), pairs: diff(&self.pairs, &before.pairs) }
    }
}

/// The value of label `name` in `a="x",b="y"` (escapes `\"`, `\\`, `\n` undone).
fn label(labels: &str, name: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_counters_parse_and_subtract() {
        let before = OriginCounters::parse(
            "# HELP x\n# TYPE altoshield_origin_served counter\n\
             altoshield_origin_served_total{resource=\"directory\"} 1\n\
             altoshield_origin_served_total{resource=\"endpoint-cost\"} 10\n\
             altoshield_origin_ecs_pairs_total{resource=\"endpoint-cost\"} 200\n",
        );
        let after = OriginCounters::parse(
            "altoshield_origin_served_total{resource=\"directory\"} 1\n\
             altoshield_origin_served_total{resource=\"endpoint-cost\"} 25\n\
             altoshield_origin_served_total{other=\"a,b\",resource=\"we\\\"ird\"} 2\n\
             altoshield_origin_ecs_pairs_total{resource=\"endpoint-cost\"} 500\n\
             unrelated_total 9\n",
        );
        let d = after.since(&before);
        assert_eq!(d.served.get("endpoint-cost"), Some(&15.0));
        assert_eq!(d.served.get("we\"ird"), Some(&2.0));
        assert_eq!(d.served.get("directory"), None);
        assert_eq!(d.pairs_total(), 300.0);
        assert_eq!(after.served_total(), 28.0);
    }

    #[test]
    fn seconds_close_with_their_own_percentiles() {
        let rec = Recorder::new();
        let ok = Outcome {
            sent: true,
            result: Ok(super::super::client::Answer {
                status: http::StatusCode::OK,
                content_type: None,
                etag: None,
                body: bytes::Bytes::new(),
            }),
        };
        rec.record("r", rec.start(), &ok, Some(3));
        let failed = Outcome { sent: false, result: Err(Failure::Connect("refused".into())) };
        rec.record("r", rec.start(), &failed, Some(3));
        let t = rec.totals(Duration::from_millis(2500));
        assert_eq!(t.sent.get("r"), Some(&1), "a request that never left is not sent");
        assert_eq!((t.ecs_requests, t.ecs_pairs), (1, 3));
        assert_eq!(t.errors.get(&ErrorKind::Connect), Some(&1));
        assert_eq!(t.seconds.len(), 3);
        assert_eq!(t.seconds[0].requests, 2);
        assert_eq!(t.seconds[0].errors, 1);
        assert!(t.seconds[0].p50_ms.is_some());
        assert!(t.seconds[1].p50_ms.is_none());
    }
}
