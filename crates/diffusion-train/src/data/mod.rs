//! Datasets, preprocessing and the batcher.
