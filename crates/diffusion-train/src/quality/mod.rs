//! Sample quality against a dataset: the dataset-side pieces of `eval` that
//! `diffusion-eval` (which knows no datasets) leaves to this crate.
//!
//! - [`classifier`]: the small CNN of 28x28 grayscale datasets, trained once per dataset on
//!   its train split and cached next to the data, whose features give FD-classifier and whose
//!   predictions give the conditional accuracy of class-conditional samples.

pub mod classifier;
