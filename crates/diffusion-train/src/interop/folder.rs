//! Reading a diffusers folder: a model folder (`config.json` and its weights, maybe
//! `scheduler_config.json`) or a pipeline folder (`unet/`, `scheduler/`).
//!
//! Weights are read with burn-store: `diffusion_pytorch_model.safetensors` through its
//! safetensors store, else `diffusion_pytorch_model.bin` through its PyTorch (pickle) reader.
//! The tensors are then mapped by diffusers name with `UNet::load_diffusers_state`, whose
//! errors name the diffusers tensor (missing, extra, wrong shape).

use std::path::{Path, PathBuf};

use burn_store::pytorch::PytorchReader;
use burn_store::{ModuleStore, SafetensorsStore, TensorSnapshot};
use diffusion_nets::UNetConfig;
use diffusion_nets::unet::DiffusersState;
use serde_json::Value;

use super::scheduler::{ImportedSchedule, schedule_from_diffusers};
use crate::TrainError;

/// The weights file diffusers writes with `safe_serialization=True` (the default).
pub const SAFETENSORS_FILE: &str = "diffusion_pytorch_model.safetensors";
/// The pickle diffusers wrote before safetensors (google/ddpm-* still ship it).
pub const BIN_FILE: &str = "diffusion_pytorch_model.bin";
/// The model's config.
pub const MODEL_CONFIG_FILE: &str = "config.json";
/// The scheduler's config.
pub const SCHEDULER_CONFIG_FILE: &str = "scheduler_config.json";

/// Everything read from a diffusers folder, not yet turned into a network.
#[derive(Debug)]
pub struct DiffusersModel {
    /// The network `config.json` describes.
    pub config: UNetConfig,
    /// From `scheduler_config.json`; `None` when the folder has none.
    pub schedule: Option<ImportedSchedule>,
    /// Every tensor of the weights file, by diffusers name, as f32.
    pub state: DiffusersState,
    /// The weights file read.
    pub weights_file: PathBuf,
}

pub(crate) fn import_error(path: &Path, message: impl Into<String>) -> TrainError {
    TrainError::Diffusers {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Where the model's and the scheduler's files are: `dir` itself, or `dir/unet` and
/// `dir/scheduler` for a pipeline folder.
fn locate(dir: &Path) -> Result<(PathBuf, Option<PathBuf>), TrainError> {
    if !dir.is_dir() {
        return Err(import_error(dir, "is not a directory"));
    }
    let (model_dir, scheduler_dir) = if dir.join(MODEL_CONFIG_FILE).is_file() {
        (dir.to_path_buf(), dir.to_path_buf())
    } else if dir.join("unet").join(MODEL_CONFIG_FILE).is_file() {
        (dir.join("unet"), dir.join("scheduler"))
    } else {
        return Err(import_error(
            dir,
            "has neither config.json nor unet/config.json: not a diffusers model or pipeline folder",
        ));
    };
    let scheduler = scheduler_dir.join(SCHEDULER_CONFIG_FILE);
    Ok((model_dir, scheduler.is_file().then_some(scheduler)))
}

fn read_json(path: &Path) -> Result<Value, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| import_error(path, e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| import_error(path, format!("is not JSON: {e}")))
}

/// Reads the folder at `dir`: the network and schedule its configs describe and every tensor
/// of its weights. Fails naming the file and the option or tensor at fault.
pub fn read_diffusers_folder(dir: &Path) -> Result<DiffusersModel, TrainError> {
    let (model_dir, scheduler_file) = locate(dir)?;
    let config_file = model_dir.join(MODEL_CONFIG_FILE);
    let config = UNetConfig::from_diffusers_config(&read_json(&config_file)?)
        .map_err(|e| import_error(&config_file, e.to_string()))?;
    let schedule = match &scheduler_file {
        Some(file) => Some(schedule_from_diffusers(&read_json(file)?).map_err(
            |(option, message)| {
                import_error(
                    file,
                    format!("cannot map diffusers option `{option}`: {message}"),
                )
            },
        )?),
        None => None,
    };
    let (weights_file, snapshots) = read_weights(&model_dir)?;
    let mut state = DiffusersState::new();
    for (name, snapshot) in snapshots {
        let data = snapshot
            .to_data()
            .map_err(|e| import_error(&weights_file, format!("tensor `{name}`: {e:?}")))?;
        let data = data.convert::<f32>();
        state.insert(name, data);
    }
    Ok(DiffusersModel {
        config,
        schedule,
        state,
        weights_file,
    })
}

/// The tensors of the safetensors file, else of the `.bin` pickle, in `model_dir`.
fn read_weights(model_dir: &Path) -> Result<(PathBuf, Vec<(String, TensorSnapshot)>), TrainError> {
    let safetensors = model_dir.join(SAFETENSORS_FILE);
    if safetensors.is_file() {
        let mut store = SafetensorsStore::from_file(&safetensors);
        let snapshots = store
            .get_all_snapshots()
            .map_err(|e| {
                import_error(
                    &safetensors,
                    format!("not a readable safetensors file: {e}"),
                )
            })?
            .iter()
            .map(|(name, s)| (name.clone(), s.clone()))
            .collect();
        return Ok((safetensors, snapshots));
    }
    let bin = model_dir.join(BIN_FILE);
    if bin.is_file() {
        let reader = PytorchReader::new(&bin)
            .map_err(|e| import_error(&bin, format!("not a readable PyTorch file: {e}")))?;
        return Ok((bin, reader.into_tensors().into_iter().collect()));
    }
    Err(import_error(
        model_dir,
        format!("has no weights: neither {SAFETENSORS_FILE} nor {BIN_FILE}"),
    ))
}
