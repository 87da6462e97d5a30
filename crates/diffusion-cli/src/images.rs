//! Pictures from tensors: grids, one PNG per sample, progressive strips and looping GIFs.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::{Tensor, backend::Backend};
use diffusion_train::{image_grid, tensor_to_images};
use image::codecs::gif::{GifEncoder, Repeat};
use image::{Delay, DynamicImage, Frame, imageops::FilterType};

/// Creates the parent folder of `path` if it has one.
pub fn ensure_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(())
}

/// Saves one image as PNG.
pub fn save_png(image: &DynamicImage, path: &Path) -> Result<()> {
    ensure_parent(path)?;
    image
        .save_with_format(path, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The images of a batch in `[-1, 1]`.
///
/// # Shapes
/// - `images`: `[batch, channels, height, width]`
pub fn to_images<B: Backend>(images: Tensor<B, 4>) -> Result<Vec<DynamicImage>> {
    Ok(tensor_to_images(images)?)
}

/// Scales small images up (nearest neighbour keeps pixels crisp) so that a 28x28 digit is
/// visible in an image viewer.
pub fn upscale(image: &DynamicImage, min_side: u32) -> DynamicImage {
    let side = image.width().min(image.height()).max(1);
    let factor = min_side.div_ceil(side).max(1);
    if factor == 1 {
        return image.clone();
    }
    image.resize(
        image.width() * factor,
        image.height() * factor,
        FilterType::Nearest,
    )
}

/// Collects frames and writes them as a GIF that loops forever; the last frame is held longer.
pub struct GifWriter {
    frames: Vec<DynamicImage>,
    frame_ms: u32,
    hold_last_ms: u32,
}

impl GifWriter {
    pub fn new(frame_ms: u32, hold_last_ms: u32) -> Self {
        Self {
            frames: Vec::new(),
            frame_ms,
            hold_last_ms,
        }
    }

    pub fn push(&mut self, frame: DynamicImage) {
        self.frames.push(frame);
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn write(self, path: &Path) -> Result<()> {
        ensure_parent(path)?;
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut encoder = GifEncoder::new_with_speed(BufWriter::new(file), 10);
        encoder.set_repeat(Repeat::Infinite)?;
        let count = self.frames.len();
        for (i, image) in self.frames.into_iter().enumerate() {
            let ms = if i + 1 == count {
                self.hold_last_ms
            } else {
                self.frame_ms
            };
            let frame =
                Frame::from_parts(image.to_rgba8(), 0, 0, Delay::from_numer_denom_ms(ms, 1));
            encoder
                .encode_frame(frame)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// Which of `total` steps to keep so that about `wanted` are kept, always including the last.
pub fn evenly_spaced(total: usize, wanted: usize) -> Vec<usize> {
    if total == 0 || wanted == 0 {
        return Vec::new();
    }
    if wanted >= total {
        return (0..total).collect();
    }
    let mut picks: Vec<usize> = (0..wanted)
        .map(|k| ((k as f64) * (total - 1) as f64 / (wanted - 1).max(1) as f64).round() as usize)
        .collect();
    picks.dedup();
    picks
}

/// A grid with `columns` columns, upscaled for viewing.
pub fn grid(images: &[DynamicImage], columns: usize) -> DynamicImage {
    let upscaled: Vec<DynamicImage> = images.iter().map(|i| upscale(i, 56)).collect();
    image_grid(&upscaled, columns.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evenly_spaced_keeps_both_ends() {
        assert_eq!(evenly_spaced(1000, 5), vec![0, 250, 500, 749, 999]);
        assert_eq!(evenly_spaced(3, 10), vec![0, 1, 2]);
        assert_eq!(evenly_spaced(10, 1), vec![0]);
        assert!(evenly_spaced(0, 4).is_empty());
    }

    #[test]
    fn gif_loops_and_has_every_frame() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.gif");
        let mut gif = GifWriter::new(40, 500);
        for v in [0u8, 128, 255] {
            gif.push(DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
                8,
                8,
                image::Luma([v]),
            )));
        }
        gif.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..6], b"GIF89a");
        // The NETSCAPE2.0 application extension is what makes viewers loop.
        assert!(bytes.windows(11).any(|w| w == b"NETSCAPE2.0"));
        let decoder = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes)).unwrap();
        use image::AnimationDecoder;
        assert_eq!(decoder.into_frames().count(), 3);
    }

    #[test]
    fn upscale_keeps_small_images_visible() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(28, 28));
        let up = upscale(&img, 56);
        assert_eq!((up.width(), up.height()), (56, 56));
        let big = DynamicImage::ImageLuma8(image::GrayImage::new(64, 64));
        assert_eq!(upscale(&big, 56).width(), 64);
    }
}
