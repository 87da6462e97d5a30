//! The U-Net family: configuration, presets, construction, forward and cost.

mod build;
pub mod config;
#[cfg(test)]
mod diffusers_parity;
pub mod levels;
mod macs;
pub mod model;
mod presets;
#[cfg(test)]
mod tests;
mod validate;

pub use config::{UNetConfig, UNetVariant};
pub use levels::{DownBlock, MidBlock, UpBlock};
pub use model::UNet;
