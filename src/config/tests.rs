//! Unit tests of the configuration: every format, every rule, defaults, and the example file.
//!
//! Texts use top-level dotted keys (`listen.addr = ...`) so that a test can add keys to a
//! section the base text already has. Paths that must exist point into the package directory.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

const IRD: &str = "http://127.0.0.1:8081/directory";
/// The smallest valid file, in dotted-key form.
const BASE: &str = "origin.ird = \"http://127.0.0.1:8081/directory\"\nlisten.tls = false\n";
/// A file that exists and is readable.
const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
const EXAMPLE: &str = include_str!("../../config/altoshield.toml");

fn ok(extra: &str) -> Config {
    match parse(&format!("{BASE}{extra}")) {
        Ok(config) => config,
        Err(e) => panic!("unexpected problems:\n{e}"),
    }
}

/// Every problem of `text`, as `key: message`.
fn problems_of(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(config) => panic!("expected problems, parsed {config:?}"),
        Err(e) => e.problems.iter().map(ToString::to_string).collect(),
    }
}

/// Every problem of the base text plus `extra`.
fn problems(extra: &str) -> Vec<String> {
    problems_of(&format!("{BASE}{extra}"))
}

/// Asserts that `extra` gives exactly one problem, with `key`, whose message contains `part`.
fn one_problem(extra: &str, key: &str, part: &str) {
    let found = problems(extra);
    assert_eq!(found.len(), 1, "{extra}: {found:?}");
    let prefix = format!("{key}: ");
    assert!(found[0].starts_with(&prefix) && found[0].contains(part), "{extra}: {found:?}");
}

fn uri(s: &str) -> http::Uri {
    match s.parse() {
        Ok(uri) => uri,
        Err(e) => panic!("{s}: {e}"),
    }
}

#[test]
fn minimal_file_gets_every_default() {
    let config = ok("");
    assert_eq!(config.listen, Listen { tls: false, ..Listen::default() });
    assert_eq!(config.admin, Admin::default());
    assert_eq!(config.origin, Origin::new(uri(IRD)));
    assert_eq!(config.cache, Cache::default());
    assert_eq!(config.ecs, Ecs::default());
    assert_eq!(config.limits, Limits::default());
    assert_eq!(Config::with_origin(uri(IRD)), Config { listen: Listen::default(), ..config });
}

#[test]
fn defaults_are_the_documented_values() {
    let listen = Listen::default();
    assert_eq!(listen.addr.to_string(), "127.0.0.1:8443");
    assert!(listen.tls && listen.trusted_proxies.is_empty() && listen.allow.is_empty());
    assert_eq!(Admin::default().addr.to_string(), "127.0.0.1:9090");
    let origin = Origin::new(uri(IRD));
    assert_eq!(origin.connect_timeout, Duration::from_secs(2));
    assert_eq!(origin.timeout, Duration::from_secs(10));
    assert_eq!((origin.max_in_flight, origin.max_body), (256, 256 * 1024 * 1024));
    assert_eq!(origin.ird_refresh, Duration::from_secs(60));
    let cache = Cache::default();
    assert_eq!(cache.default_ttl, Duration::from_secs(30));
    assert_eq!(cache.stale_while_revalidate, Duration::from_secs(10));
    assert_eq!(cache.stale_if_error, Duration::from_secs(300));
    assert_eq!(cache.max_bytes, 512 * 1024 * 1024);
    let ecs = Ecs::default();
    assert_eq!(ecs.mode, EcsMode::Auto);
    assert!(!ecs.rank_locally);
    assert_eq!((ecs.merge_waste, ecs.auto_warmup, ecs.auto_sample), (1.0, 200, 0.01));
    let limits = Limits::default();
    assert_eq!(limits.max_body, 1024 * 1024);
    assert_eq!(limits.header_timeout, Duration::from_secs(10));
    assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
    assert_eq!(limits.coalesce_timeout, Duration::from_secs(15));
    assert_eq!(limits.shutdown_grace, Duration::from_secs(10));
    assert!(limits.coalesce_timeout > DEFAULT_ORIGIN_TIMEOUT + DEFAULT_ORIGIN_CONNECT_TIMEOUT);
}

#[test]
fn defaults_do_not_throttle_one_busy_loopback_client() {
    let limits = Limits::default();
    assert_eq!(limits.per_client_rps, 0, "off");
    assert!(limits.max_connections >= 10_000 && limits.max_in_flight >= 10_000);
    assert!(Listen::default().allow.is_empty());
}

#[test]
fn section_headers_and_dotted_keys_are_the_same_file() {
    let text = format!("[origin]\nird = \"{IRD}\"\n\n[listen]\ntls = false\naddr = \"[::1]:0\"\n");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.listen.addr.to_string(), "[::1]:0");
    assert_eq!(config, ok("listen.addr = \"[::1]:0\""));
}

#[test]
fn origin_ird_is_the_only_required_key() {
    assert_eq!(
        problems_of("listen.tls = false"),
        ["origin.ird: required: the origin's root IRD URL, e.g. \"http://127.0.0.1:8081/directory\""]
    );
    assert_eq!(problems_of("").len(), 3, "ird, listen.cert, listen.key");
    assert_eq!(ok("").origin.ird, uri(IRD));
}

#[test]
fn origin_ird_must_be_an_absolute_http_url() {
    let https = "origin.ird = \"https://alto.example.net:8443/alto/directory\"\nlisten.tls = false\n";
    assert_eq!(
        parse(https).map(|c| c.origin.ird.to_string()).ok().as_deref(),
        Some("https://alto.example.net:8443/alto/directory")
    );
    for bad in [
        "/directory",
        "ftp://alto.example.net/directory",
        "alto.example.net/directory",
        "http://",
        "http://[::1/x",
        "http://a/#frag",
        "",
    ] {
        let found = problems_of(&format!("origin.ird = \"{bad}\"\nlisten.tls = false\n"));
        assert_eq!(found.len(), 1, "{bad}: {found:?}");
        assert!(found[0].starts_with("origin.ird: "), "{bad}: {found:?}");
    }
    let found = problems_of("origin.ird = 8081\nlisten.tls = false\n");
    assert_eq!(
        found,
        ["origin.ird: expected a URL string such as \"https://alto.example.net/directory\", found integer"]
    );
}

#[test]
fn durations() {
    let config = ok(
        "cache.default_ttl = \"1m30s\"\norigin.connect_timeout = \"250ms\"\ncache.stale_if_error = \"2h\"\n",
    );
    assert_eq!(config.cache.default_ttl, Duration::from_secs(90));
    assert_eq!(config.origin.connect_timeout, Duration::from_millis(250));
    assert_eq!(config.cache.stale_if_error, Duration::from_secs(7200));
    one_problem("cache.default_ttl = \"30\"", "cache.default_ttl", "`30` is not a duration");
    one_problem("cache.default_ttl = \"1.5s\"", "cache.default_ttl", "is not a duration");
    one_problem("cache.default_ttl = 30", "cache.default_ttl", "expected a duration string such as \"30s\"");
    one_problem("limits.header_timeout = \"10d\"", "limits.header_timeout", "is not a duration");
}

#[test]
fn timeouts_must_be_positive_and_other_durations_may_be_zero() {
    for key in [
        "origin.connect_timeout",
        "origin.timeout",
        "origin.ird_refresh",
        "limits.header_timeout",
        "limits.handshake_timeout",
        "limits.coalesce_timeout",
    ] {
        one_problem(&format!("{key} = \"0s\""), key, "must be greater than 0");
    }
    let config = ok("cache.default_ttl = \"0s\"\ncache.stale_while_revalidate = \"0s\"\ncache.stale_if_error = \"0ms\"\nlimits.shutdown_grace = \"0s\"\n");
    assert!(config.cache.default_ttl.is_zero() && config.limits.shutdown_grace.is_zero());
}

#[test]
fn sizes() {
    let config = ok("cache.max_bytes = \"1GiB\"\nlimits.max_body = \"64KiB\"\norigin.max_body = \"512B\"\n");
    assert_eq!(
        (config.cache.max_bytes, config.limits.max_body, config.origin.max_body),
        (1 << 30, 64 << 10, 512)
    );
    assert_eq!(ok("cache.max_bytes = \"1MiB\"").cache.max_bytes, MIN_CACHE_MAX_BYTES);
    one_problem("cache.max_bytes = \"512KiB\"", "cache.max_bytes", "must be at least 1MiB, found 512KiB");
    one_problem("cache.max_bytes = \"1MB\"", "cache.max_bytes", "`1MB` is not a size");
    one_problem("limits.max_body = \"0B\"", "limits.max_body", "must be at least 1B");
    one_problem(
        "origin.max_body = 1024",
        "origin.max_body",
        "expected a size string such as \"512MiB\", found integer",
    );
}

#[test]
fn addresses() {
    let config = ok("listen.addr = \"[::1]:8443\"\nadmin.addr = \"127.0.0.1:0\"\n");
    assert_eq!(config.listen.addr.to_string(), "[::1]:8443");
    assert_eq!(config.admin.addr.port(), 0);
    for bad in ["localhost:8443", "127.0.0.1", "::1:8443", "127.0.0.1:99999"] {
        one_problem(&format!("listen.addr = \"{bad}\""), "listen.addr", "is not an address");
    }
    one_problem("listen.addr = 8443", "listen.addr", "expected an address string");
}

#[test]
fn cidr_lists() {
    let config = ok(
        "listen.allow = [\"10.0.0.0/8\", \"::1/128\", \"192.0.2.7\", \"2001:db8::1\", \"::ffff:198.51.100.0/120\"]\n",
    );
    let allow: Vec<String> = config.listen.allow.iter().map(ToString::to_string).collect();
    assert_eq!(allow, ["10.0.0.0/8", "::1/128", "192.0.2.7/32", "2001:db8::1/128", "198.51.100.0/24"]);
    assert_eq!(ok("listen.trusted_proxies = [\"127.0.0.1\"]").listen.trusted_proxies.len(), 1);
    one_problem(
        "listen.allow = [\"10.0.0.300/8\"]",
        "listen.allow",
        "`10.0.0.300/8` is not a CIDR prefix or address",
    );
    one_problem("listen.allow = [\"10.1.0.0/8\"]", "listen.allow", "did you mean \"10.0.0.0/8\"?");
    one_problem("listen.allow = \"10.0.0.0/8\"", "listen.allow", "expected a list of CIDR strings");
    one_problem("listen.trusted_proxies = [10]", "listen.trusted_proxies", "found integer");
    let found = problems("listen.allow = [\"bad\", \"10.0.0.0/8\", \"worse\"]");
    assert_eq!(found.len(), 2, "both bad entries: {found:?}");
}

#[test]
fn tls_needs_cert_and_key() {
    let found = problems_of(&format!("origin.ird = \"{IRD}\""));
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("listen.cert: required when listen.tls is true"), "{found:?}");
    assert!(found[1].starts_with("listen.key: required when listen.tls is true"), "{found:?}");
    let text = format!("origin.ird = \"{IRD}\"\nlisten.cert = '{FILE}'\nlisten.key = '{FILE}'\nlisten.client_ca = '{FILE}'\n");
    let config = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert!(config.listen.tls);
    assert_eq!(config.listen.cert.as_deref(), Some(Path::new(FILE)));
    assert_eq!(config.listen.client_ca.as_deref(), Some(Path::new(FILE)));
}

#[test]
fn tls_material_is_refused_without_tls() {
    let found =
        problems(&format!("listen.cert = '{FILE}'\nlisten.key = '{FILE}'\nlisten.client_ca = '{FILE}'\n"));
    assert_eq!(
        found,
        [
            "listen.cert: has no effect with listen.tls = false",
            "listen.key: has no effect with listen.tls = false",
            "listen.client_ca: requires listen.tls = true (client certificates need TLS)",
        ]
    );
    // A bad listen.tls is reported once, not again as missing certificates.
    assert_eq!(
        problems_of(&format!("origin.ird = \"{IRD}\"\nlisten.tls = \"yes\"\n")),
        ["listen.tls: expected true or false, found string"]
    );
}

#[test]
fn named_files_must_exist_and_be_readable() {
    let missing = "/nonexistent/altoshield/cert.pem";
    let text = format!(
        "origin.ird = \"{IRD}\"\nlisten.cert = '{missing}'\nlisten.key = '{}'\n",
        env!("CARGO_MANIFEST_DIR")
    );
    assert_eq!(
        problems_of(&text),
        [
            format!("listen.cert: cannot read {missing}: no such file"),
            format!("listen.key: cannot read {}: is a directory, not a file", env!("CARGO_MANIFEST_DIR")),
        ]
    );
    for key in ["origin.ca", "origin.cert", "origin.key"] {
        let found = problems(&format!("{key} = '{missing}'"));
        assert!(found.contains(&format!("{key}: cannot read {missing}: no such file")), "{found:?}");
    }
    one_problem("origin.ca = ''", "origin.ca", "must not be empty");
    one_problem("origin.ca = true", "origin.ca", "expected a file path string, found boolean");
    // Relative paths are relative to the current directory (the package root under cargo test).
    assert_eq!(ok("origin.ca = 'Cargo.toml'").origin.ca.as_deref(), Some(Path::new("Cargo.toml")));
}

#[test]
fn origin_client_certificate_needs_both_halves() {
    one_problem(&format!("origin.cert = '{FILE}'"), "origin.key", "required when origin.cert is set");
    one_problem(&format!("origin.key = '{FILE}'"), "origin.cert", "required when origin.key is set");
    let config = ok(&format!("origin.cert = '{FILE}'\norigin.key = '{FILE}'\norigin.ca = '{FILE}'\n"));
    assert!(config.origin.cert.is_some() && config.origin.key.is_some() && config.origin.ca.is_some());
}

#[test]
fn public_url() {
    let config = ok("listen.public_url = \"https://alto.example.net:443/shield/\"");
    assert_eq!(config.listen.public_url.as_deref(), Some("https://alto.example.net:443/shield"));
    assert_eq!(config.listen.base_url(DEFAULT_LISTEN_ADDR), "https://alto.example.net:443/shield");
    let plain = ok("");
    assert_eq!(plain.listen.base_url(DEFAULT_LISTEN_ADDR), "http://127.0.0.1:8443");
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 8443));
    assert_eq!(Listen::default().base_url(v6), "https://[::1]:8443");
    one_problem(
        "listen.public_url = \"https://a.example/?x=1\"",
        "listen.public_url",
        "must not have a query",
    );
    one_problem(
        "listen.public_url = \"https://a.example/#top\"",
        "listen.public_url",
        "must not have a fragment",
    );
    one_problem(
        "listen.public_url = \"/alto\"",
        "listen.public_url",
        "is not an absolute http:// or https:// URL",
    );
    one_problem(
        "listen.public_url = \"ws://a.example\"",
        "listen.public_url",
        "is not an absolute http:// or https:// URL",
    );
}

#[test]
fn admin_token() {
    one_problem(
        "admin.addr = \"0.0.0.0:9090\"",
        "admin.token",
        "required when admin.addr is not a loopback address",
    );
    one_problem(
        "admin.addr = \"192.0.2.1:9090\"",
        "admin.token",
        "required when admin.addr is not a loopback address",
    );
    let config = ok("admin.addr = \"0.0.0.0:9090\"\nadmin.token = \"s3cret-token\"\n");
    assert_eq!(config.admin.token.as_deref(), Some("s3cret-token"));
    assert!(!format!("{config:?}").contains("s3cret"), "the token never reaches Debug output");
    assert_eq!(ok("admin.addr = \"[::1]:9090\"").admin.token, None);
    assert_eq!(ok("admin.addr = \"[::ffff:127.0.0.1]:9090\"").admin.token, None);
    one_problem("admin.token = \"\"", "admin.token", "must not be empty");
    one_problem("admin.token = \"two words\"", "admin.token", "must be printable ASCII without spaces");
    // A bad token is reported for itself, not again as missing.
    one_problem("admin.addr = \"0.0.0.0:9090\"\nadmin.token = \"\"\n", "admin.token", "must not be empty");
}

#[test]
fn admin_and_data_plane_cannot_share_a_port() {
    one_problem(
        "admin.addr = \"127.0.0.1:8443\"",
        "admin.addr",
        "conflicts with listen.addr (both use port 8443)",
    );
    let found = problems("listen.addr = \"0.0.0.0:7000\"\nadmin.addr = \"127.0.0.1:7000\"\n");
    assert_eq!(found, ["admin.addr: conflicts with listen.addr (both use port 7000)"]);
    let config = ok("listen.addr = \"127.0.0.1:0\"\nadmin.addr = \"127.0.0.1:0\"\n");
    assert_eq!(config.listen.addr, config.admin.addr, "port 0 picks two free ports");
    ok("listen.addr = \"127.0.0.1:7000\"\nadmin.addr = \"127.0.0.2:7000\"\n");
}

#[test]
fn counts() {
    let config = ok("limits.max_in_flight = 1\nlimits.max_connections = 1000000\norigin.max_in_flight = 4\nlimits.per_client_rps = 100\n");
    assert_eq!((config.limits.max_in_flight, config.limits.max_connections), (1, 1_000_000));
    assert_eq!((config.origin.max_in_flight, config.limits.per_client_rps), (4, 100));
    for key in ["limits.max_in_flight", "limits.max_connections", "origin.max_in_flight"] {
        one_problem(&format!("{key} = 0"), key, "must be at least 1, found 0");
    }
    one_problem("limits.per_client_rps = -1", "limits.per_client_rps", "must be at least 0, found -1");
    one_problem("limits.per_client_rps = 5000000000", "limits.per_client_rps", "5000000000 is too large");
    one_problem(
        "limits.max_connections = \"10\"",
        "limits.max_connections",
        "expected an integer, found string",
    );
    one_problem("limits.max_connections = 1.5", "limits.max_connections", "expected an integer, found float");
}

#[test]
fn every_ecs_mode_is_available() {
    assert_eq!(ok("ecs.mode = \"forward\"").ecs.mode, EcsMode::Forward);
    assert_eq!(ok("ecs.mode = \"synthesize\"").ecs.mode, EcsMode::Synthesize);
    let aggregate = ok("ecs.mode = \"aggregate\"\necs.rank_locally = true\n").ecs;
    assert_eq!((aggregate.mode, aggregate.rank_locally), (EcsMode::Aggregate, true));
    let auto = ok("ecs.mode = \"auto\"\necs.auto_warmup = 5\necs.auto_sample = 0\n").ecs;
    assert_eq!((auto.mode, auto.auto_warmup, auto.auto_sample), (EcsMode::Auto, 5, 0.0));
    one_problem("ecs.mode = \"fast\"", "ecs.mode", "expected one of forward, aggregate, synthesize, auto");
    one_problem("ecs.mode = \"Forward\"", "ecs.mode", "expected one of forward, aggregate, synthesize, auto");
    let names: Vec<String> = EcsMode::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["forward", "aggregate", "synthesize", "auto"]);
}

#[test]
fn ecs_tuning_keys_are_checked() {
    let ecs =
        ok("ecs.rank_locally = true\necs.merge_waste = 2\necs.auto_warmup = 10\necs.auto_sample = 1\n").ecs;
    assert_eq!((ecs.rank_locally, ecs.merge_waste, ecs.auto_warmup, ecs.auto_sample), (true, 2.0, 10, 1.0));
    let found = problems(
        "ecs.merge_waste = 0.5\necs.auto_sample = 1.5\necs.auto_warmup = -1\necs.rank_locally = 1\n",
    );
    assert_eq!(
        found,
        [
            "ecs.rank_locally: expected true or false, found integer",
            "ecs.merge_waste: must be a number at least 1.0, found 0.5",
            "ecs.auto_warmup: must be at least 0, found -1",
            "ecs.auto_sample: must be a number in [0, 1], found 1.5",
        ]
    );
    let found = problems("ecs.auto_sample = nan\n");
    assert!(found[0].starts_with("ecs.auto_sample: must be a number in [0, 1]"), "{found:?}");
    assert_eq!(ok("ecs.merge_window = \"2ms\"\n").ecs.merge_window, Duration::from_millis(2));
    assert_eq!(Ecs::default().merge_window, Duration::ZERO);
    let found = problems("ecs.merge_window = \"2s\"\n");
    assert_eq!(found, ["ecs.merge_window: must be at most 1000ms, found 2000ms"]);
    let found = problems("ecs.merge_window = 5\n");
    assert!(found[0].starts_with("ecs.merge_window: expected a duration string"), "{found:?}");
}

#[test]
fn unknown_keys_name_their_full_path() {
    assert_eq!(problems("listen.adress = \"127.0.0.1:1\""), ["listen.adress: unknown key"]);
    assert_eq!(
        problems("limits.max-body = \"1MiB\""),
        ["limits.max-body: unknown key (did you mean `max_body`?)"]
    );
    assert_eq!(problems("[lisen]\naddr = \"127.0.0.1:1\""), ["lisen: unknown key (did you mean `listen`?)"]);
    assert_eq!(problems("[tracing]\nlevel = \"debug\""), ["tracing: unknown key"]);
    let found = problems_of(&format!("origin.ird = \"{IRD}\"\nlisten = 5\n"));
    assert_eq!(found, ["listen: expected a table, found integer"]);
    assert_eq!(problems("[[cache]]\nmax_bytes = \"1GiB\""), ["cache: expected a table, found array"]);
    let found = problems_of("origin = 5\nlisten.tls = false\n");
    assert_eq!(found, ["origin: expected a table, found integer"], "not again as a missing origin.ird");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[listen]\nadress = 1\naddr = \"localhost\"\nallow = [\"10.0.0.0/33\"]\n\
         [admin]\naddr = \"0.0.0.0:9090\"\n\
         [origin]\nird = \"ftp://origin\"\ntimeout = \"0s\"\n\
         [cache]\nmax_bytes = \"1KiB\"\ndefault_ttl = \"soon\"\n\
         [ecs]\nmode = \"fast\"\n\
         [limits]\nmax_in_flight = 0\nbogus = true\n";
    let found = parse(text).err().map(|e| e.problems).unwrap_or_default();
    let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            // Unknown keys first, then every value, section by section.
            "listen.adress",
            "limits.bogus",
            "listen.addr",
            "listen.allow",
            "listen.cert",
            "listen.key",
            "admin.token",
            "origin.ird",
            "origin.timeout",
            "cache.default_ttl",
            "cache.max_bytes",
            "ecs.mode",
            "limits.max_in_flight",
        ]
    );
}

#[test]
fn bad_toml_is_one_problem_with_its_line() {
    let found = problems_of("[listen]\naddr = \"127.0.0.1:1\"\ntls = yes\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("line 3: ") && !found[0].contains('\n'), "{found:?}");
    let found = problems_of("[origin\nird = 1\n");
    assert!(found.len() == 1 && found[0].starts_with("line 1: "), "{found:?}");
    let found = problems_of("[origin]\nird = \"a\"\nird = \"b\"\n");
    assert!(
        found.len() == 1 && found[0].starts_with("line 3: ") && found[0].contains("duplicate key"),
        "{found:?}"
    );
    let found = problems_of("\u{0}");
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn errors_display_one_problem_per_line() {
    let error = parse("listen.tls = 1\n").err().unwrap_or(ConfigError { problems: Vec::new() });
    assert_eq!(error.to_string(), "listen.tls: expected true or false, found integer\norigin.ird: required: the origin's root IRD URL, e.g. \"http://127.0.0.1:8081/directory\"");
    assert_eq!(Problem::new("", "line 1: invalid key").to_string(), "line 1: invalid key");
    assert_eq!(
        Problem::new("cache.max_bytes", "must be at least 1MiB").to_string(),
        "cache.max_bytes: must be at least 1MiB"
    );
}

#[test]
fn load_reports_an_unreadable_file_as_one_problem() {
    let path = Path::new("/nonexistent/altoshield.toml");
    let problems = load(path).err().map(|e| e.problems).unwrap_or_default();
    assert_eq!(problems, [Problem::new("", "cannot read /nonexistent/altoshield.toml: no such file")]);
    let problems = check(Path::new(env!("CARGO_MANIFEST_DIR"))).err().map(|e| e.problems).unwrap_or_default();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].key, "");
}

#[test]
fn the_raw_form_lists_its_keys() {
    assert_eq!(raw::sections(), ["listen", "admin", "origin", "cache", "ecs", "limits"]);
    for section in raw::sections() {
        assert!(raw::section_keys(section).is_some_and(|keys| !keys.is_empty()), "{section}");
    }
    assert_eq!(raw::section_keys("admin"), Some(&["addr", "token"][..]));
}

/// `section.key` for every assignment in `text`, commented out or not.
fn documented_keys(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let line = line.trim_start_matches('#').trim();
        if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                keys.push(format!("{section}.{key}"));
            }
        }
    }
    keys
}

#[test]
fn the_example_file_documents_every_key_and_parses() {
    let documented = documented_keys(EXAMPLE);
    for section in raw::sections() {
        for key in raw::section_keys(section).unwrap_or_default() {
            let path = format!("{section}.{key}");
            assert!(documented.contains(&path), "config/altoshield.toml does not document {path}");
        }
    }
    let config = parse(EXAMPLE).unwrap_or_else(|e| panic!("config/altoshield.toml:\n{e}"));
    assert_eq!(
        config,
        Config { listen: Listen { tls: false, ..Listen::default() }, ..Config::with_origin(uri(IRD)) }
    );
}

#[test]
fn the_example_files_commented_ecs_values_are_valid() {
    // Uncommented, the tuning keys are all valid.
    let ecs_section =
        EXAMPLE.split("[ecs]").nth(1).and_then(|rest| rest.split("\n[").next()).unwrap_or_default();
    let uncommented: String = ecs_section
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| line.contains(" = "))
        .map(|line| format!("ecs.{line}\n"))
        .collect();
    assert_eq!(uncommented.lines().count(), 5, "{uncommented}");
    let ecs = ok(&uncommented).ecs;
    assert_eq!(ecs, Ecs { mode: ecs.mode, ..Ecs::default() });
}

#[test]
fn suggestions() {
    assert_eq!(raw::closest("max-body", &["max_body", "per_client_rps"]), Some("max_body"));
    assert_eq!(raw::closest("adress", &["addr", "tls"]), None);
    assert_eq!(raw::closest("tl", &["tls"]), Some("tls"));
    assert_eq!(raw::closest("x", &["ca"]), None);
}

#[cfg(unix)]
#[test]
fn named_files_must_be_regular_files() {
    // Checked without opening: opening a named pipe would block the check.
    one_problem("origin.ca = '/dev/null'", "origin.ca", "cannot read /dev/null: is not a regular file");
}
