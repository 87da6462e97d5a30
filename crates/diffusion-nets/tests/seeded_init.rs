//! Seeded initialisation. An integration test, in a process of its own, because Flex's RNG is
//! process-global: unit tests running in parallel threads would draw from it between
//! `seed` and `init`.

use burn::backend::Flex;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use diffusion_nets::{UNet, UNetConfig};

/// Flattens every float parameter, in visiting order.
struct Collect(Vec<f32>);

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0
            .extend(param.val().into_data().to_vec::<f32>().unwrap());
    }
}

fn weights<B: Backend>(net: &UNet<B>) -> Vec<f32> {
    let mut collect = Collect(vec![]);
    net.visit(&mut collect);
    collect.0
}

#[test]
fn same_seed_same_weights() {
    let device = Default::default();
    let config = UNetConfig::new(1, 8)
        .with_base_channels(4)
        .with_channel_mults(vec![1, 2])
        .with_num_res_blocks(1)
        .with_attention_resolutions(vec![4])
        .with_norm_groups(2)
        .with_num_classes(Some(2));
    let build = |seed, draw_after_init: bool| {
        Flex::seed(&device, seed);
        let net = config.init::<Flex>(&device).unwrap();
        if draw_after_init {
            // burn initialises parameters lazily; were `init` lazy too, this draw would
            // come before the weights' and change them.
            let _noise = Tensor::<Flex, 2>::random([64, 64], Distribution::Default, &device);
        }
        (weights(&net), net.num_params())
    };
    let (a, n) = build(7, false);
    assert_eq!(a.len(), n);
    // Plain `assert!`: a failure would otherwise print thousands of weights.
    assert!(a == build(7, false).0, "same seed gave different weights");
    assert!(
        a == build(7, true).0,
        "a random draw after `init` changed the weights"
    );
    assert!(
        a != build(8, false).0,
        "different seeds gave the same weights"
    );
}
