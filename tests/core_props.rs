//! Property tests of the pure ALTO core: canonical request forms (idempotent, insensitive to
//! order, duplicates and address spelling, stable under re-validation) and the local
//! computations (endpoint costs from a network map and a cost map agree with a naive
//! longest-prefix scan, ordinal answers are dense ranks, constraints keep exactly the pairs that
//! satisfy them, unfiltered cuts return the input).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use altoshield::alto::canon::{canonical_bytes, canonicalize};
use altoshield::alto::compute::{
    endpoint_cost, endpoints, filter_cost_map, filter_network_map, NetworkMapView,
};
use altoshield::alto::constraint::Constraint;
use altoshield::alto::types::{
    CostMapData, CostMapResponse, CostType, Extra, NetworkMapFilter, NetworkMapResponse, PidFilter,
    ResponseMeta, VersionTag,
};
use altoshield::alto::validate::{validate, PostKind, Request, ResourceCaps};
use altoshield::alto::TypedAddr;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Address generation and spelling
// ---------------------------------------------------------------------------------------------

/// IPv6 segments drawn so that zero runs (and so `::` compression choices) are common.
fn segment() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(0u16), 1 => Just(1u16), 1 => Just(0xdb8u16), 1 => Just(0x2001u16), 1 => Just(0xffffu16), 2 => any::<u16>()]
}

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        3 => any::<u32>().prop_map(Ipv4Addr::from),
        1 => (0u8..4, any::<u8>()).prop_map(|(c, d)| Ipv4Addr::new(192, 0, c, d)),
    ]
}

/// Any IP address, including IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`), which are IPv6
/// endpoints distinct from `ipv4:a.b.c.d`.
fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => ipv4().prop_map(IpAddr::V4),
        3 => prop::array::uniform8(segment()).prop_map(|s| IpAddr::V6(Ipv6Addr::from(s))),
        1 => ipv4().prop_map(|a| IpAddr::V6(a.to_ipv6_mapped())),
        1 => prop_oneof![Just(Ipv6Addr::LOCALHOST), Just(Ipv6Addr::UNSPECIFIED)].prop_map(IpAddr::V6),
    ]
}

/// One of several spellings of the typed address of `a`, all denoting the same endpoint.
fn spell(a: IpAddr, choice: u8) -> String {
    match a {
        IpAddr::V4(v4) => {
            let kind = ["ipv4", "IPv4", "IPV4"][choice as usize % 3];
            format!("{kind}:{v4}")
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let addr = match choice % 6 {
                0 => v6.to_string(),
                1 => v6.to_string().to_uppercase(),
                2 => seg.iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":"),
                3 => seg.iter().map(|s| format!("{s:04X}")).collect::<Vec<_>>().join(":"),
                // The low 32 bits as a dotted quad (`::ffff:1.2.3.4`, `2001:db8::0.0.0.1`).
                4 => {
                    let head: Vec<String> = seg[..6].iter().map(|s| format!("{s:x}")).collect();
                    format!("{}:{}", head.join(":"), Ipv4Addr::from(((seg[6] as u32) << 16) | seg[7] as u32))
                }
                // The first zero run compressed, even where RFC 5952 would compress another.
                _ => compress_first_zero_run(&seg),
            };
            let kind = if choice % 4 == 3 { "IPv6" } else { "ipv6" };
            format!("{kind}:{addr}")
        }
    }
}

fn compress_first_zero_run(seg: &[u16; 8]) -> String {
    let hex = |s: &[u16]| s.iter().map(|x| format!("{x:x}")).collect::<Vec<_>>().join(":");
    let Some(start) = seg.iter().position(|&s| s == 0) else { return hex(seg) };
    let end = seg[start..].iter().position(|&s| s != 0).map_or(8, |n| start + n);
    format!("{}::{}", hex(&seg[..start]), hex(&seg[end..]))
}

/// The distinct addresses of a list, canonically spelled and in canonical order.
fn canonical_list(addrs: &[IpAddr]) -> Vec<String> {
    addrs.iter().map(|a| TypedAddr(*a)).collect::<BTreeSet<_>>().iter().map(|a| a.to_string()).collect()
}

/// A list denoting the same set as `items`: every item once or more, each copy written by
/// `write(item, variant)`, and the whole shuffled.
fn same_set<T: Clone + std::fmt::Debug + 'static>(
    items: Vec<T>,
    write: fn(&T, u8) -> String,
) -> impl Strategy<Value = Vec<String>> {
    let n = items.len();
    prop::collection::vec((any::<u8>(), 1usize..=3), n).prop_flat_map(move |choices| {
        let list: Vec<String> = items
            .iter()
            .zip(choices)
            .flat_map(|(item, (variant, copies))| {
                (0..copies).map(move |j| write(item, variant.wrapping_add(j as u8)))
            })
            .collect();
        Just(list).prop_shuffle()
    })
}

fn spell_ip(a: &IpAddr, v: u8) -> String {
    spell(*a, v)
}

fn verbatim(s: &str, _: u8) -> String {
    s.to_string()
}

/// A constraint with varying whitespace, which is not significant.
fn spaced(c: &str, v: u8) -> String {
    let (op, n) = c.split_once(' ').unwrap();
    match v % 3 {
        0 => c.to_string(),
        1 => format!("{op}  {n}"),
        _ => format!(" {op}\t{n} "),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and their canonical forms
// ---------------------------------------------------------------------------------------------

fn caps() -> ResourceCaps {
    ResourceCaps {
        cost_types: vec![
            CostType::new("routingcost", "numerical"),
            CostType::new("routingcost", "ordinal"),
            CostType::new("hopcount", "numerical"),
        ],
        cost_constraints: true,
        prop_types: ["net.pid", "other-net.pid", "priv:asn", "priv:region"].map(String::from).to_vec(),
        max_cost_types: 0,
    }
}

fn check(kind: PostKind, body: &Value) -> Result<Request, TestCaseError> {
    validate(kind, &caps(), body.to_string().as_bytes())
        .map_err(|e| TestCaseError::fail(format!("refused {body}: {e}")))
}

/// The canonical form's invariants, for any valid request: idempotent, and the canonical bytes
/// re-validate to a request with the same canonical bytes.
fn canonical_invariants(kind: PostKind, req: &Request) -> Result<Vec<u8>, TestCaseError> {
    let once = canonicalize(req);
    prop_assert_eq!(&canonicalize(&once), &once);
    let bytes = canonical_bytes(req);
    prop_assert_eq!(&canonical_bytes(&once), &bytes);
    let again = validate(kind, &caps(), &bytes).map_err(|e| {
        TestCaseError::fail(format!("canonical bytes refused: {e}: {}", String::from_utf8_lossy(&bytes)))
    })?;
    prop_assert_eq!(canonical_bytes(&again), bytes.clone());
    Ok(bytes)
}

fn pid_names() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set("[A-Za-z0-9:@_.-]{1,8}", 0..8)
}

fn address_types() -> impl Strategy<Value = BTreeSet<String>> {
    prop::collection::btree_set(
        prop_oneof![Just("ipv4".to_string()), Just("ipv6".to_string()), "[a-z0-9]{1,6}"],
        0..4,
    )
}

fn constraint_set() -> impl Strategy<Value = BTreeSet<String>> {
    let op = prop_oneof![Just("gt"), Just("lt"), Just("ge"), Just("le"), Just("eq")];
    let num = prop_oneof![
        (0u32..100).prop_map(|n| n.to_string()),
        Just("2.5".to_string()),
        Just("-1e3".to_string())
    ];
    prop::collection::btree_set((op, num).prop_map(|(o, n)| format!("{o} {n}")), 0..4)
}

fn cost_type_json(metric: &str, mode: &str, description: bool) -> Value {
    if description {
        json!({"cost-mode": mode, "cost-metric": metric, "description": "ignored by servers"})
    } else {
        json!({"cost-metric": metric, "cost-mode": mode})
    }
}

fn decoded(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// `[s1, s2, …]` as JSON strings.
fn strs(list: &[String]) -> Value {
    Value::from(list.to_vec())
}

fn sorted(set: &BTreeSet<String>) -> Vec<String> {
    set.iter().cloned().collect()
}

/// An endpoint-cost request twice: in canonical spelling and order, and shuffled, duplicated
/// and re-spelled (with a description and spaced constraints).
fn ecs_pair() -> impl Strategy<Value = (Vec<IpAddr>, Vec<IpAddr>, BTreeSet<String>, Value, Value)> {
    (prop::collection::vec(ip(), 0..6), prop::collection::vec(ip(), 1..8), constraint_set(), any::<bool>())
        .prop_flat_map(|(srcs, dsts, cons, ordinal)| {
            (
                Just((srcs.clone(), dsts.clone(), cons.clone(), ordinal)),
                same_set(srcs, spell_ip),
                same_set(dsts, spell_ip),
                same_set(sorted(&cons), |s, v| spaced(s, v)),
            )
        })
        .prop_map(|((srcs, dsts, cons, ordinal), srcs2, dsts2, cons2)| {
            let mode = if ordinal { "ordinal" } else { "numerical" };
            let mut a = json!({
                "cost-type": cost_type_json("routingcost", mode, false),
                "endpoints": {"srcs": canonical_list(&srcs), "dsts": canonical_list(&dsts)}
            });
            let mut b = json!({
                "cost-type": cost_type_json("routingcost", mode, true),
                "endpoints": {"dsts": dsts2, "srcs": srcs2}
            });
            if !cons.is_empty() {
                a["constraints"] = strs(&sorted(&cons));
                b["constraints"] = strs(&cons2);
            }
            (srcs, dsts, cons, a, b)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn endpoint_cost_canonical_form_ignores_order_duplicates_and_spelling(
        (srcs, dsts, _cons, a, b) in ecs_pair()
    ) {
        let (ra, rb) = (check(PostKind::EndpointCost, &a)?, check(PostKind::EndpointCost, &b)?);
        let bytes = canonical_invariants(PostKind::EndpointCost, &ra)?;
        prop_assert_eq!(canonical_invariants(PostKind::EndpointCost, &rb)?, bytes.clone(),
            "\n a = {}\n b = {}", a, b);
        // Distinct endpoints stay distinct (`ipv6:::ffff:1.2.3.4` is not `ipv4:1.2.3.4`), in
        // canonical spelling; `description` is gone.
        let canon = decoded(&bytes);
        prop_assert_eq!(&canon["endpoints"]["srcs"], &json!(canonical_list(&srcs)));
        prop_assert_eq!(&canon["endpoints"]["dsts"], &json!(canonical_list(&dsts)));
        prop_assert!(canon["cost-type"].get("description").is_none());
    }

    #[test]
    fn endpoint_cost_canonical_form_tells_different_requests_apart(
        (srcs, dsts, _cons, a, _b) in ecs_pair(), extra in ip()
    ) {
        let base = canonical_bytes(&check(PostKind::EndpointCost, &a)?);
        // One more destination that is not already there changes the key.
        if !dsts.contains(&extra) {
            let mut more = a.clone();
            more["endpoints"]["dsts"].as_array_mut().unwrap().push(json!(spell(extra, 3)));
            prop_assert_ne!(canonical_bytes(&check(PostKind::EndpointCost, &more)?), base.clone());
        }
        // Swapping sources and destinations changes the key unless the sets are equal.
        let (s, d) = (canonical_list(&srcs), canonical_list(&dsts));
        if s != d && !s.is_empty() {
            let mut swapped = a.clone();
            swapped["endpoints"] = json!({"srcs": d, "dsts": s});
            prop_assert_ne!(canonical_bytes(&check(PostKind::EndpointCost, &swapped)?), base.clone());
        }
        // The cost mode is part of the key.
        let mut other_mode = a.clone();
        let flipped = if a["cost-type"]["cost-mode"] == "ordinal" { "numerical" } else { "ordinal" };
        other_mode["cost-type"]["cost-mode"] = json!(flipped);
        prop_assert_ne!(canonical_bytes(&check(PostKind::EndpointCost, &other_mode)?), base);
    }

    #[test]
    fn filtered_network_map_canonical_form_is_a_set_form(
        (pids, types, pids2, types2) in (pid_names(), address_types()).prop_flat_map(|(p, t)| {
            (Just(p.clone()), Just(t.clone()), same_set(sorted(&p), |s, v| verbatim(s, v)), same_set(sorted(&t), |s, v| verbatim(s, v)))
        }),
        ext in any::<u8>(),
    ) {
        let mut a = json!({"pids": sorted(&pids), "x-ext": [ext, 0]});
        if !types.is_empty() {
            a["address-types"] = json!(sorted(&types));
        }
        // Absent and empty `address-types` both mean all types.
        let b = json!({"address-types": types2, "pids": pids2, "x-ext": [ext, 0]});
        let (ra, rb) = (check(PostKind::FilteredNetworkMap, &a)?, check(PostKind::FilteredNetworkMap, &b)?);
        let bytes = canonical_invariants(PostKind::FilteredNetworkMap, &ra)?;
        prop_assert_eq!(canonical_invariants(PostKind::FilteredNetworkMap, &rb)?, bytes.clone());
        let canon = decoded(&bytes);
        prop_assert_eq!(&canon["pids"], &json!(sorted(&pids)));
        prop_assert_eq!(&canon["x-ext"], &json!([ext, 0]), "unknown members stay, in order");
        // PID names are case-sensitive: a re-cased name is another PID.
        if let Some(p) = pids.iter().find(|p| p.to_lowercase() != p.to_uppercase() && !pids.contains(&p.to_uppercase())) {
            let mut other = a.clone();
            other["pids"] = json!([p.to_uppercase()]);
            let mut one = a.clone();
            one["pids"] = json!([p]);
            prop_assert_ne!(
                canonical_bytes(&check(PostKind::FilteredNetworkMap, &other)?),
                canonical_bytes(&check(PostKind::FilteredNetworkMap, &one)?)
            );
        }
    }

    #[test]
    fn filtered_cost_map_canonical_form_is_a_set_form(
        (srcs, dsts, cons, srcs2, dsts2, cons2) in (pid_names(), pid_names(), constraint_set()).prop_flat_map(|(s, d, c)| {
            (Just(s.clone()), Just(d.clone()), Just(c.clone()),
             same_set(sorted(&s), |s, v| verbatim(s, v)), same_set(sorted(&d), |s, v| verbatim(s, v)), same_set(sorted(&c), |s, v| spaced(s, v)))
        }),
        omit_pids in any::<bool>(),
    ) {
        let mut a = json!({"cost-type": cost_type_json("hopcount", "numerical", false),
                           "pids": {"srcs": sorted(&srcs), "dsts": sorted(&dsts)}});
        let mut b = json!({"pids": {"dsts": dsts2, "srcs": srcs2},
                           "cost-type": cost_type_json("hopcount", "numerical", true)});
        // `pids` absent means all PIDs, the same as two empty lists.
        if omit_pids && srcs.is_empty() && dsts.is_empty() {
            b.as_object_mut().unwrap().remove("pids");
        }
        // An empty constraint list is the same as none.
        a["constraints"] = strs(&sorted(&cons));
        if !cons.is_empty() {
            b["constraints"] = strs(&cons2);
        }
        let (ra, rb) = (check(PostKind::FilteredCostMap, &a)?, check(PostKind::FilteredCostMap, &b)?);
        let bytes = canonical_invariants(PostKind::FilteredCostMap, &ra)?;
        prop_assert_eq!(canonical_invariants(PostKind::FilteredCostMap, &rb)?, bytes.clone(),
            "\n a = {}\n b = {}", a, b);
        let canon = decoded(&bytes);
        prop_assert_eq!(&canon["pids"], &json!({"srcs": sorted(&srcs), "dsts": sorted(&dsts)}));
        if srcs != dsts {
            let mut swapped = a.clone();
            swapped["pids"] = json!({"srcs": sorted(&dsts), "dsts": sorted(&srcs)});
            prop_assert_ne!(canonical_bytes(&check(PostKind::FilteredCostMap, &swapped)?), bytes.clone());
        }
        let mut tightened = a.clone();
        tightened["constraints"] = strs(&sorted(&cons).into_iter().chain(["le 1000".to_string()]).collect::<Vec<_>>());
        if !cons.contains("le 1000") {
            prop_assert_ne!(canonical_bytes(&check(PostKind::FilteredCostMap, &tightened)?), bytes);
        }
    }

    #[test]
    fn endpoint_property_canonical_form_ignores_order_duplicates_and_spelling(
        (props, addrs, props2, addrs2) in (
            prop::collection::btree_set(prop::sample::select(caps().prop_types), 1..=4),
            prop::collection::vec(ip(), 1..8),
        ).prop_flat_map(|(p, e)| {
            (Just(p.clone()), Just(e.clone()), same_set(sorted(&p), |s, v| verbatim(s, v)), same_set(e, spell_ip))
        })
    ) {
        let a = json!({"properties": sorted(&props), "endpoints": canonical_list(&addrs)});
        let b = json!({"endpoints": addrs2, "properties": props2});
        let (ra, rb) = (check(PostKind::EndpointProp, &a)?, check(PostKind::EndpointProp, &b)?);
        let bytes = canonical_invariants(PostKind::EndpointProp, &ra)?;
        prop_assert_eq!(canonical_invariants(PostKind::EndpointProp, &rb)?, bytes.clone(),
            "\n a = {}\n b = {}", a, b);
        prop_assert_eq!(decoded(&bytes), a);
    }
}

#[test]
fn spellings_used_by_the_generators_are_the_ones_intended() {
    // The property tests above lean on `spell`; pin what it writes for a few addresses.
    let a: IpAddr = "2001:db8::1".parse().unwrap();
    let all: Vec<String> = (0..6).map(|c| spell(a, c)).collect();
    assert_eq!(
        all,
        [
            "ipv6:2001:db8::1",
            "ipv6:2001:DB8::1",
            "ipv6:2001:db8:0:0:0:0:0:1",
            "IPv6:2001:0DB8:0000:0000:0000:0000:0000:0001",
            "ipv6:2001:db8:0:0:0:0:0.0.0.1",
            "ipv6:2001:db8::1",
        ]
    );
    let mapped = IpAddr::V6(Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped());
    assert_eq!(spell(mapped, 0), "ipv6:::ffff:1.2.3.4");
    assert_eq!(spell(mapped, 2), "ipv6:0:0:0:0:0:ffff:102:304");
    assert_eq!(compress_first_zero_run(&[1, 0, 2, 0, 0, 0, 3, 0]), "1::2:0:0:0:3:0");
    // Every spelling parses to the address it was made from.
    for addr in [a, mapped, "::".parse().unwrap(), "1:0:0:2::".parse().unwrap(), "192.0.2.1".parse().unwrap()]
    {
        for c in 0..12 {
            assert_eq!(TypedAddr::parse(&spell(addr, c)), Ok(TypedAddr(addr)), "{}", spell(addr, c));
        }
    }
    // An IPv4 address and its IPv4-mapped IPv6 form are two endpoints.
    assert_eq!(
        canonical_list(&["1.2.3.4".parse().unwrap(), mapped]),
        ["ipv4:1.2.3.4", "ipv6:::ffff:1.2.3.4"]
    );
}

// ---------------------------------------------------------------------------------------------
// Local computations against a naive model
// ---------------------------------------------------------------------------------------------

/// A prefix as the test models it: network bits as u128 (IPv4 in the low 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Prefix {
    v6: bool,
    bits: u128,
    len: u8,
}

impl Prefix {
    fn width(&self) -> u8 {
        if self.v6 {
            128
        } else {
            32
        }
    }

    fn new(v6: bool, bits: u128, len: u8) -> Prefix {
        let mut p = Prefix { v6, bits: 0, len };
        p.bits = bits & p.mask();
        p
    }

    fn mask(&self) -> u128 {
        let width = self.width();
        let all = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
        if self.len == 0 {
            0
        } else {
            all & !((1u128 << (width - self.len)) - 1)
        }
    }

    fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(v4) if !self.v6 => u32::from(v4) as u128 & self.mask() == self.bits,
            IpAddr::V6(v6) if self.v6 => u128::from(v6) & self.mask() == self.bits,
            _ => false,
        }
    }

    fn text(&self) -> String {
        if self.v6 {
            format!("{}/{}", Ipv6Addr::from(self.bits), self.len)
        } else {
            format!("{}/{}", Ipv4Addr::from(self.bits as u32), self.len)
        }
    }
}

/// A network map of named PIDs plus `default` (0.0.0.0/0 and ::/0), with the list of
/// (prefix, PID) pairs the naive lookup scans.
#[derive(Debug, Clone)]
struct Model {
    map: NetworkMapResponse,
    prefixes: Vec<(Prefix, String)>,
}

impl Model {
    /// Longest-prefix match by a linear scan.
    fn pid_of(&self, a: IpAddr) -> Option<&str> {
        let mut best: Option<(u8, &str)> = None;
        for (p, pid) in &self.prefixes {
            if p.contains(a) && best.is_none_or(|(len, _)| p.len > len) {
                best = Some((p.len, pid));
            }
        }
        best.map(|(_, pid)| pid)
    }

    fn pids(&self) -> Vec<String> {
        self.map.network_map.keys().cloned().collect()
    }
}

/// Low address bits with all-zero and all-one runs common, so that prefixes often start or end
/// where another one does (host prefixes at a parent's first or last address).
fn low_bits() -> impl Strategy<Value = u16> {
    prop_oneof![3 => any::<u16>(), 1 => Just(0u16), 1 => Just(0xffffu16), 1 => Just(0x00ffu16), 1 => Just(0xff00u16)]
}

/// Prefixes from a small region of each family, so that nesting and hits are common.
fn prefix() -> impl Strategy<Value = Prefix> {
    let v4_len = prop_oneof![3 => 8u8..=32, 1 => Just(32u8)];
    let v6_len = prop_oneof![3 => 32u8..=128, 1 => 112u8..=128];
    // Prefixes at the very bottom and top of each address space (no successor interval).
    let edge = prop::sample::select(vec![
        Prefix::new(false, 0, 8),
        Prefix::new(false, 0, 32),
        Prefix::new(false, u32::MAX as u128, 24),
        Prefix::new(false, u32::MAX as u128, 32),
        Prefix::new(true, 0, 96),
        Prefix::new(true, u128::MAX, 16),
        Prefix::new(true, u128::MAX, 128),
    ]);
    prop_oneof![
        1 => edge,
        6 => (0u8..4, low_bits(), v4_len)
            .prop_map(|(b, low, len)| Prefix::new(false, u128::from(0x0a00_0000u32 | (b as u32) << 16 | low as u32), len)),
        6 => (0u16..4, low_bits(), v6_len)
            .prop_map(|(b, low, len)| Prefix::new(true, (0x2001_0db8u128 << 96) | (b as u128) << 80 | low as u128, len)),
    ]
}

/// Addresses in the same regions as [`prefix`], plus any address at all.
fn endpoint_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        3 => (0u8..4, any::<u16>()).prop_map(|(b, low)| IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 | (b as u32) << 16 | low as u32))),
        3 => (0u16..4, any::<u16>()).prop_map(|(b, low)| IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (b as u128) << 80 | low as u128))),
        1 => ip(),
    ]
}

fn model() -> impl Strategy<Value = Model> {
    model_of(0..24)
}

/// A network map from up to `size` random prefixes, spread over five PIDs.
fn model_of(size: std::ops::Range<usize>) -> impl Strategy<Value = Model> {
    prop::collection::vec((prefix(), 0usize..5), size).prop_map(|entries| {
        let mut prefixes = vec![
            (Prefix::new(false, 0, 0), "default".to_string()),
            (Prefix::new(true, 0, 0), "default".to_string()),
        ];
        let mut seen: BTreeSet<Prefix> = prefixes.iter().map(|(p, _)| *p).collect();
        for (p, pid) in entries {
            // A map must not put one prefix in two PIDs.
            if seen.insert(p) {
                prefixes.push((p, format!("PID{pid}")));
            }
        }
        let mut network_map: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        for (p, pid) in &prefixes {
            let family = if p.v6 { "ipv6" } else { "ipv4" };
            network_map.entry(pid.clone()).or_default().entry(family.to_string()).or_default().push(p.text());
        }
        let meta = ResponseMeta { vtag: Some(VersionTag::new("net", "v1")), ..Default::default() };
        Model { map: NetworkMapResponse { meta, network_map, extra: Extra::new() }, prefixes }
    })
}

/// Cost values with frequent ties, integers and fractions.
fn cost_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u64..8).prop_map(Value::from),
        Just(json!(2.5)),
        Just(json!(0.125)),
        (0u64..1000).prop_map(Value::from)
    ]
}

/// A numerical cost map over the model's PIDs, some pairs missing.
fn cost_map_for(m: &Model) -> impl Strategy<Value = CostMapData> {
    let pids = m.pids();
    let n = pids.len();
    prop::collection::vec(prop::option::weighted(0.75, cost_value()), n * n).prop_map(move |cells| {
        let mut out = CostMapData::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if let Some(v) = cell {
                out.entry(pids[i / n].clone()).or_default().insert(pids[i % n].clone(), v);
            }
        }
        out
    })
}

/// The addresses where a longest match can change: the first and last address of every prefix
/// of the map, and their neighbours outside it.
fn boundaries(m: &Model) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (p, _) in &m.prefixes {
        let max = if p.v6 { u128::MAX } else { u32::MAX as u128 };
        let last = p.bits | (!p.mask() & max);
        let points =
            [Some(p.bits), Some(last), p.bits.checked_sub(1), last.checked_add(1).filter(|&x| x <= max)];
        for x in points.into_iter().flatten() {
            out.push(if p.v6 { IpAddr::V6(Ipv6Addr::from(x)) } else { IpAddr::V4(Ipv4Addr::from(x as u32)) });
        }
    }
    out
}

/// Addresses for lookups in `m`: prefix boundaries, addresses near its prefixes, any address.
fn lookup_ip(m: &Model) -> impl Strategy<Value = IpAddr> {
    prop_oneof![1 => prop::sample::select(boundaries(m)), 1 => endpoint_ip()]
}

/// Endpoints as a client would write them: some repeated, some re-spelled.
fn endpoint_list(m: &Model) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec((lookup_ip(m), any::<u8>()), 1..7).prop_flat_map(|picks| {
        let n = picks.len();
        prop::collection::vec((0..n, any::<u8>()), 0..3).prop_map(move |dups| {
            let all = picks.iter().copied().chain(dups.iter().map(|&(i, c)| (picks[i].0, c)));
            all.map(|(a, c)| spell(a, c)).collect()
        })
    })
}

/// What the cost map gives each (src, dst) pair, keyed by the first spelling of each endpoint,
/// by the naive model.
fn expected_costs(
    m: &Model,
    costs: &CostMapData,
    srcs: &[String],
    dsts: &[String],
) -> Vec<(String, String, Value)> {
    let firsts = |list: &[String]| {
        let mut seen = BTreeSet::new();
        list.iter()
            .filter(|s| seen.insert(TypedAddr::parse(s).unwrap()))
            .map(|s| (TypedAddr::parse(s).unwrap().0, s.clone()))
            .collect::<Vec<_>>()
    };
    let mut out = Vec::new();
    for (sa, ss) in firsts(srcs) {
        for (da, ds) in firsts(dsts) {
            let (Some(ps), Some(pd)) = (m.pid_of(sa), m.pid_of(da)) else { continue };
            if let Some(v) = costs.get(ps).and_then(|row| row.get(pd)) {
                out.push((ss.clone(), ds.clone(), v.clone()));
            }
        }
    }
    out
}

fn as_map(pairs: &[(String, String, Value)]) -> CostMapData {
    let mut out = CostMapData::new();
    for (s, d, v) in pairs {
        out.entry(s.clone()).or_default().insert(d.clone(), v.clone());
    }
    out
}

/// Dense ranks from 1 of the values, written independently of the core's `Ranks`.
fn dense_ranks(pairs: &[(String, String, Value)]) -> Vec<(String, String, Value)> {
    let mut distinct: Vec<f64> = pairs.iter().map(|(_, _, v)| v.as_f64().unwrap()).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    pairs
        .iter()
        .map(|(s, d, v)| {
            let x = v.as_f64().unwrap();
            let rank = distinct.iter().position(|&y| y == x).unwrap() + 1;
            (s.clone(), d.clone(), json!(rank))
        })
        .collect()
}

fn scenario() -> impl Strategy<Value = (Model, CostMapData, Vec<String>, Vec<String>)> {
    model().prop_flat_map(|m| {
        let costs = cost_map_for(&m);
        let (srcs, dsts) = (endpoint_list(&m), endpoint_list(&m));
        (Just(m), costs, srcs, dsts)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn numerical_endpoint_costs_are_the_cost_map_entries_of_the_lpm_pids(
        (m, costs, srcs, dsts) in scenario()
    ) {
        let view = NetworkMapView::new(m.map.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for s in srcs.iter().chain(&dsts) {
            let a = TypedAddr::parse(s).unwrap().0;
            prop_assert_eq!(view.pid_of(a), m.pid_of(a), "LPM of {}", s);
        }
        let numerical = CostType::new("routingcost", "numerical");
        let got = endpoint_cost(&view, &costs, &endpoints(&srcs), &endpoints(&dsts), &numerical, &[]);
        prop_assert_eq!(got.endpoint_cost_map, as_map(&expected_costs(&m, &costs, &srcs, &dsts)));
        prop_assert_eq!(got.meta.cost_type, Some(numerical));
    }

    #[test]
    fn ordinal_endpoint_costs_are_dense_ranks_of_the_numerical_ones(
        (m, costs, srcs, dsts) in scenario()
    ) {
        let view = NetworkMapView::new(m.map.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ordinal = CostType::new("routingcost", "ordinal");
        let got = endpoint_cost(&view, &costs, &endpoints(&srcs), &endpoints(&dsts), &ordinal, &[]);
        let expected = dense_ranks(&expected_costs(&m, &costs, &srcs, &dsts));
        prop_assert_eq!(&got.endpoint_cost_map, &as_map(&expected));
        // Ranks start at 1 and leave no gaps.
        let ranks: BTreeSet<u64> = got.endpoint_cost_map.values().flat_map(|r| r.values()).map(|v| v.as_u64().unwrap()).collect();
        prop_assert_eq!(ranks.into_iter().collect::<Vec<_>>(), (1..=expected.iter().map(|p| p.2.as_u64().unwrap()).max().unwrap_or(0)).collect::<Vec<_>>());
    }

    #[test]
    fn numerical_constraints_keep_exactly_the_pairs_that_satisfy_them(
        (m, costs, srcs, dsts) in scenario(),
        bound in cost_value(),
        lower in prop::option::of(0u64..5),
    ) {
        let view = NetworkMapView::new(m.map.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let x = bound.as_f64().unwrap();
        let mut constraints = vec![Constraint::parse(&format!("le {bound}")).unwrap()];
        if let Some(lo) = lower {
            constraints.push(Constraint::parse(&format!("gt {lo}")).unwrap());
        }
        let numerical = CostType::new("routingcost", "numerical");
        let got = endpoint_cost(&view, &costs, &endpoints(&srcs), &endpoints(&dsts), &numerical, &constraints);
        let expected: Vec<_> = expected_costs(&m, &costs, &srcs, &dsts)
            .into_iter()
            .filter(|(_, _, v)| {
                let c = v.as_f64().unwrap();
                c <= x && lower.is_none_or(|lo| c > lo as f64)
            })
            .collect();
        prop_assert_eq!(got.endpoint_cost_map, as_map(&expected));
    }

    #[test]
    fn unfiltered_cuts_return_the_maps_unchanged(
        (m, costs) in model().prop_flat_map(|m| { let c = cost_map_for(&m); (Just(m), c) }),
        empty_types in any::<bool>(),
    ) {
        let numerical = CostType::new("routingcost", "numerical");
        let full = CostMapResponse {
            meta: ResponseMeta {
                dependent_vtags: Some(vec![VersionTag::new("net", "v1")]),
                cost_type: Some(numerical.clone()),
                ..Default::default()
            },
            cost_map: costs,
            extra: Extra::new(),
        };
        let all = PidFilter::default();
        for pids in [None, Some(&all)] {
            let got = filter_cost_map(&full, &numerical, &[], pids);
            prop_assert_eq!(&got, &full);
        }
        let req = NetworkMapFilter {
            pids: vec![],
            address_types: if empty_types { Some(vec![]) } else { None },
            extra: Extra::new(),
        };
        let got = filter_network_map(&m.map, &req);
        prop_assert_eq!(&got.meta.vtag, &m.map.meta.vtag);
        prop_assert_eq!(&got, &m.map);
    }
}

proptest! {
    // Maps of a few hundred prefixes: enough rows for the index's two-level search.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lpm_agrees_with_a_linear_scan_on_large_nested_maps(
        (m, addrs) in model_of(100..400).prop_flat_map(|m| {
            let addrs = prop::collection::vec(lookup_ip(&m), 64);
            (Just(m), addrs)
        })
    ) {
        let view = NetworkMapView::new(m.map.clone()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(view.prefix_count(), m.prefixes.len());
        for a in addrs {
            prop_assert_eq!(view.pid_of(a), m.pid_of(a), "LPM of {}", a);
        }
    }
}
