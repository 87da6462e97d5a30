//! The one error type of the evaluation crate.

use std::path::PathBuf;

/// Everything that can go wrong while extracting features or computing a metric.
///
/// Every variant names what is involved (file, metric, shape), so that the CLI can print it as
/// one line.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Images or features of the wrong shape for an extractor or a metric.
    #[error("{0}")]
    Shape(String),

    /// A metric needs more samples than it was given.
    #[error("{metric} needs at least {need} samples, got {got}")]
    TooFewSamples {
        /// The metric, e.g. `KID`.
        metric: &'static str,
        /// The minimum.
        need: usize,
        /// What was given.
        got: usize,
    },

    /// A linear-algebra step failed (e.g. a non-finite covariance).
    #[error("{0}")]
    Linalg(String),

    /// A weights file is missing, unreadable or does not match the network.
    #[error("cannot load weights {path}: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong, and what to do about it.
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

    /// A cached file was written by another version or is damaged.
    #[error("cache file {path} is unusable ({message}); delete it to rebuild it")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },

    /// Features, statistics or logits contain NaN or infinity.
    #[error("{0}")]
    NonFinite(String),

    /// A metric's configuration is out of range.
    #[error("invalid {field}: {message}")]
    Config {
        /// The field, e.g. `KidConfig.subset_size`.
        field: &'static str,
        /// What is wrong and the allowed range.
        message: String,
    },
}
