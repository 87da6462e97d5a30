//! Fast paths for `float_random`.

use alloc::vec;
use alloc::vec::Vec;
use burn_std::rand::{RngExt, SeedableRng, StdRng};

/// Elements per independently seeded part of a Bernoulli sample: enough that seeding a
/// generator is negligible, few enough to spread a dropout mask over the threads.
const BERNOULLI_PART: usize = 1 << 16;

/// `len` ones and zeros, each one with probability `prob` (in `[0, 1]`).
///
/// Drawn in parts of [`BERNOULLI_PART`] elements, in parallel, each from its own ChaCha
/// generator keyed by `seed` and the part's index: the same values with any number of
/// threads, and independent streams for different seeds and parts. One `u32` per element,
/// compared with `prob · 2³²`. (The generic path goes through `rand`'s `Bernoulli` and a
/// per-element distribution dispatch, one `u64` at a time on one thread: it was most of the
/// cost of dropout in training.)
pub(crate) fn bernoulli_f32(len: usize, prob: f64, seed: u64) -> Vec<f32> {
    // P(u < threshold) = threshold / 2³² for a uniform u32 `u`; `prob = 1` gives 2³², always.
    let threshold = (prob * 4_294_967_296.0).round() as u64;
    let fill = |part: usize, out: &mut [f32]| {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&(part as u64).to_le_bytes());
        let mut rng = StdRng::from_seed(key);
        for v in out {
            *v = if u64::from(rng.random::<u32>()) < threshold {
                1.0
            } else {
                0.0
            };
        }
    };
    let mut out = vec![0.0f32; len];
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(BERNOULLI_PART)
            .enumerate()
            .for_each(|(part, chunk)| fill(part, chunk));
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(BERNOULLI_PART)
        .enumerate()
        .for_each(|(part, chunk)| fill(part, chunk));
    out
}
