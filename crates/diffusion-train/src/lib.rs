//! Training: datasets, the training step, EMA, checkpoints and the loop.

pub mod data;
