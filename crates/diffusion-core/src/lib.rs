//! The mathematics of diffusion models: noise schedules, the forward process, prediction
//! types, samplers and the sampling loop. No networks, no file I/O: networks plug in through
//! the [`Denoiser`] trait.

pub mod denoiser;

pub use denoiser::Denoiser;
