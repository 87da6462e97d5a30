//! Inception-v3 exactly as pytorch-fid's FID network (Heusel et al. 2017, "GANs Trained by a
//! Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"; the TensorFlow graph
//! `inception-2015-12-05` ported to PyTorch by pytorch-fid): pool3 features, 2048 per image.
//!
//! What makes it pytorch-fid's and not torchvision's Inception, all reproduced here:
//! - its weights, `pt_inception-2015-12-05-6726825d.pth` (1008 classes), read directly with
//!   burn-store's PyTorch reader ([`FidInception::load`]; no Python at run time);
//! - the patched blocks `FIDInceptionA/C/E_1` (average pools that leave padded zeros out of the
//!   mean) and `FIDInceptionE_2` (a max pool in the last block);
//! - the input pipeline of `InceptionV3(resize_input=True, normalize_input=True)`:
//!   `F.interpolate(x, (299, 299), mode='bilinear', align_corners=False)` then `2x - 1`, on
//!   images in `[0, 1]`, gray ones replicated to RGB (pytorch-fid's loader does
//!   `PIL.Image.convert('RGB')`).
//!
//! Batch norm runs in eval mode (running statistics) and is folded into the convolutions when
//! the network is built; there is no dropout on the pool3 path, so the forward pass is the same
//! on every backend and never records an autodiff graph (parameters do not require gradients).
//!
//! Parity with pytorch-fid is tested without the official file (no machine here can download
//! it): `scripts/golden/inception_fid.py` runs pytorch-fid's own network with deterministic
//! weights, and `tests/inception_parity.rs` builds the same weights with
//! [`FidInception::from_fn`] and matches its pool3 features and logits.

mod blocks;
mod conv;
mod load;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};

pub use blocks::{InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, PoolBranch};
pub use conv::{BATCH_NORM_EPS, BasicConv2d};
pub use load::PthWeights;

use crate::{EvalError, FeatureExtractor};
use blocks::max_pool_3x3_stride_2;
use conv::{Builder, ConvSpec};

/// The official weights' file name, as published with pytorch-fid (`6726825d` is the start of
/// its SHA-256, which torch hub checks).
pub const WEIGHTS_FILE: &str = "pt_inception-2015-12-05-6726825d.pth";

/// Where `cargo xtask fetch-data --dataset inception-fid` puts the official weights.
pub const WEIGHTS_URL: &str = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// Length of a pool3 feature vector.
pub const FEATURE_DIM: usize = 2048;

/// Classes of the TensorFlow graph's softmax (1000 ImageNet classes and 8 unused).
pub const NUM_CLASSES: usize = 1008;

/// Side of the square images the network sees, after resizing.
pub const INPUT_SIZE: usize = 299;

/// The identifier of the features computed with the official weights; networks built from other
/// weights get it with a suffix (see [`FeatureExtractor::id`]).
pub const EXTRACTOR_ID: &str = "pytorch-fid-inception-v3-pool3";

/// `<data_dir>/inception-fid/pt_inception-2015-12-05-6726825d.pth`, where `cargo xtask
/// fetch-data --dataset inception-fid --data-dir <data_dir>` puts it.
pub fn weights_path(data_dir: &Path) -> PathBuf {
    data_dir.join("inception-fid").join(WEIGHTS_FILE)
}

/// Where the network's parameters come from: the official file ([`PthWeights`]), a function
/// ([`FidInception::from_fn`]), or anything else holding pytorch-fid's state dict.
pub trait WeightSource {
    /// The values of the state-dict entry `key` (row-major, PyTorch layout), which must have
    /// `shape`; a missing key or another shape is an [`EvalError::Weights`] naming the key.
    fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, EvalError>;
}

/// pytorch-fid's FID Inception-v3 up to pool3, plus the 1008-class `fc` layer for logits.
#[derive(Module, Debug)]
pub struct FidInception<B: Backend> {
    conv2d_1a_3x3: BasicConv2d<B>,
    conv2d_2a_3x3: BasicConv2d<B>,
    conv2d_2b_3x3: BasicConv2d<B>,
    conv2d_3b_1x1: BasicConv2d<B>,
    conv2d_4a_3x3: BasicConv2d<B>,
    mixed_5b: InceptionA<B>,
    mixed_5c: InceptionA<B>,
    mixed_5d: InceptionA<B>,
    mixed_6a: InceptionB<B>,
    mixed_6b: InceptionC<B>,
    mixed_6c: InceptionC<B>,
    mixed_6d: InceptionC<B>,
    mixed_6e: InceptionC<B>,
    mixed_7a: InceptionD<B>,
    mixed_7b: InceptionE<B>,
    mixed_7c: InceptionE<B>,
    fc: Linear<B>,
    /// [`FeatureExtractor::id`]: [`EXTRACTOR_ID`] plus a fingerprint of the weights.
    id: String,
}

impl<B: Backend> FidInception<B> {
    /// The network with the official weights from `path` (see [`weights_path`]).
    ///
    /// Every entry pool3 and `fc` need must be in the file with pytorch-fid's shape; others
    /// (`*.num_batches_tracked`, `AuxLogits.*`) are ignored.
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, EvalError> {
        Self::from_source(&mut PthWeights::open(path)?, device)
    }

    /// The network with parameters `f(key, shape, flat_index)`, keys and shapes being
    /// pytorch-fid's state dict (e.g. `Mixed_5b.branch1x1.bn.running_var`, `[64]`); for tests.
    pub fn from_fn(f: impl FnMut(&str, &[usize], usize) -> f32, device: &B::Device) -> Self {
        let mut source = FnSource(f);
        Self::from_source(&mut source, device)
            .unwrap_or_else(|e| unreachable!("a function source cannot fail: {e}"))
    }

    /// The network with parameters from `source`, requested in state-dict order.
    pub fn from_source(
        source: &mut dyn WeightSource,
        device: &B::Device,
    ) -> Result<Self, EvalError> {
        let mut fingerprint = Fingerprint::new(source);
        let mut b = Builder::<B> {
            source: &mut fingerprint,
            device,
        };
        let network = Self {
            conv2d_1a_3x3: b.conv("Conv2d_1a_3x3", ConvSpec::new(3, 32, [3, 3]).stride(2))?,
            conv2d_2a_3x3: b.conv("Conv2d_2a_3x3", ConvSpec::new(32, 32, [3, 3]))?,
            conv2d_2b_3x3: b.conv(
                "Conv2d_2b_3x3",
                ConvSpec::new(32, 64, [3, 3]).padding([1, 1]),
            )?,
            conv2d_3b_1x1: b.conv("Conv2d_3b_1x1", ConvSpec::new(64, 80, [1, 1]))?,
            conv2d_4a_3x3: b.conv("Conv2d_4a_3x3", ConvSpec::new(80, 192, [3, 3]))?,
            mixed_5b: InceptionA::build(&mut b, "Mixed_5b", 192, 32)?,
            mixed_5c: InceptionA::build(&mut b, "Mixed_5c", 256, 64)?,
            mixed_5d: InceptionA::build(&mut b, "Mixed_5d", 288, 64)?,
            mixed_6a: InceptionB::build(&mut b, "Mixed_6a", 288)?,
            mixed_6b: InceptionC::build(&mut b, "Mixed_6b", 768, 128)?,
            mixed_6c: InceptionC::build(&mut b, "Mixed_6c", 768, 160)?,
            mixed_6d: InceptionC::build(&mut b, "Mixed_6d", 768, 160)?,
            mixed_6e: InceptionC::build(&mut b, "Mixed_6e", 768, 192)?,
            mixed_7a: InceptionD::build(&mut b, "Mixed_7a", 768)?,
            mixed_7b: InceptionE::build(&mut b, "Mixed_7b", 1280, PoolBranch::Average)?,
            mixed_7c: InceptionE::build(&mut b, "Mixed_7c", 2048, PoolBranch::Max)?,
            fc: fc(&mut b)?,
            id: String::new(),
        };
        let id = format!("{EXTRACTOR_ID}-{:016x}", fingerprint.finish());
        Ok(Self { id, ..network }.no_grad())
    }

    /// pool3 features of `images`, checking their shape (see [`FeatureExtractor::features`]).
    ///
    /// # Shapes
    /// `[n, 1 or 3, h, w]` (values in `[-1, 1]`, any size) to `[n, 2048]`.
    pub fn pool3(&self, images: Tensor<B, 4>) -> Result<Tensor<B, 2>, EvalError> {
        let [n, c, h, w] = images.dims();
        if !self.accepts_channels(c) || h == 0 || w == 0 {
            return Err(EvalError::Shape(format!(
                "the FID Inception takes [N, 1 or 3, H, W] images, got [{n}, {c}, {h}, {w}]"
            )));
        }
        // 1. pytorch-fid's input: resize to 299 (bilinear, align_corners=False) then 2x - 1,
        //    on [0, 1] images. Bilinear weights sum to one, so resizing commutes with the affine
        //    maps: 2 * resize((x + 1) / 2) - 1 = resize(x), computed directly on [-1, 1].
        let x = if (h, w) == (INPUT_SIZE, INPUT_SIZE) {
            images
        } else {
            let options =
                InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false);
            interpolate(images, [INPUT_SIZE, INPUT_SIZE], options)
        };
        let x = if c == 1 { x.repeat_dim(1, 3) } else { x }; // [n, 3, 299, 299]

        // 2. Stem.
        let x = self.conv2d_1a_3x3.forward(x); // [n, 32, 149, 149]
        let x = self.conv2d_2a_3x3.forward(x); // [n, 32, 147, 147]
        let x = self.conv2d_2b_3x3.forward(x); // [n, 64, 147, 147]
        let x = max_pool_3x3_stride_2(x); // [n, 64, 73, 73]
        let x = self.conv2d_3b_1x1.forward(x); // [n, 80, 73, 73]
        let x = self.conv2d_4a_3x3.forward(x); // [n, 192, 71, 71]
        let x = max_pool_3x3_stride_2(x); // [n, 192, 35, 35]

        // 3. Inception blocks.
        let x = self.mixed_5b.forward(x); // [n, 256, 35, 35]
        let x = self.mixed_5c.forward(x); // [n, 288, 35, 35]
        let x = self.mixed_5d.forward(x); // [n, 288, 35, 35]
        let x = self.mixed_6a.forward(x); // [n, 768, 17, 17]
        let x = self.mixed_6b.forward(x);
        let x = self.mixed_6c.forward(x);
        let x = self.mixed_6d.forward(x);
        let x = self.mixed_6e.forward(x); // [n, 768, 17, 17]
        let x = self.mixed_7a.forward(x); // [n, 1280, 8, 8]
        let x = self.mixed_7b.forward(x); // [n, 2048, 8, 8]
        let x = self.mixed_7c.forward(x); // [n, 2048, 8, 8]

        // 4. pool3: the global average pool (AdaptiveAvgPool2d((1, 1))).
        let [n, c, h, w] = x.dims();
        Ok(x.reshape([n, c, h * w]).mean_dim(2).reshape([n, c]))
    }

    /// The 1008 logits of pool3 features, `fc(pool3)` with its bias (torchvision's output).
    ///
    /// # Shapes
    /// `[n, 2048]` to `[n, 1008]`.
    pub fn logits(&self, pool3: Tensor<B, 2>) -> Tensor<B, 2> {
        self.fc.forward(pool3)
    }

    /// The logits without `fc`'s bias: the Inception Score's input in the original TensorFlow
    /// code (`pool3 @ w`) and torch-fidelity's `logits_unbiased`.
    ///
    /// # Shapes
    /// `[n, 2048]` to `[n, 1008]`.
    pub fn logits_unbiased(&self, pool3: Tensor<B, 2>) -> Tensor<B, 2> {
        pool3.matmul(self.fc.weight.val())
    }
}

impl<B: Backend> FeatureExtractor<B> for FidInception<B> {
    /// [`EXTRACTOR_ID`] and a 64-bit fingerprint of every parameter value, so that features of
    /// the official weights and of any other weights never share a cache entry.
    fn id(&self) -> String {
        self.id.clone()
    }

    fn dim(&self) -> usize {
        FEATURE_DIM
    }

    fn accepts_channels(&self, channels: usize) -> bool {
        channels == 1 || channels == 3
    }

    /// pool3 features; panics on a channel count that [`Self::accepts_channels`] refuses (see
    /// [`FidInception::pool3`] for the checked version).
    fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.pool3(images).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `fc`: PyTorch's `[out, in]` weight transposed to Burn's `[in, out]`.
fn fc<B: Backend>(b: &mut Builder<B>) -> Result<Linear<B>, EvalError> {
    let weight = b.source.tensor("fc.weight", &[NUM_CLASSES, FEATURE_DIM])?;
    let bias = b.source.tensor("fc.bias", &[NUM_CLASSES])?;
    let mut transposed = vec![0.0f32; weight.len()];
    for (o, row) in weight.chunks_exact(FEATURE_DIM).enumerate() {
        for (i, w) in row.iter().enumerate() {
            transposed[i * NUM_CLASSES + o] = *w;
        }
    }
    Ok(Linear {
        weight: burn::module::Param::from_data(
            TensorData::new(transposed, [FEATURE_DIM, NUM_CLASSES]),
            b.device,
        ),
        bias: Some(burn::module::Param::from_data(
            TensorData::new(bias, [NUM_CLASSES]),
            b.device,
        )),
    })
}

/// [`FidInception::from_fn`]'s source.
struct FnSource<F>(F);

impl<F: FnMut(&str, &[usize], usize) -> f32> WeightSource for FnSource<F> {
    fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, EvalError> {
        let len = shape.iter().product();
        Ok((0..len).map(|i| (self.0)(key, shape, i)).collect())
    }
}

/// FNV-1a (64-bit) over every key, shape and value bit pattern a source hands out.
struct Fingerprint<'a> {
    inner: &'a mut dyn WeightSource,
    hash: u64,
}

impl<'a> Fingerprint<'a> {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new(inner: &'a mut dyn WeightSource) -> Self {
        Self {
            inner,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn add(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(Self::PRIME);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

impl WeightSource for Fingerprint<'_> {
    fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, EvalError> {
        let values = self.inner.tensor(key, shape)?;
        key.bytes().for_each(|b| self.add(u64::from(b)));
        shape.iter().for_each(|&d| self.add(d as u64));
        values.iter().for_each(|v| self.add(u64::from(v.to_bits())));
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_path_is_where_fetch_data_puts_it() {
        assert_eq!(
            weights_path(Path::new("data")),
            Path::new("data/inception-fid/pt_inception-2015-12-05-6726825d.pth")
        );
        assert!(WEIGHTS_URL.ends_with(WEIGHTS_FILE));
    }
}
