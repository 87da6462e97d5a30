//! `UNetConfig`: one description, by data, of the three U-Net variants, and its validation.

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::NetError;
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

    /// Checks every field; the error names the first offending field and its allowed range.
    pub fn validate(&self) -> Result<(), NetError> {
        let at_least_one = |field: &'static str, value: usize| {
            if value == 0 {
                Err(NetError::config(field, "must be at least 1, got 0"))
            } else {
                Ok(())
            }
        };
        at_least_one("in_channels", self.in_channels)?;
        if let Some(out) = self.out_channels {
            at_least_one("out_channels", out)?;
        }
        at_least_one("image_size", self.image_size)?;
        at_least_one("base_channels", self.base_channels)?;
        at_least_one("num_res_blocks", self.num_res_blocks)?;
        at_least_one("norm_groups", self.norm_groups)?;
        if let Some(classes) = self.num_classes {
            at_least_one("num_classes", classes)?;
        }
        if self.channel_mults.is_empty() {
            return Err(NetError::config(
                "channel_mults",
                "must list at least one level, got []",
            ));
        }
        if self.channel_mults.contains(&0) {
            return Err(NetError::config(
                "channel_mults",
                format!("entries must be at least 1, got {:?}", self.channel_mults),
            ));
        }
        // Keeps 2^(levels-1) and base * mult * 4 far from overflow.
        if self.levels() > 16 {
            return Err(NetError::config(
                "channel_mults",
                format!("must list at most 16 levels, got {}", self.levels()),
            ));
        }
        let too_wide = |c: usize| c.checked_mul(4).is_none_or(|c| c > u32::MAX as usize);
        let channels: Vec<usize> = self
            .channel_mults
            .iter()
            .map(|m| self.base_channels.checked_mul(*m).filter(|c| !too_wide(*c)))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                NetError::config(
                    "base_channels",
                    "times channel_mults is too large (over 2^30)",
                )
            })?;
        if let Some(c) = channels.iter().find(|c| *c % self.norm_groups != 0) {
            return Err(NetError::config(
                "norm_groups",
                format!(
                    "must divide every level's channel count (base_channels * channel_mults = {channels:?}); \
                     {c} is not divisible by {}",
                    self.norm_groups
                ),
            ));
        }
        if self.image_size % self.size_divisor() != 0 {
            return Err(NetError::config(
                "image_size",
                format!(
                    "must be divisible by 2^(levels - 1) = {} for {} channel_mults levels, got {}",
                    self.size_divisor(),
                    self.levels(),
                    self.image_size
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(NetError::config(
                "dropout",
                format!("must lie in [0, 1), got {}", self.dropout),
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(NetError::config(
                "norm_eps",
                format!("must be positive and finite, got {}", self.norm_eps),
            ));
        }
        self.validate_attention(&channels)
    }

    fn validate_attention(&self, channels: &[usize]) -> Result<(), NetError> {
        if self.variant != UNetVariant::ResidualAttention && !self.attention_resolutions.is_empty()
        {
            return Err(NetError::config(
                "attention_resolutions",
                format!(
                    "must be empty for variant `{}`, which has no attention, got {:?}; \
                     use variant `residual-attention`",
                    self.variant.name(),
                    self.attention_resolutions
                ),
            ));
        }
        let reachable: Vec<usize> = (0..self.levels()).map(|i| self.image_size >> i).collect();
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| !reachable.contains(r))
        {
            return Err(NetError::config(
                "attention_resolutions",
                format!(
                    "contains {r}, a resolution the network never reaches; reachable: {reachable:?}"
                ),
            ));
        }
        if let Some(head_dim) = self.attention_head_dim {
            if head_dim == 0 {
                return Err(NetError::config(
                    "attention_head_dim",
                    "must be at least 1, got 0",
                ));
            }
            let mut attended: Vec<usize> = self
                .level_plan()
                .iter()
                .filter(|l| l.attention)
                .map(|l| l.channels)
                .collect();
            if self.mid_attention() {
                attended.extend(channels.last());
            }
            if let Some(c) = attended.iter().find(|c| *c % head_dim != 0) {
                return Err(NetError::config(
                    "attention_head_dim",
                    format!(
                        "must divide the channels of every attention block; {c} is not divisible by {head_dim}"
                    ),
                ));
            }
        }
        Ok(())
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
mod tests {
    use super::*;

    fn field_of(config: &UNetConfig) -> &'static str {
        match config.validate() {
            Err(NetError::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    fn small() -> UNetConfig {
        UNetConfig::new(1, 28)
            .with_base_channels(8)
            .with_channel_mults(vec![1, 2, 2])
            .with_num_res_blocks(1)
            .with_attention_resolutions(vec![7])
            .with_norm_groups(4)
    }

    #[test]
    fn defaults_validate() {
        UNetConfig::new(3, 32).validate().unwrap();
        small().validate().unwrap();
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases: Vec<(UNetConfig, &str)> = vec![
            (
                UNetConfig {
                    in_channels: 0,
                    ..small()
                },
                "in_channels",
            ),
            (small().with_out_channels(Some(0)), "out_channels"),
            (
                UNetConfig {
                    image_size: 0,
                    ..small()
                },
                "image_size",
            ),
            (
                UNetConfig {
                    image_size: 30,
                    ..small()
                },
                "image_size",
            ),
            (small().with_base_channels(0), "base_channels"),
            (small().with_base_channels(usize::MAX / 2), "base_channels"),
            (small().with_channel_mults(vec![]), "channel_mults"),
            (small().with_channel_mults(vec![1, 0]), "channel_mults"),
            (small().with_channel_mults(vec![1; 17]), "channel_mults"),
            (small().with_num_res_blocks(0), "num_res_blocks"),
            (small().with_norm_groups(0), "norm_groups"),
            (small().with_norm_groups(3), "norm_groups"),
            (small().with_num_classes(Some(0)), "num_classes"),
            (small().with_dropout(1.0), "dropout"),
            (small().with_dropout(-0.1), "dropout"),
            (small().with_dropout(f64::NAN), "dropout"),
            (small().with_norm_eps(0.0), "norm_eps"),
            (
                small().with_attention_resolutions(vec![16]),
                "attention_resolutions",
            ),
            (
                small().with_variant(UNetVariant::Residual),
                "attention_resolutions",
            ),
            (
                small().with_variant(UNetVariant::Conv),
                "attention_resolutions",
            ),
            (
                small().with_attention_head_dim(Some(0)),
                "attention_head_dim",
            ),
            (
                small().with_attention_head_dim(Some(3)),
                "attention_head_dim",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(&config), field, "{config:?}");
            let msg = config.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
        }
    }

    #[test]
    fn messages_give_allowed_range() {
        let msg = UNetConfig {
            image_size: 30,
            ..small()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("divisible by 2^(levels - 1) = 4") && msg.contains("30"),
            "{msg}"
        );
        let msg = small()
            .with_attention_resolutions(vec![16])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("[28, 14, 7]"), "{msg}");
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
