//! Shared helpers for the end-to-end tests: start the real `altoshield` binary on an ephemeral
//! port and read its address from its start-up line, make throw-away TLS certificates, talk to
//! a server over HTTP/1.1 or HTTP/2, plain or TLS, with every call bounded in time, read ALTO
//! directories and error bodies, and read Prometheus counters.
//!
//! Written for the origin's tests and meant to be reused by the shield's: nothing here knows
//! the origin's data set, and resources are found through a directory as a client would.
//! Each test binary uses a different subset, hence the `dead_code` allowances.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_altoshield");

/// How long a server may take to print its start-up line(s) before the test fails.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The default bound on one client call (connect, send, whole body received).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// How much of a child's standard error is kept for diagnostics.
const STDERR_KEEP: usize = 64 * 1024;

pub const ALTO_ERROR: &str = "application/alto-error+json";
pub const DIRECTORY: &str = "application/alto-directory+json";
pub const NETWORK_MAP: &str = "application/alto-networkmap+json";
pub const NETWORK_MAP_FILTER: &str = "application/alto-networkmapfilter+json";
pub const COST_MAP: &str = "application/alto-costmap+json";
pub const COST_MAP_FILTER: &str = "application/alto-costmapfilter+json";
pub const ENDPOINT_PROP: &str = "application/alto-endpointprop+json";
pub const ENDPOINT_PROP_PARAMS: &str = "application/alto-endpointpropparams+json";
pub const ENDPOINT_COST: &str = "application/alto-endpointcost+json";
pub const ENDPOINT_COST_PARAMS: &str = "application/alto-endpointcostparams+json";

/// The hand-written origin data set shipped with the repository.
pub fn origin_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/origin")
}

/// A file or directory under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// A name no other test (in this process or another) uses at the same time.
pub fn unique_name(stem: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{stem}-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

/// A running server process, killed when dropped. Its standard output is read line by line
/// until every expected start-up line has appeared; standard error is kept (the last
/// [`STDERR_KEEP`] bytes) and printed if the test panics, so a failure shows the server's logs.
#[derive(Debug)]
pub struct ServerProcess {
    pub child: Child,
    /// The start-up lines that were waited for, in the order of the prefixes given.
    pub ready_lines: Vec<String>,
    /// Lines printed on standard output before the last start-up line that were not
    /// start-up lines.
    pub early_stdout: Vec<String>,
    later_stdout: Mutex<(mpsc::Receiver<String>, Vec<String>)>,
    stderr: Arc<Mutex<VecDeque<u8>>>,
}

impl ServerProcess {
    /// Starts `program args…` and waits (at most `timeout`) until, for each prefix in
    /// `ready_prefixes`, a line of standard output starting with it has appeared.
    pub fn spawn(
        program: &str,
        args: &[&str],
        ready_prefixes: &[&str],
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(mut err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend(&buf[..n]);
                    let excess = k.len().saturating_sub(STDERR_KEEP);
                    k.drain(..excess);
                }
            });
        }
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        spawn_line_reader(stdout, tx);

        let mut proc = ServerProcess {
            child,
            ready_lines: vec![String::new(); ready_prefixes.len()],
            early_stdout: Vec::new(),
            later_stdout: Mutex::new((rx, Vec::new())),
            stderr,
        };
        let deadline = Instant::now() + timeout;
        let mut found = vec![false; ready_prefixes.len()];
        while !found.iter().all(|f| *f) {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = proc.later_stdout.lock().unwrap_or_else(|p| p.into_inner()).0.recv_timeout(left);
            match received {
                Ok(line) => match ready_prefixes.iter().position(|p| line.starts_with(p)) {
                    Some(i) if !found[i] => {
                        found[i] = true;
                        proc.ready_lines[i] = line;
                    }
                    _ => proc.early_stdout.push(line),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "no start-up line {ready_prefixes:?} within {timeout:?}; stdout so far {:?}; stderr:\n{}",
                        proc.early_stdout,
                        proc.stderr_text()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = proc.child.wait().ok();
                    return Err(format!(
                        "{program} closed its stdout before printing {ready_prefixes:?} (exit {status:?}); \
                         stdout {:?}; stderr:\n{}",
                        proc.early_stdout,
                        proc.stderr_text()
                    ));
                }
            }
        }
        Ok(proc)
    }

    /// What the process wrote on standard error so far (the last 64 KiB).
    pub fn stderr_text(&self) -> String {
        let k = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&k.iter().copied().collect::<Vec<u8>>()).into_owned()
    }

    /// Lines printed on standard output after the start-up lines.
    pub fn later_stdout(&self) -> Vec<String> {
        let mut guard = self.later_stdout.lock().unwrap_or_else(|p| p.into_inner());
        let (rx, seen) = &mut *guard;
        seen.extend(rx.try_iter());
        seen.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.child.id());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.stderr_text();
            let tail: String = {
                let start = text.len().saturating_sub(6000);
                let start = (start..text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
                text[start..].to_string()
            };
            eprintln!(
                "---- server stderr (pid {}, last part) ----\n{tail}\n---- end of server stderr ----",
                self.child.id()
            );
        }
    }
}

/// Sends every line of `stdout` on `tx` (an unbounded channel, so a chatty child never
/// blocks on a full pipe).
fn spawn_line_reader(stdout: ChildStdout, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// How a short-lived command ended.
#[derive(Debug)]
pub struct Exit {
    /// The exit code; `None` when killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Exit {
    /// The non-empty lines of standard error.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
    }
}

/// Runs `program args…` to completion, killing it after `timeout` (a command that should fail
/// fast but starts serving instead must not hang the test).
pub fn run_to_exit(program: &str, args: &[&str], timeout: Duration) -> Exit {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = collect(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
        }
    };
    Exit {
        code: if timed_out { None } else { status.and_then(|s| s.code()) },
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// The URL on a start-up line such as `origin listening on http://127.0.0.1:8081`, and the
/// socket address in it (IPv6 in brackets).
pub fn parse_startup_url(line: &str, prefix: &str) -> (String, SocketAddr) {
    let url =
        line.strip_prefix(prefix).unwrap_or_else(|| panic!("`{line}` does not start with `{prefix}`")).trim();
    let hostport = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or_else(|| panic!("start-up line `{line}` has no http(s) URL"));
    let addr: SocketAddr = hostport
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("start-up line `{line}`: bad address: {e}"));
    (url.trim_end_matches('/').to_string(), addr)
}

/// A running `altoshield origin`, killed when dropped.
#[derive(Debug)]
pub struct Origin {
    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`, without a trailing slash.
    pub base_url: String,
    pub addr: SocketAddr,
    /// The whole start-up line, as printed.
    pub startup_line: String,
    pub process: ServerProcess,
}

impl Origin {
    pub const STARTUP_PREFIX: &'static str = "origin listening on ";

    /// Starts `altoshield origin --listen 127.0.0.1:0 <args>`, panicking (with the origin's
    /// logs) if it does not print its start-up line in time.
    pub fn start(args: &[&str]) -> Origin {
        Self::try_start(args).unwrap_or_else(|e| panic!("origin {args:?} did not start: {e}"))
    }

    pub fn try_start(args: &[&str]) -> Result<Origin, String> {
        let mut full = vec!["origin", "--listen", "127.0.0.1:0"];
        full.extend_from_slice(args);
        let process = ServerProcess::spawn(BIN, &full, &[Self::STARTUP_PREFIX], STARTUP_TIMEOUT)?;
        let line = process.ready_lines[0].clone();
        let (base_url, addr) = parse_startup_url(&line, Self::STARTUP_PREFIX);
        Ok(Origin { base_url, addr, startup_line: line, process })
    }

    /// Starts the origin on the hand-written data set, plus `extra` flags.
    pub fn with_data(extra: &[&str]) -> Origin {
        let dir = origin_data_dir();
        let mut args = vec!["--data", dir.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn directory_url(&self) -> String {
        self.url("/directory")
    }

    pub fn metrics_url(&self) -> String {
        self.url("/metrics")
    }
}

// ---------------------------------------------------------------------------------------------
// TLS certificates
// ---------------------------------------------------------------------------------------------

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as PEM files into a
/// fresh directory under the system temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TestCert {
    pub dir: PathBuf,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
    pub cert_pem: String,
}

impl TestCert {
    pub fn new() -> TestCert {
        Self::for_names(&["localhost", "127.0.0.1"])
    }

    pub fn for_names(names: &[&str]) -> TestCert {
        let rcgen::CertifiedKey { cert, key_pair } =
            rcgen::generate_simple_self_signed(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("generate certificate");
        let dir = std::env::temp_dir().join(unique_name("altoshield-test-cert"));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        let cert_path = dir.join("cert.pem");
        let key_path = dir.join("key.pem");
        let cert_pem = cert.pem();
        std::fs::write(&cert_path, &cert_pem).expect("write cert");
        std::fs::write(&key_path, key_pair.serialize_pem()).expect("write key");
        TestCert { dir, cert_path, key_path, cert_der: cert.der().clone(), cert_pem }
    }

    pub fn cert_arg(&self) -> &str {
        self.cert_path.to_str().expect("utf-8 path")
    }

    pub fn key_arg(&self) -> &str {
        self.key_path.to_str().expect("utf-8 path")
    }
}

impl Default for TestCert {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------------------------

/// Which HTTP version a [`TestClient`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 (ALPN `http/1.1` only on TLS).
    Http1,
    /// HTTP/2: prior knowledge (h2c) on plain TCP, ALPN `h2` only on TLS.
    Http2,
}

/// An answer, fully received.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as JSON, panicking with the body text if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body is not JSON ({e}); status {}; body: {}", self.status, self.text_prefix(500))
        })
    }

    pub fn try_json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header, joined with `, `.
    pub fn header_all(&self, name: &str) -> String {
        self.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(", ")
    }

    /// The media type of `Content-Type` without parameters, lower-cased.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first `n` bytes of the body as text, for messages.
    pub fn text_prefix(&self, n: usize) -> String {
        String::from_utf8_lossy(&self.body[..self.body.len().min(n)]).into_owned()
    }

    /// A one-line summary for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{} {:?} content-type={:?} body={}",
            self.status,
            self.version,
            self.header("content-type"),
            self.text_prefix(400)
        )
    }
}

/// Why a call produced no answer.
#[derive(Debug)]
pub enum RequestError {
    /// No complete answer within the client's timeout.
    Timeout,
    /// The connection failed or broke before a complete answer.
    Failed(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Timeout => write!(f, "timed out"),
            RequestError::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

/// A pooled hyper client for `http` and `https` URLs, one HTTP version, every call bounded by
/// a timeout. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct TestClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    pub proto: Proto,
    pub timeout: Duration,
}

impl TestClient {
    /// A client that trusts only `roots` for `https` (and the system nothing).
    pub fn with_roots(proto: Proto, roots: &[rustls_pki_types::CertificateDer<'static>]) -> TestClient {
        let mut store = rustls::RootCertStore::empty();
        for r in roots {
            store.add(r.clone()).expect("add test root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let connector = match proto {
            Proto::Http1 => builder.enable_http1().build(),
            Proto::Http2 => builder.enable_http2().build(),
        };
        let client = Client::builder(TokioExecutor::new()).http2_only(proto == Proto::Http2).build(connector);
        TestClient { client, proto, timeout: REQUEST_TIMEOUT }
    }

    /// A plain-HTTP client (an `https` URL would fail verification: it trusts no root).
    pub fn new(proto: Proto) -> TestClient {
        Self::with_roots(proto, &[])
    }

    pub fn http1() -> TestClient {
        Self::new(Proto::Http1)
    }

    pub fn http2() -> TestClient {
        Self::new(Proto::Http2)
    }

    /// A client trusting the test certificate.
    pub fn tls(proto: Proto, cert: &TestCert) -> TestClient {
        Self::with_roots(proto, std::slice::from_ref(&cert.cert_der))
    }

    pub fn with_timeout(mut self, timeout: Duration) -> TestClient {
        self.timeout = timeout;
        self
    }

    /// Sends a request and receives the whole answer, or says why not.
    pub async fn try_request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Response, RequestError> {
        let mut req = http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let req = req.body(Full::new(body.into())).expect("request");
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| RequestError::Failed(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| RequestError::Failed(error_chain(&e)))?.to_bytes();
            Ok(Response { status: parts.status, version: parts.version, headers: parts.headers, body })
        };
        tokio::time::timeout(self.timeout, exchange).await.unwrap_or(Err(RequestError::Timeout))
    }

    /// Sends a request, panicking if no complete answer arrives in time.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        let m = method.clone();
        self.try_request(method, url, headers, body).await.unwrap_or_else(|e| panic!("{m} {url}: {e}"))
    }

    /// `GET url`, with `Accept: accept` unless `None`.
    pub async fn get(&self, url: &str, accept: Option<&str>) -> Response {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
        self.request(Method::GET, url, &headers, Bytes::new()).await
    }

    /// `POST url` with `Content-Type` and `Accept` unless `None`.
    pub async fn post(
        &self,
        url: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Response {
        let mut headers = Vec::new();
        if let Some(ct) = content_type {
            headers.push(("content-type", ct));
        }
        if let Some(a) = accept {
            headers.push(("accept", a));
        }
        self.request(Method::POST, url, &headers, body).await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        content_type: &str,
        accept: Option<&str>,
        body: &Value,
    ) -> Response {
        self.post(url, Some(content_type), accept, serde_json::to_vec(body).expect("serialise")).await
    }

    /// The text of a `/metrics` page (asserting a 200).
    pub async fn metrics_text(&self, url: &str) -> String {
        let r = self.get(url, None).await;
        assert_eq!(r.status, StatusCode::OK, "GET {url}: {}", r.describe());
        r.text()
    }
}

/// An error and its sources, on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 over one TCP connection (keep-alive checks, bytes hyper would not send)
// ---------------------------------------------------------------------------------------------

/// One plain TCP connection speaking hand-written HTTP/1.1, every read bounded by a timeout.
#[derive(Debug)]
pub struct RawConn {
    stream: BufReader<TcpStream>,
}

/// An answer read by [`RawConn`].
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl RawConn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<RawConn> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(RawConn { stream: BufReader::new(s) })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.get_mut().write_all(bytes)
    }

    /// Reads one answer (Content-Length or chunked body; an answer with neither is read to the
    /// end of the connection).
    pub fn read_response(&mut self) -> std::io::Result<RawResponse> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(&format!("status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.stream.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').ok_or_else(|| bad(&format!("header {h:?}")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(|_| bad("content-length"))?;
            body.resize(len, 0);
            self.stream.read_exact(&mut body)?;
        } else if get("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked")) {
            loop {
                let mut size = String::new();
                self.stream.read_line(&mut size)?;
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("chunk size"))?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            self.stream.read_to_end(&mut body)?;
        }
        Ok(RawResponse { status, headers, body })
    }
}

// ---------------------------------------------------------------------------------------------
// ALTO helpers
// ---------------------------------------------------------------------------------------------

/// An IRD as a client reads it: resources by id, found by media type and `accepts`.
#[derive(Debug, Clone)]
pub struct Directory {
    pub json: Value,
}

impl Directory {
    /// `GET url` with the directory media type, asserting a 200 and the right `Content-Type`.
    pub async fn fetch(client: &TestClient, url: &str) -> Directory {
        let r = client.get(url, Some(&format!("{DIRECTORY},{ALTO_ERROR}"))).await;
        assert_eq!(r.status, StatusCode::OK, "GET {url}: {}", r.describe());
        assert_eq!(r.media_type().as_deref(), Some(DIRECTORY), "GET {url}: {}", r.describe());
        Directory { json: r.json() }
    }

    pub fn resources(&self) -> &serde_json::Map<String, Value> {
        self.json["resources"].as_object().expect("IRD has a `resources` object")
    }

    pub fn ids(&self) -> Vec<String> {
        self.resources().keys().cloned().collect()
    }

    /// The entry of resource `id`, panicking if absent.
    pub fn entry(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("IRD has no resource `{id}`; it has {:?}", self.ids()))
    }

    pub fn uri(&self, id: &str) -> String {
        self.entry(id)["uri"].as_str().unwrap_or_else(|| panic!("resource `{id}` has no uri")).to_string()
    }

    pub fn media_type(&self, id: &str) -> String {
        self.entry(id)["media-type"]
            .as_str()
            .unwrap_or_else(|| panic!("resource `{id}` has no media-type"))
            .to_string()
    }

    pub fn accepts(&self, id: &str) -> Option<String> {
        self.entry(id).get("accepts").and_then(Value::as_str).map(String::from)
    }

    /// Ids of the resources with this media type and this `accepts` (`None`: GET resources).
    pub fn find(&self, media_type: &str, accepts: Option<&str>) -> Vec<String> {
        self.resources()
            .iter()
            .filter(|(_, e)| e["media-type"].as_str() == Some(media_type))
            .filter(|(_, e)| e.get("accepts").and_then(Value::as_str) == accepts)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The one resource with this media type and `accepts`, panicking if there is not exactly one.
    pub fn find_one(&self, media_type: &str, accepts: Option<&str>) -> String {
        let ids = self.find(media_type, accepts);
        assert_eq!(ids.len(), 1, "expected one resource {media_type} accepting {accepts:?}, found {ids:?}");
        ids.into_iter().next().unwrap_or_default()
    }

    /// The GET cost map offering cost type (metric, mode), through `meta.cost-types`.
    pub fn cost_map_for(&self, metric: &str, mode: &str) -> Option<String> {
        self.find(COST_MAP, None).into_iter().find(|id| {
            self.cost_type_names(id).iter().any(|n| {
                let t = &self.json["meta"]["cost-types"][n];
                t["cost-metric"] == metric && t["cost-mode"] == mode
            })
        })
    }

    pub fn cost_type_names(&self, id: &str) -> Vec<String> {
        self.entry(id)["capabilities"]["cost-type-names"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default()
    }

    /// The value of `meta.default-alto-network-map`.
    pub fn default_network_map(&self) -> String {
        self.json["meta"]["default-alto-network-map"]
            .as_str()
            .expect("root IRD names its default network map")
            .to_string()
    }

    /// Every resource's URI with its scheme and authority replaced by `base` (to reach a twin
    /// server that serves the same paths at another address).
    pub fn rebased_uri(&self, id: &str, base: &str) -> String {
        format!("{base}{}", path_of(&self.uri(id)))
    }
}

/// The path (and query) of an absolute URL.
pub fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

/// The `Accept` a careful ALTO client sends for a resource of media type `media_type`.
pub fn accept_for(media_type: &str) -> String {
    format!("{media_type},{ALTO_ERROR}")
}

/// The parts of an ALTO error body.
#[derive(Debug, Clone, PartialEq)]
pub struct AltoErrorBody {
    pub code: String,
    pub field: Option<String>,
    pub value: Option<Value>,
    pub syntax_error: Option<String>,
}

/// Reads an ALTO error answer: `application/alto-error+json`, `{"meta": {"code": "E_…"}}`.
pub fn alto_error(r: &Response) -> Result<AltoErrorBody, String> {
    if r.media_type().as_deref() != Some(ALTO_ERROR) {
        return Err(format!("not an ALTO error media type: {}", r.describe()));
    }
    let v: Value = r.try_json().map_err(|e| format!("error body is not JSON ({e}): {}", r.describe()))?;
    let meta = v
        .get("meta")
        .and_then(Value::as_object)
        .ok_or_else(|| format!("error body has no meta: {}", r.describe()))?;
    let code = meta
        .get("code")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("error meta has no code: {}", r.describe()))?;
    if !code.starts_with("E_") {
        return Err(format!("error code {code:?} is not an E_ code"));
    }
    Ok(AltoErrorBody {
        code: code.to_string(),
        field: meta.get("field").and_then(Value::as_str).map(String::from),
        value: meta.get("value").cloned(),
        syntax_error: meta.get("syntax-error").and_then(Value::as_str).map(String::from),
    })
}

/// Asserts an ALTO error answer with this status and code; returns the body.
#[track_caller]
pub fn assert_alto_error(r: &Response, status: u16, code: &str, what: &str) -> AltoErrorBody {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.describe());
    let e = alto_error(r).unwrap_or_else(|m| panic!("{what}: {m}"));
    assert_eq!(e.code, code, "{what}: {}", r.describe());
    e
}

/// The four error codes RFC 7285 registers.
pub const REGISTERED_CODES: [&str; 4] =
    ["E_SYNTAX", "E_MISSING_FIELD", "E_INVALID_FIELD_TYPE", "E_INVALID_FIELD_VALUE"];

/// A vtag as JSON.
pub fn vtag(resource_id: &str, tag: &str) -> Value {
    serde_json::json!({"resource-id": resource_id, "tag": tag})
}

/// Puts an ALTO answer in a form where equal information compares equal: every number as a
/// float (`10` and `10.0` are one JSON number), `description` dropped from `meta.cost-type`
/// (informational, RFC 7285 §10.7), and empty inner objects of the data member dropped (a
/// source row with no cost left, an endpoint with no property value: both carry nothing).
pub fn normalize_answer(v: &Value) -> Value {
    let mut v = normalize_numbers(v);
    if let Some(obj) = v.as_object_mut() {
        if let Some(ct) =
            obj.get_mut("meta").and_then(|m| m.get_mut("cost-type")).and_then(Value::as_object_mut)
        {
            ct.remove("description");
        }
        for key in ["cost-map", "endpoint-cost-map", "endpoint-properties"] {
            if let Some(data) = obj.get_mut(key).and_then(Value::as_object_mut) {
                data.retain(|_, row| !row.as_object().is_some_and(|r| r.is_empty()));
            }
        }
    }
    v
}

/// Every JSON number as an f64.
pub fn normalize_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or_else(|| v.clone()),
        Value::Array(a) => Value::Array(a.iter().map(normalize_numbers).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), normalize_numbers(v))).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the sample lines of a Prometheus text exposition (comments skipped).
pub fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(|l| parse_sample(l.trim())).collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let chars: Vec<char> = line[name_end..].chars().collect();
    let mut i = 0;
    let mut labels = Vec::new();
    if chars.first() == Some(&'{') {
        i = 1;
        loop {
            while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                i += 1;
            }
            if *chars.get(i)? == '}' {
                i += 1;
                break;
            }
            let mut lname = String::new();
            while *chars.get(i)? != '=' {
                lname.push(chars[i]);
                i += 1;
            }
            i += 1;
            if *chars.get(i)? != '"' {
                return None;
            }
            i += 1;
            let mut value = String::new();
            loop {
                match *chars.get(i)? {
                    '\\' => {
                        i += 1;
                        match *chars.get(i)? {
                            'n' => value.push('\n'),
                            c => value.push(c),
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
                i += 1;
            }
            i += 1;
            labels.push((lname.trim().to_string(), value));
        }
    }
    let rest: String = chars[i..].iter().collect();
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name, labels, value })
}

/// The sum of the samples named `name` whose labels include every pair of `labels` (so one
/// exact series, or a total over series); 0 when none exists yet (a counter never incremented
/// may not be exposed at all).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    parse_samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v)))
        .map(|s| s.value)
        .sum()
}

/// Every value taken by label `label` on samples named `name`.
pub fn label_values(text: &str, name: &str, label: &str) -> Vec<String> {
    let mut v: Vec<String> = parse_samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter_map(|s| s.labels.into_iter().find(|(k, _)| k == label).map(|(_, v)| v))
        .collect();
    v.sort();
    v.dedup();
    v
}

// ---------------------------------------------------------------------------------------------
// Time bounds
// ---------------------------------------------------------------------------------------------

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`. For state changes
/// that have no acknowledgement to wait on (a signal), never for readiness.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Shield helpers: temporary directories, configuration files, the `serve` process, a
// certificate authority, TLS connections by hand, a switchable TCP relay
// ---------------------------------------------------------------------------------------------

/// How long a shield may take to answer `/readyz` 200 after its start-up lines.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh directory under the system temporary directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(stem: &str) -> TempDir {
        let path = std::env::temp_dir().join(unique_name(stem));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` in this directory; returns the path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A TOML basic string literal (quoted and escaped).
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A shield configuration file, built key by key (`section.key` paths, as DESIGN §3 names
/// them) and rendered as TOML.
#[derive(Debug, Clone)]
pub struct ShieldConfig {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl ShieldConfig {
    /// Data plane and admin on ephemeral loopback ports, in front of the IRD at `origin_ird`.
    /// TLS is on by default: add [`ShieldConfig::tls`] or [`ShieldConfig::plain`].
    pub fn new(origin_ird: &str) -> ShieldConfig {
        ShieldConfig { sections: Vec::new() }
            .str("listen.addr", "127.0.0.1:0")
            .str("admin.addr", "127.0.0.1:0")
            .str("origin.ird", origin_ird)
    }

    /// Serves TLS with this certificate.
    pub fn tls(self, cert: &TestCert) -> ShieldConfig {
        self.path("listen.cert", &cert.cert_path).path("listen.key", &cert.key_path)
    }

    /// Serves plain HTTP (`listen.tls = false`).
    pub fn plain(self) -> ShieldConfig {
        self.raw("listen.tls", "false")
    }

    /// Sets `key` to a TOML string.
    pub fn str(self, key: &str, value: &str) -> ShieldConfig {
        self.raw(key, &toml_str(value))
    }

    /// Sets `key` to a path (a TOML string).
    pub fn path(self, key: &str, value: &Path) -> ShieldConfig {
        self.str(key, value.to_str().expect("utf-8 path"))
    }

    /// Sets `key` to an array of strings.
    pub fn list(self, key: &str, values: &[&str]) -> ShieldConfig {
        let items: Vec<String> = values.iter().map(|v| toml_str(v)).collect();
        self.raw(key, &format!("[{}]", items.join(", ")))
    }

    /// Sets `key` to a TOML value written as is (`"1"`, `"true"`, `"[\"a\"]"`).
    pub fn raw(mut self, key: &str, toml: &str) -> ShieldConfig {
        let (section, name) = key.split_once('.').unwrap_or_else(|| panic!("key `{key}` has no section"));
        let idx = match self.sections.iter().position(|(s, _)| s == section) {
            Some(i) => i,
            None => {
                self.sections.push((section.to_string(), Vec::new()));
                self.sections.len() - 1
            }
        };
        let entries = &mut self.sections[idx].1;
        match entries.iter_mut().find(|(k, _)| k == name) {
            Some(e) => e.1 = toml.to_string(),
            None => entries.push((name.to_string(), toml.to_string())),
        }
        self
    }

    /// Removes `key`.
    pub fn remove(mut self, key: &str) -> ShieldConfig {
        if let Some((section, name)) = key.split_once('.') {
            for (s, entries) in &mut self.sections {
                if s == section {
                    entries.retain(|(k, _)| k != name);
                }
            }
        }
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (section, entries) in &self.sections {
            out.push_str(&format!("[{section}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out
    }
}

/// A running `altoshield serve`, killed when dropped.
#[derive(Debug)]
pub struct Shield {
    /// `https://127.0.0.1:PORT` (or `http://`), from the start-up line, without a trailing slash.
    pub url: String,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin_url: String,
    pub admin_addr: SocketAddr,
    pub config_path: PathBuf,
    pub config_text: String,
    pub process: ServerProcess,
    _dir: TempDir,
}

impl Shield {
    pub const LISTEN_PREFIX: &'static str = "listening on ";
    pub const ADMIN_PREFIX: &'static str = "admin on ";

    /// Writes `config` into a fresh directory and starts `altoshield serve --config` on it,
    /// waiting for both start-up lines (not for readiness: see [`Shield::wait_ready`]).
    pub fn start(config: &ShieldConfig) -> Shield {
        Self::try_start(config)
            .unwrap_or_else(|e| panic!("shield did not start: {e}\nconfig:\n{}", config.render()))
    }

    pub fn try_start(config: &ShieldConfig) -> Result<Shield, String> {
        let dir = TempDir::new("altoshield-test-shield");
        let text = config.render();
        let path = dir.write("altoshield.toml", &text);
        let process = ServerProcess::spawn(
            BIN,
            &["serve", "--config", path.to_str().expect("utf-8 path")],
            &[Self::LISTEN_PREFIX, Self::ADMIN_PREFIX],
            STARTUP_TIMEOUT,
        )?;
        let (url, addr) = parse_startup_url(&process.ready_lines[0], Self::LISTEN_PREFIX);
        let (admin_url, admin_addr) = parse_startup_url(&process.ready_lines[1], Self::ADMIN_PREFIX);
        Ok(Shield {
            url,
            addr,
            admin_url,
            admin_addr,
            config_path: path,
            config_text: text,
            process,
            _dir: dir,
        })
    }

    /// Starts the shield and waits until `/readyz` answers 200.
    pub async fn start_ready(config: &ShieldConfig) -> Shield {
        let shield = Self::start(config);
        shield.wait_ready().await;
        shield
    }

    /// `url` + `path` on the data plane.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    pub fn directory_url(&self) -> String {
        self.url("/directory")
    }

    /// `admin_url` + `path`.
    pub fn admin(&self, path: &str) -> String {
        format!("{}{path}", self.admin_url)
    }

    fn admin_client() -> TestClient {
        TestClient::http1().with_timeout(Duration::from_secs(10))
    }

    /// The status of `GET /readyz`, or `None` when no answer came.
    pub async fn readyz(&self) -> Option<u16> {
        let c = Self::admin_client().with_timeout(Duration::from_secs(2));
        c.try_request(Method::GET, &self.admin("/readyz"), &[], Bytes::new())
            .await
            .ok()
            .map(|r| r.status.as_u16())
    }

    /// Polls `/readyz` (bounded by [`READY_TIMEOUT`]) until it answers 200.
    pub async fn wait_ready(&self) {
        self.wait_ready_within(READY_TIMEOUT).await
    }

    pub async fn wait_ready_within(&self, limit: Duration) {
        let ready = eventually(limit, || async { (self.readyz().await == Some(200)).then_some(()) }).await;
        if ready.is_none() {
            panic!(
                "shield not ready (/readyz 200) within {limit:?}; last /readyz {:?}; config:\n{}\nstderr:\n{}",
                self.readyz().await,
                self.config_text,
                self.process.stderr_text()
            );
        }
    }

    /// The text of the shield's `/metrics`.
    pub async fn metrics(&self) -> String {
        Self::admin_client().metrics_text(&self.admin("/metrics")).await
    }

    /// `POST /cache/purge`, of one resource or of everything.
    pub async fn purge(&self, resource: Option<&str>) -> Response {
        let path = match resource {
            Some(id) => format!("/cache/purge?resource={id}"),
            None => "/cache/purge".to_string(),
        };
        Self::admin_client().request(Method::POST, &self.admin(&path), &[], Bytes::new()).await
    }
}

impl Origin {
    /// Starts `altoshield origin --listen <listen> <args>` (a chosen address instead of an
    /// ephemeral one).
    pub fn start_on(listen: SocketAddr, args: &[&str]) -> Origin {
        let l = listen.to_string();
        let mut full = vec!["origin", "--listen", l.as_str()];
        full.extend_from_slice(args);
        let process = ServerProcess::spawn(BIN, &full, &[Self::STARTUP_PREFIX], STARTUP_TIMEOUT)
            .unwrap_or_else(|e| panic!("origin on {listen} {args:?} did not start: {e}"));
        let line = process.ready_lines[0].clone();
        let (base_url, addr) = parse_startup_url(&line, Self::STARTUP_PREFIX);
        Origin { base_url, addr, startup_line: line, process }
    }

    /// The origin's `altoshield_origin_served_total` for one resource.
    pub async fn served(&self, resource: &str) -> f64 {
        let text = TestClient::http1().metrics_text(&self.metrics_url()).await;
        metric(&text, "altoshield_origin_served_total", &[("resource", resource)])
    }

    /// The origin's whole `/metrics` text.
    pub async fn metrics(&self) -> String {
        TestClient::http1().metrics_text(&self.metrics_url()).await
    }
}

impl ServerProcess {
    /// Waits (at most `limit`) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => return None,
            }
        }
    }
}

/// A loopback address no server listens on right now (bound then released).
pub fn unused_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// The `altoshield` entry of a `Cache-Status` header, split into its parameters
/// (`["hit", "ttl=29"]`), or `None` when the header has no such entry.
pub fn cache_status(r: &Response) -> Option<Vec<String>> {
    let all = r.header_all("cache-status");
    all.split(',')
        .map(str::trim)
        .find(|e| e.split(';').next().map(str::trim) == Some("altoshield"))
        .map(|e| e.split(';').skip(1).map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
}

/// Whether the shield's `Cache-Status` entry has parameter `p` (`hit`, `stored`,
/// `detail=stale`, `fwd=miss`…).
pub fn cache_status_has(r: &Response, p: &str) -> bool {
    cache_status(r).is_some_and(|ps| ps.iter().any(|x| x == p))
}

/// The `ttl=N` of the shield's `Cache-Status` entry.
pub fn cache_status_ttl(r: &Response) -> Option<i64> {
    cache_status(r)?.iter().find_map(|p| p.strip_prefix("ttl=").and_then(|v| v.parse().ok()))
}

/// Decompresses a gzip body.
pub fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
    Ok(out)
}

/// A cost type as a request writes it.
pub fn cost_type(metric: &str, mode: &str) -> Value {
    serde_json::json!({"cost-metric": metric, "cost-mode": mode})
}

/// The cost type named by a resource's first `cost-type-names` entry, as a request writes it.
pub fn first_cost_type_of(dir: &Directory, id: &str) -> Value {
    let name =
        dir.cost_type_names(id).into_iter().next().unwrap_or_else(|| panic!("`{id}` offers no cost type"));
    let t = &dir.json["meta"]["cost-types"][&name];
    cost_type(t["cost-metric"].as_str().unwrap_or(""), t["cost-mode"].as_str().unwrap_or(""))
}

/// A valid request body for a POST resource, built from its IRD entry; `None` for GET.
pub fn sample_request(dir: &Directory, id: &str) -> Option<Value> {
    use serde_json::json;
    let accepts = dir.accepts(id)?;
    Some(match accepts.as_str() {
        NETWORK_MAP_FILTER => json!({"pids": []}),
        COST_MAP_FILTER => json!({"cost-type": first_cost_type_of(dir, id)}),
        ENDPOINT_PROP_PARAMS => {
            let prop = dir.entry(id)["capabilities"]["prop-types"][0].clone();
            json!({"properties": [prop], "endpoints": ["ipv4:10.0.0.1", "ipv6:2001:db8::1"]})
        }
        ENDPOINT_COST_PARAMS => json!({"cost-type": first_cost_type_of(dir, id),
            "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": ["ipv4:10.0.0.2", "ipv6:2001:db8::1"]}}),
        other => panic!("resource `{id}` accepts {other}, which these tests do not model"),
    })
}

/// POSTs `body` to resource `id` of `dir` with the right `Content-Type` and `Accept`.
pub async fn post_to(client: &TestClient, dir: &Directory, id: &str, body: &Value) -> Response {
    let ct = dir.accepts(id).unwrap_or_else(|| panic!("`{id}` is not a POST resource"));
    client.post_json(&dir.uri(id), &ct, Some(&accept_for(&dir.media_type(id))), body).await
}

/// GETs resource `id` of `dir` with the right `Accept`.
pub async fn get_from(client: &TestClient, dir: &Directory, id: &str) -> Response {
    client.get(&dir.uri(id), Some(&accept_for(&dir.media_type(id)))).await
}

// --- TLS by hand -------------------------------------------------------------------------------

/// A client certificate and its key, for mutual TLS.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

impl ClientIdentity {
    fn key(&self) -> rustls_pki_types::PrivateKeyDer<'static> {
        rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
            self.key_der.clone(),
        ))
    }

    /// A self-signed client certificate that no test CA signed.
    pub fn self_signed(name: &str) -> ClientIdentity {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).expect("self-sign");
        ClientIdentity { chain: vec![cert.der().clone()], key_der: key.serialize_der() }
    }
}

/// A throw-away certificate authority: its certificate is written as PEM into a fresh
/// directory (for `listen.client_ca`), and it issues client and server certificates.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    pub cert_der: rustls_pki_types::CertificateDer<'static>,
    pub cert_path: PathBuf,
    dir: TempDir,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("cert_path", &self.cert_path).finish_non_exhaustive()
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("self-sign CA");
        let dir = TempDir::new("altoshield-test-ca");
        let cert_path = dir.write("ca.pem", cert.pem());
        TestCa { cert_der: cert.der().clone(), cert, key, cert_path, dir }
    }

    /// A client certificate (CN `name`, extended key usage clientAuth) signed by this CA.
    pub fn issue_client(&self, name: &str) -> ClientIdentity {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.cert, &self.key).expect("sign client cert");
        ClientIdentity { chain: vec![cert.der().clone()], key_der: key.serialize_der() }
    }
}

/// A rustls client configuration trusting `roots`, presenting `identity` if given, offering
/// the ALPN protocols `alpn`.
pub fn tls_client_config(
    roots: &[rustls_pki_types::CertificateDer<'static>],
    identity: Option<&ClientIdentity>,
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("add test root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key()).expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

impl TestClient {
    /// A client over `tls` (whose ALPN list must be empty: the client sets it per `proto`),
    /// connecting from `local` when given (any `127.x.y.z` works on Linux loopback).
    pub fn from_tls_config(
        proto: Proto,
        tls: rustls::ClientConfig,
        local: Option<std::net::IpAddr>,
    ) -> TestClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_local_address(local);
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http();
        let connector = match proto {
            Proto::Http1 => builder.enable_http1().wrap_connector(http),
            Proto::Http2 => builder.enable_http2().wrap_connector(http),
        };
        let client = Client::builder(TokioExecutor::new()).http2_only(proto == Proto::Http2).build(connector);
        TestClient { client, proto, timeout: REQUEST_TIMEOUT }
    }

    /// A client trusting `cert` and connecting from the local address `local`.
    pub fn tls_from(proto: Proto, cert: &TestCert, local: std::net::IpAddr) -> TestClient {
        Self::from_tls_config(
            proto,
            tls_client_config(std::slice::from_ref(&cert.cert_der), None, &[]),
            Some(local),
        )
    }

    /// A client trusting `cert` and presenting `identity`.
    pub fn tls_with_identity(proto: Proto, cert: &TestCert, identity: &ClientIdentity) -> TestClient {
        Self::from_tls_config(
            proto,
            tls_client_config(std::slice::from_ref(&cert.cert_der), Some(identity), &[]),
            None,
        )
    }
}

/// Opens a TCP connection to `addr` (from `local` when given), writes `preamble` on it (a
/// PROXY protocol header, say), then makes a TLS handshake with `config` for server name
/// `127.0.0.1`. Bounded by [`REQUEST_TIMEOUT`].
pub async fn tls_connect(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
    preamble: &[u8],
    config: Arc<rustls::ClientConfig>,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let work = async {
        let tcp = raw_tcp(addr, local).await?;
        let mut tcp = tcp;
        if !preamble.is_empty() {
            tokio::io::AsyncWriteExt::write_all(&mut tcp, preamble)
                .await
                .map_err(|e| format!("write preamble: {e}"))?;
        }
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, work).await.unwrap_or_else(|_| Err("timed out".into()))
}

/// A TCP connection to `addr`, from `local` when given.
pub async fn raw_tcp(
    addr: SocketAddr,
    local: Option<std::net::IpAddr>,
) -> Result<tokio::net::TcpStream, String> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .map_err(|e| format!("socket: {e}"))?;
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| format!("bind {ip}: {e}"))?;
    }
    tokio::time::timeout(REQUEST_TIMEOUT, socket.connect(addr))
        .await
        .map_err(|_| format!("connect {addr}: timed out"))?
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// The certificate a TLS server at `addr` presents to a new connection (the client trusts
/// `roots`).
pub async fn presented_certificate(
    addr: SocketAddr,
    roots: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<rustls_pki_types::CertificateDer<'static>, String> {
    let config = Arc::new(tls_client_config(roots, None, &[b"http/1.1"]));
    let tls = tls_connect(addr, None, b"", config).await?;
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no peer certificate".to_string())
}

/// Sends one HTTP/1.1 request over an established connection (plain or TLS) and receives
/// the whole answer, bounded by [`REQUEST_TIMEOUT`].
pub async fn http1_over<S>(
    io: S,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Response, RequestError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut req = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    let req = req.body(Full::new(body.into())).expect("request");
    let exchange = async {
        let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .map_err(|e| RequestError::Failed(error_chain(&e)))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let resp = send.send_request(req).await.map_err(|e| RequestError::Failed(error_chain(&e)))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| RequestError::Failed(error_chain(&e)))?.to_bytes();
        Ok(Response { status: parts.status, version: parts.version, headers: parts.headers, body })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.unwrap_or(Err(RequestError::Timeout))
}

// --- A switchable TCP relay --------------------------------------------------------------------

/// A TCP relay on an ephemeral loopback port that forwards each connection to the current
/// target (or closes it when there is none). Switching the target also cuts every relayed
/// connection, so a pooled client's next request reaches the new target. It lets a test put a
/// hanging or lying origin behind an address a shield already knows. Stopped when dropped.
#[derive(Debug)]
pub struct Relay {
    pub addr: SocketAddr,
    target: Arc<Mutex<Option<SocketAddr>>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::AbortHandle,
}

impl Relay {
    /// Starts a relay with no target yet.
    pub async fn start() -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let target: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let (t, c) = (Arc::clone(&target), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                let to = *t.lock().unwrap_or_else(|p| p.into_inner());
                let task = tokio::spawn(async move {
                    let Some(to) = to else { return };
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
                let mut list = c.lock().unwrap_or_else(|p| p.into_inner());
                list.retain(|h| !h.is_finished());
                list.push(task.abort_handle());
            }
        });
        Relay { addr, target, conns, accept: accept.abort_handle() }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends new connections to `to` (none: close them) and cuts every relayed connection.
    pub fn switch(&self, to: Option<SocketAddr>) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = to;
        for h in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            h.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        for h in self.conns.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            h.abort();
        }
    }
}
