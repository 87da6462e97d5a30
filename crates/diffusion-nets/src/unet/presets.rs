//! Named configurations: small nets for a laptop CPU and the exact network of DDPM.

use super::config::{UNetConfig, UNetVariant};
use crate::NetError;

/// Name and one-line description of every preset, in the order `preset_names` lists them.
const PRESETS: [(&str, &str); 5] = [
    (
        "mnist",
        "28x28x1 residual-attention U-Net, base 32, mults [1,2,2], 1 block/level, attention at 7x7; 1.1M params, 0.19 GMACs/image, CPU-trainable",
    ),
    (
        "mnist-residual",
        "the `mnist` net without attention (residual U-Net)",
    ),
    (
        "mnist-conv",
        "the `mnist` net without attention or skip connections in its blocks (plain conv U-Net)",
    ),
    (
        "cifar10",
        "32x32x3 residual-attention U-Net, base 64, mults [1,2,2,2], 2 blocks/level, attention at 16x16; 9.0M params, 1.6 GMACs/image",
    ),
    (
        "cifar10-ddpm",
        "the CIFAR-10 network of Ho et al. 2020 (35.7M params), = diffusers' UNet2DModel for ddpm-cifar10",
    ),
];

impl UNetConfig {
    /// The names accepted by [`UNetConfig::preset`].
    pub fn preset_names() -> Vec<&'static str> {
        PRESETS.iter().map(|(name, _)| *name).collect()
    }

    /// A one-line description of a preset, for `--help` and `info` output.
    pub fn preset_description(name: &str) -> Option<&'static str> {
        PRESETS.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }

    /// A named configuration; the unconditional version (set `num_classes` for labels).
    pub fn preset(name: &str) -> Result<UNetConfig, NetError> {
        // Small enough for a 2-core CPU: the costliest convolutions run on 28x28 maps with
        // 32 channels, attention only on 49 tokens, one residual block per down level.
        let mnist = || {
            UNetConfig::new(1, 28)
                .with_base_channels(32)
                .with_channel_mults(vec![1, 2, 2])
                .with_num_res_blocks(1)
                .with_attention_resolutions(vec![7])
                .with_dropout(0.0)
                .with_norm_groups(8)
        };
        let config = match name {
            "mnist" => mnist(),
            "mnist-residual" => mnist()
                .with_attention_resolutions(vec![])
                .with_variant(UNetVariant::Residual),
            "mnist-conv" => mnist()
                .with_attention_resolutions(vec![])
                .with_variant(UNetVariant::Conv),
            "cifar10" => UNetConfig::new(3, 32).with_base_channels(64),
            // The defaults are the DDPM network: base 128, mults [1,2,2,2], two residual
            // blocks per level, attention at 16x16 and in the middle, dropout 0.1, 32 groups.
            "cifar10-ddpm" => UNetConfig::new(3, 32),
            _ => {
                return Err(NetError::UnknownPreset {
                    name: name.to_string(),
                    known: Self::preset_names().join(", "),
                });
            }
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_validates_and_is_described() {
        for name in UNetConfig::preset_names() {
            let config = UNetConfig::preset(name).unwrap();
            config.validate().unwrap();
            assert!(UNetConfig::preset_description(name).is_some(), "{name}");
        }
    }

    #[test]
    fn unknown_preset_lists_known_ones() {
        let err = UNetConfig::preset("imagenet").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("imagenet") && msg.contains("cifar10-ddpm") && msg.contains("mnist"),
            "{msg}"
        );
    }

    #[test]
    fn presets_have_their_image_shapes() {
        let mnist = UNetConfig::preset("mnist").unwrap();
        assert_eq!(
            (mnist.in_channels, mnist.out_channels(), mnist.image_size),
            (1, 1, 28)
        );
        let ddpm = UNetConfig::preset("cifar10-ddpm").unwrap();
        assert_eq!(
            (ddpm.in_channels, ddpm.out_channels(), ddpm.image_size),
            (3, 3, 32)
        );
        assert_eq!(ddpm.variant, UNetVariant::ResidualAttention);
        assert_eq!(
            UNetConfig::preset("mnist-conv").unwrap().variant,
            UNetVariant::Conv
        );
    }
}
