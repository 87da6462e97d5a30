//! The fused GroupNorm (+ SiLU) on Flex tensors: shape checks, contiguity, and the choice
//! between writing in place (a tensor nobody else holds, as in sampling) and a new buffer.

use burn::tensor::Bytes;
use burn::tensor::{DType, Shape};
use burn_flex::{FlexTensor, Layout};

use super::kernel::{self, Geometry, Moments};

/// What a fused call computes, besides its tensors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Params {
    pub groups: usize,
    pub eps: f32,
    /// SiLU after the affine transform.
    pub silu: bool,
}

/// Whether the fused kernel applies: f32 data of shape `[batch, channels, ...]` with
/// `channels` a multiple of `groups`, and per-channel `gamma` and `beta`.
pub(crate) fn supported(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, p: Params) -> bool {
    let shape = x.layout().shape();
    let per_channel =
        |t: &FlexTensor| t.dtype() == DType::F32 && t.layout().shape().num_elements() == shape[1];
    x.dtype() == DType::F32
        && shape.num_dims() >= 3
        && p.groups > 0
        && shape[1].is_multiple_of(p.groups)
        && per_channel(gamma)
        && per_channel(beta)
}

fn geometry(x: &FlexTensor, groups: usize) -> Geometry {
    let shape = x.layout().shape();
    Geometry {
        batch: shape[0],
        channels: shape[1],
        plane: (2..shape.num_dims()).map(|d| shape[d]).product(),
        groups,
    }
}

/// The tensor itself when its buffer holds exactly its elements in row-major order, else a
/// contiguous copy.
pub(crate) fn plain(t: FlexTensor) -> FlexTensor {
    let n = t.layout().shape().num_elements();
    let whole = t.is_contiguous()
        && t.layout().start_offset() == 0
        && t.bytes().len() == n * size_of::<f32>();
    if whole { t } else { t.to_contiguous() }
}

/// The elements of a [`plain`] tensor.
fn data(t: &FlexTensor) -> &[f32] {
    t.storage::<f32>()
}

fn new_tensor(data: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape),
        DType::F32,
    )
}

/// `act(group_norm(x))`, written into `x`'s own buffer when no other tensor shares it.
pub(crate) fn forward_owned(
    x: FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    p: Params,
) -> FlexTensor {
    let mut x = plain(x);
    let g = geometry(&x, p.groups);
    let (gamma, beta) = (plain(gamma.clone()), plain(beta.clone()));
    match x.try_storage_mut::<f32>() {
        Some(storage) => {
            kernel::forward(&g, None, storage, data(&gamma), data(&beta), p.eps, p.silu);
            x
        }
        None => forward(&x, &gamma, &beta, p).0,
    }
}

/// `act(group_norm(x))` into a new tensor, with the moments the backward pass needs.
pub(crate) fn forward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    p: Params,
) -> (FlexTensor, Moments) {
    let x = plain(x.clone());
    let g = geometry(&x, p.groups);
    let (gamma, beta) = (plain(gamma.clone()), plain(beta.clone()));
    let mut out = vec![0.0f32; g.batch * g.channels * g.plane];
    let m = kernel::forward(
        &g,
        Some(data(&x)),
        &mut out,
        data(&gamma),
        data(&beta),
        p.eps,
        p.silu,
    );
    (new_tensor(out, x.layout().shape().clone()), m)
}

/// Gradients with respect to `x`, `gamma` and `beta` of the fused op, given the output
/// gradient and the moments of [`forward`].
pub(crate) fn backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    moments: &Moments,
    grad: &FlexTensor,
    p: Params,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let (x, grad) = (plain(x.clone()), plain(grad.clone()));
    let g = geometry(&x, p.groups);
    let (gamma_v, beta_v) = (plain(gamma.clone()), plain(beta.clone()));
    let (dx, dgamma, dbeta) = kernel::backward(
        &g,
        data(&x),
        data(&grad),
        data(&gamma_v),
        data(&beta_v),
        moments,
        p.silu,
    );
    (
        new_tensor(dx, x.layout().shape().clone()),
        new_tensor(dgamma, gamma.layout().shape().clone()),
        new_tensor(dbeta, beta.layout().shape().clone()),
    )
}
