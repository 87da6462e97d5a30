//! Which backend a call runs on, decided by type: the Flex kernels on `Flex` and
//! `Autodiff<Flex>` for the inputs they support, the inputs back untouched (for burn's ops)
//! everywhere else.

use std::any::{Any, TypeId};

use burn::backend::Autodiff;
use burn::nn::GroupNorm;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

use super::autodiff::AutodiffFlexTensor;
use super::flex::Params;
use super::{attention, autodiff, flex};

/// Attention's node on `Autodiff<Flex>` for supported inputs, else the inputs back untouched.
pub(super) fn fused_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
) -> Result<Tensor<B, 4>, (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>)> {
    if !is::<B, Autodiff<Flex>>() {
        return Err((q, k, v));
    }
    let (TensorPrimitive::Float(qp), TensorPrimitive::Float(kp), TensorPrimitive::Float(vp)) = (
        q.clone().into_primitive(),
        k.clone().into_primitive(),
        v.clone().into_primitive(),
    ) else {
        return Err((q, k, v));
    };
    let (qp, kp, vp): (AutodiffFlexTensor, AutodiffFlexTensor, AutodiffFlexTensor) =
        (cast(qp), cast(kp), cast(vp));
    if !attention::supported(&qp.primitive, &kp.primitive, &vp.primitive) {
        return Err((q, k, v));
    }
    drop((q, k, v));
    let out: B::FloatTensorPrimitive = cast(attention::forward(qp, kp, vp));
    Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
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
pub(super) fn fused_group_norm<B: Backend>(
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
