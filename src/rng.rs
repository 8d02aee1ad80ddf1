//! A tiny deterministic PRNG (splitmix64) for data generation and fault injection.
//!
//! Written here rather than taken from a crate because `--generate --seed S` promises the same
//! bytes for the same flags forever, which a dependency's algorithm changes could break.

/// splitmix64 (Steele, Lea, Flood 2014): fast, statistically fine for test data, stable.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0); the modulo bias is irrelevant at these sizes.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A stable 64-bit mix of a value, for deterministic per-item decisions.
pub fn mix(x: u64) -> u64 {
    SplitMix64::new(x).next_u64()
}
