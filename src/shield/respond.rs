//! Building client responses: the answer's bytes (or its gzip copy, or a 304) with `Age`,
//! `ETag`, `Via`, `Cache-Status` (RFC 9211) and the origin headers worth passing on.

use std::time::Instant;

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::fetch::{Reply, ShieldError};
use crate::cache::Entry;
use crate::http::{self as h, Body};

/// What of the client's request shapes the response.
#[derive(Debug, Clone, Default)]
pub struct Wants {
    pub gzip: bool,
    pub if_none_match: Option<String>,
    pub head: bool,
}

impl Wants {
    pub fn of(method: &Method, headers: &HeaderMap) -> Wants {
        let gzip = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|coding| {
                let mut parts = coding.split(';').map(str::trim);
                let name = parts.next().unwrap_or("");
                let q_zero = parts
                    .any(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()) == Some(0.0));
                (name.eq_ignore_ascii_case("gzip") || name == "*") && !q_zero
            });
        let if_none_match =
            headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(String::from);
        Wants { gzip, if_none_match, head: method == Method::HEAD }
    }

    /// Whether `If-None-Match` names `etag` (weak comparison, `*` included).
    fn not_modified(&self, etag: &HeaderValue) -> bool {
        let Some(list) = &self.if_none_match else { return false };
        let etag = etag.to_str().unwrap_or("");
        list.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag)
    }
}

/// A stored or fetched 200 answer.
pub fn entry(entry: &Entry, wants: &Wants, cache_status: &str, via: &HeaderValue) -> Response<Body> {
    let now = Instant::now();
    let gzip = if wants.gzip { entry.gzip() } else { None };
    let etag = if gzip.is_some() { &entry.etag_gzip } else { &entry.etag };
    let mut resp = if wants.not_modified(etag) {
        let mut r = Response::new(Body::default());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let body = gzip.unwrap_or(&entry.body).clone();
        let mut r = Response::new(if wants.head { Body::default() } else { Body::new(body.clone()) });
        if wants.head {
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        r.headers_mut().insert(header::CONTENT_TYPE, entry.media_type.clone());
        if gzip.is_some() {
            r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        r
    };
    let headers = resp.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(lm) = &entry.last_modified {
        headers.insert(header::LAST_MODIFIED, lm.clone());
    }
    finish(resp, cache_status, via)
}

/// A fetched answer: a 200 goes through [`entry`]; other statuses pass through as the origin
/// sent them (with the headers the shield keeps).
pub fn reply(reply: &Reply, wants: &Wants, cache_status: &str, via: &HeaderValue) -> Response<Body> {
    if let (StatusCode::OK, Some(e)) = (reply.status, &reply.entry) {
        return entry(e, wants, cache_status, via);
    }
    let mut resp = Response::new(Body::new(reply.body.clone()));
    *resp.status_mut() = reply.status;
    resp.headers_mut().insert(header::CONTENT_TYPE, reply.media_type.clone());
    for (name, value) in &reply.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    finish(resp, cache_status, via)
}

/// A failure of the shield or the origin, as an ALTO error.
pub fn error(e: &ShieldError, via: &HeaderValue) -> Response<Body> {
    let mut resp = h::refuse(e.status(), e.to_string());
    if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    let status = format!("altoshield; fwd=miss; detail={}", e.status().as_u16());
    finish(resp, &status, via)
}

/// Adds `Via` and `Cache-Status`.
pub fn finish(mut resp: Response<Body>, cache_status: &str, via: &HeaderValue) -> Response<Body> {
    let headers = resp.headers_mut();
    headers.append(header::VIA, via.clone());
    if !cache_status.is_empty() {
        if let Ok(v) = HeaderValue::from_str(cache_status) {
            headers.insert(http::HeaderName::from_static("cache-status"), v);
        }
    }
    resp
}

/// `Cache-Status` values (DESIGN §6).
pub mod status {
    pub fn hit(ttl_left: i64) -> String {
        format!("altoshield; hit; ttl={ttl_left}")
    }

    pub fn stale(ttl_left: i64) -> String {
        format!("altoshield; hit; ttl={ttl_left}; detail=stale")
    }

    pub fn miss(fwd_status: u16, stored: bool) -> String {
        format!("altoshield; fwd=miss; fwd-status={fwd_status}{}", if stored { "; stored" } else { "" })
    }

    /// Computed locally from cached maps.
    pub const LOCAL: &str = "altoshield; hit; detail=local";

    pub fn coalesced() -> String {
        "altoshield; fwd=miss; collapsed".into()
    }
}
