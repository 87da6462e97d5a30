//! `UNetConfig`: one description, by data, of the three U-Net variants (checked in `validate.rs`,
//! built in `build.rs`).

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::blocks::TimeInjection;

/// Which member of the U-Net family to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UNetVariant {
    /// Plain convolutional U-Net: the blocks of the residual net without their skip
    /// connections, and no attention.
    #[serde(rename = "conv")]
    Conv,
    /// Residual U-Net without attention.
    #[serde(rename = "residual")]
    Residual,
    /// Residual U-Net with self-attention in the middle block and at `attention_resolutions`:
    /// the network of DDPM (Ho et al. 2020).
    #[serde(rename = "residual-attention")]
    ResidualAttention,
}

/// Configuration of [`crate::UNet`]. `UNetConfig::new(3, 32)` is the CIFAR-10 network of
/// DDPM; see [`UNetConfig::preset`] for the named presets.
///
/// Structure and parameter names follow diffusers' `UNet2DModel` with `DownBlock2D` /
/// `AttnDownBlock2D` levels, `UNetMidBlock2D`, and up levels of `num_res_blocks + 1` residual
/// blocks that each consume one skip connection.
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Channels of the input images (1 for MNIST, 3 for CIFAR-10).
    pub in_channels: usize,
    /// Height and width of the training images; must be divisible by `2^(levels - 1)`.
    pub image_size: usize,
    /// Channels of the output; `None` means the same as `in_channels`.
    #[config(default = "None")]
    pub out_channels: Option<usize>,
    /// Channels of the first level; the sinusoidal embedding has this width and the time
    /// embedding `4 * base_channels`.
    #[config(default = 128)]
    pub base_channels: usize,
    /// Channel multiplier of each level (one level per entry), relative to `base_channels`.
    #[config(default = "vec![1, 2, 2, 2]")]
    pub channel_mults: Vec<usize>,
    /// Residual blocks per down level (up levels get one more).
    #[config(default = 2)]
    pub num_res_blocks: usize,
    /// Feature-map sizes (e.g. 16 for 16x16) at which self-attention follows every residual
    /// block; only for the `residual-attention` variant.
    #[config(default = "vec![16]")]
    pub attention_resolutions: Vec<usize>,
    /// Dropout probability inside residual blocks, in `[0, 1)`.
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Number of classes for class-conditional nets (plus one null class); `None` for
    /// unconditional nets.
    #[config(default = "None")]
    pub num_classes: Option<usize>,
    /// How the time embedding enters the residual blocks.
    #[config(default = "TimeInjection::Additive")]
    pub time_injection: TimeInjection,
    /// Groups of every group norm; must divide every level's channel count.
    #[config(default = 32)]
    pub norm_groups: usize,
    /// Epsilon of every group norm.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Width of one attention head; `None` for a single head over all channels (DDPM).
    #[config(default = "None")]
    pub attention_head_dim: Option<usize>,
    /// Conv, residual or residual-attention U-Net.
    #[config(default = "UNetVariant::ResidualAttention")]
    pub variant: UNetVariant,
    // The four fields below are diffusers options kept for imported nets. They are `Option`s
    // so that configs written before they existed still read (`None` is the default, which
    // their accessors of the same name resolve, and what every preset uses).
    /// Cosine half first in the sinusoidal timestep features (diffusers' `flip_sin_to_cos`;
    /// `false` in google/ddpm-cifar10-32); `None`: `true`.
    #[config(default = "None")]
    pub flip_sin_to_cos: Option<bool>,
    /// Shift of the sinusoid's frequency denominator (diffusers' `freq_shift`; 1 in
    /// google/ddpm-cifar10-32), in `[0, base_channels / 2)`; `None`: 0.
    #[config(default = "None")]
    pub freq_shift: Option<f64>,
    /// Padding of the downsamplers' strided convolution: 1 on every side, or 0 with one row
    /// and column of zeros added at the bottom and right (diffusers' `downsample_padding`, 0 in
    /// google/ddpm-cifar10-32); `None`: 1.
    #[config(default = "None")]
    pub downsample_padding: Option<usize>,
    /// Whether the middle block's attention normalises its input. diffusers drops that group
    /// norm when `resnet_time_scale_shift = "scale_shift"` (and `attn_norm_num_groups` is
    /// unset), so imported scale-shift nets set `Some(false)`; `None`: `true`.
    #[config(default = "None")]
    pub mid_attention_norm: Option<bool>,
}

/// One resolution level of the network, as derived from the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Level {
    /// Channels of every block of the level.
    pub channels: usize,
    /// Feature-map size at this level for `image_size` inputs.
    pub resolution: usize,
    /// Self-attention after each residual block.
    pub attention: bool,
}

impl UNetConfig {
    /// Output channels, resolving the `None` default.
    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    /// Width of the time embedding fed to every residual block.
    pub fn time_embed_dim(&self) -> usize {
        4 * self.base_channels
    }

    /// Number of resolution levels.
    pub fn levels(&self) -> usize {
        self.channel_mults.len()
    }

    /// The factor every input height and width must be divisible by: `2^(levels - 1)`.
    pub fn size_divisor(&self) -> usize {
        1usize << self.levels().saturating_sub(1)
    }

    /// `flip_sin_to_cos`, resolved.
    pub fn flip_sin_to_cos(&self) -> bool {
        self.flip_sin_to_cos.unwrap_or(true)
    }

    /// `freq_shift`, resolved.
    pub fn freq_shift(&self) -> f64 {
        self.freq_shift.unwrap_or(0.0)
    }

    /// `downsample_padding`, resolved.
    pub fn downsample_padding(&self) -> usize {
        self.downsample_padding.unwrap_or(1)
    }

    /// `mid_attention_norm`, resolved.
    pub fn mid_attention_norm(&self) -> bool {
        self.mid_attention_norm.unwrap_or(true)
    }

    /// Whether the middle block has self-attention.
    pub fn mid_attention(&self) -> bool {
        self.variant == UNetVariant::ResidualAttention
    }

    /// The levels, assuming `validate` passed.
    pub(crate) fn level_plan(&self) -> Vec<Level> {
        self.channel_mults
            .iter()
            .enumerate()
            .map(|(i, mult)| {
                let resolution = self.image_size >> i;
                Level {
                    channels: self.base_channels * mult,
                    resolution,
                    attention: self.variant == UNetVariant::ResidualAttention
                        && self.attention_resolutions.contains(&resolution),
                }
            })
            .collect()
    }
}

impl UNetVariant {
    /// The name used in JSON configs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Conv => "conv",
            Self::Residual => "residual",
            Self::ResidualAttention => "residual-attention",
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn small() -> UNetConfig {
        UNetConfig::new(1, 28)
            .with_base_channels(8)
            .with_channel_mults(vec![1, 2, 2])
            .with_num_res_blocks(1)
            .with_attention_resolutions(vec![7])
            .with_norm_groups(4)
    }

    #[test]
    fn attention_placement_follows_resolutions() {
        let plan = UNetConfig::new(3, 32).level_plan();
        let attn: Vec<bool> = plan.iter().map(|l| l.attention).collect();
        assert_eq!(attn, vec![false, true, false, false]);
        let res: Vec<usize> = plan.iter().map(|l| l.resolution).collect();
        assert_eq!(res, vec![32, 16, 8, 4]);
        let plain = small()
            .with_attention_resolutions(vec![])
            .with_variant(UNetVariant::Residual);
        plain.validate().unwrap();
        assert!(plain.level_plan().iter().all(|l| !l.attention) && !plain.mid_attention());
    }

    #[test]
    fn json_round_trip_and_names() {
        let config = small()
            .with_variant(UNetVariant::Conv)
            .with_attention_resolutions(vec![]);
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains("\"variant\":\"conv\""), "{json}");
        let back: UNetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, config);
        let v: UNetVariant = serde_json::from_str("\"residual-attention\"").unwrap();
        assert_eq!(v, UNetVariant::ResidualAttention);
    }
}
