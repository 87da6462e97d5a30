//! The denoising objective of one micro-batch: draw `t` and `eps`, noise the images, drop labels
//! for classifier-free guidance, predict, and weigh the squared error per timestep.
//!
//! All randomness comes from a host [`NoiseRng`] whose seed is a pure function of
//! `(seed, step, micro-batch)` ([`crate::seeds::micro_batch_rng`]), so a resumed run draws
//! exactly what an uninterrupted one would, on any backend.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use diffusion_core::forward::gather_per_timestep;
use diffusion_core::{
    LossWeighting, NoiseRng, NoiseSchedule, PredictionType, q_sample, sample_timesteps,
};
use diffusion_nets::UNet;

use crate::TrainError;

/// What stays fixed during a run: schedule, prediction type, loss weights, label dropping.
#[derive(Debug, Clone)]
pub struct DiffusionObjective {
    schedule: NoiseSchedule,
    prediction: PredictionType,
    /// `None` for uniform weighting, which skips the multiply.
    weights: Option<Vec<f64>>,
    p_uncond: f64,
    null_class: Option<usize>,
}

impl DiffusionObjective {
    /// The objective for `schedule`; `num_classes` is the net's (its null class is
    /// `num_classes`), `p_uncond` the label-drop probability.
    pub fn new(
        schedule: NoiseSchedule,
        prediction: PredictionType,
        weighting: LossWeighting,
        p_uncond: f64,
        num_classes: Option<usize>,
    ) -> Result<Self, TrainError> {
        let weights = match weighting {
            LossWeighting::Uniform => None,
            other => Some(other.table(&schedule, prediction)?),
        };
        Ok(Self {
            schedule,
            prediction,
            weights,
            p_uncond,
            null_class: num_classes,
        })
    }

    /// The schedule.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Draws the noise and timesteps from `rng` and returns the weighted mean squared error of
    /// the network against the target of the prediction type.
    ///
    /// # Shapes
    /// - `x0`: `[batch, channels, height, width]`, in [-1, 1]
    /// - `labels`: `[batch]`, ignored by unconditional nets
    /// - returns: `[1]`
    pub fn loss<B: Backend>(
        &self,
        model: &UNet<B>,
        x0: Tensor<B, 4>,
        labels: Tensor<B, 1, Int>,
        rng: &mut NoiseRng,
    ) -> Tensor<B, 1> {
        let device = x0.device();
        let dims = x0.dims();
        let batch = dims[0];
        let t = sample_timesteps::<B>(rng, batch, &self.schedule, &device); // [batch]
        let noise = rng.gaussian_tensor::<B, 4>(dims, &device); // [batch, ch, h, w]
        let labels = self
            .null_class
            .map(|null| self.drop_labels(labels, null, rng));
        let x_t = q_sample(&self.schedule, x0.clone(), noise.clone(), t.clone());
        let output = model.forward(x_t, t.clone(), labels); // [batch, ch, h, w]
        let target = self.prediction.target(&self.schedule, x0, noise, t.clone());
        let per_element = (output - target)
            .powi_scalar(2)
            .reshape([batch as i32, -1])
            .mean_dim(1)
            .reshape([batch]); // [batch]
        match &self.weights {
            None => per_element.mean(),
            Some(table) => {
                let weights = gather_per_timestep::<B>(table, t).reshape([batch]); // [batch]
                (per_element * weights).mean()
            }
        }
    }

    /// Replaces each label by `null` with probability `p_uncond` (a host-side coin per element,
    /// so no label is read back from the device).
    fn drop_labels<B: Backend>(
        &self,
        labels: Tensor<B, 1, Int>,
        null: usize,
        rng: &mut NoiseRng,
    ) -> Tensor<B, 1, Int> {
        if self.p_uncond <= 0.0 {
            return labels;
        }
        let [batch] = labels.dims();
        let drop: Vec<bool> = (0..batch).map(|_| rng.uniform() < self.p_uncond).collect();
        let mask =
            Tensor::<B, 1, Bool>::from_data(TensorData::new(drop, [batch]), &labels.device());
        labels.mask_fill(mask, null as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{TestBackend, tiny_unet_config};
    use diffusion_core::ScheduleConfig;

    fn objective(weighting: LossWeighting, p_uncond: f64) -> DiffusionObjective {
        let schedule = ScheduleConfig::new()
            .with_num_timesteps(100)
            .init()
            .unwrap();
        DiffusionObjective::new(
            schedule,
            PredictionType::Epsilon,
            weighting,
            p_uncond,
            Some(3),
        )
        .unwrap()
    }

    #[test]
    fn label_drop_rate_follows_p_uncond() {
        let device = Default::default();
        let objective = objective(LossWeighting::Uniform, 0.25);
        let labels = Tensor::<TestBackend, 1, Int>::zeros([4000], &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        let dropped = objective.drop_labels(labels, 3, &mut rng);
        let values = dropped
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        assert!(values.iter().all(|v| *v == 0 || *v == 3));
        let rate = values.iter().filter(|v| **v == 3).count() as f64 / 4000.0;
        // standard error sqrt(0.25 * 0.75 / 4000) ~ 0.007
        assert!((rate - 0.25).abs() < 0.03, "rate {rate}");
    }

    /// With an exact x0 = 0 dataset and a zero-output network, the eps loss is E[eps^2] = 1
    /// and min-SNR weights scale it by the mean weight of the drawn timesteps.
    #[test]
    fn loss_is_the_weighted_mse_against_the_target() {
        let device = Default::default();
        let mut model = tiny_unet_config(Some(3))
            .init::<TestBackend>(&device)
            .unwrap();
        // zero the output conv so that the network predicts exactly 0
        model.conv_out.weight = model.conv_out.weight.map(|w| w.zeros_like());
        if let Some(bias) = model.conv_out.bias.take() {
            model.conv_out.bias = Some(bias.map(|b| b.zeros_like()));
        }
        let x0 = Tensor::<TestBackend, 4>::zeros([64, 1, 8, 8], &device);
        let labels = Tensor::<TestBackend, 1, Int>::zeros([64], &device);
        let uniform = objective(LossWeighting::Uniform, 0.0);
        let loss = uniform
            .loss(
                &model,
                x0.clone(),
                labels.clone(),
                &mut NoiseRng::seed_from_u64(1),
            )
            .into_scalar() as f64;
        let mut rng = NoiseRng::seed_from_u64(1);
        let _t = rng.timesteps(64, 100);
        let eps = rng.gaussian_vec(64 * 64);
        let expected = eps.iter().map(|e| (*e as f64).powi(2)).sum::<f64>() / eps.len() as f64;
        assert!((loss - expected).abs() < 1e-4, "{loss} vs {expected}");

        let min_snr = objective(LossWeighting::MinSnr { gamma: 5.0 }, 0.0);
        let weighted = min_snr
            .loss(&model, x0, labels, &mut NoiseRng::seed_from_u64(1))
            .into_scalar() as f64;
        let table = LossWeighting::MinSnr { gamma: 5.0 }
            .table(min_snr.schedule(), PredictionType::Epsilon)
            .unwrap();
        let mut rng = NoiseRng::seed_from_u64(1);
        let t = rng.timesteps(64, 100);
        let eps = rng.gaussian_vec(64 * 64);
        let expected = (0..64)
            .map(|b| {
                let mse = eps[b * 64..(b + 1) * 64]
                    .iter()
                    .map(|e| (*e as f64).powi(2))
                    .sum::<f64>()
                    / 64.0;
                mse * table[t[b]]
            })
            .sum::<f64>()
            / 64.0;
        assert!(
            (weighted - expected).abs() < 1e-4,
            "{weighted} vs {expected}"
        );
    }
}
