//! The fused GroupNorm (+ SiLU) as one node of `Autodiff<Flex>`'s graph, with its own
//! backward pass (the kernel's), through burn-autodiff's public `Backward` API: the pattern
//! of burn's `custom-cpu-kernel` example.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::backend::BackendTypes;
use burn_flex::Flex;
use burn_flex::FlexTensor;

use super::flex::{self, Params};
use super::kernel::Moments;

/// `Autodiff<Flex>`'s float tensor (burn-autodiff does not export the type by name).
pub(crate) type AutodiffFlexTensor =
    <burn::backend::Autodiff<Flex> as BackendTypes>::FloatTensorPrimitive;

/// The backward step of the fused op; parents: `[x, gamma, beta]`.
#[derive(Debug)]
struct GroupNormBackward;

/// What the backward pass needs: the inputs and the moments of the forward pass.
#[derive(Debug, Clone)]
struct State {
    x: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    moments: Moments,
    params: Params,
}

impl Backward<Flex, 3> for GroupNormBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let s = ops.state;
        let (dx, dgamma, dbeta) =
            flex::backward(&s.x, &s.gamma, &s.beta, &s.moments, &grad, s.params);
        for (node, grad) in [(node_x, dx), (node_gamma, dgamma), (node_beta, dbeta)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// `act(group_norm(x))` on `Autodiff<Flex>` (without checkpointing, burn's default).
pub(crate) fn forward(
    x: AutodiffFlexTensor,
    gamma: AutodiffFlexTensor,
    beta: AutodiffFlexTensor,
    params: Params,
) -> AutodiffFlexTensor {
    let parents = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
    match GroupNormBackward
        .prepare::<NoCheckpointing>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (out, moments) =
                flex::forward(&x.primitive, &gamma.primitive, &beta.primitive, params);
            let state = State {
                x: x.primitive,
                gamma: gamma.primitive,
                beta: beta.primitive,
                moments,
                params,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(flex::forward_owned(
            x.primitive,
            &gamma.primitive,
            &beta.primitive,
            params,
        )),
    }
}
