//! Building a [`UNet`] from a validated [`UNetConfig`], level by level as diffusers'
//! `UNet2DModel.__init__` does, so that parameter names and counts match it.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::GroupNormConfig;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::config::{Level, UNetConfig, UNetVariant};
use super::levels::{DownBlock, MidBlock, UpBlock};
use super::model::UNet;
use crate::NetError;
use crate::blocks::{
    DownsampleConfig, LabelEmbeddingConfig, ResnetBlock, ResnetBlockConfig,
    SinusoidalEmbeddingConfig, SpatialAttention, SpatialAttentionConfig, TimestepEmbeddingConfig,
    UpsampleConfig, conv3x3,
};

impl UNetConfig {
    /// Validates the config and builds the network with PyTorch-default initialisation.
    ///
    /// Weights are drawn from the backend's RNG, all of them before this returns: call
    /// `B::seed(device, seed)` just before for reproducible weights. (burn initialises
    /// parameters lazily, on first use; drawing them here keeps the weights independent of
    /// whatever else draws random numbers between `init` and the first forward pass.)
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<UNet<B>, NetError> {
        self.validate()?;
        let plan = self.level_plan();
        let base = self.base_channels;
        let temb = self.time_embed_dim();

        let down_blocks = plan
            .iter()
            .enumerate()
            .map(|(i, level)| {
                let cin = if i == 0 { base } else { plan[i - 1].channels };
                let resnets = (0..self.num_res_blocks)
                    .map(|j| {
                        let cin = if j == 0 { cin } else { level.channels };
                        self.resnet(cin, level.channels, device)
                    })
                    .collect();
                let downsamplers = (i + 1 < plan.len())
                    .then(|| {
                        DownsampleConfig::new(level.channels)
                            .with_padding(self.downsample_padding())
                            .init(device)
                    })
                    .into_iter()
                    .collect();
                DownBlock {
                    resnets,
                    attentions: self.attentions(level, self.num_res_blocks, device),
                    downsamplers,
                }
            })
            .collect();

        let deepest = plan[plan.len() - 1].channels;
        let mid_block = MidBlock {
            resnets: (0..2)
                .map(|_| self.resnet(deepest, deepest, device))
                .collect(),
            attentions: if self.mid_attention() {
                vec![self.attention_with_norm(deepest, self.mid_attention_norm(), device)]
            } else {
                vec![]
            },
        };

        let up_blocks = (0..plan.len())
            .rev()
            .map(|l| {
                let level = &plan[l];
                // The running features come from the level below (or the middle block).
                let prev = plan[(l + 1).min(plan.len() - 1)].channels;
                // The last block of a level takes the skip pushed before this level began:
                // the previous level's downsampler output, or conv_in's output at the top.
                let outer_skip = plan[l.saturating_sub(1)].channels;
                let n = self.num_res_blocks + 1;
                let resnets = (0..n)
                    .map(|j| {
                        let running = if j == 0 { prev } else { level.channels };
                        let skip = if j + 1 == n {
                            outer_skip
                        } else {
                            level.channels
                        };
                        self.resnet(running + skip, level.channels, device)
                    })
                    .collect();
                let upsamplers = (l > 0)
                    .then(|| UpsampleConfig::new(level.channels).init(device))
                    .into_iter()
                    .collect();
                UpBlock {
                    resnets,
                    attentions: self.attentions(level, n, device),
                    upsamplers,
                }
            })
            .collect();

        let net = UNet {
            time_proj: SinusoidalEmbeddingConfig::new(base)
                .with_flip_sin_to_cos(self.flip_sin_to_cos())
                .with_freq_shift(self.freq_shift())
                .init(),
            time_embedding: TimestepEmbeddingConfig::new(base, temb).init(device),
            class_embedding: self
                .num_classes
                .map(|n| LabelEmbeddingConfig::new(n, temb).init(device)),
            conv_in: conv3x3(self.in_channels, base, device),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNormConfig::new(self.norm_groups, base)
                .with_epsilon(self.norm_eps)
                .init(device),
            conv_out: conv3x3(base, self.out_channels(), device),
            in_channels: self.in_channels,
            num_classes: self.num_classes,
            size_divisor: self.size_divisor(),
        };
        net.visit(&mut Materialize);
        Ok(net)
    }

    fn resnet<B: Backend>(&self, cin: usize, cout: usize, device: &B::Device) -> ResnetBlock<B> {
        ResnetBlockConfig::new(cin, cout, self.time_embed_dim())
            .with_norm_groups(self.norm_groups)
            .with_norm_eps(self.norm_eps)
            .with_dropout(self.dropout)
            .with_time_injection(self.time_injection)
            .with_residual(self.variant != UNetVariant::Conv)
            .init(device)
    }

    fn attention<B: Backend>(&self, channels: usize, device: &B::Device) -> SpatialAttention<B> {
        self.attention_with_norm(channels, true, device)
    }

    fn attention_with_norm<B: Backend>(
        &self,
        channels: usize,
        norm: bool,
        device: &B::Device,
    ) -> SpatialAttention<B> {
        SpatialAttentionConfig::new(channels)
            .with_head_dim(self.attention_head_dim)
            .with_norm(norm)
            .with_norm_groups(self.norm_groups)
            .with_norm_eps(self.norm_eps)
            .init(device)
    }

    fn attentions<B: Backend>(
        &self,
        level: &Level,
        count: usize,
        device: &B::Device,
    ) -> Vec<SpatialAttention<B>> {
        if level.attention {
            (0..count)
                .map(|_| self.attention(level.channels, device))
                .collect()
        } else {
            vec![]
        }
    }
}

/// Touches every parameter so that burn's lazy initialisation runs now, in a fixed order.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}
