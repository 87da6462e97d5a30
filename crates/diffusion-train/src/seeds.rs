//! Every random stream of a run, derived from its one seed in one place.
//!
//! Each stream is a pure function of the run seed and a position (step, micro-batch, epoch,
//! batch), so a resumed run draws exactly what an uninterrupted one would. The constants
//! separate the streams; changing any of them changes every run's numbers.
//!
//! | stream | seed | used by |
//! | --- | --- | --- |
//! | weight init (backend RNG) | [`init_seed`] | `Trainer::run`, fresh runs |
//! | dropout of step `s` (backend RNG) | [`step_seed`]`(seed, s, 0)` | `trainer/step.rs` |
//! | timesteps, noise, label drops of micro-batch `m` of step `s` | [`micro_batch_rng`] | `trainer/step.rs` |
//! | the order of epoch `e` | [`epoch_order_seed`] | `data/order.rs` |
//! | the flips of a batch of epoch `e` (ChaCha stream = batch index) | [`batch_flip_seed`] | `data/order.rs` |
//! | the starting noise of every preview grid | [`preview_rng`] | `trainer/preview.rs` |
//! | the starting noise of every quality measurement | [`eval_seed`] | `trainer/mod.rs` (`eval_every`) |

use diffusion_core::NoiseRng;

/// SplitMix64 finaliser: turns nearby integers into unrelated 64-bit seeds.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Seed of the backend RNG before the weights of a fresh run are initialized.
pub fn init_seed(seed: u64) -> u64 {
    mix(seed)
}

/// Seed of one random stream of one training step; `stream` separates the uses (0: dropout on
/// the backend, 1 + micro-batch: timesteps, noise and label drops of that micro-batch).
pub fn step_seed(seed: u64, step: usize, stream: u64) -> u64 {
    mix(mix(seed ^ 0x005e_ed0f_d1ff) ^ mix(step as u64).rotate_left(17) ^ stream)
}

/// The host RNG of micro-batch `micro` of optimizer step `step`.
pub fn micro_batch_rng(seed: u64, step: usize, micro: usize) -> NoiseRng {
    NoiseRng::seed_from_u64(step_seed(seed, step, 1 + micro as u64))
}

/// Seed of the shuffle of epoch `epoch`.
pub fn epoch_order_seed(seed: u64, epoch: u64) -> u64 {
    mix(seed) ^ mix(epoch.wrapping_add(1) << 1)
}

/// Seed of the flips of the batches of epoch `epoch` (each batch its own ChaCha stream).
pub fn batch_flip_seed(seed: u64, epoch: u64) -> u64 {
    mix(seed ^ 0xa5a5_a5a5) ^ mix(epoch)
}

/// The starting noise of the preview grids: the same at every preview of a run, so that
/// successive grids show the same images getting better.
pub fn preview_rng(seed: u64) -> NoiseRng {
    NoiseRng::seed_from_u64(mix(seed ^ 0x9e5e_11e5))
}

/// The noise seed of the samples scored during training (`eval_every`): the same at every
/// measurement of a run, so that the curve follows the model, not the draw.
pub fn eval_seed(seed: u64) -> u64 {
    mix(seed ^ 0x0e7a_1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_keep_their_values() {
        // Computed independently (Python, the same formulas); a change here changes every
        // run's numbers, and resuming a run written by an older version would diverge.
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf, "SplitMix64's first output");
        assert_eq!(step_seed(7, 3, 1), 0x1287_bc22_bcb9_8bd1);
        assert_eq!(epoch_order_seed(7, 2), 0xdeaf_443d_f4dd_edd7);
        assert_eq!(batch_flip_seed(7, 2), 0x89e1_c841_f1ab_51cc);
        assert_eq!(
            preview_rng(7),
            NoiseRng::seed_from_u64(0x63ec_b9d4_04ae_5f28)
        );
        assert_eq!(eval_seed(7), 0x09ed_923f_da15_8b88);
    }

    #[test]
    fn seeds_differ_per_step_and_stream_and_repeat() {
        assert_eq!(step_seed(1, 5, 0), step_seed(1, 5, 0));
        assert_ne!(step_seed(1, 5, 0), step_seed(1, 6, 0));
        assert_ne!(step_seed(1, 5, 0), step_seed(1, 5, 1));
        assert_ne!(step_seed(1, 5, 0), step_seed(2, 5, 0));
        let a = micro_batch_rng(3, 7, 0).gaussian_vec(4);
        assert_eq!(a, micro_batch_rng(3, 7, 0).gaussian_vec(4));
        assert_ne!(a, micro_batch_rng(3, 7, 1).gaussian_vec(4));
    }
}
