//! Rebuilding a trained network from a run directory alone.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use diffusion_core::NoiseSchedule;
use diffusion_nets::UNet;

use crate::checkpoint::{
    CheckpointChoice, EMA_FILE, MODEL_FILE, SkippedCheckpoint, load_module, pick_checkpoint,
    read_config, read_state, verify_checkpoint,
};
use crate::{TrainConfig, TrainError};

/// A trained network rebuilt from a run directory by [`load_run`].
#[derive(Debug)]
pub struct LoadedRun<B: Backend> {
    /// The run's config, as stored with the checkpoint.
    pub config: TrainConfig,
    /// The network (EMA weights or raw, as asked).
    pub model: UNet<B>,
    /// The noise schedule it was trained with.
    pub schedule: NoiseSchedule,
    /// The step of the checkpoint loaded.
    pub step: usize,
    /// Its directory.
    pub checkpoint: PathBuf,
    /// Newer checkpoints passed over because they could not be read, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// Loads the checkpoint of `run_dir` that `choice` names for sampling: its config, the network
/// (EMA weights when `use_ema`, the raw weights otherwise) and the noise schedule. The newest
/// readable checkpoint by default: damaged newer ones are passed over and listed in
/// [`LoadedRun::skipped`] (read-only: nothing is moved or deleted).
pub fn load_run<B: Backend>(
    run_dir: impl AsRef<Path>,
    choice: CheckpointChoice,
    use_ema: bool,
    device: &B::Device,
) -> Result<LoadedRun<B>, TrainError> {
    let run_dir = run_dir.as_ref();
    let picked = pick_checkpoint(run_dir, choice, |dir| {
        load_checkpoint_for_inference::<B>(dir, use_ema, device)
    })?
    .ok_or_else(|| TrainError::NoCheckpoint {
        run_dir: run_dir.to_path_buf(),
    })?;
    let (config, model, schedule) = picked.value;
    Ok(LoadedRun {
        config,
        model,
        schedule,
        step: picked.step,
        checkpoint: picked.dir,
        skipped: picked.skipped,
    })
}

/// [`load_run`] of the newest readable checkpoint, as a tuple; passed-over checkpoints are
/// logged as warnings.
pub fn load_run_for_inference<B: Backend>(
    run_dir: impl AsRef<Path>,
    use_ema: bool,
    device: &B::Device,
) -> Result<(TrainConfig, UNet<B>, NoiseSchedule), TrainError> {
    let run = load_run::<B>(run_dir, CheckpointChoice::NewestReadable, use_ema, device)?;
    for skipped in &run.skipped {
        tracing::warn!(checkpoint = %skipped.dir.display(), "passed over: {}", skipped.error);
    }
    Ok((run.config, run.model, run.schedule))
}

/// Loads one checkpoint directory for sampling (see [`load_run`]).
pub fn load_checkpoint_for_inference<B: Backend>(
    checkpoint_dir: &Path,
    use_ema: bool,
    device: &B::Device,
) -> Result<(TrainConfig, UNet<B>, NoiseSchedule), TrainError> {
    verify_checkpoint(checkpoint_dir)?;
    read_state(checkpoint_dir)?;
    let config = read_config(checkpoint_dir)?;
    let template = config.model.init::<B>(device)?;
    let file = if use_ema { EMA_FILE } else { MODEL_FILE };
    let model = load_module(template, &checkpoint_dir.join(file), device)?;
    let schedule = config.schedule.init()?;
    Ok((config, model, schedule))
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;

    #[test]
    fn a_run_without_checkpoints_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_run_for_inference::<TestBackend>(dir.path(), true, &Default::default())
            .unwrap_err();
        assert!(matches!(err, TrainError::NoCheckpoint { .. }));
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }
}
