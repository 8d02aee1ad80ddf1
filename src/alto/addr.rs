//! Typed endpoint addresses (RFC 7285 §10.4.1): `ipv4:192.0.2.34`, `ipv6:2001:db8::1`.
//!
//! Addresses are compared as addresses, never as strings: `ipv6:2001:DB8::1` and
//! `ipv6:2001:db8::1` are one endpoint. The canonical spelling is the RFC 5952 form that
//! `std::net` prints.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed typed endpoint address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypedAddr(pub IpAddr);

/// Why a typed address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("no address type (expected `ipv4:` or `ipv6:`)")]
    NoType,
    #[error("unsupported address type `{0}`")]
    UnknownType(String),
    #[error("not a valid {0} address")]
    BadAddress(&'static str),
}

impl TypedAddr {
    /// Parses `type:address`, splitting on the first colon (IPv6 addresses contain colons).
    /// The type compares case-insensitively; IPv4 must be a dotted quad without leading zeros
    /// (RFC 3986 IPv4address); IPv6 any RFC 4291 text form without a zone.
    pub fn parse(s: &str) -> Result<TypedAddr, AddrError> {
        let (kind, addr) = s.split_once(':').ok_or(AddrError::NoType)?;
        if kind.eq_ignore_ascii_case("ipv4") {
            addr.parse::<Ipv4Addr>()
                .map(|a| TypedAddr(IpAddr::V4(a)))
                .map_err(|_| AddrError::BadAddress("IPv4"))
        } else if kind.eq_ignore_ascii_case("ipv6") {
            addr.parse::<Ipv6Addr>()
                .map(|a| TypedAddr(IpAddr::V6(a)))
                .map_err(|_| AddrError::BadAddress("IPv6"))
        } else {
            Err(AddrError::UnknownType(kind.to_string()))
        }
    }

    /// The address type name, `ipv4` or `ipv6`.
    pub fn kind(&self) -> &'static str {
        match self.0 {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        }
    }

    /// The typed address of a peer seen on a socket; an IPv4-mapped IPv6 address counts as IPv4.
    pub fn from_peer(ip: IpAddr) -> TypedAddr {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => TypedAddr(IpAddr::V4(v4)),
                None => TypedAddr(ip),
            },
            v4 => TypedAddr(v4),
        }
    }
}

impl fmt::Display for TypedAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_canonicalises() {
        assert_eq!(TypedAddr::parse("ipv4:192.0.2.34").unwrap().to_string(), "ipv4:192.0.2.34");
        assert_eq!(
            TypedAddr::parse("ipv6:2001:DB8::1").unwrap(),
            TypedAddr::parse("ipv6:2001:db8::1").unwrap()
        );
        assert_eq!(TypedAddr::parse("ipv6:2001:db8:0:0:0:0:0:1").unwrap().to_string(), "ipv6:2001:db8::1");
        assert_eq!(TypedAddr::parse("IPv4:10.0.0.1").unwrap().to_string(), "ipv4:10.0.0.1");
        assert_eq!(TypedAddr::parse("10.0.0.1"), Err(AddrError::NoType));
        assert!(matches!(TypedAddr::parse("ipv4:300.1.1.1"), Err(AddrError::BadAddress("IPv4"))));
        assert!(matches!(TypedAddr::parse("ipv4:01.2.3.4"), Err(AddrError::BadAddress("IPv4"))));
        assert!(matches!(TypedAddr::parse("ipv4:::1"), Err(AddrError::BadAddress("IPv4"))));
        assert!(matches!(TypedAddr::parse("ipv6:1.2.3.4"), Err(AddrError::BadAddress("IPv6"))));
        assert!(matches!(TypedAddr::parse("ipv6:fe80::1%eth0"), Err(AddrError::BadAddress("IPv6"))));
        assert!(matches!(TypedAddr::parse("mac:00:11"), Err(AddrError::UnknownType(_))));
        assert_eq!(TypedAddr::parse("nocolon"), Err(AddrError::NoType));
    }

    #[test]
    fn mapped_peers_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(TypedAddr::from_peer(mapped).to_string(), "ipv4:192.0.2.7");
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(TypedAddr::from_peer(v6).to_string(), "ipv6:2001:db8::7");
    }
}
