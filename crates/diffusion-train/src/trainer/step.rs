//! One optimizer step: micro-batches, backward, accumulation, global-norm clipping, AdamW, EMA.

use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::backend::AutodiffBackend;
use diffusion_nets::UNet;

use crate::checkpoint::TrainOptimizer;
use crate::data::{DataOrder, ImageBatcher, ImageDataset};
use crate::objective::DiffusionObjective;
use crate::seeds::{micro_batch_rng, step_seed};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::all_finite;
    use crate::tests::{TestAutodiff, flat, tiny_dataset, tiny_train_config};
    use burn::module::AutodiffModule;

    fn run_step(
        config: &TrainConfig,
        model: UNet<TestAutodiff>,
        step: usize,
    ) -> (
        UNet<TestAutodiff>,
        UNet<crate::tests::TestBackend>,
        StepOutcome,
        usize,
    ) {
        let device = Default::default();
        let dataset = tiny_dataset();
        let batcher = config.data.batcher(&dataset, config.seed);
        let mut order = DataOrder::new(config.seed, 12, config.batch_size).unwrap();
        let schedule = config.schedule.init().unwrap();
        let objective = DiffusionObjective::new(
            schedule,
            config.prediction_type,
            config.loss_weighting,
            config.p_uncond,
            config.model.num_classes,
        )
        .unwrap();
        let ema = model.valid();
        let mut optim = config.optimizer.to_burn().init();
        let data = StepData {
            dataset: &dataset,
            batcher: &batcher,
            order: &mut order,
        };
        let (model, ema, outcome) = optimizer_step(
            config,
            &objective,
            data,
            (model, ema, &mut optim),
            step,
            1e-3,
            &device,
        );
        let moments = optim.to_record().len();
        (model, ema, outcome, moments)
    }

    #[test]
    fn a_finite_step_updates_weights_optimizer_and_ema() {
        let config = tiny_train_config().with_grad_accum_steps(2);
        let model = config
            .model
            .init::<TestAutodiff>(&Default::default())
            .unwrap();
        all_finite(&model);
        let before = flat(&model);
        let (model, ema, outcome, moments) = run_step(&config, model, 5);
        assert!(outcome.applied && outcome.loss.is_finite() && outcome.grad_norm > 0.0);
        assert_eq!(outcome.images, 8, "two micro-batches of 4");
        assert_eq!(outcome.ema_decay, config.ema.decay_at(6));
        let after = flat(&model);
        assert_ne!(before, after);
        assert!(moments > 0);
        // ema = decay * before + (1 - decay) * after
        let d = outcome.ema_decay as f32;
        for ((e, b), a) in flat(&ema).iter().zip(&before).zip(&after) {
            assert!((e - (d * b + (1.0 - d) * a)).abs() < 1e-5);
        }
    }

    #[test]
    fn a_non_finite_loss_leaves_everything_untouched() {
        let config = tiny_train_config();
        let mut model = config
            .model
            .init::<TestAutodiff>(&Default::default())
            .unwrap();
        model.conv_out.weight = model.conv_out.weight.map(|w| w.mul_scalar(f32::NAN));
        let before = flat(&model);
        let (model, ema, outcome, moments) = run_step(&config, model, 0);
        assert!(!outcome.applied && !outcome.loss.is_finite());
        assert_eq!(outcome.ema_decay, 0.0);
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same(&flat(&model), &before));
        assert!(same(&flat(&ema), &before));
        assert_eq!(moments, 0, "no optimizer state was created");
    }
}
