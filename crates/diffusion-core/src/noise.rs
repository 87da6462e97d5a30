//! Seeded randomness generated on the host and uploaded, so that one seed gives the same
//! noise, timesteps and samples on every backend (CPU or GPU).

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Where a stochastic sampler step draws its Gaussian noise from.
///
/// [`NoiseRng`] is the usual source; tests replay recorded noise through this trait.
pub trait NoiseSource<B: Backend> {
    /// A tensor of independent standard normal values.
    ///
    /// # Shapes
    /// - returns: `shape`, e.g. `[batch, channels, height, width]`
    fn gaussian(&mut self, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4>;
}

/// A seeded ChaCha8 generator for noise, timesteps and coin flips, all drawn on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseRng {
    rng: ChaCha8Rng,
}

/// The exact position of a [`NoiseRng`], for checkpoints: resuming from it continues the very
/// same stream of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseRngState {
    /// The 256-bit ChaCha key.
    pub seed: [u8; 32],
    /// The ChaCha stream id.
    pub stream: u64,
    /// Position in the stream, in 32-bit words.
    pub word_pos: u128,
}

impl NoiseRng {
    /// A generator whose whole output is determined by `seed`.
    pub fn seed_from_u64(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Where the generator stands now.
    pub fn state(&self) -> NoiseRngState {
        NoiseRngState {
            seed: self.rng.get_seed(),
            stream: self.rng.get_stream(),
            word_pos: self.rng.get_word_pos(),
        }
    }

    /// A generator continuing exactly where `state` was taken.
    pub fn from_state(state: NoiseRngState) -> Self {
        let mut rng = ChaCha8Rng::from_seed(state.seed);
        rng.set_stream(state.stream);
        rng.set_word_pos(state.word_pos);
        Self { rng }
    }

    /// `len` independent standard normal values.
    pub fn gaussian_vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.rng.sample(StandardNormal)).collect()
    }

    /// A tensor of independent standard normal values, drawn here and uploaded to `device`.
    ///
    /// # Shapes
    /// - returns: `shape`
    pub fn gaussian_tensor<B: Backend, const D: usize>(
        &mut self,
        shape: [usize; D],
        device: &B::Device,
    ) -> Tensor<B, D> {
        let values = self.gaussian_vec(shape.iter().product());
        Tensor::from_data(TensorData::new(values, shape), device)
    }

    /// `len` timesteps drawn uniformly from `0..num_timesteps`.
    ///
    /// # Panics
    /// If `num_timesteps` is 0 (a [`crate::NoiseSchedule`] never has zero timesteps).
    pub fn timesteps(&mut self, len: usize, num_timesteps: usize) -> Vec<usize> {
        (0..len)
            .map(|_| self.rng.random_range(0..num_timesteps))
            .collect()
    }

    /// A uniform value in `[0, 1)`, e.g. for dropping labels with some probability.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

impl<B: Backend> NoiseSource<B> for NoiseRng {
    fn gaussian(&mut self, shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
        self.gaussian_tensor(shape, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;

    #[test]
    fn same_seed_same_noise_and_different_seed_different_noise() {
        let a = NoiseRng::seed_from_u64(7).gaussian_vec(64);
        let b = NoiseRng::seed_from_u64(7).gaussian_vec(64);
        let c = NoiseRng::seed_from_u64(8).gaussian_vec(64);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn gaussian_has_zero_mean_and_unit_variance() {
        let n = 20_000;
        let values = NoiseRng::seed_from_u64(1).gaussian_vec(n);
        let mean = values.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
        let var = values
            .iter()
            .map(|v| (*v as f64 - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        // Standard errors: 1/sqrt(n) = 0.007 for the mean, sqrt(2/n) = 0.01 for the variance.
        assert!(mean.abs() < 0.035, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn tensor_holds_the_host_values_in_row_major_order() {
        let device = Default::default();
        let tensor =
            NoiseRng::seed_from_u64(3).gaussian_tensor::<TestBackend, 4>([2, 1, 2, 3], &device);
        assert_eq!(tensor.dims(), [2, 1, 2, 3]);
        let uploaded = tensor.into_data().to_vec::<f32>().unwrap();
        assert_eq!(uploaded, NoiseRng::seed_from_u64(3).gaussian_vec(12));
    }

    #[test]
    fn state_round_trip_continues_the_same_stream() {
        let mut rng = NoiseRng::seed_from_u64(11);
        rng.gaussian_vec(17);
        let state = rng.state();
        let json = serde_json::to_string(&state).unwrap();
        let restored: NoiseRngState = serde_json::from_str(&json).unwrap();
        let mut resumed = NoiseRng::from_state(restored);
        assert_eq!(rng.gaussian_vec(9), resumed.gaussian_vec(9));
        assert_eq!(rng.timesteps(5, 1000), resumed.timesteps(5, 1000));
    }

    #[test]
    fn timesteps_cover_the_range_and_stay_inside_it() {
        let steps = NoiseRng::seed_from_u64(5).timesteps(5000, 10);
        assert!(steps.iter().all(|t| *t < 10));
        for t in 0..10 {
            let count = steps.iter().filter(|s| **s == t).count();
            // Expected 500 each, standard deviation about 21.
            assert!((400..600).contains(&count), "t={t} count={count}");
        }
        let u = NoiseRng::seed_from_u64(5).uniform();
        assert!((0.0..1.0).contains(&u));
    }
}
