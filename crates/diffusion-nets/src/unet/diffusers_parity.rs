//! The `cifar10-ddpm` preset against diffusers' `UNet2DModel` for DDPM CIFAR-10
//! (block_out_channels (128, 256, 256, 256), layers_per_block 2, down blocks (DownBlock2D,
//! AttnDownBlock2D, DownBlock2D, DownBlock2D), up blocks (UpBlock2D, UpBlock2D, AttnUpBlock2D,
//! UpBlock2D), 32 groups, 3 in/out channels).
//!
//! The reference numbers and `assets/ddpm_cifar10_param_shapes.txt` come from
//! `scripts/check_param_count.py`, run with diffusers 0.42.1 and torch: it builds that model,
//! sums `p.numel()` over `named_parameters()` (35,746,307), and counts FLOPs of one forward on
//! a 1x3x32x32 batch with `torch.utils.flop_counter.FlopCounterMode` (MACs = FLOPs / 2).
//! The network is only built here, never run.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::UNetConfig;
use crate::tests::TestBackend;

/// `sum(p.numel() for p in UNet2DModel(...).parameters())` with diffusers 0.42.1.
const DIFFUSERS_PARAMS: usize = 35_746_307;
/// `FlopCounterMode` total / 2 for one 32x32 image, diffusers 0.42.1.
const DIFFUSERS_MACS: u64 = 6_221_856_768;

/// Records `path -> shape` of every float parameter.
#[derive(Default)]
struct Shapes {
    path: Vec<String>,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl<B: Backend> ModuleVisitor<B> for Shapes {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.shapes
            .insert(self.path.join("."), param.val().dims().to_vec());
    }
}

/// Our parameter name and shape in diffusers' spelling: group norms say weight/bias where
/// burn says gamma/beta, `to_out` is `to_out.0`, and linear weights are stored transposed.
fn as_diffusers(path: &str, shape: &[usize]) -> (String, Vec<usize>) {
    let name = path
        .replace(".gamma", ".weight")
        .replace(".beta", ".bias")
        .replace(".to_out.", ".to_out.0.");
    let is_linear = [
        "linear_1",
        "linear_2",
        "time_emb_proj",
        "to_q",
        "to_k",
        "to_v",
        "to_out",
    ]
    .iter()
    .any(|l| path.contains(&format!(".{l}.weight")) || path.contains(&format!("{l}.weight")));
    let shape = if is_linear && shape.len() == 2 {
        vec![shape[1], shape[0]]
    } else {
        shape.to_vec()
    };
    (name, shape)
}

#[test]
fn cifar10_ddpm_matches_diffusers_parameter_count_and_names() {
    let config = UNetConfig::preset("cifar10-ddpm").unwrap();
    let net = config.init::<TestBackend>(&Default::default()).unwrap();
    assert_eq!(net.num_params(), DIFFUSERS_PARAMS);

    let mut visitor = Shapes::default();
    net.visit(&mut visitor);
    let ours: BTreeMap<String, Vec<usize>> = visitor
        .shapes
        .iter()
        .map(|(path, shape)| as_diffusers(path, shape))
        .collect();
    let reference: BTreeMap<String, Vec<usize>> =
        include_str!("../../assets/ddpm_cifar10_param_shapes.txt")
            .lines()
            .map(|line| {
                let mut parts = line.split_whitespace();
                let name = parts.next().unwrap().to_string();
                (name, parts.map(|d| d.parse().unwrap()).collect())
            })
            .collect();
    let missing: Vec<_> = reference
        .keys()
        .filter(|k| !ours.contains_key(*k))
        .collect();
    let extra: Vec<_> = ours
        .keys()
        .filter(|k| !reference.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    for (name, shape) in &reference {
        assert_eq!(&ours[name], shape, "{name}");
    }
}

#[test]
fn cifar10_ddpm_macs_match_torch_flop_counter() {
    let config = UNetConfig::preset("cifar10-ddpm").unwrap();
    assert_eq!(config.macs_per_image().unwrap(), DIFFUSERS_MACS);
}

#[test]
fn mnist_preset_matches_diffusers_parameter_count() {
    // `mnist_params` of scripts/check_param_count.py: UNet2DModel with block_out_channels
    // (32, 64, 64), layers_per_block 1, (DownBlock2D, DownBlock2D, AttnDownBlock2D) /
    // (AttnUpBlock2D, UpBlock2D, UpBlock2D), 8 groups, 1 in/out channel.
    let config = UNetConfig::preset("mnist").unwrap();
    let net = config.init::<TestBackend>(&Default::default()).unwrap();
    assert_eq!(net.num_params(), 1_112_801);
}
