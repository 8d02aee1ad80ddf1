//! Longest-prefix-match benchmarks: build time and lookup throughput of
//! `PrefixIndex` for a large nested IPv4 map (500,000 prefixes, /16 to /28)
//! and an IPv6 map (100,000 prefixes, /32 to /64).
//!
//! The inputs are generated deterministically with a small splitmix64 PRNG so
//! runs are comparable. Lookup benches report elements (lookups) per second:
//! `lookup` runs the same 1,024 addresses (inside random prefixes) again and
//! again, so the parts of the table they touch stay in cache;
//! `lookup_1m_spread` walks a million such addresses once per iteration, so
//! most lookups miss the caches, which is closer to a busy server's pattern.

use std::collections::HashSet;
use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use altoshield::alto::lpm::PrefixIndex;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

const V4_PREFIXES: usize = 500_000;
const V6_PREFIXES: usize = 100_000;
const BATCH: usize = 1_024;
/// A batch far larger than the caches, to show lookups that miss them.
const SPREAD_BATCH: usize = 1 << 20;

/// splitmix64: tiny, deterministic, good enough to spread test data.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn next_u128(&mut self) -> u128 {
        (u128::from(self.next()) << 64) | u128::from(self.next())
    }
}

/// Host mask of a prefix of `len` bits in a `bits`-bit family.
fn host_mask(bits: u32, len: u32) -> u128 {
    let full = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    full.checked_shr(len).unwrap_or(0)
}

/// `count` distinct nested prefixes of a `bits`-bit family as
/// `(network, len)`. A tenth are parents with lengths in `parent_lens`; the
/// rest are children placed inside a random earlier prefix (parent or child,
/// which nests several levels deep), one to four bits longer, capped at
/// `max_len`.
fn gen_prefixes(
    rng: &mut SplitMix64,
    bits: u32,
    count: usize,
    parent_lens: (u32, u32),
    max_len: u32,
) -> Vec<(u128, u32)> {
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    let parents = count / 10;
    while out.len() < parents {
        let len = parent_lens.0 + rng.below(u64::from(parent_lens.1 - parent_lens.0 + 1)) as u32;
        let addr = rng.next_u128() & !host_mask(bits, len) & host_mask(bits, 0);
        if seen.insert((addr, len)) {
            out.push((addr, len));
        }
    }
    while out.len() < count {
        let (paddr, plen) = out[rng.below(out.len() as u64) as usize];
        if plen >= max_len {
            continue;
        }
        let len = (plen + 1 + rng.below(4) as u32).min(max_len);
        let addr = (paddr | (rng.next_u128() & host_mask(bits, plen))) & !host_mask(bits, len);
        if seen.insert((addr, len)) {
            out.push((addr, len));
        }
    }
    out
}

/// Addresses inside randomly chosen prefixes (host bits random).
fn gen_probes(rng: &mut SplitMix64, bits: u32, prefixes: &[(u128, u32)], n: usize) -> Vec<u128> {
    (0..n)
        .map(|_| {
            let (addr, len) = prefixes[rng.below(prefixes.len() as u64) as usize];
            addr | (rng.next_u128() & host_mask(bits, len))
        })
        .collect()
}

fn v4_entries(prefixes: &[(u128, u32)]) -> Vec<(IpNet, u32)> {
    prefixes
        .iter()
        .enumerate()
        .map(|(i, &(addr, len))| {
            let addr = Ipv4Addr::from(addr as u32);
            let net = Ipv4Net::new(addr, len as u8).expect("generated length is valid");
            (IpNet::V4(net), (i % 4_096) as u32)
        })
        .collect()
}

fn v6_entries(prefixes: &[(u128, u32)]) -> Vec<(IpNet, u32)> {
    prefixes
        .iter()
        .enumerate()
        .map(|(i, &(addr, len))| {
            let net = Ipv6Net::new(Ipv6Addr::from(addr), len as u8).expect("generated length is valid");
            (IpNet::V6(net), (i % 4_096) as u32)
        })
        .collect()
}

fn bench_v4(c: &mut Criterion) {
    let mut rng = SplitMix64(0x5eed_0004);
    let prefixes = gen_prefixes(&mut rng, 32, V4_PREFIXES, (16, 20), 28);
    let entries = v4_entries(&prefixes);
    let probes: Vec<Ipv4Addr> =
        gen_probes(&mut rng, 32, &prefixes, BATCH).into_iter().map(|a| Ipv4Addr::from(a as u32)).collect();
    let spread: Vec<Ipv4Addr> = gen_probes(&mut rng, 32, &prefixes, SPREAD_BATCH)
        .into_iter()
        .map(|a| Ipv4Addr::from(a as u32))
        .collect();

    let t = Instant::now();
    let index = PrefixIndex::build(entries.clone()).expect("generated prefixes are distinct");
    eprintln!("lpm: built IPv4 index of {} prefixes in {:?}", index.len(), t.elapsed());
    // Every probe lies inside some prefix, so a miss means a broken index.
    assert!(probes.iter().all(|&a| index.lookup_v4(a).is_some()));

    let mut g = c.benchmark_group("lpm_v4_500k");
    g.sample_size(10);
    g.bench_function("build", |b| {
        b.iter_batched(
            || entries.clone(),
            |e| PrefixIndex::build(e).expect("distinct"),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("lpm_v4_500k");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &a in &probes {
                acc = acc.wrapping_add(index.lookup_v4(black_box(a)).unwrap_or(0));
            }
            acc
        })
    });
    g.finish();

    let mut g = c.benchmark_group("lpm_v4_500k");
    g.sample_size(20);
    g.throughput(Throughput::Elements(SPREAD_BATCH as u64));
    g.bench_function("lookup_1m_spread", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &a in &spread {
                acc = acc.wrapping_add(index.lookup_v4(black_box(a)).unwrap_or(0));
            }
            acc
        })
    });
    g.finish();
}

fn bench_v6(c: &mut Criterion) {
    let mut rng = SplitMix64(0x5eed_0006);
    let prefixes = gen_prefixes(&mut rng, 128, V6_PREFIXES, (32, 40), 64);
    let entries = v6_entries(&prefixes);
    let probes: Vec<Ipv6Addr> =
        gen_probes(&mut rng, 128, &prefixes, BATCH).into_iter().map(Ipv6Addr::from).collect();

    let t = Instant::now();
    let index = PrefixIndex::build(entries).expect("generated prefixes are distinct");
    eprintln!("lpm: built IPv6 index of {} prefixes in {:?}", index.len(), t.elapsed());
    assert!(probes.iter().all(|&a| index.lookup_v6(a).is_some()));

    let mut g = c.benchmark_group("lpm_v6_100k");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("lookup", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for &a in &probes {
                acc = acc.wrapping_add(index.lookup_v6(black_box(a)).unwrap_or(0));
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(benches, bench_v4, bench_v6);
criterion_main!(benches);
