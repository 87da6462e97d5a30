//! Run directories and checkpoints: the lock, atomic checkpoint directories, and saving and
//! loading model, EMA, optimizer and training state.

pub mod files;
pub mod lock;
pub mod pick;
pub mod store;

use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use diffusion_nets::UNet;

pub use files::{
    CONFIG_FILE, CheckpointState, EMA_FILE, MANIFEST_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE,
    all_finite, check_same_model, load_module, read_config, read_state, verify_checkpoint,
};
pub use lock::RunLock;
pub use pick::{CheckpointChoice, Picked, SkippedCheckpoint, pick_checkpoint};
pub use store::{checkpoint_name, latest_checkpoint, list_checkpoints};

use crate::{TrainConfig, TrainError};

/// The optimizer of the training loop.
pub type TrainOptimizer<B> = OptimizerAdaptor<AdamW, UNet<B>, B>;

/// Everything a training run resumes from.
pub struct TrainingState<B: AutodiffBackend> {
    /// The trained network.
    pub model: UNet<B>,
    /// Its EMA, on the inner backend.
    pub ema: UNet<B::InnerBackend>,
    /// AdamW with its moments.
    pub optim: TrainOptimizer<B>,
    /// Step, data position and counters.
    pub state: CheckpointState,
}

/// Writes a checkpoint of `step = state.step` into `run_dir/checkpoints/` (temporary directory,
/// fsync, rename), then keeps only the newest `config.keep_last_checkpoints`. Non-finite
/// weights are refused before anything is written.
pub fn save_checkpoint<B: AutodiffBackend>(
    run_dir: &Path,
    config: &TrainConfig,
    model: &UNet<B>,
    ema: &UNet<B::InnerBackend>,
    optim: &TrainOptimizer<B>,
    state: &CheckpointState,
) -> Result<PathBuf, TrainError> {
    let model = model.valid();
    for (which, finite) in [("model", all_finite(&model)), ("ema", all_finite(ema))] {
        if !finite {
            return Err(TrainError::NonFiniteWeights {
                step: state.step,
                which,
            });
        }
    }
    // Serialize everything first, so that a failure leaves no directory behind.
    let model_bytes = files::record_to_bytes(model.into_record())?;
    let ema_bytes = files::record_to_bytes(ema.clone().into_record())?;
    let optim_bytes = files::record_to_bytes::<B, _>(optim.to_record())?;
    let state_json = serde_json::to_vec_pretty(state)
        .map_err(|e| TrainError::invalid("state", format!("cannot be written as JSON: {e}")))?;
    let config_json = config.to_json()?;
    // In writing order; state.json after the weights, the manifest of them all last.
    let files: [(&str, &[u8]); 5] = [
        (MODEL_FILE, &model_bytes),
        (EMA_FILE, &ema_bytes),
        (OPTIMIZER_FILE, &optim_bytes),
        (CONFIG_FILE, config_json.as_bytes()),
        (STATE_FILE, &state_json),
    ];
    let manifest = files::manifest_json(&files)?;
    let dir = store::write_checkpoint_dir(run_dir, state.step, |tmp| {
        for (name, bytes) in files {
            store::write_synced(&tmp.join(name), bytes)?;
        }
        store::write_synced(&tmp.join(MANIFEST_FILE), &manifest)
    })?;
    store::prune_checkpoints(run_dir, config.keep_last_checkpoints)?;
    Ok(dir)
}

/// Loads the checkpoint in `dir` for training with `config`. The network stored with the
/// checkpoint must be `config.model`; anything else is an error naming the differing fields.
pub fn load_checkpoint<B: AutodiffBackend>(
    dir: &Path,
    config: &TrainConfig,
    device: &B::Device,
) -> Result<TrainingState<B>, TrainError> {
    let state = read_state(dir)?;
    let stored = read_config(dir)?;
    check_same_model(dir, &stored.model, &config.model)?;
    let model = load_module(
        config.model.init::<B>(device)?,
        &dir.join(MODEL_FILE),
        device,
    )?;
    let ema = load_module(
        config.model.init::<B::InnerBackend>(device)?,
        &dir.join(EMA_FILE),
        device,
    )?;
    let optim_record = files::read_record::<B, _>(&dir.join(OPTIMIZER_FILE), device)?;
    let optim = config
        .optimizer
        .to_burn()
        .init::<B, UNet<B>>()
        .load_record(optim_record);
    Ok(TrainingState {
        model,
        ema,
        optim,
        state,
    })
}
