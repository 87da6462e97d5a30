//! The whole experiment as one JSON: `TrainConfig`, saved as `config.json` in every run directory
//! and every checkpoint, enough to rebuild the data pipeline, the network and the schedule.

use std::path::Path;

use burn::config::Config;
use diffusion_core::{DdimConfig, LossWeighting, PredictionType, SamplerConfig, ScheduleConfig};
use diffusion_nets::UNetConfig;

use crate::data::DataConfig;
use crate::{EmaConfig, LrScheduleConfig, OptimizerConfig, TrainError};

/// The presets shipped in `assets/configs/`, by name.
const PRESETS: [(&str, &str); 4] = [
    ("mnist", include_str!("../../../assets/configs/mnist.json")),
    (
        "fashion-mnist",
        include_str!("../../../assets/configs/fashion-mnist.json"),
    ),
    (
        "cifar10",
        include_str!("../../../assets/configs/cifar10.json"),
    ),
    (
        "cifar10-ddpm",
        include_str!("../../../assets/configs/cifar10-ddpm.json"),
    ),
];

/// The preview grids written during training.
#[derive(Config, Debug, PartialEq)]
pub struct PreviewConfig {
    /// Images per grid (class-conditional nets cycle through the classes); 1..=256.
    #[config(default = 16)]
    pub num_images: usize,
    /// Columns of the grid.
    #[config(default = 4)]
    pub columns: usize,
    /// Steps of the deterministic DDIM sampler used for the previews; 1..=1000.
    #[config(default = 50)]
    pub ddim_steps: usize,
}

impl PreviewConfig {
    /// The preview sampler: DDIM (eta 0) with `ddim_steps` steps and core's defaults.
    pub fn sampler(&self) -> SamplerConfig {
        SamplerConfig::Ddim(DdimConfig::new().with_num_steps(self.ddim_steps))
    }
}

/// Everything about one training run.
///
/// Training length is given either as `max_steps` (optimizer steps, counting the whole run
/// across resumes) or as `epochs` (converted to steps once the dataset size is known); set
/// exactly one. One optimizer step consumes `batch_size * grad_accum_steps` images.
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Dataset and preprocessing.
    pub data: DataConfig,
    /// The denoising network.
    pub model: UNetConfig,
    /// The noise schedule.
    #[config(default = "ScheduleConfig::new()")]
    pub schedule: ScheduleConfig,
    /// What the network predicts: `"eps"`, `"x0"` or `"v"`.
    #[config(default = "PredictionType::Epsilon")]
    pub prediction_type: PredictionType,
    /// Per-timestep loss weights: `"uniform"` or `{"min-snr": {"gamma": 5.0}}`.
    #[config(default = "LossWeighting::Uniform")]
    pub loss_weighting: LossWeighting,
    /// AdamW hyper-parameters and gradient clipping.
    #[config(default = "OptimizerConfig::new()")]
    pub optimizer: OptimizerConfig,
    /// Warm-up and decay of the learning rate.
    #[config(default = "LrScheduleConfig::new()")]
    pub lr_schedule: LrScheduleConfig,
    /// EMA of the weights (used for previews and, by default, for sampling).
    #[config(default = "EmaConfig::new()")]
    pub ema: EmaConfig,
    /// Images per forward pass (micro-batch); 1..=65536.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step; 1..=1024.
    #[config(default = 1)]
    pub grad_accum_steps: usize,
    /// Total optimizer steps of the run (across resumes); exclusive with `epochs`.
    pub max_steps: Option<usize>,
    /// Passes over the dataset, converted to optimizer steps; exclusive with `max_steps`.
    pub epochs: Option<usize>,
    /// Seed of everything random: initial weights, data order, timesteps, noise, dropout.
    #[config(default = 42)]
    pub seed: u64,
    /// Probability of replacing a label by the null class, for classifier-free guidance;
    /// in [0, 1), and only for class-conditional nets (`model.num_classes`).
    #[config(default = 0.0)]
    pub p_uncond: f64,
    /// Optimizer steps between checkpoints; >= 1.
    #[config(default = 1000)]
    pub checkpoint_every: usize,
    /// Optimizer steps between preview grids; 0 disables them.
    #[config(default = 1000)]
    pub sample_every: usize,
    /// Optimizer steps between lines of `metrics.jsonl`; >= 1.
    #[config(default = 50)]
    pub log_every: usize,
    /// Complete checkpoints kept on disk (older ones are deleted); >= 1.
    #[config(default = 3)]
    pub keep_last_checkpoints: usize,
    /// Training stops with an error after this many consecutive steps with a non-finite loss
    /// or gradient (each one is skipped); >= 1.
    #[config(default = 10)]
    pub max_consecutive_nonfinite: usize,
    /// Preview grids.
    #[config(default = "PreviewConfig::new()")]
    pub preview: PreviewConfig,
}

impl TrainConfig {
    /// A preset shipped in `assets/configs/` (`mnist`, `fashion-mnist`, `cifar10`,
    /// `cifar10-ddpm`), parsed and validated.
    pub fn preset(name: &str) -> Result<Self, TrainError> {
        let Some((_, json)) = PRESETS.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = PRESETS.iter().map(|(n, _)| *n).collect();
            return Err(TrainError::invalid(
                "preset",
                format!("`{name}` is unknown; known presets: {}", known.join(", ")),
            ));
        };
        let config = Self::from_json(json, Path::new(&format!("assets/configs/{name}.json")))?;
        config.validate()?;
        Ok(config)
    }

    /// Names of the shipped presets.
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(n, _)| *n).collect()
    }

    /// Reads a config file (not validated: call [`TrainConfig::validate`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TrainError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::ConfigFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_json(&text, path)
    }

    fn from_json(text: &str, path: &Path) -> Result<Self, TrainError> {
        serde_json::from_str(text).map_err(|e| TrainError::ConfigFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The config as pretty JSON. A failure is an error, never an empty string: an empty
    /// `config.json` would make a checkpoint that looks complete and cannot be resumed.
    pub fn to_json(&self) -> Result<String, TrainError> {
        serde_json::to_string_pretty(self)
            .map_err(|e| TrainError::invalid("config", format!("cannot be written as JSON: {e}")))
    }

    /// Checks every field against its allowed range; the error names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.data.validate()?;
        self.model.validate()?;
        self.schedule.validate()?;
        self.loss_weighting.validate()?;
        self.optimizer.validate()?;
        self.lr_schedule.validate()?;
        self.ema.validate()?;
        let ranges: [(&str, usize, usize, usize); 6] = [
            ("batch_size", self.batch_size, 1, 65_536),
            ("grad_accum_steps", self.grad_accum_steps, 1, 1024),
            ("checkpoint_every", self.checkpoint_every, 1, usize::MAX),
            ("log_every", self.log_every, 1, usize::MAX),
            (
                "keep_last_checkpoints",
                self.keep_last_checkpoints,
                1,
                10_000,
            ),
            (
                "max_consecutive_nonfinite",
                self.max_consecutive_nonfinite,
                1,
                usize::MAX,
            ),
        ];
        for (field, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                let upper = if max == usize::MAX {
                    String::new()
                } else {
                    max.to_string()
                };
                return Err(TrainError::invalid(
                    field,
                    format!("must be in {min}..={upper}, got {value}"),
                ));
            }
        }
        match (self.max_steps, self.epochs) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(TrainError::invalid(
                    "max_steps",
                    "set exactly one of `max_steps` and `epochs`",
                ));
            }
            (Some(0), _) => return Err(TrainError::invalid("max_steps", "must be >= 1, got 0")),
            (_, Some(0)) => return Err(TrainError::invalid("epochs", "must be >= 1, got 0")),
            _ => {}
        }
        if self.schedule.rescale_zero_terminal_snr
            && self.prediction_type == PredictionType::Epsilon
        {
            return Err(TrainError::invalid(
                "prediction_type",
                "eps cannot be trained with a zero terminal SNR schedule: at the last step the \
                 image is pure noise, so x0 cannot be recovered from the predicted noise; predict \
                 v or x0 instead (`--prediction v`)",
            ));
        }
        if !(0.0..1.0).contains(&self.p_uncond) {
            return Err(TrainError::invalid(
                "p_uncond",
                format!("must be in [0, 1), got {}", self.p_uncond),
            ));
        }
        if self.p_uncond > 0.0 && self.model.num_classes.is_none() {
            return Err(TrainError::invalid(
                "p_uncond",
                "needs a class-conditional net: set `model.num_classes` or p_uncond = 0",
            ));
        }
        if !(1..=256).contains(&self.preview.num_images) {
            return Err(TrainError::invalid(
                "preview.num_images",
                format!("must be in 1..=256, got {}", self.preview.num_images),
            ));
        }
        if !(1..=1000).contains(&self.preview.ddim_steps) {
            return Err(TrainError::invalid(
                "preview.ddim_steps",
                format!("must be in 1..=1000, got {}", self.preview.ddim_steps),
            ));
        }
        if self.preview.columns == 0 {
            return Err(TrainError::invalid(
                "preview.columns",
                "must be >= 1, got 0",
            ));
        }
        Ok(())
    }

    /// Total optimizer steps of the run for a dataset of `dataset_len` images.
    pub fn total_steps(&self, dataset_len: usize) -> usize {
        match (self.max_steps, self.epochs) {
            (Some(steps), _) => steps,
            (None, Some(epochs)) => {
                let batches = dataset_len.div_ceil(self.batch_size.max(1));
                (epochs * batches)
                    .div_ceil(self.grad_accum_steps.max(1))
                    .max(1)
            }
            (None, None) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn every_preset_parses_validates_and_round_trips() {
        for name in TrainConfig::preset_names() {
            let config = TrainConfig::preset(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let back: TrainConfig = serde_json::from_str(&config.to_json().unwrap()).unwrap();
            assert_eq!(back, config, "{name}");
        }
        assert!(TrainConfig::preset("imagenet").is_err());
    }

    #[test]
    fn cifar10_ddpm_is_the_paper_recipe() {
        let config = TrainConfig::preset("cifar10-ddpm").unwrap();
        assert_eq!(config.schedule.num_timesteps, 1000);
        assert_eq!(config.schedule.beta_start, 1e-4);
        assert_eq!(config.schedule.beta_end, 0.02);
        assert_eq!(config.optimizer.lr, 2e-4);
        assert_eq!(config.optimizer.weight_decay, 0.0);
        assert_eq!(config.optimizer.grad_clip_norm, Some(1.0));
        assert_eq!(config.lr_schedule.warmup_steps, 5000);
        assert_eq!(config.batch_size * config.grad_accum_steps, 128);
        assert_eq!(config.ema.decay, 0.9999);
        assert_eq!(config.model.dropout, 0.1);
        assert_eq!(config.data.random_flip, Some(true));
        assert_eq!(config.prediction_type, PredictionType::Epsilon);
        assert_eq!(config.model.num_classes, None);
        let params = config
            .model
            .init::<crate::tests::TestBackend>(&Default::default())
            .unwrap()
            .num_params();
        assert!(
            (35_600_000..35_800_000).contains(&params),
            "{params} parameters, the paper's net has 35.7M"
        );
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let base = TrainConfig::preset("mnist").unwrap();
        let cases: Vec<(TrainConfig, &str)> = vec![
            (base.clone().with_batch_size(0), "batch_size"),
            (base.clone().with_grad_accum_steps(0), "grad_accum_steps"),
            (base.clone().with_epochs(Some(3)), "max_steps"),
            (base.clone().with_max_steps(Some(0)), "max_steps"),
            (base.clone().with_p_uncond(1.0), "p_uncond"),
            (
                base.clone().with_keep_last_checkpoints(0),
                "keep_last_checkpoints",
            ),
            (base.clone().with_checkpoint_every(0), "checkpoint_every"),
            (
                base.clone()
                    .with_optimizer(OptimizerConfig::new().with_lr(-1.0)),
                "optimizer.lr",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        let mut unconditional = base.clone();
        unconditional.model.num_classes = None;
        let err = unconditional.with_p_uncond(0.1).validate().unwrap_err();
        assert!(err.to_string().contains("p_uncond"));
    }

    #[test]
    fn epochs_convert_to_optimizer_steps() {
        let config = TrainConfig::preset("mnist")
            .unwrap()
            .with_max_steps(None)
            .with_epochs(Some(2))
            .with_batch_size(64)
            .with_grad_accum_steps(2);
        // 1000 images -> 16 micro-batches per epoch -> 32 micro-batches -> 16 steps
        assert_eq!(config.total_steps(1000), 16);
        assert_eq!(config.with_grad_accum_steps(3).total_steps(1000), 11);
    }

    #[test]
    fn unreadable_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, "{ not json").unwrap();
        let err = TrainConfig::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
        let err = TrainConfig::from_file(dir.path().join("missing.json")).unwrap_err();
        assert!(err.to_string().contains("missing.json"));
    }
}
