//! Validation of [`UNetConfig`]: every rule names the field it checks and the allowed range,
//! so that no impossible configuration reaches a panic inside `init` or `forward`.

use super::config::{UNetConfig, UNetVariant};
use crate::NetError;

impl UNetConfig {
    /// Checks every field; the error names the first offending field and its allowed range.
    pub fn validate(&self) -> Result<(), NetError> {
        let at_least_one = |field: &'static str, value: usize| {
            if value == 0 {
                Err(NetError::config(field, "must be at least 1, got 0"))
            } else {
                Ok(())
            }
        };
        at_least_one("in_channels", self.in_channels)?;
        if let Some(out) = self.out_channels {
            at_least_one("out_channels", out)?;
        }
        at_least_one("image_size", self.image_size)?;
        at_least_one("base_channels", self.base_channels)?;
        at_least_one("num_res_blocks", self.num_res_blocks)?;
        at_least_one("norm_groups", self.norm_groups)?;
        if let Some(classes) = self.num_classes {
            at_least_one("num_classes", classes)?;
        }
        if self.channel_mults.is_empty() {
            return Err(NetError::config(
                "channel_mults",
                "must list at least one level, got []",
            ));
        }
        if self.channel_mults.contains(&0) {
            return Err(NetError::config(
                "channel_mults",
                format!("entries must be at least 1, got {:?}", self.channel_mults),
            ));
        }
        // Keeps 2^(levels-1) and base * mult * 4 far from overflow.
        if self.levels() > 16 {
            return Err(NetError::config(
                "channel_mults",
                format!("must list at most 16 levels, got {}", self.levels()),
            ));
        }
        let too_wide = |c: usize| c.checked_mul(4).is_none_or(|c| c > u32::MAX as usize);
        let channels: Vec<usize> = self
            .channel_mults
            .iter()
            .map(|m| self.base_channels.checked_mul(*m).filter(|c| !too_wide(*c)))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                NetError::config(
                    "base_channels",
                    "times channel_mults is too large (over 2^30)",
                )
            })?;
        if let Some(c) = channels.iter().find(|c| *c % self.norm_groups != 0) {
            return Err(NetError::config(
                "norm_groups",
                format!(
                    "must divide every level's channel count (base_channels * channel_mults = {channels:?}); \
                     {c} is not divisible by {}",
                    self.norm_groups
                ),
            ));
        }
        if !self.image_size.is_multiple_of(self.size_divisor()) {
            return Err(NetError::config(
                "image_size",
                format!(
                    "must be divisible by 2^(levels - 1) = {} for {} channel_mults levels, got {}",
                    self.size_divisor(),
                    self.levels(),
                    self.image_size
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(NetError::config(
                "dropout",
                format!("must lie in [0, 1), got {}", self.dropout),
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(NetError::config(
                "norm_eps",
                format!("must be positive and finite, got {}", self.norm_eps),
            ));
        }
        if self.downsample_padding() > 1 {
            return Err(NetError::config(
                "downsample_padding",
                format!("must be 0 or 1, got {}", self.downsample_padding()),
            ));
        }
        let half = (self.base_channels / 2) as f64;
        let shift = self.freq_shift();
        if !(shift.is_finite() && (0.0..half).contains(&shift)) {
            return Err(NetError::config(
                "freq_shift",
                format!("must lie in [0, base_channels / 2) = [0, {half}), got {shift}"),
            ));
        }
        self.validate_attention(&channels)
    }

    fn validate_attention(&self, channels: &[usize]) -> Result<(), NetError> {
        if self.variant != UNetVariant::ResidualAttention && !self.attention_resolutions.is_empty()
        {
            return Err(NetError::config(
                "attention_resolutions",
                format!(
                    "must be empty for variant `{}`, which has no attention, got {:?}; \
                     use variant `residual-attention`",
                    self.variant.name(),
                    self.attention_resolutions
                ),
            ));
        }
        let reachable: Vec<usize> = (0..self.levels()).map(|i| self.image_size >> i).collect();
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| !reachable.contains(r))
        {
            return Err(NetError::config(
                "attention_resolutions",
                format!(
                    "contains {r}, a resolution the network never reaches; reachable: {reachable:?}"
                ),
            ));
        }
        if let Some(head_dim) = self.attention_head_dim {
            if head_dim == 0 {
                return Err(NetError::config(
                    "attention_head_dim",
                    "must be at least 1, got 0",
                ));
            }
            let mut attended: Vec<usize> = self
                .level_plan()
                .iter()
                .filter(|l| l.attention)
                .map(|l| l.channels)
                .collect();
            if self.mid_attention() {
                attended.extend(channels.last());
            }
            if let Some(c) = attended.iter().find(|c| *c % head_dim != 0) {
                return Err(NetError::config(
                    "attention_head_dim",
                    format!(
                        "must divide the channels of every attention block; {c} is not divisible by {head_dim}"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unet::config::tests::small;

    fn field_of(config: &UNetConfig) -> &'static str {
        match config.validate() {
            Err(NetError::InvalidConfig { field, .. }) => field,
            other => panic!("expected an invalid-config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_validate() {
        UNetConfig::new(3, 32).validate().unwrap();
        small().validate().unwrap();
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases: Vec<(UNetConfig, &str)> = vec![
            (
                UNetConfig {
                    in_channels: 0,
                    ..small()
                },
                "in_channels",
            ),
            (small().with_out_channels(Some(0)), "out_channels"),
            (
                UNetConfig {
                    image_size: 0,
                    ..small()
                },
                "image_size",
            ),
            (
                UNetConfig {
                    image_size: 30,
                    ..small()
                },
                "image_size",
            ),
            (small().with_base_channels(0), "base_channels"),
            (
                small().with_downsample_padding(Some(2)),
                "downsample_padding",
            ),
            (small().with_freq_shift(Some(4.0)), "freq_shift"),
            (small().with_freq_shift(Some(f64::NAN)), "freq_shift"),
            (small().with_base_channels(usize::MAX / 2), "base_channels"),
            (small().with_channel_mults(vec![]), "channel_mults"),
            (small().with_channel_mults(vec![1, 0]), "channel_mults"),
            (small().with_channel_mults(vec![1; 17]), "channel_mults"),
            (small().with_num_res_blocks(0), "num_res_blocks"),
            (small().with_norm_groups(0), "norm_groups"),
            (small().with_norm_groups(3), "norm_groups"),
            (small().with_num_classes(Some(0)), "num_classes"),
            (small().with_dropout(1.0), "dropout"),
            (small().with_dropout(-0.1), "dropout"),
            (small().with_dropout(f64::NAN), "dropout"),
            (small().with_norm_eps(0.0), "norm_eps"),
            (
                small().with_attention_resolutions(vec![16]),
                "attention_resolutions",
            ),
            (
                small().with_variant(UNetVariant::Residual),
                "attention_resolutions",
            ),
            (
                small().with_variant(UNetVariant::Conv),
                "attention_resolutions",
            ),
            (
                small().with_attention_head_dim(Some(0)),
                "attention_head_dim",
            ),
            (
                small().with_attention_head_dim(Some(3)),
                "attention_head_dim",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(field_of(&config), field, "{config:?}");
            let msg = config.validate().unwrap_err().to_string();
            assert!(msg.contains(&format!("`{field}`")), "{msg}");
        }
    }

    #[test]
    fn messages_give_allowed_range() {
        let msg = UNetConfig {
            image_size: 30,
            ..small()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("divisible by 2^(levels - 1) = 4") && msg.contains("30"),
            "{msg}"
        );
        let msg = small()
            .with_attention_resolutions(vec![16])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(msg.contains("[28, 14, 7]"), "{msg}");
    }
}
