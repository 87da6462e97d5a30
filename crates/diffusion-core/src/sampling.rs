//! The sampling loop, in the open: evaluate the denoiser, let the sampler step, report.
//! Users who need something else (inpainting, custom guidance) copy these twenty lines.

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::forward::{q_sample, timesteps_tensor};
use crate::guidance::{GuidanceConfig, guide};
use crate::{Denoiser, NoiseRng, NoiseSchedule, NoiseSource, Sampler, SamplerError};

/// What the denoiser is conditioned on.
#[derive(Debug, Clone)]
pub enum Conditioning<B: Backend> {
    /// No labels (an unconditional model, or the null class implied).
    Unconditional,
    /// One class label per batch element, no guidance.
    Labels(Tensor<B, 1, Int>),
    /// Classifier-free guidance towards `labels`: each step evaluates the conditional and
    /// null-label predictions in one batch of `2 * batch`.
    Guided {
        /// One class label per batch element.
        labels: Tensor<B, 1, Int>,
        /// Scale and null class.
        guidance: GuidanceConfig,
    },
}

/// Evaluates the denoiser once at a shared timestep `t`, applying the conditioning.
///
/// # Shapes
/// - `x_t`: `[batch, channels, height, width]`
/// - returns: `[batch, channels, height, width]`
pub fn denoise_once<B: Backend, D: Denoiser<B> + ?Sized>(
    denoiser: &D,
    x_t: Tensor<B, 4>,
    t: usize,
    conditioning: &Conditioning<B>,
) -> Tensor<B, 4> {
    let device = x_t.device();
    let batch = x_t.dims()[0];
    match conditioning {
        Conditioning::Unconditional => {
            denoiser.denoise(x_t, timesteps_tensor(&vec![t; batch], &device), None)
        }
        Conditioning::Labels(labels) => denoiser.denoise(
            x_t,
            timesteps_tensor(&vec![t; batch], &device),
            Some(labels.clone()),
        ),
        Conditioning::Guided { labels, guidance } => {
            let (both_x, both_labels) = guided_batch(x_t, labels, guidance);
            let both_t = timesteps_tensor(&vec![t; 2 * batch], &device); // [2 * batch]
            let both = denoiser.denoise(both_x, both_t, Some(both_labels)); // [2 * batch, ch, h, w]
            split_guided(both, batch, guidance)
        }
    }
}

/// [`denoise_once`] at a possibly fractional timestep, through [`Denoiser::denoise_at`]; the
/// sampling loop calls this with [`Sampler::model_timesteps`].
///
/// # Shapes
/// - `x_t`: `[batch, channels, height, width]`
/// - returns: `[batch, channels, height, width]`
pub fn denoise_once_at<B: Backend, D: Denoiser<B> + ?Sized>(
    denoiser: &D,
    x_t: Tensor<B, 4>,
    t: f64,
    conditioning: &Conditioning<B>,
) -> Tensor<B, 4> {
    let batch = x_t.dims()[0];
    match conditioning {
        Conditioning::Unconditional => denoiser.denoise_at(x_t, t, None),
        Conditioning::Labels(labels) => denoiser.denoise_at(x_t, t, Some(labels.clone())),
        Conditioning::Guided { labels, guidance } => {
            let (both_x, both_labels) = guided_batch(x_t, labels, guidance);
            let both = denoiser.denoise_at(both_x, t, Some(both_labels)); // [2 * batch, ch, h, w]
            split_guided(both, batch, guidance)
        }
    }
}

/// The batch of classifier-free guidance: `x_t` twice, with the labels and then the null class.
///
/// # Shapes
/// - `x_t`: `[batch, channels, height, width]`, `labels`: `[batch]`
/// - returns: `[2 * batch, channels, height, width]` and `[2 * batch]`
fn guided_batch<B: Backend>(
    x_t: Tensor<B, 4>,
    labels: &Tensor<B, 1, Int>,
    guidance: &GuidanceConfig,
) -> (Tensor<B, 4>, Tensor<B, 1, Int>) {
    let batch = x_t.dims()[0];
    let null = Tensor::<B, 1, Int>::full([batch], guidance.null_label as i64, &x_t.device());
    let both_labels = Tensor::cat(vec![labels.clone(), null], 0); // [2 * batch]
    let both_x = Tensor::cat(vec![x_t.clone(), x_t], 0); // [2 * batch, ch, h, w]
    (both_x, both_labels)
}

/// Combines the conditional (first half) and null-label (second half) predictions.
fn split_guided<B: Backend>(
    both: Tensor<B, 4>,
    batch: usize,
    guidance: &GuidanceConfig,
) -> Tensor<B, 4> {
    let cond = both.clone().slice(0..batch);
    let uncond = both.slice(batch..2 * batch);
    guide(cond, uncond, guidance.scale)
}

fn check_conditioning<B: Backend>(
    conditioning: &Conditioning<B>,
    batch: usize,
) -> Result<(), SamplerError> {
    let labels = match conditioning {
        Conditioning::Unconditional => return Ok(()),
        Conditioning::Labels(labels) => labels,
        Conditioning::Guided { labels, guidance } => {
            guidance.validate()?;
            labels
        }
    };
    let [got] = labels.dims();
    if got != batch {
        return Err(SamplerError::LabelBatch {
            expected: batch,
            got,
        });
    }
    Ok(())
}

/// Runs the reverse process from `x_t` at `sampler.timesteps()[0]` (pure noise `x_T`, or a
/// noised real image, see [`noised_start`]) to clean data.
///
/// `on_step(eval_index, t, &x)` is called after every model evaluation's step with the
/// timestep just denoised from (rounded, for the samplers that evaluate between training
/// timesteps) and the new state (diffusers' `callback_on_step_end` convention); GIF frames of the
/// reverse process come from it. The returned tensor is the state after the last step.
///
/// # Shapes
/// - `x_t`: `[batch, channels, height, width]`
/// - returns: `[batch, channels, height, width]`
pub fn sample_loop<B, D, S>(
    denoiser: &D,
    sampler: &mut S,
    x_t: Tensor<B, 4>,
    conditioning: &Conditioning<B>,
    noise: &mut dyn NoiseSource<B>,
    mut on_step: impl FnMut(usize, usize, &Tensor<B, 4>),
) -> Result<Tensor<B, 4>, SamplerError>
where
    B: Backend,
    D: Denoiser<B> + ?Sized,
    S: Sampler<B> + ?Sized,
{
    check_conditioning(conditioning, x_t.dims()[0])?;
    sampler.reset();
    let model_timesteps = sampler.model_timesteps();
    let mut x = x_t;
    for (eval_index, &t) in model_timesteps.iter().enumerate() {
        let model_output = denoise_once_at(denoiser, x.clone(), t, conditioning);
        x = sampler.step(model_output, eval_index, x, noise)?;
        on_step(eval_index, t.round() as usize, &x);
    }
    Ok(x)
}

/// Noises clean images `x0` to the sampler's first timestep, so that [`sample_loop`] can
/// denoise them from there (the "start at t = 50" experiments).
///
/// # Shapes
/// - `x0`: `[batch, channels, height, width]`
/// - returns: `[batch, channels, height, width]`
pub fn noised_start<B: Backend, S: Sampler<B> + ?Sized>(
    schedule: &NoiseSchedule,
    sampler: &S,
    x0: Tensor<B, 4>,
    rng: &mut NoiseRng,
) -> Tensor<B, 4> {
    let device = x0.device();
    let dims = x0.dims();
    let noise = rng.gaussian_tensor(dims, &device);
    match sampler.timesteps().first() {
        // On the training grid: the schedule's own tables, exactly as in training.
        Some(&start) if sampler.model_timesteps()[0] == start as f64 => q_sample(
            schedule,
            x0,
            noise,
            timesteps_tensor(&vec![start; dims[0]], &device),
        ),
        // Between grid points (Karras, linspace sigmas): the sampler's own noise level.
        _ => {
            let alpha_bar = sampler.state_alpha_bar(0);
            x0.mul_scalar(alpha_bar.sqrt()) + noise.mul_scalar((1.0 - alpha_bar).sqrt())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{DdimConfig, DdpmConfig};
    use crate::tests::{TestBackend, assert_close, to_vec};
    use crate::{PredictionType, ScheduleConfig};
    use std::cell::RefCell;

    /// Predicts `x0 = label` (as a float), or `-1` for the null class 10; records its batches.
    struct LabelEcho {
        calls: RefCell<Vec<(usize, Vec<i64>)>>,
    }

    impl Denoiser<TestBackend> for LabelEcho {
        fn denoise(
            &self,
            x_t: Tensor<TestBackend, 4>,
            timesteps: Tensor<TestBackend, 1, Int>,
            labels: Option<Tensor<TestBackend, 1, Int>>,
        ) -> Tensor<TestBackend, 4> {
            let dims = x_t.dims();
            let labels = labels.expect("labels");
            let values: Vec<i64> = labels
                .clone()
                .into_data()
                .convert::<i64>()
                .to_vec()
                .unwrap();
            self.calls
                .borrow_mut()
                .push((timesteps.dims()[0], values.clone()));
            let per_label: Vec<f32> = values
                .iter()
                .map(|l| if *l == 10 { -1.0 } else { *l as f32 })
                .collect();
            Tensor::<TestBackend, 1>::from_floats(per_label.as_slice(), &x_t.device())
                .reshape([dims[0], 1, 1, 1])
                .expand(dims)
        }
    }

    #[test]
    fn guidance_runs_one_batch_of_two_and_extrapolates() {
        let device = Default::default();
        let echo = LabelEcho {
            calls: RefCell::new(Vec::new()),
        };
        let x = Tensor::<TestBackend, 4>::zeros([2, 1, 2, 2], &device);
        let labels = Tensor::<TestBackend, 1, Int>::from_ints([3, 5], &device);
        let conditioning = Conditioning::Guided {
            labels,
            guidance: GuidanceConfig::new(10).with_scale(2.0),
        };
        let out = denoise_once(&echo, x, 7, &conditioning);
        assert_eq!(echo.calls.borrow().as_slice(), &[(4, vec![3, 5, 10, 10])]);
        // uncond + 2 (cond - uncond) = -1 + 2 (label + 1) = 2 label + 1.
        let values = to_vec(out);
        assert!(
            values[..4].iter().all(|v| (*v - 7.0).abs() < 1e-6),
            "{values:?}"
        );
        assert!(
            values[4..].iter().all(|v| (*v - 11.0).abs() < 1e-6),
            "{values:?}"
        );
    }

    #[test]
    fn loop_calls_back_once_per_step_in_order_and_returns_the_last_state() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let mut sampler = DdimConfig::new()
            .with_num_steps(5)
            .with_clip_sample(false)
            .init(&schedule, PredictionType::Sample)
            .unwrap();
        let echo = LabelEcho {
            calls: RefCell::new(Vec::new()),
        };
        let labels = Tensor::<TestBackend, 1, Int>::from_ints([4], &device);
        let mut rng = NoiseRng::seed_from_u64(0);
        let x_t = rng.gaussian_tensor::<TestBackend, 4>([1, 1, 2, 2], &device);
        let mut seen = Vec::new();
        let mut last = None;
        let out = sample_loop(
            &echo,
            &mut sampler,
            x_t,
            &Conditioning::Labels(labels),
            &mut rng,
            |i, t, x| {
                seen.push((i, t));
                last = Some(x.clone());
            },
        )
        .unwrap();
        assert_eq!(seen, vec![(0, 800), (1, 600), (2, 400), (3, 200), (4, 0)]);
        assert_close(out.clone(), last.unwrap(), 0.0);
        // The model always says x0 = 4, and the last DDIM step returns pred_x0.
        assert_close(out, Tensor::full([1, 1, 2, 2], 4.0, &device), 1e-5);
        assert_eq!(echo.calls.borrow().len(), 5);
    }

    #[test]
    fn mismatched_or_missing_labels_are_errors() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let mut sampler = DdpmConfig::new()
            .init(&schedule, PredictionType::Epsilon)
            .unwrap();
        let echo = LabelEcho {
            calls: RefCell::new(Vec::new()),
        };
        let x = Tensor::<TestBackend, 4>::zeros([2, 1, 1, 1], &device);
        let labels = Tensor::<TestBackend, 1, Int>::from_ints([1, 2, 3], &device);
        let err = sample_loop(
            &echo,
            &mut sampler,
            x.clone(),
            &Conditioning::Labels(labels.clone()),
            &mut NoiseRng::seed_from_u64(0),
            |_, _, _| {},
        )
        .unwrap_err();
        assert_eq!(
            err,
            SamplerError::LabelBatch {
                expected: 2,
                got: 3
            }
        );
        let guided = Conditioning::Guided {
            labels: labels.slice(0..2),
            guidance: GuidanceConfig::new(10).with_scale(f64::INFINITY),
        };
        let err = sample_loop(
            &echo,
            &mut sampler,
            x,
            &guided,
            &mut NoiseRng::seed_from_u64(0),
            |_, _, _| {},
        )
        .unwrap_err();
        assert!(err.to_string().contains("guidance scale"), "{err}");
        assert!(
            echo.calls.borrow().is_empty(),
            "errors come before any model call"
        );
    }

    #[test]
    fn noised_start_uses_the_samplers_first_timestep() {
        let device = Default::default();
        let schedule = ScheduleConfig::new().init().unwrap();
        let sampler = DdpmConfig::new()
            .with_start_t(Some(50))
            .init(&schedule, PredictionType::Epsilon)
            .unwrap();
        let x0 = Tensor::<TestBackend, 4>::ones([1, 1, 1, 4], &device);
        let noised = noised_start(&schedule, &sampler, x0, &mut NoiseRng::seed_from_u64(6));
        let z = NoiseRng::seed_from_u64(6).gaussian_vec(4);
        for (value, z) in to_vec(noised).into_iter().zip(z) {
            let expected =
                schedule.sqrt_alpha_bar()[50] + schedule.sqrt_one_minus_alpha_bar()[50] * z as f64;
            assert!((value as f64 - expected).abs() < 1e-6);
        }
    }
}
