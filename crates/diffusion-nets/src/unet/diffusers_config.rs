//! diffusers' `UNet2DModel` config (`config.json` of a model folder) to and from
//! [`UNetConfig`]. An option this crate cannot build is an error naming it; absent keys take
//! `UNet2DModel.__init__`'s defaults, as `from_pretrained` does.
//!
//! Mapping: `block_out_channels = base_channels * channel_mults`; `AttnDownBlock2D` /
//! `AttnUpBlock2D` levels are `attention_resolutions` (`sample_size >> level`);
//! `num_class_embeds = num_classes + 1` (diffusers' last class is our null class); with
//! `resnet_time_scale_shift = "scale_shift"` and no `attn_norm_num_groups`, diffusers' middle
//! attention has no group norm (`mid_attention_norm = false`).

use serde_json::{Map, Value, json};

use super::config::{UNetConfig, UNetVariant};
use crate::{NetError, TimeInjection};

/// Every key of `UNet2DModel.__init__` (diffusers 0.42.1).
const KNOWN_KEYS: [&str; 30] = [
    "sample_size",
    "in_channels",
    "out_channels",
    "center_input_sample",
    "time_embedding_type",
    "time_embedding_dim",
    "freq_shift",
    "flip_sin_to_cos",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "block_out_channels",
    "layers_per_block",
    "mid_block_scale_factor",
    "downsample_padding",
    "downsample_type",
    "upsample_type",
    "dropout",
    "act_fn",
    "attention_head_dim",
    "norm_num_groups",
    "attn_norm_num_groups",
    "norm_eps",
    "resnet_time_scale_shift",
    "add_attention",
    "class_embed_type",
    "num_class_embeds",
    "num_train_timesteps",
    // Written by diffusers for information; they change nothing in the network.
    "_class_name",
    "_diffusers_version",
];

fn unsupported(option: &str, message: impl Into<String>) -> NetError {
    NetError::DiffusersOption {
        option: option.to_string(),
        message: message.into(),
    }
}

/// Typed access to the keys of a diffusers config, with `UNet2DModel`'s defaults.
struct Keys<'a>(&'a Map<String, Value>);

impl Keys<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str, default: Option<usize>) -> Result<Option<usize>, NetError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                unsupported(key, format!("must be a non-negative integer, got {v}"))
            }),
        }
    }

    fn f64(&self, key: &str, default: f64) -> Result<f64, NetError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| unsupported(key, format!("must be a number, got {v}"))),
        }
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, NetError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| unsupported(key, format!("must be true or false, got {v}"))),
        }
    }

    fn str<'s>(&'s self, key: &str, default: Option<&'s str>) -> Result<Option<&'s str>, NetError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| unsupported(key, format!("must be a string, got {v}"))),
        }
    }

    /// Fails unless `key` is `want` (or absent, when `want` is the default).
    fn require(&self, key: &str, want: &Value) -> Result<(), NetError> {
        match self.get(key) {
            Some(v) if v != want && v.as_f64().is_none_or(|x| Some(x) != want.as_f64()) => Err(
                unsupported(key, format!("= {v} is not supported; only {want} is")),
            ),
            _ => Ok(()),
        }
    }

    fn list<T>(
        &self,
        key: &str,
        item: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, NetError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| unsupported(key, "must be a list"))?;
        items
            .iter()
            .map(|x| item(x).ok_or_else(|| unsupported(key, format!("has an invalid entry {x}"))))
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
}

/// `None` for the default value, so that an imported config equals the one written by hand.
fn unless_default<T: PartialEq>(value: T, default: T) -> Option<T> {
    (value != default).then_some(value)
}

impl UNetConfig {
    /// The network a diffusers `UNet2DModel` `config.json` describes, or an error naming the
    /// first option this crate cannot build (a block type, an activation, an embedding type..).
    /// `dropout` is taken from the config (0 unless set), as diffusers trains with it.
    pub fn from_diffusers_config(config: &Value) -> Result<Self, NetError> {
        let map = config
            .as_object()
            .ok_or_else(|| unsupported("config.json", "is not a JSON object"))?;
        if let Some(key) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(unsupported(
                key,
                "is not an option of diffusers' UNet2DModel that this importer knows",
            ));
        }
        let keys = Keys(map);
        if let Some(class) = keys.str("_class_name", None)?
            && class != "UNet2DModel"
        {
            return Err(unsupported(
                "_class_name",
                format!("= \"{class}\": only UNet2DModel folders can be imported"),
            ));
        }
        keys.require("center_input_sample", &json!(false))?;
        keys.require("time_embedding_type", &json!("positional"))?;
        keys.require("mid_block_type", &json!("UNetMidBlock2D"))?;
        if map.get("mid_block_type").is_some_and(Value::is_null) {
            return Err(unsupported(
                "mid_block_type",
                "= null (no middle block) is not supported",
            ));
        }
        keys.require("mid_block_scale_factor", &json!(1))?;
        keys.require("downsample_type", &json!("conv"))?;
        keys.require("upsample_type", &json!("conv"))?;
        keys.require("act_fn", &json!("silu"))?;
        keys.require("class_embed_type", &json!(null))?;

        let blocks = keys
            .list("block_out_channels", |v| v.as_u64().map(|n| n as usize))?
            .unwrap_or(vec![224, 448, 672, 896]);
        let base = *blocks
            .first()
            .filter(|b| **b > 0)
            .ok_or_else(|| unsupported("block_out_channels", "must list positive widths"))?;
        if let Some(b) = blocks.iter().find(|b| **b % base != 0) {
            return Err(unsupported(
                "block_out_channels",
                format!("{blocks:?}: {b} is not a multiple of the first width {base}"),
            ));
        }
        if let Some(dim) = keys.usize("time_embedding_dim", None)?
            && dim != 4 * base
        {
            return Err(unsupported(
                "time_embedding_dim",
                format!(
                    "= {dim}: only 4 * block_out_channels[0] = {} is supported",
                    4 * base
                ),
            ));
        }
        let image_size = match keys.get("sample_size") {
            Some(Value::Array(hw)) if hw.len() == 2 && hw[0] == hw[1] && hw[0].is_u64() => {
                hw[0].as_u64().map(|n| n as usize)
            }
            Some(v) => Some(v.as_u64().map(|n| n as usize).ok_or_else(|| {
                unsupported(
                    "sample_size",
                    format!("= {v}: only square sizes are supported"),
                )
            })?),
            None => None,
        }
        .ok_or_else(|| unsupported("sample_size", "is missing; it sets the image size"))?;

        let names = |key: &str, default: &[&str]| -> Result<Vec<String>, NetError> {
            Ok(keys
                .list(key, |v| v.as_str().map(str::to_string))?
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect()))
        };
        let down = names(
            "down_block_types",
            &[
                "DownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
                "AttnDownBlock2D",
            ],
        )?;
        let up = names(
            "up_block_types",
            &[
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "AttnUpBlock2D",
                "UpBlock2D",
            ],
        )?;
        for (key, list) in [("down_block_types", &down), ("up_block_types", &up)] {
            if list.len() != blocks.len() {
                return Err(unsupported(
                    key,
                    format!(
                        "lists {} blocks for {} block_out_channels",
                        list.len(),
                        blocks.len()
                    ),
                ));
            }
        }
        let mut attention_resolutions = vec![];
        for (level, down_type) in down.iter().enumerate() {
            let attention = match down_type.as_str() {
                "DownBlock2D" => false,
                "AttnDownBlock2D" => true,
                other => {
                    return Err(unsupported(
                        "down_block_types",
                        format!(
                            "block type {other} is not supported (DownBlock2D, AttnDownBlock2D are)"
                        ),
                    ));
                }
            };
            let up_type = &up[blocks.len() - 1 - level];
            let mirrored = if attention {
                "AttnUpBlock2D"
            } else {
                "UpBlock2D"
            };
            if up_type != mirrored {
                return Err(unsupported(
                    "up_block_types",
                    format!(
                        "{up_type} at level {level} does not mirror {down_type}: expected {mirrored}"
                    ),
                ));
            }
            if attention {
                attention_resolutions.push(image_size >> level);
            }
        }
        let add_attention = keys.bool("add_attention", true)?;
        let variant = match (add_attention, attention_resolutions.is_empty()) {
            (true, _) => UNetVariant::ResidualAttention,
            (false, true) => UNetVariant::Residual,
            (false, false) => {
                return Err(unsupported(
                    "add_attention",
                    "= false with attention blocks in the levels is not supported",
                ));
            }
        };
        let time_injection = match keys.str("resnet_time_scale_shift", Some("default"))? {
            Some("default") => TimeInjection::Additive,
            Some("scale_shift") => TimeInjection::ScaleShift,
            other => {
                return Err(unsupported(
                    "resnet_time_scale_shift",
                    format!("= {other:?} is not supported (default, scale_shift are)"),
                ));
            }
        };
        let norm_groups = keys
            .usize("norm_num_groups", Some(32))?
            .ok_or_else(|| unsupported("norm_num_groups", "= null is not supported"))?;
        let mid_attention_norm = match keys.usize("attn_norm_num_groups", None)? {
            None => time_injection == TimeInjection::Additive,
            Some(g) if g == norm_groups => true,
            Some(g) => {
                return Err(unsupported(
                    "attn_norm_num_groups",
                    format!("= {g}: only null or norm_num_groups ({norm_groups}) is supported"),
                ));
            }
        };
        let num_classes = match keys.usize("num_class_embeds", None)? {
            None => None,
            Some(n) if n >= 2 => Some(n - 1),
            Some(n) => {
                return Err(unsupported(
                    "num_class_embeds",
                    format!("= {n}: at least 2 (classes plus the null class) are needed"),
                ));
            }
        };
        let in_channels = keys.usize("in_channels", Some(3))?.unwrap_or(3);
        let config = UNetConfig::new(in_channels, image_size)
            .with_out_channels(Some(keys.usize("out_channels", Some(3))?.unwrap_or(3)))
            .with_base_channels(base)
            .with_channel_mults(blocks.iter().map(|b| b / base).collect())
            .with_num_res_blocks(keys.usize("layers_per_block", Some(2))?.unwrap_or(2))
            .with_attention_resolutions(attention_resolutions)
            .with_dropout(keys.f64("dropout", 0.0)?)
            .with_num_classes(num_classes)
            .with_time_injection(time_injection)
            .with_norm_groups(norm_groups)
            .with_norm_eps(keys.f64("norm_eps", 1e-5)?)
            // Absent means diffusers' default 8; null means one head over all channels.
            .with_attention_head_dim(match map.get("attention_head_dim") {
                Some(Value::Null) => None,
                _ => keys.usize("attention_head_dim", Some(8))?,
            })
            .with_variant(variant)
            .with_flip_sin_to_cos(unless_default(keys.bool("flip_sin_to_cos", true)?, true))
            .with_freq_shift(unless_default(keys.f64("freq_shift", 0.0)?, 0.0))
            .with_downsample_padding(unless_default(
                keys.usize("downsample_padding", Some(1))?.unwrap_or(1),
                1,
            ))
            .with_mid_attention_norm(unless_default(mid_attention_norm, true));
        config.validate()?;
        Ok(config)
    }

    /// The `config.json` of a diffusers `UNet2DModel` with this network's structure, or an
    /// error naming the field diffusers cannot express (the `conv` variant has no residual
    /// connections there).
    pub fn to_diffusers_config(&self) -> Result<Value, NetError> {
        self.validate()?;
        if self.variant == UNetVariant::Conv {
            return Err(NetError::config(
                "variant",
                "`conv` has no counterpart in diffusers' UNet2DModel (its blocks are residual)",
            ));
        }
        let scale_shift = self.time_injection == TimeInjection::ScaleShift;
        let attn_norm_num_groups = match (self.mid_attention_norm(), scale_shift) {
            (true, false) | (false, true) => Value::Null,
            (true, true) => json!(self.norm_groups),
            (false, false) => {
                return Err(NetError::config(
                    "mid_attention_norm",
                    "= false needs time_injection = scale-shift to be expressed in diffusers",
                ));
            }
        };
        let plan = self.level_plan();
        let down: Vec<&str> = plan
            .iter()
            .map(|l| {
                if l.attention {
                    "AttnDownBlock2D"
                } else {
                    "DownBlock2D"
                }
            })
            .collect();
        let up: Vec<&str> = plan
            .iter()
            .rev()
            .map(|l| {
                if l.attention {
                    "AttnUpBlock2D"
                } else {
                    "UpBlock2D"
                }
            })
            .collect();
        Ok(json!({
            "_class_name": "UNet2DModel",
            "_diffusers_version": "0.42.1",
            "sample_size": self.image_size,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels(),
            "center_input_sample": false,
            "time_embedding_type": "positional",
            "time_embedding_dim": null,
            "freq_shift": self.freq_shift(),
            "flip_sin_to_cos": self.flip_sin_to_cos(),
            "down_block_types": down,
            "mid_block_type": "UNetMidBlock2D",
            "up_block_types": up,
            "block_out_channels": plan.iter().map(|l| l.channels).collect::<Vec<_>>(),
            "layers_per_block": self.num_res_blocks,
            "mid_block_scale_factor": 1,
            "downsample_padding": self.downsample_padding(),
            "downsample_type": "conv",
            "upsample_type": "conv",
            "dropout": self.dropout,
            "act_fn": "silu",
            "attention_head_dim": self.attention_head_dim,
            "norm_num_groups": self.norm_groups,
            "attn_norm_num_groups": attn_norm_num_groups,
            "norm_eps": self.norm_eps,
            "resnet_time_scale_shift": if scale_shift { "scale_shift" } else { "default" },
            "add_attention": self.variant == UNetVariant::ResidualAttention,
            "class_embed_type": null,
            "num_class_embeds": self.num_classes.map(|n| n + 1),
            "num_train_timesteps": null,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// google/ddpm-cifar10-32's `config.json` as published on the Hugging Face hub.
    fn ddpm_cifar10() -> Value {
        json!({
            "_class_name": "UNet2DModel",
            "_diffusers_version": "0.0.4",
            "act_fn": "silu",
            "attention_head_dim": null,
            "block_out_channels": [128, 256, 256, 256],
            "center_input_sample": false,
            "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            "downsample_padding": 0,
            "flip_sin_to_cos": false,
            "freq_shift": 1,
            "in_channels": 3,
            "layers_per_block": 2,
            "mid_block_scale_factor": 1,
            "norm_eps": 1e-06,
            "norm_num_groups": 32,
            "out_channels": 3,
            "sample_size": 32,
            "time_embedding_type": "positional",
            "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        })
    }

    #[test]
    fn ddpm_cifar10_maps_to_the_ddpm_preset_layout() {
        let config = UNetConfig::from_diffusers_config(&ddpm_cifar10()).unwrap();
        let preset = UNetConfig::preset("cifar10-ddpm").unwrap();
        assert_eq!(config.channel_mults, preset.channel_mults);
        assert_eq!(config.attention_resolutions, vec![16]);
        assert_eq!(config.base_channels, 128);
        assert!(!config.flip_sin_to_cos() && config.freq_shift() == 1.0);
        assert_eq!(config.downsample_padding(), 0);
        assert_eq!(config.norm_eps, 1e-6);
        assert_eq!(config.attention_head_dim, None);
        assert!(config.mid_attention_norm());
    }

    #[test]
    fn export_then_import_is_the_same_config() {
        let config = UNetConfig::from_diffusers_config(&ddpm_cifar10()).unwrap();
        let back = UNetConfig::from_diffusers_config(&config.to_diffusers_config().unwrap());
        assert_eq!(back.unwrap(), config);
        let shifted = config
            .clone()
            .with_time_injection(TimeInjection::ScaleShift)
            .with_num_classes(Some(10));
        for mid_norm in [true, false] {
            let c = shifted
                .clone()
                .with_mid_attention_norm((!mid_norm).then_some(false));
            let json = c.to_diffusers_config().unwrap();
            assert_eq!(UNetConfig::from_diffusers_config(&json).unwrap(), c);
        }
        assert_eq!(
            shifted.to_diffusers_config().unwrap()["num_class_embeds"],
            json!(11)
        );
    }

    #[test]
    fn unsupported_options_are_named() {
        let cases = [
            (
                "down_block_types",
                json!([
                    "CrossAttnDownBlock2D",
                    "DownBlock2D",
                    "DownBlock2D",
                    "DownBlock2D"
                ]),
            ),
            (
                "up_block_types",
                json!(["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]),
            ),
            ("act_fn", json!("gelu")),
            ("time_embedding_type", json!("fourier")),
            ("resnet_time_scale_shift", json!("ada_group")),
            ("class_embed_type", json!("timestep")),
            ("block_out_channels", json!([128, 192, 256, 256])),
            ("attn_norm_num_groups", json!(8)),
            ("sample_size", json!([32, 16])),
            ("some_new_option", json!(1)),
        ];
        for (option, value) in cases {
            let mut config = ddpm_cifar10();
            config[option] = value;
            let err = UNetConfig::from_diffusers_config(&config).unwrap_err();
            assert!(
                matches!(&err, NetError::DiffusersOption { option: o, .. } if o == option),
                "{option}: {err}"
            );
            assert!(err.to_string().contains(&format!("`{option}`")), "{err}");
        }
    }

    #[test]
    fn scale_shift_attention_nets_drop_the_middle_norm() {
        let mut config = ddpm_cifar10();
        config["resnet_time_scale_shift"] = json!("scale_shift");
        let ours = UNetConfig::from_diffusers_config(&config).unwrap();
        assert_eq!(ours.mid_attention_norm, Some(false));
        assert_eq!(ours.time_injection, TimeInjection::ScaleShift);
    }
}
