//! Analytic cost of one forward pass: multiply-accumulates of convolutions, linear layers and
//! attention matmuls (norms, activations, additions and upsampling copies are not counted,
//! as in `torch.utils.flop_counter`, whose FLOPs are twice these MACs).

use super::config::{UNetConfig, UNetVariant};
use crate::NetError;
use crate::blocks::TimeInjection;

impl UNetConfig {
    /// Multiply-accumulates of one forward pass on one `image_size` x `image_size` image.
    pub fn macs_per_image(&self) -> Result<u64, NetError> {
        self.validate()?;
        let plan = self.level_plan();
        let u = |v: usize| v as u64;
        let base = u(self.base_channels);
        let temb = u(self.time_embed_dim());
        let conv3 = |res: usize, cin: usize, cout: usize| u(res * res) * u(cin) * u(cout) * 9;
        let proj_out = match self.time_injection {
            TimeInjection::Additive => 1,
            TimeInjection::ScaleShift => 2,
        };
        let resnet = |res: usize, cin: usize, cout: usize| {
            let shortcut = if self.variant != UNetVariant::Conv && cin != cout {
                u(res * res) * u(cin) * u(cout)
            } else {
                0
            };
            conv3(res, cin, cout) + temb * u(cout) * proj_out + conv3(res, cout, cout) + shortcut
        };
        let attention = |res: usize, c: usize| {
            let n = u(res * res);
            // q, k, v, out projections, then q k^T and attention-weighted v.
            4 * n * u(c) * u(c) + 2 * n * n * u(c)
        };
        let size = self.image_size;

        let mut macs = base * temb + temb * temb; // time MLP
        macs += conv3(size, self.in_channels, self.base_channels); // conv_in
        for (i, level) in plan.iter().enumerate() {
            let cin = if i == 0 {
                self.base_channels
            } else {
                plan[i - 1].channels
            };
            for j in 0..self.num_res_blocks {
                let cin = if j == 0 { cin } else { level.channels };
                macs += resnet(level.resolution, cin, level.channels);
                if level.attention {
                    macs += attention(level.resolution, level.channels);
                }
            }
            if i + 1 < plan.len() {
                macs += conv3(level.resolution / 2, level.channels, level.channels);
            }
        }
        let deepest = plan[plan.len() - 1];
        macs += 2 * resnet(deepest.resolution, deepest.channels, deepest.channels);
        if self.mid_attention() {
            macs += attention(deepest.resolution, deepest.channels);
        }
        for l in (0..plan.len()).rev() {
            let level = plan[l];
            let prev = plan[(l + 1).min(plan.len() - 1)].channels;
            let outer_skip = plan[l.saturating_sub(1)].channels;
            let n = self.num_res_blocks + 1;
            for j in 0..n {
                let running = if j == 0 { prev } else { level.channels };
                let skip = if j + 1 == n {
                    outer_skip
                } else {
                    level.channels
                };
                macs += resnet(level.resolution, running + skip, level.channels);
                if level.attention {
                    macs += attention(level.resolution, level.channels);
                }
            }
            if l > 0 {
                macs += conv3(level.resolution * 2, level.channels, level.channels);
            }
        }
        macs += conv3(size, self.base_channels, self.out_channels()); // conv_out
        Ok(macs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_level_conv_net_by_hand() {
        // One level, one block, no attention, no skip convs: conv_in, down resnet, two mid
        // resnets, two up resnets (the first on [running, skip], the last on [.., conv_in]),
        // conv_out, and the time MLP.
        let c = UNetConfig::new(1, 4)
            .with_base_channels(2)
            .with_channel_mults(vec![1])
            .with_num_res_blocks(1)
            .with_attention_resolutions(vec![])
            .with_norm_groups(1)
            .with_variant(UNetVariant::Conv);
        let hw = 16;
        let time_mlp = 2 * 8 + 8 * 8;
        let block = |cin: u64| hw * cin * 2 * 9 + 8 * 2 + hw * 2 * 2 * 9;
        let want = time_mlp + hw * 2 * 9 + 3 * block(2) + 2 * block(4) + hw * 2 * 9;
        assert_eq!(c.macs_per_image().unwrap(), want);
    }

    #[test]
    fn attention_and_shortcuts_add_their_cost() {
        let plain = UNetConfig::new(3, 8)
            .with_base_channels(4)
            .with_channel_mults(vec![1, 2])
            .with_num_res_blocks(1)
            .with_attention_resolutions(vec![])
            .with_norm_groups(2);
        let conv = plain.clone().with_variant(UNetVariant::Conv);
        let residual = plain.clone().with_variant(UNetVariant::Residual);
        let with_mid = plain.clone();
        let with_level = plain.clone().with_attention_resolutions(vec![8]);
        let (c, r) = (
            conv.macs_per_image().unwrap(),
            residual.macs_per_image().unwrap(),
        );
        // 1x1 shortcuts: level 1 down (4 -> 8 at 4x4), up level 1 (16 -> 8, 12 -> 8 at 4x4),
        // up level 0 (12 -> 4, 8 -> 4 at 8x8).
        assert_eq!(
            r - c,
            16 * (4 * 8 + 16 * 8 + 12 * 8) + 64 * (12 * 4 + 8 * 4)
        );
        let mid = with_mid.macs_per_image().unwrap() - r;
        assert_eq!(mid, 4 * 16 * 64 + 2 * 16 * 16 * 8);
        let level = with_level.macs_per_image().unwrap() - with_mid.macs_per_image().unwrap();
        // One attention after the down block, two after the up blocks, at 8x8 with 4 channels.
        assert_eq!(level, 3 * (4 * 64 * 16 + 2 * 64 * 64 * 4));
    }

    #[test]
    fn invalid_config_is_an_error() {
        assert!(UNetConfig::new(3, 30).macs_per_image().is_err());
    }
}
