//! An independent oracle for the reference origin: requests against `altoshield origin --data
//! config/origin` with the answers worked out by hand from `config/origin/*.json`, written as
//! JSON literals. Nothing here calls the crate's own code: if the core and the origin agree on
//! a wrong answer, this file is what disagrees.
//!
//! Working notes for the hand computation (from `config/origin/`):
//!
//! LPM: 10.1.2.3 → pid-a-core (10.1.0.0/16 in 10/8), 10.2.0.1 → pid-a, 192.0.2.200 → pid-b-host
//! (192.0.2.128/25 in 192.0.2.0/24), 192.0.2.5 → pid-b, 198.51.100.7 → pid-b, 198.51.100.200 →
//! default (outside the /25), 203.0.113.5 → pid-c, 203.0.113.70 → pid-c-edge (.64/26),
//! 2001:db8:c:1::5 → pid-c-edge, 2001:db8:c:2::5 → pid-c, 2001:db8:a::1 → pid-a, 2001:db8:b::1 →
//! pid-b-host, 8.8.8.8, 127.0.0.1, 2001:db9::1 and 2001:db8:ffff::1 → default.
//!
//! routingcost values over the whole map: 0 1 2 3 10 12 15 15.5 18 20 25 50, so the full
//! ordinal map ranks them 1 2 3 4 5 6 7 8 9 10 11 12. pid-a-core→pid-c-edge and
//! pid-c-edge→pid-a-core have no routingcost. hopcount values: 0 1 2 4 5 6 7 8, ranked 1..8.

mod support;

use serde_json::{json, Value};
use support::*;

const NET: &str = "my-default-network-map";

/// One oracle row: a resource of the IRD (by id), the request body (`None`: a GET), the answer.
struct Row {
    name: &'static str,
    resource: &'static str,
    request: Option<Value>,
    expected: Value,
}

fn row(name: &'static str, resource: &'static str, request: Option<Value>, expected: Value) -> Row {
    Row { name, resource, request, expected }
}

fn ct(metric: &str, mode: &str) -> Value {
    json!({"cost-metric": metric, "cost-mode": mode})
}

/// The cost map answer shape: `meta` with the network map's vtag and the cost type.
fn cost_answer(vt: &Value, metric: &str, mode: &str, map: Value) -> Value {
    json!({"meta": {"dependent-vtags": [vt], "cost-type": ct(metric, mode)}, "cost-map": map})
}

fn ecs_answer(metric: &str, mode: &str, map: Value) -> Value {
    json!({"meta": {"cost-type": ct(metric, mode)}, "endpoint-cost-map": map})
}

fn full_network_map() -> Value {
    json!({
        "default":    { "ipv4": ["0.0.0.0/0"], "ipv6": ["::/0"] },
        "pid-a":      { "ipv4": ["10.0.0.0/8"], "ipv6": ["2001:db8:a::/48"] },
        "pid-a-core": { "ipv4": ["10.1.0.0/16"] },
        "pid-b":      { "ipv4": ["192.0.2.0/24", "198.51.100.0/25"] },
        "pid-b-host": { "ipv4": ["192.0.2.128/25"], "ipv6": ["2001:db8:b::/48"] },
        "pid-c":      { "ipv4": ["203.0.113.0/24"], "ipv6": ["2001:db8:c::/48"] },
        "pid-c-edge": { "ipv4": ["203.0.113.64/26"], "ipv6": ["2001:db8:c:1::/64"] }
    })
}

fn rows(vt: &Value) -> Vec<Row> {
    let pid = "my-default-network-map.pid";
    vec![
        // ---- GET resources ---------------------------------------------------------------
        row("full network map", NET, None, json!({"meta": {"vtag": vt}, "network-map": full_network_map()})),
        row(
            "full routingcost numerical",
            "costmap-routingcost-numerical",
            None,
            cost_answer(
                vt,
                "routingcost",
                "numerical",
                json!({
                    "default":    { "default": 0, "pid-a": 50, "pid-a-core": 50, "pid-b": 50, "pid-b-host": 50, "pid-c": 50, "pid-c-edge": 50 },
                    "pid-a":      { "default": 50, "pid-a": 1, "pid-a-core": 2, "pid-b": 10, "pid-b-host": 12, "pid-c": 20, "pid-c-edge": 20 },
                    "pid-a-core": { "default": 50, "pid-a": 2, "pid-a-core": 1, "pid-b": 10, "pid-b-host": 10, "pid-c": 25 },
                    "pid-b":      { "default": 50, "pid-a": 10, "pid-a-core": 10, "pid-b": 1, "pid-b-host": 3, "pid-c": 15, "pid-c-edge": 15.5 },
                    "pid-b-host": { "default": 50, "pid-a": 12, "pid-a-core": 10, "pid-b": 3, "pid-b-host": 1, "pid-c": 15, "pid-c-edge": 18 },
                    "pid-c":      { "default": 50, "pid-a": 20, "pid-a-core": 25, "pid-b": 15, "pid-b-host": 15, "pid-c": 1, "pid-c-edge": 2 },
                    "pid-c-edge": { "default": 50, "pid-a": 20, "pid-b": 15.5, "pid-b-host": 18, "pid-c": 2, "pid-c-edge": 1 }
                }),
            ),
        ),
        row(
            "full routingcost ordinal: dense ranks over the whole map",
            "costmap-routingcost-ordinal",
            None,
            cost_answer(
                vt,
                "routingcost",
                "ordinal",
                json!({
                    "default":    { "default": 1, "pid-a": 12, "pid-a-core": 12, "pid-b": 12, "pid-b-host": 12, "pid-c": 12, "pid-c-edge": 12 },
                    "pid-a":      { "default": 12, "pid-a": 2, "pid-a-core": 3, "pid-b": 5, "pid-b-host": 6, "pid-c": 10, "pid-c-edge": 10 },
                    "pid-a-core": { "default": 12, "pid-a": 3, "pid-a-core": 2, "pid-b": 5, "pid-b-host": 5, "pid-c": 11 },
                    "pid-b":      { "default": 12, "pid-a": 5, "pid-a-core": 5, "pid-b": 2, "pid-b-host": 4, "pid-c": 7, "pid-c-edge": 8 },
                    "pid-b-host": { "default": 12, "pid-a": 6, "pid-a-core": 5, "pid-b": 4, "pid-b-host": 2, "pid-c": 7, "pid-c-edge": 9 },
                    "pid-c":      { "default": 12, "pid-a": 10, "pid-a-core": 11, "pid-b": 7, "pid-b-host": 7, "pid-c": 2, "pid-c-edge": 3 },
                    "pid-c-edge": { "default": 12, "pid-a": 10, "pid-b": 8, "pid-b-host": 9, "pid-c": 3, "pid-c-edge": 2 }
                }),
            ),
        ),
        row(
            "full hopcount numerical",
            "costmap-hopcount-numerical",
            None,
            cost_answer(
                vt,
                "hopcount",
                "numerical",
                json!({
                    "default":    { "default": 0, "pid-a": 8, "pid-a-core": 8, "pid-b": 8, "pid-b-host": 8, "pid-c": 8, "pid-c-edge": 8 },
                    "pid-a":      { "default": 8, "pid-a": 1, "pid-a-core": 2, "pid-b": 4, "pid-b-host": 5, "pid-c": 6, "pid-c-edge": 7 },
                    "pid-a-core": { "default": 8, "pid-a": 2, "pid-a-core": 1, "pid-b": 4, "pid-b-host": 4, "pid-c": 6, "pid-c-edge": 7 },
                    "pid-b":      { "default": 8, "pid-a": 4, "pid-a-core": 4, "pid-b": 1, "pid-b-host": 2, "pid-c": 5, "pid-c-edge": 5 },
                    "pid-b-host": { "default": 8, "pid-a": 5, "pid-a-core": 4, "pid-b": 2, "pid-b-host": 1, "pid-c": 5, "pid-c-edge": 6 },
                    "pid-c":      { "default": 8, "pid-a": 6, "pid-a-core": 6, "pid-b": 5, "pid-b-host": 5, "pid-c": 1, "pid-c-edge": 2 },
                    "pid-c-edge": { "default": 8, "pid-a": 7, "pid-a-core": 7, "pid-b": 5, "pid-b-host": 6, "pid-c": 2, "pid-c-edge": 1 }
                }),
            ),
        ),
        row(
            "full hopcount ordinal: 0 1 2 4 5 6 7 8 ranked 1..8",
            "costmap-hopcount-ordinal",
            None,
            cost_answer(
                vt,
                "hopcount",
                "ordinal",
                json!({
                    "default":    { "default": 1, "pid-a": 8, "pid-a-core": 8, "pid-b": 8, "pid-b-host": 8, "pid-c": 8, "pid-c-edge": 8 },
                    "pid-a":      { "default": 8, "pid-a": 2, "pid-a-core": 3, "pid-b": 4, "pid-b-host": 5, "pid-c": 6, "pid-c-edge": 7 },
                    "pid-a-core": { "default": 8, "pid-a": 3, "pid-a-core": 2, "pid-b": 4, "pid-b-host": 4, "pid-c": 6, "pid-c-edge": 7 },
                    "pid-b":      { "default": 8, "pid-a": 4, "pid-a-core": 4, "pid-b": 2, "pid-b-host": 3, "pid-c": 5, "pid-c-edge": 5 },
                    "pid-b-host": { "default": 8, "pid-a": 5, "pid-a-core": 4, "pid-b": 3, "pid-b-host": 2, "pid-c": 5, "pid-c-edge": 6 },
                    "pid-c":      { "default": 8, "pid-a": 6, "pid-a-core": 6, "pid-b": 5, "pid-b-host": 5, "pid-c": 2, "pid-c-edge": 3 },
                    "pid-c-edge": { "default": 8, "pid-a": 7, "pid-a-core": 7, "pid-b": 5, "pid-b-host": 6, "pid-c": 3, "pid-c-edge": 2 }
                }),
            ),
        ),
        // ---- filtered network map ----------------------------------------------------------
        row(
            "filtered network map: two PIDs",
            "filtered-network-map",
            Some(json!({"pids": ["pid-a", "pid-b"]})),
            json!({"meta": {"vtag": vt}, "network-map": {
                "pid-a": { "ipv4": ["10.0.0.0/8"], "ipv6": ["2001:db8:a::/48"] },
                "pid-b": { "ipv4": ["192.0.2.0/24", "198.51.100.0/25"] }
            }}),
        ),
        row(
            "filtered network map: unknown PID ignored, duplicate once",
            "filtered-network-map",
            Some(json!({"pids": ["pid-c-edge", "no-such-pid", "pid-c-edge"]})),
            json!({"meta": {"vtag": vt}, "network-map": {
                "pid-c-edge": { "ipv4": ["203.0.113.64/26"], "ipv6": ["2001:db8:c:1::/64"] }
            }}),
        ),
        row(
            "filtered network map: all PIDs, IPv6 only (PIDs without IPv6 keep an empty group)",
            "filtered-network-map",
            Some(json!({"pids": [], "address-types": ["ipv6"]})),
            json!({"meta": {"vtag": vt}, "network-map": {
                "default":    { "ipv6": ["::/0"] },
                "pid-a":      { "ipv6": ["2001:db8:a::/48"] },
                "pid-a-core": {},
                "pid-b":      {},
                "pid-b-host": { "ipv6": ["2001:db8:b::/48"] },
                "pid-c":      { "ipv6": ["2001:db8:c::/48"] },
                "pid-c-edge": { "ipv6": ["2001:db8:c:1::/64"] }
            }}),
        ),
        row(
            "filtered network map: empty pids means all",
            "filtered-network-map",
            Some(json!({"pids": []})),
            json!({"meta": {"vtag": vt}, "network-map": full_network_map()}),
        ),
        row(
            "filtered network map: unknown address type ignored",
            "filtered-network-map",
            Some(json!({"pids": ["pid-b-host"], "address-types": ["ipv4", "mac"]})),
            json!({"meta": {"vtag": vt}, "network-map": { "pid-b-host": { "ipv4": ["192.0.2.128/25"] } }}),
        ),
        // ---- filtered cost map -------------------------------------------------------------
        row(
            "filtered cost map: numerical subset",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "numerical"),
                        "pids": {"srcs": ["pid-a"], "dsts": ["pid-b", "pid-c", "pid-c-edge"]}})),
            cost_answer(
                vt,
                "routingcost",
                "numerical",
                json!({"pid-a": {"pid-b": 10, "pid-c": 20, "pid-c-edge": 20}}),
            ),
        ),
        row(
            "filtered cost map: ordinal re-ranked over the subset, 10 20 20 → 1 2 2",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "ordinal"),
                        "pids": {"srcs": ["pid-a"], "dsts": ["pid-b", "pid-c", "pid-c-edge"]}})),
            cost_answer(
                vt,
                "routingcost",
                "ordinal",
                json!({"pid-a": {"pid-b": 1, "pid-c": 2, "pid-c-edge": 2}}),
            ),
        ),
        row(
            "filtered cost map: omitted pairs stay omitted (numerical)",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "numerical"),
                        "pids": {"srcs": ["pid-a-core", "pid-c-edge"], "dsts": ["pid-a-core", "pid-c-edge", "pid-b"]}})),
            cost_answer(
                vt,
                "routingcost",
                "numerical",
                json!({
                    "pid-a-core": {"pid-a-core": 1, "pid-b": 10},
                    "pid-c-edge": {"pid-b": 15.5, "pid-c-edge": 1}
                }),
            ),
        ),
        row(
            "filtered cost map: omitted pairs ignored by the ranking (1 10 15.5 → 1 2 3)",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "ordinal"),
                        "pids": {"srcs": ["pid-a-core", "pid-c-edge"], "dsts": ["pid-a-core", "pid-c-edge", "pid-b"]}})),
            cost_answer(
                vt,
                "routingcost",
                "ordinal",
                json!({
                    "pid-a-core": {"pid-a-core": 1, "pid-b": 2},
                    "pid-c-edge": {"pid-b": 3, "pid-c-edge": 1}
                }),
            ),
        ),
        row(
            "filtered cost map: numerical `le 10`, all destinations",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "numerical"), "constraints": ["le 10"],
                        "pids": {"srcs": ["pid-a", "pid-b"], "dsts": []}})),
            cost_answer(
                vt,
                "routingcost",
                "numerical",
                json!({
                    "pid-a": {"pid-a": 1, "pid-a-core": 2, "pid-b": 10},
                    "pid-b": {"pid-a": 10, "pid-a-core": 10, "pid-b": 1, "pid-b-host": 3}
                }),
            ),
        ),
        row(
            "filtered cost map: `ge 5` and `le 6` ANDed on hopcount",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("hopcount", "numerical"), "constraints": ["ge 5", "le 6"],
                        "pids": {"srcs": ["pid-c"]}})),
            cost_answer(
                vt,
                "hopcount",
                "numerical",
                json!({"pid-c": {"pid-a": 6, "pid-a-core": 6, "pid-b": 5, "pid-b-host": 5}}),
            ),
        ),
        row(
            "filtered cost map: ordinal `eq 1` applies to ranks (10 10 15 15.5 → 1 1 2 3)",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "ordinal"), "constraints": ["eq 1"],
                        "pids": {"srcs": ["pid-b"], "dsts": ["pid-a", "pid-a-core", "pid-c", "pid-c-edge"]}})),
            cost_answer(vt, "routingcost", "ordinal", json!({"pid-b": {"pid-a": 1, "pid-a-core": 1}})),
        ),
        row(
            "filtered cost map: unknown PIDs ignored",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("hopcount", "numerical"),
                        "pids": {"srcs": ["pid-b-host", "ghost"], "dsts": ["pid-a-core", "phantom"]}})),
            cost_answer(vt, "hopcount", "numerical", json!({"pid-b-host": {"pid-a-core": 4}})),
        ),
        row(
            "filtered cost map: no pids, ordinal hopcount `le 2` (ranks over the whole map)",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("hopcount", "ordinal"), "constraints": ["le 2"]})),
            cost_answer(
                vt,
                "hopcount",
                "ordinal",
                json!({
                    "default": {"default": 1}, "pid-a": {"pid-a": 2}, "pid-a-core": {"pid-a-core": 2},
                    "pid-b": {"pid-b": 2}, "pid-b-host": {"pid-b-host": 2}, "pid-c": {"pid-c": 2},
                    "pid-c-edge": {"pid-c-edge": 2}
                }),
            ),
        ),
        row(
            "filtered cost map: `gt 20` and `lt 50` leaves only the 25s",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "numerical"), "constraints": ["gt 20", "lt 50"],
                        "pids": {"srcs": [], "dsts": []}})),
            cost_answer(
                vt,
                "routingcost",
                "numerical",
                json!({"pid-a-core": {"pid-c": 25}, "pid-c": {"pid-a-core": 25}}),
            ),
        ),
        row(
            "filtered cost map: `eq 15.5` compares doubles; duplicate source once",
            "filtered-cost-map",
            Some(json!({"cost-type": ct("routingcost", "numerical"), "constraints": ["eq 15.5"],
                        "pids": {"srcs": ["pid-b", "pid-b"]}})),
            cost_answer(vt, "routingcost", "numerical", json!({"pid-b": {"pid-c-edge": 15.5}})),
        ),
        row(
            "filtered cost map: `le 1e1` (exponent), description and unknown fields ignored",
            "filtered-cost-map",
            Some(
                json!({"cost-type": {"cost-metric": "routingcost", "cost-mode": "numerical", "description": "mine"},
                        "constraints": ["le 1e1"], "pids": {"srcs": ["pid-a"], "x-hint": true}, "x-extension": [1]}),
            ),
            cost_answer(
                vt,
                "routingcost",
                "numerical",
                json!({"pid-a": {"pid-a": 1, "pid-a-core": 2, "pid-b": 10}}),
            ),
        ),
        row(
            "filtered network map: unknown top-level field ignored",
            "filtered-network-map",
            Some(json!({"pids": ["pid-a-core"], "x-extension": {"a": 1}})),
            json!({"meta": {"vtag": vt}, "network-map": {"pid-a-core": {"ipv4": ["10.1.0.0/16"]}}}),
        ),
        // ---- endpoint properties -------------------------------------------------------------
        row(
            "endpoint pid: nested IPv4 prefixes",
            "endpoint-property",
            Some(json!({"properties": [pid], "endpoints": [
                "ipv4:10.1.2.3", "ipv4:10.2.0.1", "ipv4:192.0.2.200", "ipv4:192.0.2.5",
                "ipv4:203.0.113.70", "ipv4:8.8.8.8", "ipv4:198.51.100.200", "ipv4:198.51.100.7"]})),
            json!({"meta": {"dependent-vtags": [vt]}, "endpoint-properties": {
                "ipv4:10.1.2.3": {pid: "pid-a-core"},
                "ipv4:10.2.0.1": {pid: "pid-a"},
                "ipv4:192.0.2.200": {pid: "pid-b-host"},
                "ipv4:192.0.2.5": {pid: "pid-b"},
                "ipv4:203.0.113.70": {pid: "pid-c-edge"},
                "ipv4:8.8.8.8": {pid: "default"},
                "ipv4:198.51.100.200": {pid: "default"},
                "ipv4:198.51.100.7": {pid: "pid-b"}
            }}),
        ),
        row(
            "endpoint pid and region: IPv6, region missing outside 2001:db8::/32",
            "endpoint-property",
            Some(json!({"properties": [pid, "priv:region"], "endpoints": [
                "ipv6:2001:db8:c:1::5", "ipv6:2001:db8:c:2::5", "ipv6:2001:db8:a::1", "ipv6:2001:db9::1", "ipv6:::1"]})),
            json!({"meta": {"dependent-vtags": [vt]}, "endpoint-properties": {
                "ipv6:2001:db8:c:1::5": {pid: "pid-c-edge", "priv:region": "lab"},
                "ipv6:2001:db8:c:2::5": {pid: "pid-c", "priv:region": "lab"},
                "ipv6:2001:db8:a::1": {pid: "pid-a", "priv:region": "lab"},
                "ipv6:2001:db9::1": {pid: "default"},
                "ipv6:::1": {pid: "default"}
            }}),
        ),
        row(
            "endpoint region only: longest match, no dependent vtag, no value for 8.8.8.8",
            "endpoint-property",
            Some(json!({"properties": ["priv:region"], "endpoints": [
                "ipv4:10.1.2.3", "ipv4:10.2.0.1", "ipv4:192.0.2.200", "ipv4:8.8.8.8"]})),
            json!({"meta": {"dependent-vtags": []}, "endpoint-properties": {
                "ipv4:10.1.2.3": {"priv:region": "north-core"},
                "ipv4:10.2.0.1": {"priv:region": "north"},
                "ipv4:192.0.2.200": {"priv:region": "south"}
            }}),
        ),
        row(
            "endpoint pid: one address spelled twice, keyed by the first spelling",
            "endpoint-property",
            Some(
                json!({"properties": [pid], "endpoints": ["ipv6:2001:DB8:C:1:0:0:0:5", "ipv6:2001:db8:c:1::5"]}),
            ),
            json!({"meta": {"dependent-vtags": [vt]}, "endpoint-properties": {
                "ipv6:2001:DB8:C:1:0:0:0:5": {pid: "pid-c-edge"}
            }}),
        ),
        // ---- endpoint costs ------------------------------------------------------------------
        row(
            "endpoint cost numerical: one source, four destinations",
            "endpoint-cost",
            Some(json!({"cost-type": ct("routingcost", "numerical"), "endpoints": {
                "srcs": ["ipv4:10.2.0.1"],
                "dsts": ["ipv4:192.0.2.5", "ipv4:203.0.113.5", "ipv4:203.0.113.70", "ipv4:10.1.2.3"]}})),
            ecs_answer(
                "routingcost",
                "numerical",
                json!({"ipv4:10.2.0.1": {
                "ipv4:192.0.2.5": 10, "ipv4:203.0.113.5": 20, "ipv4:203.0.113.70": 20, "ipv4:10.1.2.3": 2}}),
            ),
        ),
        row(
            "endpoint cost ordinal: ties share a rank (2 10 20 20 → 1 2 3 3)",
            "endpoint-cost",
            Some(json!({"cost-type": ct("routingcost", "ordinal"), "endpoints": {
                "srcs": ["ipv4:10.2.0.1"],
                "dsts": ["ipv4:192.0.2.5", "ipv4:203.0.113.5", "ipv4:203.0.113.70", "ipv4:10.1.2.3"]}})),
            ecs_answer(
                "routingcost",
                "ordinal",
                json!({"ipv4:10.2.0.1": {
                "ipv4:192.0.2.5": 2, "ipv4:203.0.113.5": 3, "ipv4:203.0.113.70": 3, "ipv4:10.1.2.3": 1}}),
            ),
        ),
        row(
            "endpoint cost ordinal with `le 2`: constraint on ranks after ranking all pairs",
            "endpoint-cost",
            Some(json!({"cost-type": ct("routingcost", "ordinal"), "constraints": ["le 2"], "endpoints": {
                "srcs": ["ipv4:10.2.0.1"],
                "dsts": ["ipv4:192.0.2.5", "ipv4:203.0.113.5", "ipv4:203.0.113.70", "ipv4:10.1.2.3"]}})),
            ecs_answer(
                "routingcost",
                "ordinal",
                json!({"ipv4:10.2.0.1": {"ipv4:192.0.2.5": 2, "ipv4:10.1.2.3": 1}}),
            ),
        ),
        row(
            "endpoint cost numerical `ge 10`: missing PID pair omitted",
            "endpoint-cost",
            Some(
                json!({"cost-type": ct("routingcost", "numerical"), "constraints": ["ge 10"], "endpoints": {
                "srcs": ["ipv4:10.1.2.3", "ipv4:192.0.2.200"],
                "dsts": ["ipv4:203.0.113.70", "ipv4:198.51.100.7", "ipv4:8.8.8.8"]}}),
            ),
            ecs_answer(
                "routingcost",
                "numerical",
                json!({
                    "ipv4:10.1.2.3": {"ipv4:198.51.100.7": 10, "ipv4:8.8.8.8": 50},
                    "ipv4:192.0.2.200": {"ipv4:203.0.113.70": 18, "ipv4:8.8.8.8": 50}
                }),
            ),
        ),
        row(
            "endpoint cost ordinal: the pair with no cost is omitted and not ranked (1 10 → 1 2)",
            "endpoint-cost",
            Some(json!({"cost-type": ct("routingcost", "ordinal"), "constraints": [], "endpoints": {
                "srcs": ["ipv4:10.1.2.3"],
                "dsts": ["ipv4:203.0.113.70", "ipv4:198.51.100.7", "ipv4:10.1.2.4"]}})),
            ecs_answer(
                "routingcost",
                "ordinal",
                json!({"ipv4:10.1.2.3": {"ipv4:198.51.100.7": 2, "ipv4:10.1.2.4": 1}}),
            ),
        ),
        row(
            "endpoint cost numerical hopcount, IPv6",
            "endpoint-cost",
            Some(json!({"cost-type": ct("hopcount", "numerical"), "endpoints": {
                "srcs": ["ipv6:2001:db8:a::1"],
                "dsts": ["ipv6:2001:db8:b::1", "ipv6:2001:db8:c:1::1", "ipv6:2001:db8:c:ff::1", "ipv6:2001:db8:ffff::1"]}})),
            ecs_answer(
                "hopcount",
                "numerical",
                json!({"ipv6:2001:db8:a::1": {
                "ipv6:2001:db8:b::1": 5, "ipv6:2001:db8:c:1::1": 7, "ipv6:2001:db8:c:ff::1": 6, "ipv6:2001:db8:ffff::1": 8}}),
            ),
        ),
        row(
            "endpoint cost ordinal hopcount, IPv6 spellings kept, repeated address once",
            "endpoint-cost",
            Some(json!({"cost-type": ct("hopcount", "ordinal"), "endpoints": {
                "srcs": ["ipv6:2001:DB8:A:0:0:0:0:1"],
                "dsts": ["ipv6:2001:0db8:000b::1", "ipv6:2001:db8:b:0::1", "ipv6:2001:db8:c:1::1"]}})),
            ecs_answer(
                "hopcount",
                "ordinal",
                json!({"ipv6:2001:DB8:A:0:0:0:0:1": {
                "ipv6:2001:0db8:000b::1": 1, "ipv6:2001:db8:c:1::1": 2}}),
            ),
        ),
        row(
            "endpoint cost numerical: IPv4 source to IPv6 and IPv4 destinations",
            "endpoint-cost",
            Some(json!({"cost-type": ct("routingcost", "numerical"), "endpoints": {
                "srcs": ["ipv4:192.0.2.200"], "dsts": ["ipv6:2001:db8:a::7", "ipv4:10.1.0.1"]}})),
            ecs_answer(
                "routingcost",
                "numerical",
                json!({"ipv4:192.0.2.200": {"ipv6:2001:db8:a::7": 12, "ipv4:10.1.0.1": 10}}),
            ),
        ),
        row(
            "endpoint cost ordinal hopcount, 2×2, ties across rows (2 4 → 1 2)",
            "endpoint-cost",
            Some(json!({"cost-type": ct("hopcount", "ordinal"), "endpoints": {
                "srcs": ["ipv4:10.1.2.3", "ipv4:192.0.2.5"], "dsts": ["ipv4:192.0.2.129", "ipv4:10.9.9.9"]}})),
            ecs_answer(
                "hopcount",
                "ordinal",
                json!({
                    "ipv4:10.1.2.3": {"ipv4:192.0.2.129": 2, "ipv4:10.9.9.9": 1},
                    "ipv4:192.0.2.5": {"ipv4:192.0.2.129": 1, "ipv4:10.9.9.9": 2}
                }),
            ),
        ),
        row(
            "endpoint cost: absent srcs means the client (127.0.0.1, PID default)",
            "endpoint-cost",
            Some(
                json!({"cost-type": ct("routingcost", "numerical"), "endpoints": {"dsts": ["ipv4:10.0.0.1", "ipv4:8.8.4.4"]}}),
            ),
            ecs_answer(
                "routingcost",
                "numerical",
                json!({"ipv4:127.0.0.1": {"ipv4:10.0.0.1": 50, "ipv4:8.8.4.4": 0}}),
            ),
        ),
        row(
            "endpoint cost: empty dsts means the client",
            "endpoint-cost",
            Some(
                json!({"cost-type": ct("hopcount", "numerical"), "endpoints": {"srcs": ["ipv4:203.0.113.1"], "dsts": []}}),
            ),
            ecs_answer("hopcount", "numerical", json!({"ipv4:203.0.113.1": {"ipv4:127.0.0.1": 8}})),
        ),
    ]
}

/// Runs every row against one origin with one client; returns the failures, described.
async fn run_rows(client: &TestClient, origin: &Origin) -> (usize, Vec<String>) {
    let dir = Directory::fetch(client, &origin.directory_url()).await;

    // The vtag every dependent answer must carry comes from the network map fetched first.
    let net_uri = dir.uri(NET);
    let net = client.get(&net_uri, Some(&accept_for(NETWORK_MAP))).await;
    assert_eq!(net.status, 200, "GET network map: {}", net.describe());
    let vt = net.json()["meta"]["vtag"].clone();
    assert_eq!(vt["resource-id"], NET, "network map vtag: {vt}");
    let tag = vt["tag"].as_str().expect("vtag.tag is a string");
    assert!(
        (1..=64).contains(&tag.len()) && tag.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "vtag.tag {tag:?} breaks RFC 7285 §10.3"
    );

    let rows = rows(&vt);
    let mut failures = Vec::new();
    for r in &rows {
        let uri = dir.uri(r.resource);
        let media = dir.media_type(r.resource);
        let resp = match (&r.request, dir.accepts(r.resource)) {
            (None, None) => client.get(&uri, Some(&accept_for(&media))).await,
            (Some(body), Some(accepts)) => {
                client.post_json(&uri, &accepts, Some(&accept_for(&media)), body).await
            }
            (req, acc) => panic!("row `{}`: request {req:?} does not fit resource accepting {acc:?}", r.name),
        };
        if resp.status != 200 || resp.media_type().as_deref() != Some(media.as_str()) {
            failures.push(format!(
                "`{}`\n  request: {}\n  expected 200 {media}\n  actual: {}",
                r.name,
                r.request.as_ref().map(Value::to_string).unwrap_or_else(|| "GET".into()),
                resp.describe()
            ));
            continue;
        }
        let actual = match resp.try_json() {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("`{}`: body is not JSON ({e}): {}", r.name, resp.text_prefix(300)));
                continue;
            }
        };
        if normalize_answer(&actual) != normalize_answer(&r.expected) {
            failures.push(format!(
                "`{}`\n  request:  {}\n  expected: {}\n  actual:   {}",
                r.name,
                r.request.as_ref().map(Value::to_string).unwrap_or_else(|| "GET".into()),
                r.expected,
                actual
            ));
        }
    }
    (rows.len(), failures)
}

#[tokio::test]
async fn oracle_over_http1() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http1();
    let (n, failures) = run_rows(&client, &origin).await;
    assert!(n >= 20, "the oracle needs at least 20 rows, has {n}");
    assert!(
        failures.is_empty(),
        "{} of {n} oracle rows failed over HTTP/1.1:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[tokio::test]
async fn oracle_over_h2c() {
    let origin = Origin::with_data(&[]);
    let client = TestClient::http2();
    let (n, failures) = run_rows(&client, &origin).await;
    assert!(
        failures.is_empty(),
        "{} of {n} oracle rows failed over HTTP/2:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The oracle's own arithmetic, checked against the data files so a typo in a row shows up
/// here rather than as an origin bug: every numerical cost quoted in a full-map row is the
/// file's value.
#[test]
fn full_map_rows_quote_the_data_files() {
    let read = |f: &str| -> Value {
        let p = origin_data_dir().join(f);
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .expect("json")
    };
    let vt = vtag(NET, "t");
    let rows = rows(&vt);
    let find = |id: &str| {
        rows.iter().find(|r| r.resource == id && r.request.is_none()).expect("row").expected.clone()
    };
    assert_eq!(
        normalize_numbers(&find("costmap-routingcost-numerical")["cost-map"]),
        normalize_numbers(&read("costmap-routingcost.json")["cost-map"])
    );
    assert_eq!(
        normalize_numbers(&find("costmap-hopcount-numerical")["cost-map"]),
        normalize_numbers(&read("costmap-hopcount.json")["cost-map"])
    );
    assert_eq!(find(NET)["network-map"], read("network-map.json")["network-map"]);
}
