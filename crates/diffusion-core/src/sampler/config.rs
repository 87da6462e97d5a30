//! One serialisable choice among the samplers, for experiment configs and the CLI.

use burn::config::Config;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use super::{
    DdimConfig, DdpmConfig, DdpmVariance, DpmAlgorithm, DpmSolverConfig, Euler, Heun, Sampler,
    SamplerError, SigmaConfig, TimestepSpacing, UniPcConfig,
};
use crate::{NoiseSchedule, PredictionType};

/// Which sampler to build, with its parameters. In JSON: `{"ddim": {...}}`, `{"ddpm": {...}}`,
/// `{"dpm++": {...}}`, `{"euler": {...}}`, `{"euler-a": {...}}`, `{"heun": {...}}` or
/// `{"unipc": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerConfig {
    /// Ancestral DDPM.
    Ddpm(DdpmConfig),
    /// DDIM, deterministic or with `eta`.
    Ddim(DdimConfig),
    /// DPM-Solver++(2M), the ODE or the SDE variant, optionally with Karras sigmas.
    #[serde(rename = "dpm++", alias = "dpm-solver++", alias = "dpmsolver++")]
    DpmSolver(DpmSolverConfig),
    /// Euler (`EulerDiscreteScheduler`).
    Euler(SigmaConfig),
    /// Euler ancestral (`EulerAncestralDiscreteScheduler`).
    #[serde(rename = "euler-a", alias = "euler-ancestral")]
    EulerAncestral(SigmaConfig),
    /// Heun, second order (`HeunDiscreteScheduler`).
    Heun(SigmaConfig),
    /// UniPC (`UniPCMultistepScheduler`).
    #[serde(rename = "unipc")]
    UniPc(UniPcConfig),
}

impl Config for SamplerConfig {}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::Ddim(DdimConfig::new())
    }
}

/// The names [`SamplerConfig::named`] takes, for help texts and errors.
pub const SAMPLER_NAMES: &str = "ddpm, ddim, dpm++, dpm++-sde, euler, euler-a, heun or unipc";

impl SamplerConfig {
    /// The sampler of this name with its default parameters: `ddpm`, `ddim`, `dpm++` (also
    /// `dpm-solver++`, `dpmsolver++`), `dpm++-sde` (DPM-Solver++(2M) SDE), `euler`, `euler-a`
    /// (also `euler-ancestral`), `heun` or `unipc`.
    pub fn named(name: &str) -> Result<Self, SamplerError> {
        match name {
            "ddpm" => Ok(Self::Ddpm(DdpmConfig::new())),
            "ddim" => Ok(Self::Ddim(DdimConfig::new())),
            "dpm++" | "dpm-solver++" | "dpmsolver++" => Ok(Self::DpmSolver(DpmSolverConfig::new())),
            "dpm++-sde" | "sde-dpmsolver++" => Ok(Self::DpmSolver(
                DpmSolverConfig::new().with_algorithm(DpmAlgorithm::Sde),
            )),
            "euler" => Ok(Self::Euler(SigmaConfig::new())),
            "euler-a" | "euler-ancestral" => Ok(Self::EulerAncestral(SigmaConfig::new())),
            "heun" => Ok(Self::Heun(SigmaConfig::new())),
            "unipc" => Ok(Self::UniPc(UniPcConfig::new())),
            other => Err(SamplerError::OutOfRange {
                field: "name",
                value: format!("`{other}`"),
                allowed: SAMPLER_NAMES.into(),
            }),
        }
    }

    /// Its name, as [`SamplerConfig::named`] takes it (`dpm++-sde` for the SDE variant, whose
    /// JSON key is `dpm++`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ddpm(_) => "ddpm",
            Self::Ddim(_) => "ddim",
            Self::DpmSolver(config) if config.algorithm == DpmAlgorithm::Sde => "dpm++-sde",
            Self::DpmSolver(_) => "dpm++",
            Self::Euler(_) => "euler",
            Self::EulerAncestral(_) => "euler-a",
            Self::Heun(_) => "heun",
            Self::UniPc(_) => "unipc",
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
            Self::Euler(config) => Box::new(Euler::new(config, schedule, prediction)?),
            Self::EulerAncestral(config) => {
                Box::new(Euler::ancestral(config, schedule, prediction)?)
            }
            Self::Heun(config) => Box::new(Heun::<B>::new(config, schedule, prediction)?),
            Self::UniPc(config) => Box::new(config.init::<B>(schedule, prediction)?),
        })
    }

    /// The same sampler with another number of steps (`None` means the full chain for DDPM
    /// and is ignored by the others).
    pub fn with_num_steps(self, num_steps: Option<usize>) -> Self {
        let Some(steps) = num_steps else {
            return match self {
                Self::Ddpm(config) => Self::Ddpm(config.with_num_steps(None)),
                other => other,
            };
        };
        match self {
            Self::Ddpm(config) => Self::Ddpm(config.with_num_steps(Some(steps))),
            Self::Ddim(config) => Self::Ddim(config.with_num_steps(steps)),
            Self::DpmSolver(config) => Self::DpmSolver(config.with_num_steps(steps)),
            Self::Euler(config) => Self::Euler(config.with_num_steps(steps)),
            Self::EulerAncestral(config) => Self::EulerAncestral(config.with_num_steps(steps)),
            Self::Heun(config) => Self::Heun(config.with_num_steps(steps)),
            Self::UniPc(config) => Self::UniPc(config.with_num_steps(steps)),
        }
    }

    /// The same sigma-based sampler (DPM-Solver++, Euler, Euler ancestral, Heun, UniPC) with
    /// or without Karras sigmas; asking DDPM or DDIM for them is an error.
    pub fn with_karras(self, karras: bool) -> Result<Self, SamplerError> {
        match self {
            Self::DpmSolver(config) => Ok(Self::DpmSolver(config.with_karras(karras))),
            Self::Euler(config) => Ok(Self::Euler(config.with_karras(karras))),
            Self::EulerAncestral(config) => Ok(Self::EulerAncestral(config.with_karras(karras))),
            Self::Heun(config) => Ok(Self::Heun(config.with_karras(karras))),
            Self::UniPc(config) => Ok(Self::UniPc(config.with_karras(karras))),
            other if !karras => Ok(other),
            other => Err(not_used("karras", other.name())),
        }
    }

    /// The same sampler with another timestep spacing (every sampler has one).
    pub fn with_spacing(self, spacing: TimestepSpacing) -> Self {
        match self {
            Self::Ddpm(config) => Self::Ddpm(config.with_spacing(spacing)),
            Self::Ddim(config) => Self::Ddim(config.with_spacing(spacing)),
            Self::DpmSolver(config) => Self::DpmSolver(config.with_spacing(spacing)),
            Self::Euler(config) => Self::Euler(config.with_spacing(spacing)),
            Self::EulerAncestral(config) => Self::EulerAncestral(config.with_spacing(spacing)),
            Self::Heun(config) => Self::Heun(config.with_spacing(spacing)),
            Self::UniPc(config) => Self::UniPc(config.with_spacing(spacing)),
        }
    }

    /// The same DDPM sampler with another step variance; an error for the other samplers,
    /// which have none to choose.
    pub fn with_variance(self, variance: DdpmVariance) -> Result<Self, SamplerError> {
        match self {
            Self::Ddpm(config) => Ok(Self::Ddpm(config.with_variance(variance))),
            other => Err(not_used("variance", other.name())),
        }
    }

    /// The same sampler with the predicted `x0` clipped to `[-range, range]` (`Some`) or not
    /// clipped (`None`). DDPM and DDIM clip to `[-1, 1]` by default, the others do not.
    pub fn with_clip(self, clip: Option<f64>) -> Self {
        let (on, range) = (clip.is_some(), clip.unwrap_or(1.0));
        macro_rules! clipped {
            ($variant:ident, $config:expr) => {
                Self::$variant($config.with_clip_sample(on).with_clip_sample_range(range))
            };
        }
        match self {
            Self::Ddpm(config) => clipped!(Ddpm, config),
            Self::Ddim(config) => clipped!(Ddim, config),
            Self::DpmSolver(config) => clipped!(DpmSolver, config),
            Self::Euler(config) => clipped!(Euler, config),
            Self::EulerAncestral(config) => clipped!(EulerAncestral, config),
            Self::Heun(config) => clipped!(Heun, config),
            Self::UniPc(config) => clipped!(UniPc, config),
        }
    }

    /// The same sampler starting its reverse process at `start_t`.
    pub fn with_start_t(self, start_t: Option<usize>) -> Self {
        match self {
            Self::Ddpm(config) => Self::Ddpm(config.with_start_t(start_t)),
            Self::Ddim(config) => Self::Ddim(config.with_start_t(start_t)),
            Self::DpmSolver(config) => Self::DpmSolver(config.with_start_t(start_t)),
            Self::Euler(config) => Self::Euler(config.with_start_t(start_t)),
            Self::EulerAncestral(config) => Self::EulerAncestral(config.with_start_t(start_t)),
            Self::Heun(config) => Self::Heun(config.with_start_t(start_t)),
            Self::UniPc(config) => Self::UniPc(config.with_start_t(start_t)),
        }
    }
}

fn not_used(option: &'static str, sampler: &'static str) -> SamplerError {
    SamplerError::NotUsed { option, sampler }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;
    use crate::tests::TestBackend;

    #[test]
    fn names_are_the_json_names() {
        for name in ["ddpm", "ddim", "dpm++", "euler", "euler-a", "heun", "unipc"] {
            let config = SamplerConfig::named(name).unwrap();
            assert_eq!(config.name(), name);
            let json = serde_json::to_value(&config).unwrap();
            assert!(json.get(name).is_some(), "{json}");
            let back: SamplerConfig = serde_json::from_value(json).unwrap();
            assert_eq!(back, config);
        }
        let sde = SamplerConfig::named("dpm++-sde").unwrap();
        assert_eq!(sde.name(), "dpm++-sde");
        let json = serde_json::to_value(&sde).unwrap();
        assert_eq!(json["dpm++"]["algorithm"], "sde-dpmsolver++", "{json}");
        assert_eq!(
            SamplerConfig::named("dpm-solver++").unwrap().name(),
            "dpm++"
        );
        assert_eq!(
            SamplerConfig::named("ddim").unwrap(),
            SamplerConfig::Ddim(DdimConfig::new())
        );
        let err = SamplerConfig::named("lms").unwrap_err();
        assert!(err.to_string().contains("unipc"), "{err}");
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
    fn karras_is_refused_by_the_samplers_without_sigmas() {
        for name in ["ddpm", "ddim"] {
            let err = SamplerConfig::named(name)
                .unwrap()
                .with_karras(true)
                .unwrap_err();
            assert!(err.to_string().contains("karras"), "{err}");
            assert!(
                SamplerConfig::named(name)
                    .unwrap()
                    .with_karras(false)
                    .is_ok()
            );
        }
        for name in ["dpm++", "dpm++-sde", "euler", "euler-a", "heun", "unipc"] {
            let config = SamplerConfig::named(name)
                .unwrap()
                .with_karras(true)
                .unwrap();
            let json = serde_json::to_string(&config).unwrap();
            assert!(json.contains("\"karras\":true"), "{json}");
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
