//! The schedule as data: which beta sequence, its parameters, and their validation.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use super::{NoiseSchedule, betas};

/// The family of beta sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end, T)` (Ho et al. 2020).
    Linear,
    /// Linear in `sqrt(beta)`, then squared (Stable Diffusion's "scaled_linear").
    #[serde(alias = "scaled_linear")]
    ScaledLinear,
    /// Nichol & Dhariwal (2021), diffusers' "squaredcos_cap_v2".
    #[serde(alias = "squaredcos_cap_v2")]
    Cosine,
    /// `sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start`.
    Sigmoid,
}

impl Config for BetaSchedule {}

/// Configuration of a [`NoiseSchedule`].
#[derive(Config, Debug, PartialEq)]
pub struct ScheduleConfig {
    /// Number of diffusion timesteps `T`; at least 1.
    #[config(default = 1000)]
    pub num_timesteps: usize,
    /// The beta sequence.
    #[config(default = "BetaSchedule::Linear")]
    pub schedule: BetaSchedule,
    /// First beta of the linear, scaled-linear and sigmoid schedules; in (0, 1).
    #[config(default = 1e-4)]
    pub beta_start: f64,
    /// Last beta of the linear, scaled-linear and sigmoid schedules; in [beta_start, 1).
    #[config(default = 0.02)]
    pub beta_end: f64,
    /// Offset `s` of the cosine schedule; finite and > 0.
    #[config(default = 0.008)]
    pub cosine_s: f64,
    /// Upper clip of the cosine schedule's betas; in (0, 1).
    #[config(default = 0.999)]
    pub max_beta: f64,
    /// Rescale to zero terminal SNR (Lin et al. 2023); the last beta becomes 1. Needs T >= 2,
    /// and a v- or x0-predicting model: at `alpha_bar_T = 0` an eps prediction says nothing
    /// about `x0`.
    #[config(default = false)]
    pub rescale_zero_terminal_snr: bool,
}

/// Why a [`ScheduleConfig`] cannot be turned into a schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    /// A parameter lies outside its allowed range.
    #[error("invalid schedule `{field}` = {value}: must be {allowed}")]
    OutOfRange {
        /// The config field.
        field: &'static str,
        /// The rejected value, printed.
        value: String,
        /// The allowed range, in words.
        allowed: String,
    },
    /// The computed betas left (0, 1), which a valid config should never do.
    #[error("schedule produced beta[{index}] = {value}, outside (0, 1)")]
    InvalidBeta {
        /// Timestep of the offending beta.
        index: usize,
        /// The offending beta.
        value: f64,
    },
}

fn out_of_range(
    field: &'static str,
    value: impl ToString,
    allowed: impl Into<String>,
) -> ScheduleError {
    ScheduleError::OutOfRange {
        field,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

fn check_open_unit(field: &'static str, value: f64) -> Result<(), ScheduleError> {
    if value.is_finite() && value > 0.0 && value < 1.0 {
        Ok(())
    } else {
        Err(out_of_range(field, value, "in (0, 1)"))
    }
}

impl ScheduleConfig {
    /// Checks every field used by the chosen schedule, naming the first bad one.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.num_timesteps == 0 {
            return Err(out_of_range("num_timesteps", 0, ">= 1"));
        }
        match self.schedule {
            BetaSchedule::Linear | BetaSchedule::ScaledLinear | BetaSchedule::Sigmoid => {
                check_open_unit("beta_start", self.beta_start)?;
                check_open_unit("beta_end", self.beta_end)?;
                if self.beta_start > self.beta_end {
                    return Err(out_of_range(
                        "beta_start",
                        self.beta_start,
                        format!("<= beta_end ({})", self.beta_end),
                    ));
                }
            }
            BetaSchedule::Cosine => {
                if !(self.cosine_s.is_finite() && self.cosine_s > 0.0) {
                    return Err(out_of_range("cosine_s", self.cosine_s, "finite and > 0"));
                }
                check_open_unit("max_beta", self.max_beta)?;
            }
        }
        if self.rescale_zero_terminal_snr && self.num_timesteps < 2 {
            return Err(out_of_range(
                "num_timesteps",
                self.num_timesteps,
                ">= 2 when rescale_zero_terminal_snr is set",
            ));
        }
        Ok(())
    }

    /// Computes the betas and every derived quantity, in f64.
    pub fn init(&self) -> Result<NoiseSchedule, ScheduleError> {
        self.validate()?;
        let t = self.num_timesteps;
        let mut betas = match self.schedule {
            BetaSchedule::Linear => betas::linear(self.beta_start, self.beta_end, t),
            BetaSchedule::ScaledLinear => betas::scaled_linear(self.beta_start, self.beta_end, t),
            BetaSchedule::Sigmoid => betas::sigmoid(self.beta_start, self.beta_end, t),
            BetaSchedule::Cosine => betas::cosine(self.cosine_s, self.max_beta, t),
        };
        if self.rescale_zero_terminal_snr {
            betas = betas::rescale_zero_terminal_snr(&betas);
        }
        NoiseSchedule::from_betas_allowing_terminal_one(betas, self.rescale_zero_terminal_snr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(error: ScheduleError) -> &'static str {
        match error {
            ScheduleError::OutOfRange { field, .. } => field,
            other => panic!("expected OutOfRange, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_ddpm_linear_1000() {
        let config = ScheduleConfig::new();
        assert_eq!(config.num_timesteps, 1000);
        assert_eq!(config.schedule, BetaSchedule::Linear);
        let schedule = config.init().unwrap();
        assert_eq!(schedule.num_timesteps(), 1000);
        assert_eq!(schedule.betas()[0], 1e-4);
    }

    #[test]
    fn seed_schedules_build() {
        for (start, end, t) in [(1e-4, 0.02, 1000), (2e-4, 0.04, 500)] {
            let schedule = ScheduleConfig::new()
                .with_beta_start(start)
                .with_beta_end(end)
                .with_num_timesteps(t)
                .init()
                .unwrap();
            assert_eq!(schedule.num_timesteps(), t);
            assert!((schedule.betas()[t - 1] - end).abs() < 1e-15);
        }
    }

    #[test]
    fn any_positive_number_of_timesteps_works_for_every_family() {
        for schedule in [
            BetaSchedule::Linear,
            BetaSchedule::ScaledLinear,
            BetaSchedule::Cosine,
            BetaSchedule::Sigmoid,
        ] {
            for t in [1, 2, 7, 1000] {
                let built = ScheduleConfig::new()
                    .with_schedule(schedule)
                    .with_num_timesteps(t)
                    .init()
                    .unwrap();
                assert_eq!(built.betas().len(), t, "{schedule:?} T={t}");
            }
        }
    }

    #[test]
    fn zero_timesteps_is_rejected_naming_the_field() {
        let err = ScheduleConfig::new()
            .with_num_timesteps(0)
            .init()
            .unwrap_err();
        assert!(err.to_string().contains("num_timesteps"), "{err}");
        assert!(err.to_string().contains(">= 1"), "{err}");
    }

    #[test]
    fn bad_betas_are_rejected_naming_the_field() {
        let cases = [
            (ScheduleConfig::new().with_beta_start(0.0), "beta_start"),
            (ScheduleConfig::new().with_beta_start(-1e-4), "beta_start"),
            (ScheduleConfig::new().with_beta_end(1.0), "beta_end"),
            (ScheduleConfig::new().with_beta_end(f64::NAN), "beta_end"),
            (
                ScheduleConfig::new().with_beta_start(f64::INFINITY),
                "beta_start",
            ),
            (ScheduleConfig::new().with_beta_start(0.03), "beta_start"),
            (
                ScheduleConfig::new()
                    .with_schedule(BetaSchedule::Sigmoid)
                    .with_beta_end(1.5),
                "beta_end",
            ),
            (
                ScheduleConfig::new()
                    .with_schedule(BetaSchedule::ScaledLinear)
                    .with_beta_start(0.5)
                    .with_beta_end(0.1),
                "beta_start",
            ),
            (
                ScheduleConfig::new()
                    .with_schedule(BetaSchedule::Cosine)
                    .with_cosine_s(0.0),
                "cosine_s",
            ),
            (
                ScheduleConfig::new()
                    .with_schedule(BetaSchedule::Cosine)
                    .with_cosine_s(f64::NAN),
                "cosine_s",
            ),
            (
                ScheduleConfig::new()
                    .with_schedule(BetaSchedule::Cosine)
                    .with_max_beta(1.0),
                "max_beta",
            ),
            (
                ScheduleConfig::new()
                    .with_num_timesteps(1)
                    .with_rescale_zero_terminal_snr(true),
                "num_timesteps",
            ),
        ];
        for (config, field) in cases {
            let err = config.init().unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
            assert_eq!(field_of(err), field);
        }
    }

    #[test]
    fn cosine_ignores_linear_fields() {
        let schedule = ScheduleConfig::new()
            .with_schedule(BetaSchedule::Cosine)
            .with_beta_start(5.0)
            .init()
            .unwrap();
        assert!(schedule.betas().iter().all(|b| *b > 0.0 && *b < 1.0));
    }

    #[test]
    fn rescaled_schedule_has_one_as_last_beta_and_zero_terminal_snr() {
        let schedule = ScheduleConfig::new()
            .with_rescale_zero_terminal_snr(true)
            .init()
            .unwrap();
        assert_eq!(schedule.betas()[999], 1.0);
        assert_eq!(schedule.alpha_bar()[999], 0.0);
        assert_eq!(schedule.snr()[999], 0.0);
    }

    #[test]
    fn config_round_trips_through_json_with_kebab_case_names() {
        let config = ScheduleConfig::new()
            .with_schedule(BetaSchedule::ScaledLinear)
            .with_num_timesteps(500);
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"scaled-linear\""), "{json}");
        let back: ScheduleConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        for (name, expected) in [
            ("\"linear\"", BetaSchedule::Linear),
            ("\"cosine\"", BetaSchedule::Cosine),
            ("\"squaredcos_cap_v2\"", BetaSchedule::Cosine),
            ("\"sigmoid\"", BetaSchedule::Sigmoid),
            ("\"scaled_linear\"", BetaSchedule::ScaledLinear),
        ] {
            let parsed: BetaSchedule = serde_json::from_str(name).unwrap();
            assert_eq!(parsed, expected);
        }
        assert!(serde_json::from_str::<BetaSchedule>("\"quadratic\"").is_err());
    }
}
