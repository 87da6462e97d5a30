//! One serialisable choice among the samplers, for experiment configs and the CLI.

use burn::config::Config;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::{DdimConfig, DdpmConfig, DpmSolverConfig, Sampler, SamplerError};
use crate::{NoiseSchedule, PredictionType};

/// Which sampler to build, with its parameters. In JSON: `{"ddim": {...}}`, `{"ddpm": {...}}`
/// or `{"dpm++": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerConfig {
    /// Ancestral DDPM.
    Ddpm(DdpmConfig),
    /// DDIM, deterministic or with `eta`.
    Ddim(DdimConfig),
    /// DPM-Solver++(2M).
    #[serde(rename = "dpm++", alias = "dpm-solver++", alias = "dpmsolver++")]
    DpmSolver(DpmSolverConfig),
}

impl Config for SamplerConfig {}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::Ddim(DdimConfig::new())
    }
}

impl SamplerConfig {
    /// The sampler of this JSON name (`ddpm`, `ddim`, `dpm++`, or one of the aliases
    /// `dpm-solver++`, `dpmsolver++`) with its default parameters.
    pub fn named(name: &str) -> Result<Self, SamplerError> {
        match name {
            "ddpm" => Ok(Self::Ddpm(DdpmConfig::new())),
            "ddim" => Ok(Self::Ddim(DdimConfig::new())),
            "dpm++" | "dpm-solver++" | "dpmsolver++" => Ok(Self::DpmSolver(DpmSolverConfig::new())),
            other => Err(SamplerError::OutOfRange {
                field: "name",
                value: format!("`{other}`"),
                allowed: "ddpm, ddim or dpm++".into(),
            }),
        }
    }

    /// Its JSON name: `ddpm`, `ddim` or `dpm++`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ddpm(_) => "ddpm",
            Self::Ddim(_) => "ddim",
            Self::DpmSolver(_) => "dpm++",
        }
    }

    /// Builds the chosen sampler for `schedule` and a model predicting `prediction`.
    pub fn init<B: Backend>(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Box<dyn Sampler<B> + Send>, SamplerError> {
        Ok(match self {
            Self::Ddpm(config) => Box::new(config.init(schedule, prediction)?),
            Self::Ddim(config) => Box::new(config.init(schedule, prediction)?),
            Self::DpmSolver(config) => Box::new(config.init::<B>(schedule, prediction)?),
        })
    }

    /// The same sampler with another number of steps (`None` means the full chain for DDPM
    /// and is ignored by the others).
    pub fn with_num_steps(self, num_steps: Option<usize>) -> Self {
        match (self, num_steps) {
            (Self::Ddpm(config), steps) => Self::Ddpm(config.with_num_steps(steps)),
            (Self::Ddim(config), Some(steps)) => Self::Ddim(config.with_num_steps(steps)),
            (Self::DpmSolver(config), Some(steps)) => Self::DpmSolver(config.with_num_steps(steps)),
            (other, None) => other,
        }
    }

    /// The same sampler starting its reverse process at `start_t`.
    pub fn with_start_t(self, start_t: Option<usize>) -> Self {
        match self {
            Self::Ddpm(config) => Self::Ddpm(config.with_start_t(start_t)),
            Self::Ddim(config) => Self::Ddim(config.with_start_t(start_t)),
            Self::DpmSolver(config) => Self::DpmSolver(config.with_start_t(start_t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;
    use crate::tests::TestBackend;

    #[test]
    fn names_are_the_json_names() {
        for name in ["ddpm", "ddim", "dpm++"] {
            let config = SamplerConfig::named(name).unwrap();
            assert_eq!(config.name(), name);
            let json = serde_json::to_value(&config).unwrap();
            assert!(json.get(name).is_some(), "{json}");
        }
        assert_eq!(
            SamplerConfig::named("dpm-solver++").unwrap().name(),
            "dpm++"
        );
        assert_eq!(
            SamplerConfig::named("ddim").unwrap(),
            SamplerConfig::Ddim(DdimConfig::new())
        );
        assert!(SamplerConfig::named("euler").is_err());
    }

    #[test]
    fn json_names_are_short_and_round_trip() {
        let configs = [
            SamplerConfig::Ddpm(DdpmConfig::new()),
            SamplerConfig::Ddim(DdimConfig::new().with_eta(0.5)),
            SamplerConfig::DpmSolver(DpmSolverConfig::new().with_num_steps(25)),
        ];
        for (config, name) in configs
            .into_iter()
            .zip(["\"ddpm\"", "\"ddim\"", "\"dpm++\""])
        {
            let json = serde_json::to_string(&config).unwrap();
            assert!(json.starts_with(&format!("{{{name}:")), "{json}");
            let back: SamplerConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, config);
        }
        let json = serde_json::to_string(&DpmSolverConfig::new()).unwrap();
        let aliased: SamplerConfig =
            serde_json::from_str(&format!("{{\"dpm-solver++\":{json}}}")).unwrap();
        assert_eq!(aliased, SamplerConfig::DpmSolver(DpmSolverConfig::new()));
    }

    #[test]
    fn builds_each_sampler_with_overrides() {
        let schedule = ScheduleConfig::new().init().unwrap();
        // Leading 10-step lists are 900, 800, ..., 0; DPM's linspace list is 999, 899, ..., 100.
        let cases = [
            (SamplerConfig::Ddpm(DdpmConfig::new()), 900, 10),
            (SamplerConfig::Ddim(DdimConfig::new()), 900, 10),
            (SamplerConfig::DpmSolver(DpmSolverConfig::new()), 899, 9),
        ];
        for (config, first, len) in cases {
            let sampler = config
                .with_num_steps(Some(10))
                .with_start_t(Some(950))
                .init::<TestBackend>(&schedule, PredictionType::Epsilon)
                .unwrap();
            let ts = sampler.timesteps();
            assert_eq!((ts[0], ts.len()), (first, len), "{ts:?}");
            assert_eq!(sampler.prediction_type(), PredictionType::Epsilon);
        }
    }

    #[test]
    fn invalid_overrides_surface_as_errors() {
        let schedule = ScheduleConfig::new().init().unwrap();
        let err = SamplerConfig::default()
            .with_num_steps(Some(0))
            .init::<TestBackend>(&schedule, PredictionType::Epsilon)
            .err()
            .unwrap();
        assert!(err.to_string().contains("num_steps"), "{err}");
    }
}
