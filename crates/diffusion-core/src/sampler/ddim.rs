//! Song, Meng & Ermon (2021), "Denoising Diffusion Implicit Models", arXiv:2010.02502,
//! equation (12), as in diffusers' `DDIMScheduler`. `eta = 0` is the deterministic DDIM ODE
//! solver; `eta = 1` has DDPM's posterior variance.
//!
//! Song et al. write `alpha_t` for what DDPM (and this crate) calls `alpha_bar_t`.
//!
//! | ours                    | paper (eqs. 12, 16)                     | diffusers (`DDIMScheduler`) |
//! |-------------------------|-----------------------------------------|-----------------------------|
//! | `t`                     | `tau_i`                                 | `timestep`                  |
//! | `prev`                  | `tau_{i-1}`                             | `prev_timestep`             |
//! | `x_t`                   | `x_{tau_i}`                             | `sample`                    |
//! | `tr.alpha_bar_t`        | `alpha_{tau_i}`                         | `alpha_prod_t`              |
//! | `tr.alpha_bar_prev`     | `alpha_{tau_{i-1}}`                     | `alpha_prod_t_prev`         |
//! | `pred_x0`               | "predicted `x_0`"                       | `pred_original_sample`      |
//! | `pred_eps`              | `eps_theta(x_{tau_i})`                  | `pred_epsilon`              |
//! | `tr.posterior_variance` | `sigma_{tau_i}(1)^2`                    | `variance`                  |
//! | `sigma`                 | `sigma_{tau_i}(eta)`                    | `std_dev_t`                 |
//! | `direction_coef`        | `sqrt(1 - alpha_{tau_{i-1}} - sigma^2)` | in `pred_sample_direction`  |
//! | `z`                     | `eps_{tau_i}`                           | `variance_noise`            |
//! | returned                | `x_{tau_{i-1}}`                         | `prev_sample`               |
//!
//! `tr` is the step's [`Transition`](crate::Transition). The numbered comments in
//! [`Ddim::step`](Sampler::step) are those of diffusers' `step`.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use super::{
    Sampler, SamplerError, TimestepSpacing, check_step, out_of_range, transitions_alpha_bar,
    truncate_to_start,
};
use crate::{NoiseSchedule, NoiseSource, PredictionType, Transition};

/// Configuration of a [`Ddim`] sampler; defaults follow diffusers.
#[derive(Config, Debug, PartialEq)]
pub struct DdimConfig {
    /// Number of reverse steps, in `1..=T`.
    #[config(default = 50)]
    pub num_steps: usize,
    /// Stochasticity, in `[0, 1]`: 0 is deterministic DDIM, 1 matches DDPM's variance.
    #[config(default = 0.0)]
    pub eta: f64,
    /// How the `num_steps` timesteps are picked out of `0..T`.
    #[config(default = "TimestepSpacing::Leading")]
    pub spacing: TimestepSpacing,
    /// Added to every timestep of leading spacing (Stable Diffusion uses 1).
    #[config(default = 0)]
    pub steps_offset: usize,
    /// The last step goes to `alpha_bar = 1` (clean data); otherwise to `alpha_bar_0`.
    #[config(default = true)]
    pub set_alpha_to_one: bool,
    /// Clip the predicted `x0` to `[-clip_sample_range, clip_sample_range]`.
    #[config(default = true)]
    pub clip_sample: bool,
    /// Bound of the `x0` clip; finite and > 0.
    #[config(default = 1.0)]
    pub clip_sample_range: f64,
    /// Step from `t` to `t - T // num_steps`, as diffusers' `DDIMScheduler` does, instead of
    /// to the next listed timestep. The two agree for leading spacing and for trailing when
    /// `num_steps` divides `T`; for linspace diffusers lands between listed timesteps, so the
    /// model is then queried at a timestep slightly off the state's noise level.
    #[config(default = false)]
    pub fixed_stride: bool,
    /// Start the reverse process at this timestep instead of the noisiest (`None`); only
    /// timesteps `<= start_t` are visited.
    pub start_t: Option<usize>,
}

impl DdimConfig {
    /// Builds the sampler for `schedule` and a model predicting `prediction`.
    pub fn init(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Ddim, SamplerError> {
        if !(self.eta.is_finite() && (0.0..=1.0).contains(&self.eta)) {
            return Err(out_of_range("eta", self.eta, "in [0, 1]"));
        }
        if !(self.clip_sample_range.is_finite() && self.clip_sample_range > 0.0) {
            return Err(out_of_range(
                "clip_sample_range",
                self.clip_sample_range,
                "finite and > 0",
            ));
        }
        let num_train = schedule.num_timesteps();
        let timesteps = self
            .spacing
            .timesteps(num_train, self.num_steps, self.steps_offset)?;
        let timesteps = truncate_to_start(timesteps, self.start_t, num_train)?;
        let stride = self.fixed_stride.then_some(num_train / self.num_steps);
        // The last step lands on clean data (alpha_bar = 1), or on alpha_bar_0.
        let final_prev = (!self.set_alpha_to_one).then_some(0);
        let transitions = (0..timesteps.len())
            .map(|i| {
                let t = timesteps[i];
                let prev = match stride {
                    Some(stride) => t.checked_sub(stride),
                    None => timesteps.get(i + 1).copied(),
                };
                schedule.transition(t, prev.or(final_prev))
            })
            .collect();
        Ok(Ddim {
            timesteps,
            transitions,
            prediction,
            eta: self.eta,
            clip: self.clip_sample.then_some(self.clip_sample_range),
        })
    }
}

/// DDIM sampler. Each step goes to the next timestep of the list (see
/// [`DdimConfig::fixed_stride`] for diffusers' rule).
#[derive(Debug, Clone)]
pub struct Ddim {
    timesteps: Vec<usize>,
    /// `transitions[i]`: from `timesteps[i]` to the next listed timestep, or by the fixed
    /// stride; after the last, to `alpha_bar = 1` or `alpha_bar_0` (`set_alpha_to_one`).
    transitions: Vec<Transition>,
    prediction: PredictionType,
    eta: f64,
    clip: Option<f64>,
}

impl<B: Backend> Sampler<B> for Ddim {
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
        // 1. The previous timestep, and 2. the alphas and betas (fixed at init).
        let tr = self.transitions[step_index];

        // 3. The predicted x0 and eps, eq. (12), and 4. the clip of x0.
        let prediction = self
            .prediction
            .split(model_output, x_t.clone(), tr.alpha_bar_t);
        // As diffusers (use_clipped_model_output = false): only x0 is clipped, eps is kept.
        let pred_eps = prediction.pred_eps;
        let pred_x0 = match self.clip {
            Some(range) => prediction.pred_x0.clamp(-range, range),
            None => prediction.pred_x0,
        };

        // 5. sigma, eq. (16): eta times the square root of the posterior variance.
        let sigma = self.eta * tr.posterior_variance.sqrt();

        // 6. The "direction pointing to x_t"; rounding can push 1 - ab_prev - sigma^2 a hair
        // below zero when eta = 1.
        let direction_coef = (1.0 - tr.alpha_bar_prev - sigma * sigma).max(0.0).sqrt();

        // 7. x_prev without the random noise, then the noise.
        let x_prev =
            pred_x0.mul_scalar(tr.alpha_bar_prev.sqrt()) + pred_eps.mul_scalar(direction_coef);
        if self.eta > 0.0 {
            // Drawn on every step, even where sigma = 0, so the noise stream matches diffusers.
            let z = noise.gaussian(x_t.dims(), &x_t.device());
            return Ok(x_prev + z.mul_scalar(sigma));
        }
        Ok(x_prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{q_sample, timesteps_tensor};
    use crate::tests::{TestBackend, assert_close, to_vec};
    use crate::{NoiseRng, ScheduleConfig};

    fn schedule() -> NoiseSchedule {
        ScheduleConfig::new().init().unwrap()
    }

    #[test]
    fn deterministic_step_with_exact_eps_lands_on_the_forward_marginal() {
        // With the true eps, eta = 0 moves x_t = q(x0, eps, t) exactly to q(x0, eps, t_prev).
        let device = Default::default();
        let schedule = schedule();
        let mut ddim = DdimConfig::new()
            .with_num_steps(20)
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Epsilon)
            .unwrap();
        let ts = <Ddim as Sampler<TestBackend>>::timesteps(&ddim).to_vec();
        let mut rng = NoiseRng::seed_from_u64(1);
        let x0 = rng.gaussian_tensor::<TestBackend, 4>([2, 1, 2, 2], &device);
        let eps = rng.gaussian_tensor::<TestBackend, 4>([2, 1, 2, 2], &device);
        let at = |t: usize| {
            q_sample(
                &schedule,
                x0.clone(),
                eps.clone(),
                timesteps_tensor(&[t, t], &device),
            )
        };
        let stepped = ddim.step(eps.clone(), 3, at(ts[3]), &mut rng).unwrap();
        assert_close(stepped, at(ts[4]), 1e-5);
        let last = ddim.step(eps.clone(), 19, at(ts[19]), &mut rng).unwrap();
        assert_close(last, x0, 1e-4);
    }

    #[test]
    fn set_alpha_to_one_false_ends_at_alpha_bar_zero() {
        let device = Default::default();
        let schedule = schedule();
        let mut ddim = DdimConfig::new()
            .with_num_steps(10)
            .with_set_alpha_to_one(false)
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        let x0 = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device);
        let x_t = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        // pred_eps = (0 - sqrt(ab_0))/sqrt(1 - ab_0) at t = 0; out = sqrt(ab_0) + sqrt(1 - ab_0) * pred_eps = 0.
        let out = ddim
            .step(x0, 9, x_t, &mut NoiseRng::seed_from_u64(0))
            .unwrap();
        assert!((out.into_scalar() as f64).abs() < 1e-6);
    }

    #[test]
    fn eta_one_adds_the_ddpm_posterior_noise() {
        let device = Default::default();
        let schedule = schedule();
        let mut ddim = DdimConfig::new()
            .with_num_steps(1000)
            .with_eta(1.0)
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        // x0 = x_t = 0: output is pure noise with DDPM's posterior std at t = 500.
        let zeros = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 3], &device);
        let out = ddim
            .step(zeros.clone(), 499, zeros, &mut NoiseRng::seed_from_u64(5))
            .unwrap();
        let z = NoiseRng::seed_from_u64(5).gaussian_vec(3);
        let std = schedule.posterior_variance()[500].sqrt();
        for (value, z) in to_vec(out).into_iter().zip(z) {
            assert!((value as f64 - std * z as f64).abs() < 1e-6);
        }
    }

    #[test]
    fn clipping_bounds_x0_but_keeps_the_models_eps() {
        let device = Default::default();
        let schedule = schedule();
        let mut ddim = DdimConfig::new()
            .with_num_steps(10)
            .init(&schedule, PredictionType::Epsilon)
            .unwrap();
        let x_t = Tensor::<TestBackend, 4>::full([1, 1, 1, 1], 5.0, &device);
        let eps = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        // pred_x0 = 5 / sqrt(ab_900) is clipped to 1, eps stays 0: out = sqrt(ab_800).
        let out = ddim
            .step(eps, 0, x_t, &mut NoiseRng::seed_from_u64(0))
            .unwrap();
        let expected = schedule.alpha_bar()[800].sqrt();
        assert!((out.into_scalar() as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn fixed_stride_steps_by_t_over_n_like_diffusers() {
        let device = Default::default();
        let schedule = schedule();
        let config = DdimConfig::new()
            .with_num_steps(20)
            .with_spacing(TimestepSpacing::Linspace)
            .with_clip_sample(false);
        let x0 = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device);
        let x_t = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        // With x_t = 0 and x0 = 1: pred_eps = -sqrt(ab_t)/sqrt(1 - ab_t), and the output
        // sqrt(ab_prev) + sqrt(1 - ab_prev) pred_eps reveals which ab_prev was used.
        let out = |ab_prev: f64| {
            let ab_t = schedule.alpha_bar()[999];
            ab_prev.sqrt() - (1.0 - ab_prev).sqrt() * ab_t.sqrt() / (1.0 - ab_t).sqrt()
        };
        let mut listed = config.init(&schedule, PredictionType::Sample).unwrap();
        assert_eq!(
            <Ddim as Sampler<TestBackend>>::timesteps(&listed)[..2],
            [999, 946]
        );
        let value = listed
            .step(x0.clone(), 0, x_t.clone(), &mut rng)
            .unwrap()
            .into_scalar();
        assert!((value as f64 - out(schedule.alpha_bar()[946])).abs() < 1e-6);
        let mut strided = config
            .with_fixed_stride(true)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        let value = strided.step(x0, 0, x_t, &mut rng).unwrap().into_scalar();
        assert!((value as f64 - out(schedule.alpha_bar()[949])).abs() < 1e-6);
    }

    #[test]
    fn invalid_configs_name_their_field() {
        let schedule = schedule();
        let cases = [
            (DdimConfig::new().with_num_steps(0), "num_steps"),
            (DdimConfig::new().with_num_steps(1001), "num_steps"),
            (DdimConfig::new().with_eta(-0.1), "eta"),
            (DdimConfig::new().with_eta(1.5), "eta"),
            (DdimConfig::new().with_eta(f64::NAN), "eta"),
            (
                DdimConfig::new().with_clip_sample_range(-1.0),
                "clip_sample_range",
            ),
            (DdimConfig::new().with_start_t(Some(5000)), "start_t"),
            (DdimConfig::new().with_steps_offset(30), "steps_offset"),
        ];
        for (config, field) in cases {
            let err = config.init(&schedule, PredictionType::Epsilon).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
    }
}
