//! Per-timestep loss weights. Min-SNR-gamma (Hang et al. 2023, "Efficient Diffusion Training
//! via Min-SNR Weighting Strategy") caps the weight of low-noise timesteps.

use burn::config::Config;
use burn::tensor::{Int, Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use crate::{NoiseSchedule, PredictionType, forward::gather_per_timestep};

/// How the per-element losses of a batch are weighted by their timestep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum LossWeighting {
    /// Every timestep weighs 1 (the "simple" loss of Ho et al. 2020).
    #[default]
    Uniform,
    /// Min-SNR-gamma: the x0-space weight `min(snr, gamma)`, expressed in the space of the
    /// prediction type. The paper recommends `gamma = 5`.
    MinSnr {
        /// Cap on the signal-to-noise ratio; finite and > 0.
        gamma: f64,
    },
}

impl Config for LossWeighting {}

/// A [`LossWeighting`] with a parameter out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid loss weighting `{field}` = {value}: must be {allowed}")]
pub struct LossWeightingError {
    /// The config field.
    pub field: &'static str,
    /// The rejected value.
    pub value: f64,
    /// The allowed range, in words.
    pub allowed: &'static str,
}

impl LossWeighting {
    /// Min-SNR with the paper's `gamma = 5`.
    pub fn min_snr_default() -> Self {
        Self::MinSnr { gamma: 5.0 }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), LossWeightingError> {
        match *self {
            Self::Uniform => Ok(()),
            Self::MinSnr { gamma } if gamma.is_finite() && gamma > 0.0 => Ok(()),
            Self::MinSnr { gamma } => Err(LossWeightingError {
                field: "gamma",
                value: gamma,
                allowed: "finite and > 0",
            }),
        }
    }

    /// The weight of every timestep, in the space of `prediction`:
    /// eps: `min(snr, gamma) / snr`, v: `min(snr, gamma) / (snr + 1)`, x0: `min(snr, gamma)`.
    pub fn table(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Vec<f64>, LossWeightingError> {
        self.validate()?;
        let gamma = match *self {
            Self::Uniform => return Ok(vec![1.0; schedule.num_timesteps()]),
            Self::MinSnr { gamma } => gamma,
        };
        Ok(schedule
            .snr()
            .iter()
            .map(|&snr| match prediction {
                // Written as min(1, gamma/snr) so that a zero terminal SNR gives 1, not 0/0.
                PredictionType::Epsilon => (gamma / snr).min(1.0),
                PredictionType::VPrediction => snr.min(gamma) / (snr + 1.0),
                PredictionType::Sample => snr.min(gamma),
            })
            .collect())
    }

    /// Per-element weights for a batch at timesteps `t`.
    ///
    /// # Shapes
    /// - `t`: `[batch]`
    /// - returns: `[batch]`
    pub fn weights<B: Backend>(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
        t: Tensor<B, 1, Int>,
    ) -> Result<Tensor<B, 1>, LossWeightingError> {
        let [batch] = t.dims();
        let table = self.table(schedule, prediction)?;
        Ok(gather_per_timestep(&table, t).reshape([batch]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;
    use crate::forward::timesteps_tensor;
    use crate::tests::TestBackend;

    #[test]
    fn uniform_is_all_ones() {
        let schedule = ScheduleConfig::new().init().unwrap();
        let table = LossWeighting::Uniform
            .table(&schedule, PredictionType::VPrediction)
            .unwrap();
        assert_eq!(table, vec![1.0; 1000]);
    }

    #[test]
    fn min_snr_matches_the_paper_in_each_space() {
        let schedule = ScheduleConfig::new().init().unwrap();
        let gamma = 5.0;
        let weighting = LossWeighting::MinSnr { gamma };
        let eps = weighting.table(&schedule, PredictionType::Epsilon).unwrap();
        let v = weighting
            .table(&schedule, PredictionType::VPrediction)
            .unwrap();
        let x0 = weighting.table(&schedule, PredictionType::Sample).unwrap();
        for t in [0, 100, 300, 999] {
            let snr = schedule.snr()[t];
            let capped = snr.min(gamma);
            assert!((eps[t] - capped / snr).abs() < 1e-12);
            assert!((v[t] - capped / (snr + 1.0)).abs() < 1e-12);
            assert!((x0[t] - capped).abs() < 1e-12);
        }
        // Low noise (t = 0, snr ~ 1e4) is down-weighted; high noise keeps eps weight 1.
        assert!(eps[0] < 1e-3);
        assert_eq!(eps[999], 1.0);
    }

    #[test]
    fn zero_terminal_snr_gives_finite_weights() {
        let schedule = ScheduleConfig::new()
            .with_rescale_zero_terminal_snr(true)
            .init()
            .unwrap();
        for prediction in [
            PredictionType::Epsilon,
            PredictionType::VPrediction,
            PredictionType::Sample,
        ] {
            let table = LossWeighting::min_snr_default()
                .table(&schedule, prediction)
                .unwrap();
            assert!(table.iter().all(|w| w.is_finite()), "{prediction:?}");
        }
    }

    #[test]
    fn weights_are_gathered_per_element() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let weighting = LossWeighting::min_snr_default();
        let t = timesteps_tensor::<TestBackend>(&[5, 999, 5], &device);
        let weights = weighting
            .weights(&schedule, PredictionType::Epsilon, t)
            .unwrap();
        assert_eq!(weights.dims(), [3]);
        let values = weights.into_data().to_vec::<f32>().unwrap();
        let table = weighting.table(&schedule, PredictionType::Epsilon).unwrap();
        assert_eq!(
            values,
            vec![table[5] as f32, table[999] as f32, table[5] as f32]
        );
    }

    #[test]
    fn bad_gamma_is_rejected_naming_the_field() {
        let schedule = ScheduleConfig::new().init().unwrap();
        for gamma in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = LossWeighting::MinSnr { gamma }
                .table(&schedule, PredictionType::Epsilon)
                .unwrap_err();
            assert!(err.to_string().contains("gamma"), "{err}");
        }
    }

    #[test]
    fn serde_uses_kebab_case() {
        let json = serde_json::to_string(&LossWeighting::MinSnr { gamma: 5.0 }).unwrap();
        assert_eq!(json, r#"{"min-snr":{"gamma":5.0}}"#);
        let back: LossWeighting = serde_json::from_str(&json).unwrap();
        assert_eq!(back, LossWeighting::MinSnr { gamma: 5.0 });
        assert_eq!(
            serde_json::from_str::<LossWeighting>("\"uniform\"").unwrap(),
            LossWeighting::Uniform
        );
    }
}
