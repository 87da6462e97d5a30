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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::{DownsampleConfig, ResnetBlockConfig, UpsampleConfig};
    use crate::tests::TestBackend;
    use burn::tensor::Distribution;

    fn resnet(cin: usize, cout: usize) -> ResnetBlock<TestBackend> {
        ResnetBlockConfig::new(cin, cout, 8)
            .with_norm_groups(2)
            .init(&Default::default())
    }

    #[test]
    fn down_pushes_what_up_pops() {
        let device = Default::default();
        let down = DownBlock {
            resnets: vec![resnet(4, 6), resnet(6, 6)],
            attentions: vec![],
            downsamplers: vec![DownsampleConfig::new(6).init(&device)],
        };
        let up = UpBlock {
            // Running 6 channels plus skips of 6, 6 and (the outer skip) 4 channels.
            resnets: vec![resnet(12, 6), resnet(12, 6), resnet(10, 6)],
            attentions: vec![],
            upsamplers: vec![UpsampleConfig::new(6).init(&device)],
        };
        let x = Tensor::<TestBackend, 4>::random([2, 4, 8, 8], Distribution::Default, &device);
        let temb = Tensor::random([2, 8], Distribution::Default, &device);
        let mut skips = vec![x.clone()];
        let h = down.forward(x, &temb, &mut skips);
        assert_eq!(h.dims(), [2, 6, 4, 4]);
        let shapes: Vec<[usize; 4]> = skips.iter().map(|s| s.dims()).collect();
        assert_eq!(
            shapes,
            vec![[2, 4, 8, 8], [2, 6, 8, 8], [2, 6, 8, 8], [2, 6, 4, 4]]
        );
        // An up level at the resolution of the pushed skips: pops the last three.
        let mut skips_at_8 = skips[..3].to_vec();
        let h8 = Tensor::random([2, 6, 8, 8], Distribution::Default, &device);
        let out = up.forward(h8, &temb, &mut skips_at_8);
        assert_eq!(out.dims(), [2, 6, 16, 16]);
        assert!(skips_at_8.is_empty());
    }

    #[test]
    fn mid_block_runs_attention_between_resnets() {
        let device = Default::default();
        let mid = MidBlock {
            resnets: vec![resnet(4, 4), resnet(4, 4)],
            attentions: vec![
                crate::blocks::SpatialAttentionConfig::new(4)
                    .with_norm_groups(2)
                    .init(&device),
            ],
        };
        let without = MidBlock {
            resnets: mid.resnets.clone(),
            attentions: vec![],
        };
        let x = Tensor::<TestBackend, 4>::random([1, 4, 4, 4], Distribution::Default, &device);
        let temb = Tensor::random([1, 8], Distribution::Default, &device);
        let a = mid.forward(x.clone(), &temb);
        let b = without.forward(x, &temb);
        assert_eq!(a.dims(), [1, 4, 4, 4]);
        assert!((a - b).abs().max().into_scalar() > 1e-5);
    }
}
