//! [`Classifier`]: a small CNN for 28x28 grayscale images (MNIST, Fashion-MNIST), trained on
//! the dataset itself, for the datasets where Inception-v3's ImageNet features fit poorly.
//!
//! Its penultimate activations (128 values after a ReLU) are the features of "FD-classifier",
//! the Fréchet distance computed on them instead of on Inception's pool3; its predictions give
//! the conditional accuracy of class-conditional samples (the fraction of the samples asked for
//! class `c` that it classifies as `c`).
//!
//! - this module: the network and its [`ClassifierConfig`] (the architecture is fixed and
//!   versioned as [`CLASSIFIER_ARCH`]; the config holds the class count and the training
//!   settings, and is saved with the weights).
//! - [`train`]: training on in-memory tensors, deterministic given the seed, and [`accuracy`].
//! - [`cache`]: the trained network on disk (a Burn record and a JSON sidecar, both written
//!   under temporary names and renamed), and loading it back without panicking on bad files.

pub mod cache;
pub mod train;

pub use cache::{ClassifierInfo, load_classifier, save_classifier};
pub use train::{ClassAccuracy, accuracy, class_accuracy, train_classifier};

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{EvalError, FeatureExtractor};

/// Version of the architecture, part of every [`FeatureExtractor::id`] and of the cache
/// sidecar; bump it whenever the layers, their initialization or [`train_classifier`]'s
/// procedure change, so that a cache trained otherwise is refused (v1 drew the initialization
/// and the data order from SplitMix64, v2 from ChaCha8).
pub const CLASSIFIER_ARCH: &str = "classifier-v2";
/// Side of the images the network is built for; other sizes are resized (bilinear).
pub const CLASSIFIER_SIDE: usize = 28;
/// Length of the penultimate feature vector.
pub const CLASSIFIER_FEATURE_DIM: usize = 128;

const CHANNELS: [usize; 3] = [16, 32, 64];
const INIT_STREAM: u64 = 0x1417;

/// The class count and the training settings of a [`Classifier`].
#[derive(Config, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// Number of classes (labels are `0..num_classes`); at least 2.
    pub num_classes: usize,
    /// Passes over the training images; at least 1.
    #[config(default = 3)]
    pub epochs: usize,
    /// Images per optimizer step; at least 1.
    #[config(default = 128)]
    pub batch_size: usize,
    /// Peak learning rate of Adam, decayed to 0 along a cosine over the whole training;
    /// in (0, 1].
    #[config(default = 2e-3)]
    pub lr: f64,
    /// Seeds the initial weights and the order of every epoch.
    #[config(default = 0)]
    pub seed: u64,
}

impl ClassifierConfig {
    /// Checks every field's range; the error names the field.
    pub fn validate(&self) -> Result<(), EvalError> {
        let invalid = |field: &str, message: String| {
            Err(EvalError::Shape(format!(
                "invalid classifier config: `{field}` {message}"
            )))
        };
        if self.num_classes < 2 {
            return invalid(
                "num_classes",
                format!("must be at least 2, got {}", self.num_classes),
            );
        }
        if self.epochs == 0 {
            return invalid("epochs", "must be at least 1, got 0".into());
        }
        if self.batch_size == 0 {
            return invalid("batch_size", "must be at least 1, got 0".into());
        }
        if !(self.lr > 0.0 && self.lr <= 1.0) {
            return invalid("lr", format!("must be in (0, 1], got {}", self.lr));
        }
        Ok(())
    }

    /// A network with weights drawn as PyTorch's default `Conv2d`/`Linear` initialization
    /// (uniform in `±1/sqrt(fan_in)`, biases too) from a host RNG seeded by `seed`: the same
    /// weights on every backend, and no dependence on the backend's global RNG (which other
    /// threads may draw from).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Classifier<B> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ INIT_STREAM);
        let [c1, c2, c3] = CHANNELS;
        let flat = c3 * (CLASSIFIER_SIDE / 4) * (CLASSIFIER_SIDE / 4);
        Classifier {
            conv1: conv3x3(1, c1, &mut rng, device),
            conv2: conv3x3(c1, c2, &mut rng, device),
            conv3: conv3x3(c2, c3, &mut rng, device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            hidden: linear(flat, CLASSIFIER_FEATURE_DIM, &mut rng, device),
            head: linear(CLASSIFIER_FEATURE_DIM, self.num_classes, &mut rng, device),
            weights_tag: String::new(),
        }
    }
}

/// conv(1->16) + ReLU, max-pool to 14x14, conv(16->32) + ReLU, max-pool to 7x7,
/// conv(32->64) + ReLU, flatten, linear to 128 + ReLU (the features), linear to the classes.
#[derive(Module, Debug)]
pub struct Classifier<B: Backend> {
    conv1: Conv2d<B>,
    conv2: Conv2d<B>,
    conv3: Conv2d<B>,
    pool: MaxPool2d,
    hidden: Linear<B>,
    head: Linear<B>,
    /// Identifies the trained weights in [`FeatureExtractor::id`] (e.g. `fashion-mnist-1a2b3c4d`);
    /// empty for untrained networks. Not part of the record.
    weights_tag: String,
}

impl<B: Backend> Classifier<B> {
    /// Sets the tag that names these weights in [`FeatureExtractor::id`]
    /// ([`save_classifier`] returns it, [`load_classifier`] sets it).
    pub fn with_weights_tag(mut self, tag: impl Into<String>) -> Self {
        self.weights_tag = tag.into();
        self
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.head.weight.dims()[1]
    }

    /// Penultimate features (after the ReLU).
    ///
    /// # Shapes
    /// - `images`: `[n, 1, h, w]` in `[-1, 1]`; resized (bilinear) to 28x28 unless already so
    /// - output: `[n, 128]`
    ///
    /// # Panics
    /// When `images` has another channel count than 1 (see
    /// [`FeatureExtractor::accepts_channels`]).
    pub fn penultimate(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let x = resize_to_side(images); // [n, 1, 28, 28]
        let x = self.pool.forward(relu(self.conv1.forward(x))); // [n, 16, 14, 14]
        let x = self.pool.forward(relu(self.conv2.forward(x))); // [n, 32, 7, 7]
        let x = relu(self.conv3.forward(x)); // [n, 64, 7, 7]
        let x = x.flatten::<2>(1, 3); // [n, 3136]
        relu(self.hidden.forward(x)) // [n, 128]
    }

    /// Unnormalized class scores.
    ///
    /// # Shapes
    /// - `images`: `[n, 1, h, w]` in `[-1, 1]`
    /// - output: `[n, num_classes]`
    pub fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.head.forward(self.penultimate(images))
    }

    /// The most likely class of each image.
    ///
    /// # Shapes
    /// - `images`: `[n, 1, h, w]` in `[-1, 1]`
    /// - output: `[n]`
    pub fn predict(&self, images: Tensor<B, 4>) -> Tensor<B, 1, Int> {
        self.logits(images).argmax(1).squeeze_dim::<1>(1)
    }
}

impl<B: Backend> FeatureExtractor<B> for Classifier<B> {
    /// `classifier-v2`, then the weights tag when there is one: `classifier-v2-mnist-1a2b3c4d`.
    fn id(&self) -> String {
        if self.weights_tag.is_empty() {
            CLASSIFIER_ARCH.to_string()
        } else {
            format!("{CLASSIFIER_ARCH}-{}", self.weights_tag)
        }
    }

    fn dim(&self) -> usize {
        CLASSIFIER_FEATURE_DIM
    }

    fn accepts_channels(&self, channels: usize) -> bool {
        channels == 1
    }

    fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.penultimate(images)
    }
}

/// Bilinear resize to 28x28 with half-pixel centres (PyTorch's `align_corners=False`), so that
/// samples of runs at other sizes (e.g. MNIST padded to 32) can still be scored; a no-op at
/// 28x28.
fn resize_to_side<B: Backend>(images: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, h, w] = images.dims();
    if (h, w) == (CLASSIFIER_SIDE, CLASSIFIER_SIDE) {
        return images;
    }
    let options = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
    interpolate(images, [CLASSIFIER_SIDE, CLASSIFIER_SIDE], options)
}

fn conv3x3<B: Backend>(
    channels_in: usize,
    channels_out: usize,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> Conv2d<B> {
    let mut conv = Conv2dConfig::new([channels_in, channels_out], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .with_initializer(Initializer::Zeros)
        .init(device);
    let fan_in = channels_in * 9;
    conv.weight = uniform_param([channels_out, channels_in, 3, 3], fan_in, rng, device);
    conv.bias = Some(uniform_param([channels_out], fan_in, rng, device));
    conv
}

fn linear<B: Backend>(
    d_input: usize,
    d_output: usize,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> Linear<B> {
    let mut linear = LinearConfig::new(d_input, d_output)
        .with_initializer(Initializer::Zeros)
        .init(device);
    linear.weight = uniform_param([d_input, d_output], d_input, rng, device);
    linear.bias = Some(uniform_param([d_output], d_input, rng, device));
    linear
}

/// A parameter of `shape` with values uniform in `±1/sqrt(fan_in)`.
fn uniform_param<B: Backend, const D: usize>(
    shape: [usize; D],
    fan_in: usize,
    rng: &mut ChaCha8Rng,
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let count = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
        .collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn::backend::Flex;

    #[test]
    fn shapes_and_resize() {
        let device = Default::default();
        let model = ClassifierConfig::new(10).init::<B>(&device);
        let images = Tensor::<B, 4>::zeros([3, 1, 28, 28], &device);
        assert_eq!(model.penultimate(images.clone()).dims(), [3, 128]);
        assert_eq!(model.logits(images.clone()).dims(), [3, 10]);
        assert_eq!(model.predict(images).dims(), [3]);
        let padded = Tensor::<B, 4>::zeros([2, 1, 32, 32], &device);
        assert_eq!(model.features(padded).dims(), [2, 128]);
        assert_eq!(model.num_classes(), 10);
        assert!(model.accepts_channels(1) && !model.accepts_channels(3));
        assert_eq!(model.id(), "classifier-v2");
        assert_eq!(
            model.with_weights_tag("mnist-00ff").id(),
            "classifier-v2-mnist-00ff"
        );
    }

    #[test]
    fn init_depends_on_the_seed_only() {
        let device = Default::default();
        let flat = |seed| {
            let model = ClassifierConfig::new(3).with_seed(seed).init::<B>(&device);
            model.head.weight.val().into_data().to_vec::<f32>().unwrap()
        };
        assert_eq!(flat(1), flat(1));
        assert_ne!(flat(1), flat(2));
        let bound = 1.0 / (CLASSIFIER_FEATURE_DIM as f32).sqrt();
        assert!(flat(1).iter().all(|v| v.abs() <= bound));
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let cases = [
            (ClassifierConfig::new(1), "`num_classes`"),
            (ClassifierConfig::new(10).with_epochs(0), "`epochs`"),
            (ClassifierConfig::new(10).with_batch_size(0), "`batch_size`"),
            (ClassifierConfig::new(10).with_lr(0.0), "`lr`"),
            (ClassifierConfig::new(10).with_lr(f64::NAN), "`lr`"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
        ClassifierConfig::new(10).validate().unwrap();
    }
}
