//! Heun's second-order method on the probability-flow ODE in sigma (Karras et al. 2022,
//! Algorithm 1 without churn), as diffusers' `HeunDiscreteScheduler`: an Euler step to
//! `sigma_next`, the model evaluated there, and the step redone with the mean of the two
//! slopes. The last step, to sigma = 0, stays Euler (the slope at sigma = 0 is undefined).
//! `n` steps cost `2 n - 1` model evaluations; `step` is called once per evaluation.
//!
//! Evaluation `2 i` starts step `i` at `sigma_i` (first order); evaluation `2 i + 1` is the
//! correction at `sigma_{i+1}`. Like diffusers, the sigmas of the evaluations are
//! `[s_0, s_1, s_1, s_2, s_2, ..., s_{n-1}, s_{n-1}, 0]`. The state is kept as `x_t` (see
//! [`super::sigmas`]).
//!
//! | ours                       | Karras et al.          | diffusers                   |
//! |----------------------------|------------------------|-----------------------------|
//! | `eval_sigmas[k]`           | `t_i` / `t_{i+1}`      | `self.sigmas[k]`            |
//! | `pending.x_sigma`          | `x_i`                  | `self.sample`               |
//! | `pending.derivative`       | `d_i`                  | `self.prev_derivative`      |
//! | `pending.dt`               | `t_{i+1} - t_i`        | `self.dt`                   |
//! | `derivative` (correction)  | `d'_i`                 | `derivative`                |

use burn::tensor::{Tensor, backend::Backend};

use super::euler::to_sigma_space;
use super::sigmas::{SigmaConfig, alpha_bar_of, scale};
use super::{Sampler, SamplerError, check_clip, check_multistep};
use crate::{NoiseSchedule, NoiseSource, PredictionType};

/// The first half of a Heun step, waiting for the model's output at `sigma_next`.
#[derive(Debug, Clone)]
struct Pending<B: Backend> {
    x_sigma: Tensor<B, 4>,
    derivative: Tensor<B, 4>,
    dt: f64,
}

/// The Heun sampler (deterministic, second order, two evaluations per step).
#[derive(Debug, Clone)]
pub struct Heun<B: Backend> {
    /// Step starts, rounded.
    timesteps: Vec<usize>,
    /// One entry per evaluation: `[t_0, t_1, t_1, ..., t_{n-1}, t_{n-1}]`.
    eval_timesteps: Vec<f64>,
    /// One entry per evaluation, plus the final 0.
    eval_sigmas: Vec<f64>,
    prediction: PredictionType,
    clip: Option<f64>,
    pending: Option<Pending<B>>,
    next_eval: usize,
}

impl<B: Backend> Heun<B> {
    /// Builds the sampler for `schedule` and a model predicting `prediction`.
    pub fn new(
        config: &SigmaConfig,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Self, SamplerError> {
        let ladder = config.ladder(schedule)?;
        let n = ladder.len();
        let mut eval_timesteps = vec![ladder.model_timesteps[0]];
        let mut eval_sigmas = vec![ladder.sigmas[0]];
        for i in 1..n {
            eval_timesteps.extend([ladder.model_timesteps[i]; 2]);
            eval_sigmas.extend([ladder.sigmas[i]; 2]);
        }
        eval_sigmas.push(0.0);
        Ok(Self {
            timesteps: ladder.timesteps,
            eval_timesteps,
            eval_sigmas,
            prediction,
            clip: check_clip(config.clip_sample, config.clip_sample_range)?,
            pending: None,
            next_eval: 0,
        })
    }
}

impl<B: Backend> Sampler<B> for Heun<B> {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn model_timesteps(&self) -> Vec<f64> {
        self.eval_timesteps.clone()
    }

    fn prediction_type(&self) -> PredictionType {
        self.prediction
    }

    fn state_alpha_bar(&self, eval_index: usize) -> f64 {
        alpha_bar_of(self.eval_sigmas[eval_index.min(self.eval_timesteps.len())])
    }

    fn reset(&mut self) {
        self.pending = None;
        self.next_eval = 0;
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        eval_index: usize,
        x_t: Tensor<B, 4>,
        _noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        if check_multistep(eval_index, self.next_eval, self.eval_timesteps.len())? {
            <Self as Sampler<B>>::reset(self);
        }
        self.next_eval = eval_index + 1;
        let sigma_here = self.eval_sigmas[eval_index];
        let sigma_after = self.eval_sigmas[eval_index + 1];
        let (pred_x0, x_sigma) =
            to_sigma_space(self.prediction, model_output, x_t, sigma_here, self.clip);
        let derivative = (x_sigma.clone() - pred_x0).div_scalar(sigma_here);
        let x_next = match self.pending.take() {
            // First order: an Euler step to sigma_next, kept for the correction.
            None => {
                let dt = sigma_after - sigma_here;
                let x_next = x_sigma.clone() + derivative.clone().mul_scalar(dt);
                // The last evaluation (to sigma = 0) has no correction.
                if eval_index + 1 < self.eval_timesteps.len() {
                    self.pending = Some(Pending {
                        x_sigma,
                        derivative,
                        dt,
                    });
                }
                x_next
            }
            // Second order: the mean of both slopes, from the step's start.
            Some(first) => {
                let slope = (first.derivative + derivative).div_scalar(2.0);
                first.x_sigma + slope.mul_scalar(first.dt)
            }
        };
        Ok(x_next.div_scalar(scale(sigma_after)))
    }
}
