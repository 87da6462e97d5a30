//! The layout of a run directory, owned here: every path of a run comes from [`RunDir`].
//!
//! ```text
//! run/
//!   .lock                    advisory lock held by the one trainer (checkpoint/lock.rs)
//!   config.json              the whole experiment, rewritten at every (re)start
//!   metrics.jsonl            one JSON line per logged step (metrics.rs)
//!   samples/step-N.png       preview grids (trainer/preview.rs)
//!   checkpoints/step-N/      model, EMA, optimizer, state, config, manifest (checkpoint/)
//!   checkpoints/step-N.damaged/   a checkpoint found damaged, kept aside, never deleted
//! ```

use std::path::{Path, PathBuf};

use crate::checkpoint::{RunLock, checkpoint_name, list_checkpoints};
use crate::{TrainConfig, TrainError};

/// The run's config.
pub const CONFIG_FILE: &str = "config.json";
/// Sub-directory holding the checkpoints.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The metrics log.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// Sub-directory holding the preview grids (and, by default, `sample`'s grids).
pub const SAMPLES_DIR: &str = "samples";
/// The lock file.
pub const LOCK_FILE: &str = ".lock";

/// A run directory: where a run's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run directory at `root` (nothing is created or checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `config.json`.
    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }

    /// `checkpoints/`.
    pub fn checkpoints_dir(&self) -> PathBuf {
        self.root.join(CHECKPOINTS_DIR)
    }

    /// `checkpoints/step-NNNNNNNN/`, the checkpoint taken after `step` optimizer steps.
    pub fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.checkpoints_dir().join(checkpoint_name(step))
    }

    /// `metrics.jsonl`.
    pub fn metrics_file(&self) -> PathBuf {
        self.root.join(METRICS_FILE)
    }

    /// `samples/`.
    pub fn samples_dir(&self) -> PathBuf {
        self.root.join(SAMPLES_DIR)
    }

    /// `samples/step-NNNNNNNN.png`, the preview grid of `step`.
    pub fn preview_file(&self, step: usize) -> PathBuf {
        self.samples_dir()
            .join(format!("{}.png", checkpoint_name(step)))
    }

    /// `.lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Takes the run's lock (see [`RunLock`]).
    pub fn lock(&self) -> Result<RunLock, TrainError> {
        RunLock::acquire(&self.root)
    }

    /// The complete checkpoints, oldest first, as `(step, directory)`.
    pub fn checkpoints(&self) -> Result<Vec<(usize, PathBuf)>, TrainError> {
        list_checkpoints(&self.root)
    }

    /// The run's `config.json`; `None` when the run has none yet.
    pub fn read_config(&self) -> Result<Option<TrainConfig>, TrainError> {
        let path = self.config_file();
        if !path.is_file() {
            return Ok(None);
        }
        TrainConfig::from_file(&path).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_a_run_comes_from_here() {
        let run = RunDir::new("runs/a");
        assert_eq!(run.config_file(), Path::new("runs/a/config.json"));
        assert_eq!(
            run.checkpoint_dir(12),
            Path::new("runs/a/checkpoints/step-00000012")
        );
        assert_eq!(run.metrics_file(), Path::new("runs/a/metrics.jsonl"));
        assert_eq!(
            run.preview_file(3),
            Path::new("runs/a/samples/step-00000003.png")
        );
        assert_eq!(run.lock_file(), Path::new("runs/a/.lock"));
    }

    #[test]
    fn a_run_without_a_config_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert!(run.read_config().unwrap().is_none());
        assert!(run.checkpoints().unwrap().is_empty());
        std::fs::write(run.config_file(), "{").unwrap();
        assert!(run.read_config().is_err());
    }
}
