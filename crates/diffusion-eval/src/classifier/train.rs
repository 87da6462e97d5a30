//! Training a [`Classifier`] on images held in memory, and measuring its accuracy.
//!
//! Deterministic given the seed: the initial weights come from a host RNG
//! ([`ClassifierConfig::init`]), the order of epoch `e` is a shuffle from ChaCha stream `e`
//! of the seed, the network has no dropout and Adam draws nothing. Two trainings on the same
//! backend therefore give the same weights bit for bit, as far as the backend's kernels are
//! deterministic (`tests/classifier.rs` checks it on Flex, on all its threads).

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Classifier, ClassifierConfig};
use crate::EvalError;

const ORDER_STREAM: u64 = 0x0dde_0f0d;

/// Trains a classifier on `images` and `labels` with Adam and a cosine-decayed learning rate.
///
/// `progress(done, total)` is called after every optimizer step (`total` =
/// `epochs * ceil(n / batch_size)`). The last batch of an epoch may be smaller.
///
/// Errors on an invalid config, on images and labels of different counts, on labels outside
/// `0..num_classes`, or when the loss became non-finite (too high a learning rate).
///
/// # Shapes
/// - `images`: `[n, 1, h, w]` in `[-1, 1]` (28x28 natively; other sizes are resized)
/// - `labels`: `[n]`
pub fn train_classifier<AB: AutodiffBackend>(
    config: &ClassifierConfig,
    images: Tensor<AB::InnerBackend, 4>,
    labels: Tensor<AB::InnerBackend, 1, Int>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Classifier<AB::InnerBackend>, EvalError> {
    config.validate()?;
    let count = check_labelled_images(&images, &labels, config.num_classes)?;
    let device = images.device();
    let steps_per_epoch = count.div_ceil(config.batch_size);
    let total_steps = config.epochs * steps_per_epoch;

    let mut model = config.init::<AB>(&device);
    let mut optim = AdamConfig::new().init::<AB, Classifier<AB>>();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    for epoch in 0..config.epochs {
        let order = epoch_order(count, config.seed, epoch);
        let mut last_loss = None;
        for (batch, indices) in order.chunks(config.batch_size).enumerate() {
            let step = epoch * steps_per_epoch + batch;
            let indices = Tensor::<AB::InnerBackend, 1, Int>::from_data(
                TensorData::new(indices.to_vec(), [indices.len()]),
                &device,
            ); // [b]
            let x = Tensor::<AB, 4>::from_inner(images.clone().select(0, indices.clone())); // [b, 1, h, w]
            let y = Tensor::<AB, 1, Int>::from_inner(labels.clone().select(0, indices)); // [b]
            let loss = loss_fn.forward(model.logits(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cosine_lr(config.lr, step, total_steps), model, grads);
            last_loss = Some(loss);
            progress(step + 1, total_steps);
        }
        // One device read per epoch: a diverged run has a NaN loss from then on.
        if let Some(loss) = last_loss {
            let loss: f64 = loss.into_scalar().elem();
            if !loss.is_finite() {
                return Err(EvalError::Linalg(format!(
                    "classifier training diverged in epoch {} (loss {loss}); lower `lr` \
                     (now {})",
                    epoch + 1,
                    config.lr
                )));
            }
        }
    }
    Ok(model.valid())
}

/// The learning rate of `step` of `total`: `peak` decayed to 0 along half a cosine.
fn cosine_lr(peak: f64, step: usize, total: usize) -> f64 {
    let progress = step as f64 / total.max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// The order of epoch `epoch`: a shuffle of `0..count` from ChaCha stream `epoch` of `seed`.
fn epoch_order(count: usize, seed: u64, epoch: usize) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ORDER_STREAM);
    rng.set_stream(epoch as u64);
    let mut order: Vec<i64> = (0..count as i64).collect();
    order.shuffle(&mut rng);
    order
}

/// Checks shapes and labels; returns the image count.
fn check_labelled_images<B: Backend>(
    images: &Tensor<B, 4>,
    labels: &Tensor<B, 1, Int>,
    num_classes: usize,
) -> Result<usize, EvalError> {
    let [count, channels, _, _] = images.dims();
    let [label_count] = labels.dims();
    if channels != 1 {
        return Err(EvalError::Shape(format!(
            "the classifier takes 1-channel images, got {channels} channels"
        )));
    }
    if count == 0 || count != label_count {
        return Err(EvalError::Shape(format!(
            "{count} images and {label_count} labels: needs one label per image, and at least \
             one image"
        )));
    }
    let labels = labels.clone().into_data().convert::<i64>();
    if let Some(bad) = labels
        .iter::<i64>()
        .find(|&l| !(0..num_classes as i64).contains(&l))
    {
        return Err(EvalError::Shape(format!(
            "label {bad} is out of range 0..{num_classes}"
        )));
    }
    Ok(count)
}

/// How many images of each class a classifier got right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassAccuracy {
    /// Per class (by label): images classified as their label.
    pub correct: Vec<usize>,
    /// Per class: images with that label.
    pub total: Vec<usize>,
}

impl ClassAccuracy {
    /// The fraction of all images classified as their label.
    pub fn overall(&self) -> f64 {
        let total: usize = self.total.iter().sum();
        self.correct.iter().sum::<usize>() as f64 / total.max(1) as f64
    }

    /// Per class, the fraction classified as their label (`None` for a class with no image).
    /// With the labels a conditional sampler was asked for, this is its conditional accuracy.
    pub fn per_class(&self) -> Vec<Option<f64>> {
        self.correct
            .iter()
            .zip(&self.total)
            .map(|(&c, &t)| (t > 0).then(|| c as f64 / t as f64))
            .collect()
    }
}

/// Counts, per class, the images of `images` that `model` classifies as their label, in
/// batches of `batch_size`.
///
/// # Shapes
/// - `images`: `[n, 1, h, w]` in `[-1, 1]`
/// - `labels`: `[n]`, in `0..model.num_classes()`
pub fn class_accuracy<B: Backend>(
    model: &Classifier<B>,
    images: Tensor<B, 4>,
    labels: Tensor<B, 1, Int>,
    batch_size: usize,
) -> Result<ClassAccuracy, EvalError> {
    let num_classes = model.num_classes();
    let count = check_labelled_images(&images, &labels, num_classes)?;
    let batch_size = batch_size.max(1);
    let mut correct = vec![0; num_classes];
    let mut total = vec![0; num_classes];
    for start in (0..count).step_by(batch_size) {
        let len = batch_size.min(count - start);
        let predicted = model.predict(images.clone().narrow(0, start, len)); // [len]
        let predicted = predicted.into_data().convert::<i64>();
        let expected = labels.clone().narrow(0, start, len).into_data();
        let expected = expected.convert::<i64>();
        for (p, e) in predicted.iter::<i64>().zip(expected.iter::<i64>()) {
            total[e as usize] += 1;
            correct[e as usize] += usize::from(p == e);
        }
    }
    Ok(ClassAccuracy { correct, total })
}

/// The fraction of `images` that `model` classifies as their label (see [`class_accuracy`]).
pub fn accuracy<B: Backend>(
    model: &Classifier<B>,
    images: Tensor<B, 4>,
    labels: Tensor<B, 1, Int>,
    batch_size: usize,
) -> Result<f64, EvalError> {
    Ok(class_accuracy(model, images, labels, batch_size)?.overall())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_orders_are_seeded_permutations() {
        let a = epoch_order(100, 1, 0);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<i64>>());
        assert_eq!(a, epoch_order(100, 1, 0));
        assert_ne!(a, epoch_order(100, 1, 1));
        assert_ne!(a, epoch_order(100, 2, 0));
    }

    #[test]
    fn cosine_lr_goes_from_the_peak_to_zero() {
        assert_eq!(cosine_lr(1e-3, 0, 10), 1e-3);
        assert!((cosine_lr(1e-3, 5, 10) - 5e-4).abs() < 1e-12);
        assert!(cosine_lr(1e-3, 9, 10) < 3e-5);
    }

    #[test]
    fn class_accuracy_counts_per_class() {
        let counts = ClassAccuracy {
            correct: vec![1, 0, 2],
            total: vec![2, 0, 2],
        };
        assert_eq!(counts.overall(), 0.75);
        assert_eq!(counts.per_class(), vec![Some(0.5), None, Some(1.0)]);
    }
}
