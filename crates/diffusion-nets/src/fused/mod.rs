//! GroupNorm followed by SiLU (every residual block and the head), GroupNorm alone
//! (attention), and attention under autodiff, as one fused operation where a kernel exists,
//! burn's ops everywhere else.
//!
//! burn 0.21 composes `GroupNorm` from about ten element-wise and reduction ops, and SiLU from
//! two more; on the CPU each is a pass over the whole activation with a new buffer, and under
//! autodiff each keeps its inputs for a backward pass of its own. On `Flex` and
//! `Autodiff<Flex>`, [`group_norm_silu`] runs `kernel`'s two sweeps forward and two backward
//! instead (a custom autodiff node, see `autodiff`). On every other backend (WGPU, CUDA,
//! another checkpointing strategy, f16 tensors) it is `silu(norm.forward(x))`, as before.
//!
//! [`attention`] is burn's fused attention op, except on `Autodiff<Flex>`, where burn
//! decomposes it into seven ops and the `attention` module's node runs instead.
//!
//! The choice is made at run time by type (in `dispatch`), so that the nets stay generic over
//! `B: Backend` with no extra bound on users' backends.
//!
//! The kernels are the crate's `flex-kernels` feature (on by default). Without it, burn-flex,
//! rayon and pulp are not compiled, and these functions are burn's ops on every backend.

#[cfg(feature = "flex-kernels")]
mod attention;
#[cfg(feature = "flex-kernels")]
mod autodiff;
#[cfg(feature = "flex-kernels")]
mod dispatch;
#[cfg(feature = "flex-kernels")]
mod flex;
#[cfg(feature = "flex-kernels")]
mod kernel;
#[cfg(feature = "flex-kernels")]
mod math;
#[cfg(all(test, feature = "flex-kernels"))]
mod tests;

use burn::nn::GroupNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::AttentionModuleOptions;

#[cfg(feature = "flex-kernels")]
use dispatch::{fused_attention, fused_group_norm};

/// `silu(norm.forward(x))`, fused on the CPU backend.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]` with `channels == norm.num_channels`
/// - returns: the same shape
pub fn group_norm_silu<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused_group_norm(norm, x, true).unwrap_or_else(|x| silu(norm.forward(x)))
}

/// `norm.forward(x)`, fused on the CPU backend.
///
/// # Shapes
/// As [`group_norm_silu`].
pub fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused_group_norm(norm, x, false).unwrap_or_else(|x| norm.forward(x))
}

/// `softmax(q kᵀ / √dim) v` per batch and head: burn's attention op, with a node of its own
/// on `Autodiff<Flex>` (see the `attention` module).
///
/// # Shapes
/// - `q`: `[batch, heads, tokens_q, dim]`, `k`: `[batch, heads, tokens_k, dim]`,
///   `v`: `[batch, heads, tokens_k, dim_v]`
/// - returns: `[batch, heads, tokens_q, dim_v]`
pub fn attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    fused_attention(q, k, v).unwrap_or_else(|(q, k, v)| {
        burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default())
    })
}

/// Without the kernels, every call takes burn's ops.
#[cfg(not(feature = "flex-kernels"))]
fn fused_group_norm<B: Backend>(
    _: &GroupNorm<B>,
    x: Tensor<B, 4>,
    _silu: bool,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    Err(x)
}

/// Without the kernels, every call takes burn's ops.
#[cfg(not(feature = "flex-kernels"))]
fn fused_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    Err((q, k, v))
}
