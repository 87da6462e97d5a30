//! Timestep embedding: the sinusoidal features of the Transformer, as diffusers'
//! `get_timestep_embedding`, followed by the two-layer MLP of DDPM (`TimestepEmbedding`).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// Configuration of [`SinusoidalEmbedding`].
///
/// The defaults are those of diffusers' `UNet2DModel` (and of the DDPM/`ddpm-cifar10` U-Net
/// as diffusers builds it): `flip_sin_to_cos = true`, `freq_shift = 0`, giving
/// `[cos(t * f_0), .., cos(t * f_{h-1}), sin(t * f_0), .., sin(t * f_{h-1})]` with
/// `f_i = max_period^(-i / (h - freq_shift))` and `h = dim / 2`.
#[derive(Config, Debug)]
pub struct SinusoidalEmbeddingConfig {
    /// Number of output features; odd sizes get one trailing zero, as in diffusers.
    pub dim: usize,
    /// Put the cosine half first (diffusers' `flip_sin_to_cos`).
    #[config(default = true)]
    pub flip_sin_to_cos: bool,
    /// Shift of the frequency denominator (diffusers' `downscale_freq_shift`); must be below `dim / 2`.
    #[config(default = 0.0)]
    pub freq_shift: f64,
    /// Longest period of the sinusoids.
    #[config(default = 10000.0)]
    pub max_period: f64,
}

impl SinusoidalEmbeddingConfig {
    /// Builds the (parameter-free) embedding.
    pub fn init(&self) -> SinusoidalEmbedding {
        SinusoidalEmbedding {
            dim: self.dim,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            max_period: self.max_period,
        }
    }
}

/// Fixed sinusoidal features of integer timesteps (no parameters); diffusers' `time_proj`.
#[derive(Module, Clone, Debug)]
pub struct SinusoidalEmbedding {
    /// Number of output features.
    pub dim: usize,
    /// Cosine half first.
    pub flip_sin_to_cos: bool,
    /// Shift of the frequency denominator.
    pub freq_shift: f64,
    /// Longest period.
    pub max_period: f64,
}

impl SinusoidalEmbedding {
    /// Frequencies `f_i`, computed on the host in f64 once per call (a few hundred values).
    fn frequencies(&self) -> Vec<f32> {
        let half = self.dim / 2;
        let denom = half as f64 - self.freq_shift;
        (0..half)
            .map(|i| (-(self.max_period.ln()) * i as f64 / denom).exp() as f32)
            .collect()
    }

    /// Embeds integer timesteps.
    ///
    /// # Shapes
    /// - `timesteps`: `[batch]`
    /// - returns: `[batch, dim]`
    pub fn forward<B: Backend>(&self, timesteps: Tensor<B, 1, Int>) -> Tensor<B, 2> {
        self.forward_float(timesteps.float())
    }

    /// Embeds timesteps that may lie between training timesteps (the sinusoid is continuous
    /// in `t`; diffusers feeds the fractional timesteps of Karras sigmas the same way).
    ///
    /// # Shapes
    /// - `timesteps`: `[batch]`
    /// - returns: `[batch, dim]`
    pub fn forward_float<B: Backend>(&self, timesteps: Tensor<B, 1>) -> Tensor<B, 2> {
        let device = timesteps.device();
        let [batch] = timesteps.dims();
        let freqs = self.frequencies();
        let half = freqs.len();
        let freqs = Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device);
        let args = timesteps.reshape([batch, 1]) * freqs.reshape([1, half]); // [batch, half]
        let (first, second) = if self.flip_sin_to_cos {
            (args.clone().cos(), args.sin())
        } else {
            (args.clone().sin(), args.cos())
        };
        let emb = Tensor::cat(vec![first, second], 1); // [batch, 2 * half]
        if self.dim % 2 == 1 {
            Tensor::cat(vec![emb, Tensor::zeros([batch, 1], &device)], 1)
        } else {
            emb
        }
    }
}

/// Configuration of [`TimestepEmbedding`].
#[derive(Config, Debug)]
pub struct TimestepEmbeddingConfig {
    /// Features of the sinusoidal input (the U-Net's `base_channels`).
    pub in_features: usize,
    /// Features of the embedding fed to every residual block (`4 * base_channels` in DDPM).
    pub embed_dim: usize,
}

impl TimestepEmbeddingConfig {
    /// Builds the MLP with PyTorch-default (Kaiming-uniform) initialisation.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TimestepEmbedding<B> {
        TimestepEmbedding {
            linear_1: LinearConfig::new(self.in_features, self.embed_dim).init(device),
            linear_2: LinearConfig::new(self.embed_dim, self.embed_dim).init(device),
        }
    }
}

/// `linear_1 -> SiLU -> linear_2`, diffusers' `TimestepEmbedding`.
#[derive(Module, Debug)]
pub struct TimestepEmbedding<B: Backend> {
    /// Sinusoidal features to the embedding width.
    pub linear_1: Linear<B>,
    /// Embedding width to embedding width.
    pub linear_2: Linear<B>,
}

impl<B: Backend> TimestepEmbedding<B> {
    /// # Shapes
    /// - `features`: `[batch, in_features]`
    /// - returns: `[batch, embed_dim]`
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        self.linear_2.forward(silu(self.linear_1.forward(features)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestBackend;

    fn embed(config: SinusoidalEmbeddingConfig, ts: &[i64]) -> Vec<f32> {
        let device = Default::default();
        let t = Tensor::<TestBackend, 1, Int>::from_data(ts, &device);
        let out = config.init().forward(t);
        assert_eq!(out.dims(), [ts.len(), config.dim]);
        out.into_data().to_vec::<f32>().unwrap()
    }

    /// The formula of diffusers' `get_timestep_embedding`, written element by element.
    fn reference(t: f64, j: usize, dim: usize, flip: bool, shift: f64) -> f64 {
        let half = dim / 2;
        if j >= 2 * half {
            return 0.0;
        }
        let (i, first_half) = if j < half {
            (j, true)
        } else {
            (j - half, false)
        };
        let arg = t * (-(10000f64.ln()) * i as f64 / (half as f64 - shift)).exp();
        match (first_half, flip) {
            (true, true) | (false, false) => arg.cos(),
            (true, false) | (false, true) => arg.sin(),
        }
    }

    #[test]
    fn sinusoidal_matches_formula() {
        let ts = [0i64, 1, 17, 500, 999];
        for (dim, flip, shift) in [(32, true, 0.0), (32, false, 1.0), (7, true, 0.0)] {
            let config = SinusoidalEmbeddingConfig::new(dim)
                .with_flip_sin_to_cos(flip)
                .with_freq_shift(shift);
            let got = embed(config, &ts);
            for (b, &t) in ts.iter().enumerate() {
                for j in 0..dim {
                    let want = reference(t as f64, j, dim, flip, shift);
                    let g = got[b * dim + j] as f64;
                    // f32 arguments up to ~1000 rad carry ~1e-4 absolute error in sin/cos.
                    assert!(
                        (g - want).abs() < 2e-3,
                        "dim {dim} t {t} j {j}: {g} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn default_is_cos_first() {
        // At t = 0 every cosine is 1 and every sine is 0.
        let got = embed(SinusoidalEmbeddingConfig::new(8), &[0]);
        assert_eq!(got, vec![1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn mlp_maps_to_embed_dim() {
        let device = Default::default();
        let mlp = TimestepEmbeddingConfig::new(16, 64).init::<TestBackend>(&device);
        let out = mlp.forward(Tensor::ones([3, 16], &device));
        assert_eq!(out.dims(), [3, 64]);
        assert_eq!(mlp.num_params(), 16 * 64 + 64 + 64 * 64 + 64);
    }
}
