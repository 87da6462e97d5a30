//! Measuring sample quality against a dataset: the glue between `diffusion-eval` (metrics and
//! feature networks, which know nothing of datasets) and this crate's data and runs.
//!
//! Reads in workflow order: [`reference`] (which real images are the reference and which give
//! the floor, and their features, cached under the data directory), [`classifier`] (the small
//! CNN trained once per 28x28 grayscale dataset), [`sampling`] (images from a network in
//! batches, as `sample` draws them), [`evaluate`] (an [`Evaluator`]: extractors and reference
//! prepared once, then any number of sample sets scored into a [`QualityReport`]).
//!
//! Used by `diffusion-cli eval` and by the trainer's `eval_every`.

pub mod classifier;
pub mod evaluate;
pub mod reference;
pub mod sampling;

use std::path::PathBuf;

use crate::data::{DataConfig, DatasetSource};

pub use evaluate::{EvalSpec, Evaluator, MetricSet, QualityReport, SampleFeatures, Scores};
pub use reference::{RealImages, RealSplits};
pub use sampling::{SampleSpec, class_labels, conditioning, sample_in_batches};

/// Version of everything cached under [`eval_cache_dir`]; bumped whenever cached features
/// would change.
pub const CACHE_VERSION: u32 = 1;

/// What a long evaluation step reports, so that a caller can draw a progress bar. Every method
/// defaults to doing nothing.
pub trait QualityProgress {
    /// A phase of `total` units (images, or training steps) begins, e.g. `"sampling"`.
    fn begin(&mut self, _phase: &str, _total: usize) {}
    /// `done` units of the current phase are complete.
    fn advance(&mut self, _done: usize) {}
    /// The current phase is over.
    fn finish(&mut self) {}
    /// Something the user should know (a metric skipped and why, a cache written).
    fn note(&mut self, _message: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl QualityProgress for Silent {}

/// Where the reference features of a dataset are cached: `<data dir>/eval-cache/<dataset>/`
/// (next to its classifier), so that nothing is ever written into the bundled assets; `None`
/// for image folders, whose content can change under the same name (their features are
/// recomputed every time).
pub fn eval_cache_dir(data: &DataConfig) -> Option<PathBuf> {
    match data.dataset {
        DatasetSource::Folder { .. } => None,
        _ => Some(classifier::classifier_cache_dir(data)),
    }
}

/// The dataset's name as the CLI spells it (`folder:PATH` for folders).
pub fn dataset_name(source: &DatasetSource) -> String {
    match source {
        DatasetSource::MnistSample => "mnist-sample".into(),
        DatasetSource::Folder { path } => format!("folder:{path}"),
        other => other.fetch_name().unwrap_or_default().into(),
    }
}
