//! A run directory from a diffusers folder, and a diffusers folder from a run directory. Both
//! are written into a temporary sibling and renamed at the end, so that a failure leaves no
//! directory behind.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn_store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, SafetensorsStore};
use diffusion_nets::{UNet, UNetConfig};

use super::folder::{
    MODEL_CONFIG_FILE, SAFETENSORS_FILE, SCHEDULER_CONFIG_FILE, import_error, read_diffusers_folder,
};
use super::scheduler::schedule_to_diffusers;
use crate::checkpoint::{CheckpointState, save_checkpoint};
use crate::{RunDir, TrainConfig, TrainError};

/// What [`import_diffusers_run`] wrote.
#[derive(Debug)]
pub struct ImportReport {
    /// The run's config.
    pub config: TrainConfig,
    /// The weights file read.
    pub weights_file: PathBuf,
    /// Whether the folder had a scheduler config (else the base config's schedule is kept).
    pub had_scheduler: bool,
    /// Sampling settings of the scheduler that `sample` needs flags for.
    pub notes: Vec<String>,
}

/// A fresh temporary directory next to `target`, removed on drop unless kept.
struct Staging {
    dir: PathBuf,
    keep: bool,
}

impl Staging {
    fn next_to(target: &Path) -> Result<Self, TrainError> {
        if target.exists() {
            return Err(import_error(
                target,
                "already exists; choose a new directory (nothing is overwritten)",
            ));
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| TrainError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir, keep: false })
    }

    fn finish(mut self, target: &Path) -> Result<(), TrainError> {
        std::fs::rename(&self.dir, target).map_err(|source| TrainError::Io {
            path: target.to_path_buf(),
            source,
        })?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Reads the diffusers folder `source` and writes the run directory `out`: `config.json`
/// (`base(&network)` with the imported network, schedule and prediction type) and a step-0 checkpoint
/// whose model and EMA are the imported weights and whose optimizer is fresh (AdamW without
/// moments), so that `sample`, `eval`, `denoise`, `info` and `train --resume` (fine-tuning)
/// take it as any run.
pub fn import_diffusers_run<B: AutodiffBackend>(
    source: &Path,
    out: &Path,
    base: impl FnOnce(&UNetConfig) -> Result<TrainConfig, TrainError>,
    device: &B::Device,
) -> Result<ImportReport, TrainError> {
    let imported = read_diffusers_folder(source)?;
    let mut config = base(&imported.config)?;
    if config.model.image_size != imported.config.image_size {
        config.data.image_size = Some(imported.config.image_size);
        config.data.pad_to = None;
    }
    if imported.config.num_classes.is_none() {
        config.p_uncond = 0.0;
    }
    config.model = imported.config;
    let mut notes = vec![];
    let had_scheduler = imported.schedule.is_some();
    if let Some(schedule) = imported.schedule {
        config.schedule = schedule.schedule;
        config.prediction_type = schedule.prediction_type;
        notes = schedule.notes;
    }
    config.validate()?;
    let model = config
        .model
        .init::<B>(device)?
        .load_diffusers_state(&imported.state)
        .map_err(|e| import_error(&imported.weights_file, e.to_string()))?;
    let ema = model.valid();
    let optim = config.optimizer.to_burn().init::<B, UNet<B>>();

    let staging = Staging::next_to(out)?;
    let run = RunDir::new(&staging.dir);
    write_file(&run.config_file(), config.to_json()?.as_bytes())?;
    let state = CheckpointState::new(0, config.seed);
    save_checkpoint(&staging.dir, &config, &model, &ema, &optim, &state)?;
    staging.finish(out)?;
    Ok(ImportReport {
        config,
        weights_file: imported.weights_file,
        had_scheduler,
        notes,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    std::fs::write(path, bytes).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `net` (built from `config.model`) as a diffusers model folder `out` that
/// `UNet2DModel.from_pretrained` and `DDPMScheduler.from_pretrained` load: `config.json`,
/// `diffusion_pytorch_model.safetensors` (f32, PyTorch layout and names, through burn-store's
/// PyTorch adapter and a key remapping for `to_out.0`) and `scheduler_config.json`.
pub fn export_diffusers_folder<B: Backend>(
    config: &TrainConfig,
    net: &UNet<B>,
    out: &Path,
) -> Result<(), TrainError> {
    let model_json = config.model.to_diffusers_config()?;
    let scheduler_json = schedule_to_diffusers(&config.schedule, config.prediction_type).map_err(
        |(field, message)| {
            TrainError::invalid(field, format!("cannot be exported to diffusers: {message}"))
        },
    )?;
    let staging = Staging::next_to(out)?;
    let pretty = |v: &serde_json::Value| {
        serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| TrainError::invalid("config", format!("cannot be written as JSON: {e}")))
    };
    write_file(
        &staging.dir.join(MODEL_CONFIG_FILE),
        pretty(&model_json)?.as_bytes(),
    )?;
    write_file(
        &staging.dir.join(SCHEDULER_CONFIG_FILE),
        pretty(&scheduler_json)?.as_bytes(),
    )?;
    let weights = staging.dir.join(SAFETENSORS_FILE);
    // burn says `to_out` where diffusers says `to_out.0` (a ModuleList of linear and dropout).
    let remap = KeyRemapper::new()
        .add_pattern(r"^(.*)\.to_out\.(weight|bias)$", "$1.to_out.0.$2")
        .map_err(|e| import_error(&weights, e.to_string()))?;
    let mut store = SafetensorsStore::from_file(&weights)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remap)
        .metadata("format", "pt");
    net.save_into(&mut store)
        .map_err(|e| import_error(&weights, format!("cannot write: {e}")))?;
    staging.finish(out)
}
