//! The three kinds of stage of the U-Net: a down level (diffusers' `DownBlock2D` /
//! `AttnDownBlock2D`), the middle block (`UNetMidBlock2D`) and an up level (`UpBlock2D` /
//! `AttnUpBlock2D`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::blocks::{Downsample, ResnetBlock, SpatialAttention, Upsample};

/// One resolution level on the way down: residual blocks, each optionally followed by
/// attention, then (except at the last level) a downsampler.
#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    /// `num_res_blocks` residual (or plain conv) blocks.
    pub resnets: Vec<ResnetBlock<B>>,
    /// One attention block per residual block, or none.
    pub attentions: Vec<SpatialAttention<B>>,
    /// Zero or one downsampler (a list, as in diffusers, so names read `downsamplers.0.conv`).
    pub downsamplers: Vec<Downsample<B>>,
}

impl<B: Backend> DownBlock<B> {
    /// Runs the level and pushes one skip per residual block and one after the downsampler.
    ///
    /// # Shapes
    /// - `x`: `[batch, in_ch, h, w]`, `temb`: `[batch, temb]`
    /// - returns: `[batch, ch, h / 2, w / 2]` (or `[batch, ch, h, w]` at the last level)
    pub fn forward(
        &self,
        mut x: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
            skips.push(x.clone());
        }
        for down in &self.downsamplers {
            x = down.forward(x);
            skips.push(x.clone());
        }
        x
    }
}

/// The bottleneck: residual block, optional attention, residual block.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    /// Two residual (or plain conv) blocks.
    pub resnets: Vec<ResnetBlock<B>>,
    /// Zero or one attention block between them.
    pub attentions: Vec<SpatialAttention<B>>,
}

impl<B: Backend> MidBlock<B> {
    /// # Shapes
    /// - `x`: `[batch, ch, h, w]`, `temb`: `[batch, temb]`
    /// - returns: `[batch, ch, h, w]`
    pub fn forward(&self, mut x: Tensor<B, 4>, temb: &Tensor<B, 2>) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            if i > 0
                && let Some(attn) = self.attentions.get(i - 1)
            {
                x = attn.forward(x);
            }
            x = resnet.forward(x, temb.clone());
        }
        x
    }
}

/// One resolution level on the way up: `num_res_blocks + 1` residual blocks, each fed the
/// concatenation of the running features and one popped skip, optional attention after each,
/// then (except at the top level) an upsampler.
#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    /// `num_res_blocks + 1` residual (or plain conv) blocks.
    pub resnets: Vec<ResnetBlock<B>>,
    /// One attention block per residual block, or none.
    pub attentions: Vec<SpatialAttention<B>>,
    /// Zero or one upsampler.
    pub upsamplers: Vec<Upsample<B>>,
}

impl<B: Backend> UpBlock<B> {
    /// Pops one skip per residual block (the network pushed exactly as many).
    ///
    /// # Shapes
    /// - `x`: `[batch, in_ch, h, w]`, `temb`: `[batch, temb]`
    /// - returns: `[batch, ch, 2h, 2w]` (or `[batch, ch, h, w]` at the top level)
    pub fn forward(
        &self,
        mut x: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            // The skip count is fixed by construction: down pushes what up pops.
            let skip = skips
                .pop()
                .expect("U-Net skip stack exhausted: down and up levels disagree");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), temb.clone()); // [batch, ch, h, w]
            if let Some(attn) = self.attentions.get(i) {
                x = attn.forward(x);
            }
        }
        for up in &self.upsamplers {
            x = up.forward(x);
        }
        x
    }
}
