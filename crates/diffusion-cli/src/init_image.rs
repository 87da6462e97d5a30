//! The user's own images for `sample`: `--init-image` (img2img, SDEdit: start from the image
//! noised part of the way) and `--mask` (inpainting: which of its pixels to keep).

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData, backend::Backend};
use diffusion_train::data::folder::image_to_chw;
use diffusion_train::data::transform::scale_to_unit;
use image::DynamicImage;
use image::imageops::FilterType;

/// diffusers' img2img strength when none is given.
pub const IMG2IMG_STRENGTH: f64 = 0.8;

/// The timestep img2img starts from, as diffusers' `get_timesteps`: of the `n` timesteps of
/// the full sampler the last `min(floor(n * strength), n)` are kept. `strength` must be in
/// (0, 1] and keep at least one step.
pub fn strength_start(timesteps: &[usize], strength: f64) -> Result<usize> {
    check_strength(strength)?;
    let n = timesteps.len();
    let kept = ((n as f64 * strength).floor() as usize).min(n);
    if kept == 0 {
        bail!(
            "--strength {strength} keeps none of the sampler's {n} steps: give at least 1/{n} \
             ({:.4}) or more --steps",
            1.0 / n as f64
        );
    }
    Ok(timesteps[n - kept])
}

/// `strength` in (0, 1].
pub fn check_strength(strength: f64) -> Result<()> {
    if !(strength > 0.0 && strength <= 1.0) {
        bail!(
            "--strength {strength} is out of range: must be in (0, 1] (the fraction of the \
             reverse process to run; 1 starts from noise)"
        );
    }
    Ok(())
}

/// The image to start from, and which of its pixels are known, at the model's size.
pub struct UserImage<B: Backend> {
    /// `[1, channels, size, size]` in `[-1, 1]`.
    pub image: Tensor<B, 4>,
    /// `[1, 1 or channels, size, size]`: 1 where the pixel is kept, 0 where it is generated.
    pub mask: Option<Tensor<B, 4>>,
    /// The share of the mask's pixels that are kept.
    pub known_fraction: f64,
}

impl<B: Backend> UserImage<B> {
    /// Reads `image` (and `mask`, which must have the image's width and height and one channel
    /// or the model's), stretches them to `size x size` and converts the image to `channels`
    /// (1: grey, 3: RGB). Mask pixels of 128 or more are kept.
    pub fn load(
        image: &Path,
        mask: Option<&Path>,
        channels: usize,
        size: usize,
        device: &B::Device,
    ) -> Result<Self> {
        if channels != 1 && channels != 3 {
            bail!("--init-image needs a model of 1 or 3 channels; this one has {channels}");
        }
        let picture = read_image("--init-image", image)?;
        let (values, _) = image_to_chw(&stretch(&picture, size), channels == 1);
        let values: Vec<f32> = values.into_iter().map(scale_to_unit).collect();
        let image_tensor =
            Tensor::from_data(TensorData::new(values, [1, channels, size, size]), device);
        let Some(mask_path) = mask else {
            return Ok(Self {
                image: image_tensor,
                mask: None,
                known_fraction: 0.0,
            });
        };
        let mask = read_image("--mask", mask_path)?;
        if (mask.width(), mask.height()) != (picture.width(), picture.height()) {
            bail!(
                "--mask {} is {}x{} but --init-image {} is {}x{}: the mask must have the image's size",
                mask_path.display(),
                mask.width(),
                mask.height(),
                image.display(),
                picture.width(),
                picture.height()
            );
        }
        // Alpha does not count: grey + alpha is one channel, RGBA three.
        let mask_channels = if mask.color().channel_count() <= 2 {
            1
        } else {
            3
        };
        if mask_channels != 1 && mask_channels != channels {
            bail!(
                "--mask {} has {mask_channels} colour channels but the model has {channels}: \
                 give a grayscale mask (one channel for all){}",
                mask_path.display(),
                if channels == 3 { " or an RGB one" } else { "" }
            );
        }
        let (bytes, _) = image_to_chw(&stretch(&mask, size), mask_channels == 1);
        let keep: Vec<f32> = bytes
            .iter()
            .map(|&b| f32::from(u8::from(b >= 128)))
            .collect();
        let known_fraction = keep.iter().map(|&k| f64::from(k)).sum::<f64>() / keep.len() as f64;
        Ok(Self {
            image: image_tensor,
            mask: Some(Tensor::from_data(
                TensorData::new(keep, [1, mask_channels, size, size]),
                device,
            )),
            known_fraction,
        })
    }
}

/// Decodes an image file, whatever its extension says; `flag` names it in the error.
fn read_image(flag: &str, path: &Path) -> Result<DynamicImage> {
    image::ImageReader::open(path)
        .with_context(|| format!("{flag} {}: cannot open it", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?
        .decode()
        .with_context(|| format!("{flag} {}: not a readable image", path.display()))
}

/// `image` at `size x size`, stretched if it is not square (training stretches image
/// folders the same way); the triangle filter averages over the pixels it shrinks.
fn stretch(image: &DynamicImage, size: usize) -> DynamicImage {
    let size = size as u32;
    if (image.width(), image.height()) == (size, size) {
        return image.clone();
    }
    image.resize_exact(size, size, FilterType::Triangle)
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn strength_keeps_the_last_steps_as_diffusers() {
        let timesteps: Vec<usize> = (0..50).rev().map(|i| i * 20).collect(); // 980, 960, ..., 0
        // n = 50, strength 0.3: floor(15) steps kept, t_start = 35, timesteps[35] = 280.
        assert_eq!(strength_start(&timesteps, 0.3).unwrap(), 280);
        assert_eq!(strength_start(&timesteps, 1.0).unwrap(), 980);
        assert_eq!(strength_start(&timesteps, 0.02).unwrap(), 0);
        let err = strength_start(&timesteps, 0.01).unwrap_err().to_string();
        assert!(
            err.contains("keeps none of the sampler's 50 steps"),
            "{err}"
        );
        for bad in [0.0, -0.5, 1.01, f64::NAN] {
            let err = strength_start(&timesteps, bad).unwrap_err().to_string();
            assert!(err.contains("must be in (0, 1]"), "{bad}: {err}");
        }
    }

    #[test]
    fn images_of_any_size_become_the_models_and_masks_are_binary() {
        let dir = tempfile::tempdir().unwrap();
        let (image, mask) = (dir.path().join("i.jpg"), dir.path().join("m.png"));
        let mut rgb = image::RgbImage::from_pixel(40, 20, image::Rgb([255, 255, 255]));
        rgb.put_pixel(0, 0, image::Rgb([0, 0, 0]));
        // Saved as PNG under a .jpg name: the content decides.
        rgb.save_with_format(&image, image::ImageFormat::Png)
            .unwrap();
        let mut keep = image::GrayImage::from_pixel(40, 20, image::Luma([0]));
        for y in 0..20 {
            for x in 0..20 {
                keep.put_pixel(x, y, image::Luma([200]));
            }
        }
        keep.save(&mask).unwrap();
        let loaded = UserImage::<B>::load(&image, Some(&mask), 1, 8, &Default::default()).unwrap();
        assert_eq!(loaded.image.dims(), [1, 1, 8, 8]);
        let values = loaded.image.into_data().to_vec::<f32>().unwrap();
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        assert_eq!(values[63], 1.0, "white is 1");
        let mask = loaded.mask.unwrap();
        assert_eq!(mask.dims(), [1, 1, 8, 8]);
        let mask = mask.into_data().to_vec::<f32>().unwrap();
        assert_eq!(&mask[..8], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(loaded.known_fraction, 0.5);

        let refusal = |mask: &Path, channels| {
            UserImage::<B>::load(&image, Some(mask), channels, 8, &Default::default())
                .err()
                .map(|e| e.to_string())
        };
        let rgb_mask = dir.path().join("rgb.png");
        image::RgbImage::new(40, 20).save(&rgb_mask).unwrap();
        let err = refusal(&rgb_mask, 1).unwrap();
        assert!(
            err.contains("3 colour channels but the model has 1"),
            "{err}"
        );
        assert_eq!(refusal(&rgb_mask, 3), None, "an RGB mask for an RGB model");
        let small = dir.path().join("small.png");
        image::GrayImage::new(20, 20).save(&small).unwrap();
        let err = refusal(&small, 1).unwrap();
        assert!(err.contains("is 20x20 but --init-image"), "{err}");
    }
}
