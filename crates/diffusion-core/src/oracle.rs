//! The exact denoiser for Gaussian data, a test oracle for samplers.
//!
//! For `x0 ~ N(mu, sigma^2)` (each element independent) and `x_t = sqrt(ab) x0 + sqrt(1-ab) eps`,
//! `x_t` is Gaussian too and the posterior means are affine in `x_t`:
//! `E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) mu) / (ab sigma^2 + 1 - ab)` and
//! `E[x0 | x_t] = mu + sqrt(ab) sigma^2 (x_t - sqrt(ab) mu) / (ab sigma^2 + 1 - ab)`.
//! A sampler driven by them should reproduce `N(mu, sigma^2)` up to its discretisation error.

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::forward::gather_per_timestep;
use crate::{Denoiser, NoiseSchedule, PredictionType};

/// The minimum-MSE denoiser for `N(mu, sigma^2)` data, in any prediction type.
#[derive(Debug, Clone)]
pub struct GaussianOracle {
    /// Per-timestep slope of the prediction in `x_t`.
    slope: Vec<f64>,
    /// Per-timestep intercept.
    intercept: Vec<f64>,
    /// `ln sigma_t` of the schedule's timesteps, `sigma_t = sqrt((1 - ab) / ab)`, for
    /// fractional timesteps.
    log_sigmas: Vec<f64>,
    mu: f64,
    variance: f64,
    prediction: PredictionType,
}

/// `(slope, intercept)` of the exact prediction at noise level `alpha_bar_t`.
fn coefficients(
    alpha_bar_t: f64,
    mu: f64,
    variance: f64,
    prediction: PredictionType,
) -> (f64, f64) {
    let (alpha, sigma_t) = (alpha_bar_t.sqrt(), (1.0 - alpha_bar_t).sqrt());
    let marginal_variance = alpha_bar_t * variance + 1.0 - alpha_bar_t;
    // Each prediction is slope * x_t + intercept.
    let eps = (
        sigma_t / marginal_variance,
        -sigma_t * alpha * mu / marginal_variance,
    );
    let x0 = (
        alpha * variance / marginal_variance,
        mu - alpha_bar_t * variance * mu / marginal_variance,
    );
    match prediction {
        PredictionType::Epsilon => eps,
        PredictionType::Sample => x0,
        PredictionType::VPrediction => (
            alpha * eps.0 - sigma_t * x0.0,
            alpha * eps.1 - sigma_t * x0.1,
        ),
    }
}

impl GaussianOracle {
    /// The oracle for data `N(mu, sigma^2)` under `schedule`, predicting `prediction`.
    pub fn new(schedule: &NoiseSchedule, mu: f64, sigma: f64, prediction: PredictionType) -> Self {
        let variance = sigma * sigma;
        let (slope, intercept) = schedule
            .alpha_bar()
            .iter()
            .map(|&alpha_bar_t| coefficients(alpha_bar_t, mu, variance, prediction))
            .unzip();
        let log_sigmas = schedule
            .alpha_bar()
            .iter()
            .map(|&ab| ((1.0 - ab) / ab).sqrt().ln())
            .collect();
        Self {
            slope,
            intercept,
            log_sigmas,
            mu,
            variance,
            prediction,
        }
    }

    /// `alpha_bar` at a fractional timestep: `ln sigma` interpolated linearly between the two
    /// neighbouring timesteps, the inverse of diffusers' `_sigma_to_t`.
    fn alpha_bar_at(&self, t: f64) -> f64 {
        let last = self.log_sigmas.len() - 1;
        let t = t.clamp(0.0, last as f64);
        let low = (t.floor() as usize).min(last.saturating_sub(1));
        let w = t - low as f64;
        let high = (low + 1).min(last);
        let log_sigma = (1.0 - w) * self.log_sigmas[low] + w * self.log_sigmas[high];
        let sigma2 = (2.0 * log_sigma).exp();
        1.0 / (1.0 + sigma2)
    }
}

impl<B: Backend> Denoiser<B> for GaussianOracle {
    fn denoise(
        &self,
        x_t: Tensor<B, 4>,
        timesteps: Tensor<B, 1, Int>,
        _labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        let slope = gather_per_timestep(&self.slope, timesteps.clone()); // [batch, 1, 1, 1]
        let intercept = gather_per_timestep(&self.intercept, timesteps); // [batch, 1, 1, 1]
        x_t * slope + intercept
    }

    /// Exact at fractional timesteps too, at the noise level of [`GaussianOracle::alpha_bar_at`].
    fn denoise_at(
        &self,
        x_t: Tensor<B, 4>,
        t: f64,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        if t.fract() == 0.0 {
            let batch = x_t.dims()[0];
            let timesteps =
                crate::forward::timesteps_tensor(&vec![t as usize; batch], &x_t.device());
            return self.denoise(x_t, timesteps, labels);
        }
        let alpha_bar = self.alpha_bar_at(t);
        let (slope, intercept) = coefficients(alpha_bar, self.mu, self.variance, self.prediction);
        x_t.mul_scalar(slope).add_scalar(intercept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{q_sample, timesteps_tensor};
    use crate::tests::{TestBackend, to_vec};
    use crate::{NoiseRng, ScheduleConfig};

    #[test]
    fn oracle_beats_any_other_affine_guess_on_simulated_data() {
        // E[eps | x_t] minimises the MSE; nudging its slope must not lower the empirical MSE.
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let (mu, sigma) = (0.5, 0.5);
        let n = 8192;
        let mut rng = NoiseRng::seed_from_u64(3);
        let x0 = rng
            .gaussian_tensor::<TestBackend, 4>([n, 1, 1, 1], &device)
            .mul_scalar(sigma)
            .add_scalar(mu);
        let eps = rng.gaussian_tensor::<TestBackend, 4>([n, 1, 1, 1], &device);
        let t = timesteps_tensor::<TestBackend>(&vec![200; n], &device);
        let x_t = q_sample(&schedule, x0, eps.clone(), t.clone());
        let oracle = GaussianOracle::new(&schedule, mu, sigma, PredictionType::Epsilon);
        let mse = |pred: Tensor<TestBackend, 4>| {
            to_vec(pred - eps.clone())
                .iter()
                .map(|d| (*d as f64).powi(2))
                .sum::<f64>()
                / n as f64
        };
        let best = mse(oracle.denoise(x_t.clone(), t.clone(), None));
        for factor in [0.9, 1.1] {
            let worse = mse(oracle
                .denoise(x_t.clone(), t.clone(), None)
                .mul_scalar(factor));
            assert!(worse > best, "factor {factor}: {worse} <= {best}");
        }
    }

    #[test]
    fn predictions_are_consistent_with_each_other() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let x_t = Tensor::<TestBackend, 4>::from_floats([[[[0.3]]], [[[-1.2]]]], &device);
        let t = timesteps_tensor::<TestBackend>(&[100, 700], &device);
        let outputs: Vec<Tensor<TestBackend, 4>> = [
            PredictionType::Epsilon,
            PredictionType::Sample,
            PredictionType::VPrediction,
        ]
        .into_iter()
        .map(|p| GaussianOracle::new(&schedule, 0.2, 0.7, p).denoise(x_t.clone(), t.clone(), None))
        .collect();
        let (eps, x0, v) = (
            to_vec(outputs[0].clone()),
            to_vec(outputs[1].clone()),
            to_vec(outputs[2].clone()),
        );
        for (i, step) in [100usize, 700].into_iter().enumerate() {
            let (a, s) = (
                schedule.sqrt_alpha_bar()[step],
                schedule.sqrt_one_minus_alpha_bar()[step],
            );
            let x = [0.3, -1.2][i];
            // x_t = a x0 + s eps and v = a eps - s x0.
            assert!((a * x0[i] as f64 + s * eps[i] as f64 - x).abs() < 1e-5);
            assert!((a * eps[i] as f64 - s * x0[i] as f64 - v[i] as f64).abs() < 1e-5);
        }
    }
}
