//! The residual block of DDPM (diffusers' `ResnetBlock2D`), and, without its skip, the plain
//! convolutional block of the conv U-Net variant.

use burn::config::Config;
use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::fused::{group_norm, group_norm_silu};

/// How the time (and label) embedding enters a residual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeInjection {
    /// `h = conv1(..) + proj(emb)`: DDPM and diffusers' `resnet_time_scale_shift = "default"`.
    #[serde(rename = "additive", alias = "default")]
    Additive,
    /// `h = norm2(h) * (1 + scale) + shift` with `(scale, shift) = proj(emb)`: the
    /// "improved DDPM" / lucidrains form, diffusers' `"scale_shift"`.
    #[serde(rename = "scale-shift", alias = "scale_shift")]
    ScaleShift,
}

/// Configuration of [`ResnetBlock`]. Channel counts must be divisible by `norm_groups`
/// (checked by `UNetConfig::validate`; burn's `GroupNorm` would panic otherwise).
#[derive(Config, Debug)]
pub struct ResnetBlockConfig {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels; a 1x1 `conv_shortcut` is added when they differ from the input.
    pub out_channels: usize,
    /// Width of the time embedding.
    pub temb_channels: usize,
    /// Groups of both group norms.
    #[config(default = 32)]
    pub norm_groups: usize,
    /// Epsilon of both group norms.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Dropout before `conv2`, active only when training under autodiff.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Additive or scale-shift time injection.
    #[config(default = "TimeInjection::Additive")]
    pub time_injection: TimeInjection,
    /// `false` drops the skip connection (and `conv_shortcut`): the plain conv block.
    #[config(default = true)]
    pub residual: bool,
}

pub(crate) fn conv3x3<B: Backend>(cin: usize, cout: usize, device: &B::Device) -> Conv2d<B> {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

impl ResnetBlockConfig {
    /// Builds the block with PyTorch-default initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResnetBlock<B> {
        let (cin, cout) = (self.in_channels, self.out_channels);
        let proj_out = match self.time_injection {
            TimeInjection::Additive => cout,
            TimeInjection::ScaleShift => 2 * cout,
        };
        let conv_shortcut = (self.residual && cin != cout)
            .then(|| Conv2dConfig::new([cin, cout], [1, 1]).init(device));
        ResnetBlock {
            norm1: GroupNormConfig::new(self.norm_groups, cin)
                .with_epsilon(self.norm_eps)
                .init(device),
            conv1: conv3x3(cin, cout, device),
            time_emb_proj: LinearConfig::new(self.temb_channels, proj_out).init(device),
            norm2: GroupNormConfig::new(self.norm_groups, cout)
                .with_epsilon(self.norm_eps)
                .init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            conv2: conv3x3(cout, cout, device),
            conv_shortcut,
            scale_shift: self.time_injection == TimeInjection::ScaleShift,
            residual: self.residual,
        }
    }
}

/// `GroupNorm, SiLU, conv3x3, + time, GroupNorm, SiLU, dropout, conv3x3` plus the skip.
#[derive(Module, Debug)]
pub struct ResnetBlock<B: Backend> {
    /// First group norm, over the input channels.
    pub norm1: GroupNorm<B>,
    /// First 3x3 convolution, input to output channels.
    pub conv1: Conv2d<B>,
    /// Projection of `SiLU(temb)` to one (additive) or two (scale-shift) values per channel.
    pub time_emb_proj: Linear<B>,
    /// Second group norm.
    pub norm2: GroupNorm<B>,
    /// Dropout before the second convolution.
    pub dropout: Dropout,
    /// Second 3x3 convolution.
    pub conv2: Conv2d<B>,
    /// 1x1 convolution matching the skip to the output channels, when they change.
    pub conv_shortcut: Option<Conv2d<B>>,
    /// Scale-shift (true) or additive (false) time injection.
    pub scale_shift: bool,
    /// Whether the input is added back (false for the plain conv block).
    pub residual: bool,
}

impl<B: Backend> ResnetBlock<B> {
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`
    /// - `temb`: `[batch, temb_channels]`
    /// - returns: `[batch, out_channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>, temb: Tensor<B, 2>) -> Tensor<B, 4> {
        let h = self.conv1.forward(group_norm_silu(&self.norm1, x.clone())); // [batch, out, h, w]
        let [batch, channels, _, _] = h.dims();
        // diffusers applies SiLU to the embedding inside every block, before the projection.
        let proj = self.time_emb_proj.forward(silu(temb)); // [batch, out or 2 * out]
        let h = if self.scale_shift {
            let proj = proj.reshape([batch, 2 * channels, 1, 1]);
            let scale = proj.clone().narrow(1, 0, channels); // [batch, out, 1, 1]
            let shift = proj.narrow(1, channels, channels);
            silu(group_norm(&self.norm2, h) * (scale + 1.0) + shift)
        } else {
            group_norm_silu(&self.norm2, h + proj.reshape([batch, channels, 1, 1]))
        };
        let h = self.conv2.forward(self.dropout.forward(h));
        if !self.residual {
            return h;
        }
        let skip = match &self.conv_shortcut {
            Some(conv) => conv.forward(x),
            None => x,
        };
        skip + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use burn::tensor::Distribution;

    fn block(
        cin: usize,
        cout: usize,
        inj: TimeInjection,
        residual: bool,
    ) -> ResnetBlock<TestBackend> {
        ResnetBlockConfig::new(cin, cout, 16)
            .with_norm_groups(4)
            .with_time_injection(inj)
            .with_residual(residual)
            .init(&Default::default())
    }

    #[test]
    fn shapes_and_shortcut() {
        let device = Default::default();
        let x =
            Tensor::<TestBackend, 4>::random([3, 8, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let temb = Tensor::random([3, 16], Distribution::Normal(0.0, 1.0), &device);
        for inj in [TimeInjection::Additive, TimeInjection::ScaleShift] {
            let same = block(8, 8, inj, true);
            assert!(same.conv_shortcut.is_none());
            assert_eq!(same.forward(x.clone(), temb.clone()).dims(), [3, 8, 6, 6]);
            let wider = block(8, 12, inj, true);
            assert!(wider.conv_shortcut.is_some());
            assert_eq!(wider.forward(x.clone(), temb.clone()).dims(), [3, 12, 6, 6]);
            let plain = block(8, 12, inj, false);
            assert!(plain.conv_shortcut.is_none());
            assert_eq!(plain.forward(x.clone(), temb.clone()).dims(), [3, 12, 6, 6]);
        }
        assert_eq!(
            block(8, 8, TimeInjection::ScaleShift, true)
                .time_emb_proj
                .weight
                .dims(),
            [16, 16]
        );
    }

    #[test]
    fn residual_block_adds_its_input() {
        // Zeroing conv2 kills the residual branch: a residual block becomes the identity and
        // the plain block outputs conv2's (zero) bias.
        let device = Default::default();
        let x =
            Tensor::<TestBackend, 4>::random([2, 8, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        let temb = Tensor::random([2, 16], Distribution::Normal(0.0, 1.0), &device);
        for residual in [true, false] {
            let mut b = block(8, 8, TimeInjection::Additive, residual);
            b.conv2.weight = b.conv2.weight.map(|w| w.zeros_like());
            b.conv2.bias = b.conv2.bias.map(|p| p.map(|w| w.zeros_like()));
            let out = b.forward(x.clone(), temb.clone());
            let want = if residual { x.clone() } else { x.zeros_like() };
            out.into_data()
                .assert_approx_eq::<f32>(&want.into_data(), Default::default());
        }
    }

    #[test]
    fn time_embedding_changes_output() {
        let device = Default::default();
        let x =
            Tensor::<TestBackend, 4>::random([1, 8, 4, 4], Distribution::Normal(0.0, 1.0), &device);
        for inj in [TimeInjection::Additive, TimeInjection::ScaleShift] {
            let b = block(8, 8, inj, true);
            let a = b.forward(x.clone(), Tensor::zeros([1, 16], &device));
            let c = b.forward(x.clone(), Tensor::ones([1, 16], &device) * 3.0);
            let diff = (a - c).abs().max().into_scalar();
            assert!(diff > 1e-4, "{inj:?}: time embedding had no effect");
        }
    }

    #[test]
    fn time_injection_serde_names() {
        let add: TimeInjection = serde_json::from_str("\"default\"").unwrap();
        assert_eq!(add, TimeInjection::Additive);
        assert_eq!(
            serde_json::to_string(&TimeInjection::ScaleShift).unwrap(),
            "\"scale-shift\""
        );
        let ss: TimeInjection = serde_json::from_str("\"scale_shift\"").unwrap();
        assert_eq!(ss, TimeInjection::ScaleShift);
    }
}
