//! What the network predicts (epsilon, x0 or v), its training target, and the conversions
//! from a model output back to `(pred_x0, pred_eps)`.

use burn::config::Config;
use burn::tensor::{Int, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::{NoiseSchedule, forward::gather_per_timestep};

/// The quantity a denoiser is trained to output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PredictionType {
    /// The added noise `eps` (Ho et al. 2020); diffusers' "epsilon".
    #[default]
    #[serde(rename = "eps", alias = "epsilon")]
    Epsilon,
    /// The clean sample `x0`; diffusers' "sample".
    #[serde(rename = "x0", alias = "sample")]
    Sample,
    /// The velocity `v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0` (Salimans & Ho 2022);
    /// diffusers' "v_prediction".
    #[serde(rename = "v", alias = "v_prediction")]
    VPrediction,
}

impl Config for PredictionType {}

/// A model output turned into both estimates a sampler needs.
#[derive(Debug, Clone)]
pub struct Prediction<B: Backend> {
    /// Estimate of the clean sample.
    pub pred_x0: Tensor<B, 4>,
    /// Estimate of the noise in `x_t`.
    pub pred_eps: Tensor<B, 4>,
}

impl PredictionType {
    /// The regression target for a batch noised with `q_sample(x0, noise, t)`.
    ///
    /// # Shapes
    /// - `x0`, `noise`: `[batch, channels, height, width]`
    /// - `t`: `[batch]`
    /// - returns: `[batch, channels, height, width]`
    pub fn target<B: Backend>(
        self,
        schedule: &NoiseSchedule,
        x0: Tensor<B, 4>,
        noise: Tensor<B, 4>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, 4> {
        match self {
            Self::Epsilon => noise,
            Self::Sample => x0,
            Self::VPrediction => {
                let alpha = gather_per_timestep(schedule.sqrt_alpha_bar(), t.clone()); // [batch, 1, 1, 1]
                let sigma = gather_per_timestep(schedule.sqrt_one_minus_alpha_bar(), t); // [batch, 1, 1, 1]
                noise * alpha - x0 * sigma
            }
        }
    }

    /// Converts a model output at one shared `alpha_bar_t` (a sampler step) into
    /// `(pred_x0, pred_eps)`, with `x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps`.
    ///
    /// # Shapes
    /// - `model_output`, `x_t`: `[batch, channels, height, width]`
    pub fn split<B: Backend>(
        self,
        model_output: Tensor<B, 4>,
        x_t: Tensor<B, 4>,
        alpha_bar_t: f64,
    ) -> Prediction<B> {
        let sqrt_alpha_bar = alpha_bar_t.sqrt();
        let sqrt_one_minus_alpha_bar = (1.0 - alpha_bar_t).sqrt();
        match self {
            Self::Epsilon => Prediction {
                pred_x0: (x_t - model_output.clone().mul_scalar(sqrt_one_minus_alpha_bar))
                    .div_scalar(sqrt_alpha_bar),
                pred_eps: model_output,
            },
            Self::Sample => Prediction {
                pred_eps: (x_t - model_output.clone().mul_scalar(sqrt_alpha_bar))
                    .div_scalar(sqrt_one_minus_alpha_bar),
                pred_x0: model_output,
            },
            Self::VPrediction => Prediction {
                pred_x0: x_t.clone().mul_scalar(sqrt_alpha_bar)
                    - model_output.clone().mul_scalar(sqrt_one_minus_alpha_bar),
                pred_eps: model_output.mul_scalar(sqrt_alpha_bar)
                    + x_t.mul_scalar(sqrt_one_minus_alpha_bar),
            },
        }
    }

    /// As [`Self::split`], with each batch element at its own timestep (training previews,
    /// x0-space losses).
    ///
    /// # Shapes
    /// - `model_output`, `x_t`: `[batch, channels, height, width]`
    /// - `t`: `[batch]`
    pub fn split_per_element<B: Backend>(
        self,
        schedule: &NoiseSchedule,
        model_output: Tensor<B, 4>,
        x_t: Tensor<B, 4>,
        t: Tensor<B, 1, Int>,
    ) -> Prediction<B> {
        let alpha = gather_per_timestep(schedule.sqrt_alpha_bar(), t.clone()); // [batch, 1, 1, 1]
        let sigma = gather_per_timestep(schedule.sqrt_one_minus_alpha_bar(), t); // [batch, 1, 1, 1]
        match self {
            Self::Epsilon => Prediction {
                pred_x0: (x_t - model_output.clone() * sigma) / alpha,
                pred_eps: model_output,
            },
            Self::Sample => Prediction {
                pred_eps: (x_t - model_output.clone() * alpha) / sigma,
                pred_x0: model_output,
            },
            Self::VPrediction => Prediction {
                pred_x0: x_t.clone() * alpha.clone() - model_output.clone() * sigma.clone(),
                pred_eps: model_output * alpha + x_t * sigma,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::{q_sample, timesteps_tensor};
    use crate::tests::{TestBackend, assert_close};
    use crate::{NoiseRng, ScheduleConfig};

    const ALL: [PredictionType; 3] = [
        PredictionType::Epsilon,
        PredictionType::Sample,
        PredictionType::VPrediction,
    ];

    #[test]
    fn target_then_split_recovers_x0_and_noise_for_every_type() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let mut rng = NoiseRng::seed_from_u64(4);
        let x0 = rng.gaussian_tensor::<TestBackend, 4>([4, 1, 2, 2], &device);
        let noise = rng.gaussian_tensor::<TestBackend, 4>([4, 1, 2, 2], &device);
        let steps = [0, 10, 400, 900];
        let t = timesteps_tensor::<TestBackend>(&steps, &device);
        let x_t = q_sample(&schedule, x0.clone(), noise.clone(), t.clone());
        for prediction in ALL {
            let target = prediction.target(&schedule, x0.clone(), noise.clone(), t.clone());
            let split =
                prediction.split_per_element(&schedule, target.clone(), x_t.clone(), t.clone());
            // Tolerance: eps -> x0 divides by sqrt(alpha_bar_900) = 0.2, amplifying f32 rounding.
            assert_close(split.pred_x0, x0.clone(), 1e-4);
            assert_close(split.pred_eps, noise.clone(), 1e-4);
            // The scalar path must agree with the per-element one at a shared timestep.
            let shared = timesteps_tensor::<TestBackend>(&[400; 4], &device);
            let x_shared = q_sample(&schedule, x0.clone(), noise.clone(), shared.clone());
            let target = prediction.target(&schedule, x0.clone(), noise.clone(), shared);
            let split = prediction.split(target, x_shared, schedule.alpha_bar()[400]);
            assert_close(split.pred_x0, x0.clone(), 1e-4);
            assert_close(split.pred_eps, noise.clone(), 1e-4);
        }
    }

    #[test]
    fn v_target_matches_its_definition() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let x0 = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device);
        let noise = Tensor::<TestBackend, 4>::ones([1, 1, 1, 1], &device).mul_scalar(2.0);
        let t = timesteps_tensor::<TestBackend>(&[250], &device);
        let v = PredictionType::VPrediction.target(&schedule, x0, noise, t);
        let expected =
            2.0 * schedule.sqrt_alpha_bar()[250] - schedule.sqrt_one_minus_alpha_bar()[250];
        let v = v.into_scalar() as f64;
        assert!((v - expected).abs() < 1e-6, "{v} vs {expected}");
    }

    #[test]
    fn serde_names_are_short_with_diffusers_aliases() {
        assert_eq!(
            serde_json::to_string(&PredictionType::Epsilon).unwrap(),
            "\"eps\""
        );
        assert_eq!(
            serde_json::to_string(&PredictionType::Sample).unwrap(),
            "\"x0\""
        );
        assert_eq!(
            serde_json::to_string(&PredictionType::VPrediction).unwrap(),
            "\"v\""
        );
        for (name, expected) in [
            ("\"epsilon\"", PredictionType::Epsilon),
            ("\"sample\"", PredictionType::Sample),
            ("\"v_prediction\"", PredictionType::VPrediction),
        ] {
            assert_eq!(
                serde_json::from_str::<PredictionType>(name).unwrap(),
                expected
            );
        }
        assert!(serde_json::from_str::<PredictionType>("\"flow\"").is_err());
    }
}
