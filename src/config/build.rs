//! The raw form converted into [`Config`]: every value checked on its own, then the rules between
//! keys, every problem pushed with its key path. A value with a problem is replaced by its
//! default so the remaining checks still run; a rule between keys is skipped when one of its keys
//! already has a problem, so one mistake is reported once.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use toml::Value;

use super::raw::{RawAdmin, RawCache, RawConfig, RawEcs, RawLimits, RawListen, RawOrigin};
use super::units::{parse_duration, parse_size};
use super::*;

/// Converts and validates `raw`; `None` only when `origin.ird` is missing or invalid (a problem is
/// pushed). The caller fails if any problem was pushed.
pub(super) fn build(raw: RawConfig, problems: &mut Vec<Problem>) -> Option<Config> {
    let mut p = Problems(problems);
    let listen = listen(&mut p, raw.listen);
    let admin = admin(&mut p, raw.admin, &listen);
    let origin = origin(&mut p, raw.origin);
    let cache = cache(&mut p, raw.cache);
    let ecs = ecs(&mut p, raw.ecs);
    let limits = limits(&mut p, raw.limits);
    Some(Config { listen, admin, origin: origin?, cache, ecs, limits })
}

fn listen(p: &mut Problems, raw: RawListen) -> Listen {
    let (cert_given, key_given, ca_given) = (raw.cert.is_some(), raw.key.is_some(), raw.client_ca.is_some());
    let listen = Listen {
        addr: p.socket_addr("listen.addr", raw.addr).unwrap_or(DEFAULT_LISTEN_ADDR),
        tls: p.boolean("listen.tls", raw.tls).unwrap_or(DEFAULT_LISTEN_TLS),
        cert: p.file("listen.cert", raw.cert),
        key: p.file("listen.key", raw.key),
        client_ca: p.file("listen.client_ca", raw.client_ca),
        public_url: p.public_url("listen.public_url", raw.public_url),
        trusted_proxies: p.cidrs("listen.trusted_proxies", raw.trusted_proxies),
        allow: p.cidrs("listen.allow", raw.allow),
    };
    if !p.has("listen.tls") {
        let hint = "set it, or set listen.tls = false to serve plain HTTP";
        for (key, given) in [("listen.cert", cert_given), ("listen.key", key_given)] {
            if listen.tls && !given {
                p.push(key, format!("required when listen.tls is true ({hint})"));
            } else if !listen.tls && given {
                p.push(key, "has no effect with listen.tls = false");
            }
        }
        if !listen.tls && ca_given {
            p.push("listen.client_ca", "requires listen.tls = true (client certificates need TLS)");
        }
    }
    listen
}

fn admin(p: &mut Problems, raw: RawAdmin, listen: &Listen) -> Admin {
    let token_given = raw.token.is_some();
    let admin = Admin {
        addr: p.socket_addr("admin.addr", raw.addr).unwrap_or(DEFAULT_ADMIN_ADDR),
        token: p.token("admin.token", raw.token),
    };
    if !p.has("admin.addr") {
        if !token_given && !admin.addr.ip().to_canonical().is_loopback() {
            p.push("admin.token", "required when admin.addr is not a loopback address");
        }
        if !p.has("listen.addr") && conflicts(admin.addr, listen.addr) {
            p.push("admin.addr", format!("conflicts with listen.addr (both use port {})", admin.addr.port()));
        }
    }
    admin
}

/// Two listeners that cannot both bind: the same non-zero port on the same or a wildcard address.
fn conflicts(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn origin(p: &mut Problems, raw: RawOrigin) -> Option<Origin> {
    let (cert_given, key_given) = (raw.cert.is_some(), raw.key.is_some());
    if raw.ird.is_none() && !p.has("origin") {
        p.push("origin.ird", "required: the origin's root IRD URL, e.g. \"http://127.0.0.1:8081/directory\"");
    }
    let ird = p.http_url("origin.ird", raw.ird);
    let ca = p.file("origin.ca", raw.ca);
    let cert = p.file("origin.cert", raw.cert);
    let key = p.file("origin.key", raw.key);
    if cert_given && !key_given {
        p.push("origin.key", "required when origin.cert is set");
    }
    if key_given && !cert_given {
        p.push("origin.cert", "required when origin.key is set");
    }
    let connect_timeout =
        p.timeout("origin.connect_timeout", raw.connect_timeout).unwrap_or(DEFAULT_ORIGIN_CONNECT_TIMEOUT);
    let timeout = p.timeout("origin.timeout", raw.timeout).unwrap_or(DEFAULT_ORIGIN_TIMEOUT);
    let max_in_flight =
        p.count("origin.max_in_flight", raw.max_in_flight, 1).unwrap_or(DEFAULT_ORIGIN_MAX_IN_FLIGHT);
    let max_body = p.size("origin.max_body", raw.max_body, 1).unwrap_or(DEFAULT_ORIGIN_MAX_BODY);
    let ird_refresh = p.timeout("origin.ird_refresh", raw.ird_refresh).unwrap_or(DEFAULT_IRD_REFRESH);
    Some(Origin { ird: ird?, ca, cert, key, connect_timeout, timeout, max_in_flight, max_body, ird_refresh })
}

fn cache(p: &mut Problems, raw: RawCache) -> Cache {
    Cache {
        default_ttl: p.duration("cache.default_ttl", raw.default_ttl).unwrap_or(DEFAULT_TTL),
        stale_while_revalidate: p
            .duration("cache.stale_while_revalidate", raw.stale_while_revalidate)
            .unwrap_or(DEFAULT_STALE_WHILE_REVALIDATE),
        stale_if_error: p
            .duration("cache.stale_if_error", raw.stale_if_error)
            .unwrap_or(DEFAULT_STALE_IF_ERROR),
        max_bytes: p
            .size("cache.max_bytes", raw.max_bytes, MIN_CACHE_MAX_BYTES)
            .unwrap_or(DEFAULT_CACHE_MAX_BYTES),
    }
}

fn ecs(p: &mut Problems, raw: RawEcs) -> Ecs {
    Ecs {
        mode: p.ecs_mode("ecs.mode", raw.mode).unwrap_or(DEFAULT_ECS_MODE),
        rank_locally: p.boolean("ecs.rank_locally", raw.rank_locally).unwrap_or(DEFAULT_RANK_LOCALLY),
        merge_waste: p
            .ratio("ecs.merge_waste", raw.merge_waste, 1.0, f64::INFINITY)
            .unwrap_or(DEFAULT_MERGE_WASTE),
        merge_window: p
            .duration_at_most("ecs.merge_window", raw.merge_window, MAX_MERGE_WINDOW)
            .unwrap_or(DEFAULT_MERGE_WINDOW),
        auto_warmup: p.count("ecs.auto_warmup", raw.auto_warmup, 0).unwrap_or(DEFAULT_AUTO_WARMUP),
        auto_sample: p.ratio("ecs.auto_sample", raw.auto_sample, 0.0, 1.0).unwrap_or(DEFAULT_AUTO_SAMPLE),
    }
}

fn limits(p: &mut Problems, raw: RawLimits) -> Limits {
    Limits {
        max_body: p.size("limits.max_body", raw.max_body, 1).unwrap_or(DEFAULT_MAX_BODY),
        per_client_rps: p
            .count("limits.per_client_rps", raw.per_client_rps, 0)
            .unwrap_or(DEFAULT_PER_CLIENT_RPS),
        max_in_flight: p.count("limits.max_in_flight", raw.max_in_flight, 1).unwrap_or(DEFAULT_MAX_IN_FLIGHT),
        max_connections: p
            .count("limits.max_connections", raw.max_connections, 1)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        header_timeout: p
            .timeout("limits.header_timeout", raw.header_timeout)
            .unwrap_or(DEFAULT_HEADER_TIMEOUT),
        handshake_timeout: p
            .timeout("limits.handshake_timeout", raw.handshake_timeout)
            .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT),
        coalesce_timeout: p
            .timeout("limits.coalesce_timeout", raw.coalesce_timeout)
            .unwrap_or(DEFAULT_COALESCE_TIMEOUT),
        shutdown_grace: p
            .duration("limits.shutdown_grace", raw.shutdown_grace)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
    }
}

/// Why an IO operation failed, lowercase (`no such file`), for problem messages.
pub(super) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::InvalidData => "not valid UTF-8".to_string(),
        _ => e.to_string(),
    }
}

/// The problem list with one converter per value format. Each converter returns `None` both for
/// an absent value and for one with a problem (pushed under `key`).
struct Problems<'a>(&'a mut Vec<Problem>);

impl Problems<'_> {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(key, message));
    }

    /// Whether `key`, or the section it is in, already has a problem.
    fn has(&self, key: &str) -> bool {
        let section = key.split('.').next().unwrap_or(key);
        self.0.iter().any(|problem| problem.key == key || problem.key == section)
    }

    fn wrong_type(&mut self, key: &str, expected: &str, found: &Value) {
        self.push(key, format!("expected {expected}, found {}", found.type_str()));
    }

    /// A string value; `expected` describes it for the wrong-type message.
    fn string(&mut self, key: &str, value: Option<Value>, expected: &str) -> Option<String> {
        match value? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(key, expected, &other);
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, value: Option<Value>) -> Option<bool> {
        match value? {
            Value::Boolean(b) => Some(b),
            other => {
                self.wrong_type(key, "true or false", &other);
                None
            }
        }
    }

    /// An integer of at least `min` that fits `T`.
    fn count<T: TryFrom<i64>>(&mut self, key: &str, value: Option<Value>, min: i64) -> Option<T> {
        let n = match value? {
            Value::Integer(n) => n,
            other => {
                self.wrong_type(key, "an integer", &other);
                return None;
            }
        };
        if n < min {
            self.push(key, format!("must be at least {min}, found {n}"));
            return None;
        }
        let converted = T::try_from(n).ok();
        if converted.is_none() {
            self.push(key, format!("{n} is too large"));
        }
        converted
    }

    /// A number (integer or float) in `[min, max]`.
    fn ratio(&mut self, key: &str, value: Option<Value>, min: f64, max: f64) -> Option<f64> {
        let x = match value? {
            Value::Float(x) => x,
            // Exact for every integer a ratio could sensibly be.
            Value::Integer(n) => n as f64,
            other => {
                self.wrong_type(key, "a number", &other);
                return None;
            }
        };
        if x.is_nan() || x < min || x > max {
            let range =
                if max.is_infinite() { format!("at least {min:?}") } else { format!("in [{min}, {max}]") };
            self.push(key, format!("must be a number {range}, found {x}"));
            return None;
        }
        Some(x)
    }

    fn duration(&mut self, key: &str, value: Option<Value>) -> Option<Duration> {
        let text = self.string(key, value, "a duration string such as \"30s\" or \"1m30s\"")?;
        parse_duration(&text).map_err(|e| self.push(key, e)).ok()
    }

    /// A duration no longer than `max`.
    fn duration_at_most(&mut self, key: &str, value: Option<Value>, max: Duration) -> Option<Duration> {
        let d = self.duration(key, value)?;
        if d > max {
            self.push(key, format!("must be at most {}ms, found {}ms", max.as_millis(), d.as_millis()));
            return None;
        }
        Some(d)
    }

    /// A duration greater than zero.
    fn timeout(&mut self, key: &str, value: Option<Value>) -> Option<Duration> {
        let d = self.duration(key, value)?;
        if d.is_zero() {
            self.push(key, "must be greater than 0");
            return None;
        }
        Some(d)
    }

    /// A size of at least `min` bytes.
    fn size(&mut self, key: &str, value: Option<Value>, min: u64) -> Option<u64> {
        let text = self.string(key, value, "a size string such as \"512MiB\"")?;
        let n = parse_size(&text).map_err(|e| self.push(key, e)).ok()?;
        if n < min {
            self.push(key, format!("must be at least {}, found {text}", format_size(min)));
            return None;
        }
        Some(n)
    }

    fn socket_addr(&mut self, key: &str, value: Option<Value>) -> Option<SocketAddr> {
        let text = self.string(key, value, "an address string such as \"127.0.0.1:8443\"")?;
        let addr = text.parse().ok();
        if addr.is_none() {
            self.push(
                key,
                format!("`{text}` is not an address (expected e.g. \"127.0.0.1:8443\" or \"[::1]:8443\")"),
            );
        }
        addr
    }

    /// A list of CIDR prefixes; a bare address is a host prefix, and an IPv4-mapped IPv6 prefix
    /// becomes the IPv4 prefix it maps (clients' mapped addresses count as IPv4 too).
    fn cidrs(&mut self, key: &str, value: Option<Value>) -> Vec<IpNet> {
        const EXPECTED: &str = "a list of CIDR strings such as [\"10.0.0.0/8\", \"::1/128\"]";
        let items = match value {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.wrong_type(key, EXPECTED, &other);
                return Vec::new();
            }
        };
        let mut nets = Vec::with_capacity(items.len());
        for item in items {
            let Value::String(text) = item else {
                self.wrong_type(key, EXPECTED, &item);
                continue;
            };
            match parse_cidr(&text) {
                Ok(net) => nets.push(net),
                Err(message) => self.push(key, message),
            }
        }
        nets
    }

    /// A file that exists and can be opened for reading, relative to the current directory.
    fn file(&mut self, key: &str, value: Option<Value>) -> Option<PathBuf> {
        let text = self.string(key, value, "a file path string")?;
        if text.is_empty() {
            self.push(key, "must not be empty");
            return None;
        }
        let path = PathBuf::from(text);
        // Metadata first: opening a named pipe for reading would block until a writer appears.
        let problem = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => "is a directory, not a file".to_string(),
            Ok(meta) if !meta.is_file() => "is not a regular file".to_string(),
            Ok(_) => match std::fs::File::open(&path) {
                Ok(_) => return Some(path),
                Err(e) => io_reason(&e),
            },
            Err(e) => io_reason(&e),
        };
        self.push(key, format!("cannot read {}: {problem}", path.display()));
        None
    }

    /// An absolute `http://` or `https://` URL.
    fn http_url(&mut self, key: &str, value: Option<Value>) -> Option<http::Uri> {
        let text = self.string(key, value, "a URL string such as \"https://alto.example.net/directory\"")?;
        match check_http_url(&text) {
            Ok(uri) => Some(uri),
            Err(message) => {
                self.push(key, message);
                None
            }
        }
    }

    /// An absolute http(s) URL without query or fragment; kept without its trailing slashes so
    /// that resource paths can be appended.
    fn public_url(&mut self, key: &str, value: Option<Value>) -> Option<String> {
        let text = self.string(key, value, "a URL string such as \"https://alto.example.net\"")?;
        let uri = match check_http_url(&text) {
            Ok(uri) => uri,
            Err(message) => {
                self.push(key, message);
                return None;
            }
        };
        if uri.query().is_some() {
            self.push(key, format!("`{text}` must not have a query"));
            return None;
        }
        Some(text.trim_end_matches('/').to_string())
    }

    /// A non-empty bearer token of printable ASCII without spaces (it travels in a header).
    fn token(&mut self, key: &str, value: Option<Value>) -> Option<String> {
        let token = self.string(key, value, "a string")?;
        if token.is_empty() {
            self.push(key, "must not be empty");
            return None;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.push(key, "must be printable ASCII without spaces");
            return None;
        }
        Some(token)
    }

    fn ecs_mode(&mut self, key: &str, value: Option<Value>) -> Option<EcsMode> {
        let text = self.string(key, value, "a mode string")?;
        let mode = EcsMode::ALL.into_iter().find(|mode| mode.as_str() == text);
        if mode.is_none() {
            self.push(key, format!("expected one of forward, aggregate, synthesize, auto, found \"{text}\""));
        }
        mode
    }
}

fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match text.parse::<IpAddr>() {
            Ok(addr) => IpNet::from(addr),
            Err(_) => {
                return Err(format!(
                    "`{text}` is not a CIDR prefix or address (expected e.g. \"10.0.0.0/8\" or \"::1\")"
                ))
            }
        },
    };
    if net.trunc() != net {
        return Err(format!(
            "`{text}` has bits set past its prefix length (did you mean \"{}\"?)",
            net.trunc()
        ));
    }
    Ok(match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        _ => net,
    })
}

fn check_http_url(text: &str) -> Result<http::Uri, String> {
    if text.contains('#') {
        return Err(format!("`{text}` must not have a fragment"));
    }
    let uri: http::Uri = text.parse().map_err(|_| format!("`{text}` is not a URL"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    if !scheme_ok || uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{text}` is not an absolute http:// or https:// URL"));
    }
    Ok(uri)
}

/// `1048576` as `1MiB`: the largest unit that divides the size exactly.
fn format_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}
