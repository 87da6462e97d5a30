//! Euler's method on the probability-flow ODE in sigma (Karras et al. 2022, Algorithm 1 without
//! churn), as diffusers' `EulerDiscreteScheduler` (`s_churn = 0`, `final_sigmas_type="zero"`).
//!
//! With `D = pred_x0` the ODE is `dx_sigma / dsigma = (x_sigma - D) / sigma`; one step is
//! `x_sigma' = x_sigma + (x_sigma - D) / sigma * (sigma' - sigma)`. The state is kept as
//! `x_t = x_sigma / sqrt(1 + sigma^2)` (see [`super::sigmas`]).
//!
//! | ours                    | Karras et al.       | diffusers                      |
//! |-------------------------|---------------------|--------------------------------|
//! | `sigma`, `sigma_next`   | `t_i`, `t_{i+1}`    | `sigma`, `sigmas[i + 1]`       |
//! | `x_sigma`               | `x_i`               | `sample`                       |
//! | `pred_x0`               | `D_theta(x_i; t_i)` | `pred_original_sample`         |
//! | `derivative`            | `d_i`               | `derivative`                   |
//! | `dt`                    | `t_{i+1} - t_i`     | `dt`                           |

use burn::tensor::{Tensor, backend::Backend};

use super::euler_ancestral::ancestral_update;
use super::sigmas::{Ladder, SigmaConfig, alpha_bar_of, scale};
use super::{Sampler, SamplerError, check_clip, check_step, clip_x0};
use crate::{NoiseSchedule, NoiseSource, PredictionType};

/// The Euler sampler: deterministic, first order, or with `ancestral` the Euler ancestral
/// sampler (see [`super::euler_ancestral`]).
#[derive(Debug, Clone)]
pub struct Euler {
    ladder: Ladder,
    prediction: PredictionType,
    clip: Option<f64>,
    ancestral: bool,
}

impl Euler {
    /// Builds the Euler sampler for `schedule` and a model predicting `prediction`.
    pub fn new(
        config: &SigmaConfig,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Self, SamplerError> {
        Ok(Self {
            ladder: config.ladder(schedule)?,
            prediction,
            clip: check_clip(config.clip_sample, config.clip_sample_range)?,
            ancestral: false,
        })
    }

    /// Builds the Euler ancestral sampler.
    pub fn ancestral(
        config: &SigmaConfig,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Self, SamplerError> {
        Ok(Self {
            ancestral: true,
            ..Self::new(config, schedule, prediction)?
        })
    }
}

/// `pred_x0` (clipped to `[-clip, clip]` if asked) and `x_sigma` of a state `x_t` at `sigma`.
pub(crate) fn to_sigma_space<B: Backend>(
    prediction: PredictionType,
    model_output: Tensor<B, 4>,
    x_t: Tensor<B, 4>,
    sigma: f64,
    clip: Option<f64>,
) -> (Tensor<B, 4>, Tensor<B, 4>) {
    let pred_x0 = prediction
        .split(model_output, x_t.clone(), alpha_bar_of(sigma))
        .pred_x0;
    (clip_x0(pred_x0, clip), x_t.mul_scalar(scale(sigma)))
}

impl<B: Backend> Sampler<B> for Euler {
    fn timesteps(&self) -> &[usize] {
        &self.ladder.timesteps
    }

    fn model_timesteps(&self) -> Vec<f64> {
        self.ladder.model_timesteps.clone()
    }

    fn prediction_type(&self) -> PredictionType {
        self.prediction
    }

    fn state_alpha_bar(&self, eval_index: usize) -> f64 {
        alpha_bar_of(self.ladder.sigmas[eval_index.min(self.ladder.len())])
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        step_index: usize,
        x_t: Tensor<B, 4>,
        noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        check_step(step_index, self.ladder.len())?;
        let (sigma, sigma_next) = (
            self.ladder.sigmas[step_index],
            self.ladder.sigmas[step_index + 1],
        );
        let (pred_x0, x_sigma) =
            to_sigma_space(self.prediction, model_output, x_t, sigma, self.clip);
        let derivative = (x_sigma.clone() - pred_x0).div_scalar(sigma);
        let x_next = if self.ancestral {
            ancestral_update(x_sigma, derivative, sigma, sigma_next, noise)
        } else {
            let dt = sigma_next - sigma;
            x_sigma + derivative.mul_scalar(dt)
        };
        Ok(x_next.div_scalar(scale(sigma_next)))
    }
}
