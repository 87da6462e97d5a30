//! The fused op against burn's own `GroupNorm` (+ `silu`) on the same inputs: values on Flex
//! (in place and into a new buffer), values and all three gradients under `Autodiff<Flex>`,
//! the fallbacks, and determinism across thread counts; then the attention node against
//! burn's decomposition of attention under autodiff.
//!
//! Tolerance: both compute in f32 but sum in different orders (burn: one sum per group over
//! a reshaped tensor; the kernel: eight interleaved lanes), so the moments differ by a few
//! ulps of the group sums. 1e-5 relative to the largest value allows about 100 ulps.

use burn::module::{Module, Param};
use burn::nn::{GroupNorm, GroupNormConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, Tensor, TensorData};

use super::{group_norm, group_norm_silu};
use crate::tests::{TestAutodiff, TestBackend};

/// Fixed pseudo-random values in `[-1, 1)` (splitmix64 from `seed` and the shape), the same
/// on every run: the backend's generator is not seeded, and with its draws the 1x1 shape's
/// groups of two elements (ill-conditioned when the two are close) failed the gradient
/// check about one run in ten.
fn fixed<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    device: &B::Device,
) -> Tensor<B, D> {
    let mut state = shape
        .iter()
        .fold(seed, |h, &d| h.wrapping_mul(31).wrapping_add(d as u64));
    let values: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A group norm with pseudo-random (not 1 and 0) scale and shift.
fn norm<B: Backend>(groups: usize, channels: usize, device: &B::Device) -> GroupNorm<B> {
    let mut norm = GroupNormConfig::new(groups, channels).init::<B>(device);
    let seed = groups as u64;
    norm.gamma = Some(Param::from_tensor(fixed([channels], seed, device) * 1.5));
    norm.beta = Some(Param::from_tensor(
        fixed([channels], seed + 100, device) * 1.5,
    ));
    norm
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

fn assert_close(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= 1e-5 * scale,
        "{name}: max difference {worst:e}, scale {scale:e}"
    );
}

/// `[batch, channels, h, w]` and groups: the U-Net's shapes, a plane that is not a multiple
/// of the kernel's eight lanes (7x7), 1x1 planes, one group, one channel per group.
const SHAPES: [([usize; 4], usize); 6] = [
    ([4, 16, 28, 28], 8),
    ([3, 32, 7, 7], 8),
    ([2, 8, 1, 1], 4),
    ([1, 12, 5, 3], 1),
    ([2, 6, 4, 4], 6),
    ([5, 64, 2, 2], 32),
];

fn input<B: Backend>(shape: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    // Offset from zero, so that the mean matters; spread as N(0.5, 2).
    fixed(shape, 200, device) * 3.5 + 0.5
}

#[test]
fn forward_matches_burn_on_flex_in_place_and_into_a_new_buffer() {
    let device = Default::default();
    for (shape, groups) in SHAPES {
        let norm = norm::<TestBackend>(groups, shape[1], &device);
        let x = input::<TestBackend>(shape, &device);
        let x_before = values(x.clone());
        let want = values(silu(norm.forward(x.clone())));
        let want_plain = values(norm.forward(x.clone()));
        // `x` is still held here: the kernel must write a new buffer and leave `x` alone.
        let shared = values(group_norm_silu(&norm, x.clone()));
        assert_eq!(values(x.clone()), x_before, "{shape:?}: input modified");
        // A copy nobody else holds: normalized in place.
        let owned = values(group_norm_silu(&norm, x.clone() * 1.0));
        let plain = values(group_norm(&norm, x));
        assert_close(&format!("{shape:?} shared"), &shared, &want);
        assert_close(&format!("{shape:?} in place"), &owned, &want);
        assert_close(&format!("{shape:?} without silu"), &plain, &want_plain);
    }
}

/// Output and gradients of `sum(f(x) * upstream)` with respect to x, gamma and beta.
fn with_gradients(
    norm: &GroupNorm<TestAutodiff>,
    x: Tensor<TestAutodiff, 4>,
    upstream: Tensor<TestAutodiff, 4>,
    f: impl Fn(&GroupNorm<TestAutodiff>, Tensor<TestAutodiff, 4>) -> Tensor<TestAutodiff, 4>,
) -> [Vec<f32>; 4] {
    let x = x.require_grad();
    let out = f(norm, x.clone());
    let grads = (out.clone() * upstream).sum().backward();
    let gamma = norm.gamma.as_ref().unwrap().val();
    let beta = norm.beta.as_ref().unwrap().val();
    [
        values(out.inner()),
        values(x.grad(&grads).unwrap()),
        values(gamma.grad(&grads).unwrap()),
        values(beta.grad(&grads).unwrap()),
    ]
}

/// `norm` and `x` in f64 (the reference computation).
fn in_f64(
    norm: &GroupNorm<TestAutodiff>,
    x: &Tensor<TestAutodiff, 4>,
) -> (GroupNorm<TestAutodiff>, Tensor<TestAutodiff, 4>) {
    let cast = |p: &Option<Param<Tensor<TestAutodiff, 1>>>| {
        p.as_ref()
            .map(|p| Param::from_tensor(p.val().cast(DType::F64).detach().require_grad()))
    };
    let norm64 = GroupNorm {
        gamma: cast(&norm.gamma),
        beta: cast(&norm.beta),
        ..norm.clone()
    };
    (norm64, x.clone().cast(DType::F64).detach())
}

#[test]
fn gradients_match_burn_under_autodiff() {
    // Against burn's ops in f64, on fixed inputs. Groups of two elements (the 1x1 shape) are
    // ill-conditioned: there the fused op must be no further from f64 than burn's own f32
    // ops are (times two).
    let device = Default::default();
    for (shape, groups) in SHAPES {
        let norm = norm::<TestAutodiff>(groups, shape[1], &device);
        let x = input::<TestAutodiff>(shape, &device);
        let upstream = fixed::<TestAutodiff, 4>(shape, 300, &device);
        let (norm64, x64) = in_f64(&norm, &x);
        let up64 = upstream.clone().cast(DType::F64);
        type Op = fn(&GroupNorm<TestAutodiff>, Tensor<TestAutodiff, 4>) -> Tensor<TestAutodiff, 4>;
        let cases: [(&str, Op, Op); 2] = [
            (
                "silu",
                |n, x| group_norm_silu(n, x),
                |n, x| silu(n.forward(x)),
            ),
            ("plain", |n, x| group_norm(n, x), |n, x| n.forward(x)),
        ];
        for (name, fused, composed) in cases {
            let got = with_gradients(&norm, x.clone(), upstream.clone(), fused);
            let burn32 = with_gradients(&norm, x.clone(), upstream.clone(), composed);
            let truth = with_gradients(&norm64, x64.clone(), up64.clone(), composed);
            for (k, what) in ["output", "dx", "dgamma", "dbeta"].iter().enumerate() {
                let scale = truth[k].iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let err = |v: &[f32]| {
                    v.iter()
                        .zip(&truth[k])
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0f32, f32::max)
                };
                let (ours, burns) = (err(&got[k]), err(&burn32[k]));
                assert!(
                    ours <= (1e-5 * scale).max(2.0 * burns),
                    "{shape:?} {name} {what}: {ours:e} from f64 (burn's f32 ops: {burns:e}, scale {scale:e})"
                );
            }
        }
    }
}

#[test]
fn untracked_inputs_and_frozen_parameters() {
    let device = Default::default();
    let norm = norm::<TestAutodiff>(4, 8, &device);
    let x = input::<TestAutodiff>([2, 8, 3, 3], &device);
    // Nothing requires a gradient: the untracked path.
    let out = group_norm_silu(&norm, x.clone());
    assert_close(
        "untracked",
        &values(out.inner()),
        &values(silu(norm.forward(x.clone())).inner()),
    );
    // Only x requires a gradient (parameters frozen).
    let frozen = norm.clone().no_grad();
    let x = x.require_grad();
    let grads = group_norm_silu(&frozen, x.clone()).sum().backward();
    let dx = values(x.grad(&grads).unwrap());
    let x2 = x.detach().require_grad();
    let grads2 = silu(frozen.forward(x2.clone())).sum().backward();
    assert_close("frozen dx", &dx, &values(x2.grad(&grads2).unwrap()));
}

#[test]
fn other_dtypes_and_strided_inputs() {
    let device = Default::default();
    let norm = norm::<TestBackend>(4, 8, &device);
    // A permuted view: the kernel copies it to row-major order first.
    let x = input::<TestBackend>([2, 5, 8, 3], &device).permute([0, 2, 3, 1]); // [2, 8, 3, 5]
    assert_close(
        "strided",
        &values(group_norm_silu(&norm, x.clone())),
        &values(silu(norm.forward(x.clone()))),
    );
    // f64 data: burn's ops, exactly.
    let x64 = x.cast(DType::F64);
    let norm64 = GroupNorm {
        gamma: norm
            .gamma
            .map(|g| Param::from_tensor(g.val().cast(DType::F64))),
        beta: norm
            .beta
            .map(|b| Param::from_tensor(b.val().cast(DType::F64))),
        ..norm
    };
    let got = group_norm_silu(&norm64, x64.clone());
    assert_eq!(got.dtype(), DType::F64);
    assert_eq!(got.into_data(), silu(norm64.forward(x64)).into_data());
}

#[test]
fn same_bits_with_any_thread_count() {
    let device = Default::default();
    let norm = norm::<TestAutodiff>(8, 32, &device);
    let x = input::<TestAutodiff>([16, 32, 14, 14], &device);
    let upstream =
        Tensor::<TestAutodiff, 4>::random([16, 32, 14, 14], Distribution::Default, &device);
    let run = || {
        with_gradients(&norm, x.clone(), upstream.clone(), |n, x| {
            group_norm_silu(n, x)
        })
    };
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(run)
    };
    let reference = in_pool(1);
    for threads in [2, 3] {
        assert!(
            in_pool(threads) == reference,
            "{threads} threads differ from 1"
        );
    }
}

#[test]
fn the_kernel_runs_on_flex_and_autodiff_flex() {
    // Otherwise every test above would compare burn's ops with themselves.
    let device = Default::default();
    let calls = || super::kernel::CALLS.load(std::sync::atomic::Ordering::SeqCst);
    let before = calls();
    let _ = group_norm_silu(
        &norm::<TestBackend>(2, 4, &device),
        input([1, 4, 2, 2], &device),
    );
    assert!(calls() > before, "Flex took burn's ops");
    let before = calls();
    let x = input::<TestAutodiff>([1, 4, 2, 2], &device).require_grad();
    let _ = group_norm_silu(&norm::<TestAutodiff>(2, 4, &device), x)
        .sum()
        .backward();
    assert!(calls() >= before + 2, "Autodiff<Flex> took burn's ops");
}

/// Output and the gradients of q, k and v of `sum(f(q, k, v) * upstream)` under autodiff.
fn attention_with_gradients(
    [q, k, v]: [&Tensor<TestAutodiff, 4>; 3],
    upstream: &Tensor<TestAutodiff, 4>,
    f: impl Fn(
        Tensor<TestAutodiff, 4>,
        Tensor<TestAutodiff, 4>,
        Tensor<TestAutodiff, 4>,
    ) -> Tensor<TestAutodiff, 4>,
) -> [Vec<f32>; 4] {
    let [q, k, v] = [q, k, v].map(|t| Tensor::from_inner(t.clone().inner()).require_grad());
    let out = f(q.clone(), k.clone(), v.clone());
    let grads = (out.clone() * upstream.clone()).sum().backward();
    [
        values(out.inner()),
        values(q.grad(&grads).unwrap()),
        values(k.grad(&grads).unwrap()),
        values(v.grad(&grads).unwrap()),
    ]
}

/// The attention node against burn's decomposition of the same op under `Autodiff<Flex>`:
/// output and all three gradients, with as many queries as keys (the U-Net's case) and not,
/// rows that are not a multiple of eight lanes, and several heads.
#[test]
fn attention_gradients_match_burn_under_autodiff() {
    let device = Default::default();
    for (q_shape, tokens_k, dim_v) in [([2, 1, 64, 16], 64, 16), ([3, 2, 13, 8], 21, 5)] {
        let [b, h, _, d] = q_shape;
        let random = |shape: [usize; 4]| {
            Tensor::<TestAutodiff, 4>::random(shape, Distribution::Normal(0.0, 1.5), &device)
        };
        let (q, k, v) = (
            random(q_shape),
            random([b, h, tokens_k, d]),
            random([b, h, tokens_k, dim_v]),
        );
        let upstream = random([b, h, q_shape[2], dim_v]);
        let before = super::attention::CALLS.load(std::sync::atomic::Ordering::SeqCst);
        let ours = attention_with_gradients([&q, &k, &v], &upstream, super::attention);
        assert!(
            super::attention::CALLS.load(std::sync::atomic::Ordering::SeqCst) > before,
            "Autodiff<Flex> took burn's ops"
        );
        let burns = attention_with_gradients([&q, &k, &v], &upstream, |q, k, v| {
            burn::tensor::module::attention(q, k, v, None, None, Default::default())
        });
        for (name, (got, want)) in ["output", "dq", "dk", "dv"]
            .iter()
            .zip(ours.iter().zip(&burns))
        {
            assert_close(&format!("{name} of {q_shape:?}"), got, want);
        }
    }
}

/// Without tracked inputs, and on Flex itself, the attention is burn's fused op.
#[test]
fn attention_without_gradients_is_burns() {
    let device = Default::default();
    let random = |shape: [usize; 4]| {
        Tensor::<TestBackend, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
    };
    let (q, k, v) = (
        random([2, 2, 9, 4]),
        random([2, 2, 9, 4]),
        random([2, 2, 9, 4]),
    );
    let want = values(burn::tensor::module::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        None,
        None,
        Default::default(),
    ));
    assert_close(
        "Flex",
        &values(super::attention(q.clone(), k.clone(), v.clone())),
        &want,
    );
    let untracked = super::attention(
        Tensor::<TestAutodiff, 4>::from_inner(q),
        Tensor::from_inner(k),
        Tensor::from_inner(v),
    );
    assert_close("untracked Autodiff<Flex>", &values(untracked), &want);
}
