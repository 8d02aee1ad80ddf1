//! The load generator's HTTP client: per server (scheme and authority), a pool of at most
//! `--connections` connections opened by hand with hyper's connection API, HTTP/1.1 (one
//! request at a time per connection) or HTTP/2 (`--streams` concurrent streams per
//! connection), plain or over rustls, every exchange bounded in time.
//!
//! Hand-made rather than hyper-util's pooled client so that the connection count is exact,
//! HTTP/2 can spread over several connections, and each failure is classified (connection,
//! TLS, timeout, broken exchange) and known to have been sent or not, so that `requests sent`
//! matches what a server counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, ETAG, HOST, IF_NONE_MATCH};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::{http1, http2};
use hyper_rustls::ConfigBuilderExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::tls::provider;

/// The largest answer body read; a bigger one is a broken exchange.
const MAX_BODY: usize = 256 << 20;

/// Which servers are trusted over TLS.
#[derive(Debug, Clone)]
pub enum Trust {
    /// The system's trust roots.
    System,
    /// The PEM certificates in a file (`--ca`).
    CaFile(PathBuf),
    /// These certificates (the demo's self-signed one).
    Roots(Vec<CertificateDer<'static>>),
    /// Any certificate (`--insecure`).
    Insecure,
}

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub trust: Trust,
    pub http2: bool,
    /// Connections per server.
    pub connections: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub streams: usize,
    pub connect_timeout: Duration,
    /// Bound on one exchange once a connection slot is had: connecting, sending, the whole
    /// answer.
    pub timeout: Duration,
}

/// Why an exchange gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// TCP connection refused, unreachable, unresolvable or timed out.
    Connect(String),
    /// The TLS handshake failed (certificate, protocol, ALPN).
    Tls(String),
    /// No complete answer within the timeout.
    Timeout,
    /// The connection broke or the answer was malformed at the HTTP level.
    Broken(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Failure::Timeout => write!(f, "no answer in time"),
            Failure::Broken(e) => write!(f, "broken exchange: {e}"),
        }
    }
}

/// One request, ready to be sent again and again (every part is cheap to clone).
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub uri: Uri,
    pub accept: HeaderValue,
    pub content_type: Option<HeaderValue>,
    pub if_none_match: Option<HeaderValue>,
    pub body: Bytes,
}

impl Req {
    pub fn get(uri: Uri, accept: &'static str) -> Req {
        Req {
            method: Method::GET,
            uri,
            accept: HeaderValue::from_static(accept),
            content_type: None,
            if_none_match: None,
            body: Bytes::new(),
        }
    }
}

/// A complete answer, whatever its status.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub etag: Option<HeaderValue>,
    pub body: Bytes,
}

/// How one exchange went, and whether the request left (was handed to an open connection).
#[derive(Debug)]
pub struct Outcome {
    pub sent: bool,
    pub result: Result<Answer, Failure>,
}

/// Pools by server, created on first use.
#[derive(Debug)]
pub struct Client {
    tls: Option<Arc<rustls::ClientConfig>>,
    options: ClientOptions,
    pools: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Client {
    /// Builds the client; a `--ca` file that cannot be used is an error naming it.
    pub fn new(options: ClientOptions) -> Result<Client, String> {
        let tls = tls_config(&options.trust, options.http2)?;
        Ok(Client { tls: Some(Arc::new(tls)), options, pools: Mutex::new(HashMap::new()) })
    }

    /// The pool toward the server of `uri` (an absolute `http` or `https` URI).
    pub fn pool(&self, uri: &Uri) -> Result<Arc<Pool>, String> {
        let endpoint = Endpoint::of(uri)?;
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        let pool = pools.entry(endpoint.key.clone()).or_insert_with(|| {
            let tls = if endpoint.tls { self.tls.clone() } else { None };
            Arc::new(Pool::new(endpoint, tls, &self.options))
        });
        Ok(pool.clone())
    }

    /// Sends one request to wherever its URI points.
    pub async fn send(&self, req: &Req) -> Outcome {
        match self.pool(&req.uri) {
            Ok(pool) => pool.send(req).await,
            Err(e) => Outcome { sent: false, result: Err(Failure::Connect(e)) },
        }
    }
}

/// Where a pool connects.
#[derive(Debug, Clone)]
struct Endpoint {
    /// `scheme://host:port`, lower-cased.
    key: String,
    tls: bool,
    /// `host:port` to connect to (IPv6 in brackets).
    connect: String,
    server_name: ServerName<'static>,
    host_header: HeaderValue,
}

impl Endpoint {
    fn of(uri: &Uri) -> Result<Endpoint, String> {
        let tls = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{uri} is not an http or https URL")),
        };
        let authority = uri.authority().ok_or_else(|| format!("{uri} has no host"))?;
        let host = authority.host().to_ascii_lowercase();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = match bare.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => {
                ServerName::try_from(bare.to_string()).map_err(|e| format!("{uri}: bad host name: {e}"))?
            }
        };
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("{uri}: bad authority: {e}"))?;
        Ok(Endpoint {
            key: format!("{}://{host}:{port}", if tls { "https" } else { "http" }),
            tls,
            connect: format!("{host}:{port}"),
            server_name,
            host_header,
        })
    }
}

/// An open connection's request handle.
#[derive(Debug)]
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// The connections toward one server.
#[derive(Debug)]
pub struct Pool {
    endpoint: Endpoint,
    tls: Option<Arc<rustls::ClientConfig>>,
    http2: bool,
    connect_timeout: Duration,
    timeout: Duration,
    /// Requests in flight: connections (HTTP/1.1) or connections × streams (HTTP/2).
    permits: Semaphore,
    /// Idle HTTP/1.1 connections.
    idle: Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
    /// HTTP/2 connections, used round-robin; a closed one is reopened on next use.
    h2: Vec<tokio::sync::Mutex<Option<http2::SendRequest<Full<Bytes>>>>>,
    next: AtomicUsize,
}

impl Pool {
    fn new(endpoint: Endpoint, tls: Option<Arc<rustls::ClientConfig>>, o: &ClientOptions) -> Pool {
        let connections = o.connections.max(1);
        let in_flight = if o.http2 { connections * o.streams.max(1) } else { connections };
        Pool {
            endpoint,
            tls,
            http2: o.http2,
            connect_timeout: o.connect_timeout,
            timeout: o.timeout,
            permits: Semaphore::new(in_flight.min(Semaphore::MAX_PERMITS)),
            idle: Mutex::new(Vec::with_capacity(connections)),
            h2: (0..if o.http2 { connections } else { 0 }).map(|_| tokio::sync::Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Sends `req` once: waits for a free slot, then connects if needed, sends and reads the
    /// whole answer within the timeout.
    pub async fn send(&self, req: &Req) -> Outcome {
        self.send_body(req, req.body.clone()).await
    }

    /// Sends `req` with `body` in place of its own (so one template serves many bodies).
    pub async fn send_body(&self, req: &Req, body: Bytes) -> Outcome {
        let Ok(_permit) = self.permits.acquire().await else {
            return Outcome { sent: false, result: Err(Failure::Broken("pool closed".into())) };
        };
        let sent = AtomicBool::new(false);
        let result = match tokio::time::timeout(self.timeout, self.exchange(req, body, &sent)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        Outcome { sent: sent.load(Ordering::Relaxed), result }
    }

    async fn exchange(&self, req: &Req, body: Bytes, sent: &AtomicBool) -> Result<Answer, Failure> {
        let mut sender = self.checkout().await?;
        let request = self.build(req, body, matches!(sender, Sender::H2(_)));
        let response = match &mut sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| Failure::Broken(chain(&e)))?;
                sent.store(true, Ordering::Relaxed);
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| Failure::Broken(chain(&e)))?;
                sent.store(true, Ordering::Relaxed);
                s.send_request(request).await
            }
        }
        .map_err(|e| Failure::Broken(chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| Failure::Broken(format!("reading the answer: {e}")))?
            .to_bytes();
        if let Sender::H1(s) = sender {
            if !s.is_closed() {
                self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(s);
            }
        }
        Ok(Answer {
            status: parts.status,
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            etag: parts.headers.get(ETAG).cloned(),
            body,
        })
    }

    fn build(&self, req: &Req, body: Bytes, http2: bool) -> Request<Full<Bytes>> {
        let mut r = Request::new(Full::new(body));
        *r.method_mut() = req.method.clone();
        if http2 {
            // HTTP/2 takes `:authority` and `:scheme` from an absolute URI.
            *r.uri_mut() = req.uri.clone();
        } else {
            *r.uri_mut() = req.uri.path_and_query().map_or(Uri::from_static("/"), |pq| {
                Uri::try_from(pq.as_str()).unwrap_or_else(|_| Uri::from_static("/"))
            });
            r.headers_mut().insert(HOST, self.endpoint.host_header.clone());
        }
        let h = r.headers_mut();
        h.insert(ACCEPT, req.accept.clone());
        if let Some(ct) = &req.content_type {
            h.insert(CONTENT_TYPE, ct.clone());
        }
        if let Some(tag) = &req.if_none_match {
            h.insert(IF_NONE_MATCH, tag.clone());
        }
        r
    }

    async fn checkout(&self) -> Result<Sender, Failure> {
        if !self.http2 {
            loop {
                let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                match idle {
                    Some(s) if !s.is_closed() => return Ok(Sender::H1(s)),
                    Some(_) => continue,
                    None => break,
                }
            }
            return self.connect().await;
        }
        let slot = &self.h2[self.next.fetch_add(1, Ordering::Relaxed) % self.h2.len()];
        let mut slot = slot.lock().await;
        if let Some(s) = slot.as_ref().filter(|s| !s.is_closed()) {
            return Ok(Sender::H2(s.clone()));
        }
        match self.connect().await? {
            Sender::H2(s) => {
                *slot = Some(s.clone());
                Ok(Sender::H2(s))
            }
            other => Ok(other),
        }
    }

    /// Opens a connection: TCP, then TLS with ALPN when `https`, then the HTTP handshake.
    async fn connect(&self) -> Result<Sender, Failure> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.endpoint.connect))
            .await
            .map_err(|_| Failure::Connect(format!("{} did not accept in time", self.endpoint.connect)))?
            .map_err(|e| Failure::Connect(format!("{}: {e}", self.endpoint.connect)))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else { return handshake(tcp, self.http2).await };
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let stream = tokio::time::timeout(
            self.connect_timeout,
            connector.connect(self.endpoint.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| Failure::Tls(format!("{}: no handshake in time", self.endpoint.connect)))?
        .map_err(|e| Failure::Tls(format!("{}: {e}", self.endpoint.connect)))?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        if self.http2 && !h2 {
            return Err(Failure::Tls(format!("{} did not agree to HTTP/2 (ALPN h2)", self.endpoint.connect)));
        }
        handshake(stream, h2).await
    }
}

async fn handshake<IO>(io: IO, http2: bool) -> Result<Sender, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(io)
            .await
            .map_err(|e| Failure::Broken(format!("HTTP/2 handshake: {}", chain(&e))))?;
        tokio::spawn(conn);
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| Failure::Broken(format!("HTTP/1.1 handshake: {}", chain(&e))))?;
        tokio::spawn(conn);
        Ok(Sender::H1(sender))
    }
}

/// An error and its sources on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

fn tls_config(trust: &Trust, http2: bool) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let mut config = match trust {
        Trust::System => match builder.clone().with_native_roots() {
            Ok(b) => b.with_no_client_auth(),
            // No usable system roots: every https target fails verification, and says so.
            Err(_) => builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth(),
        },
        Trust::CaFile(path) => {
            let certs = crate::tls::load_certs(path).map_err(|e| e.to_string())?;
            builder
                .with_root_certificates(roots(&certs).map_err(|e| format!("{}: {e}", path.display()))?)
                .with_no_client_auth()
        }
        Trust::Roots(certs) => builder.with_root_certificates(roots(certs)?).with_no_client_auth(),
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = if http2 { vec![b"h2".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(config)
}

fn roots(certs: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, String> {
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        store.add(c.clone()).map_err(|e| format!("unusable trust root: {e}"))?;
    }
    Ok(store)
}

/// `--insecure`: accepts any certificate, still checking that the handshake is signed by it.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
