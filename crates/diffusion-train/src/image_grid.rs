//! PNG grids of image batches, shared by the training previews and the CLI's `sample`.

use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use image::{DynamicImage, GrayImage, RgbImage};

use crate::TrainError;

/// Pixels between tiles and around the border of a grid.
pub const GRID_MARGIN: u32 = 2;

/// Converts a batch in `[-1, 1]` to 8-bit images (values outside are clamped).
///
/// # Shapes
/// - `images`: `[batch, channels, height, width]` with 1 (grey) or 3 (RGB) channels
///
/// Any other channel count is an error, not a panic.
pub fn tensor_to_images<B: Backend>(images: Tensor<B, 4>) -> Result<Vec<DynamicImage>, TrainError> {
    let [batch, channels, height, width] = images.dims();
    if channels != 1 && channels != 3 {
        return Err(TrainError::Image {
            path: Default::default(),
            message: format!("expected 1 or 3 channels, got {channels}"),
        });
    }
    let pixels: Vec<u8> = images
        .into_data()
        .iter::<f32>()
        .map(|v| (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8)
        .collect();
    let plane = height * width;
    let (w, h) = (width as u32, height as u32);
    let out = (0..batch)
        .map(|b| {
            let sample = &pixels[b * channels * plane..(b + 1) * channels * plane]; // [ch, h, w]
            if channels == 1 {
                DynamicImage::ImageLuma8(
                    GrayImage::from_raw(w, h, sample.to_vec()).unwrap_or_default(),
                )
            } else {
                // planar [3, h, w] to interleaved [h, w, 3]
                let interleaved: Vec<u8> = (0..plane)
                    .flat_map(|i| [sample[i], sample[plane + i], sample[2 * plane + i]])
                    .collect();
                DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, interleaved).unwrap_or_default())
            }
        })
        .collect();
    Ok(out)
}

/// Tiles images of one size into a grid of `columns` columns with a [`GRID_MARGIN`] margin;
/// the grid is grey when every image is grey, RGB otherwise. An empty list gives a 1x1 image.
pub fn image_grid(images: &[DynamicImage], columns: usize) -> DynamicImage {
    let Some(first) = images.first() else {
        return DynamicImage::new_luma8(1, 1);
    };
    let columns = columns.clamp(1, images.len()) as u32;
    let rows = images.len().div_ceil(columns as usize) as u32;
    let (tile_w, tile_h) = (first.width(), first.height());
    let width = columns * tile_w + (columns + 1) * GRID_MARGIN;
    let height = rows * tile_h + (rows + 1) * GRID_MARGIN;
    let grey = images.iter().all(|im| im.color().channel_count() == 1);
    let mut grid = if grey {
        DynamicImage::new_luma8(width, height)
    } else {
        DynamicImage::new_rgb8(width, height)
    };
    for (i, tile) in images.iter().enumerate() {
        let (col, row) = (i as u32 % columns, i as u32 / columns);
        let x = GRID_MARGIN + col * (tile_w + GRID_MARGIN);
        let y = GRID_MARGIN + row * (tile_h + GRID_MARGIN);
        let tile = if grey {
            DynamicImage::ImageLuma8(tile.to_luma8())
        } else {
            DynamicImage::ImageRgb8(tile.to_rgb8())
        };
        image::imageops::replace(&mut grid, &tile, x as i64, y as i64);
    }
    grid
}

/// Writes a batch in `[-1, 1]` as one PNG grid of `columns` columns (parent folders are created).
///
/// # Shapes
/// - `images`: `[batch, channels, height, width]` with 1 or 3 channels
pub fn save_image_grid<B: Backend>(
    images: Tensor<B, 4>,
    columns: usize,
    path: impl AsRef<Path>,
) -> Result<(), TrainError> {
    let path = path.as_ref();
    let tiles = tensor_to_images(images).map_err(|err| match err {
        TrainError::Image { message, .. } => TrainError::Image {
            path: path.to_path_buf(),
            message,
        },
        other => other,
    })?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
    }
    image_grid(&tiles, columns)
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| TrainError::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use burn::tensor::TensorData;

    #[test]
    fn grid_layout_margins_and_pixel_values() {
        let device = Default::default();
        // 3 grey 2x2 images with constant values -1, 0, 1
        let values: Vec<f32> = [-1.0f32, 0.0, 1.0].iter().flat_map(|v| [*v; 4]).collect();
        let batch =
            Tensor::<TestBackend, 4>::from_data(TensorData::new(values, [3, 1, 2, 2]), &device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/grid.png");
        save_image_grid(batch, 2, &path).unwrap();
        let grid = image::open(&path).unwrap().to_luma8();
        // 2 columns, 2 rows of 2x2 tiles with margins of 2
        assert_eq!(grid.dimensions(), (2 * 2 + 3 * 2, 2 * 2 + 3 * 2));
        assert_eq!(grid.get_pixel(2, 2).0[0], 0); // first tile (-1)
        assert_eq!(grid.get_pixel(6, 2).0[0], 128); // second tile (0)
        assert_eq!(grid.get_pixel(2, 6).0[0], 255); // third tile (1)
        assert_eq!(grid.get_pixel(0, 0).0[0], 0); // margin
        assert_eq!(grid.get_pixel(6, 6).0[0], 0); // empty fourth cell
    }

    #[test]
    fn rgb_channels_are_interleaved_and_bad_channels_rejected() {
        let device = Default::default();
        // one 1x1 RGB pixel: r=1, g=-1, b=0
        let batch = Tensor::<TestBackend, 4>::from_data(
            TensorData::new(vec![1.0f32, -1.0, 0.0], [1, 3, 1, 1]),
            &device,
        );
        let images = tensor_to_images(batch).unwrap();
        assert_eq!(images[0].to_rgb8().get_pixel(0, 0).0, [255, 0, 128]);

        let two = Tensor::<TestBackend, 4>::zeros([1, 2, 1, 1], &device);
        let err = save_image_grid(two, 1, "unused.png").unwrap_err();
        assert!(err.to_string().contains("channels"));
    }
}
