//! The mathematics of diffusion models: noise schedules, the forward process, prediction
//! types, samplers and the sampling loop. No networks, no file I/O: networks plug in through
//! the [`Denoiser`] trait.
//!
//! Read in workflow order: [`schedule`] (betas and everything derived, f64 on the host),
//! [`forward`] (`q_sample`, training timesteps), [`prediction`] (eps / x0 / v),
//! [`loss_weighting`], [`noise`] (seeded host randomness), [`sampler`] (DDPM, DDIM,
//! DPM-Solver++), [`guidance`] and [`sampling`] (the loop), and [`oracle`] (an exact denoiser
//! for Gaussian data, for tests).
//!
//! ```
//! use burn::backend::Flex;
//! use diffusion_core::{
//!     Conditioning, DpmSolverConfig, GaussianOracle, NoiseRng, PredictionType, SamplerConfig,
//!     ScheduleConfig, sample_loop,
//! };
//!
//! let device = Default::default();
//! let schedule = ScheduleConfig::new().init()?; // linear, T = 1000
//! // Any `Denoiser` works here; a U-Net in practice, the exact one for N(0.5, 0.2^2) data here.
//! let denoiser = GaussianOracle::new(&schedule, 0.5, 0.2, PredictionType::Epsilon);
//! let mut sampler = SamplerConfig::DpmSolver(DpmSolverConfig::new().with_num_steps(20))
//!     .init::<Flex>(&schedule, PredictionType::Epsilon)?;
//! let mut rng = NoiseRng::seed_from_u64(0);
//! let x_t = rng.gaussian_tensor::<Flex, 4>([8, 1, 4, 4], &device); // [batch, ch, h, w]
//! let mut frames = Vec::new();
//! let x0 = sample_loop(
//!     &denoiser,
//!     sampler.as_mut(),
//!     x_t,
//!     &Conditioning::Unconditional,
//!     &mut rng,
//!     |_step, _t, x| frames.push(x.clone()),
//! )?;
//! assert_eq!(x0.dims(), [8, 1, 4, 4]);
//! assert_eq!(frames.len(), 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod denoiser;
pub mod forward;
pub mod guidance;
pub mod inpaint;
pub mod loss_weighting;
pub mod noise;
pub mod oracle;
pub mod prediction;
pub mod sampler;
pub mod sampling;
pub mod schedule;

pub use denoiser::Denoiser;
pub use forward::{q_sample, sample_timesteps};
pub use guidance::{GuidanceConfig, guide};
pub use inpaint::{InpaintError, inpaint_loop};
pub use loss_weighting::{LossWeighting, LossWeightingError};
pub use noise::{NoiseRng, NoiseRngState, NoiseSource};
pub use oracle::GaussianOracle;
pub use prediction::{Prediction, PredictionType};
pub use sampler::{
    Ddim, DdimConfig, Ddpm, DdpmConfig, DdpmVariance, DpmAlgorithm, DpmSolver, DpmSolverConfig,
    Euler, Heun, Sampler, SamplerConfig, SamplerError, SigmaConfig, TimestepSpacing, UniPc,
    UniPcConfig, UniPcVariant,
};
pub use sampling::{Conditioning, noised_start, sample_loop};
pub use schedule::{BetaSchedule, NoiseSchedule, ScheduleConfig, ScheduleError, Transition};

#[cfg(test)]
pub(crate) mod tests {
    use burn::tensor::{Tensor, backend::Backend};

    pub type TestBackend = burn::backend::Flex;

    /// The values of a tensor, row-major.
    pub fn to_vec<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Vec<f32> {
        tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    /// Element-wise `|a - b| <= tol * (1 + |b|)` (absolute near zero, relative for large values).
    pub fn assert_close<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, tol: f64) {
        assert_eq!(a.dims(), b.dims());
        let (a, b) = (to_vec(a), to_vec(b));
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let (x, y) = (*x as f64, *y as f64);
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "element {i}: {x} vs {y} (tol {tol})"
            );
        }
    }
}
