//! The client toward the origin ALTO server (DESIGN §4 "Forward"): one pooled HTTP/1.1 and
//! HTTP/2 client over rustls (ring), with a connect timeout, a timeout on the whole exchange,
//! bounded concurrency toward the origin, a cap on the answer body, and exactly one retry of a
//! request whose connection failed or broke before any answer byte arrived.
//!
//! It moves bytes and says how the exchange went; it must not judge what the origin said. A 4xx
//! or 5xx answer, an ALTO error body or a body that is not JSON is a successful exchange here:
//! checking the answer, caching and coalescing belong to the callers.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::tls::{load_certs, load_key, provider, TlsError};

#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;

/// Default time to establish a TCP connection (and, for `https`, finish the TLS handshake).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time for a whole exchange: permit, connection, request, answer and its body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of requests in flight toward the origin at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default cap on an answer body: full maps of a large ISP are tens of MiB.
pub const DEFAULT_MAX_BODY: u64 = 256 * 1024 * 1024;
/// How long an idle pooled connection is kept. Origins commonly close idle connections after
/// 60 to 120 s; a stale one costs only the retry below.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per origin host. The shield talks to one or a few hosts at high rates,
/// so a small pool would keep closing and reopening HTTP/1.1 connections.
pub const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// TCP keepalive on origin connections, so a silently dead peer is noticed while pooled.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// How the origin client is set up.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// PEM trust roots for `https` origins; `None` uses the system roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain presented to the origin (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for the whole exchange, waiting for a concurrency permit and reading the body included.
    pub timeout: Duration,
    /// Requests in flight toward the origin at once (at least 1).
    pub max_in_flight: usize,
    /// Largest answer body accepted, in bytes.
    pub max_body: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            ca: None,
            cert: None,
            key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Why the origin client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// A trust root, certificate or key file is unusable; the message names the file.
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("a client certificate toward the origin needs both a certificate and a key file")]
    HalfClientCert,
    #[error("the number of requests in flight toward the origin must be at least 1")]
    NoConcurrency,
}

/// One request to the origin.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Absolute `http` or `https` URI.
    pub uri: Uri,
    /// Always sent: the origin must not guess what the shield can take.
    pub accept: String,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// Extra headers, e.g. `Via`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl UpstreamRequest {
    /// A `GET` of `uri` accepting `accept`.
    pub fn get(uri: Uri, accept: impl Into<String>) -> UpstreamRequest {
        UpstreamRequest {
            method: Method::GET,
            uri,
            accept: accept.into(),
            content_type: None,
            body: Bytes::new(),
            headers: Vec::new(),
        }
    }
}

/// The origin's answer, whatever its status, with the body read in full.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From the call to [`Upstream::send`] to the last body byte, permit wait included.
    pub elapsed: Duration,
}

/// Why an exchange with the origin failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the origin: {0}")]
    Connect(String),
    #[error("the origin did not answer in time")]
    Timeout,
    /// The connection broke, or the answer was malformed at the HTTP level.
    #[error("broken exchange with the origin: {0}")]
    Broken(String),
    /// The answer body is larger than the limit (carried here).
    #[error("origin answer larger than {0} bytes")]
    TooLarge(u64),
    /// No concurrency permit toward the origin could be had within the timeout.
    #[error("too many requests in flight toward the origin")]
    Overloaded,
}

impl UpstreamError {
    /// The metrics label of the failure. `Overloaded` counts as a timeout: the request ran out
    /// of time waiting for its turn toward the origin.
    pub fn status_label(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect_error",
            UpstreamError::Timeout | UpstreamError::Overloaded => "timeout",
            UpstreamError::Broken(_) | UpstreamError::TooLarge(_) => "invalid_response",
        }
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The pooled client toward the origin. Cheap to clone: clones share the pool and the
/// concurrency bound.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    client: HttpClient,
    permits: Semaphore,
    timeout: Duration,
    max_body: u64,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("timeout", &self.inner.timeout)
            .field("max_body", &self.inner.max_body)
            .field("available_permits", &self.inner.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Builds the client. Errors name the file at fault. No connection is opened here.
    pub fn new(cfg: &UpstreamConfig) -> Result<Upstream, UpstreamSetupError> {
        if cfg.max_in_flight == 0 {
            return Err(UpstreamSetupError::NoConcurrency);
        }
        let tls = client_tls_config(cfg)?;

        let mut http = HttpConnector::new();
        // The TLS layer above handles `https`; without this the connector refuses it.
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(TCP_KEEPALIVE));

        // ALPN offers h2 and http/1.1 on TLS; plain `http://` origins get HTTP/1.1.
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // A request that never left because its pooled connection was found closed is
            // resent by the pool itself; other broken exchanges get our one retry in `exchange`.
            .retry_canceled_requests(true)
            .build(connector);
        Ok(Upstream {
            inner: Arc::new(Inner {
                client,
                permits: Semaphore::new(cfg.max_in_flight.min(Semaphore::MAX_PERMITS)),
                timeout: cfg.timeout,
                max_body: cfg.max_body,
            }),
        })
    }

    /// Sends `req` and reads the whole answer, within the configured timeout.
    pub async fn send(&self, req: UpstreamRequest) -> Result<UpstreamResponse, UpstreamError> {
        let started = Instant::now();
        // One deadline for everything, so a request queued behind the concurrency bound cannot
        // wait longer in total than one that went straight through.
        let deadline = started + self.inner.timeout;
        let _permit = match tokio::time::timeout_at(deadline, self.inner.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            // The semaphore is never closed; treat it like running out of time if it ever is.
            Ok(Err(_)) | Err(_) => return Err(UpstreamError::Overloaded),
        };
        let (status, headers, body) = tokio::time::timeout_at(deadline, self.exchange(&req))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        Ok(UpstreamResponse { status, headers, body, elapsed: started.elapsed() })
    }

    async fn exchange(&self, req: &UpstreamRequest) -> Result<(StatusCode, HeaderMap, Bytes), UpstreamError> {
        let resp = match self.inner.client.request(build_request(req)?).await {
            Ok(resp) => resp,
            // ALTO requests are read-only queries, so one resend is safe; only when nothing of
            // an answer arrived, since anything later may be the origin's real reaction.
            Err(e) if broke_before_answer(&e) => {
                tracing::debug!(uri = %req.uri, error = %chain(&e),
                    "origin exchange failed before any answer; retrying once");
                self.inner.client.request(build_request(req)?).await.map_err(|e| classify(&e))?
            }
            Err(e) => return Err(classify(&e)),
        };
        let (parts, body) = resp.into_parts();
        let max = self.inner.max_body;
        let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max) {
            return Err(UpstreamError::TooLarge(max));
        }
        let limited = Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX));
        let body = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return Err(UpstreamError::TooLarge(max))
            }
            // A body that broke midway is not retried: the origin did answer.
            Err(e) => return Err(UpstreamError::Broken(format!("reading the answer body: {}", chain(&*e)))),
        };
        Ok((parts.status, parts.headers, body))
    }
}

fn client_tls_config(cfg: &UpstreamConfig) -> Result<rustls::ClientConfig, UpstreamSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::from)?;
    let builder = match &cfg.ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in load_certs(ca)? {
                roots.add(cert).map_err(|e| file_error(ca, e))?;
            }
            builder.with_root_certificates(roots)
        }
        None => match builder.clone().with_native_roots() {
            Ok(builder) => builder,
            Err(e) => {
                // Plain `http://` origins need no roots, so this is not fatal; an `https` origin
                // will fail its handshake with a certificate error naming the cause.
                tracing::warn!(error = %e, "no system trust roots; https origins will not verify");
                builder.with_root_certificates(rustls::RootCertStore::empty())
            }
        },
    };
    match (&cfg.cert, &cfg.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = load_key(key)?;
            Ok(builder.with_client_auth_cert(chain, key).map_err(|e| file_error(cert, e))?)
        }
        _ => Err(UpstreamSetupError::HalfClientCert),
    }
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.to_path_buf(), reason: reason.to_string() }
}

fn build_request(req: &UpstreamRequest) -> Result<http::Request<Full<Bytes>>, UpstreamError> {
    let bad =
        |what: &str, e: &dyn std::fmt::Display| UpstreamError::Broken(format!("cannot send {what}: {e}"));
    let mut out = http::Request::new(Full::new(req.body.clone()));
    *out.method_mut() = req.method.clone();
    *out.uri_mut() = req.uri.clone();
    let headers = out.headers_mut();
    for (name, value) in &req.headers {
        headers.append(name.clone(), value.clone());
    }
    headers.insert(ACCEPT, HeaderValue::from_str(&req.accept).map_err(|e| bad("the Accept header", &e))?);
    if let Some(ct) = &req.content_type {
        headers
            .insert(CONTENT_TYPE, HeaderValue::from_str(ct).map_err(|e| bad("the Content-Type header", &e))?);
    }
    Ok(out)
}

/// Whether a failed send left the origin no chance to answer: the connection could not be
/// made, or it closed or reset before a single answer byte. A malformed answer, a timeout or a
/// misuse of the client are not in that class.
fn broke_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() || h.is_user() || h.is_timeout() {
                return false;
            }
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof);
        }
        source = s.source();
    }
    false
}

fn classify(e: &hyper_util::client::legacy::Error) -> UpstreamError {
    if e.is_connect() {
        UpstreamError::Connect(chain(e))
    } else {
        UpstreamError::Broken(chain(e))
    }
}

/// An error with its causes, `outer: inner: innermost`; hyper's own messages are terse.
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        // Some layers repeat their cause in their own message.
        if !out.ends_with(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        source = s.source();
    }
    out
}
