//! Stride-1 convolutions whose output is as wide as their input (a U-Net's 3x3 "same"
//! convolutions, and the input gradients taken as convolutions) without an im2col matrix.
//!
//! Output row `oy` of kernel row `ki` reads input row `oy + ki * dilation - padding` at a
//! column shift that depends only on the kernel column `kj`. So for each `kj` and input
//! channel `c`, one copy of the input plane, shifted by that column offset (zeros at the
//! borders) and framed by zero rows above and below, serves every `ki`: the rows that kernel
//! row `ki` reads are that plane from row `ki * dilation` on, a contiguous run of
//! `out_h * out_w` elements. With the `k_w * c_in` planes `kj`-major, `c` minor, and all
//! `S` elements apart, the matrix of kernel row `ki` is
//!
//! `rows_ki[(kj, c), (oy, ox)] = planes[(kj * c_in + c) * S + ki * dilation * w + oy * w + ox]`,
//!
//! a strided view (rows `S` apart, columns contiguous) that gemm reads in place, and the
//! convolution is `k_h` GEMMs accumulated into the output:
//!
//! `y_b[c_out, p] (+)= w_ki[c_out, (kj, c)] · rows_ki[(kj, c), p]`.
//!
//! The planes are `k_w` copies of the input (a third of a 3x3 im2col matrix, and built with
//! one `memcpy` per plane), and the GEMMs' `k_w * c_in` terms per output are still enough to
//! keep gemm's microkernel busy. Measured on the `cifar10` net's 3x3 shapes (a standalone
//! one-thread benchmark, batch 32, against im2col and one GEMM): 4-11% faster at 32x32 and
//! 16x16, 20% at 8x8; in `flex_conv` (two threads) the net's forwards sum 7% less.
//!
//! Images with fewer than [`CHANNEL_MAJOR_BELOW`] output pixels (a 4x4 U-Net level) compute
//! `y_bᵀ[p, c_out]` instead, so that gemm's vectors run along the output channels rather than
//! along 16 pixels, and transpose it into place (1.9x in that benchmark, 1.4x in `flex_conv`).

use alloc::vec::Vec;

use crate::FlexTensor;

use super::{
    Geometry, Images, Real, Spans, Strides, contiguous, gemm, per_image, row_major, tensor, uninit,
};

/// Terms per GEMM (`k_w * c_in`) below which the im2col path is kept: with few input
/// channels (a first layer on RGB or grey input) the `k_h` GEMMs are too thin.
const MIN_TERMS: usize = 48;

/// Output pixels per image below which the product is computed channel-major (see the
/// module's documentation).
const CHANNEL_MAJOR_BELOW: usize = 64;

/// Whether [`conv2d`] applies: groups 1, stride 1, output as wide as the input, a kernel
/// larger than 1x1, and at least [`MIN_TERMS`] terms per GEMM.
pub(super) fn applies(g: &Geometry) -> bool {
    g.groups == 1
        && g.stride == [1, 1]
        && g.out_w == g.in_w
        && g.k_h * g.k_w > 1
        && g.k_w * g.c_in >= MIN_TERMS
        && g.p() > 0
}

/// Rows of one shifted plane: the input's, with the padding rows above and below.
fn plane_rows(g: &Geometry) -> usize {
    g.in_h + 2 * g.padding[0]
}

/// The weights of each kernel row `ki` as the GEMM's left (`[c_out, (kj, c)]`) or, if
/// `channel_major`, right (`[(kj, c), c_out]`) operand, one matrix per `ki`, back to back.
/// Written row by row, in parallel over the rows when rayon is enabled: this runs once per
/// convolution, but a 4x4 level's whole convolution is only about ten times its size.
fn weights_by_kernel_row<T: Real>(w: &[T], g: &Geometry, channel_major: bool) -> Vec<T> {
    let (co, ci, kh, kw) = (g.c_out, g.c_in, g.k_h, g.k_w);
    let window = kh * kw;
    let mut out = uninit(w.len());
    let (row_len, rows) = if channel_major {
        (co, kh * kw * ci)
    } else {
        (kw * ci, kh * co)
    };
    let row = |(r, out_row): (usize, &mut [T])| {
        if channel_major {
            // Row (ki, kj, c): w[o, c, ki, kj] for every o.
            let (ki, kj, c) = (r / (kw * ci), (r / ci) % kw, r % ci);
            let at = (c * kh + ki) * kw + kj;
            for (o, v) in out_row.iter_mut().enumerate() {
                *v = w[o * ci * window + at];
            }
        } else {
            // Row (ki, o): w[o, c, ki, kj] at column kj * ci + c.
            let (ki, o) = (r / co, r % co);
            for c in 0..ci {
                let src = &w[(o * ci + c) * window + ki * kw..][..kw];
                for (kj, &v) in src.iter().enumerate() {
                    out_row[kj * ci + c] = v;
                }
            }
        }
    };
    debug_assert_eq!(row_len * rows, out.len());
    if row_len == 0 {
        return out;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(row_len).enumerate().for_each(row);
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(row_len).enumerate().for_each(row);
    out
}

/// Writes image `x_b`'s `k_w * c_in` shifted planes into `planes` (every element).
fn shifted_planes<T: Real>(g: &Geometry, spans: &Spans, x_b: &[T], planes: &mut [T]) {
    let (h, w) = (g.in_h, g.in_w);
    let top = g.padding[0] * w;
    let stride = plane_rows(g) * w;
    let mut chunks = planes.chunks_exact_mut(stride);
    for kj in 0..g.k_w {
        // Output column ox reads input column ox + delta, where it is in the image.
        let delta = (kj * g.dilation[1]) as isize - g.padding[1] as isize;
        let (first, end, _) = spans.cols[kj];
        for c in 0..g.c_in {
            let plane = chunks.next().expect("k_w * c_in planes");
            let src = &x_b[c * h * w..(c + 1) * h * w];
            let (head, rest) = plane.split_at_mut(top);
            let (body, tail) = rest.split_at_mut(h * w);
            head.fill(T::zero());
            tail.fill(T::zero());
            // One copy of the whole plane at the column shift; what it cannot reach, and what
            // it carries over from the neighbouring row, lies in the border columns zeroed
            // below.
            let n = (h * w) as isize;
            let (lo, hi) = ((-delta).max(0), (n - delta).min(n));
            if lo < hi {
                let (lo, hi) = (lo as usize, hi as usize);
                let from = (lo as isize + delta) as usize;
                body[lo..hi].copy_from_slice(&src[from..from + (hi - lo)]);
            }
            for row in body.chunks_exact_mut(w) {
                let (left, right) = row.split_at_mut(first);
                for v in left.iter_mut().chain(&mut right[end - first..]) {
                    *v = T::zero();
                }
            }
        }
    }
}

/// The convolution by shifted planes; `applies(g)` must hold.
pub(super) fn conv2d<T: Real>(
    g: &Geometry,
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
) -> FlexTensor {
    debug_assert!(applies(g));
    let spans = Spans::new(g);
    let x = Images::new(&x);
    let (w, ws, we) = contiguous(&weight);
    let channel_major = g.p() < CHANNEL_MAJOR_BELOW;
    let w_rows = weights_by_kernel_row(&w.storage::<T>()[ws..we], g, channel_major);
    let bias = bias.map(|b| contiguous(&b));
    let bias_data = bias.as_ref().map(|(b, s, e)| &b.storage::<T>()[*s..*e]);

    let (co, p, w_in) = (g.c_out, g.p(), g.in_w);
    let terms = g.k_w * g.c_in;
    let stride = plane_rows(g) * w_in;
    let planes_len = terms * stride;
    let transposed_len = if channel_major { p * co } else { 0 };
    // Kernel row ki's matrix: the planes from row ki * dilation on, rows `stride` apart.
    let rows_view = Strides {
        row: stride as isize,
        col: 1,
    };
    let mut out = uninit(g.batch * co * p);
    per_image(
        &mut out,
        g.batch,
        planes_len + transposed_len,
        |b, y_b, scratch| {
            let (planes, y_t) = scratch.split_at_mut(planes_len);
            shifted_planes(g, &spans, x.image::<T>(b), planes);
            for ki in 0..g.k_h {
                let w_ki = &w_rows[ki * co * terms..(ki + 1) * co * terms];
                let rows_ki = &planes[ki * g.dilation[0] * w_in..];
                // The first kernel row writes every output element, the others add to it.
                if channel_major {
                    let view_t = Strides {
                        row: 1,
                        col: stride as isize,
                    };
                    gemm(p, co, terms, y_t, co, ki > 0, rows_ki, view_t, w_ki, row_major(co));
                } else {
                    gemm(co, p, terms, y_b, p, ki > 0, w_ki, row_major(terms), rows_ki, rows_view);
                }
            }
            if channel_major {
                transpose_into(y_t, y_b, p, co, bias_data);
            } else if let Some(bias) = bias_data {
                for (plane, &bc) in y_b.chunks_mut(p).zip(bias) {
                    plane.iter_mut().for_each(|v| *v = *v + bc);
                }
            }
        },
    );
    tensor(out, [g.batch, co, g.out_h, g.out_w])
}

/// `y[c, q] = y_t[q, c] + bias[c]`, for `y_t: [p, co]`, in 16x16 tiles.
fn transpose_into<T: Real>(y_t: &[T], y: &mut [T], p: usize, co: usize, bias: Option<&[T]>) {
    const TILE: usize = 16;
    for c0 in (0..co).step_by(TILE) {
        for q0 in (0..p).step_by(TILE) {
            for c in c0..(c0 + TILE).min(co) {
                let bc = bias.map_or(T::zero(), |b| b[c]);
                let row = &mut y[c * p..(c + 1) * p];
                for q in q0..(q0 + TILE).min(p) {
                    row[q] = y_t[q * co + c] + bc;
                }
            }
        }
    }
}
