//! Seeded data order: which items form the batch at a given training step.
//!
//! Everything is a pure function of `(seed, epoch, batch index)`, so a resumed run sees exactly
//! the batches (and flips) it would have seen without the interruption. The shuffle is written
//! out here rather than taken from `rand::seq`, whose algorithm may change between rand versions.

use burn::data::dataset::Dataset;
use burn::prelude::*;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::DataError;
use super::batcher::{ImageBatch, ImageBatcher};
use super::dataset::ImageItem;
use crate::seeds::{batch_flip_seed, epoch_order_seed};

/// Uniform integer in `0..n` without modulo bias (Lemire's method). `n > 0`.
fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    let threshold = n.wrapping_neg() % n;
    loop {
        let product = u128::from(rng.next_u64()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

/// The order in which epoch `epoch` visits the `len` items: a permutation of `0..len`.
pub fn epoch_permutation(seed: u64, epoch: u64, len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(epoch_order_seed(seed, epoch));
    let mut order: Vec<usize> = (0..len).collect();
    // Fisher-Yates from the back.
    for i in (1..len).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

/// The RNG for the augmentations (flips) of one batch.
pub fn batch_rng(seed: u64, epoch: u64, batch_index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(batch_flip_seed(seed, epoch));
    rng.set_stream(batch_index);
    rng
}

/// Maps training steps to batches: epoch `e` is [`epoch_permutation`]`(seed, e, len)` cut into
/// `batch_size` chunks; the last chunk of an epoch may be shorter.
#[derive(Debug, Clone)]
pub struct DataOrder {
    seed: u64,
    len: usize,
    batch_size: usize,
    cached: Option<(u64, Vec<usize>)>,
}

impl DataOrder {
    /// An order over `len` items; errors when `len` or `batch_size` is zero.
    pub fn new(seed: u64, len: usize, batch_size: usize) -> Result<Self, DataError> {
        if len == 0 {
            return Err(DataError::config("dataset", "is empty"));
        }
        if batch_size == 0 {
            return Err(DataError::config("batch_size", "must be at least 1, got 0"));
        }
        Ok(Self {
            seed,
            len,
            batch_size,
            cached: None,
        })
    }

    /// Batches in one epoch (the last may be partial).
    pub fn batches_per_epoch(&self) -> usize {
        self.len.div_ceil(self.batch_size)
    }

    /// `(epoch, batch index)` of training step `step` (steps count from 0).
    pub fn position(&self, step: u64) -> (u64, u64) {
        let per_epoch = self.batches_per_epoch() as u64;
        (step / per_epoch, step % per_epoch)
    }

    /// Dataset indices of batch `batch_index` of epoch `epoch`.
    ///
    /// Caches the permutation of the last epoch asked for, so walking an epoch is O(len) total.
    /// Returns an empty list past the last batch of the epoch.
    pub fn batch_indices(&mut self, epoch: u64, batch_index: u64) -> Vec<usize> {
        if self.cached.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.cached = Some((epoch, epoch_permutation(self.seed, epoch, self.len)));
        }
        let order = match &self.cached {
            Some((_, order)) => order,
            None => return Vec::new(),
        };
        let start = (batch_index as usize)
            .saturating_mul(self.batch_size)
            .min(self.len);
        let end = start.saturating_add(self.batch_size).min(self.len);
        order[start..end].to_vec()
    }

    /// The batch of training step `step`: items gathered in order, flips drawn from
    /// [`batch_rng`] of the same position.
    ///
    /// # Shapes
    /// - output `images`: `[batch, channels, height, width]`, batch <= `batch_size`
    /// - output `labels`: `[batch]`
    pub fn batch_for_step<B: Backend, D: Dataset<ImageItem> + ?Sized>(
        &mut self,
        step: u64,
        dataset: &D,
        batcher: &ImageBatcher,
        device: &B::Device,
    ) -> ImageBatch<B> {
        let (epoch, batch_index) = self.position(step);
        let items = self
            .batch_indices(epoch, batch_index)
            .into_iter()
            .filter_map(|i| dataset.get(i))
            .collect();
        let mut rng = batch_rng(self.seed, epoch, batch_index);
        batcher.batch_with_rng(items, &mut rng, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{ImageDataset, ImageShape};
    use crate::tests::TestBackend;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let p = epoch_permutation(42, 0, 1000);
        let mut sorted = p.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
        assert_eq!(p, epoch_permutation(42, 0, 1000));
        assert_ne!(p, epoch_permutation(42, 1, 1000));
        assert_ne!(p, epoch_permutation(43, 0, 1000));
        assert_ne!(p, (0..1000).collect::<Vec<_>>());
        assert!(epoch_permutation(1, 2, 0).is_empty());
        assert_eq!(epoch_permutation(1, 2, 1), vec![0]);
    }

    #[test]
    fn permutation_is_roughly_uniform() {
        // Where does item 0 land? Over 2000 epochs of 4 items each slot gets ~500.
        let mut counts = [0usize; 4];
        for epoch in 0..2000 {
            let p = epoch_permutation(9, epoch, 4);
            counts[p.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        assert!(
            counts.iter().all(|&c| (400..600).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn bounded_draw_stays_below_n() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for n in [1u64, 2, 3, 7, 1 << 40, u64::MAX] {
            for _ in 0..100 {
                assert!(below(&mut rng, n) < n);
            }
        }
    }

    #[test]
    fn steps_walk_every_item_once_per_epoch() {
        let mut order = DataOrder::new(5, 10, 4).unwrap();
        assert_eq!(order.batches_per_epoch(), 3);
        assert_eq!(order.position(7), (2, 1));
        let mut seen: Vec<usize> = (0..3).flat_map(|b| order.batch_indices(1, b)).collect();
        assert_eq!(order.batch_indices(1, 2).len(), 2, "last batch is partial");
        assert!(order.batch_indices(1, 3).is_empty());
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn zero_sizes_are_rejected() {
        assert!(DataOrder::new(0, 0, 4).is_err());
        let err = DataOrder::new(0, 4, 0).unwrap_err();
        assert!(err.to_string().contains("`batch_size`"), "{err}");
    }

    #[test]
    fn batch_rng_differs_per_position_and_repeats_per_position() {
        let a = batch_rng(1, 2, 3).next_u64();
        assert_eq!(a, batch_rng(1, 2, 3).next_u64());
        assert_ne!(a, batch_rng(1, 2, 4).next_u64());
        assert_ne!(a, batch_rng(1, 3, 3).next_u64());
        assert_ne!(a, batch_rng(2, 2, 3).next_u64());
    }

    #[test]
    fn resumed_order_gives_identical_batches() {
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        let pixels: Vec<u8> = (0..40).map(|i| (i * 6) as u8).collect();
        let ds = ImageDataset::from_raw(pixels, (0..10).collect(), shape, 10).unwrap();
        let batcher = ImageBatcher::for_dataset(&ds, true, 0);
        let device = Default::default();
        let mut first = DataOrder::new(11, ds.len(), 4).unwrap();
        let mut fresh = DataOrder::new(11, ds.len(), 4).unwrap();
        for step in 0..5 {
            let a: ImageBatch<TestBackend> = first.batch_for_step(step, &ds, &batcher, &device);
            if step < 4 {
                continue;
            }
            // A new DataOrder, as after a restart, jumps straight to step 4.
            let b: ImageBatch<TestBackend> = fresh.batch_for_step(step, &ds, &batcher, &device);
            assert_eq!(a.images.into_data(), b.images.into_data());
            assert_eq!(a.labels.into_data(), b.labels.into_data());
        }
    }
}
