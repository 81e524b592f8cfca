//! A tiny deterministic PRNG (SplitMix64). The simulator must produce the same fleet, routes,
//! values and planted violations for the same seed on every machine and every version of its
//! dependencies, so it does not use `rand` (whose algorithms may change between releases).

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// An independent stream for one entity (vehicle index, purpose), stable for a given seed.
    pub fn derive(seed: u64, key: u64, purpose: u64) -> Self {
        let mut r = Rng::new(seed ^ key.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ purpose.rotate_left(32));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Symmetric noise in [-amp, amp].
    pub fn noise(&mut self, amp: f64) -> f64 {
        self.range(-amp, amp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let a: Vec<u64> = (0..5).map(|_| Rng::derive(7, 3, 1).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::derive(7, 3, 1).next_u64(), Rng::derive(7, 4, 1).next_u64());
        let mut r = Rng::new(1);
        for _ in 0..1000 {
            let x = r.range(2.0, 3.0);
            assert!((2.0..3.0).contains(&x));
            assert!(r.below(10) < 10);
        }
    }
}
