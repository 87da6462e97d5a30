//! The U-Net family: configuration, presets, construction, forward and cost.

mod build;
pub mod config;
mod diffusers_config;
pub mod diffusers_import;
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
pub use diffusers_import::DiffusersState;
pub use levels::{DownBlock, MidBlock, UpBlock};
pub use model::UNet;
