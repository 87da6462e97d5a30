//! Building blocks of the U-Nets, one concept per file.

pub mod attention;
pub mod label;
pub mod resnet;
pub mod sampling;
pub mod timestep;

pub use attention::{SpatialAttention, SpatialAttentionConfig};
pub use label::{LabelEmbedding, LabelEmbeddingConfig};
pub(crate) use resnet::conv3x3;
pub use resnet::{ResnetBlock, ResnetBlockConfig, TimeInjection};
pub use sampling::{Downsample, DownsampleConfig, Upsample, UpsampleConfig};
pub use timestep::{
    SinusoidalEmbedding, SinusoidalEmbeddingConfig, TimestepEmbedding, TimestepEmbeddingConfig,
};
