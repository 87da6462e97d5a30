//! [`FeatureExtractor`]: the one interface every feature network offers.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A network that maps images to feature vectors.
pub trait FeatureExtractor<B: Backend> {
    /// A stable identifier of the network and its weights, used in cache keys (e.g.
    /// `pytorch-fid-inception-v3-pool3`); changes whenever its features would.
    fn id(&self) -> String;

    /// The length of one feature vector.
    fn dim(&self) -> usize;

    /// The channel counts it accepts (e.g. Inception: 1 or 3, replicating gray to RGB).
    fn accepts_channels(&self, channels: usize) -> bool;

    /// Features of `images` (`[N, C, H, W]`, values in `[-1, 1]`), as `[N, dim]`.
    fn features(&self, images: Tensor<B, 4>) -> Tensor<B, 2>;
}
