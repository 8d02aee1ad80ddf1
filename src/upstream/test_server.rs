//! A minimal hand-written HTTP/1.1 server for tests of the origin client and the IRD fetcher:
//! it misbehaves on demand (closes, hangs, answers garbage), which a real server will not.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Index of the connection it came on (0 for the first accepted).
    pub conn: usize,
    pub method: String,
    pub path: String,
    /// The request line and headers, with header names lower-cased.
    pub head: String,
    pub body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n == name).then(|| v.trim())
        })
    }
}

/// What the server does with a request.
#[derive(Debug)]
pub(crate) enum Action {
    /// Write these bytes, then read the next request on the connection.
    Reply(Vec<u8>),
    /// Write these bytes, then close.
    ReplyThenClose(Vec<u8>),
    /// Close without answering.
    Close,
    /// Keep the connection open and never answer.
    Hang,
    /// Wait for a permit of the gate, then write these bytes.
    Gated(Arc<Semaphore>, Vec<u8>),
}

/// A running test server.
#[derive(Debug)]
pub(crate) struct TestServer {
    pub addr: std::net::SocketAddr,
    accepts: Arc<AtomicUsize>,
    pub requests: mpsc::UnboundedReceiver<Received>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves each request with `handler`.
    pub async fn start<F>(handler: F) -> TestServer
    where
        F: Fn(&Received) -> Action + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let (tx, requests) = mpsc::unbounded_channel();
        let handler = Arc::new(handler);
        let counter = accepts.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve_conn(stream, conn, handler.clone(), tx.clone()));
            }
        });
        TestServer { addr, accepts, requests }
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> http::Uri {
        format!("http://{}{}", self.addr, path).parse().expect("test url")
    }
}

async fn serve_conn<F>(
    mut stream: TcpStream,
    conn: usize,
    handler: Arc<F>,
    tx: mpsc::UnboundedSender<Received>,
) where
    F: Fn(&Received) -> Action + Send + Sync + 'static,
{
    let mut buf = Vec::new();
    while let Some(req) = read_request(&mut stream, &mut buf, conn).await {
        let action = handler(&req);
        let _ = tx.send(req);
        match action {
            Action::Reply(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Action::ReplyThenClose(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
            Action::Close => return,
            Action::Hang => {
                std::future::pending::<()>().await;
            }
            Action::Gated(gate, bytes) => {
                let Ok(permit) = gate.acquire().await else { return };
                permit.forget();
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads one request (head and `Content-Length` body); `None` at end of stream.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>, conn: usize) -> Option<Received> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let raw = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = raw.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next()?.to_string();
    let mut head = request_line.clone();
    let mut content_length = 0usize;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            content_length = value.trim().parse().ok()?;
        }
        head.push_str(&format!("\n{name}: {}", value.trim()));
    }
    while buf.len() < head_end + content_length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end..head_end + content_length].to_vec();
    buf.drain(..head_end + content_length);
    let mut parts = request_line.split(' ');
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    Some(Received { conn, method, path, head, body })
}

/// An HTTP/1.1 answer with `Content-Length`, kept alive.
pub(crate) fn response(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
