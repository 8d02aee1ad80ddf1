//! The shipped example, `config/altoshield.toml`: it loads from disk exactly as `altoshield serve`
//! and `check-config` would load it, it holds the defaults, and it documents every key DESIGN §3
//! promises. Cargo runs integration tests with the package root as the current directory, which
//! is also where the example's relative paths (if any) are resolved.

use std::path::Path;

use altoshield::config::{self, Config, Listen, DEFAULT_CONFIG_PATH};

/// The keys DESIGN §3 ("Shield configuration keys") lists, plus the limits §4–§6 rely on.
const DESIGN_KEYS: &[&str] = &[
    "listen.addr",
    "listen.cert",
    "listen.key",
    "listen.client_ca",
    "listen.tls",
    "listen.public_url",
    "listen.trusted_proxies",
    "listen.allow",
    "admin.addr",
    "admin.token",
    "origin.ird",
    "origin.ca",
    "origin.cert",
    "origin.key",
    "cache.default_ttl",
    "cache.stale_while_revalidate",
    "cache.stale_if_error",
    "cache.max_bytes",
    "ecs.mode",
    "ecs.rank_locally",
    "ecs.merge_waste",
    "ecs.auto_warmup",
    "ecs.auto_sample",
    "limits.max_body",
    "limits.per_client_rps",
    "limits.max_in_flight",
    "limits.max_connections",
    "limits.header_timeout",
    "limits.handshake_timeout",
    "limits.coalesce_timeout",
    "limits.shutdown_grace",
];

fn example_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH)
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).unwrap_or_else(|e| panic!("{}: {e}", example_path().display()))
}

/// `section.key` for every assignment in `text`, commented out or not, each with the comment
/// block right above it (keys in a row share the block).
fn documented_keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut comment = String::new();
    let mut after_key = false;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            comment.clear();
            continue;
        }
        let uncommented = line.strip_prefix('#').map_or(line, str::trim);
        let key = uncommented.split_once('=').map(|(k, _)| k.trim()).unwrap_or_default();
        if !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            keys.push((format!("{section}.{key}"), comment.clone()));
            after_key = true;
            continue;
        }
        if after_key || !line.starts_with('#') {
            comment.clear();
        }
        after_key = false;
        comment.push_str(uncommented);
        comment.push('\n');
    }
    keys
}

#[test]
fn the_example_loads_from_disk() {
    let config = config::load(&example_path()).unwrap_or_else(|e| panic!("config/altoshield.toml:\n{e}"));
    let checked = config::check(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config, checked);
    // The relative default path works from the package root, as it does for `altoshield serve`.
    assert_eq!(config::load(Path::new(DEFAULT_CONFIG_PATH)).ok(), Some(config.clone()));

    // The example is the defaults, except that it serves plain HTTP so that it runs without
    // certificates.
    let defaults = Config::with_origin(config.origin.ird.clone());
    assert_eq!(config, Config { listen: Listen { tls: false, ..Listen::default() }, ..defaults });
    assert_eq!(config.origin.ird.to_string(), "http://127.0.0.1:8081/directory");
}

#[test]
fn the_example_documents_every_design_key_with_its_default() {
    let documented = documented_keys(&example_text());
    for key in DESIGN_KEYS {
        let Some((_, comment)) = documented.iter().find(|(k, _)| k == key) else {
            panic!("config/altoshield.toml does not mention {key}");
        };
        assert!(
            comment.contains("Default:") || comment.to_lowercase().contains("no default"),
            "config/altoshield.toml does not give {key}'s default:\n{comment}"
        );
    }
}

#[test]
fn the_example_has_no_key_twice() {
    let documented = documented_keys(&example_text());
    for (i, (key, _)) in documented.iter().enumerate() {
        assert!(!documented[..i].iter().any(|(k, _)| k == key), "{key} appears twice");
    }
}
