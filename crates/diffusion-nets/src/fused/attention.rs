//! `softmax(q kᵀ · scale) v` as one node of `Autodiff<Flex>`'s graph.
//!
//! Under autodiff burn 0.21 decomposes attention into a matmul, a scaling, a softmax made of
//! five element-wise and reduction ops, and a second matmul, each a pass over the
//! `[batch, heads, tokens, tokens]` scores that keeps its inputs for a backward pass of its
//! own. Here the forward pass is two GEMMs and one softmax sweep over the scores, and the
//! backward pass four GEMMs and one sweep (`ds = p ⊙ (dp − rowsum(dp ⊙ p)) · scale`), with
//! the probabilities kept from the forward pass, as the decomposition keeps them too.

use std::sync::atomic::{AtomicUsize, Ordering};

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::DType;
use burn::tensor::ops::{AttentionModuleOptions, FloatTensorOps, ModuleOps};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use super::autodiff::AutodiffFlexTensor;
use super::flex::plain;
use super::math::softmax_row;

/// Calls of the tracked forward pass, for the test that it is reached.
pub(crate) static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Rows of scores per rayon task.
const ROWS_PER_TASK: usize = 64;

/// Whether the fused op applies: f32 `[batch, heads, tokens, dim]` tensors, keys and values
/// with as many tokens, queries and keys of one width.
pub(crate) fn supported(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor) -> bool {
    let (qs, ks, vs) = (q.layout().shape(), k.layout().shape(), v.layout().shape());
    [q, k, v].iter().all(|t| t.dtype() == DType::F32)
        && [qs, ks, vs].iter().all(|s| s.num_dims() == 4)
        && (0..2).all(|d| qs[d] == ks[d] && ks[d] == vs[d])
        && ks[2] == vs[2]
        && qs[3] == ks[3]
        && qs[3] > 0
        && ks[2] > 0
}

/// The backward step; parents `[q, k, v]`.
#[derive(Debug)]
struct AttentionBackward;

/// The inputs and the probabilities of the forward pass.
#[derive(Debug, Clone)]
struct State {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    probs: FlexTensor,
    scale: f32,
}

impl Backward<Flex, 3> for AttentionBackward {
    type State = State;

    fn backward(self, ops: Ops<State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_q, node_k, node_v] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dq, dk, dv) = backward(&ops.state, grad);
        for (node, grad) in [(node_q, dq), (node_k, dk), (node_v, dv)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// `softmax(q kᵀ / √dim) v` on `Autodiff<Flex>` (without checkpointing, burn's default);
/// [`supported`] inputs.
pub(crate) fn forward(
    q: AutodiffFlexTensor,
    k: AutodiffFlexTensor,
    v: AutodiffFlexTensor,
) -> AutodiffFlexTensor {
    let parents = [q.node.clone(), k.node.clone(), v.node.clone()];
    match AttentionBackward
        .prepare::<NoCheckpointing>(parents)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            CALLS.fetch_add(1, Ordering::Relaxed);
            let scale = 1.0 / (q.primitive.layout().shape()[3] as f32).sqrt();
            let probs = probabilities(&q.primitive, &k.primitive, scale);
            let out = Flex::float_matmul(probs.clone(), v.primitive.clone());
            let state = State {
                q: q.primitive,
                k: k.primitive,
                v: v.primitive,
                probs,
                scale,
            };
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(Flex::attention(
            q.primitive,
            k.primitive,
            v.primitive,
            None,
            None,
            AttentionModuleOptions::default(),
        )),
    }
}

/// The last two dimensions swapped (a view).
fn transposed(t: &FlexTensor) -> FlexTensor {
    Flex::float_swap_dims(t.clone(), 2, 3)
}

/// The rows of a [`plain`] tensor that nothing else holds, `len` elements each, in parallel
/// groups.
fn rows_mut(t: &mut FlexTensor, len: usize) -> rayon::slice::ChunksMut<'_, f32> {
    t.try_storage_mut::<f32>()
        .expect("a fresh matmul output is not shared")
        .par_chunks_mut(len * ROWS_PER_TASK)
}

/// `softmax(q kᵀ · scale)` over the keys: `[batch, heads, tokens_q, tokens_k]`.
fn probabilities(q: &FlexTensor, k: &FlexTensor, scale: f32) -> FlexTensor {
    let mut scores = plain(Flex::float_matmul(q.clone(), transposed(k)));
    let len = scores.layout().shape()[3];
    rows_mut(&mut scores, len).for_each(|rows| {
        rows.chunks_exact_mut(len)
            .for_each(|row| softmax_row(row, scale))
    });
    scores
}

/// `(dq, dk, dv)` from the output gradient `dout`: `dv = pᵀ dout`, `dp = dout vᵀ`,
/// `ds = p ⊙ (dp − rowsum(dp ⊙ p)) · scale`, `dq = ds k`, `dk = dsᵀ q`.
fn backward(s: &State, dout: FlexTensor) -> (FlexTensor, FlexTensor, FlexTensor) {
    let dv = Flex::float_matmul(transposed(&s.probs), dout.clone());
    let mut ds = plain(Flex::float_matmul(dout, transposed(&s.v)));
    let probs = plain(s.probs.clone());
    let len = probs.layout().shape()[3];
    rows_mut(&mut ds, len)
        .zip(probs.storage::<f32>().par_chunks(len * ROWS_PER_TASK))
        .for_each(|(ds, p)| {
            ds.chunks_exact_mut(len)
                .zip(p.chunks_exact(len))
                .for_each(|(ds, p)| softmax_gradient_row(ds, p, s.scale))
        });
    let dq = Flex::float_matmul(ds.clone(), s.k.clone());
    let dk = Flex::float_matmul(transposed(&ds), s.q.clone());
    (dq, dk, dv)
}

/// Lanes of the partial sums, which the compiler keeps in a vector register.
const LANES: usize = 8;

/// `dp ← p ⊙ (dp − Σ dp ⊙ p) · scale`: the gradient of the scores (before scaling) from the
/// gradient of the probabilities `p` of `softmax_row`.
fn softmax_gradient_row(dp: &mut [f32], p: &[f32], scale: f32) {
    let mut dots = [0.0f32; LANES];
    for (d, p) in dp.chunks(LANES).zip(p.chunks(LANES)) {
        for ((acc, &d), &p) in dots.iter_mut().zip(d).zip(p) {
            *acc += d * p;
        }
    }
    let dot: f32 = dots.iter().sum();
    dp.iter_mut()
        .zip(p)
        .for_each(|(d, &p)| *d = p * (*d - dot) * scale);
}
