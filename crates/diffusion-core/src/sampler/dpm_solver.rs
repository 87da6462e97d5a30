//! Lu, Zhou, Bao, Chen, Li & Zhu (2022), "DPM-Solver++: Fast Solver for Guided Sampling of
//! Diffusion Probabilistic Models", arXiv:2211.01095, Algorithm 2 (multistep second order,
//! "2M"), as diffusers' `DPMSolverMultistepScheduler(algorithm_type="dpmsolver++",
//! solver_order=2, solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero")`.
//!
//! In the data-prediction form, with `alpha_t = sqrt(alpha_bar_t)`, `sigma_t =
//! sqrt(1 - alpha_bar_t)`, `lambda_t = ln(alpha_t / sigma_t)` and `h = lambda_t - lambda_s`:
//! first order `x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D0`, second order adds
//! `- 0.5 alpha_t (e^{-h} - 1) D1` with `D1 = (m0 - m1) h / h_prev`.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use super::{Sampler, SamplerError, TimestepSpacing, check_step, out_of_range, truncate_to_start};
use crate::{NoiseSchedule, NoiseSource, PredictionType};

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
    /// variants (see [`TimestepSpacing::solver_timesteps`]).
    #[config(default = "TimestepSpacing::Linspace")]
    pub spacing: TimestepSpacing,
    /// Added to every timestep of leading spacing.
    #[config(default = 0)]
    pub steps_offset: usize,
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
        let num_train = schedule.num_timesteps();
        let timesteps =
            self.spacing
                .solver_timesteps(num_train, self.num_steps, self.steps_offset)?;
        // diffusers floors a zero terminal alpha_bar at 2^-24 so that lambda stays finite.
        let alpha_bar = schedule
            .alpha_bar()
            .iter()
            .map(|ab| if *ab == 0.0 { 2f64.powi(-24) } else { *ab })
            .collect();
        Ok(DpmSolver {
            timesteps: truncate_to_start(timesteps, self.start_t, num_train)?,
            alpha_bar,
            prediction,
            solver_order: self.solver_order,
            previous: None,
            next_step: 0,
        })
    }
}

/// The data prediction of the last step, and where it was made.
#[derive(Debug, Clone)]
struct History<B: Backend> {
    /// `m1`, the previous step's `pred_x0`.
    pred_x0: Tensor<B, 4>,
    /// `lambda_{s1}` of that step.
    lambda: f64,
}

/// DPM-Solver++(2M) sampler; keeps the previous data prediction between steps.
#[derive(Debug, Clone)]
pub struct DpmSolver<B: Backend> {
    timesteps: Vec<usize>,
    alpha_bar: Vec<f64>,
    prediction: PredictionType,
    solver_order: usize,
    previous: Option<History<B>>,
    next_step: usize,
}

/// `(alpha, sigma, lambda)` at a given `alpha_bar`; `alpha_bar = 1` is clean data, where
/// `sigma = 0` and `lambda = +inf`.
fn alpha_sigma_lambda(alpha_bar: f64) -> (f64, f64, f64) {
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

    fn reset(&mut self) {
        self.previous = None;
        self.next_step = 0;
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        step_index: usize,
        x_t: Tensor<B, 4>,
        _noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        check_step(step_index, self.timesteps.len())?;
        if step_index == 0 {
            <Self as Sampler<B>>::reset(self);
        } else if step_index != self.next_step {
            return Err(SamplerError::OutOfOrder {
                expected: self.next_step,
                got: step_index,
            });
        }
        let is_last = step_index + 1 == self.timesteps.len();
        let alpha_bar_s = self.alpha_bar[self.timesteps[step_index]];
        let alpha_bar_t = match self.timesteps.get(step_index + 1) {
            Some(&t) => self.alpha_bar[t],
            None => 1.0, // final sigma = 0
        };
        let (_, sigma_s, lambda_s) = alpha_sigma_lambda(alpha_bar_s);
        let (alpha_t, sigma_t, lambda_t) = alpha_sigma_lambda(alpha_bar_t);
        let h = lambda_t - lambda_s;
        // At the final step h = +inf: exp(-h) = 0 and sigma_t / sigma_s = 0, so x = pred_x0.
        let phi = (-h).exp() - 1.0;

        let pred_x0 = self
            .prediction
            .split(model_output, x_t.clone(), alpha_bar_s)
            .pred_x0; // m0 = D0
        let first_order =
            x_t.mul_scalar(sigma_t / sigma_s) - pred_x0.clone().mul_scalar(alpha_t * phi);

        // Second order needs one previous prediction; the final step to sigma = 0 stays first
        // order, as diffusers does with final_sigmas_type = "zero".
        let x_prev = match (&self.previous, self.solver_order == 2 && !is_last) {
            (Some(previous), true) => {
                let h_prev = lambda_s - previous.lambda;
                let r0 = h_prev / h;
                let d1 = (pred_x0.clone() - previous.pred_x0.clone()).div_scalar(r0);
                first_order - d1.mul_scalar(0.5 * alpha_t * phi)
            }
            _ => first_order,
        };

        self.previous = Some(History {
            pred_x0,
            lambda: lambda_s,
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
        // Expected correction: -0.5 alpha_t phi (m1_now - m0_before) / r0.
        let ts = [999usize, 799, 599];
        let lam = |t: usize| alpha_sigma_lambda(schedule.alpha_bar()[t]);
        let (alpha_t, _, lambda_t) = lam(ts[2]);
        let (_, _, lambda_s) = lam(ts[1]);
        let (_, _, lambda_s1) = lam(ts[0]);
        let h = lambda_t - lambda_s;
        let r0 = (lambda_s - lambda_s1) / h;
        let correction = -0.5 * alpha_t * ((-h).exp() - 1.0) * (-0.25 - 0.5) / r0;
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
