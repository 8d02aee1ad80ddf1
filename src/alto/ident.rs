//! Identifier syntax of RFC 7285 §10: PID names, resource-ids, version tags, address types, cost
//! metrics and endpoint property names.

/// PIDName and ResourceID (RFC 7285 §10.1, §10.2): 1 to 64 of `0-9 A-Z a-z - : @ _ .`.
/// The RFC reserves `.` for extensions; it is accepted here so that extensions pass through.
pub fn is_pid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:@_.".contains(&b))
}

/// ResourceID: the same syntax as a PID name.
pub fn is_resource_id(s: &str) -> bool {
    is_pid_name(s)
}

/// VersionTag.tag (RFC 7285 §10.3): 1 to 64 printable ASCII characters, no space.
pub fn is_tag(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// AddressType (RFC 7285 §10.4.2): alphanumerics only.
pub fn is_address_type(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// CostMetric (RFC 7285 §10.6): 1 to 32 of `0-9 A-Z a-z - : _ .`; `priv:` needs a suffix.
/// RFC 9439 statistical suffixes (`delay-ow:p99`) fit this syntax.
pub fn is_cost_metric(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:_.".contains(&b))
        && s != "priv:"
}

/// CostMode: RFC 9274 opened the registry, so any alphanumeric token is syntactically valid;
/// whether a resource offers it is a capability question.
pub fn is_cost_mode(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
}

/// EndpointPropertyType (RFC 7285 §10.8): a global name (1 to 32 of `0-9 A-Z a-z - : _`, `priv:`
/// needs a suffix) or a resource-specific one, `<resource-id>.<global name>`.
pub fn is_property_name(s: &str) -> bool {
    match s.rsplit_once('.') {
        Some((resource, name)) => is_resource_id(resource) && is_global_property(name),
        None => is_global_property(s),
    }
}

fn is_global_property(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:_".contains(&b))
        && s != "priv:"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        assert!(is_pid_name("PID1"));
        assert!(is_pid_name("mid-east:pid@x_1.2"));
        assert!(!is_pid_name(""));
        assert!(!is_pid_name("has space"));
        assert!(!is_pid_name(&"p".repeat(65)));
        assert!(is_pid_name(&"p".repeat(64)));
        assert!(!is_pid_name("pïd"));
        assert!(is_tag("da65eca2eb7a10ce8b059740b0b2e3f8eb1d4785"));
        assert!(!is_tag("a b"));
        assert!(!is_tag(&"t".repeat(65)));
        assert!(is_cost_metric("routingcost"));
        assert!(is_cost_metric("delay-ow:p99"));
        assert!(is_cost_metric("priv:mine"));
        assert!(!is_cost_metric("priv:"));
        assert!(!is_cost_metric("a@b"));
        assert!(!is_cost_metric(&"m".repeat(33)));
        assert!(is_property_name("pid"));
        assert!(is_property_name("my-default-network-map.pid"));
        assert!(is_property_name("priv:ietf-type"));
        assert!(!is_property_name("bad name"));
        assert!(!is_property_name("a.b.c@"));
        assert!(is_address_type("ipv4"));
        assert!(!is_address_type("ip-v4"));
    }
}
