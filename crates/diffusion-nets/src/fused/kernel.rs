//! GroupNorm, optionally followed by SiLU, on contiguous f32 NCHW slices: the forward pass in
//! two sweeps over each group (moments, then normalize-scale-shift-activate) and the backward
//! pass in three (the gradient through the activation, the affine gradients and with them the
//! group sums, then the input gradient), instead of the ten-odd full-size tensors of the
//! composed ops.
//!
//! Images run in parallel (rayon); every sum runs in a fixed order (eight interleaved lanes,
//! then channels, then images in index order), so the results are the same bits with any
//! number of threads. The loops are plain slices and fixed-width lane arrays, compiled for the
//! best instruction set the CPU has through `pulp`'s dispatch (inside each rayon task),
//! where they vectorize.
//!
//! Notation per image `n` and group `g` (of `m = channels / groups * h * w` elements):
//! `x̂ = (x - mean) * rstd`, `y = x̂ * gamma_c + beta_c`, `out = silu(y) = y * sigmoid(y)`.

use super::math::sigmoid;
use rayon::prelude::*;

/// Calls of [`forward`] and [`backward`], for the test that the dispatch reaches them.
#[cfg(test)]
pub(crate) static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Interleaved partial sums per reduction; the compiler keeps each set in one vector register.
const LANES: usize = 8;

/// The shape of the normalized tensor and its grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub batch: usize,
    pub channels: usize,
    /// Elements per channel plane: `h * w`.
    pub plane: usize,
    pub groups: usize,
}

impl Geometry {
    fn channels_per_group(&self) -> usize {
        self.channels / self.groups
    }

    fn group_len(&self) -> usize {
        self.channels_per_group() * self.plane
    }

    fn image_len(&self) -> usize {
        self.channels * self.plane
    }
}

/// Per image and group (`[batch * groups]`, image-major): the mean and `1 / sqrt(var + eps)`
/// of the forward pass, kept for the backward pass.
#[derive(Debug, Clone, Default)]
pub(crate) struct Moments {
    pub mean: Vec<f32>,
    pub rstd: Vec<f32>,
}

/// `y * sigmoid(y)` (SiLU) or `y`.
#[inline(always)]
fn activate<const SILU: bool>(y: f32) -> f32 {
    if SILU { y * sigmoid(y) } else { y }
}

/// The derivative of [`activate`] at `y`: `s * (1 + y * (1 - s))` with `s = sigmoid(y)`.
#[inline(always)]
fn activation_slope<const SILU: bool>(y: f32) -> f32 {
    if SILU {
        let s = sigmoid(y);
        s * (1.0 + y * (1.0 - s))
    } else {
        1.0
    }
}

/// Sum of a slice in [`LANES`] interleaved partial sums, then the lanes in order.
#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Sum of `(v - mean)^2`, lane-interleaved like [`sum`].
#[inline(always)]
fn sum_squared_deviations(values: &[f32], mean: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks
        .remainder()
        .iter()
        .map(|&v| (v - mean) * (v - mean))
        .sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += (v - mean) * (v - mean);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Mean and reciprocal standard deviation (biased variance, as PyTorch and burn) of a group.
/// Two sweeps rather than one: `E[x^2] - E[x]^2` loses the variance of activations far from
/// zero to cancellation.
#[inline(always)]
fn moments(group: &[f32], eps: f32) -> (f32, f32) {
    let n = group.len() as f32;
    let mean = sum(group) / n;
    let var = sum_squared_deviations(group, mean) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `dst = act(src * a + b)`. (The loops below are functions of their own, with slice
/// arguments, because that tells the compiler the slices do not overlap, which it needs to
/// vectorize them; slices taken from struct fields inside one big loop nest lose it.)
#[inline(always)]
fn apply<const SILU: bool>(src: &[f32], dst: &mut [f32], a: f32, b: f32) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = activate::<SILU>(v * a + b);
    }
}

/// `data = act(data * a + b)`.
#[inline(always)]
fn apply_in_place<const SILU: bool>(data: &mut [f32], a: f32, b: f32) {
    for o in data.iter_mut() {
        *o = activate::<SILU>(*o * a + b);
    }
}

/// `dy = dout * act'(x̂ * gamma_c + beta_c)` over one channel plane.
#[inline(always)]
fn output_gradient<const SILU: bool>(
    x: &[f32],
    dout: &[f32],
    dy: &mut [f32],
    (mu, r): (f32, f32),
    (gc, bc): (f32, f32),
) {
    for ((o, &xv), &dv) in dy.iter_mut().zip(x).zip(dout) {
        let xhat = (xv - mu) * r;
        *o = dv * activation_slope::<SILU>(xhat * gc + bc);
    }
}

/// `(Σ dy * x̂, Σ dy)` over one channel plane: its `dgamma` and `dbeta`.
#[inline(always)]
fn affine_gradients(x: &[f32], dy: &[f32], (mu, r): (f32, f32)) -> (f32, f32) {
    let (mut dg, mut db) = ([0.0f32; LANES], [0.0f32; LANES]);
    let whole = x.len() / LANES * LANES;
    for (xc, dc) in x[..whole]
        .chunks_exact(LANES)
        .zip(dy[..whole].chunks_exact(LANES))
    {
        for l in 0..LANES {
            dg[l] += dc[l] * ((xc[l] - mu) * r);
            db[l] += dc[l];
        }
    }
    let (mut dg, mut db) = (dg.iter().sum::<f32>(), db.iter().sum::<f32>());
    for (&xv, &dv) in x[whole..].iter().zip(&dy[whole..]) {
        dg += dv * ((xv - mu) * r);
        db += dv;
    }
    (dg, db)
}

/// `dx = rstd * (dy * gamma_c - k1 - x̂ * k2)` over one channel plane, in place of `dy`, with
/// `k1` and `k2` the group means of `dx̂ = dy * gamma` and `dx̂ * x̂`.
#[inline(always)]
fn input_gradient(x: &[f32], dx: &mut [f32], (mu, r): (f32, f32), gc: f32, (k1, k2): (f32, f32)) {
    for (o, &xv) in dx.iter_mut().zip(x) {
        let xhat = (xv - mu) * r;
        *o = r * (*o * gc - k1 - xhat * k2);
    }
}

/// The forward pass of one image (`[channels, plane]`): normalizes it group by group into
/// `dst`, reading `src`, or `dst` itself when `src` is `None`, and writes each group's moments.
struct ForwardTask<'a> {
    g: &'a Geometry,
    src: Option<&'a [f32]>,
    dst: &'a mut [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    eps: f32,
    mean: &'a mut [f32],
    rstd: &'a mut [f32],
}

/// The backward pass of one image: its input gradient `dx` and its contributions to
/// `dgamma` and `dbeta` (`[channels]` each).
struct BackwardTask<'a> {
    g: &'a Geometry,
    x: &'a [f32],
    dout: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
    mean: &'a [f32],
    rstd: &'a [f32],
    dx: &'a mut [f32],
    dgamma: &'a mut [f32],
    dbeta: &'a mut [f32],
}

/// A task run by `pulp`'s dispatch, with or without SiLU. `with_simd` is inlined into a
/// function compiled for the detected instruction set (AVX2 and FMA, say), and the task's
/// `#[inline(always)]` body with it, so its loops vectorize for that set. (A closure handed to
/// the dispatch is called, not inlined, and stays baseline x86-64.)
struct Vectorized<T, const SILU: bool>(T);

impl<const SILU: bool> pulp::WithSimd for Vectorized<ForwardTask<'_>, SILU> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        image_forward::<SILU>(self.0);
    }
}

impl<const SILU: bool> pulp::WithSimd for Vectorized<BackwardTask<'_>, SILU> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        image_backward::<SILU>(self.0);
    }
}

/// Runs `task` with or without SiLU, vectorized for `arch`.
#[inline(always)]
fn run<T>(arch: pulp::Arch, task: T, silu: bool)
where
    Vectorized<T, true>: pulp::WithSimd<Output = ()>,
    Vectorized<T, false>: pulp::WithSimd<Output = ()>,
{
    if silu {
        arch.dispatch(Vectorized::<T, true>(task));
    } else {
        arch.dispatch(Vectorized::<T, false>(task));
    }
}

/// See [`ForwardTask`].
#[inline(always)]
fn image_forward<const SILU: bool>(task: ForwardTask<'_>) {
    let ForwardTask {
        g,
        src,
        dst,
        gamma,
        beta,
        eps,
        mean,
        rstd,
    } = task;
    let (len, plane, cpg) = (g.group_len(), g.plane, g.channels_per_group());
    for group in 0..g.groups {
        let range = group * len..(group + 1) * len;
        let (mu, r) = moments(src.map_or(&dst[range.clone()], |s| &s[range.clone()]), eps);
        (mean[group], rstd[group]) = (mu, r);
        for c in group * cpg..(group + 1) * cpg {
            // out = act(x * a + b) with a = gamma * rstd, b = beta - mean * a.
            let a = gamma[c] * r;
            let b = beta[c] - mu * a;
            let out = &mut dst[c * plane..(c + 1) * plane];
            match src {
                Some(src) => apply::<SILU>(&src[c * plane..(c + 1) * plane], out, a, b),
                None => apply_in_place::<SILU>(out, a, b),
            }
        }
    }
}

/// The forward pass over the whole batch: `dst = act(group_norm(src))`, or in place when
/// `src` is `None`. `dst` is `[batch, channels, plane]`.
pub(crate) fn forward(
    g: &Geometry,
    src: Option<&[f32]>,
    dst: &mut [f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    silu: bool,
) -> Moments {
    #[cfg(test)]
    CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut m = Moments {
        mean: vec![0.0; g.batch * g.groups],
        rstd: vec![0.0; g.batch * g.groups],
    };
    let image = g.image_len();
    let arch = pulp::Arch::new();
    dst.par_chunks_mut(image)
        .zip(m.mean.par_chunks_mut(g.groups))
        .zip(m.rstd.par_chunks_mut(g.groups))
        .enumerate()
        .for_each(|(n, ((dst, mean), rstd))| {
            let src = src.map(|s| &s[n * image..(n + 1) * image]);
            let task = ForwardTask {
                g,
                src,
                dst,
                gamma,
                beta,
                eps,
                mean,
                rstd,
            };
            run(arch, task, silu);
        });
    m
}

/// See [`BackwardTask`].
#[inline(always)]
fn image_backward<const SILU: bool>(task: BackwardTask<'_>) {
    let BackwardTask {
        g,
        x,
        dout,
        gamma,
        beta,
        mean,
        rstd,
        dx,
        dgamma,
        dbeta,
    } = task;
    let (plane, cpg) = (g.plane, g.channels_per_group());
    let len = g.group_len() as f32;
    for group in 0..g.groups {
        let moments = (mean[group], rstd[group]);
        let channels = group * cpg..(group + 1) * cpg;
        // Sweep 1: dy into dx. Sweep 2: the affine gradients, and from them the group sums
        // of dx̂ = dy * gamma and dx̂ * x̂. Sweep 3: the input gradient.
        let (mut sum_dxhat, mut sum_dxhat_xhat) = (0.0f32, 0.0f32);
        for c in channels.clone() {
            let p = c * plane..(c + 1) * plane;
            output_gradient::<SILU>(
                &x[p.clone()],
                &dout[p.clone()],
                &mut dx[p.clone()],
                moments,
                (gamma[c], beta[c]),
            );
            let (dg, db) = affine_gradients(&x[p.clone()], &dx[p], moments);
            (dgamma[c], dbeta[c]) = (dg, db);
            sum_dxhat += gamma[c] * db;
            sum_dxhat_xhat += gamma[c] * dg;
        }
        let k = (sum_dxhat / len, sum_dxhat_xhat / len);
        for c in channels {
            let p = c * plane..(c + 1) * plane;
            input_gradient(&x[p.clone()], &mut dx[p], moments, gamma[c], k);
        }
    }
}

/// Gradients of the whole batch with respect to the input (`[batch, channels, plane]`),
/// `gamma` and `beta` (`[channels]`), given the output gradient `dout` and the moments of
/// the forward pass.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    g: &Geometry,
    x: &[f32],
    dout: &[f32],
    gamma: &[f32],
    beta: &[f32],
    m: &Moments,
    silu: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    #[cfg(test)]
    CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let image = g.image_len();
    let mut dx = vec![0.0f32; x.len()];
    // Per-image affine gradients, summed over the images afterwards in index order.
    let mut dgamma_images = vec![0.0f32; g.batch * g.channels];
    let mut dbeta_images = vec![0.0f32; g.batch * g.channels];
    let arch = pulp::Arch::new();
    dx.par_chunks_mut(image)
        .zip(dgamma_images.par_chunks_mut(g.channels))
        .zip(dbeta_images.par_chunks_mut(g.channels))
        .enumerate()
        .for_each(|(n, ((dx, dgamma), dbeta))| {
            let images = n * image..(n + 1) * image;
            let groups = n * g.groups..(n + 1) * g.groups;
            let (x, dout) = (&x[images.clone()], &dout[images]);
            let (mean, rstd) = (&m.mean[groups.clone()], &m.rstd[groups]);
            let task = BackwardTask {
                g,
                x,
                dout,
                gamma,
                beta,
                mean,
                rstd,
                dx,
                dgamma,
                dbeta,
            };
            run(arch, task, silu);
        });
    let over_images = |per_image: Vec<f32>| {
        let mut total = vec![0.0f32; g.channels];
        for image in per_image.chunks_exact(g.channels) {
            total.iter_mut().zip(image).for_each(|(t, &v)| *t += v);
        }
        total
    };
    (dx, over_images(dgamma_images), over_images(dbeta_images))
}
