//! Denoising networks: the U-Net family with time and label embeddings.
//!
//! - [`blocks`]: sinusoidal timestep embedding and its MLP, class-label embedding with a null
//!   class, residual block with time injection, spatial self-attention, down/up sampling.
//! - [`fused`]: GroupNorm (+ SiLU) as one operation, with a CPU kernel and its own backward
//!   pass on Flex (feature `flex-kernels`, on by default), burn's ops on other backends.
//! - [`unet`]: [`UNetConfig`] describes a conv, residual or residual-attention (DDPM) U-Net
//!   by data; [`UNetConfig::preset`] names a few; [`UNet`] implements
//!   [`diffusion_core::Denoiser`].
//!
//! Module and parameter names follow diffusers' `UNet2DModel`, and
//! [`UNet::load_diffusers_state`] loads its weights.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::tensor::{Distribution, Int, Tensor};
//! use diffusion_nets::{UNetConfig, UNetVariant};
//!
//! // A tiny residual U-Net for 1x8x8 images with 3 classes (+ the null class 3).
//! let config = UNetConfig::new(1, 8)
//!     .with_base_channels(8)
//!     .with_channel_mults(vec![1, 2])
//!     .with_num_res_blocks(1)
//!     .with_attention_resolutions(vec![])
//!     .with_norm_groups(4)
//!     .with_num_classes(Some(3))
//!     .with_variant(UNetVariant::Residual);
//! let device = Default::default();
//! let net = config.init::<Flex>(&device)?;
//! let x = Tensor::<Flex, 4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
//! let t = Tensor::<Flex, 1, Int>::from_data([10, 900], &device);
//! let labels = Tensor::<Flex, 1, Int>::from_data([0, 3], &device);
//! let eps = net.try_forward(x, t, Some(labels))?;
//! assert_eq!(eps.dims(), [2, 1, 8, 8]);
//! # Ok::<(), diffusion_nets::NetError>(())
//! ```

pub mod blocks;
pub mod error;
pub mod fused;
pub mod unet;

pub use blocks::TimeInjection;
pub use error::NetError;
pub use unet::{UNet, UNetConfig, UNetVariant};

#[cfg(test)]
pub(crate) mod tests {
    /// CPU backend of the unit tests.
    pub type TestBackend = burn::backend::Flex;
    /// Autodiff on the CPU backend, for gradient tests.
    pub type TestAutodiff = burn::backend::Autodiff<TestBackend>;
}
