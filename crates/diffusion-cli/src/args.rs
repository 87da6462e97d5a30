//! Flags that several commands share, written once.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use diffusion_core::schedule::{BetaSchedule, ScheduleConfig};
use diffusion_core::{
    DdpmVariance, NoiseSchedule, PredictionType, Sampler, SamplerConfig, SamplerError,
    TimestepSpacing,
};
use diffusion_train::checkpoint::CheckpointChoice;
use diffusion_train::data::{DataConfig, DatasetSource};
use diffusion_train::{LoadedRun, load_run};
use serde::de::DeserializeOwned;

/// A trained run to load: its directory, which checkpoint, which weights.
#[derive(Debug, Args, Clone)]
pub struct RunFlags {
    /// Run directory written by `train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Load the checkpoint of this step (`info --run DIR` lists them) and nothing else;
    /// default: the newest readable one, passing over damaged newer ones with a warning.
    #[arg(long, value_name = "STEP")]
    pub checkpoint: Option<usize>,
    /// Use the raw weights instead of their exponential moving average.
    #[arg(long)]
    pub no_ema: bool,
}

impl RunFlags {
    /// Loads the run, with one warning line for each damaged checkpoint passed over.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<LoadedRun<B>> {
        if !self.run.is_dir() {
            bail!(
                "run directory {} does not exist: train one with `diffusion-cli train --run {}`",
                self.run.display(),
                self.run.display()
            );
        }
        let choice = match self.checkpoint {
            Some(step) => CheckpointChoice::Step(step),
            None => CheckpointChoice::NewestReadable,
        };
        let run = load_run::<B>(&self.run, choice, !self.no_ema, device)?;
        for skipped in &run.skipped {
            let _ = writeln!(
                std::io::stderr(),
                "warning: passing over checkpoint {} ({}); using step {}",
                skipped.dir.display(),
                skipped.error,
                run.step
            );
        }
        Ok(run)
    }
}

/// Parses a library value from its name in the JSON configs (its serde name: `scaled-linear`,
/// `v`, `residual-attention`, diffusers' aliases such as `v_prediction` too), so that the
/// command line, the config files and `info` spell every value the same way and the library
/// enum is the only list of them. An unknown name gets serde's "expected one of" list.
pub fn config_name<T: DeserializeOwned>(name: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|e| e.to_string())
}

/// A sampler by its name (`ddpm`, `ddim`, `dpm++`, `euler`, ...) with the library's defaults.
fn sampler_name(name: &str) -> Result<SamplerConfig, String> {
    SamplerConfig::named(name).map_err(|e| e.to_string())
}

/// Which sampler, with how many steps, and the options of its steps.
#[derive(Debug, Args, Clone)]
pub struct SamplerFlags {
    /// Sampler: ddpm (ancestral, all T steps unless --steps), ddim (50 steps unless --steps),
    /// dpm++ (DPM-Solver++(2M)), dpm++-sde (its SDE variant), euler, euler-a (Euler
    /// ancestral), heun (2 model evaluations per step) or unipc (UniPC bh2), these 20 steps
    /// unless --steps [default: ddim; denoise: ddpm].
    #[arg(long, value_parser = sampler_name, value_name = "NAME")]
    pub sampler: Option<SamplerConfig>,
    /// Karras et al. (2022)'s sigma spacing (diffusers' use_karras_sigmas): "DPM++ 2M Karras"
    /// with --sampler dpm++; dpm++, dpm++-sde, euler, euler-a, heun and unipc only.
    #[arg(long)]
    pub karras: bool,
    /// Number of denoising steps over the whole chain, in 1..=T (default: the sampler's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Which timesteps the steps visit: leading (ends at t = 0), trailing (starts at t = T-1;
    /// better at few steps), linspace (both ends) or quadratic (dense near the data)
    /// [default: the sampler's, leading for ddpm and ddim].
    #[arg(long, value_parser = config_name::<TimestepSpacing>, value_name = "SPACING")]
    pub spacing: Option<TimestepSpacing>,
    /// DDPM's step variance: fixed-small (the posterior's, beta_tilde_t) or fixed-large
    /// (beta_t) [default: fixed-small]; ddpm only.
    #[arg(long, value_parser = config_name::<DdpmVariance>, value_name = "VARIANCE")]
    pub variance: Option<DdpmVariance>,
    /// Clip the predicted x0 to [-RANGE, RANGE] at every step (RANGE 1 when left out; for
    /// dpm++ and unipc this is diffusers' thresholding with sample_max_value 1). ddpm and ddim
    /// clip to [-1, 1] by default, the others do not.
    #[arg(long, value_name = "RANGE", num_args = 0..=1, default_missing_value = "1")]
    pub clip: Option<f64>,
    /// Do not clip the predicted x0 (turns off the default clip of ddpm and ddim).
    #[arg(long)]
    pub no_clip: bool,
    /// DDIM's eta in [0, 1]: 0 is deterministic, 1 is as noisy as DDPM [default: 0].
    #[arg(long)]
    pub eta: Option<f64>,
}

impl SamplerFlags {
    /// The sampler asked for (`default` when none was named), with the flags applied; a flag
    /// the sampler does not use is an error naming it.
    pub fn config(&self, default: SamplerConfig) -> Result<SamplerConfig> {
        let mut config = self.sampler.clone().unwrap_or(default);
        if self.steps.is_some() {
            config = config.with_num_steps(self.steps);
        }
        if let Some(eta) = self.eta {
            match &mut config {
                SamplerConfig::Ddim(c) => c.eta = eta,
                _ => bail!("--eta applies to --sampler ddim only"),
            }
        }
        if let Some(spacing) = self.spacing {
            config = config.with_spacing(spacing);
        }
        if self.karras {
            config = config
                .with_karras(true)
                .map_err(|e| anyhow!("--karras: {e}"))?;
        }
        if let Some(variance) = self.variance {
            config = config
                .with_variance(variance)
                .map_err(|e| anyhow!("--variance: {e}"))?;
        }
        match (self.clip, self.no_clip) {
            (Some(_), true) => bail!("--clip and --no-clip contradict each other: give one"),
            (Some(range), false) => {
                config = config.with_clip(Some(range));
            }
            (None, true) => {
                config = config.with_clip(None);
            }
            (None, false) => {}
        }
        Ok(config)
    }

    /// Builds `config` for a run's schedule; a bad value of a flag (steps outside the
    /// sampler's range, a clip range that is not > 0) is an error naming the flag.
    pub fn init<B: Backend>(
        config: &SamplerConfig,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<Box<dyn Sampler<B> + Send>> {
        config.init::<B>(schedule, prediction).map_err(|err| {
            let flag = match &err {
                SamplerError::OutOfRange { field, .. } => match *field {
                    "num_steps" => Some("--steps"),
                    "clip_sample_range" => Some("--clip"),
                    "eta" => Some("--eta"),
                    _ => None,
                },
                _ => None,
            };
            match (flag, &err) {
                (Some(flag), SamplerError::OutOfRange { value, allowed, .. }) => anyhow!(
                    "{flag} {value} is out of range for --sampler {}: must be {allowed}",
                    config.name()
                ),
                _ => anyhow!(err),
            }
        })
    }
}

/// The beta schedule; each flag left out keeps the value it replaces (the run's config, or the
/// library's default).
#[derive(Debug, Args, Clone)]
pub struct ScheduleFlags {
    /// Beta schedule: linear (Ho et al. 2020), scaled-linear (Stable Diffusion), cosine
    /// (Nichol & Dhariwal 2021) or sigmoid [default: linear].
    #[arg(long, value_parser = config_name::<BetaSchedule>, value_name = "NAME")]
    pub schedule: Option<BetaSchedule>,
    /// Number of diffusion timesteps T (at least 1) [default: 1000].
    #[arg(long)]
    pub timesteps: Option<usize>,
    /// First beta (linear, scaled-linear, sigmoid); in (0, 1) [default: 1e-4].
    #[arg(long)]
    pub beta_start: Option<f64>,
    /// Last beta (linear, scaled-linear, sigmoid); in [beta-start, 1) [default: 0.02].
    #[arg(long)]
    pub beta_end: Option<f64>,
    /// Rescale the betas to zero terminal SNR (Lin et al. 2023).
    #[arg(long)]
    pub zero_terminal_snr: bool,
}

impl ScheduleFlags {
    /// `base` with the flags given applied.
    pub fn apply(&self, mut base: ScheduleConfig) -> ScheduleConfig {
        if let Some(schedule) = self.schedule {
            base.schedule = schedule;
        }
        if let Some(t) = self.timesteps {
            base.num_timesteps = t;
        }
        if let Some(b) = self.beta_start {
            base.beta_start = b;
        }
        if let Some(b) = self.beta_end {
            base.beta_end = b;
        }
        if self.zero_terminal_snr {
            base.rescale_zero_terminal_snr = true;
        }
        base
    }
}

/// Where real images come from.
#[derive(Debug, Args, Clone)]
pub struct DataFlags {
    /// Dataset: mnist-sample (bundled), mnist, fashion-mnist, cifar10, or folder:PATH.
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<DatasetSource>,
    /// Where fetched datasets live (default: $DIFFUSION_DATA, else ./data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataFlags {
    /// `base` with the flags given applied.
    pub fn apply(&self, mut base: DataConfig) -> DataConfig {
        if let Some(dataset) = &self.dataset {
            base.dataset = dataset.clone();
        }
        if let Some(dir) = &self.data_dir {
            base.data_dir = Some(dir.display().to_string());
        }
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffusion_core::{DdimConfig, DdpmConfig, DpmSolverConfig};
    use diffusion_nets::UNetVariant;

    #[test]
    fn library_values_parse_by_their_config_names() {
        assert_eq!(
            config_name::<BetaSchedule>("scaled-linear"),
            Ok(BetaSchedule::ScaledLinear)
        );
        assert_eq!(
            config_name::<PredictionType>("v"),
            Ok(PredictionType::VPrediction)
        );
        assert_eq!(
            config_name::<PredictionType>("v_prediction"),
            Ok(PredictionType::VPrediction)
        );
        assert_eq!(
            config_name::<UNetVariant>("residual-attention"),
            Ok(UNetVariant::ResidualAttention)
        );
        let err = config_name::<BetaSchedule>("quadratic").unwrap_err();
        assert!(
            err.contains("expected one of") && err.contains("cosine"),
            "{err}"
        );
    }

    #[test]
    fn samplers_take_the_library_defaults_and_the_flags() {
        let flags = |sampler: &str, steps, eta| SamplerFlags {
            sampler: Some(sampler_name(sampler).unwrap()),
            steps,
            spacing: None,
            karras: false,
            variance: None,
            clip: None,
            no_clip: false,
            eta,
        };
        let default = SamplerConfig::default();
        assert_eq!(
            flags("ddim", None, None).config(default.clone()).unwrap(),
            SamplerConfig::Ddim(DdimConfig::new())
        );
        assert_eq!(
            flags("dpm++", Some(7), None)
                .config(default.clone())
                .unwrap(),
            SamplerConfig::DpmSolver(DpmSolverConfig::new().with_num_steps(7))
        );
        assert_eq!(
            flags("ddim", Some(9), Some(0.5))
                .config(default.clone())
                .unwrap(),
            SamplerConfig::Ddim(DdimConfig::new().with_num_steps(9).with_eta(0.5))
        );
        assert!(
            flags("ddpm", None, Some(0.5))
                .config(default.clone())
                .is_err()
        );
        assert!(sampler_name("nope").unwrap_err().contains("ddim"));
    }

    #[test]
    fn step_options_reach_the_sampler_or_name_the_flag() {
        let flags = |sampler: &str| SamplerFlags {
            sampler: Some(sampler_name(sampler).unwrap()),
            steps: Some(10),
            spacing: Some(TimestepSpacing::Trailing),
            karras: false,
            variance: None,
            clip: None,
            no_clip: false,
            eta: None,
        };
        let default = SamplerConfig::default();
        let ddpm = SamplerFlags {
            variance: Some(DdpmVariance::FixedLarge),
            clip: Some(2.5),
            ..flags("ddpm")
        };
        let expected = DdpmConfig::new()
            .with_num_steps(Some(10))
            .with_spacing(TimestepSpacing::Trailing)
            .with_variance(DdpmVariance::FixedLarge)
            .with_clip_sample_range(2.5);
        assert_eq!(
            ddpm.config(default.clone()).unwrap(),
            SamplerConfig::Ddpm(expected)
        );
        let ddim = SamplerFlags {
            no_clip: true,
            ..flags("ddim")
        };
        let expected = DdimConfig::new()
            .with_num_steps(10)
            .with_spacing(TimestepSpacing::Trailing)
            .with_clip_sample(false);
        assert_eq!(
            ddim.config(default.clone()).unwrap(),
            SamplerConfig::Ddim(expected)
        );
        let refused = [
            (
                SamplerFlags {
                    variance: Some(DdpmVariance::FixedLarge),
                    ..flags("ddim")
                },
                "--variance",
            ),
            (
                SamplerFlags {
                    clip: Some(1.0),
                    no_clip: true,
                    ..flags("ddim")
                },
                "contradict",
            ),
            (
                SamplerFlags {
                    karras: true,
                    ..flags("ddim")
                },
                "--karras",
            ),
        ];
        let karras = SamplerFlags {
            karras: true,
            clip: Some(1.0),
            ..flags("dpm++")
        };
        assert_eq!(
            karras.config(default.clone()).unwrap(),
            SamplerConfig::DpmSolver(
                DpmSolverConfig::new()
                    .with_num_steps(10)
                    .with_spacing(TimestepSpacing::Trailing)
                    .with_karras(true)
                    .with_clip_sample(true)
            )
        );
        for (flags, needle) in refused {
            let err = flags.config(default.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "`{needle}` not in {err}");
        }
    }

    #[test]
    fn out_of_range_values_name_their_flag() {
        let schedule = diffusion_core::ScheduleConfig::new().init().unwrap();
        let init = |config: SamplerConfig| {
            SamplerFlags::init::<burn::backend::Flex>(&config, &schedule, PredictionType::Epsilon)
                .err()
                .map(|e| e.to_string())
        };
        let steps = init(SamplerConfig::Ddim(DdimConfig::new().with_num_steps(1001))).unwrap();
        assert!(
            steps.starts_with(
                "--steps 1001 is out of range for --sampler ddim: must be in 1..=1000"
            ),
            "{steps}"
        );
        let clip = init(SamplerConfig::Ddpm(
            DdpmConfig::new().with_clip_sample_range(0.0),
        ))
        .unwrap();
        assert!(clip.starts_with("--clip 0 is out of range"), "{clip}");
        assert_eq!(init(SamplerConfig::default()), None);
    }
}
