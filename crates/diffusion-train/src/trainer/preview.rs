//! Preview grids from the EMA weights, written under `samples/` during training.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use diffusion_core::{Conditioning, NoiseSchedule, sample_loop};
use diffusion_nets::UNet;

use crate::seeds::preview_rng;
use crate::{TrainConfig, TrainError, save_image_grid};

/// Samples `config.preview.num_images` images from `model` with the preview sampler and writes
/// them as one PNG grid. The starting noise is the same at every preview (seeded from the run
/// seed), so successive grids show the same images getting better. Class-conditional nets
/// cycle through the classes.
pub fn write_preview<B: Backend>(
    model: &UNet<B>,
    config: &TrainConfig,
    schedule: &NoiseSchedule,
    path: &Path,
    device: &B::Device,
) -> Result<(), TrainError> {
    let count = config.preview.num_images;
    let size = config.model.image_size;
    let shape = [count, config.model.in_channels, size, size];
    let mut sampler = config
        .preview
        .sampler()
        .init::<B>(schedule, config.prediction_type)?;
    let mut rng = preview_rng(config.seed);
    let x_t = rng.gaussian_tensor::<B, 4>(shape, device); // [count, ch, size, size]
    let conditioning = match config.model.num_classes {
        Some(classes) if classes > 0 => {
            let labels: Vec<i64> = (0..count).map(|i| (i % classes) as i64).collect();
            Conditioning::Labels(Tensor::<B, 1, Int>::from_data(
                TensorData::new(labels, [count]),
                device,
            ))
        }
        _ => Conditioning::Unconditional,
    };
    let images = sample_loop(
        model,
        &mut *sampler,
        x_t,
        &conditioning,
        &mut rng,
        |_, _, _| {},
    )?;
    save_image_grid(images, config.preview.columns, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PreviewConfig;
    use crate::tests::{TestBackend, tiny_train_config};

    #[test]
    fn preview_grid_has_one_tile_per_image() {
        let device = Default::default();
        let config = tiny_train_config().with_preview(
            PreviewConfig::new()
                .with_num_images(5)
                .with_columns(3)
                .with_ddim_steps(2),
        );
        let model = config.model.init::<TestBackend>(&device).unwrap();
        let schedule = config.schedule.init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples/step-00000001.png");
        write_preview(&model, &config, &schedule, &path, &device).unwrap();
        let grid = image::open(&path).unwrap();
        // 3 columns x 2 rows of 8x8 tiles with 2-pixel margins
        assert_eq!(
            (grid.width(), grid.height()),
            (3 * 8 + 4 * 2, 2 * 8 + 3 * 2)
        );
    }
}
