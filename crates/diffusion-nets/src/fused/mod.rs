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
//! The choice is made at run time by type, so that the nets stay generic over
//! `B: Backend` with no extra bound on users' backends.

mod attention;
mod autodiff;
mod flex;
mod kernel;
mod math;
#[cfg(test)]
mod tests;

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::nn::GroupNorm;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::Flex;
use burn_flex::FlexTensor;

use autodiff::AutodiffFlexTensor;
use flex::Params;

/// `silu(norm.forward(x))`, fused on the CPU backend.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]` with `channels == norm.num_channels`
/// - returns: the same shape
pub fn group_norm_silu<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(norm, x, true).unwrap_or_else(|x| silu(norm.forward(x)))
}

/// `norm.forward(x)`, fused on the CPU backend.
///
/// # Shapes
/// As [`group_norm_silu`].
pub fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    fused(norm, x, false).unwrap_or_else(|x| norm.forward(x))
}

/// `softmax(q kᵀ / √dim) v` per batch and head: burn's attention op, with a node of its own
/// on `Autodiff<Flex>` (see the `attention` module).
///
/// # Shapes
/// - `q`: `[batch, heads, tokens_q, dim]`, `k`: `[batch, heads, tokens_k, dim]`,
///   `v`: `[batch, heads, tokens_k, dim_v]`
/// - returns: `[batch, heads, tokens_q, dim_v]`
pub fn attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let burns = |q, k, v| {
        burn::tensor::module::attention(q, k, v, None, None, AttentionModuleOptions::default())
    };
    if !is::<B, Autodiff<Flex>>() {
        return burns(q, k, v);
    }
    let (TensorPrimitive::Float(qp), TensorPrimitive::Float(kp), TensorPrimitive::Float(vp)) = (
        q.clone().into_primitive(),
        k.clone().into_primitive(),
        v.clone().into_primitive(),
    ) else {
        return burns(q, k, v);
    };
    let (qp, kp, vp): (AutodiffFlexTensor, AutodiffFlexTensor, AutodiffFlexTensor) =
        (cast(qp), cast(kp), cast(vp));
    if !attention::supported(&qp.primitive, &kp.primitive, &vp.primitive) {
        return burns(q, k, v);
    }
    drop((q, k, v));
    let out: B::FloatTensorPrimitive = cast(attention::forward(qp, kp, vp));
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// Moves a value into the type it is known (by `TypeId`) to be.
fn cast<T: 'static, U: 'static>(value: T) -> U {
    *(Box::new(value) as Box<dyn Any>)
        .downcast::<U>()
        .expect("cast between types checked equal")
}

fn is<B: 'static, T: 'static>() -> bool {
    TypeId::of::<B>() == TypeId::of::<T>()
}

/// The fused op where a kernel applies, else `x` back untouched.
fn fused<B: Backend>(
    norm: &GroupNorm<B>,
    x: Tensor<B, 4>,
    silu: bool,
) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
    let (Some(gamma), Some(beta)) = (&norm.gamma, &norm.beta) else {
        return Err(x);
    };
    if x.dims()[1] != norm.num_channels || !(is::<B, Flex>() || is::<B, Autodiff<Flex>>()) {
        return Err(x);
    }
    let params = Params {
        groups: norm.num_groups,
        eps: norm.epsilon as f32,
        silu,
    };
    // Quantized tensors take burn's ops.
    let (
        TensorPrimitive::Float(x_p),
        TensorPrimitive::Float(gamma_p),
        TensorPrimitive::Float(beta_p),
    ) = (
        x.clone().into_primitive(),
        gamma.val().into_primitive(),
        beta.val().into_primitive(),
    )
    else {
        return Err(x);
    };
    let out: B::FloatTensorPrimitive = if is::<B, Flex>() {
        let (x_p, gamma_p, beta_p): (FlexTensor, FlexTensor, FlexTensor) =
            (cast(x_p), cast(gamma_p), cast(beta_p));
        if !flex::supported(&x_p, &gamma_p, &beta_p, params) {
            return Err(x);
        }
        drop(x); // so that the kernel may write into x's buffer if nothing else holds it
        cast(flex::forward_owned(x_p, &gamma_p, &beta_p, params))
    } else {
        let (x_p, gamma_p, beta_p): (AutodiffFlexTensor, AutodiffFlexTensor, AutodiffFlexTensor) =
            (cast(x_p), cast(gamma_p), cast(beta_p));
        if !flex::supported(
            &x_p.primitive,
            &gamma_p.primitive,
            &beta_p.primitive,
            params,
        ) {
            return Err(x);
        }
        drop(x);
        cast(autodiff::forward(x_p, gamma_p, beta_p, params))
    };
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
}
