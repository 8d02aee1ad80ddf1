//! ALTO media types (RFC 7285 §8.3, §14) and HTTP `Accept` / `Content-Type` matching.
//!
//! Matching follows RFC 9110 §12.5.1: type and subtype compare case-insensitively, `*/*` and
//! `type/*` are wildcards, `q=0` excludes, and a range with parameters matches only a type that
//! carries the same parameters. An absent `Accept` means `*/*`.

pub const DIRECTORY: &str = "application/alto-directory+json";
pub const NETWORK_MAP: &str = "application/alto-networkmap+json";
pub const NETWORK_MAP_FILTER: &str = "application/alto-networkmapfilter+json";
pub const COST_MAP: &str = "application/alto-costmap+json";
pub const COST_MAP_FILTER: &str = "application/alto-costmapfilter+json";
pub const ENDPOINT_PROP: &str = "application/alto-endpointprop+json";
pub const ENDPOINT_PROP_PARAMS: &str = "application/alto-endpointpropparams+json";
pub const ENDPOINT_COST: &str = "application/alto-endpointcost+json";
pub const ENDPOINT_COST_PARAMS: &str = "application/alto-endpointcostparams+json";
pub const PROP_MAP: &str = "application/alto-propmap+json";
pub const PROP_MAP_PARAMS: &str = "application/alto-propmapparams+json";
pub const ERROR: &str = "application/alto-error+json";
pub const EVENT_STREAM: &str = "text/event-stream";

/// A parsed media type or media range: lower-cased type and subtype, parameters in order.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange {
    pub kind: String,
    pub subtype: String,
    /// Parameters other than `q`, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
    /// The quality value, 1.0 when absent.
    pub q: f32,
}

impl MediaRange {
    /// Parses one media type or range (`application/alto-costmap+json`, `text/*;q=0.5`).
    pub fn parse(s: &str) -> Option<MediaRange> {
        let mut parts = split_unquoted(s, ';').into_iter();
        let essence = parts.next()?.trim();
        let (kind, subtype) = essence.split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if !is_token(kind) || !is_token(subtype) || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut params = Vec::new();
        let mut q = 1.0;
        for p in parts {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let (name, value) = p.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim().trim_matches('"').to_string();
            if name == "q" {
                q = value.parse::<f32>().ok().filter(|q| (0.0..=1.0).contains(q))?;
            } else {
                params.push((name, value));
            }
        }
        Some(MediaRange { kind: kind.to_ascii_lowercase(), subtype: subtype.to_ascii_lowercase(), params, q })
    }

    /// `type/subtype`, lower-cased.
    pub fn essence(&self) -> String {
        format!("{}/{}", self.kind, self.subtype)
    }

    /// Whether this range (from an `Accept` header) covers the concrete media type `offered`.
    fn covers(&self, offered: &MediaRange) -> bool {
        let type_ok = self.kind == "*" || self.kind == offered.kind;
        let sub_ok = self.subtype == "*" || self.subtype == offered.subtype;
        type_ok
            && sub_ok
            && self.params.iter().all(|(n, v)| offered.params.iter().any(|(on, ov)| on == n && ov == v))
    }

    fn specificity(&self) -> usize {
        match (self.kind.as_str(), self.subtype.as_str()) {
            ("*", _) => 0,
            (_, "*") => 1,
            _ => 2 + self.params.len(),
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Whether an `Accept` header value admits the media type `offered`. `None` (no header) admits
/// everything. The most specific matching range decides, so `*/*, application/x;q=0` excludes
/// `application/x`. An unparseable header is treated as absent rather than refusing the client.
pub fn accepts(accept: Option<&str>, offered: &str) -> bool {
    let Some(accept) = accept else { return true };
    let Some(offered) = MediaRange::parse(offered) else { return false };
    let ranges: Vec<MediaRange> = split_unquoted(accept, ',')
        .into_iter()
        .filter(|r| !r.trim().is_empty())
        .filter_map(MediaRange::parse)
        .collect();
    if ranges.is_empty() {
        return true;
    }
    ranges.iter().filter(|r| r.covers(&offered)).max_by_key(|r| r.specificity()).is_some_and(|r| r.q > 0.0)
}

/// Whether a request's `Content-Type` is the media type `expected` (parameters such as `charset`
/// are ignored: ALTO bodies are JSON, always UTF-8).
pub fn content_type_is(content_type: Option<&str>, expected: &str) -> bool {
    match (content_type.and_then(MediaRange::parse), MediaRange::parse(expected)) {
        (Some(got), Some(want)) => got.kind == want.kind && got.subtype == want.subtype,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_matching() {
        assert!(accepts(None, COST_MAP));
        assert!(accepts(Some("*/*"), COST_MAP));
        assert!(accepts(Some("application/*"), COST_MAP));
        assert!(accepts(Some("Application/ALTO-CostMap+JSON"), COST_MAP));
        assert!(accepts(Some("application/alto-costmap+json,application/alto-error+json"), COST_MAP));
        assert!(!accepts(Some("application/alto-networkmap+json,application/alto-error+json"), COST_MAP));
        assert!(!accepts(Some("text/*"), COST_MAP));
        assert!(!accepts(Some("*/*, application/alto-costmap+json;q=0"), COST_MAP));
        assert!(accepts(Some("application/alto-costmap+json;q=0.5"), COST_MAP));
        assert!(!accepts(Some("application/alto-costmap+json;q=0"), COST_MAP));
        assert!(accepts(Some("garbage"), COST_MAP), "an unparseable Accept is treated as absent");
        assert!(!accepts(Some("application/alto-costmap+json;foo=bar"), COST_MAP));
        assert!(accepts(
            Some("multipart/related;type=application/alto-endpointcost+json"),
            "multipart/related;type=application/alto-endpointcost+json"
        ));
    }

    #[test]
    fn content_type_ignores_parameters_and_case() {
        assert!(content_type_is(Some("application/alto-endpointcostparams+json"), ENDPOINT_COST_PARAMS));
        assert!(content_type_is(
            Some("Application/ALTO-EndpointCostParams+JSON; charset=utf-8"),
            ENDPOINT_COST_PARAMS
        ));
        assert!(!content_type_is(Some("application/json"), ENDPOINT_COST_PARAMS));
        assert!(!content_type_is(None, ENDPOINT_COST_PARAMS));
        assert!(!content_type_is(Some("*/*"), ENDPOINT_COST_PARAMS));
    }
}
