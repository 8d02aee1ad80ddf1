//! End-to-end tests of `altoshield loadgen` and `altoshield demo`: the real binary against the
//! real reference origin and shield on ephemeral loopback ports, over real TLS.
//!
//! What a user relies on: with nothing in between, the requests the load generator says it
//! sent are exactly what the origin counted, resource by resource (both policies); through the
//! shield over TLS and HTTP/2 it runs without errors and reports the origin's load; bad targets
//! fail fast with one line and exit 1; the demo leaves its timeline where its last line says.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use support::*;

/// Bound on one loadgen or demo run in these tests (they take a few seconds).
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// `requests sent <id>: N` lines of a loadgen summary, and the `requests sent: N` total.
fn sent_lines(stdout: &str) -> (u64, BTreeMap<String, u64>) {
    let mut total = None;
    let mut by_resource = BTreeMap::new();
    for line in stdout.lines() {
        let Some(rest) = line.strip_prefix("requests sent") else { continue };
        let (name, n) = rest.rsplit_once(": ").unwrap_or_else(|| panic!("bad line `{line}`"));
        let n: u64 = n.trim().parse().unwrap_or_else(|_| panic!("bad count in `{line}`"));
        match name.trim() {
            "" => total = Some(n),
            id => {
                by_resource.insert(id.to_string(), n);
            }
        }
    }
    (total.expect("a `requests sent: N` line"), by_resource)
}

/// The value after `<prefix>` on the first line starting with it.
fn field<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{stdout}"))
        .trim()
}

fn loadgen(args: &[&str]) -> Exit {
    let mut full = vec!["loadgen"];
    full.extend_from_slice(args);
    run_to_exit(BIN, &full, RUN_TIMEOUT)
}

fn assert_ok(exit: &Exit) {
    assert_eq!(exit.code, Some(0), "loadgen failed\nstdout:\n{}\nstderr:\n{}", exit.stdout, exit.stderr);
}

/// Served counts by resource, from an origin's `/metrics` text.
fn served(text: &str) -> BTreeMap<String, u64> {
    parse_samples(text)
        .into_iter()
        .filter(|s| s.name == "altoshield_origin_served_total")
        .filter_map(|s| {
            let id = s.labels.into_iter().find(|(k, _)| k == "resource")?.1;
            Some((id, s.value as u64))
        })
        .collect()
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_proxy_the_requests_sent_are_what_the_origin_counted() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let mut pairs_by_policy = BTreeMap::new();
    for policy in ["all", "new"] {
        let before = origin.metrics().await;
        let exit = loadgen(&[
            "--target",
            &origin.directory_url(),
            "--policy",
            policy,
            "--peers",
            "40",
            "--epoch",
            "200ms",
            "--epochs",
            "4",
            "--map-clients",
            "3",
            "--connections",
            "8",
        ]);
        assert_ok(&exit);
        let after = origin.metrics().await;
        let (total, by_resource) = sent_lines(&exit.stdout);
        let counted = delta(&served(&before), &served(&after));
        assert_eq!(by_resource, counted, "policy {policy}: sent vs counted\n{}", exit.stdout);
        assert_eq!(total, counted.values().sum::<u64>(), "policy {policy}");
        for id in ["directory", "endpoint-cost", "costmap-routingcost-ordinal"] {
            assert!(by_resource.contains_key(id), "policy {policy}: no requests to {id}\n{}", exit.stdout);
        }
        // Every peer asks every epoch with policy all; the pairs it asked are the pairs computed.
        let ecs = field(&exit.stdout, "endpoint-cost requests:");
        let pairs: u64 = ecs.rsplit_once("pairs asked: ").expect("pairs").1.parse().expect("number");
        let origin_pairs = metric(&after, "altoshield_origin_ecs_pairs_total", &[])
            - metric(&before, "altoshield_origin_ecs_pairs_total", &[]);
        assert_eq!(pairs as f64, origin_pairs, "policy {policy}");
        assert_eq!(field(&exit.stdout, "errors:"), "0", "{}", exit.stdout);
        pairs_by_policy.insert(policy, pairs);
    }
    assert!(
        pairs_by_policy["new"] < pairs_by_policy["all"],
        "ranking only new peers asks fewer pairs: {pairs_by_policy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_shield_over_tls_and_http2_without_errors() {
    let origin = Origin::start(&["--generate", "--pids", "20", "--prefixes-per-pid", "5"]);
    let cert = TestCert::new();
    let shield = Shield::start_ready(&ShieldConfig::new(&origin.directory_url()).tls(&cert)).await;
    let out = TempDir::new("altoshield-loadgen-out");
    let (target, metrics) = (shield.directory_url(), origin.metrics_url());
    for (policy, proto) in [("all", Some("--http2")), ("new", None)] {
        let mut args = vec![
            "--target",
            &target,
            "--ca",
            cert.cert_arg(),
            "--policy",
            policy,
            "--peers",
            "40",
            "--epoch",
            "250ms",
            "--epochs",
            "4",
            "--map-clients",
            "4",
            "--origin-metrics",
            &metrics,
            "--out",
            out.path.to_str().expect("utf-8"),
        ];
        args.extend(proto);
        let exit = loadgen(&args);
        assert_ok(&exit);
        assert_eq!(field(&exit.stdout, "errors:"), "0", "{policy} {proto:?}:\n{}", exit.stdout);
        assert!(exit.stdout.contains("reduction: endpoint-cost requests"), "{}", exit.stdout);
        let (total, by_resource) = sent_lines(&exit.stdout);
        assert!(by_resource["endpoint-cost"] > 0);
        // Map clients revalidate through the shield: the origin sees at most one fetch per map
        // version, never one per client and epoch.
        let origin_total: f64 = field(&exit.stdout, "  requests:").parse().expect("number");
        assert!(origin_total < total as f64, "origin {origin_total} vs client {total}\n{}", exit.stdout);
        let csv = std::fs::read_to_string(out.join("timeline.csv")).expect("timeline.csv");
        assert!(
            csv.starts_with("t_s,client_requests,client_errors,origin_requests,origin_pairs,p50_ms,p99_ms\n")
        );
        assert!(csv.lines().count() >= 2, "{csv}");
        let svg = std::fs::read_to_string(out.join("timeline.svg")).expect("timeline.svg");
        assert!(svg.starts_with("<svg"));
    }
}

#[test]
fn an_ird_pointing_elsewhere_is_warned_about() {
    // The origin names itself `localhost` in its IRD; the target says 127.0.0.1.
    let addr = unused_addr();
    let public = format!("http://localhost:{}", addr.port());
    let origin = Origin::start_on(addr, &["--generate", "--pids", "5", "--public-url", &public]);
    let exit =
        loadgen(&["--target", &origin.directory_url(), "--peers", "10", "--epoch", "100ms", "--epochs", "2"]);
    assert_ok(&exit);
    assert!(
        exit.stderr.contains("not at http://127.0.0.1:") && exit.stderr.contains("endpoint-cost"),
        "no warning on stderr:\n{}",
        exit.stderr
    );
}

/// A server that answers every request with `body` as `content_type`, closing each connection.
fn canned_server(content_type: &'static str, body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

/// A server that accepts connections and never answers.
fn silent_server() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

#[test]
fn bad_targets_fail_with_one_line_and_exit_1() {
    let origin = Origin::start(&["--generate", "--pids", "5", "--prefixes-per-pid", "2"]);
    let no_ecs = canned_server(
        "application/alto-directory+json",
        r#"{"meta":{"default-alto-network-map":"nm"},"resources":{"nm":{"uri":"/networkmap","media-type":"application/alto-networkmap+json"}}}"#,
    );
    let (_keep, silent) = silent_server();
    let tls_to_plain = origin.directory_url().replacen("http://", "https://", 1);
    let cases = [
        ("unreachable", format!("http://{}/directory", unused_addr()), "cannot connect"),
        ("not an IRD", origin.url("/networkmap"), "instead of an IRD"),
        ("not found", origin.url("/no-such-thing"), "404"),
        ("TLS failure", tls_to_plain, "TLS"),
        ("no endpoint cost resource", format!("{no_ecs}/directory"), "no endpoint cost resource"),
        ("never answers", format!("{silent}/directory"), "no answer in time"),
    ];
    for (what, url, expect) in cases {
        let started = std::time::Instant::now();
        let exit = loadgen(&["--target", &url, "--timeout", "2s", "--peers", "10", "--epoch", "100ms"]);
        assert!(!exit.timed_out, "{what}: hung");
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: took {:?}", started.elapsed());
        assert_eq!(
            exit.code,
            Some(1),
            "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
            exit.code,
            exit.stdout,
            exit.stderr
        );
        let lines = exit.stderr_lines();
        assert_eq!(lines.len(), 1, "{what}: stderr should be one line:\n{}", exit.stderr);
        assert!(lines[0].contains(expect), "{what}: `{}` does not say `{expect}`", lines[0]);
        assert!(!exit.stderr.contains("panicked"), "{what}: {}", exit.stderr);
        assert!(exit.stdout.is_empty(), "{what}: printed a summary:\n{}", exit.stdout);
    }
    let usage = loadgen(&["--target", "not a url"]);
    assert_eq!(usage.code, Some(64), "{}", usage.stderr);
}

#[test]
fn the_demo_ends_with_the_folder_holding_its_timeline() {
    let dir = TempDir::new("altoshield-demo-test");
    let folder = dir.join("out");
    let exit = run_to_exit(BIN, &["demo", "--quick", "--out", folder.to_str().expect("utf-8")], RUN_TIMEOUT);
    assert_eq!(exit.code, Some(0), "stdout:\n{}\nstderr:\n{}", exit.stdout, exit.stderr);
    let last = exit.stdout.lines().rfind(|l| !l.trim().is_empty()).expect("output");
    let printed = std::path::Path::new(last.trim());
    assert!(printed.is_dir(), "last line `{last}` is not a folder");
    assert_eq!(printed.canonicalize().ok(), folder.canonicalize().ok());
    for file in ["timeline.csv", "timeline.svg"] {
        let len = std::fs::metadata(printed.join(file)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{file} missing or empty in {last}");
    }
    assert!(exit.stdout.contains("through altoshield"), "{}", exit.stdout);
    let errors = exit.stdout.lines().find(|l| l.starts_with("errors")).expect("an errors row");
    assert!(errors.split_whitespace().skip(1).all(|n| n == "0"), "errors: {errors}");
}
