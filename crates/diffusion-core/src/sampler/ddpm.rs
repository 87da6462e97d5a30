//! Ancestral sampling of Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic
//! Models", arXiv:2006.11239, Algorithm 2, as in diffusers' `DDPMScheduler` (including its
//! strided variant with fewer steps than `T`).
//!
//! | ours                | paper (Algorithm 2, eqs. 6-7)       | diffusers (`DDPMScheduler`)   |
//! |---------------------|-------------------------------------|-------------------------------|
//! | `t`                 | `t`                                 | `t` (`timestep`)              |
//! | `prev`              | `t - 1`                             | `prev_t`                      |
//! | `x_t`               | `x_t`                               | `sample`                      |
//! | `tr.alpha_bar_t`    | `alpha_bar_t`                       | `alpha_prod_t`                |
//! | `tr.alpha_bar_prev` | `alpha_bar_{t-1}`                   | `alpha_prod_t_prev`           |
//! | `tr.beta`           | `beta_t`                            | `current_beta_t`              |
//! | `pred_x0`           | `x_0` from `eps_theta(x_t, t)`      | `pred_original_sample`        |
//! | `tr.coef_x0`        | `x_0`'s coefficient in `mu_tilde_t` | `pred_original_sample_coeff`  |
//! | `tr.coef_xt`        | `x_t`'s coefficient in `mu_tilde_t` | `current_sample_coeff`        |
//! | `mean`              | `mu_tilde_t(x_t, x_0)`              | `pred_prev_sample` (no noise) |
//! | `sigma`             | `sigma_t`                           | `variance ** 0.5`             |
//! | `z`                 | `z`                                 | `variance_noise`              |
//! | returned            | `x_{t-1}`                           | `pred_prev_sample`            |
//!
//! `tr` is the step's [`Transition`](crate::Transition); with strided steps its `beta` is
//! that of the whole jump from `t` to `prev`, as in diffusers. The numbered comments in
//! [`Ddpm::step`](Sampler::step) are those of diffusers' `step`.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::{
    Sampler, SamplerError, TimestepSpacing, check_step, out_of_range, transitions_alpha_bar,
    truncate_to_start,
};
use crate::{NoiseSchedule, NoiseSource, PredictionType, Transition};

/// The variance of each ancestral step (Ho et al. 2020, section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DdpmVariance {
    /// The posterior variance `beta_tilde_t`, optimal for deterministic data.
    #[serde(alias = "fixed_small")]
    FixedSmall,
    /// `beta_t`, optimal for `x_0 ~ N(0, I)`.
    #[serde(alias = "fixed_large")]
    FixedLarge,
}

/// Configuration of a [`Ddpm`] sampler; defaults follow diffusers.
#[derive(Config, Debug, PartialEq)]
pub struct DdpmConfig {
    /// Number of reverse steps, in `1..=T`; `None` runs the full chain of `T` steps.
    pub num_steps: Option<usize>,
    /// Variance of each step.
    #[config(default = "DdpmVariance::FixedSmall")]
    pub variance: DdpmVariance,
    /// Clip the predicted `x0` to `[-clip_sample_range, clip_sample_range]`.
    #[config(default = true)]
    pub clip_sample: bool,
    /// Bound of the `x0` clip; finite and > 0.
    #[config(default = 1.0)]
    pub clip_sample_range: f64,
    /// How timesteps are picked when `num_steps < T`.
    #[config(default = "TimestepSpacing::Leading")]
    pub spacing: TimestepSpacing,
    /// Added to every timestep of leading spacing (Stable Diffusion uses 1).
    #[config(default = 0)]
    pub steps_offset: usize,
    /// Start the reverse process at this timestep instead of the noisiest (`None`); only
    /// timesteps `<= start_t` are visited.
    pub start_t: Option<usize>,
}

impl DdpmConfig {
    /// Builds the sampler for `schedule` and a model predicting `prediction`.
    pub fn init(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Ddpm, SamplerError> {
        if !(self.clip_sample_range.is_finite() && self.clip_sample_range > 0.0) {
            return Err(out_of_range(
                "clip_sample_range",
                self.clip_sample_range,
                "finite and > 0",
            ));
        }
        let num_train = schedule.num_timesteps();
        let num_steps = self.num_steps.unwrap_or(num_train);
        let timesteps = self
            .spacing
            .timesteps(num_train, num_steps, self.steps_offset)?;
        let timesteps = truncate_to_start(timesteps, self.start_t, num_train)?;
        // Each step goes to the next listed timestep; the last one to clean data.
        let transitions = (0..timesteps.len())
            .map(|i| schedule.transition(timesteps[i], timesteps.get(i + 1).copied()))
            .collect();
        Ok(Ddpm {
            timesteps,
            transitions,
            prediction,
            variance: self.variance,
            clip: self.clip_sample.then_some(self.clip_sample_range),
        })
    }
}

/// DDPM ancestral sampler.
#[derive(Debug, Clone)]
pub struct Ddpm {
    timesteps: Vec<usize>,
    /// `transitions[i]`: from `timesteps[i]` to `timesteps[i + 1]` (clean data after the last).
    transitions: Vec<Transition>,
    prediction: PredictionType,
    variance: DdpmVariance,
    clip: Option<f64>,
}

impl<B: Backend> Sampler<B> for Ddpm {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn prediction_type(&self) -> PredictionType {
        self.prediction
    }

    fn state_alpha_bar(&self, eval_index: usize) -> f64 {
        transitions_alpha_bar(&self.transitions, eval_index)
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        step_index: usize,
        x_t: Tensor<B, 4>,
        noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        check_step(step_index, self.timesteps.len())?;
        // 1. The alphas and betas of the jump from t to prev.
        let t = self.timesteps[step_index];
        let tr = self.transitions[step_index];

        // 2. The predicted x0, and 3. its clip.
        let mut pred_x0 = self
            .prediction
            .split(model_output, x_t.clone(), tr.alpha_bar_t)
            .pred_x0;
        if let Some(range) = self.clip {
            pred_x0 = pred_x0.clamp(-range, range);
        }

        // 4.-5. The posterior mean of q(x_prev | x_t, x_0) with the coefficients of Ho et al.
        // eq. (7).
        let mean = pred_x0.mul_scalar(tr.coef_x0) + x_t.clone().mul_scalar(tr.coef_xt);

        // 6. The noise; as diffusers, none on the step from t = 0, whatever the spacing.
        if t == 0 {
            return Ok(mean);
        }
        let sigma = match self.variance {
            // diffusers clamps at 1e-20 so the square root stays finite.
            DdpmVariance::FixedSmall => tr.posterior_variance.max(1e-20).sqrt(),
            DdpmVariance::FixedLarge => tr.beta.sqrt(),
        };
        let z = noise.gaussian(x_t.dims(), &x_t.device());
        Ok(mean + z.mul_scalar(sigma))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoiseRng;
    use crate::ScheduleConfig;
    use crate::tests::{TestBackend, assert_close, to_vec};

    fn schedule() -> NoiseSchedule {
        ScheduleConfig::new().init().unwrap()
    }

    #[test]
    fn full_chain_visits_every_timestep() {
        let ddpm = DdpmConfig::new()
            .init(&schedule(), PredictionType::Epsilon)
            .unwrap();
        let ts = <Ddpm as Sampler<TestBackend>>::timesteps(&ddpm);
        assert_eq!(ts, (0..1000).rev().collect::<Vec<_>>().as_slice());
    }

    #[test]
    fn step_matches_the_posterior_of_ho_et_al() {
        // Full chain, step from t to t-1: mean = coef1 * x0 + coef2 * x_t, std = sqrt(posterior var).
        let device = Default::default();
        let schedule = schedule();
        let mut ddpm = DdpmConfig::new()
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        let step_index = 500;
        let t = 999 - step_index;
        let x_t = Tensor::<TestBackend, 4>::full([1, 1, 1, 4], 0.3, &device);
        let x0 = Tensor::<TestBackend, 4>::full([1, 1, 1, 4], -0.2, &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        let out = ddpm.step(x0, step_index, x_t, &mut rng).unwrap();
        let z = NoiseRng::seed_from_u64(0).gaussian_vec(4);
        // Ho et al. eq. (7), with the schedule's own beta_t and alpha_t.
        let (beta, alpha) = (schedule.betas()[t], schedule.alphas()[t]);
        let (ab_t, ab_prev) = (schedule.alpha_bar()[t], schedule.alpha_bar()[t - 1]);
        let coef_x0 = beta * ab_prev.sqrt() / (1.0 - ab_t);
        let coef_xt = (1.0 - ab_prev) * alpha.sqrt() / (1.0 - ab_t);
        let variance = beta * (1.0 - ab_prev) / (1.0 - ab_t);
        for (value, z) in to_vec(out).into_iter().zip(z) {
            let expected = coef_x0 * -0.2 + coef_xt * 0.3 + variance.sqrt() * z as f64;
            assert!((value as f64 - expected).abs() < 1e-6);
        }
    }

    #[test]
    fn fixed_large_uses_beta_as_variance() {
        let device = Default::default();
        let schedule = schedule();
        let mut ddpm = DdpmConfig::new()
            .with_variance(DdpmVariance::FixedLarge)
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        let zeros = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        // x0 = x_t = 0 gives a zero mean, so the output is sigma_t * z.
        let out = ddpm
            .step(zeros.clone(), 0, zeros, &mut NoiseRng::seed_from_u64(2))
            .unwrap();
        let z = NoiseRng::seed_from_u64(2).gaussian_vec(1)[0] as f64;
        let expected = schedule.betas()[999].sqrt() * z;
        assert!((out.into_scalar() as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn last_step_is_deterministic_and_returns_the_clipped_x0() {
        let device = Default::default();
        let mut ddpm = DdpmConfig::new()
            .init(&schedule(), PredictionType::Sample)
            .unwrap();
        let x_t = Tensor::<TestBackend, 4>::full([2, 1, 1, 1], 0.1, &device);
        let x0 = Tensor::<TestBackend, 4>::from_floats([[[[3.0]]], [[[-0.5]]]], &device);
        let out = ddpm
            .step(x0, 999, x_t, &mut NoiseRng::seed_from_u64(0))
            .unwrap();
        assert_close(
            out,
            Tensor::from_floats([[[[1.0]]], [[[-0.5]]]], &device),
            1e-6,
        );
    }

    #[test]
    fn fewer_steps_use_the_strided_alpha() {
        let device = Default::default();
        let schedule = schedule();
        let mut ddpm = DdpmConfig::new()
            .with_num_steps(Some(10))
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        assert_eq!(
            <Ddpm as Sampler<TestBackend>>::timesteps(&ddpm)[..2],
            [900, 800]
        );
        let zeros = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        let ones = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device);
        // x0 = 1, x_t = 0: output = coef_x0 + sigma z with the jump 900 -> 800.
        let out = ddpm
            .step(ones, 0, zeros, &mut NoiseRng::seed_from_u64(3))
            .unwrap();
        let (ab_t, ab_prev) = (schedule.alpha_bar()[900], schedule.alpha_bar()[800]);
        let beta = 1.0 - ab_t / ab_prev;
        let coef_x0 = ab_prev.sqrt() * beta / (1.0 - ab_t);
        let sigma = ((1.0 - ab_prev) / (1.0 - ab_t) * beta).sqrt();
        let z = NoiseRng::seed_from_u64(3).gaussian_vec(1)[0] as f64;
        assert!((out.into_scalar() as f64 - (coef_x0 + sigma * z)).abs() < 1e-6);
    }

    #[test]
    fn invalid_configs_name_their_field() {
        let schedule = schedule();
        let cases = [
            (DdpmConfig::new().with_num_steps(Some(0)), "num_steps"),
            (DdpmConfig::new().with_num_steps(Some(1001)), "num_steps"),
            (
                DdpmConfig::new().with_clip_sample_range(f64::NAN),
                "clip_sample_range",
            ),
            (
                DdpmConfig::new().with_clip_sample_range(0.0),
                "clip_sample_range",
            ),
            (DdpmConfig::new().with_start_t(Some(1000)), "start_t"),
        ];
        for (config, field) in cases {
            let err = config.init(&schedule, PredictionType::Epsilon).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn step_past_the_end_is_an_error() {
        let device = Default::default();
        let mut ddpm = DdpmConfig::new()
            .with_start_t(Some(2))
            .init(&schedule(), PredictionType::Epsilon)
            .unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        let err = ddpm
            .step(x.clone(), 3, x, &mut NoiseRng::seed_from_u64(0))
            .unwrap_err();
        assert_eq!(err, SamplerError::StepIndex { index: 3, len: 3 });
    }
}
