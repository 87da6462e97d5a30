//! Flags that several commands share, written once.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use diffusion_core::SamplerConfig;
use diffusion_core::schedule::{BetaSchedule, ScheduleConfig};
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

/// A sampler by its config name (`ddpm`, `ddim`, `dpm++`) with the library's defaults.
fn sampler_name(name: &str) -> Result<SamplerConfig, String> {
    SamplerConfig::named(name).map_err(|e| e.to_string())
}

/// Which sampler, with how many steps.
#[derive(Debug, Args, Clone)]
pub struct SamplerFlags {
    /// Sampler: ddpm (ancestral, all T steps unless --steps), ddim (50 steps unless --steps)
    /// or dpm++ (DPM-Solver++(2M), 20 steps unless --steps) [default: ddim; denoise: ddpm].
    #[arg(long, value_parser = sampler_name, value_name = "NAME")]
    pub sampler: Option<SamplerConfig>,
    /// Number of denoising steps over the whole chain (default: the sampler's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// DDIM's eta in [0, 1]: 0 is deterministic, 1 is as noisy as DDPM [default: 0].
    #[arg(long)]
    pub eta: Option<f64>,
}

impl SamplerFlags {
    /// The sampler asked for (`default` when none was named), with the flags applied.
    pub fn config(&self, default: SamplerConfig) -> Result<SamplerConfig> {
        let mut config = self.sampler.clone().unwrap_or(default);
        match &mut config {
            SamplerConfig::Ddpm(c) => c.num_steps = self.steps.or(c.num_steps),
            SamplerConfig::Ddim(c) => {
                c.num_steps = self.steps.unwrap_or(c.num_steps);
                c.eta = self.eta.unwrap_or(c.eta);
            }
            SamplerConfig::DpmSolver(c) => c.num_steps = self.steps.unwrap_or(c.num_steps),
        }
        if self.eta.is_some() && !matches!(config, SamplerConfig::Ddim(_)) {
            bail!("--eta applies to --sampler ddim only");
        }
        Ok(config)
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
    use diffusion_core::{DdimConfig, DpmSolverConfig, PredictionType};
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
        assert!(sampler_name("euler").unwrap_err().contains("ddim"));
    }
}
