//! The shield's data-plane listener: accepts connections within `limits.max_connections`, reads
//! a PROXY protocol header from trusted proxies, terminates TLS (with a handshake timeout),
//! serves HTTP/1.1 and HTTP/2 with a header-read timeout, and drains gracefully on shutdown.
//!
//! It knows nothing of ALTO: each request goes to [`crate::shield::handle`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::admit::proxy_protocol::{self, Prefixed};
use crate::shield::{handle, ConnInfo, Shield};

/// Serves `listener` until `shutdown` resolves, then stops accepting and gives open connections
/// `limits.shutdown_grace` to finish their requests.
pub async fn serve(
    shield: Arc<Shield>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = shield.config.limits.clone();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over the connection limit: close at once rather than let the client hang.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (shield, acceptor, builder, watcher) =
            (shield.clone(), acceptor.clone(), builder.clone(), graceful.watcher());
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let trusted = shield.trusted(crate::admit::normalize(peer.ip()));
            let (stream, proxied) = match proxy_header(stream, trusted, handshake_timeout).await {
                Ok(x) => x,
                Err(e) => return tracing::debug!(%peer, error = %e, "bad PROXY protocol header"),
            };
            let conn = ConnInfo { peer, proxied };
            let service = hyper::service::service_fn(move |req| {
                let shield = shield.clone();
                async move {
                    // One line per request at debug; nothing is copied when debug is off.
                    let line = tracing::enabled!(tracing::Level::DEBUG)
                        .then(|| (req.method().clone(), req.uri().clone()));
                    let resp = handle(shield, req, conn).await;
                    if let Some((method, uri)) = line {
                        tracing::debug!(peer = %conn.peer, %method, path = uri.path(), status = resp.status().as_u16(), "request");
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            match acceptor {
                None => {
                    let c = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(c.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    };
                    let c = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                    if let Err(e) = watcher.watch(c.into_owned()).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("grace period over; closing the remaining connections");
    }
}

/// Reads a PROXY protocol header when the peer is a trusted proxy; other peers' bytes are never
/// interpreted as one.
async fn proxy_header(
    stream: TcpStream,
    trusted: bool,
    timeout: Duration,
) -> Result<(Prefixed<TcpStream>, Option<std::net::IpAddr>), proxy_protocol::ProxyError> {
    if !trusted {
        return Ok((Prefixed::new(bytes::Bytes::new(), stream), None));
    }
    let mut stream = stream;
    let (source, rest) = proxy_protocol::read_header(&mut stream, timeout).await?;
    Ok((Prefixed::new(rest, stream), source.map(|s| s.ip())))
}
