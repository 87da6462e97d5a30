//! One optimizer step: micro-batches, backward, accumulation, global-norm clipping, AdamW, EMA.

use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use diffusion_nets::UNet;

use crate::checkpoint::TrainOptimizer;
use crate::data::{DataOrder, ImageBatcher, ImageDataset};
use crate::objective::{DiffusionObjective, micro_batch_rng, step_seed};
use crate::{TrainConfig, clip_grad_norm, ema_update};

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutcome {
    /// Loss of the step (mean over its micro-batches).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// EMA decay of the update (0 when skipped).
    pub ema_decay: f64,
    /// Images consumed.
    pub images: usize,
    /// Whether weights were updated (false for a non-finite loss or gradient).
    pub applied: bool,
}

/// The data side of a step.
pub(crate) struct StepData<'a> {
    pub dataset: &'a ImageDataset,
    pub batcher: &'a ImageBatcher,
    pub order: &'a mut DataOrder,
}

/// Runs optimizer step `step` (0-based) at learning rate `lr`. Every random draw depends only
/// on `(config.seed, step)`: the backend RNG (dropout) is reseeded here, and the host RNG of
/// each micro-batch is derived from the same pair.
pub(crate) fn optimizer_step<B: AutodiffBackend>(
    config: &TrainConfig,
    objective: &DiffusionObjective,
    data: StepData<'_>,
    (model, ema, optim): (UNet<B>, UNet<B::InnerBackend>, &mut TrainOptimizer<B>),
    step: usize,
    lr: f64,
    device: &B::Device,
) -> (UNet<B>, UNet<B::InnerBackend>, StepOutcome) {
    B::seed(device, step_seed(config.seed, step, 0));
    let accum = config.grad_accum_steps;
    let mut accumulator = GradientsAccumulator::<UNet<B>>::new();
    let mut single = None;
    let mut loss_sum = 0.0;
    let mut images = 0;
    for micro in 0..accum {
        let index = (step * accum + micro) as u64;
        let batch = data
            .order
            .batch_for_step::<B, _>(index, data.dataset, data.batcher, device);
        images += batch.images.dims()[0];
        let mut rng = micro_batch_rng(config.seed, step, micro);
        let mut loss = objective.loss(&model, batch.images, batch.labels, &mut rng); // [1]
        if accum > 1 {
            loss = loss.div_scalar(accum as f64);
        }
        loss_sum += loss.clone().into_scalar().elem::<f64>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        if accum == 1 {
            single = Some(grads);
        } else {
            accumulator.accumulate(&model, grads);
        }
    }
    let grads = single.unwrap_or_else(|| accumulator.grads());
    let (grads, grad_norm) = clip_grad_norm(&model, grads, config.optimizer.grad_clip_norm);
    let mut outcome = StepOutcome {
        loss: loss_sum,
        grad_norm,
        ema_decay: 0.0,
        images,
        applied: false,
    };
    if !(loss_sum.is_finite() && grad_norm.is_finite()) {
        return (model, ema, outcome);
    }
    let model = optim.step(lr, model, grads);
    outcome.ema_decay = config.ema.decay_at(step + 1);
    let ema = ema_update(ema, &model, outcome.ema_decay);
    outcome.applied = true;
    (model, ema, outcome)
}
