//! The weight gradient of stride-1, same-width convolutions with few output channels (an
//! `mnist` U-Net's 16-channel outer level), from a pixel-major copy of each input image
//! instead of an im2col matrix.
//!
//! The im2col path accumulates `dwᵀ[k, c_out] += col[k, p] · gᵀ[p, c_out]`, and gemm runs its
//! vectors along `c_out`: with 16 output channels that is one vector, and its microkernel,
//! six accumulators deep, waits on FMA latency (about 130 GFLOP/s on one core where a wide
//! GEMM reaches 250). Here the vectors run along the kernel's terms instead, which needs the
//! terms contiguous for each output pixel. In a zero-padded pixel-major copy of the image,
//! `xt[row, col, c]` (`rows = in_h + 2 * pad_h`, `cols = in_w + 2 * pad_w`), the `k_w * c_in`
//! terms of kernel row `ki` at output pixel `(oy, ox)` are the contiguous run
//! `xt[oy + ki * dilation_h, ox.., ..]`, and numbering the output pixels `q = oy * cols + ox`
//! over the padded width (the `cols - out_w` extra columns of each row get a zero output
//! gradient) makes the run start at `(q + ki * dilation_h * cols) * c_in`: a matrix with
//! uniform strides. So, per image and kernel row,
//!
//! `dw_ki[c_out, (kj, c)] (+)= g_padded[c_out, q] · xt_ki[q, (kj, c)]`,
//!
//! one GEMM with the terms as gemm's vector dimension (1.7x faster for 16 output channels at
//! 28x28 in a one-thread benchmark). The images are summed in the same fixed parts, in the
//! same order, as the im2col path's, so the result is the same bits with any thread count.

use alloc::vec;
use alloc::vec::Vec;

use crate::FlexTensor;

use super::{
    Geometry, Images, Real, Strides, WEIGHT_GRAD_PARTS, gemm, row_major, sum_parts, tensor,
    uninit,
};

/// Output channels below which this path is taken (with 32, gemm's vectors along the output
/// channels are two, and the im2col path is as fast).
const NARROW_BELOW: usize = 32;

/// Output channels, at least: with one (a U-Net's last layer) the product is a matrix-vector
/// one either way, and the copies do not pay (0.21 -> 0.26 ms for 16 -> 1 at 28x28).
const MIN_OUTPUTS: usize = 8;

/// Output pixels per image, at least: the GEMMs sum over one image's pixels.
const MIN_PIXELS: usize = 256;

/// Terms per kernel row, at least: one vector's worth.
const MIN_TERMS: usize = 16;

/// Whether [`weight_backward`] applies: groups 1, stride 1, output as wide as the input, no
/// dilation along the rows of the image (the terms of a kernel row must be adjacent), and the
/// sizes above.
pub(super) fn applies(g: &Geometry) -> bool {
    g.groups == 1
        && g.stride == [1, 1]
        && g.dilation[1] == 1
        && g.out_w == g.in_w
        && g.k_h * g.k_w > 1
        && (MIN_OUTPUTS..NARROW_BELOW).contains(&g.c_out)
        && g.p() >= MIN_PIXELS
        && g.k_w * g.c_in >= MIN_TERMS
}

/// Sizes of the padded copies.
struct Padded {
    cols: usize,
    /// Output pixels over the padded width: `out_h * cols`.
    pixels: usize,
    /// Elements of `xt`: the padded image, plus the `(k_w - 1) * c_in` its last kernel run
    /// reads past the end (where the output gradient is zero).
    xt_len: usize,
}

impl Padded {
    fn new(g: &Geometry) -> Self {
        let rows = g.in_h + 2 * g.padding[0];
        let cols = g.in_w + 2 * g.padding[1];
        Self {
            cols,
            pixels: g.out_h * cols,
            xt_len: (rows * cols + g.k_w - 1) * g.c_in,
        }
    }
}

/// Writes `xt` (every element) from image `x_b` (`[c_in, in_h, in_w]`).
fn pixel_major<T: Real>(g: &Geometry, pad: &Padded, x_b: &[T], xt: &mut [T]) {
    const TILE: usize = 16;
    let (ci, h, w) = (g.c_in, g.in_h, g.in_w);
    let row_len = pad.cols * ci;
    let top = g.padding[0] * row_len;
    let left = g.padding[1] * ci;
    xt[..top].fill(T::zero());
    xt[(g.padding[0] + h) * row_len..].fill(T::zero());
    for iy in 0..h {
        let row = &mut xt[top + iy * row_len..top + (iy + 1) * row_len];
        row[..left].fill(T::zero());
        row[left + w * ci..].fill(T::zero());
        let body = &mut row[left..left + w * ci];
        // body[ix * ci + c] = x_b[c, iy, ix], in tiles so that reads and writes both stay in
        // a few cache lines.
        for c0 in (0..ci).step_by(TILE) {
            for ix0 in (0..w).step_by(TILE) {
                for c in c0..(c0 + TILE).min(ci) {
                    let src = &x_b[(c * h + iy) * w..][..w];
                    for ix in ix0..(ix0 + TILE).min(w) {
                        body[ix * ci + c] = src[ix];
                    }
                }
            }
        }
    }
}

/// Writes `g_pad` (`[c_out, out_h, cols]`, every element) from `g_b` (`[c_out, out_h, out_w]`).
fn padded_grad<T: Real>(g: &Geometry, pad: &Padded, g_b: &[T], g_pad: &mut [T]) {
    let w = g.out_w;
    for (dst, src) in g_pad.chunks_exact_mut(pad.cols).zip(g_b.chunks_exact(w)) {
        dst[..w].copy_from_slice(src);
        dst[w..].fill(T::zero());
    }
}

/// The weight gradient by pixel-major copies; `applies(g)` must hold.
pub(super) fn weight_backward<T: Real>(
    g: &Geometry,
    x: FlexTensor,
    output_grad: FlexTensor,
) -> FlexTensor {
    debug_assert!(applies(g));
    let (x, grad) = (Images::new(&x), Images::new(&output_grad));
    let pad = Padded::new(g);
    let (co, ci, kh) = (g.c_out, g.c_in, g.k_h);
    let terms = g.k_w * ci;
    let block = co * terms;
    // Kernel row ki's terms at padded output pixel q: xt[(q + ki * dilation * cols) * c_in ..].
    let xt_view = Strides {
        row: ci as isize,
        col: 1,
    };
    let parts = g.batch.clamp(1, WEIGHT_GRAD_PARTS);
    let part_sum = |part: usize| {
        let images = part * g.batch / parts..(part + 1) * g.batch / parts;
        let mut dw = if images.is_empty() {
            vec![T::zero(); kh * block]
        } else {
            uninit(kh * block)
        };
        let mut xt = uninit(pad.xt_len);
        let mut g_pad = uninit(co * pad.pixels);
        for (i, b) in images.enumerate() {
            pixel_major(g, &pad, x.image::<T>(b), &mut xt);
            padded_grad(g, &pad, grad.image::<T>(b), &mut g_pad);
            for ki in 0..kh {
                let xt_ki = &xt[ki * g.dilation[0] * pad.cols * ci..];
                let dw_ki = &mut dw[ki * block..(ki + 1) * block];
                let lhs = row_major(pad.pixels);
                gemm(co, terms, pad.pixels, dw_ki, terms, i > 0, &g_pad, lhs, xt_ki, xt_view);
            }
        }
        dw
    };
    #[cfg(feature = "rayon")]
    let partials: Vec<Vec<T>> = {
        use rayon::prelude::*;
        (0..parts).into_par_iter().map(part_sum).collect()
    };
    #[cfg(not(feature = "rayon"))]
    let partials: Vec<Vec<T>> = (0..parts).map(part_sum).collect();
    let by_row = sum_parts(partials, co, kh * terms, false);
    // by_row[ki][o][kj * ci + c] -> dw[o][c][ki][kj].
    let mut out = uninit(by_row.len());
    for (o, out_o) in out.chunks_exact_mut(ci * kh * g.k_w).enumerate() {
        for (c, out_c) in out_o.chunks_exact_mut(kh * g.k_w).enumerate() {
            for ki in 0..kh {
                for kj in 0..g.k_w {
                    out_c[ki * g.k_w + kj] = by_row[ki * block + o * terms + kj * ci + c];
                }
            }
        }
    }
    tensor(out, [co, ci, kh, g.k_w])
}
