//! Denoising networks: the U-Net family with time and label embeddings.
//!
//! - [`blocks`]: sinusoidal timestep embedding and its MLP, class-label embedding with a null
//!   class, residual block with time injection, spatial self-attention, down/up sampling.
//! - [`unet`]: [`UNetConfig`] describes a conv, residual or residual-attention (DDPM) U-Net
//!   by data; [`UNetConfig::preset`] names a few; [`UNet`] implements
//!   [`diffusion_core::Denoiser`].
//!
//! Module and parameter names follow diffusers' `UNet2DModel`, so that its weights can be
//! mapped onto these modules.

pub mod blocks;
pub mod error;
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
