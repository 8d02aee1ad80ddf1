//! Benchmarks of the pure core on the hot path of an endpoint-cost request: canonicalising a
//! 200-endpoint request (the cache key), and computing a 1×200 ordinal answer locally from a
//! network map and a cost map (longest-prefix match, lookup, dense ranking).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

use altoshield::alto::canon::canonical_bytes;
use altoshield::alto::compute::{endpoint_cost, endpoints};
use altoshield::alto::types::CostType;
use altoshield::alto::validate::{validate, PostKind, ResourceCaps};
use altoshield::origin::generate::generate;

fn caps() -> ResourceCaps {
    ResourceCaps {
        cost_types: vec![CostType::new("routingcost", "numerical"), CostType::new("routingcost", "ordinal")],
        cost_constraints: true,
        ..Default::default()
    }
}

/// 200 destination addresses spread over the generated map's IPv4 prefixes, in shuffled order,
/// some IPv6 and written in a non-canonical spelling.
fn destinations(map: &altoshield::origin::data::Dataset) -> Vec<String> {
    let mut out = Vec::new();
    for group in map.network_map.values() {
        for p in group.get("ipv4").into_iter().flatten() {
            let net: ipnet::Ipv4Net = p.parse().expect("generated prefixes parse");
            if net.prefix_len() > 0 {
                out.push(format!("ipv4:{}", net.hosts().next().unwrap_or(net.network())));
            }
        }
    }
    out.truncate(180);
    for i in 0..20u16 {
        out.push(format!("ipv6:FD00:0:{:X}:0:0:0:0:1", i + 1));
    }
    out.reverse();
    out
}

fn bench(c: &mut Criterion) {
    let data = generate(200, 20, 1);
    let version = data.version(0).expect("generated data is valid");
    let dsts = destinations(&data);
    let body = json!({
        "cost-type": {"cost-metric": "routingcost", "cost-mode": "ordinal"},
        "endpoints": {"srcs": ["ipv4:10.0.0.1"], "dsts": dsts},
    })
    .to_string();
    let request = validate(PostKind::EndpointCost, &caps(), body.as_bytes()).expect("valid request");

    let mut g = c.benchmark_group("endpoint_cost_200");
    g.throughput(Throughput::Elements(1));
    g.bench_function("validate", |b| {
        b.iter(|| validate(PostKind::EndpointCost, &caps(), black_box(body.as_bytes())))
    });
    g.bench_function("canonicalize", |b| b.iter(|| canonical_bytes(black_box(&request))));

    let srcs = endpoints(&["ipv4:10.0.0.1".to_string()]);
    let dst_eps = endpoints(&dsts);
    let costs = &version.cost_maps["routingcost"].numerical.cost_map;
    let ordinal = CostType::new("routingcost", "ordinal");
    g.bench_function("local_1x200_ordinal", |b| {
        b.iter(|| {
            endpoint_cost(&version.network_map, costs, black_box(&srcs), black_box(&dst_eps), &ordinal, &[])
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
