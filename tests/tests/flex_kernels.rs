//! The kernels our patched burn-flex (`patches/burn-flex`, see `patches/README.md`) replaces,
//! against plain loops written here: 2D convolution forward and all three gradients (through
//! `Autodiff<Flex>`, as training uses them), element-wise binary ops on broadcast, permuted,
//! flipped and sliced operands, attention, permuted copies, and the Bernoulli sampler of
//! dropout masks.
//!
//! Tolerances: the references sum in f64; Flex sums in f32 in another order. A convolution
//! output sums `c_in * kh * kw` products and a weight gradient `batch * out_h * out_w` of them,
//! each of magnitude below 1, so we allow 1e-4 relative to the largest value (about 100 f32
//! ulps at these sizes). Binary ops have no reduction: they must agree to 1e-6.

use burn::backend::Autodiff;
use burn::backend::Flex;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Distribution, Tensor, TensorData};

type AD = Autodiff<Flex>;

/// Deterministic values in [-1, 1) (xorshift), so the test needs no RNG crate.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn assert_close(name: &str, got: &[f32], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    let worst = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0f64, f64::max);
    assert!(
        worst <= rel * scale,
        "{name}: max difference {worst:e} exceeds {rel:e} x scale {scale:e}"
    );
}

#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    c_in: usize,
    c_out: usize,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

#[allow(clippy::too_many_arguments)]
const fn case(
    batch: usize,
    c_in: usize,
    c_out: usize,
    [h, w]: [usize; 2],
    k: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Case {
    Case {
        batch,
        c_in,
        c_out,
        h,
        w,
        k,
        stride,
        padding,
        dilation,
        groups,
    }
}

impl Case {
    fn out(&self, i: usize) -> usize {
        let size = [self.h, self.w][i];
        (size + 2 * self.padding[i] - self.dilation[i] * (self.k[i] - 1) - 1) / self.stride[i] + 1
    }
}

/// Forward output and the gradients of `sum(y * upstream)` with respect to x, w and b, by
/// plain loops in f64.
fn reference(c: &Case, x: &[f32], w: &[f32], b: &[f32], up: &[f32]) -> [Vec<f64>; 4] {
    let (oh, ow) = (c.out(0), c.out(1));
    let (cig, cog) = (c.c_in / c.groups, c.c_out / c.groups);
    let mut y = vec![0.0f64; c.batch * c.c_out * oh * ow];
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; w.len()];
    let mut db = vec![0.0f64; b.len()];
    for n in 0..c.batch {
        for co in 0..c.c_out {
            let group = co / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((n * c.c_out + co) * oh + oy) * ow + ox;
                    let mut acc = b[co] as f64;
                    let u = up[yi] as f64;
                    db[co] += u;
                    for ci in 0..cig {
                        let cx = group * cig + ci;
                        for ki in 0..c.k[0] {
                            for kj in 0..c.k[1] {
                                let iy = (oy * c.stride[0] + ki * c.dilation[0]) as isize
                                    - c.padding[0] as isize;
                                let ix = (ox * c.stride[1] + kj * c.dilation[1]) as isize
                                    - c.padding[1] as isize;
                                if iy < 0 || ix < 0 || iy >= c.h as isize || ix >= c.w as isize {
                                    continue;
                                }
                                let xi =
                                    ((n * c.c_in + cx) * c.h + iy as usize) * c.w + ix as usize;
                                let wi = ((co * cig + ci) * c.k[0] + ki) * c.k[1] + kj;
                                acc += x[xi] as f64 * w[wi] as f64;
                                dx[xi] += w[wi] as f64 * u;
                                dw[wi] += x[xi] as f64 * u;
                            }
                        }
                    }
                    y[yi] = acc;
                }
            }
        }
    }
    [y, dx, dw, db]
}

/// A tracked tensor of `dtype` holding `v`.
fn param<const D: usize>(v: &[f32], shape: [usize; D], dtype: DType) -> Tensor<AD, D> {
    Tensor::<AD, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &Default::default())
        .reshape(shape)
        .cast(dtype)
        .require_grad()
}

fn check_conv(c: Case, dtype: DType, rel: f64) {
    let (oh, ow) = (c.out(0), c.out(1));
    let x = values(c.batch * c.c_in * c.h * c.w, 1);
    let w = values(c.c_out * (c.c_in / c.groups) * c.k[0] * c.k[1], 2);
    let b = values(c.c_out, 3);
    let up = values(c.batch * c.c_out * oh * ow, 4);
    let [y_ref, dx_ref, dw_ref, db_ref] = reference(&c, &x, &w, &b, &up);

    let xt = param(&x, [c.batch, c.c_in, c.h, c.w], dtype);
    let wt = param(&w, [c.c_out, c.c_in / c.groups, c.k[0], c.k[1]], dtype);
    let bt = param(&b, [c.c_out], dtype);
    let upt = param(&up, [c.batch, c.c_out, oh, ow], dtype);
    let options = ConvOptions::new(c.stride, c.padding, c.dilation, c.groups);
    let y = conv2d(xt.clone(), wt.clone(), Some(bt.clone()), options);
    let grads = (y.clone() * upt.detach()).sum().backward();

    let f32s = |t: Tensor<Flex, 4>| t.cast(DType::F32).into_data().to_vec::<f32>().unwrap();
    let label = format!("{c:?} {dtype:?}");
    assert_close(&format!("forward {label}"), &f32s(y.inner()), &y_ref, rel);
    assert_close(
        &format!("dx {label}"),
        &f32s(xt.grad(&grads).unwrap()),
        &dx_ref,
        rel,
    );
    assert_close(
        &format!("dw {label}"),
        &f32s(wt.grad(&grads).unwrap()),
        &dw_ref,
        rel,
    );
    let db = bt
        .grad(&grads)
        .unwrap()
        .cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_close(&format!("db {label}"), &db, &db_ref, rel);
}

/// The shapes a U-Net uses (3x3 same, stride-2 down, 1x1 shortcut) and the awkward ones:
/// rectangular kernels and images, dilation, padding larger than the kernel reach, strides
/// that drop input rows (the input gradient must be zero there), groups, depthwise, and
/// "same" convolutions with dilation or a rectangular kernel (the shifted-plane im2col), and
/// a stride-1 padding beyond the kernel's reach (its input gradient cannot be a convolution).
/// Then batches large enough that the weight gradient's parts (eight) hold several images,
/// which go to one GEMM when they are small (all of a part's, or two at a time with one left
/// over), and kernels with fewer weights per output channel than output channels (the weight
/// gradient not accumulated transposed). Two have im2col matrices over 512 KiB, built and
/// multiplied in blocks of output rows (11, 11 and 2 rows; 12 and 11). The last five take
/// the shifted-plane path (stride 1, output as wide as the input, at least 48 terms per kernel
/// row): channel-major for fewer than 64 output pixels, with dilation, a rectangular kernel,
/// row padding beyond the kernel's reach, and a single kernel row. The three after them have
/// weight gradients by pixel-major copies (8 to 31 output channels, at least 256 output
/// pixels): plain, with row padding and dilation, and a 5x3 kernel.
const CASES: [Case; 26] = [
    // batch, c_in, c_out, [h, w], kernel, stride, padding, dilation, groups
    case(2, 3, 4, [7, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(3, 4, 6, [8, 8], [3, 3], [2, 2], [1, 1], [1, 1], 1),
    case(2, 5, 3, [6, 9], [1, 1], [1, 1], [0, 0], [1, 1], 1),
    case(2, 4, 4, [9, 7], [3, 2], [2, 1], [2, 0], [2, 1], 2),
    case(1, 6, 6, [5, 5], [3, 3], [1, 1], [1, 1], [1, 1], 6),
    case(2, 1, 5, [10, 11], [4, 4], [3, 3], [0, 0], [1, 1], 1),
    case(3, 2, 3, [4, 4], [1, 1], [2, 2], [1, 1], [1, 1], 1),
    case(2, 16, 32, [14, 14], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(2, 3, 2, [6, 7], [3, 3], [1, 1], [2, 2], [2, 2], 1),
    case(2, 2, 3, [5, 9], [3, 5], [1, 1], [1, 2], [1, 1], 1),
    case(2, 3, 2, [5, 4], [3, 3], [1, 1], [3, 2], [1, 1], 1),
    case(20, 5, 7, [5, 6], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(17, 4, 6, [4, 4], [3, 3], [2, 2], [1, 1], [1, 1], 2),
    case(16, 6, 4, [3, 5], [1, 1], [1, 1], [0, 0], [1, 1], 1),
    case(24, 2, 24, [9, 10], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(2, 1, 16, [7, 7], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(2, 64, 8, [24, 24], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(2, 64, 8, [46, 46], [3, 3], [2, 2], [1, 1], [1, 1], 1),
    case(3, 20, 24, [4, 5], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(2, 24, 10, [9, 8], [3, 3], [1, 1], [2, 2], [2, 2], 1),
    case(2, 16, 12, [6, 10], [3, 5], [1, 1], [1, 2], [1, 1], 1),
    case(2, 16, 8, [5, 6], [3, 3], [1, 1], [3, 1], [1, 1], 1),
    case(2, 20, 6, [5, 7], [1, 3], [1, 1], [0, 1], [1, 1], 1),
    case(3, 6, 8, [16, 18], [3, 3], [1, 1], [1, 1], [1, 1], 1),
    case(2, 8, 12, [17, 16], [3, 3], [1, 1], [2, 1], [2, 1], 1),
    case(3, 6, 10, [18, 16], [5, 3], [1, 1], [1, 1], [1, 1], 1),
];

#[test]
fn conv2d_forward_and_gradients_match_plain_loops_f32() {
    for case in CASES {
        check_conv(case, DType::F32, 1e-4);
    }
}

#[test]
fn conv2d_forward_and_gradients_match_plain_loops_f64() {
    for case in CASES {
        check_conv(case, DType::F64, 1e-6);
    }
}

#[test]
fn conv2d_forward_and_gradients_match_plain_loops_half_precision() {
    // Half precision rounds the inputs themselves (bf16 keeps 8 bits of mantissa).
    for case in &CASES[..4] {
        check_conv(*case, DType::F16, 1e-2);
        check_conv(*case, DType::BF16, 5e-2);
    }
}

/// The weight gradient sums over the batch; that sum must not depend on how rayon happens to
/// split the batch between threads, or a resumed run would drift from an uninterrupted one.
/// 14x14: one GEMM per image; 5x5: several images per GEMM; 16x16: the pixel-major path
/// (16 output channels, 256 pixels).
#[test]
fn conv2d_weight_gradient_is_the_same_bits_with_any_thread_count() {
    for side in [14, 5, 16] {
        let c = case(32, 8, 16, [side, side], [3, 3], [1, 1], [1, 1], [1, 1], 1);
        let x = values(c.batch * c.c_in * c.h * c.w, 5);
        let w = values(c.c_out * c.c_in * 9, 6);
        let up = values(c.batch * c.c_out * c.h * c.w, 7);
        let weight_grad = || {
            let xt = param(&x, [c.batch, c.c_in, c.h, c.w], DType::F32);
            let wt = param(&w, [c.c_out, c.c_in, 3, 3], DType::F32);
            let upt = param(&up, [c.batch, c.c_out, c.h, c.w], DType::F32);
            let options = ConvOptions::new(c.stride, c.padding, c.dilation, c.groups);
            let grads = (conv2d(xt, wt.clone(), None, options) * upt.detach())
                .sum()
                .backward();
            wt.grad(&grads)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        };
        let in_pool = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(weight_grad)
        };
        let reference = in_pool(1);
        for threads in [2, 3, 4, 2] {
            let got = in_pool(threads);
            let differing = got.iter().zip(&reference).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing, 0,
                "{side}x{side}, {threads} threads: {differing} elements differ"
            );
        }
    }
}

/// The convolution reads channel slices of a larger tensor (and gradients that are such
/// slices, as `cat`'s backward hands out) in place; the results must be the ones of the same
/// values laid out contiguously.
#[test]
fn conv2d_on_channel_slices_matches_contiguous_copies() {
    let device = Default::default();
    let (batch, c_full, c_in, c_out, h, w) = (3, 7, 3, 4, 6, 5);
    let full = Tensor::<AD, 1>::from_data(
        TensorData::new(values(batch * c_full * h * w, 8), [batch * c_full * h * w]),
        &device,
    )
    .reshape([batch, c_full, h, w]);
    let weight = param(
        &values(c_out * c_in * 9, 9),
        [c_out, c_in, 3, 3],
        DType::F32,
    );
    let bias = param(&values(c_out, 10), [c_out], DType::F32);
    let up = Tensor::<AD, 1>::from_data(
        TensorData::new(
            values(batch * 2 * c_out * h * w, 11),
            [batch * 2 * c_out * h * w],
        ),
        &device,
    )
    .reshape([batch, 2 * c_out, h, w]);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let run = |contiguous: bool| {
        let x = full.clone().detach().require_grad();
        let (w, b) = (
            weight.clone().detach().require_grad(),
            bias.clone().detach().require_grad(),
        );
        let mut slice = x.clone().narrow(1, 2, c_in);
        let mut upstream = up.clone();
        if contiguous {
            slice = slice + 0.0;
            upstream = upstream + 0.0;
        }
        let y = conv2d(slice, w.clone(), Some(b.clone()), options.clone());
        // cat's backward gives the convolution a channel slice of `upstream`'s gradient.
        let z = Tensor::cat(vec![y.clone(), y.clone().detach() * 0.0], 1);
        let grads = (z * upstream.detach()).sum().backward();
        let data = |t: Tensor<Flex, 4>| t.into_data().to_vec::<f32>().unwrap();
        (
            data(y.inner()),
            data(x.grad(&grads).unwrap()),
            data(w.grad(&grads).unwrap()),
            b.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap(),
        )
    };
    assert_eq!(run(false), run(true));
}

/// `lhs op rhs` with numpy broadcasting, by index arithmetic on contiguous data.
fn broadcast_reference(
    lhs: &[f32],
    lhs_shape: &[usize],
    rhs: &[f32],
    rhs_shape: &[usize],
    op: fn(f64, f64) -> f64,
) -> Vec<f64> {
    let out: Vec<usize> = lhs_shape
        .iter()
        .zip(rhs_shape)
        .map(|(&a, &b)| a.max(b))
        .collect();
    let n: usize = out.iter().product();
    let offset = |shape: &[usize], index: &[usize]| {
        shape
            .iter()
            .zip(index)
            .fold(0, |acc, (&s, &i)| acc * s + if s == 1 { 0 } else { i })
    };
    (0..n)
        .map(|mut flat| {
            let mut index = vec![0; out.len()];
            for d in (0..out.len()).rev() {
                index[d] = flat % out[d];
                flat /= out[d];
            }
            op(
                lhs[offset(lhs_shape, &index)] as f64,
                rhs[offset(rhs_shape, &index)] as f64,
            )
        })
        .collect()
}

fn data(t: &Tensor<Flex, 4>) -> Vec<f32> {
    t.clone().into_data().to_vec::<f32>().unwrap()
}

#[test]
fn broadcast_binary_ops_match_plain_loops() {
    let device = Default::default();
    let make = |shape: [usize; 4], seed| {
        let n = shape.iter().product();
        Tensor::<Flex, 1>::from_data(TensorData::new(values(n, seed), [n]), &device).reshape(shape)
    };
    // (lhs, rhs): the group-norm affine ([1, c, 1, 1]), a time embedding ([n, c, 1, 1]),
    // both sides broadcast, a row, and a column.
    let pairs = [
        ([2, 3, 4, 5], [1, 3, 1, 1]),
        ([2, 3, 4, 5], [2, 3, 1, 1]),
        ([2, 1, 4, 5], [1, 3, 4, 1]),
        ([2, 3, 4, 5], [1, 1, 1, 5]),
        ([2, 3, 4, 5], [2, 1, 4, 1]),
    ];
    let ops: [(
        &str,
        fn(Tensor<Flex, 4>, Tensor<Flex, 4>) -> Tensor<Flex, 4>,
        fn(f64, f64) -> f64,
    ); 4] = [
        ("add", |a, b| a + b, |a, b| a + b),
        ("sub", |a, b| a - b, |a, b| a - b),
        ("mul", |a, b| a * b, |a, b| a * b),
        ("div", |a, b| a / b, |a, b| a / b),
    ];
    // Large enough (67,584 elements) for the parallel in-place paths, which only run on a
    // uniquely owned left operand: these get fresh tensors, the small ones clones.
    let large = [
        ([4, 16, 32, 33], [4, 16, 32, 33]),
        ([4, 16, 32, 33], [1, 16, 1, 1]),
        ([4, 16, 32, 33], [4, 16, 1, 1]),
        ([4, 16, 32, 33], [1, 1, 1, 33]),
    ];
    for (lhs_shape, rhs_shape) in large {
        let (lhs, rhs) = (data(&make(lhs_shape, 5)), data(&make(rhs_shape, 6)));
        for (name, op, reference) in ops {
            let want = broadcast_reference(&lhs, &lhs_shape, &rhs, &rhs_shape, reference);
            let got = data(&op(make(lhs_shape, 5), make(rhs_shape, 6)));
            assert_close(
                &format!("{name} {lhs_shape:?} {rhs_shape:?}"),
                &got,
                &want,
                1e-6,
            );
        }
    }
    for (lhs_shape, rhs_shape) in pairs {
        let (lhs, rhs) = (make(lhs_shape, 5), make(rhs_shape, 6));
        for (name, op, reference) in ops {
            let want =
                broadcast_reference(&data(&lhs), &lhs_shape, &data(&rhs), &rhs_shape, reference);
            // Forwards, and with the broadcast operand on the left.
            assert_close(name, &data(&op(lhs.clone(), rhs.clone())), &want, 1e-6);
            let swapped =
                broadcast_reference(&data(&rhs), &rhs_shape, &data(&lhs), &lhs_shape, reference);
            assert_close(name, &data(&op(rhs.clone(), lhs.clone())), &swapped, 1e-6);
        }
    }
}

#[test]
fn binary_ops_on_strided_views_match_plain_loops() {
    let device = Default::default();
    let base =
        Tensor::<Flex, 1>::from_data(TensorData::new(values(2 * 3 * 4 * 6, 7), [144]), &device)
            .reshape([2, 3, 4, 6]);
    let other = Tensor::<Flex, 1>::from_data(TensorData::new(values(144, 8), [144]), &device)
        .reshape([2, 3, 4, 6]);
    let views: [(&str, Tensor<Flex, 4>); 4] = [
        (
            "permuted",
            base.clone()
                .permute([0, 3, 1, 2])
                .reshape([2, 6, 3, 4])
                .permute([0, 2, 3, 1]),
        ),
        ("swapped", base.clone().swap_dims(1, 2).swap_dims(1, 2)),
        ("flipped", base.clone().flip([1, 3])),
        (
            "sliced",
            Tensor::cat(vec![base.clone(), base.clone()], 3).slice([0..2, 0..3, 0..4, 3..9]),
        ),
    ];
    let gamma = Tensor::<Flex, 1>::from_data(TensorData::new(values(3, 9), [3]), &device)
        .reshape([1, 3, 1, 1]);
    for (name, view) in views {
        let v = data(&view);
        let o = data(&other);
        let want: Vec<f64> = v
            .iter()
            .zip(&o)
            .map(|(&a, &b)| a as f64 * b as f64)
            .collect();
        assert_close(name, &data(&(view.clone() * other.clone())), &want, 1e-6);
        let want = broadcast_reference(&v, &[2, 3, 4, 6], &data(&gamma), &[1, 3, 1, 1], |a, b| {
            a - b
        });
        assert_close(name, &data(&(view.clone() - gamma.clone())), &want, 1e-6);
        // A transposed view against a broadcast one: neither side contiguous.
        let t = view.clone().swap_dims(2, 3);
        let want = broadcast_reference(
            &data(&t),
            &[2, 3, 6, 4],
            &data(&gamma),
            &[1, 3, 1, 1],
            |a, b| a * b,
        );
        assert_close(name, &data(&(t * gamma.clone())), &want, 1e-6);
    }
}

#[test]
fn sigmoid_and_silu_match_f64_over_the_whole_range() {
    // 300k values: large enough for the parallel element-wise path, spanning the range where
    // sigmoid saturates, plus the extremes.
    let n = 300_000;
    let mut xs: Vec<f32> = (0..n)
        .map(|i| -100.0 + 200.0 * i as f32 / n as f32)
        .collect();
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        88.0,
        -88.0,
        89.0,
        -89.0,
        f32::MAX,
        f32::MIN,
    ]);
    let len = xs.len();
    let x = Tensor::<AD, 1>::from_data(TensorData::new(xs.clone(), [len]), &Default::default())
        .require_grad();
    let y = burn::tensor::activation::sigmoid(x.clone());
    let s = burn::tensor::activation::silu(x.clone());
    let grads = s.clone().sum().backward();
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let got = y.inner().into_data().to_vec::<f32>().unwrap();
    let silu = s.inner().into_data().to_vec::<f32>().unwrap();
    let dsilu = x.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    for (i, &v) in xs.iter().enumerate() {
        let v64 = v as f64;
        let want = sig(v64);
        // Relative error within a few ulp, or absolute 1e-36 where the result is tiny (exp
        // flushes subnormals to 0, and silu multiplies them by up to 100).
        let close = |got: f32, want: f64| {
            (got as f64 - want).abs() <= 4.0 * f32::EPSILON as f64 * want.abs() + 1e-36
        };
        assert!(close(got[i], want), "sigmoid({v}) = {} want {want}", got[i]);
        if v.abs() < 1e30 {
            assert!(
                close(silu[i], v64 * want),
                "silu({v}) = {} want {}",
                silu[i],
                v64 * want
            );
            let d = want * (1.0 + v64 * (1.0 - want));
            assert!(
                (dsilu[i] as f64 - d).abs() <= 1e-6 * (1.0 + d.abs()),
                "silu'({v}) = {} want {d}",
                dsilu[i]
            );
        }
    }
    let nan =
        Tensor::<Flex, 1>::from_data(TensorData::new(vec![f32::NAN], [1]), &Default::default());
    let nan = burn::tensor::activation::sigmoid(nan)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        nan[0].is_nan(),
        "sigmoid(NaN) must stay NaN for the non-finite guard"
    );
}

/// A Bernoulli sample on Flex (dropout's mask), seeded: `[rows, cols]` of f32, on `threads`
/// rayon threads.
fn bernoulli(prob: f64, seed: u64, shape: [usize; 2], threads: usize) -> Vec<f32> {
    let device = Default::default();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(|| {
            <Flex as burn::tensor::backend::Backend>::seed(&device, seed);
            Tensor::<Flex, 2>::random(shape, Distribution::Bernoulli(prob), &device)
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        })
}

/// The Bernoulli fast path (drawn in parallel parts of 65,536 elements, one generator per
/// part): only zeros and ones, in the right proportion, independent between parts, and the
/// same values for a seed with any thread count.
#[test]
fn bernoulli_sample_has_its_probability_and_is_the_same_with_any_thread_count() {
    let shape = [1000, 1000];
    let n = (shape[0] * shape[1]) as f64;
    for prob in [0.9, 0.5, 0.03] {
        let mask = bernoulli(prob, 7, shape, 2);
        assert!(mask.iter().all(|&v| v == 0.0 || v == 1.0), "p = {prob}");
        // The mean of a million draws has a standard deviation below 5e-4: 8 of them.
        let mean = mask.iter().map(|&v| v as f64).sum::<f64>() / n;
        assert!((mean - prob).abs() < 4e-3, "p = {prob}: mean {mean}");
        // Two parts agree where both are 1 or both are 0: p² + (1 - p)² of the time if they
        // are independent, 1 if a part repeated another's stream.
        let part = 1 << 16;
        let same = (0..part).filter(|&i| mask[i] == mask[part + i]).count() as f64 / part as f64;
        let expected = prob * prob + (1.0 - prob) * (1.0 - prob);
        assert!(
            (same - expected).abs() < 0.01,
            "p = {prob}: parts 0 and 1 agree {same}, independent ones {expected}"
        );
    }
    assert!(bernoulli(0.0, 1, [300, 300], 2).iter().all(|&v| v == 0.0));
    assert!(bernoulli(1.0, 1, [300, 300], 2).iter().all(|&v| v == 1.0));

    let reference = bernoulli(0.9, 11, [700, 500], 1);
    for threads in [2, 3, 4] {
        assert_eq!(
            bernoulli(0.9, 11, [700, 500], threads),
            reference,
            "{threads} threads"
        );
    }
    assert_ne!(
        bernoulli(0.9, 12, [700, 500], 1),
        reference,
        "another seed, another sample"
    );
}

/// softmax(q kᵀ / √d) v per (batch, head), in f64: `[batch, heads, seq, dim]` row-major.
fn attention_reference(q: &[f32], k: &[f32], v: &[f32], shape: [usize; 4]) -> Vec<f64> {
    let [batch, heads, seq, dim] = shape;
    let scale = 1.0 / (dim as f64).sqrt();
    let mut out = vec![0.0f64; q.len()];
    for bh in 0..batch * heads {
        let at = |t: &[f32], i: usize, j: usize| t[(bh * seq + i) * dim + j] as f64;
        for i in 0..seq {
            let scores: Vec<f64> = (0..seq)
                .map(|j| (0..dim).map(|c| at(q, i, c) * at(k, j, c)).sum::<f64>() * scale)
                .collect();
            let max = scores.iter().cloned().fold(f64::MIN, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for c in 0..dim {
                out[(bh * seq + i) * dim + c] =
                    (0..seq).map(|j| weights[j] * at(v, j, c)).sum::<f64>() / total;
            }
        }
    }
    out
}

/// Flex's attention (naive below 512x512 scores, flash above) runs its (batch, head) pairs
/// in parallel: the result must be the reference's, and the same bits on any thread count.
#[test]
fn attention_matches_the_reference_with_any_thread_count() {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    // Naive path (seq 9), then flash (600 x 600 scores > 256K).
    for (seq, tol) in [(9, 1e-5), (600, 1e-4)] {
        let shape = [3, 2, seq, 8];
        let n = shape.iter().product();
        let (q, k, v) = (values(n, 21), values(n, 22), values(n, 23));
        let run = |threads: usize| {
            let device = Default::default();
            let t = |d: &[f32]| {
                Tensor::<Flex, 1>::from_data(TensorData::new(d.to_vec(), [n]), &device)
                    .reshape(shape)
            };
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    attention(
                        t(&q),
                        t(&k),
                        t(&v),
                        None,
                        None,
                        AttentionModuleOptions::default(),
                    )
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
                })
        };
        let one = run(1);
        assert_close(
            &format!("attention, seq {seq}"),
            &one,
            &attention_reference(&q, &k, &v, shape),
            tol,
        );
        for threads in [2, 3] {
            assert_eq!(run(threads), one, "seq {seq}, {threads} threads");
        }
    }
}

/// Every permutation of a 4D tensor (and a large one, copied in parallel), made contiguous by
/// a reshape: the values in the permuted order, computed here from the indices.
#[test]
fn permuted_tensors_become_contiguous_in_the_permuted_order() {
    let device = Default::default();
    for dims in [[2, 3, 4, 5], [4, 64, 16, 20]] {
        let n: usize = dims.iter().product();
        let data = values(n, 30);
        let x =
            Tensor::<Flex, 1>::from_data(TensorData::new(data.clone(), [n]), &device).reshape(dims);
        let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
        for a in 0..4 {
            for b in (0..4).filter(|&b| b != a) {
                for c in (0..4).filter(|&c| c != a && c != b) {
                    let axes = [a, b, c, 6 - a - b - c];
                    let got = x
                        .clone()
                        .permute(axes)
                        .reshape([n])
                        .into_data()
                        .to_vec::<f32>()
                        .unwrap();
                    let shape = axes.map(|d| dims[d]);
                    let mut want = Vec::with_capacity(n);
                    for i in 0..shape[0] {
                        for j in 0..shape[1] {
                            for k in 0..shape[2] {
                                for l in 0..shape[3] {
                                    let at = [i, j, k, l];
                                    let src: usize = (0..4).map(|d| at[d] * strides[axes[d]]).sum();
                                    want.push(data[src]);
                                }
                            }
                        }
                    }
                    assert_eq!(got, want, "{dims:?} permuted by {axes:?}");
                }
            }
        }
    }
}
