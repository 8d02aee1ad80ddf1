//! End-to-end load benchmark of `altoshield serve` over TLS, with a Rust load client (so the
//! client is not the bottleneck):
//!
//! 1. starts a generated reference origin (200 PIDs × 20 prefixes, 20 ms added to every ALTO
//!    answer) and a shield in front of it (TLS with a throw-away certificate), both on ephemeral
//!    loopback ports, and finds the resources through the shield's IRD as a client would;
//! 2. for HTTP/1.1 (64 connections, one request at a time each) and HTTP/2 (16 connections × 4
//!    concurrent streams): back-to-back cached network-map GETs and cached endpoint-cost POSTs for
//!    `BENCH_SECONDS` (default 8) after a 1 s warm-up, every latency in an HDR histogram;
//! 3. three herds of 1,000 identical endpoint-cost POSTs on a cold key, each on its own
//!    HTTP/1.1 connection, released together by a barrier: origin requests per herd (from the
//!    origin's counter), client latency, the shield's `altoshield_coalesced_wait_seconds`, and
//!    what coalescing adds on top of the origin's own 20 ms; each herd is then re-sent twice on
//!    the same connections, now cached (the first is the baseline, the second a diagnostic), with
//!    the CPU the shield and the bench used in each round;
//! 4. stops both servers and prints a summary.
//!
//! Any non-200 answer, transport error, wrong HTTP version or unexpected body fails the run:
//! a fast error must never look like a fast answer.
//!
//! `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench shield` (`BENCH_SECONDS=2` for a
//! quick run). Everything binds and connects to 127.0.0.1 only.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

/// The binary under test (built in release by `cargo bench`).
const BIN: &str = env!("CARGO_BIN_EXE_altoshield");

const ORIGIN_DELAY_MS: u64 = 20;
const H1_CONNECTIONS: usize = 64;
const H2_CONNECTIONS: usize = 16;
const H2_STREAMS: usize = 4;
const HERD_SIZE: usize = 1000;
const HERDS: usize = 3;
const ECS_DESTINATIONS: usize = 40;
const WARMUP: Duration = Duration::from_secs(1);
/// Bound on one client call (connect, send, whole body received).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one whole herd (connecting, cold round, cached round).
const HERD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// File descriptors the bench process needs besides the herd's connections.
const FD_RESERVE: u64 = 128;

const DIRECTORY: &str = "application/alto-directory+json";
const NETWORK_MAP: &str = "application/alto-networkmap+json";
const ENDPOINT_COST: &str = "application/alto-endpointcost+json";
const ENDPOINT_COST_PARAMS: &str = "application/alto-endpointcostparams+json";
const ALTO_ERROR: &str = "application/alto-error+json";

const WAIT_METRIC: &str = "altoshield_coalesced_wait_seconds";
const SERVED_METRIC: &str = "altoshield_origin_served_total";
const FETCH_METRIC: &str = "altoshield_origin_request_duration_seconds";

// ---------------------------------------------------------------------------------------------
// Child processes and temporary files
// ---------------------------------------------------------------------------------------------

/// A running server, killed (by PID) when dropped, also when the bench panics; its standard
/// error is kept (the last 64 KiB) and printed on a panic.
struct Server {
    name: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
}

impl Server {
    fn spawn(name: &'static str, args: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN} {args:?}: {e}"));
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let mut err = child.stderr.take().expect("stderr pipe");
        let keep = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                k.extend(&buf[..n]);
                let excess = k.len().saturating_sub(64 * 1024);
                k.drain(..excess);
            }
        });
        let out = child.stdout.take().expect("stdout pipe");
        let (tx, lines) = mpsc::channel();
        // Drains standard output for the whole life of the child, so it never blocks on a pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        Server { name, child, lines, stderr }
    }

    fn stderr_text(&self) -> String {
        let k = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&k.iter().copied().collect::<Vec<u8>>()).into_owned()
    }

    /// Waits for a start-up line starting with `prefix`; returns the URL after it.
    fn startup_url(&self, prefix: &str, deadline: Instant) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    return line[prefix.len()..].trim().trim_end_matches('/').to_string();
                }
                Ok(_) => {}
                Err(e) => panic!(
                    "{}: no start-up line `{prefix}…` ({e:?}); stderr:\n{}",
                    self.name,
                    self.stderr_text()
                ),
            }
        }
    }

    /// SIGTERM, then up to [`STOP_GRACE`] to exit, then SIGKILL. Says how it ended.
    fn stop(&mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had already exited ({status})");
        }
        let t0 = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        while t0.elapsed() < STOP_GRACE {
            if let Ok(Some(status)) = self.child.try_wait() {
                return format!("exited after SIGTERM in {:.0} ms ({status})", ms(t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!("did not exit within {STOP_GRACE:?} of SIGTERM: killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = self.stderr_text();
            let mut start = text.len().saturating_sub(6000);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            eprintln!("---- {} stderr (last part) ----\n{}\n---- end ----", self.name, &text[start..]);
        }
    }
}

/// A fresh temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("altoshield-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p.to_str().expect("utf-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The soft limit on open files of this process, from `/proc/self/limits`.
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Http1,
    Http2,
}

impl Proto {
    fn label(self) -> &'static str {
        match self {
            Proto::Http1 => "HTTP/1.1",
            Proto::Http2 => "HTTP/2",
        }
    }

    fn version(self) -> Version {
        match self {
            Proto::Http1 => Version::HTTP_11,
            Proto::Http2 => Version::HTTP_2,
        }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;
type PlainClient = Client<HttpConnector, Full<Bytes>>;

/// A rustls client configuration trusting only `root`, offering the ALPN protocols `alpn`.
fn tls_config(root: &rustls::pki_types::CertificateDer<'static>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    store.add(root.clone()).expect("add the bench certificate as a root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A pooled HTTPS client speaking only `proto` (ALPN `http/1.1` or `h2`); `tls` has no ALPN list.
fn https_client(tls: &rustls::ClientConfig, proto: Proto) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls.clone()).https_only();
    let connector = match proto {
        Proto::Http1 => builder.enable_http1().wrap_connector(http),
        Proto::Http2 => builder.enable_http2().wrap_connector(http),
    };
    Client::builder(TokioExecutor::new()).http2_only(proto == Proto::Http2).build(connector)
}

fn plain_client() -> PlainClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(http)
}

/// One request, prepared once and sent many times.
#[derive(Clone)]
struct Call {
    method: Method,
    uri: Uri,
    content_type: Option<HeaderValue>,
    accept: HeaderValue,
    body: Bytes,
}

impl Call {
    fn get(uri: &str, media_type: &str) -> Call {
        Call {
            method: Method::GET,
            uri: uri.parse().unwrap_or_else(|e| panic!("bad URI {uri}: {e}")),
            content_type: None,
            accept: HeaderValue::from_str(&format!("{media_type},{ALTO_ERROR}")).expect("accept"),
            body: Bytes::new(),
        }
    }

    fn post(uri: &str, content_type: &str, media_type: &str, body: &Value) -> Call {
        Call {
            method: Method::POST,
            content_type: Some(HeaderValue::from_str(content_type).expect("content-type")),
            body: Bytes::from(serde_json::to_vec(body).expect("serialise")),
            ..Call::get(uri, media_type)
        }
    }

    /// The request for a pooled client (absolute URI).
    fn request(&self) -> Request<Full<Bytes>> {
        self.build(Request::builder().uri(self.uri.clone()))
    }

    /// The request for a hand-opened connection: origin-form and `Host` for HTTP/1.1, the
    /// absolute URI (`:scheme`, `:authority`) for HTTP/2.
    fn request_on(&self, proto: Proto) -> Request<Full<Bytes>> {
        match proto {
            Proto::Http1 => {
                let path = self.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let host = self.uri.authority().map(|a| a.as_str()).unwrap_or("127.0.0.1");
                self.build(Request::builder().uri(path).header(http::header::HOST, host))
            }
            Proto::Http2 => self.build(Request::builder().uri(self.uri.clone()).version(Version::HTTP_2)),
        }
    }

    fn build(&self, mut req: http::request::Builder) -> Request<Full<Bytes>> {
        req = req.method(self.method.clone());
        let headers = req.headers_mut().expect("request builder");
        headers.insert(ACCEPT, self.accept.clone());
        if let Some(ct) = &self.content_type {
            headers.insert(CONTENT_TYPE, ct.clone());
        }
        req.body(Full::new(self.body.clone())).expect("request")
    }
}

/// An answer, fully received.
struct Answer {
    status: StatusCode,
    version: Version,
    /// The `Cache-Status` header, if any.
    cache_status: Option<String>,
    body: Bytes,
}

impl Answer {
    fn describe(&self) -> String {
        let n = self.body.len().min(300);
        format!(
            "{} {:?} cache-status={:?} body={}",
            self.status,
            self.version,
            self.cache_status,
            String::from_utf8_lossy(&self.body[..n])
        )
    }
}

async fn receive(resp: Result<http::Response<hyper::body::Incoming>, String>) -> Result<Answer, String> {
    let (parts, body) = resp?.into_parts();
    let body = body.collect().await.map_err(|e| error_chain(&e))?.to_bytes();
    let cache_status = parts.headers.get("cache-status").and_then(|v| v.to_str().ok()).map(String::from);
    Ok(Answer { status: parts.status, version: parts.version, cache_status, body })
}

/// Sends `req` on a pooled client and receives the whole answer, bounded by [`REQUEST_TIMEOUT`].
async fn send<C>(client: &Client<C, Full<Bytes>>, req: Request<Full<Bytes>>) -> Result<Answer, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let work = async { receive(client.request(req).await.map_err(|e| error_chain(&e))).await };
    tokio::time::timeout(REQUEST_TIMEOUT, work).await.unwrap_or_else(|_| Err("timed out".into()))
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// `GET url` on a plain-HTTP client, asserting a 200; the body as text.
async fn get_text(client: &PlainClient, url: &str) -> String {
    let req = Request::get(url).body(Full::new(Bytes::new())).expect("request");
    let a = send(client, req).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(a.status, StatusCode::OK, "GET {url}: {}", a.describe());
    String::from_utf8_lossy(&a.body).into_owned()
}

/// The first word of the `altoshield` entry of `Cache-Status`: `hit`, `collapsed` or `miss`.
fn outcome(cache_status: Option<&str>) -> String {
    let Some(all) = cache_status else { return "no-cache-status".into() };
    let Some(entry) = all.split(',').map(str::trim).find(|e| e.starts_with("altoshield")) else {
        return "no-cache-status".into();
    };
    let params: Vec<&str> = entry.split(';').skip(1).map(str::trim).collect();
    if params.contains(&"collapsed") {
        "coalesced".into()
    } else if params.contains(&"detail=stale") {
        "stale".into()
    } else if params.contains(&"detail=local") {
        "local".into()
    } else if params.contains(&"hit") {
        "hit".into()
    } else if params.contains(&"fwd=miss") {
        "miss".into()
    } else {
        entry.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(|l| parse_sample(l.trim())).collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let close = inner.find('}')?;
        for pair in inner[..close].split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=')?;
            labels.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
        }
        rest = &inner[close + 1..];
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// The sum of the samples named `name` carrying every label of `labels`; 0 when none exists.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v)))
        .map(|s| s.value)
        .sum()
}

/// A Prometheus histogram: cumulative buckets (upper bound, count), sum and count.
#[derive(Debug, Clone)]
struct PromHistogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl PromHistogram {
    fn parse(text: &str, name: &str) -> PromHistogram {
        let samples = parse_samples(text);
        let mut buckets: Vec<(f64, f64)> = samples
            .iter()
            .filter(|s| s.name == format!("{name}_bucket"))
            .filter_map(|s| {
                let le = s.labels.iter().find(|(k, _)| k == "le")?;
                let bound = if le.1 == "+Inf" { f64::INFINITY } else { le.1.parse().ok()? };
                Some((bound, s.value))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(!buckets.is_empty(), "no `{name}` histogram in the shield's /metrics");
        PromHistogram {
            buckets,
            sum: metric(text, &format!("{name}_sum"), &[]),
            count: metric(text, &format!("{name}_count"), &[]),
        }
    }

    /// What was observed between `before` and `self`.
    fn since(&self, before: &PromHistogram) -> PromHistogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(le, c)| {
                let old = before.buckets.iter().find(|(l, _)| l == le).map(|(_, c)| *c).unwrap_or(0.0);
                (*le, c - old)
            })
            .collect();
        PromHistogram { buckets, sum: self.sum - before.sum, count: self.count - before.count }
    }

    /// The smallest bucket bound holding at least `q` of the observations, and a linear
    /// interpolation inside that bucket; `None` without observations.
    fn quantile(&self, q: f64) -> Option<(f64, f64)> {
        if self.count <= 0.0 {
            return None;
        }
        let want = (q * self.count).ceil();
        let mut prev = (0.0, 0.0);
        for &(le, cum) in &self.buckets {
            if cum >= want {
                if le.is_infinite() {
                    return Some((le, prev.0));
                }
                let inside = cum - prev.1;
                let frac = if inside > 0.0 { (want - prev.1) / inside } else { 1.0 };
                return Some((le, prev.0 + (le - prev.0) * frac));
            }
            prev = (le, cum);
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------------

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(d.as_micros().clamp(1, u64::MAX as u128) as u64);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A latency quantile in milliseconds.
fn q_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What went wrong in a run, kept so that the summary can still be printed.
#[derive(Default)]
struct Failures(Vec<String>);

impl Failures {
    fn add(&mut self, what: String) {
        eprintln!("FAILURE: {what}");
        self.0.push(what);
    }
}

// ---------------------------------------------------------------------------------------------
// Connections opened by hand: exactly one TCP + TLS connection per `Conn`
// ---------------------------------------------------------------------------------------------

/// One client connection: TCP, TLS (ALPN `http/1.1` or `h2`, checked), then HTTP/1.1 or HTTP/2.
/// An HTTP/2 connection is cloned to run concurrent streams on it.
enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Conn {
    /// `tls` must offer exactly the ALPN protocol of `proto`.
    async fn open(addr: SocketAddr, tls: Arc<rustls::ClientConfig>, proto: Proto) -> Result<Conn, String> {
        let work = async {
            let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let want: &[u8] = if proto == Proto::Http1 { b"http/1.1" } else { b"h2" };
            let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            if alpn.as_deref() != Some(want) {
                return Err(format!(
                    "ALPN: the shield chose {:?}, not {:?}",
                    alpn.map(|a| String::from_utf8_lossy(&a).into_owned()),
                    String::from_utf8_lossy(want)
                ));
            }
            let io = TokioIo::new(stream);
            match proto {
                Proto::Http1 => {
                    let (send, conn) = hyper::client::conn::http1::handshake(io)
                        .await
                        .map_err(|e| format!("HTTP/1.1 handshake: {}", error_chain(&e)))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(Conn::H1(send))
                }
                Proto::Http2 => {
                    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .map_err(|e| format!("HTTP/2 handshake: {}", error_chain(&e)))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(Conn::H2(send))
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work).await.unwrap_or_else(|_| Err("connect: timed out".into()))
    }

    /// Another handle on the same HTTP/2 connection; `None` for HTTP/1.1.
    fn stream(&self) -> Option<Conn> {
        match self {
            Conn::H1(_) => None,
            Conn::H2(s) => Some(Conn::H2(s.clone())),
        }
    }

    fn proto(&self) -> Proto {
        match self {
            Conn::H1(_) => Proto::Http1,
            Conn::H2(_) => Proto::Http2,
        }
    }

    /// Sends `call` and receives the whole answer, bounded by [`REQUEST_TIMEOUT`].
    async fn send(&mut self, call: &Call) -> Result<Answer, String> {
        let req = call.request_on(self.proto());
        let work = async {
            let resp = match self {
                Conn::H1(s) => {
                    s.ready().await.map_err(|e| error_chain(&e))?;
                    s.send_request(req).await
                }
                Conn::H2(s) => {
                    s.ready().await.map_err(|e| error_chain(&e))?;
                    s.send_request(req).await
                }
            };
            receive(resp.map_err(|e| error_chain(&e))).await
        };
        tokio::time::timeout(REQUEST_TIMEOUT, work).await.unwrap_or_else(|_| Err("timed out".into()))
    }
}

// ---------------------------------------------------------------------------------------------
// Sustained load: cached answers, many connections, back to back
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct WorkerStats {
    hist: Option<Histogram<u64>>,
    /// Requests started inside the measured window and answered correctly.
    ok: u64,
    /// Requests of the whole run (warm-up included) that got a non-200 answer.
    non_200: u64,
    /// Transport errors, timeouts, wrong HTTP version or a body other than the expected one.
    errors: u64,
    first_problems: Vec<String>,
    outcomes: BTreeMap<String, u64>,
}

impl WorkerStats {
    fn problem(&mut self, what: String) {
        if self.first_problems.len() < 3 {
            self.first_problems.push(what);
        }
    }

    fn merge(&mut self, other: WorkerStats) {
        if let Some(h) = other.hist {
            match &mut self.hist {
                Some(mine) => mine.add(&h).expect("same histogram bounds"),
                None => self.hist = Some(h),
            }
        }
        self.ok += other.ok;
        self.non_200 += other.non_200;
        self.errors += other.errors;
        for p in other.first_problems {
            self.problem(p);
        }
        for (k, v) in other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
    }
}

struct CaseResult {
    name: String,
    connections: usize,
    concurrency: usize,
    window: Duration,
    stats: WorkerStats,
}

impl CaseResult {
    fn rps(&self) -> f64 {
        self.stats.ok as f64 / self.window.as_secs_f64()
    }

    fn hist(&self) -> Histogram<u64> {
        self.stats.hist.clone().unwrap_or_else(new_histogram)
    }

    fn failed(&self) -> bool {
        self.stats.non_200 > 0 || self.stats.errors > 0 || self.stats.ok == 0
    }
}

/// Checks one answer of a sustained case: 200, the expected HTTP version, the expected body.
fn check(
    r: &Result<Answer, String>,
    proto: Proto,
    expected: &Bytes,
    stats: &mut WorkerStats,
) -> Option<String> {
    match r {
        Err(e) => {
            stats.errors += 1;
            stats.problem(format!("error: {e}"));
        }
        Ok(a) if a.status != StatusCode::OK => {
            stats.non_200 += 1;
            stats.problem(a.describe());
        }
        Ok(a) if a.version != proto.version() => {
            stats.errors += 1;
            stats.problem(format!("answered over {:?}, not {:?}", a.version, proto.version()));
        }
        Ok(a) if a.body != *expected => {
            stats.errors += 1;
            stats.problem(format!("a body other than the primed one: {}", a.describe()));
        }
        Ok(a) => return Some(outcome(a.cache_status.as_deref())),
    }
    None
}

/// Sends `call` back to back on `conn` until `end`; stops at the first transport error (the
/// connection is then likely gone, and a spinning loop of errors measures nothing).
async fn worker(
    mut conn: Conn,
    call: Arc<Call>,
    expected: Bytes,
    measure_from: Instant,
    end: Instant,
) -> WorkerStats {
    let proto = conn.proto();
    let mut stats = WorkerStats { hist: Some(new_histogram()), ..Default::default() };
    loop {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        let r = conn.send(&call).await;
        let took = t0.elapsed();
        if let Some(o) = check(&r, proto, &expected, &mut stats) {
            if t0 >= measure_from {
                stats.ok += 1;
                record(stats.hist.as_mut().expect("histogram"), took);
                *stats.outcomes.entry(o).or_default() += 1;
            }
        }
        if r.is_err() {
            break;
        }
    }
    stats
}

/// `connections` connections, `streams` workers on each (1 for HTTP/1.1), sending `call` back
/// to back for a warm-up then `window`.
#[allow(clippy::too_many_arguments)]
async fn sustained(
    name: String,
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    proto: Proto,
    connections: usize,
    streams: usize,
    call: Call,
    window: Duration,
) -> CaseResult {
    assert!(proto == Proto::Http2 || streams == 1, "an HTTP/1.1 connection carries one request at a time");
    let call = Arc::new(call);
    // Open every connection first, with one request each, so that the warm-up is not spent on
    // handshakes.
    let mut priming = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (tls, call) = (Arc::clone(&tls), Arc::clone(&call));
        priming.spawn(async move {
            let mut conn = Conn::open(addr, tls, proto).await?;
            let r = conn.send(&call).await;
            Ok::<_, String>((conn, r))
        });
    }
    let mut conns = Vec::new();
    let mut expected: Option<Bytes> = None;
    let mut stats = WorkerStats::default();
    while let Some(joined) = priming.join_next().await {
        match joined.expect("priming task") {
            Ok((conn, r)) => {
                let body = r.as_ref().ok().map(|a| a.body.clone()).unwrap_or_default();
                let want = expected.get_or_insert_with(|| body.clone()).clone();
                let _ = check(&r, proto, &want, &mut stats);
                if r.is_ok() {
                    conns.push(conn);
                }
            }
            Err(e) => {
                stats.errors += 1;
                stats.problem(format!("opening a connection: {e}"));
            }
        }
    }
    let expected = expected.unwrap_or_default();

    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + window;
    let mut workers = tokio::task::JoinSet::new();
    for conn in conns {
        for _ in 1..streams {
            let extra = conn.stream().expect("an HTTP/2 connection");
            workers.spawn(worker(extra, Arc::clone(&call), expected.clone(), measure_from, end));
        }
        workers.spawn(worker(conn, Arc::clone(&call), expected.clone(), measure_from, end));
    }
    while let Some(joined) = workers.join_next().await {
        stats.merge(joined.expect("worker task"));
    }
    CaseResult { name, connections, concurrency: connections * streams, window, stats }
}

fn print_case(c: &CaseResult) {
    let h = c.hist();
    println!(
        "{:<34} {:>3} conns {:>3} in flight  {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  \
         non-200 {}  errors {}  outcomes {:?}",
        c.name,
        c.connections,
        c.concurrency,
        c.rps(),
        q_ms(&h, 0.50),
        q_ms(&h, 0.99),
        h.max() as f64 / 1000.0,
        c.stats.non_200,
        c.stats.errors,
        c.stats.outcomes
    );
    for p in &c.stats.first_problems {
        println!("    e.g. {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// The herd: identical cold POSTs released together
// ---------------------------------------------------------------------------------------------

/// The rounds of a herd: cold (the figures), cached (the figures' baseline), and cached again (a
/// diagnostic: the same requests a third time).
const ROUNDS: [&str; 3] = ["cold", "cached", "cached again"];

/// What one herd task saw in one round.
#[derive(Default, Clone)]
struct TaskRound {
    /// When the request was sent and when its whole answer was in.
    span: Option<(Instant, Instant)>,
    outcome: Option<String>,
}

/// What the whole herd saw in one round.
struct Round {
    latency: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    /// Last send − first send (how simultaneous the herd really was).
    spread: Duration,
    /// Last answer − first send.
    span: Duration,
    /// CPU time the shield and this process used during the round, in ms.
    shield_cpu_ms: Option<f64>,
    bench_cpu_ms: Option<f64>,
}

impl Round {
    fn of(tasks: &[TaskRound], shield_cpu_ms: Option<f64>, bench_cpu_ms: Option<f64>) -> Round {
        let mut latency = new_histogram();
        let mut outcomes = BTreeMap::new();
        for t in tasks {
            if let Some((a, b)) = t.span {
                record(&mut latency, b - a);
            }
            if let Some(o) = &t.outcome {
                *outcomes.entry(o.clone()).or_default() += 1;
            }
        }
        let spans: Vec<(Instant, Instant)> = tasks.iter().filter_map(|t| t.span).collect();
        let (spread, span) = match (
            spans.iter().map(|s| s.0).min(),
            spans.iter().map(|s| s.0).max(),
            spans.iter().map(|s| s.1).max(),
        ) {
            (Some(first), Some(last_send), Some(last_answer)) => (last_send - first, last_answer - first),
            _ => (Duration::ZERO, Duration::ZERO),
        };
        Round { latency, outcomes, spread, span, shield_cpu_ms, bench_cpu_ms }
    }
}

struct HerdResult {
    index: usize,
    size: usize,
    origin_requests: f64,
    origin_requests_after_all_rounds: f64,
    rounds: Vec<Round>,
    /// Server-side `altoshield_coalesced_wait_seconds` of the cold round.
    waits: PromHistogram,
    /// Server-side `altoshield_origin_request_duration_seconds` of the cold round.
    fetches: PromHistogram,
    /// Opening the herd's connections (TCP + TLS).
    connect_time: Duration,
    problems: usize,
    first_problems: Vec<String>,
}

impl HerdResult {
    fn cold(&self) -> &Histogram<u64> {
        &self.rounds[0].latency
    }

    fn cached(&self) -> &Histogram<u64> {
        &self.rounds[1].latency
    }

    /// The p90 bucket bound of the coalesced waits, in ms.
    fn server_p90_ms(&self) -> Option<f64> {
        self.waits.quantile(0.90).map(|(le, _)| le * 1000.0)
    }

    fn server_p90_interpolated_ms(&self) -> Option<f64> {
        self.waits.quantile(0.90).map(|(_, x)| x * 1000.0)
    }

    fn server_mean_ms(&self) -> Option<f64> {
        (self.waits.count > 0.0).then(|| self.waits.sum / self.waits.count * 1000.0)
    }

    /// The mean time of the shield's origin fetches during the cold round, in ms.
    fn origin_fetch_ms(&self) -> Option<f64> {
        (self.fetches.count > 0.0).then(|| self.fetches.sum / self.fetches.count * 1000.0)
    }

    fn coalescing_adds_server_ms(&self) -> Option<f64> {
        self.server_p90_ms().map(|p| p - ORIGIN_DELAY_MS as f64)
    }

    fn coalescing_adds_client_ms(&self) -> f64 {
        q_ms(self.cold(), 0.90) - q_ms(self.cached(), 0.90) - ORIGIN_DELAY_MS as f64
    }
}

/// CPU time used so far by every live thread of process `pid` (`None`: this process), in ms,
/// from `/proc/<pid>/task/*/schedstat`.
fn cpu_ms(pid: Option<u32>) -> Option<f64> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_string(),
    };
    let mut ns = 0u64;
    for task in std::fs::read_dir(dir).ok()?.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += text.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Some(ns as f64 / 1e6)
}

/// CPU used by (the shield, this process) since `before`.
fn cpu_since(pid: u32, before: (Option<f64>, Option<f64>)) -> (Option<f64>, Option<f64>) {
    let now = (cpu_ms(Some(pid)), cpu_ms(None));
    (now.0.zip(before.0).map(|(a, b)| a - b), now.1.zip(before.1).map(|(a, b)| a - b))
}

/// Checks a herd answer: 200, an endpoint-cost body with one row for the source.
fn check_herd_answer(r: &Result<Answer, String>, source: &str) -> Result<String, String> {
    let a = r.as_ref().map_err(|e| format!("error: {e}"))?;
    if a.status != StatusCode::OK || a.version != Version::HTTP_11 {
        return Err(a.describe());
    }
    let v: Value =
        serde_json::from_slice(&a.body).map_err(|e| format!("not JSON ({e}): {}", a.describe()))?;
    let row = v["endpoint-cost-map"][source].as_object().map(|o| o.len()).unwrap_or(0);
    if row != ECS_DESTINATIONS {
        return Err(format!("{row} costs for {source}, not {ECS_DESTINATIONS}: {}", a.describe()));
    }
    Ok(outcome(a.cache_status.as_deref()))
}

#[derive(Clone)]
struct Endpoints {
    shield_addr: SocketAddr,
    shield_pid: u32,
    origin_metrics: String,
    admin_metrics: String,
    ecs_id: String,
}

async fn wait_all(b: &tokio::sync::Barrier, index: usize, what: &str) {
    if tokio::time::timeout(HERD_TIMEOUT, b.wait()).await.is_err() {
        panic!("herd {index}: {what} did not happen within {HERD_TIMEOUT:?}");
    }
}

/// `size` tasks, each on its own HTTP/1.1 TLS connection, send `call` together, three times
/// (see [`ROUNDS`]); the main task reads the counters around the cold round.
async fn herd(
    index: usize,
    size: usize,
    ends: Endpoints,
    tls: Arc<rustls::ClientConfig>,
    call: Call,
    source: String,
) -> HerdResult {
    let plain = plain_client();
    let served = |text: &str| metric(text, SERVED_METRIC, &[("resource", ends.ecs_id.as_str())]);
    let origin_before = served(&get_text(&plain, &ends.origin_metrics).await);
    let admin_before = get_text(&plain, &ends.admin_metrics).await;
    let waits_before = PromHistogram::parse(&admin_before, WAIT_METRIC);
    let fetches_before = PromHistogram::parse(&admin_before, FETCH_METRIC);

    // `connected`: every task has its own connection. For each round, `go` releases it and
    // `done` says every answer is in; the main task takes part in each, to read counters in
    // between. Every task passes every barrier whatever happened to it, or the others would wait
    // forever.
    let barrier = || Arc::new(tokio::sync::Barrier::new(size + 1));
    let connected = barrier();
    let go: Vec<_> = ROUNDS.iter().map(|_| barrier()).collect();
    let done: Vec<_> = ROUNDS.iter().map(|_| barrier()).collect();
    let call = Arc::new(call);
    let t_connect = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..size {
        let (connected, go, done) = (Arc::clone(&connected), go.clone(), done.clone());
        let (tls, call, source) = (Arc::clone(&tls), Arc::clone(&call), source.clone());
        let addr = ends.shield_addr;
        tasks.spawn(async move {
            let mut rounds = vec![TaskRound::default(); ROUNDS.len()];
            let mut problems = Vec::new();
            let mut conn = match Conn::open(addr, tls, Proto::Http1).await {
                Ok(c) => Some(c),
                Err(e) => {
                    problems.push(e);
                    None
                }
            };
            connected.wait().await;
            for (r, name) in ROUNDS.iter().enumerate() {
                go[r].wait().await;
                if let Some(c) = conn.as_mut() {
                    let t0 = Instant::now();
                    let answer = c.send(&call).await;
                    let t1 = Instant::now();
                    match check_herd_answer(&answer, &source) {
                        Ok(o) => rounds[r] = TaskRound { span: Some((t0, t1)), outcome: Some(o) },
                        Err(e) => problems.push(format!("{name}: {e}")),
                    }
                }
                done[r].wait().await;
            }
            (rounds, problems)
        });
    }

    let mut cpu = Vec::new();
    let mut origin_after_cold = f64::NAN;
    let (mut waits_after, mut fetches_after) = (waits_before.clone(), fetches_before.clone());
    wait_all(&connected, index, "opening every connection").await;
    let connect_time = t_connect.elapsed();
    for (r, name) in ROUNDS.iter().enumerate() {
        // Every task is parked on `go[r]` (or about to be): nothing is running.
        let before = (cpu_ms(Some(ends.shield_pid)), cpu_ms(None));
        wait_all(&go[r], index, &format!("the {name} round's start")).await;
        wait_all(&done[r], index, &format!("the {name} round's end")).await;
        cpu.push(cpu_since(ends.shield_pid, before));
        if r == 0 {
            origin_after_cold = served(&get_text(&plain, &ends.origin_metrics).await);
            let admin_after = get_text(&plain, &ends.admin_metrics).await;
            waits_after = PromHistogram::parse(&admin_after, WAIT_METRIC);
            fetches_after = PromHistogram::parse(&admin_after, FETCH_METRIC);
        }
    }
    let mut per_task = Vec::new();
    while let Some(j) = tasks.join_next().await {
        per_task.push(j.expect("herd task"));
    }
    let rounds = (0..ROUNDS.len())
        .map(|r| {
            let of_round: Vec<TaskRound> = per_task.iter().map(|(rs, _)| rs[r].clone()).collect();
            Round::of(&of_round, cpu[r].0, cpu[r].1)
        })
        .collect();
    let problems: Vec<String> = per_task.into_iter().flat_map(|(_, p)| p).collect();
    HerdResult {
        index,
        size,
        origin_requests: origin_after_cold - origin_before,
        origin_requests_after_all_rounds: served(&get_text(&plain, &ends.origin_metrics).await)
            - origin_before,
        rounds,
        waits: waits_after.since(&waits_before),
        fetches: fetches_after.since(&fetches_before),
        connect_time,
        problems: problems.len(),
        first_problems: problems.into_iter().take(3).collect(),
    }
}

/// Runs `f` as a task on the runtime's workers rather than on the thread of `block_on`: tasks
/// woken from there (a barrier's release) go through the runtime's shared queue, which would
/// spread the herd's start. A panic inside is passed on.
async fn on_worker<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    match tokio::spawn(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("task failed: {e}"),
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "n/a".into())
}

fn print_herd(h: &HerdResult) {
    println!(
        "herd {} ({} POSTs, one HTTP/1.1 TLS connection each, opened in {:.0} ms): origin requests {} \
         (after all rounds {}); problems {}",
        h.index,
        h.size,
        ms(h.connect_time),
        h.origin_requests,
        h.origin_requests_after_all_rounds,
        h.problems
    );
    for (name, r) in ROUNDS.iter().zip(&h.rounds) {
        println!(
            "    {:<13} p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms | sends spread over \
             {:>6.1} ms, last answer after {:>6.1} ms | CPU shield {} ms, bench {} ms | {:?}",
            name,
            q_ms(&r.latency, 0.5),
            q_ms(&r.latency, 0.9),
            q_ms(&r.latency, 0.99),
            r.latency.max() as f64 / 1000.0,
            ms(r.spread),
            ms(r.span),
            fmt_opt(r.shield_cpu_ms),
            fmt_opt(r.bench_cpu_ms),
            r.outcomes
        );
    }
    let nonzero: Vec<String> = {
        let mut prev = 0.0;
        h.waits
            .buckets
            .iter()
            .filter_map(|(le, cum)| {
                let n = cum - prev;
                prev = *cum;
                (n > 0.0).then(|| format!("≤{}ms:{n}", le * 1000.0))
            })
            .collect()
    };
    println!(
        "    server {WAIT_METRIC}: {} observations, mean {} ms, p90 bucket bound {} ms (interpolated {} ms); \
         buckets {}",
        h.waits.count,
        fmt_opt(h.server_mean_ms()),
        fmt_opt(h.server_p90_ms()),
        fmt_opt(h.server_p90_interpolated_ms()),
        nonzero.join(" ")
    );
    println!(
        "    shield→origin fetches in the cold round: {} (mean {} ms; origin delay {ORIGIN_DELAY_MS} ms)",
        h.fetches.count,
        fmt_opt(h.origin_fetch_ms())
    );
    println!(
        "    coalescing adds: server p90 − {ORIGIN_DELAY_MS} ms = {} ms; client cold p90 − cached p90 − \
         {ORIGIN_DELAY_MS} ms = {:.2} ms",
        fmt_opt(h.coalescing_adds_server_ms()),
        h.coalescing_adds_client_ms()
    );
    for p in &h.first_problems {
        println!("    e.g. {p}");
    }
}

// ---------------------------------------------------------------------------------------------
// The network map's IPv4 prefixes and request bodies
// ---------------------------------------------------------------------------------------------

/// The IPv4 prefixes of a network map (the default route excluded), sorted.
fn ipv4_prefixes(map: &Value) -> Vec<(Ipv4Addr, u8)> {
    let mut out = Vec::new();
    for group in map["network-map"].as_object().expect("network map has `network-map`").values() {
        for p in group["ipv4"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let Some((a, l)) = p.split_once('/') else { continue };
            let (Ok(a), Ok(l)) = (a.parse::<Ipv4Addr>(), l.parse::<u8>()) else { continue };
            if (8..=30).contains(&l) {
                out.push((a, l));
            }
        }
    }
    out.sort();
    out
}

/// Host number `n` (≥ 1) inside a prefix.
fn host(prefix: (Ipv4Addr, u8), n: u32) -> Ipv4Addr {
    let size = 1u32 << (32 - prefix.1);
    Ipv4Addr::from(u32::from(prefix.0) + 1 + (n - 1) % (size - 2))
}

fn ecs_body(source: &str, dsts: &[String]) -> Value {
    json!({
        "cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"},
        "endpoints": {"srcs": [source], "dsts": dsts},
    })
}

// ---------------------------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------------------------

fn main() {
    let t_start = Instant::now();
    let secs: u64 = match std::env::var("BENCH_SECONDS") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("BENCH_SECONDS={s:?} is not a whole number")),
        Err(_) => 8,
    };
    assert!((1..=600).contains(&secs), "BENCH_SECONDS must be between 1 and 600");
    let window = Duration::from_secs(secs);

    let herd_size = match open_files_limit() {
        Some(limit) if limit < HERD_SIZE as u64 + FD_RESERVE => {
            let fit = limit.saturating_sub(FD_RESERVE).max(2) as usize;
            println!(
                "NOTE: the open-files soft limit is {limit}: the herd is reduced from {HERD_SIZE} to {fit} \
                 connections (raise it with `ulimit -n` to run the full herd)"
            );
            fit
        }
        Some(limit) => {
            println!("open-files soft limit {limit}: room for a herd of {HERD_SIZE} connections");
            HERD_SIZE
        }
        None => {
            println!("open-files limit unknown (no /proc/self/limits); trying a herd of {HERD_SIZE}");
            HERD_SIZE
        }
    };

    // --- servers ---------------------------------------------------------------------------------
    let dir = TempDir::new();
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate certificate");
    let cert_path = dir.write("cert.pem", cert.pem());
    let key_path = dir.write("key.pem", key_pair.serialize_pem());
    let root = cert.der().clone();

    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let delay = ORIGIN_DELAY_MS.to_string();
    let mut origin = Server::spawn(
        "origin",
        &[
            "origin",
            "--generate",
            "--pids",
            "200",
            "--prefixes-per-pid",
            "20",
            "--seed",
            "1",
            "--delay-ms",
            &delay,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let origin_url = origin.startup_url("origin listening on ", deadline);
    // The shield as the nginx comparison runs it (`forward`: exact cache and coalescing);
    // BENCH_ECS_MODE picks another `ecs.mode`.
    let ecs_mode = std::env::var("BENCH_ECS_MODE").unwrap_or_else(|_| "forward".to_string());
    let config = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\ncert = {}\nkey = {}\n\n[admin]\naddr = \"127.0.0.1:0\"\n\n\
         [origin]\nird = {}\n\n[cache]\ndefault_ttl = \"5m\"\n\n[ecs]\nmode = {}\n",
        toml_str(&cert_path),
        toml_str(&key_path),
        toml_str(&format!("{origin_url}/directory")),
        toml_str(&ecs_mode)
    );
    let config_path = dir.write("shield.toml", &config);
    let mut shield = Server::spawn("shield", &["serve", "--config", &config_path]);
    let shield_url = shield.startup_url("listening on ", deadline);
    let admin_url = shield.startup_url("admin on ", deadline);
    let shield_pid = shield.child.id();
    let shield_addr: SocketAddr = shield_url
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("the shield serves {shield_url}, not https"))
        .parse()
        .expect("shield address");
    println!(
        "origin {origin_url} (pid {}), shield {shield_url} admin {admin_url} (pid {})",
        origin.child.id(),
        shield.child.id()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut failures = Failures::default();
    let (cases, herds) = runtime.block_on(async {
        // --- readiness and discovery ------------------------------------------------------------
        let plain = plain_client();
        let t_ready = Instant::now();
        loop {
            let req = Request::get(format!("{admin_url}/readyz")).body(Full::new(Bytes::new())).expect("request");
            match send(&plain, req).await {
                Ok(a) if a.status == StatusCode::OK => break,
                last if t_ready.elapsed() > READY_TIMEOUT => panic!(
                    "shield not ready within {READY_TIMEOUT:?}; last /readyz: {:?}; stderr:\n{}",
                    last.map(|a| a.describe()),
                    shield.stderr_text()
                ),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        println!("shield ready {:.0} ms after its start-up lines", ms(t_ready.elapsed()));

        let tls_plain = tls_config(&root, &[]);
        let h1 = https_client(&tls_plain, Proto::Http1);
        let get_json = |uri: String, media: &'static str| {
            let h1 = h1.clone();
            async move {
                let a = send(&h1, Call::get(&uri, media).request()).await.unwrap_or_else(|e| panic!("GET {uri}: {e}"));
                assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", a.describe());
                serde_json::from_slice::<Value>(&a.body).unwrap_or_else(|e| panic!("GET {uri}: not JSON: {e}"))
            }
        };
        let ird = get_json(format!("{shield_url}/directory"), DIRECTORY).await;
        let resources = ird["resources"].as_object().expect("IRD has resources");
        let nm_id = ird["meta"]["default-alto-network-map"].as_str().expect("IRD names a default network map");
        let nm_uri = resources[nm_id]["uri"].as_str().expect("network map uri").to_string();
        let ordinal_routingcost = |name: &Value| {
            let t = &ird["meta"]["cost-types"][name.as_str().unwrap_or("")];
            t["cost-metric"] == "routingcost" && t["cost-mode"] == "ordinal"
        };
        let mut ecs: Vec<(&String, &Value)> = resources
            .iter()
            .filter(|(_, e)| e["media-type"] == ENDPOINT_COST && e["accepts"] == ENDPOINT_COST_PARAMS)
            .filter(|(_, e)| {
                e["capabilities"]["cost-type-names"].as_array().into_iter().flatten().any(ordinal_routingcost)
            })
            .collect();
        ecs.sort_by_key(|(id, _)| id.as_str());
        let (ecs_id, ecs_entry) = ecs.first().expect("the IRD offers an ordinal routingcost endpoint cost service");
        let ecs_id = ecs_id.to_string();
        let ecs_uri = ecs_entry["uri"].as_str().expect("ECS uri").to_string();
        println!("network map `{nm_id}` at {nm_uri}; endpoint cost service `{ecs_id}` at {ecs_uri}");

        let map = get_json(nm_uri.clone(), NETWORK_MAP).await;
        let prefixes = ipv4_prefixes(&map);
        assert!(prefixes.len() > 2 * ECS_DESTINATIONS, "only {} IPv4 prefixes in the network map", prefixes.len());
        let step = prefixes.len() / ECS_DESTINATIONS;
        let dsts: Vec<String> =
            (0..ECS_DESTINATIONS).map(|i| format!("ipv4:{}", host(prefixes[i * step], 7))).collect();
        let mut used_sources = HashSet::new();
        let mut fresh_source = |n: usize| {
            let s = format!("ipv4:{}", host(prefixes[(n * 131 + 17) % prefixes.len()], 40 + n as u32));
            assert!(used_sources.insert(s.clone()), "source {s} was used before");
            s
        };
        let warm_body = ecs_body(&fresh_source(0), &dsts);
        let ecs_call = Call::post(&ecs_uri, ENDPOINT_COST_PARAMS, ENDPOINT_COST, &warm_body);
        let nm_call = Call::get(&nm_uri, NETWORK_MAP);
        // Warm both answers once.
        for call in [&nm_call, &ecs_call] {
            let a = send(&h1, call.request()).await.unwrap_or_else(|e| panic!("warming {}: {e}", call.uri));
            assert_eq!(a.status, StatusCode::OK, "warming {}: {}", call.uri, a.describe());
            println!("warmed {} {} ({} bytes, {})", call.method, call.uri, a.body.len(), outcome(a.cache_status.as_deref()));
        }

        // --- sustained cached load --------------------------------------------------------------
        let origin_metrics = format!("{origin_url}/metrics");
        let served_by_origin = |text: &str| {
            [nm_id, ecs_id.as_str()].map(|id| metric(text, SERVED_METRIC, &[("resource", id)]))
        };
        let origin_before = served_by_origin(&get_text(&plain, &origin_metrics).await);
        println!(
            "\nsustained load: {secs} s measured after a {} s warm-up per case; HTTP/1.1 {H1_CONNECTIONS} \
             connections × 1, HTTP/2 {H2_CONNECTIONS} connections × {H2_STREAMS} streams",
            WARMUP.as_secs()
        );
        let tls_h1 = Arc::new(tls_config(&root, &[b"http/1.1"]));
        let tls_h2 = Arc::new(tls_config(&root, &[b"h2"]));
        let mut cases = Vec::new();
        for proto in [Proto::Http1, Proto::Http2] {
            let (conns, streams) =
                if proto == Proto::Http1 { (H1_CONNECTIONS, 1) } else { (H2_CONNECTIONS, H2_STREAMS) };
            for (what, call) in [("network-map GET", &nm_call), ("endpoint-cost POST 1×40", &ecs_call)] {
                let name = format!("{} cached {what}", proto.label());
                let tls = if proto == Proto::Http1 { Arc::clone(&tls_h1) } else { Arc::clone(&tls_h2) };
                let c =
                    on_worker(sustained(name, shield_addr, tls, proto, conns, streams, call.clone(), window)).await;
                print_case(&c);
                if c.failed() {
                    failures.add(format!(
                        "{}: {} non-200, {} errors, {} good answers",
                        c.name, c.stats.non_200, c.stats.errors, c.stats.ok
                    ));
                }
                cases.push(c);
            }
        }
        let origin_after = served_by_origin(&get_text(&plain, &origin_metrics).await);
        println!(
            "origin requests during the sustained cases: `{nm_id}` {}, `{ecs_id}` {}",
            origin_after[0] - origin_before[0],
            origin_after[1] - origin_before[1]
        );

        // --- herds ------------------------------------------------------------------------------
        println!(
            "\nherds: {herd_size} identical endpoint-cost POSTs on a cold key, each on its own HTTP/1.1 TLS \
             connection, released by a barrier; then the same herd again once cached (the baseline), and once more \
             (a diagnostic)"
        );
        let ends = Endpoints {
            shield_addr,
            shield_pid,
            origin_metrics: origin_metrics.clone(),
            admin_metrics: format!("{admin_url}/metrics"),
            ecs_id: ecs_id.clone(),
        };
        let mut herds = Vec::new();
        for i in 1..=HERDS {
            let source = fresh_source(i);
            let call = Call::post(&ecs_uri, ENDPOINT_COST_PARAMS, ENDPOINT_COST, &ecs_body(&source, &dsts));
            let h = on_worker(herd(i, herd_size, ends.clone(), Arc::clone(&tls_h1), call, source)).await;
            print_herd(&h);
            if h.origin_requests != 1.0 || h.origin_requests_after_all_rounds != 1.0 {
                failures.add(format!(
                    "herd {i}: the origin's {SERVED_METRIC} for `{ecs_id}` moved by {} (cold round) and {} (after the \
                     cached rounds), not exactly 1",
                    h.origin_requests, h.origin_requests_after_all_rounds
                ));
            }
            if h.problems > 0 {
                failures.add(format!("herd {i}: {} failed requests, e.g. {:?}", h.problems, h.first_problems));
            }
            herds.push(h);
            // Let the herd's connections close before the next one.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        (cases, herds)
    });
    drop(runtime);

    // --- stop ----------------------------------------------------------------------------------
    let shield_stop = shield.stop();
    let origin_stop = origin.stop();

    // --- summary -------------------------------------------------------------------------------
    println!("\n=== summary (BENCH_SECONDS={secs}) ===");
    println!(
        "{:<36} {:>11} {:>10} {:>10} {:>8} {:>7}",
        "case", "req/s", "p50 ms", "p99 ms", "non-200", "errors"
    );
    for c in &cases {
        let h = c.hist();
        println!(
            "{:<36} {:>11.0} {:>10.2} {:>10.2} {:>8} {:>7}{}",
            c.name,
            c.rps(),
            q_ms(&h, 0.5),
            q_ms(&h, 0.99),
            c.stats.non_200,
            c.stats.errors,
            if c.failed() { "  FAILED" } else { "" }
        );
    }
    println!(
        "\n{:<8} {:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>11} {:>12} {:>12}",
        "herd",
        "size",
        "origin",
        "cold p50",
        "cold p90",
        "cold p99",
        "cached p90",
        "server p90",
        "adds(server)",
        "adds(client)"
    );
    for h in &herds {
        println!(
            "{:<8} {:>7} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>11} {:>12} {:>12.2}",
            h.index,
            h.size,
            h.origin_requests,
            q_ms(h.cold(), 0.5),
            q_ms(h.cold(), 0.9),
            q_ms(h.cold(), 0.99),
            q_ms(h.cached(), 0.9),
            fmt_opt(h.server_p90_ms()),
            fmt_opt(h.coalescing_adds_server_ms()),
            h.coalescing_adds_client_ms()
        );
    }
    let med = |f: &dyn Fn(&HerdResult) -> Option<f64>| {
        let v: Vec<f64> = herds.iter().filter_map(f).collect();
        if v.is_empty() {
            "n/a".to_string()
        } else {
            format!("{:.2}", median(v))
        }
    };
    println!(
        "{:<8} {:>7} {:>8} {:>9} {:>9} {:>9} {:>10} {:>11} {:>12} {:>12}",
        "median",
        herd_size,
        med(&|h| Some(h.origin_requests)),
        med(&|h| Some(q_ms(h.cold(), 0.5))),
        med(&|h| Some(q_ms(h.cold(), 0.9))),
        med(&|h| Some(q_ms(h.cold(), 0.99))),
        med(&|h| Some(q_ms(h.cached(), 0.9))),
        med(&|h| h.server_p90_ms()),
        med(&|h| h.coalescing_adds_server_ms()),
        med(&|h| Some(h.coalescing_adds_client_ms())),
    );
    println!(
        "(origin delay {ORIGIN_DELAY_MS} ms; server p90 is the upper bound of the {WAIT_METRIC} bucket holding the \
         90th percentile, so it is only as fine as the buckets; median server p90 interpolated inside the bucket: {} \
         ms; median mean wait {} ms; median shield→origin fetch {} ms; median time to open the herd's connections {} ms)",
        med(&|h| h.server_p90_interpolated_ms()),
        med(&|h| h.server_mean_ms()),
        med(&|h| h.origin_fetch_ms()),
        med(&|h| Some(ms(h.connect_time)))
    );
    if herds.iter().any(|h| h.coalescing_adds_client_ms() < 0.0) {
        println!(
            "(a negative client-side figure means the cached re-send of the herd was no faster than the cold one: \
             {herd_size} simultaneous requests queue for CPU in the client and the shield, and in the cold round \
             that queueing overlaps the origin's {ORIGIN_DELAY_MS} ms, so the subtraction cannot isolate coalescing)"
        );
    }
    println!("\nshield {shield_stop}; origin {origin_stop}");
    println!("total run time {:.1} s", t_start.elapsed().as_secs_f64());
    if !failures.0.is_empty() {
        panic!("the benchmark FAILED ({} problems):\n  {}", failures.0.len(), failures.0.join("\n  "));
    }
}
