//! The one error type of the training crate.

use std::path::{Path, PathBuf};

use diffusion_core::{LossWeightingError, SamplerError, ScheduleError};
use diffusion_nets::NetError;

use crate::data::DataError;

/// Everything that can go wrong while configuring, training, checkpointing or loading a run.
///
/// Every variant names the file, directory or configuration field involved, so that the CLI can
/// print it as is.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is out of its allowed range.
    #[error("invalid training config: `{field}` {message}")]
    InvalidConfig {
        /// Dotted path of the offending field, e.g. `optimizer.lr`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },

    /// A configuration file could not be read or parsed.
    #[error("cannot read config {path}: {message}")]
    ConfigFile {
        /// The config file.
        path: PathBuf,
        /// Parser or I/O message.
        message: String,
    },

    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Another process holds the run directory's lock.
    #[error(
        "run directory {run_dir} is in use by another trainer (lock file {lock_file} is held); \
         wait for it to finish or use another run directory"
    )]
    RunLocked {
        /// The run directory.
        run_dir: PathBuf,
        /// The lock file.
        lock_file: PathBuf,
    },

    /// A diffusers folder cannot be imported or exported.
    #[error("{path}: {message}")]
    Diffusers {
        /// The file or directory at fault.
        path: PathBuf,
        /// The option, tensor or file problem, in one line.
        message: String,
    },

    /// No complete checkpoint exists in the run directory.
    #[error("no complete checkpoint in {run_dir}/checkpoints")]
    NoCheckpoint {
        /// The run directory.
        run_dir: PathBuf,
    },

    /// The run has checkpoints, and none of them can be read.
    #[error(
        "none of the {count} checkpoints in {run_dir}/checkpoints can be read; the newest: {newest}"
    )]
    NoReadableCheckpoint {
        /// The run directory.
        run_dir: PathBuf,
        /// How many checkpoints were tried.
        count: usize,
        /// Why the newest could not be read.
        newest: Box<TrainError>,
    },

    /// The checkpoint of a step the user named does not exist.
    #[error(
        "{run_dir} has no checkpoint of step {step}; it keeps {}",
        list_steps(kept)
    )]
    CheckpointNotFound {
        /// The run directory.
        run_dir: PathBuf,
        /// The step asked for.
        step: usize,
        /// The steps it has, oldest first.
        kept: Vec<usize>,
    },

    /// A checkpoint is unreadable: truncated, not a checkpoint, or written by another version.
    #[error("checkpoint {path} is unreadable: {message}")]
    CorruptCheckpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What failed.
        message: String,
    },

    /// The checkpoint was written for a different network than the one asked for.
    #[error("checkpoint {path} does not match the model: {message}")]
    ArchitectureMismatch {
        /// The checkpoint directory.
        path: PathBuf,
        /// Which part differs.
        message: String,
    },

    /// Too many optimizer steps in a row produced a non-finite loss or gradient.
    #[error(
        "training diverged: {consecutive} consecutive steps with a non-finite loss or gradient \
         (last at step {step}); lower the learning rate or enable gradient clipping"
    )]
    Diverged {
        /// The step at which training stopped.
        step: usize,
        /// How many non-finite steps in a row were seen.
        consecutive: usize,
    },

    /// The weights contain NaN or infinity; they are never written to a checkpoint.
    #[error("refusing to save a checkpoint at step {step}: the {which} weights are not finite")]
    NonFiniteWeights {
        /// The step.
        step: usize,
        /// `model` or `ema`.
        which: &'static str,
    },

    /// The run directory already holds checkpoints and resuming was not asked for.
    #[error(
        "run directory {run_dir} already holds checkpoints: resume it, or choose another \
         run directory"
    )]
    RunExists {
        /// The run directory.
        run_dir: PathBuf,
    },

    /// The dataset could not be opened or read.
    #[error(transparent)]
    Data(#[from] DataError),

    /// The network config is invalid or does not fit the data.
    #[error(transparent)]
    Net(#[from] NetError),

    /// The noise schedule config is invalid.
    #[error("invalid training config: `schedule`: {0}")]
    Schedule(#[from] ScheduleError),

    /// The loss weighting is invalid.
    #[error("invalid training config: `loss_weighting`: {0}")]
    LossWeighting(#[from] LossWeightingError),

    /// The preview sampler could not be built or run.
    #[error("preview sampler: {0}")]
    Sampler(#[from] SamplerError),

    /// An image could not be written.
    #[error("cannot write image {path}: {message}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// Encoder message.
        message: String,
    },

    /// A sample-quality metric failed, or the cache of its network is unusable.
    #[error(transparent)]
    Eval(#[from] diffusion_eval::EvalError),

    /// The classifier metrics were asked of a dataset they do not apply to.
    #[error(
        "the classifier metrics (FD-classifier, conditional accuracy) apply to labelled 28x28 \
         grayscale datasets only (mnist, fashion-mnist, mnist-sample, gray folders of 28x28 \
         images with class subfolders); `{dataset}` does not qualify: {problem}"
    )]
    ClassifierDataset {
        /// The dataset's key.
        dataset: String,
        /// Why it does not qualify.
        problem: String,
    },
}

fn list_steps(steps: &[usize]) -> String {
    if steps.is_empty() {
        return "none".into();
    }
    let steps: Vec<String> = steps.iter().map(ToString::to_string).collect();
    format!("steps {}", steps.join(", "))
}

impl TrainError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// Builds an [`TrainError::InvalidConfig`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_the_path() {
        let err = TrainError::invalid("optimizer.lr", "must be in (0, 1], got -1");
        assert!(err.to_string().contains("`optimizer.lr`"));
        let err = TrainError::RunLocked {
            run_dir: "runs/a".into(),
            lock_file: "runs/a/.lock".into(),
        };
        assert!(err.to_string().contains("runs/a"));
    }
}
