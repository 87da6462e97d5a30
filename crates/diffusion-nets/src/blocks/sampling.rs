//! Resolution changes between U-Net levels: strided 3x3 convolution down, nearest x2 and a
//! 3x3 convolution up (diffusers' `Downsample2D` / `Upsample2D` with `use_conv = True`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};

use super::resnet::conv3x3;

/// Configuration of [`Downsample`].
#[derive(Config, Debug)]
pub struct DownsampleConfig {
    /// Channels in and out.
    pub channels: usize,
    /// diffusers' `downsample_padding`: 1 pads every side by one; 0 pads only the bottom and
    /// the right by one (diffusers' `F.pad(x, (0, 1, 0, 1))` before an unpadded convolution).
    #[config(default = 1)]
    pub padding: usize,
}

impl DownsampleConfig {
    /// Builds the strided convolution.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Downsample<B> {
        let padding = match self.padding {
            0 => PaddingConfig2d::Explicit(0, 0, 1, 1),
            _ => PaddingConfig2d::Explicit(1, 1, 1, 1),
        };
        Downsample {
            conv: Conv2dConfig::new([self.channels, self.channels], [3, 3])
                .with_stride([2, 2])
                .with_padding(padding)
                .init(device),
        }
    }
}

/// Halves the resolution (rounding up) with a stride-2 3x3 convolution.
#[derive(Module, Debug)]
pub struct Downsample<B: Backend> {
    /// The strided convolution.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Downsample<B> {
    /// # Shapes
    /// - `x`: `[batch, channels, h, w]`
    /// - returns: `[batch, channels, ceil(h / 2), ceil(w / 2)]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        self.conv.forward(x)
    }
}

/// Configuration of [`Upsample`].
#[derive(Config, Debug)]
pub struct UpsampleConfig {
    /// Channels in and out.
    pub channels: usize,
}

impl UpsampleConfig {
    /// Builds the 3x3 convolution that follows the nearest-neighbour upsampling.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Upsample<B> {
        Upsample {
            conv: conv3x3(self.channels, self.channels, device),
        }
    }
}

/// Doubles the resolution: nearest-neighbour x2, then a 3x3 convolution.
#[derive(Module, Debug)]
pub struct Upsample<B: Backend> {
    /// The convolution after the upsampling.
    pub conv: Conv2d<B>,
}

impl<B: Backend> Upsample<B> {
    /// # Shapes
    /// - `x`: `[batch, channels, h, w]`
    /// - returns: `[batch, channels, 2h, 2w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [_, _, h, w] = x.dims();
        let options = InterpolateOptions::new(InterpolateMode::Nearest);
        self.conv.forward(interpolate(x, [2 * h, 2 * w], options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use burn::tensor::Distribution;

    #[test]
    fn down_halves_and_up_doubles() {
        let device = Default::default();
        let down = DownsampleConfig::new(4).init::<TestBackend>(&device);
        let up = UpsampleConfig::new(4).init::<TestBackend>(&device);
        let x = Tensor::<TestBackend, 4>::random([2, 4, 14, 14], Distribution::Default, &device);
        let d = down.forward(x);
        assert_eq!(d.dims(), [2, 4, 7, 7]);
        assert_eq!(up.forward(d).dims(), [2, 4, 14, 14]);
    }

    #[test]
    fn upsampling_is_nearest_neighbour() {
        // With a centre-tap identity kernel the convolution passes the upsampled map through,
        // so each output pixel must equal the input pixel at (i / 2, j / 2).
        let device = Default::default();
        let mut up = UpsampleConfig::new(1).init::<TestBackend>(&device);
        let mut kernel = [0.0f32; 9];
        kernel[4] = 1.0;
        up.conv.weight = up.conv.weight.map(|w| {
            Tensor::from_data(TensorData::new(kernel.to_vec(), [1, 1, 3, 3]), &w.device())
        });
        up.conv.bias = up.conv.bias.map(|p| p.map(|b| b.zeros_like()));
        let x = Tensor::<TestBackend, 4>::random([1, 1, 3, 4], Distribution::Default, &device);
        let xs = x.clone().into_data().to_vec::<f32>().unwrap();
        let out = up.forward(x).into_data().to_vec::<f32>().unwrap();
        for i in 0..6 {
            for j in 0..8 {
                assert_eq!(out[i * 8 + j], xs[(i / 2) * 4 + j / 2], "pixel ({i}, {j})");
            }
        }
    }

    use burn::tensor::TensorData;
}
