//! 2D convolution (f32, f64) as one GEMM per image and group on a channel-major im2col
//! buffer, for the forward pass and for the three gradients.
//!
//! Layout: an image `x[c, h, w]` (NCHW, contiguous) becomes `col[(c, ki, kj), (oy, ox)]`
//! (`k = c_in * kh * kw` rows of `p = out_h * out_w` columns). Then, per image `b`:
//!
//! - forward:          `y_b[c_out, p]  = w[c_out, k] · col_b[k, p]`   (written straight into NCHW)
//! - input gradient:   for stride 1, the forward convolution of `g` with the flipped,
//!   channel-swapped kernel (see [`conv2d_x_backward`]); otherwise
//!   `dcol_b[k, p] = wᵀ[k, c_out] · g_b[c_out, p]`, then `col2im` adds `dcol_b` back onto
//!   `dx_b` (the adjoint of `im2col`)
//! - weight gradient:  `dw[c_out, k]  += g_b[c_out, p] · col_bᵀ[p, k]`
//! - bias gradient:    `db[c_out]      = Σ_b Σ_p g_b[c_out, p]`
//!
//! Transposes are expressed through GEMM strides, never materialized. Images run in parallel
//! (rayon), each GEMM single-threaded; the weight gradient sums a fixed number of partials
//! in a fixed order, so that it is bit-for-bit reproducible.
//!
//! `module.rs` routes every conv2d gradient here (all groups and dtypes), replacing burn's
//! defaults (a transposed convolution for the input gradient, a convolution with batch and
//! channels swapped for the weight gradient, a swap-and-reshape for the bias gradient), each
//! of which copies and re-lays-out whole activations; and the forward of plain convolutions
//! (groups 1, not pointwise), replacing the NHWC path's transposing copies around each GEMM.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use burn_backend::Element;
use burn_backend::ops::ConvOptions;
use burn_std::{Bytes, Shape};
use num_traits::Float;

use crate::{FlexTensor, Layout};

mod narrow_weight_grad;
mod rows;

/// Element types computed natively here (gemm has kernels for both); f16 and bf16 go
/// through f32 in `module.rs`.
pub(crate) trait Real: Float + Element + bytemuck::Pod + Send + Sync + 'static {}
impl Real for f32 {}
impl Real for f64 {}

/// Geometry of one 2D convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    batch: usize,
    c_in: usize,
    in_h: usize,
    in_w: usize,
    c_out: usize,
    groups: usize,
    k_h: usize,
    k_w: usize,
    out_h: usize,
    out_w: usize,
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn new(x_shape: &Shape, w_shape: &Shape, options: &ConvOptions<2>) -> Self {
        let out = |i: usize| {
            let span = options.dilation[i] * (w_shape[2 + i] - 1) + 1;
            (x_shape[2 + i] + 2 * options.padding[i]).saturating_sub(span) / options.stride[i] + 1
        };
        Self {
            batch: x_shape[0],
            c_in: x_shape[1],
            in_h: x_shape[2],
            in_w: x_shape[3],
            c_out: w_shape[0],
            groups: options.groups,
            k_h: w_shape[2],
            k_w: w_shape[3],
            out_h: out(0),
            out_w: out(1),
            stride: options.stride,
            padding: options.padding,
            dilation: options.dilation,
        }
    }

    /// Input channels per group.
    fn c_in_g(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    fn c_out_g(&self) -> usize {
        self.c_out / self.groups
    }

    /// Rows of one group's im2col matrix: `c_in_g * k_h * k_w`.
    fn k(&self) -> usize {
        self.c_in_g() * self.k_h * self.k_w
    }

    /// Whether the im2col matrix of an image is the image itself (1x1, stride 1, no padding).
    fn col_is_image(&self) -> bool {
        self.k_h * self.k_w == 1 && self.stride == [1, 1] && self.padding == [0, 0]
    }

    /// Columns of the im2col matrix: output pixels per image.
    fn p(&self) -> usize {
        self.out_h * self.out_w
    }

    fn in_image(&self) -> usize {
        self.c_in * self.in_h * self.in_w
    }

    /// Output columns `ox` whose input column `ox * stride - pad + kj * dilation` lies in
    /// `0..in_w`, as a range, with the input column of its first element.
    fn valid_columns(&self, kj: usize) -> (usize, usize, usize) {
        let offset = (kj * self.dilation[1]) as isize - self.padding[1] as isize;
        let stride = self.stride[1] as isize;
        // Smallest ox with ox * stride + offset >= 0.
        let first = if offset >= 0 {
            0
        } else {
            ((-offset + stride - 1) / stride) as usize
        };
        // Largest ox with ox * stride + offset < in_w, plus one.
        let end = if (self.in_w as isize) <= offset {
            0
        } else {
            (((self.in_w as isize - 1 - offset) / stride) + 1) as usize
        };
        let end = end.min(self.out_w);
        let first = first.min(end);
        let ix0 = (first as isize * stride + offset).max(0) as usize;
        (first, end, ix0)
    }

    /// Output rows per block of an image's im2col matrix in [`conv2d`], for elements of
    /// `size` bytes. The matrix is built and multiplied a block at a time, the blocks small
    /// enough to stay in a core's L2 cache between the two (a 32x32 image's whole matrix,
    /// 2.4 MB with 64 input channels and 7 MB with 192, went out to L3 and back: those
    /// convolutions are 5-10% faster in blocks), but at least [`MIN_BLOCK_PIXELS`] wide.
    fn block_rows(&self, size: usize) -> usize {
        let blocks = (self.k() * self.p() * size).div_ceil(COL_BLOCK_BYTES);
        let rows = self.out_h.div_ceil(blocks.clamp(1, self.out_h.max(1)));
        rows.max(MIN_BLOCK_PIXELS.div_ceil(self.out_w.max(1)))
            .min(self.out_h)
            .max(1)
    }

    /// Input row of output row `oy` for kernel row `ki`, if inside the image.
    fn input_row(&self, oy: usize, ki: usize) -> Option<usize> {
        let iy = (oy * self.stride[0] + ki * self.dilation[0]) as isize - self.padding[0] as isize;
        (0..self.in_h as isize).contains(&iy).then_some(iy as usize)
    }
}

/// Where each kernel offset reads inside the image, worked out once per convolution instead
/// of once per channel and image (the divisions in [`Geometry::valid_columns`] were a few
/// percent of a forward pass).
struct Spans {
    /// Per kernel column `kj`: [`Geometry::valid_columns`].
    cols: Vec<(usize, usize, usize)>,
    /// Per kernel row `ki`: the output rows `oy_lo..oy_hi` whose input row is in the image
    /// (a range, since the input row grows with `oy`).
    rows: Vec<(usize, usize)>,
}

impl Spans {
    fn new(g: &Geometry) -> Self {
        let rows = (0..g.k_h)
            .map(|ki| {
                let inside = |oy: usize| g.input_row(oy, ki).is_some();
                let lo = (0..g.out_h).find(|&oy| inside(oy)).unwrap_or(g.out_h);
                let hi = (lo..g.out_h).find(|&oy| !inside(oy)).unwrap_or(g.out_h);
                (lo, hi)
            })
            .collect();
        Self {
            cols: (0..g.k_w).map(|kj| g.valid_columns(kj)).collect(),
            rows,
        }
    }
}

/// Contiguous data of a tensor (copied only when strided), with its element range.
fn contiguous(t: &FlexTensor) -> (FlexTensor, usize, usize) {
    let t = t.to_contiguous();
    let (start, end) = t
        .layout()
        .contiguous_offsets()
        .expect("to_contiguous returns a contiguous layout");
    (t, start, end)
}

/// A 4-D tensor's data as one contiguous `[c, h, w]` block per image, with any distance
/// between images: a contiguous tensor, or a channel slice of one (`narrow` on dimension 1,
/// which is what the gradient of a channel `cat` hands to each input, as in a U-Net's skip
/// connections). Anything else is copied first. Saves copying the slice in each of the
/// three gradients of a convolution.
struct Images {
    tensor: FlexTensor,
    offset: usize,
    stride: usize,
    len: usize,
}

impl Images {
    fn new(t: &FlexTensor) -> Self {
        let shape = t.layout().shape();
        if shape.num_dims() != 4 {
            let (tensor, offset, end) = contiguous(t);
            let len = end - offset;
            return Self {
                tensor,
                offset,
                stride: len,
                len,
            };
        }
        let strides = t.layout().strides();
        let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
        let len = c * h * w;
        // Canonical strides within an image (any stride on a dimension of size 1).
        let within = [(c, h * w), (h, w), (w, 1)]
            .iter()
            .zip(&strides[1..])
            .all(|(&(size, want), &got)| size == 1 || got == want as isize);
        let apart = n == 1 || strides[0] >= len as isize;
        if within && apart && len > 0 {
            let stride = if n == 1 { len } else { strides[0] as usize };
            return Self {
                tensor: t.clone(),
                offset: t.layout().start_offset(),
                stride,
                len,
            };
        }
        let (tensor, offset, _) = contiguous(t);
        Self {
            tensor,
            offset,
            stride: len,
            len,
        }
    }

    /// Image `b`'s `[c, h, w]` elements.
    fn image<T: Real>(&self, b: usize) -> &[T] {
        let start = self.offset + b * self.stride;
        &self.tensor.storage::<T>()[start..start + self.len]
    }
}

/// Writes the channels of one group of image `x_b` (`[c_in_g, in_h, in_w]`) as the im2col
/// matrix of the output rows `rows` (`[k, rows.len() * out_w]`) into `col`, whose rows start
/// `ld` elements apart (`ld` at least the block's width; more for one block of columns of a
/// wider matrix). Every element of the `k` rows' first `rows.len() * out_w` columns is
/// written.
fn im2col<T: Real>(
    g: &Geometry,
    spans: &Spans,
    x_b: &[T],
    col: &mut [T],
    ld: usize,
    rows: Range<usize>,
) {
    let (oy0, oy1) = (rows.start, rows.end);
    let width = (oy1 - oy0) * g.out_w;
    let mut row = 0;
    let same_width = g.stride == [1, 1] && g.out_w == g.in_w;
    for c in 0..g.c_in_g() {
        let plane = &x_b[c * g.in_h * g.in_w..(c + 1) * g.in_h * g.in_w];
        for ki in 0..g.k_h {
            // The block's output rows whose input row is in the image.
            let oy_lo = spans.rows[ki].0.clamp(oy0, oy1);
            let oy_hi = spans.rows[ki].1.clamp(oy_lo, oy1);
            for kj in 0..g.k_w {
                let (first, end, ix0) = spans.cols[kj];
                let dst_row = &mut col[row * ld..row * ld + width];
                row += 1;
                if same_width {
                    let valid = (oy_lo, oy_hi);
                    shifted_plane(g, plane, (ki, kj), valid, (first, end), oy0, dst_row);
                    continue;
                }
                dst_row[..(oy_lo - oy0) * g.out_w].fill(T::zero());
                dst_row[(oy_hi - oy0) * g.out_w..].fill(T::zero());
                for oy in oy_lo..oy_hi {
                    let dst = &mut dst_row[(oy - oy0) * g.out_w..(oy - oy0 + 1) * g.out_w];
                    let iy = oy * g.stride[0] + ki * g.dilation[0] - g.padding[0];
                    let src = &plane[iy * g.in_w..(iy + 1) * g.in_w];
                    dst[..first].fill(T::zero());
                    dst[end..].fill(T::zero());
                    if g.stride[1] == 1 {
                        dst[first..end].copy_from_slice(&src[ix0..ix0 + (end - first)]);
                    } else {
                        for (i, d) in dst[first..end].iter_mut().enumerate() {
                            *d = src[ix0 + i * g.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

/// One im2col row of a stride-1 convolution whose output is as wide as its input (a "same"
/// convolution, the U-Net's usual 3x3), for the output rows from `oy0` on that `dst` holds:
/// the input plane shifted by the kernel offset `(ki, kj)`. Output row `oy` reads input row
/// `oy + ki * dilation - padding` at the same column shift for every row, so the rows inside
/// the image are one copy of consecutive input; the few columns that fall outside the image
/// on either side (`..first`, `end..`) and the rows above and below it are then zeroed. One
/// `memcpy` per kernel offset instead of one per output row.
fn shifted_plane<T: Real>(
    g: &Geometry,
    plane: &[T],
    (ki, kj): (usize, usize),
    (oy_lo, oy_hi): (usize, usize),
    (first, end): (usize, usize),
    oy0: usize,
    dst: &mut [T],
) {
    let w = g.out_w;
    let base = (oy0 * w) as isize;
    dst[..(oy_lo - oy0) * w].fill(T::zero());
    dst[(oy_hi - oy0) * w..].fill(T::zero());
    if oy_lo == oy_hi {
        return;
    }
    // Output pixel i (counted from the image's first) reads plane[i + delta], for i in the
    // block of valid rows, clipped to the plane.
    let delta = ((ki * g.dilation[0]) as isize - g.padding[0] as isize) * w as isize
        + (kj * g.dilation[1]) as isize
        - g.padding[1] as isize;
    let lo = (oy_lo * w) as isize;
    let hi = (oy_hi * w) as isize;
    let copy_lo = lo.max(-delta);
    let copy_hi = hi.min(plane.len() as isize - delta);
    if copy_lo < copy_hi {
        let (a, b) = ((copy_lo - base) as usize, (copy_hi - base) as usize);
        let src = (copy_lo + delta) as usize;
        dst[a..b].copy_from_slice(&plane[src..src + (b - a)]);
    }
    // Everything the clipped copy skipped lies in the border columns zeroed here: one or
    // two elements per row, set one by one (a `fill` here became a `memset` call per row,
    // 4% of a training step).
    for oy in oy_lo..oy_hi {
        let row = &mut dst[(oy - oy0) * w..(oy - oy0 + 1) * w];
        let (head, rest) = row.split_at_mut(first);
        for v in head.iter_mut().chain(&mut rest[end - first..]) {
            *v = T::zero();
        }
    }
}

/// Adds the `[k, p]` matrix `col` back onto one group of image `dx_b` (the adjoint of
/// [`im2col`]).
fn col2im<T: Real>(g: &Geometry, spans: &Spans, col: &[T], dx_b: &mut [T]) {
    let p = g.p();
    let mut row = 0;
    for c in 0..g.c_in_g() {
        let plane = &mut dx_b[c * g.in_h * g.in_w..(c + 1) * g.in_h * g.in_w];
        for ki in 0..g.k_h {
            let (oy_lo, oy_hi) = spans.rows[ki];
            for kj in 0..g.k_w {
                let (first, end, ix0) = spans.cols[kj];
                let src_row = &col[row * p..(row + 1) * p];
                for oy in oy_lo..oy_hi {
                    let iy = oy * g.stride[0] + ki * g.dilation[0] - g.padding[0];
                    let src = &src_row[oy * g.out_w + first..oy * g.out_w + end];
                    let dst = &mut plane[iy * g.in_w..(iy + 1) * g.in_w];
                    if g.stride[1] == 1 {
                        for (d, &s) in dst[ix0..ix0 + src.len()].iter_mut().zip(src) {
                            *d = *d + s;
                        }
                    } else {
                        for (i, &s) in src.iter().enumerate() {
                            let d = &mut dst[ix0 + i * g.stride[1]];
                            *d = *d + s;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Row-major view of a matrix for [`gemm`]: element `(i, j)` at `i * row + j * col`.
#[derive(Clone, Copy)]
struct Strides {
    row: isize,
    col: isize,
}

const fn row_major(cols: usize) -> Strides {
    Strides {
        row: cols as isize,
        col: 1,
    }
}

/// The transpose of a row-major matrix with `cols` columns.
const fn transposed(cols: usize) -> Strides {
    Strides {
        row: 1,
        col: cols as isize,
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`, single-threaded, `dst` row-major with rows `ld`
/// apart (`n` for a matrix of its own, more for a block of columns of a wider one).
#[allow(clippy::too_many_arguments)]
fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    ld: usize,
    accumulate: bool,
    lhs: &[T],
    lhs_strides: Strides,
    rhs: &[T],
    rhs_strides: Strides,
) {
    assert!(ld >= n, "gemm: destination rows overlap");
    assert!(
        m * n == 0 || (m - 1) * ld + n <= dst.len(),
        "gemm: destination size"
    );
    let last = |s: Strides, rows: usize, cols: usize| {
        (rows.max(1) - 1) as isize * s.row + (cols.max(1) - 1) as isize * s.col
    };
    assert!(m * k == 0 || (last(lhs_strides, m, k) as usize) < lhs.len());
    assert!(k * n == 0 || (last(rhs_strides, k, n) as usize) < rhs.len());
    // SAFETY: the assertions above keep every index gemm computes from these strides inside
    // the three slices; `dst` is borrowed mutably and does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_strides.col,
            lhs_strides.row,
            rhs.as_ptr(),
            rhs_strides.col,
            rhs_strides.row,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A buffer of `len` elements for a caller that writes every one of them before reading any
/// (a GEMM output with `accumulate = false`, an im2col matrix): no zeroing pass.
#[allow(clippy::uninit_vec)]
fn uninit<T: Real>(len: usize) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: `T` is f32 or f64 (any bit pattern is a value), and callers write every element
    // before reading it.
    unsafe { v.set_len(len) };
    v
}

/// Runs `f(b, out_b, scratch)` for every image `b`, `out` split into `batch` equal parts,
/// in parallel when rayon is enabled. `scratch` is a buffer of `scratch_len` elements,
/// reused between images and uninitialized at first: `f` writes before it reads.
fn per_image<T: Real>(
    out: &mut [T],
    batch: usize,
    scratch_len: usize,
    f: impl Fn(usize, &mut [T], &mut Vec<T>) + Send + Sync,
) {
    if batch == 0 || out.is_empty() {
        return;
    }
    let chunk = out.len() / batch;
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each_init(
            || uninit(scratch_len),
            |scratch, (b, out_b)| f(b, out_b, scratch),
        );
    }
    #[cfg(not(feature = "rayon"))]
    {
        let mut scratch = uninit(scratch_len);
        for (b, out_b) in out.chunks_mut(chunk).enumerate() {
            f(b, out_b, &mut scratch);
        }
    }
}

fn tensor<T: Real>(data: Vec<T>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        T::dtype(),
    )
}

/// The im2col matrix of group `group` of image `x_b`: `x_b` itself for 1x1 convolutions,
/// else written into `scratch`.
fn columns<'a, T: Real>(
    g: &Geometry,
    spans: &Spans,
    x_b: &'a [T],
    group: usize,
    scratch: &'a mut [T],
) -> &'a [T] {
    let plane = g.in_h * g.in_w;
    let x_g = &x_b[group * g.c_in_g() * plane..(group + 1) * g.c_in_g() * plane];
    if g.col_is_image() {
        x_g
    } else {
        im2col(g, spans, x_g, scratch, g.p(), 0..g.out_h);
        scratch
    }
}

/// Forward convolution: `x: [b, c_in, h, w]`, `weight: [c_out, c_in / groups, kh, kw]`.
pub(crate) fn conv2d<T: Real>(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = Geometry::new(x.layout().shape(), weight.layout().shape(), options);
    if rows::applies(&g) {
        return rows::conv2d::<T>(&g, x, weight, bias);
    }
    let spans = Spans::new(&g);
    let x = Images::new(&x);
    let (w, ws, we) = contiguous(&weight);
    let w_data = &w.storage::<T>()[ws..we];
    let bias = bias.map(|b| contiguous(&b));
    let bias_data = bias.as_ref().map(|(b, s, e)| &b.storage::<T>()[*s..*e]);
    let (k, p, co) = (g.k(), g.p(), g.c_out_g());
    let plane = g.in_h * g.in_w;

    let block_rows = g.block_rows(size_of::<T>());
    let scratch_len = if g.col_is_image() {
        0
    } else {
        k * block_rows * g.out_w
    };
    // Every element is written by its group's GEMMs (which do not read it).
    let mut out = uninit(g.batch * g.c_out * p);
    per_image(&mut out, g.batch, scratch_len, |b, y_b, scratch| {
        let x_b = x.image::<T>(b);
        for group in 0..g.groups {
            let w_g = &w_data[group * co * k..(group + 1) * co * k];
            let y_g = &mut y_b[group * co * p..(group + 1) * co * p];
            if g.col_is_image() {
                let col = columns(&g, &spans, x_b, group, scratch);
                gemm(
                    co,
                    p,
                    k,
                    y_g,
                    p,
                    false,
                    w_g,
                    row_major(k),
                    col,
                    row_major(p),
                );
                continue;
            }
            let x_g = &x_b[group * g.c_in_g() * plane..(group + 1) * g.c_in_g() * plane];
            for oy0 in (0..g.out_h).step_by(block_rows) {
                let rows = oy0..(oy0 + block_rows).min(g.out_h);
                let width = rows.len() * g.out_w;
                let col = &mut scratch[..k * width];
                im2col(&g, &spans, x_g, col, width, rows);
                let y_block = &mut y_g[oy0 * g.out_w..];
                let rhs = row_major(width);
                gemm(co, width, k, y_block, p, false, w_g, row_major(k), col, rhs);
            }
        }
        if let Some(bias) = bias_data {
            for (plane, &bc) in y_b.chunks_mut(p).zip(bias) {
                plane.iter_mut().for_each(|v| *v = *v + bc);
            }
        }
    });
    tensor(out, [g.batch, g.c_out, g.out_h, g.out_w])
}

/// Gradient of the convolution with respect to its input.
///
/// For stride 1 (and padding within the kernel's reach), this is itself a convolution: of the
/// output gradient, padded by `dilation * (k - 1) - padding`, with the kernel flipped in both
/// spatial dimensions and its channel axes swapped. That goes through [`conv2d`], whose GEMM
/// has `c_out * kh * kw` terms per output, instead of the `c_out` of `wᵀ · g` followed by
/// the scatter-add of `col2im` (a GEMM of poor arithmetic intensity when `c_out` is small,
/// as at a U-Net's outer levels).
pub(crate) fn conv2d_x_backward<T: Real>(
    x_shape: &Shape,
    weight: FlexTensor,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = Geometry::new(x_shape, weight.layout().shape(), options);
    let reach = |i: usize| options.dilation[i] * ([g.k_h, g.k_w][i] - 1);
    // With very few input channels the convolution's GEMM has too few rows to pay (the
    // first layer of a net, whose input gradient is rarely needed anyway).
    let as_convolution = g.groups == 1
        && g.c_in >= 8
        && g.stride == [1, 1]
        && !g.col_is_image()
        && (0..2).all(|i| options.padding[i] <= reach(i));
    if as_convolution {
        let flipped = flipped_transposed::<T>(&weight, &g);
        let options = ConvOptions::new(
            [1, 1],
            [reach(0) - options.padding[0], reach(1) - options.padding[1]],
            options.dilation,
            1,
        );
        return conv2d::<T>(output_grad, flipped, None, &options);
    }
    let spans = Spans::new(&g);
    let (w, ws, we) = contiguous(&weight);
    let grad = Images::new(&output_grad);
    let w_data = &w.storage::<T>()[ws..we];
    let (k, p, co) = (g.k(), g.p(), g.c_out_g());
    let plane = g.in_h * g.in_w;

    // col2im adds into dx, which must start at zero (a 1x1 GEMM writes it whole, but that is
    // the rarer case).
    let mut dx = vec![T::zero(); g.batch * g.in_image()];
    per_image(&mut dx, g.batch, k * p, |b, dx_b, dcol| {
        let g_b = grad.image::<T>(b);
        for group in 0..g.groups {
            let g_g = &g_b[group * co * p..(group + 1) * co * p];
            let w_g = &w_data[group * co * k..(group + 1) * co * k];
            let dx_g = &mut dx_b[group * g.c_in_g() * plane..(group + 1) * g.c_in_g() * plane];
            if g.col_is_image() {
                // dcol is dx itself: write the product straight into it.
                gemm(
                    k,
                    p,
                    co,
                    dx_g,
                    p,
                    false,
                    w_g,
                    transposed(k),
                    g_g,
                    row_major(p),
                );
            } else {
                gemm(
                    k,
                    p,
                    co,
                    dcol,
                    p,
                    false,
                    w_g,
                    transposed(k),
                    g_g,
                    row_major(p),
                );
                col2im(&g, &spans, dcol, dx_g);
            }
        }
    });
    tensor(dx, [g.batch, g.c_in, g.in_h, g.in_w])
}

/// `w'[ci, co, i, j] = w[co, ci, kh - 1 - i, kw - 1 - j]`: the kernel of the input gradient
/// as a convolution (groups 1). Each output row `ci` is written in order, from `c_out` runs of
/// `kh * kw` reversed elements, in parallel over the rows when rayon is enabled (a loop with
/// `ci` innermost wrote a new cache line per element: 0.7 ms for a 128x128 3x3 kernel, as much
/// as the 4x4 convolution itself).
fn flipped_transposed<T: Real>(weight: &FlexTensor, g: &Geometry) -> FlexTensor {
    let (w, ws, we) = contiguous(weight);
    let w_data = &w.storage::<T>()[ws..we];
    let window = g.k_h * g.k_w;
    let mut out = uninit(w_data.len());
    let row = |(ci, out_row): (usize, &mut [T])| {
        for (co, out_window) in out_row.chunks_exact_mut(window).enumerate() {
            let start = (co * g.c_in + ci) * window;
            let w_window = &w_data[start..start + window];
            out_window
                .iter_mut()
                .zip(w_window.iter().rev())
                .for_each(|(o, &v)| *o = v);
        }
    };
    let row_len = g.c_out * window;
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(row_len).enumerate().for_each(row);
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(row_len).enumerate().for_each(row);
    tensor(out, [g.c_in, g.c_out, g.k_h, g.k_w])
}

/// Bytes of im2col matrix a convolution builds and multiplies at a time (see
/// [`Geometry::block_rows`]).
const COL_BLOCK_BYTES: usize = 512 << 10;

/// Output pixels of an im2col block, at least: narrower blocks cost more in the GEMM than
/// they save in cache (16x16 images with 128 to 256 channels were 3-5% slower in blocks
/// of 48 to 96 pixels).
const MIN_BLOCK_PIXELS: usize = 256;

/// Parts the batch is cut into for the weight gradient (see [`conv2d_weight_backward`]):
/// enough to keep a few threads busy, few enough that the partial gradients stay small.
const WEIGHT_GRAD_PARTS: usize = 8;

/// Terms a weight-gradient GEMM sums per element, at least, where a part's images allow:
/// images with fewer pixels go several to one GEMM (see [`conv2d_weight_backward`]).
const WEIGHT_GRAD_TERMS: usize = 256;

/// Gradient of the convolution with respect to its weight.
pub(crate) fn conv2d_weight_backward<T: Real>(
    x: FlexTensor,
    weight_shape: &Shape,
    output_grad: FlexTensor,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let g = Geometry::new(x.layout().shape(), weight_shape, options);
    if narrow_weight_grad::applies(&g) {
        return narrow_weight_grad::weight_backward::<T>(&g, x, output_grad);
    }
    let spans = Spans::new(&g);
    let (x, grad) = (Images::new(&x), Images::new(&output_grad));
    let (k, p, co) = (g.k(), g.p(), g.c_out_g());

    let plane = g.in_h * g.in_w;
    // The weight gradient is accumulated transposed, `dwᵀ[k, c_out] (+)= col[k, n] ·
    // gᵀ[n, c_out]`, gemm then running with the `k` rows of the im2col matrix as its long
    // dimension (30% faster), except where the kernel has fewer weights per output channel
    // than there are output channels (a first layer on RGB input: `k = 27`, `c_out = 64`),
    // where `dw[c_out, k] (+)= g[c_out, n] · colᵀ[n, k]` is 2.5x faster.
    let is_transposed = k >= co;
    let product = |dw_g: &mut [T], add: bool, col: &[T], g_g: &[T], n: usize| {
        if is_transposed {
            gemm(
                k,
                co,
                n,
                dw_g,
                co,
                add,
                col,
                row_major(n),
                g_g,
                transposed(n),
            );
        } else {
            gemm(
                co,
                k,
                n,
                dw_g,
                k,
                add,
                g_g,
                row_major(n),
                col,
                transposed(n),
            );
        }
    };
    // Adds the contribution of the images `run` to every group's weight gradient (or writes
    // it, if not `add`). One image is one GEMM over its `p` pixels; several are one GEMM over
    // all their pixels, their im2col matrices side by side in `col_buf` and their gradients
    // in `g_buf`.
    let accumulate =
        |run: Range<usize>, add: bool, dw: &mut [T], col_buf: &mut [T], g_buf: &mut [T]| {
            let n = run.len() * p;
            for group in 0..g.groups {
                let dw_g = &mut dw[group * co * k..(group + 1) * co * k];
                if run.len() == 1 {
                    // The whole image at once: in blocks of output rows (as the forward
                    // convolution goes), the 32x32 layers' weight gradients were 3-5% slower.
                    let (x_b, g_b) = (x.image::<T>(run.start), grad.image::<T>(run.start));
                    let col = columns(&g, &spans, x_b, group, col_buf);
                    let g_g = &g_b[group * co * p..(group + 1) * co * p];
                    product(dw_g, add, col, g_g, p);
                    continue;
                }
                for (j, b) in run.clone().enumerate() {
                    let x_g = &x.image::<T>(b)[group * g.c_in_g() * plane..][..g.c_in_g() * plane];
                    if g.col_is_image() {
                        for (r, src) in x_g.chunks_exact(p).enumerate() {
                            col_buf[r * n + j * p..][..p].copy_from_slice(src);
                        }
                    } else {
                        im2col(&g, &spans, x_g, &mut col_buf[j * p..], n, 0..g.out_h);
                    }
                    let g_g = &grad.image::<T>(b)[group * co * p..(group + 1) * co * p];
                    for (c, src) in g_g.chunks_exact(p).enumerate() {
                        g_buf[c * n + j * p..][..p].copy_from_slice(src);
                    }
                }
                product(dw_g, add, &col_buf[..k * n], &g_buf[..co * n], n);
            }
        };
    // The images are cut into a fixed number of consecutive parts, each summed in image
    // order, and the parts' sums are added in part order: the same association on every run
    // and with any number of threads (a rayon `fold` would make one partial per split, and
    // splits follow work stealing, so the gradient's last bits would vary from run to run).
    // Within a part, small images go by `per_gemm` at a time: a GEMM over one 4x4 image's
    // 16 pixels spends more time reading and writing `dwᵀ` than multiplying.
    let parts = g.batch.clamp(1, WEIGHT_GRAD_PARTS);
    let per_gemm = (WEIGHT_GRAD_TERMS / p.max(1)).max(1);
    let part_sum = |part: usize| {
        let images = part * g.batch / parts..(part + 1) * g.batch / parts;
        let widest = per_gemm.min(images.len()) * p;
        // The first GEMM writes every element of `dw`, if there is one that sums any term.
        let mut dw = if images.is_empty() || p == 0 {
            vec![T::zero(); g.c_out * k]
        } else {
            uninit(g.c_out * k)
        };
        // One image's im2col matrix is its input when `col_is_image`; several are copied.
        let col_len = if g.col_is_image() && widest == p {
            0
        } else {
            k * widest
        };
        let mut col_buf = uninit(col_len);
        let mut g_buf = if widest > p {
            uninit(co * widest)
        } else {
            Vec::new()
        };
        for (i, start) in images.clone().step_by(per_gemm).enumerate() {
            let run = start..(start + per_gemm).min(images.end);
            accumulate(run, i > 0, &mut dw, &mut col_buf, &mut g_buf);
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
    let out = sum_parts(partials, co, k, is_transposed);
    tensor(out, [g.c_out, g.c_in_g(), g.k_h, g.k_w])
}

/// The weight gradient `[c_out, k]` from `partials`, summed in part order (the same
/// association as adding the partials one after another), each partial the groups' blocks
/// as they are or, if `is_transposed`, transposed (`[k, c_out_g]`). The sum runs in chunks
/// of contiguous elements, and the transpose in tiles of `TILE` x `TILE`, both split across
/// threads when rayon is enabled (an untiled transpose wrote a new cache line per element:
/// 0.7 ms for a 128x128 3x3 kernel, 40% of that convolution's weight gradient at 4x4).
fn sum_parts<T: Real>(partials: Vec<Vec<T>>, co: usize, k: usize, is_transposed: bool) -> Vec<T> {
    const CHUNK: usize = 1 << 12;
    const TILE: usize = 16;
    let mut partials = partials.into_iter();
    let mut dw = partials.next().expect("at least one part");
    let rest: Vec<Vec<T>> = partials.collect();
    let add = |(i, chunk): (usize, &mut [T])| {
        for partial in &rest {
            let part = &partial[i * CHUNK..i * CHUNK + chunk.len()];
            chunk.iter_mut().zip(part).for_each(|(a, &b)| *a = *a + b);
        }
    };
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        dw.par_chunks_mut(CHUNK).enumerate().for_each(add);
    }
    #[cfg(not(feature = "rayon"))]
    dw.chunks_mut(CHUNK).enumerate().for_each(add);
    if !is_transposed {
        return dw;
    }
    // `TILE` rows `c0..` of group `group`'s block.
    let mut out = uninit(dw.len());
    let transpose = |dw: &[T], ((group, c0), out_rows): ((usize, usize), &mut [T])| {
        let block = &dw[group * co * k..(group + 1) * co * k];
        for k0 in (0..k).step_by(TILE) {
            let k1 = (k0 + TILE).min(k);
            for (r, out_row) in out_rows.chunks_exact_mut(k).enumerate() {
                for kk in k0..k1 {
                    out_row[kk] = block[kk * co + c0 + r];
                }
            }
        }
    };
    let tiles = out
        .chunks_mut(co * k)
        .enumerate()
        .flat_map(|(group, out_group)| {
            out_group
                .chunks_mut(TILE * k)
                .enumerate()
                .map(move |(t, out_rows)| ((group, t * TILE), out_rows))
        });
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        let dw = &dw;
        tiles
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each(|tile| transpose(dw, tile));
    }
    #[cfg(not(feature = "rayon"))]
    tiles.for_each(|tile| transpose(&dw, tile));
    out
}

/// Gradient of the convolution with respect to its bias: the output gradient summed over
/// the batch and the output pixels of each channel. (burn's default swaps the batch and
/// channel dimensions and reshapes, which copies the whole gradient through a strided walk.)
pub(crate) fn conv2d_bias_backward<T: Real>(
    bias: &FlexTensor,
    output_grad: FlexTensor,
) -> FlexTensor {
    let shape = output_grad.layout().shape().clone();
    let (batch, channels) = (shape[0], shape[1]);
    let p: usize = (2..shape.num_dims()).map(|d| shape[d]).product();
    let mut db = vec![T::zero(); channels];
    let mut add_image = |g_b: &[T]| {
        for (c, acc) in db.iter_mut().enumerate() {
            *acc = *acc + sum(&g_b[c * p..(c + 1) * p]);
        }
    };
    if batch * channels * p == 0 {
        // Nothing to sum.
    } else if shape.num_dims() == 4 {
        let grad = Images::new(&output_grad);
        (0..batch).for_each(|b| add_image(grad.image::<T>(b)));
    } else {
        let (gr, gs, ge) = contiguous(&output_grad);
        let g_data = &gr.storage::<T>()[gs..ge];
        g_data.chunks_exact(channels * p).for_each(add_image);
    }
    FlexTensor::new(
        Bytes::from_elems(db),
        Layout::contiguous(bias.layout().shape().clone()),
        T::dtype(),
    )
}

/// Sum of a slice in eight interleaved partial sums, which the compiler keeps in one vector
/// register (a single running sum is a serial dependency chain it may not reorder).
fn sum<T: Real>(values: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = *lane + v;
        }
    }
    let tail = rest.iter().fold(T::zero(), |s, &v| s + v);
    lanes.iter().fold(tail, |s, &v| s + v)
}
