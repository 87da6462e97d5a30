//! Training: datasets, the training step, EMA, checkpoints and the loop.
//!
//! Reads in workflow order: [`data`] (datasets and the batcher), [`config`] (the experiment as
//! one JSON, with presets in `assets/configs/`), [`objective`] (draw `t` and noise, `q_sample`,
//! label dropping, weighted loss), [`grad_clip`], [`optim`], [`lr_schedule`] and [`ema`] (the
//! pieces of one optimizer step), [`checkpoint`] (the run directory: lock, atomic checkpoints,
//! resume), [`metrics`] and [`observer`] (what the loop reports), [`trainer`] (the loop) and
//! [`inference`] (rebuild a trained network from a run directory); [`interop`] turns a
//! diffusers `UNet2DModel` folder into a run directory and back. [`mod@image_grid`] writes the
//! preview grids and is shared with the CLI.
//!
//! Every random draw of a step derives from `(seed, step)`, so a run stopped and resumed is
//! bit-identical to an uninterrupted one on the same backend.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod ema;
pub mod error;
pub mod grad_clip;
pub mod image_grid;
pub mod inference;
pub mod interop;
pub mod lr_schedule;
pub mod metrics;
pub mod objective;
pub mod observer;
pub mod optim;
pub mod quality;
pub mod run_dir;
pub mod seeds;
pub mod trainer;

pub use config::{PreviewConfig, TrainConfig};
pub use ema::{EmaConfig, EmaWarmup, ema_update};
pub use error::TrainError;
pub use grad_clip::{clip_grad_norm, global_grad_norm};
pub use image_grid::{image_grid, save_image_grid, tensor_to_images};
pub use inference::{LoadedRun, load_checkpoint_for_inference, load_run, load_run_for_inference};
pub use lr_schedule::{LrDecay, LrScheduleConfig};
pub use metrics::MetricsRecord;
pub use objective::DiffusionObjective;
pub use observer::{NoObserver, StepProgress, TrainEvent, TrainObserver};
pub use optim::OptimizerConfig;
pub use run_dir::{METRICS_FILE, RunDir};
pub use trainer::{TrainSummary, Trainer, TrainingEval};

#[cfg(test)]
pub(crate) mod tests {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    use burn::tensor::backend::Backend;

    /// Every float parameter of `module`, in visiting order.
    pub fn flat<B: Backend, M: Module<B>>(module: &M) -> Vec<f32> {
        struct Values(Vec<f32>);
        impl<B: Backend> ModuleVisitor<B> for Values {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                self.0.extend(param.val().into_data().iter::<f32>());
            }
        }
        let mut values = Values(Vec::new());
        module.visit(&mut values);
        values.0
    }

    /// CPU backend of the unit tests.
    pub type TestBackend = burn::backend::Flex;
    /// Its autodiff wrapper.
    pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;

    /// A residual U-Net small enough for unit tests: 1x8x8 images, 2 levels of 8 and 16
    /// channels.
    pub fn tiny_unet_config(num_classes: Option<usize>) -> diffusion_nets::UNetConfig {
        diffusion_nets::UNetConfig::new(1, 8)
            .with_base_channels(8)
            .with_channel_mults(vec![1, 2])
            .with_num_res_blocks(1)
            .with_attention_resolutions(vec![])
            .with_norm_groups(4)
            .with_dropout(0.0)
            .with_variant(diffusion_nets::UNetVariant::Residual)
            .with_num_classes(num_classes)
    }

    /// A training config around [`tiny_unet_config`] with 3 classes.
    pub fn tiny_train_config() -> crate::TrainConfig {
        crate::TrainConfig::new(crate::data::DataConfig::new(), tiny_unet_config(Some(3)))
            .with_max_steps(Some(4))
            .with_batch_size(4)
            .with_sample_every(0)
    }

    /// 12 gray 8x8 images in 3 classes.
    pub fn tiny_dataset() -> crate::data::ImageDataset {
        let pixels = (0..12 * 64).map(|i| (i * 13 % 256) as u8).collect();
        let labels = (0..12).map(|i| i % 3).collect();
        let shape = crate::data::ImageShape {
            channels: 1,
            height: 8,
            width: 8,
        };
        crate::data::ImageDataset::from_raw(pixels, labels, shape, 3).unwrap()
    }
}
