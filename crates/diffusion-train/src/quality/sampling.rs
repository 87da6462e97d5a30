//! Images from a trained network in batches, exactly as `diffusion-cli sample` draws them: the
//! same seed and batch size give the same images.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use diffusion_core::{
    Conditioning, GuidanceConfig, NoiseRng, NoiseSchedule, SamplerConfig, sample_loop,
};
use diffusion_nets::UNet;

use crate::{TrainConfig, TrainError};

/// How many images to draw, with which sampler and noise.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSpec {
    /// The sampler and its steps.
    pub sampler: SamplerConfig,
    /// Images in all.
    pub num: usize,
    /// Images per forward pass.
    pub batch_size: usize,
    /// Seed of the starting noise and of stochastic samplers.
    pub seed: u64,
    /// Classifier-free guidance scale for conditional models (1: none).
    pub guidance: f64,
}

/// Labels for `n` images of a conditional model: all classes in turn (`None` without classes).
pub fn class_labels(num_classes: Option<usize>, n: usize) -> Option<Vec<usize>> {
    num_classes
        .filter(|&k| k > 0)
        .map(|k| (0..n).map(|i| i % k).collect())
}

/// The conditioning of a batch: labels, with classifier-free guidance unless `scale` is 1.
pub fn conditioning<B: Backend>(
    labels: Option<&[usize]>,
    num_classes: Option<usize>,
    scale: f64,
    device: &B::Device,
) -> Conditioning<B> {
    match (labels, num_classes) {
        (Some(labels), Some(k)) => {
            let ids: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            let labels = Tensor::<B, 1, Int>::from_data(ids.as_slice(), device);
            if scale == 1.0 {
                Conditioning::Labels(labels)
            } else {
                Conditioning::Guided {
                    labels,
                    guidance: GuidanceConfig::new(k).with_scale(scale),
                }
            }
        }
        _ => Conditioning::Unconditional,
    }
}

/// Samples `spec.num` images from `model` in batches of `spec.batch_size` and hands each batch
/// (`[n, channels, size, size]` in `[-1, 1]`) to `sink` with the labels it was asked for.
/// `progress(done)` is called after every model evaluation with the images done so far,
/// counting the current batch by the fraction of its evaluations made (a progress bar moves
/// during a 1000-step DDPM batch too).
#[allow(clippy::too_many_arguments)]
pub fn sample_in_batches<B: Backend>(
    model: &UNet<B>,
    config: &TrainConfig,
    schedule: &NoiseSchedule,
    spec: &SampleSpec,
    labels: Option<&[usize]>,
    device: &B::Device,
    sink: &mut dyn FnMut(Tensor<B, 4>, Option<&[usize]>) -> Result<(), TrainError>,
    progress: &mut dyn FnMut(usize),
) -> Result<(), TrainError> {
    if spec.num == 0 || spec.batch_size == 0 {
        return Err(TrainError::invalid(
            "eval",
            "the number of images and the batch size must be at least 1",
        ));
    }
    let mut sampler = spec.sampler.init::<B>(schedule, config.prediction_type)?;
    let evaluations = sampler.model_timesteps().len();
    let (c, size) = (config.model.in_channels, config.model.image_size);
    let mut rng = NoiseRng::seed_from_u64(spec.seed);
    for start in (0..spec.num).step_by(spec.batch_size) {
        let n = spec.batch_size.min(spec.num - start);
        let x_t = rng.gaussian_tensor::<B, 4>([n, c, size, size], device);
        let chunk = labels.map(|l| &l[start..start + n]);
        let cond = conditioning::<B>(chunk, config.model.num_classes, spec.guidance, device);
        let x0 = sample_loop(model, sampler.as_mut(), x_t, &cond, &mut rng, |i, _, _| {
            progress(start + n * (i + 1) / evaluations)
        })?;
        sink(x0, chunk)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_moves_every_evaluation_and_ends_at_every_image() {
        use crate::tests::{TestBackend, tiny_train_config};
        use diffusion_core::{ScheduleConfig, SigmaConfig};
        let device = Default::default();
        let config = tiny_train_config();
        let model = config.model.init::<TestBackend>(&device).unwrap();
        let schedule = ScheduleConfig::new().init().unwrap();
        // Heun with 3 steps: 5 evaluations per batch; 7 images in batches of 4 and 3.
        let spec = SampleSpec {
            sampler: SamplerConfig::Heun(SigmaConfig::new().with_num_steps(3)),
            num: 7,
            batch_size: 4,
            seed: 0,
            guidance: 1.0,
        };
        let labels = class_labels(config.model.num_classes, spec.num);
        let (mut seen, mut batches) = (Vec::new(), 0);
        sample_in_batches(
            &model,
            &config,
            &schedule,
            &spec,
            labels.as_deref(),
            &device,
            &mut |images, _| {
                batches += images.dims()[0];
                Ok(())
            },
            &mut |done| seen.push(done),
        )
        .unwrap();
        assert_eq!(batches, 7);
        assert_eq!(seen, vec![0, 1, 2, 3, 4, 4, 5, 5, 6, 7]);
    }

    #[test]
    fn labels_cycle_through_the_classes() {
        assert_eq!(class_labels(Some(3), 7), Some(vec![0, 1, 2, 0, 1, 2, 0]));
        assert_eq!(class_labels(None, 4), None);
    }
}
