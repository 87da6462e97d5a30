//! Spatial self-attention over the `h * w` positions of a feature map (diffusers' `Attention`
//! as used by `AttnDownBlock2D`, `UNetMidBlock2D` and `AttnUpBlock2D`), with a residual.

use crate::fused::{attention, group_norm};
use burn::config::Config;
use burn::module::Module;
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Configuration of [`SpatialAttention`].
#[derive(Config, Debug)]
pub struct SpatialAttentionConfig {
    /// Channels of the feature map (the token width).
    pub channels: usize,
    /// Width of one head; `None` means a single head over all channels (DDPM). Must divide
    /// `channels`.
    #[config(default = "None")]
    pub head_dim: Option<usize>,
    /// Groups of the input group norm.
    #[config(default = 32)]
    pub norm_groups: usize,
    /// Epsilon of the input group norm.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Whether the input is group-normalised (diffusers' `norm_num_groups` set); `false` for
    /// the middle attention of diffusers' scale-shift nets, which has no group norm.
    #[config(default = true)]
    pub norm: bool,
}

impl SpatialAttentionConfig {
    /// Builds the block with PyTorch-default initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> SpatialAttention<B> {
        let c = self.channels;
        let head_dim = self.head_dim.unwrap_or(c);
        let linear = || LinearConfig::new(c, c).init(device);
        SpatialAttention {
            group_norm: self.norm.then(|| {
                GroupNormConfig::new(self.norm_groups, c)
                    .with_epsilon(self.norm_eps)
                    .init(device)
            }),
            to_q: linear(),
            to_k: linear(),
            to_v: linear(),
            to_out: linear(),
            heads: c / head_dim.max(1),
        }
    }
}

/// `x + to_out(softmax(q k^T / sqrt(d)) v)` with `q, k, v` projected from `group_norm(x)`.
#[derive(Module, Debug)]
pub struct SpatialAttention<B: Backend> {
    /// Normalises the input before the projections (absent in diffusers' scale-shift middle
    /// attention).
    pub group_norm: Option<GroupNorm<B>>,
    /// Query projection.
    pub to_q: Linear<B>,
    /// Key projection.
    pub to_k: Linear<B>,
    /// Value projection.
    pub to_v: Linear<B>,
    /// Output projection (diffusers' `to_out.0`).
    pub to_out: Linear<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> SpatialAttention<B> {
    /// # Shapes
    /// - `x`: `[batch, channels, h, w]`
    /// - returns: `[batch, channels, h, w]`
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, height, width] = x.dims();
        let tokens = height * width;
        let head_dim = channels / self.heads;
        let normed = match &self.group_norm {
            Some(norm) => group_norm(norm, x.clone()),
            None => x.clone(),
        };
        let h = normed.reshape([batch, channels, tokens]).swap_dims(1, 2); // [batch, tokens, channels]
        let split_heads = |t: Tensor<B, 3>| {
            t.reshape([batch, tokens, self.heads, head_dim])
                .swap_dims(1, 2) // [batch, heads, tokens, head_dim]
        };
        let q = split_heads(self.to_q.forward(h.clone()));
        let k = split_heads(self.to_k.forward(h.clone()));
        let v = split_heads(self.to_v.forward(h));
        // burn's fused op (flash attention where the backend has it), softmax(q k^T * scale) v
        // with scale = 1 / sqrt(head_dim); a node of its own on Autodiff<Flex>.
        let out = attention(q, k, v);
        let out = out.swap_dims(1, 2).reshape([batch, tokens, channels]); // [batch, tokens, channels]
        let out = self.to_out.forward(out).swap_dims(1, 2); // [batch, channels, tokens]
        x + out.reshape([batch, channels, height, width])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;
    use burn::tensor::Distribution;

    /// A naive reference: per batch, per head, per query position, loops over keys.
    #[allow(clippy::needless_range_loop)]
    fn naive(block: &SpatialAttention<TestBackend>, x: Tensor<TestBackend, 4>) -> Vec<f32> {
        let [batch, channels, height, width] = x.dims();
        let n = height * width;
        let heads = block.heads;
        let d = channels / heads;
        let normed = block
            .group_norm
            .as_ref()
            .map_or(x.clone(), |norm| norm.forward(x.clone()))
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let xs = x.into_data().to_vec::<f32>().unwrap();
        let mat = |l: &Linear<TestBackend>| {
            // burn stores linear weights as [d_input, d_output].
            let w = l.weight.val().into_data().to_vec::<f32>().unwrap();
            let b = l
                .bias
                .as_ref()
                .unwrap()
                .val()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            (w, b)
        };
        let apply = |(w, b): &(Vec<f32>, Vec<f32>), input: &[f32]| -> Vec<f32> {
            (0..channels)
                .map(|o| {
                    b[o] + (0..channels)
                        .map(|i| input[i] * w[i * channels + o])
                        .sum::<f32>()
                })
                .collect()
        };
        let (wq, wk, wv, wo) = (
            mat(&block.to_q),
            mat(&block.to_k),
            mat(&block.to_v),
            mat(&block.to_out),
        );
        let mut out = vec![0.0f32; xs.len()];
        for bi in 0..batch {
            let token = |p: usize| -> Vec<f32> {
                (0..channels)
                    .map(|c| normed[(bi * channels + c) * n + p])
                    .collect()
            };
            let tok: Vec<Vec<f32>> = (0..n).map(token).collect();
            let q: Vec<Vec<f32>> = tok.iter().map(|t| apply(&wq, t)).collect();
            let k: Vec<Vec<f32>> = tok.iter().map(|t| apply(&wk, t)).collect();
            let v: Vec<Vec<f32>> = tok.iter().map(|t| apply(&wv, t)).collect();
            for p in 0..n {
                let mut attended = vec![0.0f32; channels];
                for hd in 0..heads {
                    let r = hd * d..(hd + 1) * d;
                    let scores: Vec<f32> = (0..n)
                        .map(|s| {
                            let dot: f32 = r.clone().map(|c| q[p][c] * k[s][c]).sum();
                            dot / (d as f32).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f32 = exps.iter().sum();
                    for c in r {
                        attended[c] = (0..n).map(|s| exps[s] / total * v[s][c]).sum();
                    }
                }
                let projected = apply(&wo, &attended);
                for c in 0..channels {
                    let idx = (bi * channels + c) * n + p;
                    out[idx] = xs[idx] + projected[c];
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_reference() {
        let device = Default::default();
        for head_dim in [None, Some(4)] {
            let block = SpatialAttentionConfig::new(8)
                .with_head_dim(head_dim)
                .with_norm_groups(2)
                .init::<TestBackend>(&device);
            let x = Tensor::<TestBackend, 4>::random(
                [2, 8, 3, 5],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let got = block
                .forward(x.clone())
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            let want = naive(&block, x);
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-4,
                    "head_dim {head_dim:?} element {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn heads_follow_head_dim() {
        let device = Default::default();
        let single = SpatialAttentionConfig::new(16)
            .with_norm_groups(4)
            .init::<TestBackend>(&device);
        assert_eq!(single.heads, 1);
        let multi = SpatialAttentionConfig::new(16)
            .with_norm_groups(4)
            .with_head_dim(Some(4))
            .init::<TestBackend>(&device);
        assert_eq!(multi.heads, 4);
    }
}
