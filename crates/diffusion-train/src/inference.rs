//! Rebuilding a trained network from a run directory alone.

use std::path::Path;

use burn::tensor::backend::Backend;
use diffusion_core::NoiseSchedule;
use diffusion_nets::UNet;

use crate::checkpoint::{
    EMA_FILE, MODEL_FILE, latest_checkpoint, load_module, read_config, read_state,
};
use crate::{TrainConfig, TrainError};

/// Loads the newest complete checkpoint of `run_dir` for sampling: its config, the network
/// (EMA weights when `use_ema`, the raw weights otherwise) and the noise schedule.
pub fn load_run_for_inference<B: Backend>(
    run_dir: impl AsRef<Path>,
    use_ema: bool,
    device: &B::Device,
) -> Result<(TrainConfig, UNet<B>, NoiseSchedule), TrainError> {
    let run_dir = run_dir.as_ref();
    let (_, dir) = latest_checkpoint(run_dir)?.ok_or_else(|| TrainError::NoCheckpoint {
        run_dir: run_dir.to_path_buf(),
    })?;
    load_checkpoint_for_inference(&dir, use_ema, device)
}

/// [`load_run_for_inference`] for one checkpoint directory.
pub fn load_checkpoint_for_inference<B: Backend>(
    checkpoint_dir: &Path,
    use_ema: bool,
    device: &B::Device,
) -> Result<(TrainConfig, UNet<B>, NoiseSchedule), TrainError> {
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
