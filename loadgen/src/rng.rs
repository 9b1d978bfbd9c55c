//! A tiny seeded PRNG (SplitMix64) for payload bytes, sizes and Poisson gaps.
//!
//! Deliberately not cryptographic and not a `rand` dependency: the generator needs cheap,
//! reproducible bytes that an echo server cannot predict by accident, nothing more.

/// SplitMix64: one add, three xor-shift-multiplies per 8 bytes; passes BigCrush, seeds from any u64.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }

    /// Uniform in `lo..=hi`. The modulo bias is below 2^-40 for message sizes; irrelevant here.
    pub(crate) fn range(&mut self, lo: usize, hi: usize) -> usize {
        let span = (hi - lo) as u64 + 1;
        lo + (self.next_u64() % span) as usize
    }

    /// Uniform in (0, 1]: never 0, so `ln` below stays finite.
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// An exponential variate with the given mean (Poisson inter-arrival gap).
    pub(crate) fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn reproducible_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let (mut x, mut y) = ([0u8; 13], [0u8; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        for _ in 0..1000 {
            let v = a.range(3, 9);
            assert!((3..=9).contains(&v));
            let u = a.unit();
            assert!(u > 0.0 && u <= 1.0);
        }
        let mean: f64 = (0..20000).map(|_| a.exp(2.0)).sum::<f64>() / 20000.0;
        assert!((mean - 2.0).abs() < 0.1, "{mean}");
    }
}
