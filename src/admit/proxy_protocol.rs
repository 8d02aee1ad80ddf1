//! The PROXY protocol (HAProxy, versions 1 and 2): the real client address a trusted load balancer
//! sends ahead of the TLS or HTTP bytes.
//!
//! [`parse`] is a pure parser over whatever bytes have arrived so far. [`accept`] reads a header off a
//! stream under a timeout and hands back a [`Prefixed`] stream that replays the bytes read past the
//! header, so the TLS acceptor and hyper run on it as if nothing had been read.
//!
//! Only call these for a peer in `listen.trusted_proxies`: from anyone else a PROXY header is a
//! spoofing attempt. A trusted peer that sends no header is plain traffic ([`Parse::NotProxy`]), which
//! lets a load balancer health-check the port directly. This module does not decide trust, and it
//! does not interpret TLVs (they are skipped).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The version 2 signature.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2's fixed part: signature, version/command, family/protocol, 2-byte length.
const V2_FIXED: usize = 16;
/// The version 1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest version 1 header, `\r\n` included (spec §2.1).
pub const V1_MAX: usize = 107;
/// The longest version 2 header: the fixed part and the largest length field.
pub const V2_MAX: usize = V2_FIXED + u16::MAX as usize;

/// What the bytes received so far hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A PROXY header may follow but is not complete yet: read more.
    Incomplete,
    /// The bytes do not start with a PROXY signature: plain traffic, replay them all.
    NotProxy,
    /// A complete header of `consumed` bytes. `source` is the client's address, `None` for a `LOCAL`
    /// connection (the proxy's own, e.g. a health check), `UNKNOWN`, `AF_UNSPEC` or `AF_UNIX`: the
    /// caller then uses the socket's peer address.
    Header { consumed: usize, source: Option<SocketAddr> },
    /// A PROXY signature followed by a malformed header: the connection must be closed.
    Invalid(&'static str),
}

/// Parses the start of a connection's bytes.
pub fn parse(buf: &[u8]) -> Parse {
    if buf.starts_with(V2_SIGNATURE) {
        parse_v2(buf)
    } else if buf.starts_with(V1_PREFIX) {
        parse_v1(buf)
    } else if V2_SIGNATURE.starts_with(buf) || V1_PREFIX.starts_with(buf) {
        // Too short to tell yet (an empty buffer included).
        Parse::Incomplete
    } else {
        Parse::NotProxy
    }
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, `PROXY TCP6 ...`, `PROXY UNKNOWN[ ...]\r\n`.
fn parse_v1(buf: &[u8]) -> Parse {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= V1_MAX { Parse::Invalid("v1 header too long") } else { Parse::Incomplete };
    };
    let Some(line) = window[..lf].strip_suffix(b"\r") else {
        return Parse::Invalid("v1 header not terminated by crlf");
    };
    let consumed = lf + 1;
    let Ok(line) = std::str::from_utf8(line) else { return Parse::Invalid("v1 header not ascii") };
    let mut fields = line.split(' ');
    // The prefix was checked by the caller.
    let _proxy = fields.next();
    let family = fields.next().unwrap_or_default();
    if family == "UNKNOWN" {
        // Whatever follows UNKNOWN is to be ignored (spec §2.1).
        return Parse::Header { consumed, source: None };
    }
    let is_v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => return Parse::Invalid("v1 header with an unknown protocol"),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Parse::Invalid("v1 header with a wrong number of fields");
    };
    let src = if is_v6 {
        src.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    } else {
        src.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    };
    let (Some(src), Some(sport), Some(_dport)) = (src, parse_port(sport), parse_port(dport)) else {
        return Parse::Invalid("v1 header with a malformed address or port");
    };
    // The destination is parsed for validation only: a header with a malformed one is malformed.
    if !matches!(dst.parse::<IpAddr>(), Ok(dst) if dst.is_ipv6() == is_v6) {
        return Parse::Invalid("v1 header with a malformed address or port");
    }
    Parse::Header { consumed, source: Some(SocketAddr::new(src, sport)) }
}

/// A decimal port: digits only (`u16::from_str` would also take a `+`), no leading zero.
fn parse_port(s: &str) -> Option<u16> {
    let digits_only = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

fn parse_v2(buf: &[u8]) -> Parse {
    let Some(fixed) = buf.get(..V2_FIXED) else { return Parse::Incomplete };
    let (version_command, family, len) = (fixed[12], fixed[13], u16::from_be_bytes([fixed[14], fixed[15]]));
    if version_command >> 4 != 2 {
        return Parse::Invalid("v2 header with an unsupported version");
    }
    let consumed = V2_FIXED + usize::from(len);
    let Some(body) = buf.get(V2_FIXED..consumed) else { return Parse::Incomplete };
    match version_command & 0x0f {
        // LOCAL: the proxy's own connection; the address block, if any, is to be ignored.
        0x0 => return Parse::Header { consumed, source: None },
        0x1 => {}
        _ => return Parse::Invalid("v2 header with an unknown command"),
    }
    let source = match family {
        // AF_UNSPEC: no address at all.
        0x00 => None,
        // AF_UNIX over stream or datagram: src(108) dst(108), no IP address to learn.
        0x31 | 0x32 => {
            if body.len() < 216 {
                return Parse::Invalid("v2 header shorter than its addresses");
            }
            None
        }
        // AF_INET over TCP or UDP: src(4) dst(4) sport(2) dport(2).
        0x11 | 0x12 => {
            let Some(a) = body.get(..12) else {
                return Parse::Invalid("v2 header shorter than its addresses");
            };
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]])))
        }
        // AF_INET6 over TCP or UDP: src(16) dst(16) sport(2) dport(2).
        0x21 | 0x22 => {
            let Some(a) = body.get(..36) else {
                return Parse::Invalid("v2 header shorter than its addresses");
            };
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), u16::from_be_bytes([a[32], a[33]])))
        }
        // The spec requires receivers to reject every other value.
        _ => return Parse::Invalid("v2 header with an unknown address family or protocol"),
    };
    // TLVs after the addresses are skipped: `consumed` covers them.
    Parse::Header { consumed, source }
}

/// Why no client address could be read from a trusted peer. Each one closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The header did not arrive in time (a stalled or slow-loris peer).
    #[error("proxy protocol header not received within {0:?}")]
    Timeout(Duration),
    /// The peer closed the connection before a complete header (or any byte) arrived.
    #[error("connection closed before the end of the proxy protocol header")]
    Closed,
    /// A PROXY signature followed by a malformed header.
    #[error("invalid proxy protocol header: {0}")]
    Invalid(&'static str),
    #[error("reading the proxy protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads a PROXY header off `stream` within `timeout`.
///
/// Returns the client's address (`None` when the header carries none, or when the peer sent plain
/// traffic without a header) and the bytes read past the header, which the caller must replay (see
/// [`Prefixed`]). Reads no more than it must to find the end of the header: nothing past a v2 header,
/// and past a v1 header at most what arrived with it.
pub async fn read_header<S>(
    stream: &mut S,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Bytes), ProxyError>
where
    S: AsyncRead + Unpin,
{
    tokio::time::timeout(timeout, read_header_inner(stream))
        .await
        .map_err(|_| ProxyError::Timeout(timeout))?
}

async fn read_header_inner<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Option<SocketAddr>, Bytes), ProxyError> {
    let mut buf = BytesMut::with_capacity(V1_MAX);
    loop {
        match parse(&buf) {
            Parse::Incomplete => {}
            Parse::NotProxy => return Ok((None, buf.freeze())),
            Parse::Header { consumed, source } => {
                buf.advance(consumed);
                return Ok((source, buf.freeze()));
            }
            Parse::Invalid(why) => return Err(ProxyError::Invalid(why)),
        }
        let want = wanted(&buf);
        buf.reserve(want);
        if (&mut *stream).take(want as u64).read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Closed);
        }
    }
}

/// How many more bytes an incomplete header can use: enough to see v2's fixed part (which a v1 header
/// is longer than), then exactly the rest of a v2 header, or up to v1's maximum.
fn wanted(buf: &[u8]) -> usize {
    if buf.len() < V2_FIXED {
        V2_FIXED - buf.len()
    } else if buf.starts_with(V2_SIGNATURE) {
        (V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]))).saturating_sub(buf.len()).max(1)
    } else {
        V1_MAX.saturating_sub(buf.len()).max(1)
    }
}

/// Reads a PROXY header off `stream` (see [`read_header`]) and returns the client address with the
/// stream wrapped to replay what was read past the header.
pub async fn accept<S>(
    mut stream: S,
    timeout: Duration,
) -> Result<(Option<SocketAddr>, Prefixed<S>), ProxyError>
where
    S: AsyncRead + Unpin,
{
    let (source, rest) = read_header(&mut stream, timeout).await?;
    Ok((source, Prefixed::new(rest, stream)))
}

/// A stream that first yields `prefix`, then reads from the inner stream; writes go straight through.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// Wraps `inner` so that reads return `prefix` first.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Prefixed { prefix, inner }
    }

    /// The inner stream (e.g. for its peer address).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably. Reading from it directly skips the prefix not yet replayed.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The prefix not yet replayed and the inner stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
