use super::*;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LONG: Duration = Duration::from_secs(3600);

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

/// A v2 header: signature, version/command, family/protocol, then `body` (addresses and TLVs).
fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(family);
    h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn v4_body(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    [&src[..], &dst[..], &sport.to_be_bytes(), &dport.to_be_bytes()].concat()
}

fn v6_body(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    [&src.octets()[..], &dst.octets()[..], &sport.to_be_bytes(), &dport.to_be_bytes()].concat()
}

/// A few TLVs: PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "alto.example", PP2_TYPE_NOOP.
fn tlvs() -> Vec<u8> {
    let mut t = vec![0x01, 0x00, 0x02];
    t.extend_from_slice(b"h2");
    t.extend_from_slice(&[0x02, 0x00, 0x0c]);
    t.extend_from_slice(b"alto.example");
    t.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
    t
}

/// Every valid header in these tests, with the address it carries.
fn valid_headers() -> Vec<(Vec<u8>, Option<SocketAddr>)> {
    let v6_src: Ipv6Addr = "2001:db8::1".parse().unwrap();
    let v6_dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
    vec![
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n".to_vec(), addr("192.0.2.1:56324")),
        (b"PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n".to_vec(), addr("[2001:db8::1]:56324")),
        (b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n".to_vec(), addr("0.0.0.0:0")),
        (
            b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
                .to_vec(),
            addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        ),
        (b"PROXY UNKNOWN\r\n".to_vec(), None),
        (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec(), None),
        (v2(0x1, 0x11, &v4_body([192, 0, 2, 1], [198, 51, 100, 1], 56324, 443)), addr("192.0.2.1:56324")),
        (v2(0x1, 0x12, &v4_body([192, 0, 2, 1], [198, 51, 100, 1], 53, 53)), addr("192.0.2.1:53")),
        (v2(0x1, 0x21, &v6_body(v6_src, v6_dst, 56324, 443)), addr("[2001:db8::1]:56324")),
        (v2(0x1, 0x22, &v6_body(v6_src, v6_dst, 56324, 443)), addr("[2001:db8::1]:56324")),
        (
            v2(0x1, 0x11, &[v4_body([203, 0, 113, 7], [198, 51, 100, 1], 1, 2), tlvs()].concat()),
            addr("203.0.113.7:1"),
        ),
        (v2(0x1, 0x21, &[v6_body(v6_src, v6_dst, 9, 9), tlvs()].concat()), addr("[2001:db8::1]:9")),
        // LOCAL: a health check from the proxy itself; whatever address block follows is ignored.
        (v2(0x0, 0x00, &[]), None),
        (v2(0x0, 0x11, &v4_body([192, 0, 2, 1], [198, 51, 100, 1], 1, 2)), None),
        (v2(0x0, 0x11, &tlvs()), None),
        // AF_UNSPEC, AF_UNIX.
        (v2(0x1, 0x00, &[]), None),
        (v2(0x1, 0x00, &tlvs()), None),
        (v2(0x1, 0x31, &[0u8; 216]), None),
    ]
}

#[test]
fn valid_headers_parse_with_and_without_traffic_behind_them() {
    for (header, source) in valid_headers() {
        let consumed = header.len();
        assert_eq!(parse(&header), Parse::Header { consumed, source }, "{header:?}");
        for behind in [&b"GET /directory HTTP/1.1\r\n"[..], b"\x16\x03\x01\x02\x00", b"\r\n"] {
            let full = [&header[..], behind].concat();
            assert_eq!(parse(&full), Parse::Header { consumed, source }, "{full:?}");
        }
    }
}

#[test]
fn every_split_point_of_a_header_is_incomplete() {
    for (header, _) in valid_headers() {
        for end in 0..header.len() {
            assert_eq!(parse(&header[..end]), Parse::Incomplete, "{:?}", &header[..end]);
        }
    }
}

#[test]
fn plain_traffic_is_not_proxy() {
    for bytes in [
        &b"GET /directory HTTP/1.1\r\n"[..],
        b"POST /ecs HTTP/1.1\r\n",
        b"PUT",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"proxy TCP4 192.0.2.1 198.51.100.1 1 2\r\n",
        b"PROXYTCP4",
        b"\r\n\r\n\0\r\nQUIX\n",
        b"\r\n\r\nGET",
        b"\0",
    ] {
        assert_eq!(parse(bytes), Parse::NotProxy, "{bytes:?}");
    }
    // A prefix of a signature is not enough to tell.
    for bytes in [&b""[..], b"P", b"PROX", b"PROXY", b"\r", b"\r\n\r\n\0\r\nQUI"] {
        assert_eq!(parse(bytes), Parse::Incomplete, "{bytes:?}");
    }
}

#[test]
fn malformed_v1_headers_are_invalid() {
    for bytes in [
        &b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\n"[..],
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 7\r\n",
        b"PROXY TCP4  192.0.2.1 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443 \r\n",
        b"PROXY TCP4 192.0.2.256 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 192.0.2.01 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 2001:db8::1 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 192.0.2.1 2001:db8::2 56324 443\r\n",
        b"PROXY TCP6 192.0.2.1 2001:db8::2 56324 443\r\n",
        b"PROXY TCP6 2001:db8::1 198.51.100.1 56324 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 65536 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 +1 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 01 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 -1 443\r\n",
        b"PROXY TCP4 192.0.2.1 198.51.100.1 1 \r\n",
        b"PROXY UDP4 192.0.2.1 198.51.100.1 1 2\r\n",
        b"PROXY tcp4 192.0.2.1 198.51.100.1 1 2\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4\r\n",
        b"PROXY TCP4 \xff\xfe 198.51.100.1 1 2\r\n",
    ] {
        assert!(
            matches!(parse(bytes), Parse::Invalid(_)),
            "{:?} → {:?}",
            String::from_utf8_lossy(bytes),
            parse(bytes)
        );
    }
}

#[test]
fn an_oversize_v1_header_is_invalid() {
    let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 200]].concat();
    assert_eq!(parse(&long[..V1_MAX - 1]), Parse::Incomplete);
    assert!(matches!(parse(&long[..V1_MAX]), Parse::Invalid(_)));
    assert!(matches!(parse(&long), Parse::Invalid(_)));
    // The longest allowed header (107 bytes with its CRLF) is fine; a CRLF one byte further is not.
    let max = [&b"PROXY UNKNOWN "[..], &[b'x'; V1_MAX - 16], b"\r\n"].concat();
    assert_eq!(max.len(), V1_MAX);
    assert_eq!(parse(&max), Parse::Header { consumed: V1_MAX, source: None });
    let over = [&b"PROXY UNKNOWN "[..], &[b'x'; V1_MAX - 15], b"\r\n"].concat();
    assert!(matches!(parse(&over), Parse::Invalid(_)));
}

#[test]
fn malformed_v2_headers_are_invalid() {
    let body = v4_body([192, 0, 2, 1], [198, 51, 100, 1], 1, 2);
    let mut version_1 = v2(0x1, 0x11, &body);
    version_1[12] = 0x11;
    let mut version_3 = v2(0x1, 0x11, &body);
    version_3[12] = 0x31;
    for bytes in [
        version_1,
        version_3,
        v2(0x2, 0x11, &body),
        v2(0xf, 0x11, &body),
        // Unknown family or protocol values, and families without a transport.
        v2(0x1, 0x10, &body),
        v2(0x1, 0x13, &body),
        v2(0x1, 0x41, &body),
        v2(0x1, 0x01, &[]),
        // A length too short for the addresses its family needs.
        v2(0x1, 0x11, &body[..11]),
        v2(0x1, 0x21, &body),
        v2(0x1, 0x31, &[0u8; 215]),
    ] {
        assert!(matches!(parse(&bytes), Parse::Invalid(_)), "{bytes:?} → {:?}", parse(&bytes));
    }
}

#[test]
fn a_v2_header_may_be_as_long_as_its_length_field_says() {
    let header = v2(0x1, 0x00, &vec![0u8; usize::from(u16::MAX)]);
    assert_eq!(header.len(), V2_MAX);
    assert_eq!(parse(&header[..V2_MAX - 1]), Parse::Incomplete);
    assert_eq!(parse(&header), Parse::Header { consumed: V2_MAX, source: None });
}

#[tokio::test]
async fn the_wrapper_replays_what_followed_a_v1_header() {
    let (mut client, server) = tokio::io::duplex(4096);
    client
        .write_all(b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\nGET /directory HTTP/1.1\r\n")
        .await
        .unwrap();
    let (source, mut stream) = accept(server, LONG).await.unwrap();
    assert_eq!(source, addr("192.0.2.1:56324"));

    // What came with the header, then what comes later, in order.
    client.write_all(b"Host: shield\r\n\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    // Writes go straight through to the peer.
    stream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    assert_eq!(rest, b"GET /directory HTTP/1.1\r\nHost: shield\r\n\r\n");
    let mut reply = [0u8; 17];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"HTTP/1.1 200 OK\r\n");
}

#[tokio::test]
async fn a_v2_header_is_read_without_reading_past_it() {
    let (mut client, mut server) = tokio::io::duplex(4096);
    let header = v2(0x1, 0x11, &[v4_body([203, 0, 113, 7], [198, 51, 100, 1], 4242, 443), tlvs()].concat());
    client.write_all(&[&header[..], b"\x16\x03\x01 tls bytes"].concat()).await.unwrap();
    let (source, rest) = read_header(&mut server, LONG).await.unwrap();
    assert_eq!(source, addr("203.0.113.7:4242"));
    assert!(rest.is_empty(), "read past the header: {rest:?}");
    let mut tls = [0u8; 13];
    server.read_exact(&mut tls).await.unwrap();
    assert_eq!(&tls, b"\x16\x03\x01 tls bytes");
}

#[tokio::test]
async fn a_header_trickling_in_byte_by_byte_is_assembled() {
    let (mut client, server) = tokio::io::duplex(4096);
    let header =
        v2(0x1, 0x21, &v6_body("2001:db8::7".parse().unwrap(), "2001:db8::1".parse().unwrap(), 1, 2));
    let writer = tokio::spawn(async move {
        for byte in header.iter().chain(b"hello") {
            client.write_all(&[*byte]).await.unwrap();
            tokio::task::yield_now().await;
        }
        client
    });
    let (source, mut stream) = accept(server, LONG).await.unwrap();
    assert_eq!(source, addr("[2001:db8::7]:1"));
    drop(writer.await.unwrap());
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"hello");
}

#[tokio::test]
async fn plain_traffic_from_a_trusted_peer_is_replayed_whole() {
    for plain in [&b"GET /directory HTTP/1.1\r\nHost: shield\r\n\r\n"[..], b"\x16\x03\x01\x02\x00", b"P\r\n"]
    {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(plain).await.unwrap();
        drop(client);
        let (source, mut stream) = accept(server, LONG).await.unwrap();
        assert_eq!(source, None);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, plain);
    }
}

#[tokio::test]
async fn a_small_read_buffer_still_gets_the_whole_replay() {
    let (mut client, server) = tokio::io::duplex(4096);
    client.write_all(b"PROXY UNKNOWN\r\nabcdefgh").await.unwrap();
    drop(client);
    let (_, mut stream) = accept(server, LONG).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 3];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(out, b"abcdefgh");
}

#[tokio::test]
async fn a_silent_or_stalled_peer_times_out() {
    let timeout = Duration::from_millis(20);
    let (_silent, server) = tokio::io::duplex(4096);
    assert!(matches!(accept(server, timeout).await, Err(ProxyError::Timeout(_))));

    let (mut stalled, server) = tokio::io::duplex(4096);
    stalled.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
    assert!(matches!(accept(server, timeout).await, Err(ProxyError::Timeout(_))));
}

#[tokio::test]
async fn a_closed_or_garbled_connection_is_an_error() {
    let (client, server) = tokio::io::duplex(4096);
    drop(client);
    assert!(matches!(accept(server, LONG).await, Err(ProxyError::Closed)));

    let (mut client, server) = tokio::io::duplex(4096);
    client.write_all(b"PROXY TCP4 192.0.2.1").await.unwrap();
    drop(client);
    assert!(matches!(accept(server, LONG).await, Err(ProxyError::Closed)));

    let (mut client, server) = tokio::io::duplex(4096);
    client.write_all(b"PROXY TCP9 nonsense\r\n").await.unwrap();
    let err = accept(server, LONG).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid proxy protocol header: v1 header with an unknown protocol");
}
