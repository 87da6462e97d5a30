//! Real images for `forward` and `denoise`: from a dataset by index, or from an image file.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use burn::tensor::{ElementConversion, Tensor, TensorData, backend::Backend};
use diffusion_train::data::folder::image_to_chw;
use diffusion_train::data::{DataConfig, ImageBatch, ImageBatcher};

/// Images `start..start + n` of the dataset, in `[-1, 1]`, with their labels.
///
/// # Shapes
/// - returns: `[n, channels, height, width]`
pub fn dataset_images<B: Backend>(
    data: &DataConfig,
    start: usize,
    n: usize,
    device: &B::Device,
) -> Result<(Tensor<B, 4>, Vec<usize>)> {
    let dataset = data.load_dataset()?;
    let len = dataset.len();
    if start >= len {
        bail!(
            "--index {start} is out of range: the dataset has {len} images (0..{})",
            len - 1
        );
    }
    let end = (start + n).min(len);
    let items = (start..end)
        .filter_map(|i| dataset.get(i))
        .collect::<Vec<_>>();
    let labels = items.iter().map(|item| item.label).collect();
    let batcher = ImageBatcher::new(dataset.shape(), false, 0);
    let batch: ImageBatch<B> = batcher.batch(items, device);
    Ok((batch.images, labels))
}

/// An image file (PNG, JPEG, ...) as a `[1, C, H, W]` tensor in `[-1, 1]`: grey images keep one
/// channel, anything else becomes RGB.
pub fn file_image<B: Backend>(path: &Path, device: &B::Device) -> Result<Tensor<B, 4>> {
    let image =
        image::open(path).with_context(|| format!("cannot read image {}", path.display()))?;
    let grey = image.color().channel_count() <= 2;
    let (bytes, shape) = image_to_chw(&image, grey);
    let values: Vec<f32> = bytes.iter().map(|&b| b as f32 / 127.5 - 1.0).collect();
    let dims = [1, shape.channels, shape.height, shape.width];
    Ok(Tensor::from_data(TensorData::new(values, dims), device))
}

/// Mean squared error and PSNR (dB, pixel range [0, 1]) of `a` against `b`, both in `[-1, 1]`.
pub fn mse_psnr<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> (f64, f64) {
    let mse_pm1: f64 = (a - b).powf_scalar(2.0).mean().into_scalar().elem();
    let mse = mse_pm1 / 4.0; // [-1, 1] -> [0, 1] halves differences, quarters squares
    let psnr = if mse > 0.0 {
        10.0 * (1.0 / mse).log10()
    } else {
        f64::INFINITY
    };
    (mse, psnr)
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn psnr_of_a_known_error() {
        let device = Default::default();
        let a = Tensor::<B, 4>::zeros([1, 1, 2, 2], &device);
        let b = Tensor::<B, 4>::full([1, 1, 2, 2], 0.2, &device); // 0.1 in [0, 1] units
        let (mse, psnr) = mse_psnr(a.clone(), b);
        assert!((mse - 0.01).abs() < 1e-7, "{mse}");
        assert!((psnr - 20.0).abs() < 1e-4, "{psnr}");
        assert_eq!(mse_psnr(a.clone(), a).1, f64::INFINITY);
    }

    #[test]
    fn image_files_become_planar_tensors_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rgb.png");
        let mut img = image::RgbImage::new(3, 2);
        img.put_pixel(2, 1, image::Rgb([255, 0, 128]));
        img.save(&path).unwrap();
        let t = file_image::<B>(&path, &Default::default()).unwrap();
        assert_eq!(t.dims(), [1, 3, 2, 3]);
        let v = t.into_data().to_vec::<f32>().unwrap();
        assert_eq!(v[5], 1.0); // red plane, last pixel
        assert_eq!(v[6 + 5], -1.0); // green plane
        assert!((v[12 + 5] - (128.0 / 127.5 - 1.0)).abs() < 1e-6);
        assert_eq!(v[0], -1.0);
        assert!(file_image::<B>(&dir.path().join("missing.png"), &Default::default()).is_err());
    }
}
