//! Measuring sample quality: metrics on feature matrices and the networks that extract them.
//!
//! Data flow: images (`[N, C, H, W]` tensors in `[-1, 1]`, the convention of the whole
//! workspace) go through a [`FeatureExtractor`] into [`Features`] (one row per image, f32);
//! [`stats`] turns features into Gaussian statistics in f64, and [`metrics`] compares two sets.
//!
//! - [`metrics`]: Fréchet distance (as pytorch-fid's `calculate_frechet_distance`), KID (as
//!   torch-fidelity), Inception Score, precision/recall (Kynkäänniemi et al. 2019).
//! - [`inception`]: Inception-v3 exactly as pytorch-fid's FID network (pool3, 2048-d), loading
//!   the official `pt_inception-2015-12-05-6726825d.pth`.
//! - [`classifier`]: a small CNN for 28x28 grayscale data (MNIST, Fashion-MNIST), whose
//!   penultimate features give "FD-classifier" and whose predictions give conditional accuracy.
//!
//! This crate depends on burn alone: it knows nothing of datasets, runs or samplers. Loading a
//! dataset's reference images, caching statistics and sampling from a run happen in
//! `diffusion-train` (`quality`) and the CLI.

pub mod classifier;
pub mod error;
pub mod extractor;
pub mod features;
pub mod inception;
pub mod metrics;
pub mod stats;

pub use error::EvalError;
pub use extractor::FeatureExtractor;
pub use features::Features;
