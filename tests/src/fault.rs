//! Randomness for fault tests: when to kill, chosen by a small generator
//! whose seed is printed, so a failing run can be replayed exactly with
//! `SKIFF_FAULT_SEED`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// xorshift64*, seeded from the clock or `SKIFF_FAULT_SEED`; shareable
/// between the threads of one test.
pub struct Rng(AtomicU64);

impl Rng {
    /// A generator for the test named `what`, whose seed is printed.
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("SKIFF_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("{what} seed: SKIFF_FAULT_SEED={seed}");
        Rng(AtomicU64::new(seed))
    }

    /// A number in `0..n`.
    pub fn below(&self, n: u64) -> u64 {
        let mut x = self.0.load(Ordering::Relaxed);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }

    /// A duration shorter than `d` (at microsecond resolution).
    pub fn within(&self, d: Duration) -> Duration {
        Duration::from_micros(self.below(d.as_micros() as u64))
    }
}
