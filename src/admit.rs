//! Admission: who the client really is, and whether it may be served right now.
//!
//! This module owns the pieces of the request path's *Admit* step (DESIGN.md §4) that need no
//! network stack: the client's real address ([`normalize`], [`forwarded_for`], and the PROXY protocol
//! in [`proxy_protocol`]) and the per-client rate limit ([`rate`]). It decides nothing about HTTP
//! responses: the server maps a refusal to 403 / 429 / 503 with `Retry-After`.
//!
//! Trust is the caller's decision made once per connection: a PROXY header or an `X-Forwarded-For`
//! value is honoured only when the TCP peer is in `listen.trusted_proxies`, since anyone else could
//! write whatever address they like there.

pub mod proxy_protocol;
pub mod rate;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

pub use rate::RateLimiter;

/// The address a client is known by: an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a
/// dual-stack socket reports for an IPv4 peer) counts as the IPv4 address, so that allow lists, rate
/// limits and ECS source addresses see one client, not two.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        // Not `to_ipv4`: that would also turn the deprecated IPv4-compatible form (`::1` included)
        // into IPv4.
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Whether `ip` (normalized) is inside one of `nets`.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = normalize(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address according to `X-Forwarded-For`, given the TCP peer's address.
///
/// `header_values` are the header's field values in the order received (several header lines form
/// one comma-separated list). An untrusted peer's header is ignored: the peer itself is the client.
/// Otherwise the list is walked from the right (the hop nearest to us), skipping addresses that are
/// themselves trusted proxies, and the first untrusted address is the client. A malformed entry
/// stops the walk, since nothing left of it can be attributed to a trusted hop: the answer is then
/// the last address that was good (the peer if there was none). The result is normalized.
pub fn forwarded_for(header_values: &[&str], trusted: &[IpNet], peer: IpAddr) -> IpAddr {
    let mut client = normalize(peer);
    if !is_trusted(trusted, client) {
        return client;
    }
    // Lazy from the right: the walk costs what the trusted chain is long, not what the header is.
    for entry in header_values.iter().rev().flat_map(|value| value.rsplit(',')) {
        let Some(ip) = parse_forwarded_entry(entry) else { return client };
        client = normalize(ip);
        if !is_trusted(trusted, client) {
            return client;
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:5678`, `[2001:db8::1]:443`)
/// or brackets, as some proxies write them. `unknown`, obfuscated names and empty entries are `None`.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = entry.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    entry.strip_prefix('[')?.strip_suffix(']')?.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        assert_eq!(normalize(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(normalize(ip("192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(normalize(ip("::1")), ip("::1"));
        assert_eq!(normalize(ip("2001:db8::1")), ip("2001:db8::1"));
        assert!(is_trusted(&nets(&["192.0.2.0/24"]), ip("::ffff:192.0.2.9")));
        assert!(!is_trusted(&nets(&["192.0.2.0/24"]), ip("192.0.3.9")));
        assert!(!is_trusted(&[], ip("127.0.0.1")));
    }

    #[test]
    fn forwarded_for_walks_from_the_right_past_trusted_hops() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ffff::/48"]);
        let peer = ip("10.0.0.1");
        let check = |values: &[&str], expected: &str| {
            assert_eq!(forwarded_for(values, &trusted, peer), ip(expected), "{values:?}");
        };
        check(&[], "10.0.0.1");
        check(&["203.0.113.7"], "203.0.113.7");
        check(&["203.0.113.7, 10.1.2.3"], "203.0.113.7");
        check(&["198.51.100.1, 203.0.113.7, 10.1.2.3, 10.9.9.9"], "203.0.113.7");
        // Several header lines are one list, in order.
        check(&["198.51.100.1, 203.0.113.7", "10.1.2.3"], "203.0.113.7");
        check(&["198.51.100.1", "203.0.113.7, 10.1.2.3", ""], "10.0.0.1");
        // Only trusted hops: the leftmost one is as far as we can see.
        check(&["10.3.3.3, 10.2.2.2"], "10.3.3.3");
        // IPv6, mapped addresses, ports and brackets.
        check(&["2001:db8::7"], "2001:db8::7");
        check(&["2001:db8::7, 2001:db8:ffff::1"], "2001:db8::7");
        check(&["::ffff:203.0.113.7"], "203.0.113.7");
        check(&["203.0.113.7:51234"], "203.0.113.7");
        check(&["[2001:db8::7]:443"], "2001:db8::7");
        check(&["[2001:db8::7]"], "2001:db8::7");
        check(&["  203.0.113.7  ,10.1.2.3 "], "203.0.113.7");
    }

    #[test]
    fn forwarded_for_stops_at_junk() {
        let trusted = nets(&["10.0.0.0/8"]);
        let peer = ip("10.0.0.1");
        let check = |values: &[&str], expected: &str| {
            assert_eq!(forwarded_for(values, &trusted, peer), ip(expected), "{values:?}");
        };
        check(&["unknown"], "10.0.0.1");
        check(&["not-an-ip"], "10.0.0.1");
        check(&["203.0.113.7, junk"], "10.0.0.1");
        // The junk is left of the last trusted hop: that hop is the last good address.
        check(&["203.0.113.7, junk, 10.2.2.2"], "10.2.2.2");
        check(&["203.0.113.7,, 10.2.2.2"], "10.2.2.2");
        check(&["203.0.113.7, 10.2.2.2,"], "10.0.0.1");
        check(&["999.1.1.1"], "10.0.0.1");
        check(&["_hidden"], "10.0.0.1");
        // Junk left of the client does not matter: the walk stopped before it.
        check(&["junk, 203.0.113.7"], "203.0.113.7");
    }

    #[test]
    fn forwarded_for_from_an_untrusted_peer_is_ignored() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(forwarded_for(&["203.0.113.7"], &trusted, ip("198.51.100.9")), ip("198.51.100.9"));
        assert_eq!(forwarded_for(&["203.0.113.7"], &[], ip("10.0.0.1")), ip("10.0.0.1"));
        // The peer's own address is normalized, and trusted when mapped.
        assert_eq!(forwarded_for(&["203.0.113.7"], &trusted, ip("::ffff:10.0.0.1")), ip("203.0.113.7"));
        assert_eq!(forwarded_for(&[], &[], ip("::ffff:198.51.100.9")), ip("198.51.100.9"));
    }
}
