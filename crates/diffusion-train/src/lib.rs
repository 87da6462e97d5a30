//! Training: datasets, the training step, EMA, checkpoints and the loop.
//!
//! Reads in workflow order: `data` (datasets and the batcher), `config` (the experiment as one
//! JSON), `step` (noise, forward, loss, clipping, AdamW, EMA), `checkpoint` (atomic run-directory
//! layout and resume), `trainer` (the loop) and `inference` (rebuild a trained network from a run
//! directory).

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod ema;
pub mod error;
pub mod grad_clip;
pub mod image_grid;
pub mod inference;
pub mod lr_schedule;
pub mod metrics;
pub mod objective;
pub mod observer;
pub mod optim;
pub mod trainer;

pub use config::{PreviewConfig, TrainConfig};
pub use ema::{EmaConfig, EmaWarmup, ema_update};
pub use error::TrainError;
pub use grad_clip::{clip_grad_norm, global_grad_norm};
pub use image_grid::{image_grid, save_image_grid, tensor_to_images};
pub use inference::{load_checkpoint_for_inference, load_run_for_inference};
pub use lr_schedule::{LrDecay, LrScheduleConfig};
pub use metrics::{METRICS_FILE, MetricsRecord};
pub use objective::DiffusionObjective;
pub use observer::{NoObserver, StepProgress, TrainEvent, TrainObserver};
pub use optim::OptimizerConfig;
pub use trainer::{TrainSummary, Trainer};

#[cfg(test)]
pub(crate) mod tests {
    /// CPU backend of the unit tests.
    pub type TestBackend = burn::backend::Flex;
    /// Its autodiff wrapper.
    pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;
}
