//! Tests of the assembled U-Net: shapes, labels, gradient flow, seeding, dropout, size.

use super::*;
use crate::tests::{TestAutodiff, TestBackend};
use crate::{NetError, TimeInjection};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, ElementConversion, Int, Tensor};
use diffusion_core::Denoiser;

const VARIANTS: [UNetVariant; 3] = [
    UNetVariant::Conv,
    UNetVariant::Residual,
    UNetVariant::ResidualAttention,
];

/// A tiny net: `levels` levels from `size`, attention at the second level when allowed.
fn tiny(variant: UNetVariant, channels: usize, size: usize, mults: Vec<usize>) -> UNetConfig {
    let attention = if variant == UNetVariant::ResidualAttention {
        vec![size / 2]
    } else {
        vec![]
    };
    UNetConfig::new(channels, size)
        .with_base_channels(4)
        .with_channel_mults(mults)
        .with_num_res_blocks(1)
        .with_attention_resolutions(attention)
        .with_norm_groups(2)
        .with_dropout(0.0)
        .with_variant(variant)
}

fn inputs<B: Backend>(
    batch: usize,
    channels: usize,
    size: usize,
    device: &B::Device,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let x = Tensor::random(
        [batch, channels, size, size],
        Distribution::Normal(0.0, 1.0),
        device,
    );
    let t = Tensor::random([batch], Distribution::Uniform(0.0, 1000.0), device);
    (x, t)
}

fn labels<B: Backend>(values: &[i64], device: &B::Device) -> Tensor<B, 1, Int> {
    Tensor::from_data(values, device)
}

fn max_abs_diff<B: Backend>(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
    (a - b).abs().max().into_scalar().elem()
}

#[test]
fn output_shape_matches_input_for_every_variant() {
    let device = Default::default();
    for variant in VARIANTS {
        for (channels, size, mults) in [(1, 8, vec![1, 2]), (3, 12, vec![1, 2, 2])] {
            for num_classes in [None, Some(3)] {
                let config = tiny(variant, channels, size, mults.clone())
                    .with_num_classes(num_classes)
                    .with_time_injection(TimeInjection::ScaleShift);
                let net = config.init::<TestBackend>(&device).unwrap();
                for batch in [1, 3] {
                    let (x, t) = inputs(batch, channels, size, &device);
                    let ys: Vec<i64> = (0..batch as i64).collect();
                    let y = num_classes.map(|_| labels(&ys, &device));
                    let out = net.try_forward(x, t, y).unwrap();
                    assert_eq!(out.dims(), [batch, channels, size, size], "{config:?}");
                }
            }
        }
    }
}

#[test]
fn out_channels_and_other_sizes() {
    let device = Default::default();
    let config = tiny(UNetVariant::ResidualAttention, 1, 8, vec![1, 2]).with_out_channels(Some(2));
    let net = config.init::<TestBackend>(&device).unwrap();
    // The net runs at any multiple of 2^(levels - 1), not only at image_size.
    let (x, t) = inputs(2, 1, 6, &device);
    assert_eq!(net.try_forward(x, t, None).unwrap().dims(), [2, 2, 6, 6]);
    // 64x64 RGB with four levels (64, 32, 16, 8) and attention at 16.
    let big = tiny(UNetVariant::ResidualAttention, 3, 64, vec![1, 2, 2, 2])
        .with_attention_resolutions(vec![16]);
    let net = big.init::<TestBackend>(&device).unwrap();
    let (x, t) = inputs(1, 3, 64, &device);
    assert_eq!(net.try_forward(x, t, None).unwrap().dims(), [1, 3, 64, 64]);
}

#[test]
fn cheap_presets_keep_shape() {
    let device = Default::default();
    for name in ["mnist", "mnist-residual", "mnist-conv", "cifar10"] {
        let config = UNetConfig::preset(name).unwrap();
        let net = config.init::<TestBackend>(&device).unwrap();
        let (c, s) = (config.in_channels, config.image_size);
        let (x, t) = inputs(1, c, s, &device);
        let out = net.try_forward(x, t, None).unwrap();
        assert_eq!(out.dims(), [1, c, s, s], "{name}");
        let conditional = config
            .with_num_classes(Some(10))
            .init::<TestBackend>(&device)
            .unwrap();
        let (x, t) = inputs(1, c, s, &device);
        let out = conditional
            .try_forward(x, t, Some(labels(&[7], &device)))
            .unwrap();
        assert_eq!(out.dims(), [1, c, s, s], "{name} conditional");
    }
}

#[test]
fn labels_are_checked() {
    let device = Default::default();
    let cond = tiny(UNetVariant::Residual, 1, 8, vec![1, 2])
        .with_num_classes(Some(3))
        .init::<TestBackend>(&device)
        .unwrap();
    let (x, t) = inputs(2, 1, 8, &device);
    // 3 is the null class: allowed.
    cond.try_forward(x.clone(), t.clone(), Some(labels(&[0, 3], &device)))
        .unwrap();
    let err = cond.try_forward(x.clone(), t.clone(), Some(labels(&[1, 4], &device)));
    assert_eq!(
        err.unwrap_err(),
        NetError::LabelOutOfRange { label: 4, max: 3 }
    );
    let err = cond.try_forward(x.clone(), t.clone(), Some(labels(&[-1, 0], &device)));
    assert_eq!(
        err.unwrap_err(),
        NetError::LabelOutOfRange { label: -1, max: 3 }
    );
    let err = cond.try_forward(x.clone(), t.clone(), Some(labels(&[0, 1, 2], &device)));
    assert!(matches!(err, Err(NetError::Shape(_))));

    let uncond = tiny(UNetVariant::Residual, 1, 8, vec![1, 2])
        .init::<TestBackend>(&device)
        .unwrap();
    let err = uncond.try_forward(x.clone(), t.clone(), Some(labels(&[0, 0], &device)));
    assert_eq!(err.unwrap_err(), NetError::UnexpectedLabels);
    assert_eq!(
        uncond.check_labels(&labels(&[0], &device)),
        Err(NetError::UnexpectedLabels)
    );
}

#[test]
fn labels_condition_the_output_and_none_means_null() {
    let device = Default::default();
    let net = tiny(UNetVariant::ResidualAttention, 1, 8, vec![1, 2])
        .with_num_classes(Some(3))
        .init::<TestBackend>(&device)
        .unwrap();
    let (x, t) = inputs(2, 1, 8, &device);
    let none = net.forward(x.clone(), t.clone(), None);
    let null = net.forward(x.clone(), t.clone(), Some(labels(&[3, 3], &device)));
    assert!(max_abs_diff(none.clone(), null) < 1e-6);
    let real = net.forward(x, t, Some(labels(&[0, 1], &device)));
    assert!(max_abs_diff(none, real) > 1e-4);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let device = Default::default();
    let net = tiny(UNetVariant::Residual, 1, 8, vec![1, 2])
        .init::<TestBackend>(&device)
        .unwrap();
    let (x3, t) = inputs(2, 3, 8, &device);
    assert!(matches!(
        net.try_forward(x3, t, None),
        Err(NetError::Shape(_))
    ));
    let (x, t) = inputs(2, 1, 7, &device);
    assert!(matches!(
        net.try_forward(x, t, None),
        Err(NetError::Shape(_))
    ));
    let (x, _) = inputs::<TestBackend>(2, 1, 8, &device);
    let (_, t1) = inputs::<TestBackend>(1, 1, 8, &device);
    assert!(matches!(
        net.try_forward(x, t1, None),
        Err(NetError::Shape(_))
    ));
}

#[test]
fn denoiser_impl_runs_forward() {
    fn through_trait<B: Backend, D: Denoiser<B>>(
        d: &D,
        x: Tensor<B, 4>,
        t: Tensor<B, 1, Int>,
    ) -> Tensor<B, 4> {
        d.denoise(x, t, None)
    }
    let device = Default::default();
    let net = tiny(UNetVariant::ResidualAttention, 1, 8, vec![1, 2])
        .init::<TestBackend>(&device)
        .unwrap();
    let (x, t) = inputs(2, 1, 8, &device);
    let direct = net.forward(x.clone(), t.clone(), None);
    assert!(max_abs_diff(through_trait(&net, x, t), direct) < 1e-6);
}

/// Collects `path -> grad` failures of every float parameter.
struct GradCheck<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    path: Vec<String>,
    visited: usize,
    missing: Vec<String>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradCheck<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.visited += 1;
        let total = param
            .val()
            .grad(self.grads)
            .map(|g| g.abs().sum().into_scalar().elem::<f32>());
        if !total.is_some_and(|s| s > 0.0 && s.is_finite()) {
            self.missing
                .push(format!("{} ({total:?})", self.path.join(".")));
        }
    }
}

#[test]
fn gradient_reaches_every_parameter() {
    let device = Default::default();
    for variant in VARIANTS {
        for injection in [TimeInjection::Additive, TimeInjection::ScaleShift] {
            let config = tiny(variant, 3, 12, vec![1, 2, 2])
                .with_num_classes(Some(2))
                .with_time_injection(injection);
            let net = config.init::<TestAutodiff>(&device).unwrap();
            let (x, t) = inputs::<TestAutodiff>(3, 3, 12, &device);
            let target = Tensor::random([3, 3, 12, 12], Distribution::Normal(0.0, 1.0), &device);
            let out = net.forward(x, t, Some(labels(&[0, 1, 2], &device)));
            let grads = (out - target).powi_scalar(2).mean().backward();
            let mut check = GradCheck::<TestAutodiff> {
                grads: &grads,
                path: vec![],
                visited: 0,
                missing: vec![],
            };
            net.visit(&mut check);
            assert!(check.visited > 20, "{variant:?}: visited {}", check.visited);
            assert!(
                check.missing.is_empty(),
                "{variant:?} {injection:?}: no gradient for {:?}",
                check.missing
            );
        }
    }
}

#[test]
fn dropout_only_in_training() {
    let device = Default::default();
    let config = tiny(UNetVariant::ResidualAttention, 1, 8, vec![1, 2]).with_dropout(0.5);
    let net = config.init::<TestAutodiff>(&device).unwrap();
    let (x, t) = inputs::<TestAutodiff>(2, 1, 8, &device);
    // Training mode (autodiff): two passes draw different dropout masks.
    let a = net.forward(x.clone(), t.clone(), None);
    let b = net.forward(x.clone(), t.clone(), None);
    assert!(max_abs_diff(a, b) > 1e-4);
    // Eval mode (the inner backend): deterministic.
    let eval = net.valid();
    let (xi, ti) = (x.clone().inner(), t.clone().inner());
    let c = eval.forward(xi.clone(), ti.clone(), None);
    let d = eval.forward(xi.clone(), ti.clone(), None);
    assert_eq!(c.into_data(), d.into_data());
    // Without dropout, training and eval passes agree: bit for bit in the convolutional and
    // residual parts, to a few f32 ulps in attention, which the inner backend computes with
    // its fused kernel and autodiff decomposes into matmul and softmax (seen: up to 1e-6 on
    // outputs of magnitude 1, depending on the random weights).
    let plain = config
        .with_dropout(0.0)
        .init::<TestAutodiff>(&device)
        .unwrap();
    let train = plain.forward(x, t, None).inner();
    let eval = plain.valid().forward(xi, ti, None);
    let scale = eval.clone().abs().max().into_scalar().max(1.0);
    let diff = max_abs_diff(train, eval);
    assert!(diff <= 1e-5 * scale, "train and eval differ by {diff}");
}

#[test]
fn mnist_preset_forward_backward_batch_8() {
    let device = Default::default();
    let net = UNetConfig::preset("mnist")
        .unwrap()
        .init::<TestAutodiff>(&device)
        .unwrap();
    let (x, t) = inputs::<TestAutodiff>(8, 1, 28, &device);
    let noise = Tensor::random([8, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let out = net.forward(x, t, None);
    assert_eq!(out.dims(), [8, 1, 28, 28]);
    let loss = (out - noise).powi_scalar(2).mean();
    let value: f32 = loss.clone().into_scalar();
    assert!(value.is_finite() && value > 0.0);
    let grads = loss.backward();
    let grad = net.conv_in.weight.val().grad(&grads).unwrap();
    assert!(grad.abs().sum().into_scalar().elem::<f32>() > 0.0);
}

#[test]
fn mnist_preset_is_small() {
    let config = UNetConfig::preset("mnist").unwrap();
    let params = config
        .init::<TestBackend>(&Default::default())
        .unwrap()
        .num_params();
    assert!((1_000_000..=2_000_000).contains(&params), "{params}");
    // Per-image cost small enough for CPU training (a tenth of a GMAC or so).
    assert!(config.macs_per_image().unwrap() < 250_000_000);
}
