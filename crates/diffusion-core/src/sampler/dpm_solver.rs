//! Lu, Zhou, Bao, Chen, Li & Zhu (2022), "DPM-Solver++: Fast Solver for Guided Sampling of
//! Diffusion Probabilistic Models", arXiv:2211.01095, Algorithm 2 (multistep second order,
//! "2M"), as diffusers' `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
//! solver_order=2, solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero")`.
//!
//! In the data-prediction form, with `alpha = sqrt(alpha_bar)`, `sigma = sqrt(1 - alpha_bar)`,
//! `lambda = ln(alpha / sigma)` and `h = lambda_prev - lambda_t`: first order
//! `x_prev = (sigma_prev / sigma_t) x_t - alpha_prev (e^{-h} - 1) D0`, second order adds
//! `- 0.5 alpha_prev (e^{-h} - 1) D1` with `D1 = (m0 - m1) / r0`, `r0 = h_last / h`.
//!
//! As in every sampler here `t` is the current timestep, the model's input; the paper and
//! diffusers call that one `s` (`s0`) and write `t` for the timestep the step lands on.
//!
//! | ours                       | paper (Algorithm 2)                   | diffusers               |
//! |----------------------------|---------------------------------------|-------------------------|
//! | `t`                        | `t_{i-1}`                             | `s0` (`timestep`)       |
//! | `prev`                     | `t_i`                                 | `t`                     |
//! | `last` (the step before)   | `t_{i-2}`                             | `s1`                    |
//! | `x_t`                      | `x_tilde_{t_{i-1}}`                   | `sample`                |
//! | `alpha_t`, `sigma_t`       | `alpha_{t_{i-1}}`, `sigma_{t_{i-1}}`  | `alpha_s0`, `sigma_s0`  |
//! | `alpha_prev`, `sigma_prev` | `alpha_{t_i}`, `sigma_{t_i}`          | `alpha_t`, `sigma_t`    |
//! | `lambda_t`, `lambda_prev`  | `lambda_{t_{i-1}}`, `lambda_{t_i}`    | `lambda_s0`, `lambda_t` |
//! | `lambda_last`              | `lambda_{t_{i-2}}`                    | `lambda_s1`             |
//! | `h`, `h_last`              | `h_i`, `h_{i-1}`                      | `h`, `h_0`              |
//! | `r0`                       | `r_i`                                 | `r0`                    |
//! | `phi`                      | `e^{-h_i} - 1`                        | `torch.exp(-h) - 1.0`   |
//! | `pred_x0`                  | `x_theta(x_tilde_{t_{i-1}}, t_{i-1})` | `m0`, `D0`              |
//! | `last.pred_x0`             | `x_theta(x_tilde_{t_{i-2}}, t_{i-2})` | `m1`                    |
//! | `d1`                       | `2 (D_i - x_theta(.., t_{i-1}))`      | `D1`                    |
//! | returned                   | `x_tilde_{t_i}`                       | `x_t` (`prev_sample`)   |
//!
//! The levels come from [`super::sigmas::Ladder::solver`]: the schedule's own `alpha_bar` at
//! each timestep, or Karras sigmas (`alpha_bar = 1 / (1 + sigma^2)`) with `karras`.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::sigmas::{Ladder, alpha_bar_of};
use super::{
    Sampler, SamplerError, TimestepSpacing, check_clip, check_multistep, clip_x0, out_of_range,
};
use crate::{NoiseSchedule, NoiseSource, PredictionType};

/// Which DPM-Solver++ update (diffusers' `algorithm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DpmAlgorithm {
    /// The ODE solver, `dpmsolver++` (deterministic).
    #[serde(rename = "dpmsolver++")]
    Ode,
    /// The SDE solver, `sde-dpmsolver++`: `1 - e^{-2h}` of the step's variance is fresh noise
    /// (Lu et al. 2022, Appendix; the "DPM++ 2M SDE" of web UIs).
    #[serde(rename = "sde-dpmsolver++")]
    Sde,
}

/// Configuration of a [`DpmSolver`] (DPM-Solver++ multistep).
#[derive(Config, Debug, PartialEq)]
pub struct DpmSolverConfig {
    /// Number of reverse steps (model evaluations), in `1..=T`.
    #[config(default = 20)]
    pub num_steps: usize,
    /// Solver order, 1 or 2 (1 is DDIM in the data-prediction form).
    #[config(default = 2)]
    pub solver_order: usize,
    /// How timesteps are picked; linspace and leading use DPM-Solver's `n + 1`-point
    /// variants (see [`TimestepSpacing::solver_timesteps`]). Ignored with `karras`.
    #[config(default = "TimestepSpacing::Linspace")]
    pub spacing: TimestepSpacing,
    /// Added to every timestep of leading spacing.
    #[config(default = 0)]
    pub steps_offset: usize,
    /// Karras et al. (2022)'s sigmas over the whole schedule (`use_karras_sigmas`), the
    /// model evaluated at the nearest timestep of each: "DPM++ 2M Karras".
    #[config(default = false)]
    pub karras: bool,
    /// The ODE or the SDE update.
    #[config(default = "DpmAlgorithm::Ode")]
    pub algorithm: DpmAlgorithm,
    /// Clip the data prediction to `[-clip_sample_range, clip_sample_range]` before each
    /// update (diffusers' `thresholding=True` with `sample_max_value=1`, which is a plain clip
    /// at range 1; off by default, as there).
    #[config(default = false)]
    pub clip_sample: bool,
    /// Bound of the clip; finite and > 0.
    #[config(default = 1.0)]
    pub clip_sample_range: f64,
    /// Start the reverse process at this timestep instead of the noisiest (`None`); only
    /// timesteps `<= start_t` are visited.
    pub start_t: Option<usize>,
}

impl DpmSolverConfig {
    /// Builds the solver for `schedule` and a model predicting `prediction`.
    pub fn init<B: Backend>(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<DpmSolver<B>, SamplerError> {
        if !(1..=2).contains(&self.solver_order) {
            return Err(out_of_range("solver_order", self.solver_order, "1 or 2"));
        }
        let clip = check_clip(self.clip_sample, self.clip_sample_range)?;
        let ladder = Ladder::solver(
            schedule,
            self.spacing,
            self.num_steps,
            self.steps_offset,
            self.karras,
            self.start_t,
        )?;
        // Each step goes to the next level; the last one to clean data, sigma = 0.
        let alpha_bars = ladder.sigmas.iter().map(|&s| alpha_bar_of(s)).collect();
        Ok(DpmSolver {
            timesteps: ladder.timesteps,
            alpha_bars,
            prediction,
            solver_order: self.solver_order,
            algorithm: self.algorithm,
            clip,
            previous: None,
            next_step: 0,
        })
    }
}

/// The data prediction of the last step, and where it was made.
#[derive(Debug, Clone)]
struct History<B: Backend> {
    /// `m1`, the last step's `pred_x0`.
    pred_x0: Tensor<B, 4>,
    /// `lambda_last`, the `lambda_t` of that step.
    lambda: f64,
}

/// DPM-Solver++(2M) sampler; keeps the previous data prediction between steps.
#[derive(Debug, Clone)]
pub struct DpmSolver<B: Backend> {
    timesteps: Vec<usize>,
    /// `alpha_bars[i]`: the level of step `i`'s start; the last entry is clean data (1).
    alpha_bars: Vec<f64>,
    prediction: PredictionType,
    solver_order: usize,
    algorithm: DpmAlgorithm,
    clip: Option<f64>,
    previous: Option<History<B>>,
    next_step: usize,
}

/// `(alpha, sigma, lambda)` at a given `alpha_bar`; `alpha_bar = 1` is clean data, where
/// `sigma = 0` and `lambda = +inf`.
pub(crate) fn alpha_sigma_lambda(alpha_bar: f64) -> (f64, f64, f64) {
    let (alpha, sigma) = (alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt());
    (alpha, sigma, alpha.ln() - sigma.ln())
}

impl<B: Backend> Sampler<B> for DpmSolver<B> {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn prediction_type(&self) -> PredictionType {
        self.prediction
    }

    fn state_alpha_bar(&self, eval_index: usize) -> f64 {
        self.alpha_bars[eval_index.min(self.timesteps.len())]
    }

    fn reset(&mut self) {
        self.previous = None;
        self.next_step = 0;
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        step_index: usize,
        x_t: Tensor<B, 4>,
        noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        if check_multistep(step_index, self.next_step, self.timesteps.len())? {
            <Self as Sampler<B>>::reset(self);
        }
        // The final step to sigma = 0 stays first order, as diffusers does with
        // final_sigmas_type = "zero" (its lower_order_final).
        let is_last = step_index + 1 == self.timesteps.len();
        let (alpha_bar_t, alpha_bar_prev) =
            (self.alpha_bars[step_index], self.alpha_bars[step_index + 1]);

        // convert_model_output: the data prediction m0 = D0, clipped if asked.
        let pred_x0 = clip_x0(
            self.prediction
                .split(model_output, x_t.clone(), alpha_bar_t)
                .pred_x0,
            self.clip,
        );

        // dpm_solver_first_order_update. At the final step h = +inf: exp(-h) = 0 and
        // sigma_prev / sigma_t = 0, so x_prev = pred_x0.
        let (_, sigma_t, lambda_t) = alpha_sigma_lambda(alpha_bar_t);
        let (alpha_prev, sigma_prev, lambda_prev) = alpha_sigma_lambda(alpha_bar_prev);
        let h = lambda_prev - lambda_t;
        // The coefficients of x_t and of D0 (D1 takes half of the latter).
        let (coef_x, coef_d) = match self.algorithm {
            DpmAlgorithm::Ode => (sigma_prev / sigma_t, -alpha_prev * ((-h).exp() - 1.0)),
            DpmAlgorithm::Sde => (
                sigma_prev / sigma_t * (-h).exp(),
                alpha_prev * (1.0 - (-2.0 * h).exp()),
            ),
        };
        let first_order = x_t.clone().mul_scalar(coef_x) + pred_x0.clone().mul_scalar(coef_d);

        // multistep_dpm_solver_second_order_update, once there is a last step to use.
        let x_prev = match (&self.previous, self.solver_order == 2 && !is_last) {
            (Some(last), true) => {
                let h_last = lambda_t - last.lambda;
                let r0 = h_last / h;
                let d1 = (pred_x0.clone() - last.pred_x0.clone()).div_scalar(r0);
                first_order + d1.mul_scalar(0.5 * coef_d)
            }
            _ => first_order,
        };
        // The SDE's fresh noise, drawn on every step (the last, where sigma_prev = 0, too) so
        // that the stream matches diffusers.
        let x_prev = match self.algorithm {
            DpmAlgorithm::Ode => x_prev,
            DpmAlgorithm::Sde => {
                let z = noise.gaussian(x_t.dims(), &x_t.device());
                x_prev + z.mul_scalar(sigma_prev * (1.0 - (-2.0 * h).exp()).max(0.0).sqrt())
            }
        };

        self.previous = Some(History {
            pred_x0,
            lambda: lambda_t,
        });
        self.next_step = step_index + 1;
        Ok(x_prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{q_sample, timesteps_tensor};
    use crate::tests::{TestBackend, assert_close};
    use crate::{NoiseRng, ScheduleConfig};

    fn schedule() -> NoiseSchedule {
        ScheduleConfig::new().init().unwrap()
    }

    #[test]
    fn exact_data_prediction_is_followed_exactly() {
        // If the model always returns the true x0 and x_s is on the forward path of (x0, eps),
        // both orders give x_t on the same path: D1 = 0 and the first-order update is exact.
        let device = Default::default();
        let schedule = schedule();
        let mut solver = DpmSolverConfig::new()
            .with_num_steps(8)
            .init::<TestBackend>(&schedule, PredictionType::Sample)
            .unwrap();
        let ts = solver.timesteps().to_vec();
        let mut rng = NoiseRng::seed_from_u64(2);
        let x0 = rng.gaussian_tensor::<TestBackend, 4>([2, 1, 1, 2], &device);
        let eps = rng.gaussian_tensor::<TestBackend, 4>([2, 1, 1, 2], &device);
        let at = |t: usize| {
            q_sample(
                &schedule,
                x0.clone(),
                eps.clone(),
                timesteps_tensor(&[t, t], &device),
            )
        };
        let mut x = at(ts[0]);
        for i in 0..ts.len() {
            x = solver.step(x0.clone(), i, x, &mut rng).unwrap();
            let expected = match ts.get(i + 1) {
                Some(&t) => at(t),
                None => x0.clone(),
            };
            assert_close(x.clone(), expected, 1e-4);
        }
    }

    #[test]
    fn second_step_uses_the_multistep_correction() {
        let device = Default::default();
        let schedule = schedule();
        let config = DpmSolverConfig::new().with_num_steps(5);
        let mut second = config
            .init::<TestBackend>(&schedule, PredictionType::Sample)
            .unwrap();
        let mut first = config
            .clone()
            .with_solver_order(1)
            .init::<TestBackend>(&schedule, PredictionType::Sample)
            .unwrap();
        let x = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device);
        let m0 = Tensor::<TestBackend, 4>::full([1, 1, 1, 1], 0.5, &device);
        let m1 = Tensor::<TestBackend, 4>::full([1, 1, 1, 1], -0.25, &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        for solver in [&mut second, &mut first] {
            solver.step(m0.clone(), 0, x.clone(), &mut rng).unwrap();
        }
        let a = second
            .step(m1.clone(), 1, x.clone(), &mut rng)
            .unwrap()
            .into_scalar() as f64;
        let b = first.step(m1, 1, x, &mut rng).unwrap().into_scalar() as f64;
        // Expected correction: -0.5 alpha_prev phi (m1_now - m0_before) / r0.
        let ts = [999usize, 799, 599];
        let lam = |t: usize| alpha_sigma_lambda(schedule.alpha_bar()[t]);
        let (alpha_prev, _, lambda_prev) = lam(ts[2]);
        let (_, _, lambda_t) = lam(ts[1]);
        let (_, _, lambda_last) = lam(ts[0]);
        let h = lambda_prev - lambda_t;
        let r0 = (lambda_t - lambda_last) / h;
        let correction = -0.5 * alpha_prev * ((-h).exp() - 1.0) * (-0.25 - 0.5) / r0;
        assert!((a - b - correction).abs() < 1e-5, "{a} {b} {correction}");
        assert!(
            correction.abs() > 1e-3,
            "the test must exercise a real correction"
        );
    }

    #[test]
    fn steps_out_of_order_are_rejected_and_zero_restarts() {
        let device = Default::default();
        let mut solver = DpmSolverConfig::new()
            .init::<TestBackend>(&schedule(), PredictionType::Epsilon)
            .unwrap();
        let x = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        solver.step(x.clone(), 0, x.clone(), &mut rng).unwrap();
        let err = solver.step(x.clone(), 2, x.clone(), &mut rng).unwrap_err();
        assert_eq!(
            err,
            SamplerError::OutOfOrder {
                expected: 1,
                got: 2
            }
        );
        solver.step(x.clone(), 0, x.clone(), &mut rng).unwrap();
        solver.step(x.clone(), 1, x, &mut rng).unwrap();
    }

    #[test]
    fn zero_terminal_snr_stays_finite() {
        let device = Default::default();
        let schedule = ScheduleConfig::new()
            .with_rescale_zero_terminal_snr(true)
            .init()
            .unwrap();
        let mut solver = DpmSolverConfig::new()
            .with_num_steps(4)
            .init::<TestBackend>(&schedule, PredictionType::VPrediction)
            .unwrap();
        let mut x = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        for i in 0..4 {
            x = solver
                .step(x.clone().mul_scalar(0.1), i, x, &mut rng)
                .unwrap();
        }
        assert!((x.into_scalar() as f64).is_finite());
    }

    #[test]
    fn invalid_configs_name_their_field() {
        let schedule = schedule();
        let cases = [
            (DpmSolverConfig::new().with_num_steps(0), "num_steps"),
            (DpmSolverConfig::new().with_num_steps(1001), "num_steps"),
            (DpmSolverConfig::new().with_solver_order(3), "solver_order"),
            (DpmSolverConfig::new().with_start_t(Some(1000)), "start_t"),
        ];
        for (config, field) in cases {
            let err = config
                .init::<TestBackend>(&schedule, PredictionType::Epsilon)
                .unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}
