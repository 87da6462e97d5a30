//! Turning [`ImageItem`]s into `[B, C, H, W]` tensors in [-1, 1].

use std::sync::Mutex;

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::dataset::{ImageDataset, ImageItem};
use super::transform::{ImageShape, flip_horizontal, scale_to_unit};

/// A batch of images and their labels.
#[derive(Debug, Clone)]
pub struct ImageBatch<B: Backend> {
    /// Images in [-1, 1]. // [batch, channels, height, width]
    pub images: Tensor<B, 4>,
    /// Class labels. // [batch]
    pub labels: Tensor<B, 1, Int>,
}

/// Stacks items into an [`ImageBatch`], scaling u8 to [-1, 1] and, when enabled, mirroring each
/// image left to right with probability 1/2.
///
/// For reproducible training use [`ImageBatcher::batch_with_rng`] with an RNG derived from the
/// position in the data order (see [`super::DataOrder`]). The [`Batcher`] impl, for burn's
/// `DataLoader`, draws flips from an internal RNG seeded at construction.
#[derive(Debug)]
pub struct ImageBatcher {
    shape: ImageShape,
    random_flip: bool,
    rng: Mutex<ChaCha8Rng>,
}

impl ImageBatcher {
    /// A batcher for items of `shape`; `seed` seeds the internal RNG of the [`Batcher`] impl.
    pub fn new(shape: ImageShape, random_flip: bool, seed: u64) -> Self {
        Self {
            shape,
            random_flip,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
        }
    }

    /// A batcher matching the item shape of `dataset`.
    pub fn for_dataset(dataset: &ImageDataset, random_flip: bool, seed: u64) -> Self {
        Self::new(dataset.shape(), random_flip, seed)
    }

    /// Shape of the items this batcher expects.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Whether images are randomly mirrored.
    pub fn random_flip(&self) -> bool {
        self.random_flip
    }

    /// Builds the batch, drawing one flip decision per item from `rng` (none when flips are
    /// off, so the RNG is left untouched).
    ///
    /// # Shapes
    /// - output `images`: `[items.len(), channels, height, width]`
    /// - output `labels`: `[items.len()]`
    ///
    /// # Panics
    /// When an item's pixel count does not match the batcher's shape: items come from an
    /// [`ImageDataset`] of the same shape, so this is a programming error, not bad input.
    pub fn batch_with_rng<B: Backend, R: RngCore + ?Sized>(
        &self,
        items: Vec<ImageItem>,
        rng: &mut R,
        device: &B::Device,
    ) -> ImageBatch<B> {
        let ImageShape {
            channels,
            height,
            width,
        } = self.shape;
        let count = items.len();
        let mut values = Vec::with_capacity(count * self.shape.len());
        let mut labels = Vec::with_capacity(count);
        for item in items {
            assert_eq!(
                item.pixels.len(),
                self.shape.len(),
                "item of {} bytes given to a batcher for {:?}",
                item.pixels.len(),
                self.shape
            );
            let start = values.len();
            values.extend(item.pixels.iter().copied().map(scale_to_unit));
            if self.random_flip && rng.next_u32() & 1 == 1 {
                flip_horizontal(&mut values[start..], width);
            }
            labels.push(item.label as i64);
        }
        let images = Tensor::from_data(
            TensorData::new(values, [count, channels, height, width]),
            device,
        ); // [batch, ch, h, w]
        let labels = Tensor::from_data(TensorData::new(labels, [count]), device); // [batch]
        ImageBatch { images, labels }
    }
}

impl<B: Backend> Batcher<B, ImageItem, ImageBatch<B>> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &B::Device) -> ImageBatch<B> {
        // A poisoned lock only means another batch panicked; the RNG state is still valid.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        self.batch_with_rng(items, &mut *rng, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;

    fn shape() -> ImageShape {
        ImageShape {
            channels: 1,
            height: 1,
            width: 3,
        }
    }

    fn items() -> Vec<ImageItem> {
        (0..64)
            .map(|i| ImageItem {
                pixels: vec![0, 255, (i * 4 + 1) as u8],
                label: i % 10,
            })
            .collect()
    }

    #[test]
    fn batch_has_nchw_shape_values_in_range_and_labels() {
        let batcher = ImageBatcher::new(shape(), false, 0);
        let device = Default::default();
        let batch: ImageBatch<TestBackend> =
            batcher.batch_with_rng(items(), &mut ChaCha8Rng::seed_from_u64(1), &device);
        assert_eq!(batch.images.dims(), [64, 1, 1, 3]);
        let values: Vec<f32> = batch.images.into_data().to_vec().unwrap();
        assert_eq!(values[0], -1.0);
        assert_eq!(values[1], 1.0);
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        let labels: Vec<i64> = batch.labels.into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(labels[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    }

    #[test]
    fn flips_mirror_some_images_and_follow_the_rng() {
        let batcher = ImageBatcher::new(shape(), true, 0);
        let device = Default::default();
        let run = |seed| {
            let batch: ImageBatch<TestBackend> =
                batcher.batch_with_rng(items(), &mut ChaCha8Rng::seed_from_u64(seed), &device);
            batch.images.into_data().to_vec::<f32>().unwrap()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same RNG, same flips");
        assert_ne!(a, run(8), "another RNG, other flips");
        let flipped = a.chunks(3).filter(|px| px[2] == -1.0).count();
        let kept = a.chunks(3).filter(|px| px[0] == -1.0).count();
        assert_eq!(flipped + kept, 64);
        assert!((16..=48).contains(&flipped), "{flipped} of 64 flipped");
        // A flipped image is the exact mirror: white pixel stays in the middle.
        assert!(a.chunks(3).all(|px| px[1] == 1.0));
    }

    #[test]
    fn no_flip_leaves_the_rng_untouched() {
        let batcher = ImageBatcher::new(shape(), false, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let _: ImageBatch<TestBackend> =
            batcher.batch_with_rng(items(), &mut rng, &Default::default());
        assert_eq!(rng.next_u64(), ChaCha8Rng::seed_from_u64(3).next_u64());
    }

    #[test]
    fn batcher_trait_impl_is_seeded() {
        let device = Default::default();
        let run = |seed| {
            let b = ImageBatcher::new(shape(), true, seed);
            let batch: ImageBatch<TestBackend> = Batcher::batch(&b, items(), &device);
            batch.images.into_data().to_vec::<f32>().unwrap()
        };
        assert_eq!(run(5), run(5));
    }
}
