//! The admin listener (DESIGN §6), separate from the data plane and on loopback by default:
//!
//! | route | what |
//! |---|---|
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | 200: the process serves |
//! | `GET /readyz` | 200 once the IRD and the default network map are loaded, else 503 |
//! | `GET /cache` | JSON: entries, bytes, per-resource versions and ages, `ecs.mode` |
//! | `POST /cache/purge[?resource=ID]` | drops cached entries: 200 `{"purged": N}`, 404 for an unknown ID |
//! | `POST /ecs/reset?resource=ID` | returns a resource that `ecs.mode = "auto"` stopped trusting to verification: 200 `{"reset": "ID"}`, 404 for an unknown ID |
//!
//! Bound to a non-loopback address, its POST routes require `admin.token` as a bearer token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;

use crate::http::{self as h, Body, DropConnection};
use crate::shield::Shield;

/// Serves the admin routes until `shutdown` resolves.
pub async fn serve(
    shield: Arc<Shield>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let loopback = listener.local_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
    h::serve(
        listener,
        None,
        move |req, _peer: SocketAddr| {
            let shield = shield.clone();
            async move { Ok::<_, DropConnection>(route(&shield, req, loopback)) }
        },
        shutdown,
        std::time::Duration::from_secs(1),
    )
    .await;
}

fn route(shield: &Shield, req: Request<Incoming>, loopback: bool) -> Response<Body> {
    let path = req.uri().path();
    let post = req.method() == Method::POST;
    if post && !loopback && !authorized(shield, &req) {
        let mut resp = h::refuse(StatusCode::UNAUTHORIZED, "admin POST routes need the admin bearer token");
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    match (req.method().clone(), path) {
        (Method::GET, "/metrics") => {
            shield.update_cache_gauges();
            text("text/plain; version=0.0.4; charset=utf-8", shield.metrics.encode())
        }
        (Method::GET, "/healthz") => text("text/plain", "ok\n".into()),
        (Method::GET, "/readyz") => {
            if shield.is_ready() {
                text("text/plain", "ready\n".into())
            } else {
                let mut r = text(
                    "text/plain",
                    "not ready: the origin's IRD or default network map is not loaded\n".into(),
                );
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            }
        }
        (Method::GET, "/cache") => json_response(StatusCode::OK, cache_view(shield)),
        (Method::POST, "/cache/purge") => {
            let resource = query_param(req.uri().query(), "resource");
            if let Some(id) = &resource {
                if !shield.directory().is_some_and(|d| d.resources.contains_key(id)) {
                    return json_response(
                        StatusCode::NOT_FOUND,
                        json!({ "error": format!("no resource `{id}`") }),
                    );
                }
            }
            let purged = shield.purge(resource.as_deref());
            shield.ecs_purge(resource.as_deref());
            tracing::info!(resource = resource.as_deref().unwrap_or("*"), purged, "cache purged");
            json_response(StatusCode::OK, json!({ "purged": purged }))
        }
        (Method::POST, "/ecs/reset") => {
            let Some(id) = query_param(req.uri().query(), "resource") else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "POST /ecs/reset needs ?resource=ID" }),
                );
            };
            if !shield.ecs_reset(&id) {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({ "error": format!("no resource `{id}`") }),
                );
            }
            tracing::info!(resource = %id, "ecs auto state reset: verifying again");
            json_response(StatusCode::OK, json!({ "reset": id }))
        }
        (_, "/metrics" | "/healthz" | "/readyz" | "/cache" | "/cache/purge" | "/ecs/reset") => {
            h::refuse(StatusCode::METHOD_NOT_ALLOWED, format!("{} is not allowed on {path}", req.method()))
        }
        _ => h::refuse(StatusCode::NOT_FOUND, format!("no admin route {path}")),
    }
}

fn authorized(shield: &Shield, req: &Request<Incoming>) -> bool {
    let Some(token) = shield.config.admin.token.as_deref() else { return false };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// What is cached: totals, the generation, and per-resource entries with their ages.
fn cache_view(shield: &Shield) -> serde_json::Value {
    let now = Instant::now();
    let (entries, bytes) = shield.store.usage();
    let mut resources: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let generation = shield.generation();
    if let Some(g) = &generation {
        for (id, e) in &g.maps {
            resources.insert(
                id.to_string(),
                json!({ "entries": 1, "bytes": e.body.len(), "version": &*g.tag, "age_s": e.age(now).as_secs(), "fresh": e.is_fresh(now) }),
            );
        }
    }
    for (key, e) in shield.store.entries() {
        let slot = resources
            .entry(key.resource().to_string())
            .or_insert_with(|| json!({ "entries": 0, "bytes": 0 }));
        slot["entries"] = json!(slot["entries"].as_u64().unwrap_or(0) + 1);
        slot["bytes"] = json!(slot["bytes"].as_u64().unwrap_or(0) + e.body.len() as u64);
        let oldest = slot["oldest_age_s"].as_u64().unwrap_or(0).max(e.age(now).as_secs());
        slot["oldest_age_s"] = json!(oldest);
    }
    json!({
        "entries": entries + generation.as_ref().map_or(0, |g| g.maps.len() as u64),
        "bytes": bytes + generation.as_ref().map_or(0, |g| g.maps.values().map(|e| e.body.len() as u64).sum()),
        "network_map_version": generation.as_ref().map(|g| g.tag.to_string()),
        "ecs_mode": format!("{:?}", shield.config.ecs.mode).to_lowercase(),
        "ecs": shield.ecs_view(),
        "resources": resources,
    })
}

fn text(content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Body::new(Bytes::from(body)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = h::ok("application/json", Bytes::from(v.to_string()));
    *r.status_mut() = status;
    r
}
