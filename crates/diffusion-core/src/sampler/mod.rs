//! Reverse-process samplers behind one [`Sampler`] trait, one file each, plus the shared
//! timestep spacing and a serialisable [`SamplerConfig`] that builds any of them.
//!
//! # Notation
//!
//! Every sampler uses the same names for the same things:
//! - `t` is the current timestep, `timesteps()[step_index]`: where the state `x_t` sits and
//!   what the model was evaluated at. (DPM-Solver's paper and diffusers' DPM-Solver code
//!   call it `s`, `s0`, and use `t` for the target; here it is `t` in every file.)
//! - `prev` is the timestep the step lands on, smaller than `t`: the next entry of
//!   `timesteps()` (DDIM's `fixed_stride`: `t - T // num_steps`), or clean data after the
//!   last step. diffusers calls it `prev_t` / `prev_timestep`.
//! - The schedule's numbers for the jump, `alpha_bar_t`, `alpha_bar_prev`, the jump's `beta`,
//!   the posterior variance and mean coefficients, are one [`Transition`](crate::Transition)
//!   from [`NoiseSchedule::transition(t, prev)`](crate::NoiseSchedule::transition), built for every
//!   step when the sampler is.
//!
//! Each sampler's file opens with a table of its names, the paper's symbols and diffusers'
//! names, and its `step` follows diffusers' `step` in order.

mod config;
mod ddim;
mod ddpm;
mod dpm_solver;
mod euler;
mod euler_ancestral;
mod heun;
mod sigmas;
mod spacing;
mod unipc;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod oracle_tests;

use burn::tensor::{Tensor, backend::Backend};

pub use config::{SAMPLER_NAMES, SamplerConfig};
pub use ddim::{Ddim, DdimConfig};
pub use ddpm::{Ddpm, DdpmConfig, DdpmVariance};
pub use dpm_solver::{DpmAlgorithm, DpmSolver, DpmSolverConfig};
pub use euler::Euler;
pub use heun::Heun;
pub use sigmas::SigmaConfig;
pub use spacing::TimestepSpacing;
pub use unipc::{UniPc, UniPcConfig, UniPcVariant};

use crate::{NoiseSource, PredictionType};

/// One reverse-process solver: walks `x_t` from `timesteps()[0]` down to clean data, `step`
/// called once per model evaluation (once per step but for Heun, twice).
///
/// Multistep solvers keep their history inside the struct; calling `step` with index 0
/// starts a new trajectory.
pub trait Sampler<B: Backend> {
    /// The training timesteps visited, decreasing (strictly but for Karras sigmas rounded to
    /// the same timestep at many steps), each in `0..T`: where each step
    /// starts. For the samplers that evaluate the model between training timesteps (Karras
    /// sigmas, Euler's linspace) these are the nearest integer timesteps; what the model is
    /// given is [`Sampler::model_timesteps`].
    fn timesteps(&self) -> &[usize];

    /// The timestep of every model evaluation, in order: `step` is called once per entry with
    /// the model's output at it. Fractional where the sampler evaluates between training
    /// timesteps; longer than [`Sampler::timesteps`] for a second-order sampler that evaluates
    /// twice per step (Heun). Defaults to `timesteps()`.
    fn model_timesteps(&self) -> Vec<f64> {
        self.timesteps().iter().map(|&t| t as f64).collect()
    }

    /// `alpha_bar` of the state that evaluation `eval_index` is given: the noise level `x`
    /// sits at (`x = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps`). `eval_index == 0` is
    /// the start; `eval_index == model_timesteps().len()` the returned result (1 for clean
    /// data). Inpainting re-noises the known region to these levels; img2img noises a user's
    /// image to the first.
    fn state_alpha_bar(&self, eval_index: usize) -> f64;

    /// What the model's output means.
    fn prediction_type(&self) -> PredictionType;

    /// Forgets any multistep history.
    fn reset(&mut self) {}

    /// Moves `x_t`, the state given to evaluation `step_index` (at `model_timesteps()[step_index]`),
    /// on to the next state (clean data after the last), given the model's output at it.
    ///
    /// # Shapes
    /// - `model_output`, `x_t`: `[batch, channels, height, width]`
    /// - returns: `[batch, channels, height, width]`
    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        step_index: usize,
        x_t: Tensor<B, 4>,
        noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError>;
}

/// Why a sampler could not be built or stepped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    /// A configuration value lies outside its allowed range.
    #[error("invalid sampler `{field}` = {value}: must be {allowed}")]
    OutOfRange {
        /// The config field.
        field: &'static str,
        /// The rejected value, printed.
        value: String,
        /// The allowed range, in words.
        allowed: String,
    },
    /// An option was set that the chosen sampler does not use.
    #[error("the {sampler} sampler does not use `{option}`")]
    NotUsed {
        /// The option, as the config field or flag is named.
        option: &'static str,
        /// The sampler's name.
        sampler: &'static str,
    },
    /// `step` was called past the end of the timestep list.
    #[error("step index {index} is out of range for a sampler with {len} steps")]
    StepIndex {
        /// The index asked for.
        index: usize,
        /// The number of steps.
        len: usize,
    },
    /// A multistep solver was stepped out of order.
    #[error(
        "multistep sampler expected step {expected}, got {got}: run steps in order or restart at 0"
    )]
    OutOfOrder {
        /// The step that should come next.
        expected: usize,
        /// The step that was asked for.
        got: usize,
    },
    /// The labels do not match the batch.
    #[error("`labels` has {got} entries for a batch of {expected}")]
    LabelBatch {
        /// The batch size of `x_t`.
        expected: usize,
        /// The number of labels.
        got: usize,
    },
}

pub(crate) fn out_of_range(
    field: &'static str,
    value: impl ToString,
    allowed: impl Into<String>,
) -> SamplerError {
    SamplerError::OutOfRange {
        field,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// Keeps the timesteps `<= start_t`, so that sampling can begin from a partly noised real
/// image (SDEdit-style; diffusers' img2img `strength`). The caller noises the image at the
/// first remaining timestep.
pub(crate) fn truncate_to_start(
    timesteps: Vec<usize>,
    start_t: Option<usize>,
    num_train_timesteps: usize,
) -> Result<Vec<usize>, SamplerError> {
    let Some(start_t) = start_t else {
        return Ok(timesteps);
    };
    if start_t >= num_train_timesteps {
        return Err(out_of_range(
            "start_t",
            start_t,
            format!("in 0..{num_train_timesteps} (below the schedule's num_timesteps)"),
        ));
    }
    let kept: Vec<usize> = timesteps.into_iter().filter(|t| *t <= start_t).collect();
    if kept.is_empty() {
        return Err(out_of_range(
            "start_t",
            start_t,
            "at least the smallest timestep of the sampler's spacing",
        ));
    }
    Ok(kept)
}

/// [`Sampler::state_alpha_bar`] of a sampler whose step `i` is `transitions[i]`.
pub(crate) fn transitions_alpha_bar(transitions: &[crate::Transition], eval_index: usize) -> f64 {
    match transitions.get(eval_index) {
        Some(tr) => tr.alpha_bar_t,
        None => transitions.last().map_or(1.0, |tr| tr.alpha_bar_prev),
    }
}

/// Checks that a multistep sampler is stepped in order: `true` when `step_index` is 0 (a new
/// trajectory: the caller forgets its history), an error unless it is `next_step` otherwise.
pub(crate) fn check_multistep(
    step_index: usize,
    next_step: usize,
    len: usize,
) -> Result<bool, SamplerError> {
    check_step(step_index, len)?;
    if step_index == 0 {
        Ok(true)
    } else if step_index == next_step {
        Ok(false)
    } else {
        Err(SamplerError::OutOfOrder {
            expected: next_step,
            got: step_index,
        })
    }
}

/// The clip of a config's `clip_sample` / `clip_sample_range`: `None` when off, an error for a
/// range that is not finite and > 0.
pub(crate) fn check_clip(clip_sample: bool, range: f64) -> Result<Option<f64>, SamplerError> {
    if !clip_sample {
        return Ok(None);
    }
    if !(range.is_finite() && range > 0.0) {
        return Err(out_of_range("clip_sample_range", range, "finite and > 0"));
    }
    Ok(Some(range))
}

/// `x0` clamped to `[-range, range]`, or as it is.
pub(crate) fn clip_x0<B: Backend>(x0: Tensor<B, 4>, clip: Option<f64>) -> Tensor<B, 4> {
    match clip {
        Some(range) => x0.clamp(-range, range),
        None => x0,
    }
}

/// Checks a step index against the timestep list.
pub(crate) fn check_step(step_index: usize, len: usize) -> Result<(), SamplerError> {
    if step_index < len {
        Ok(())
    } else {
        Err(SamplerError::StepIndex {
            index: step_index,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_timesteps_at_or_below_start() {
        let ts: Vec<usize> = (0..1000).rev().collect();
        let kept = truncate_to_start(ts.clone(), Some(50), 1000).unwrap();
        assert_eq!(kept, (0..=50).rev().collect::<Vec<_>>());
        assert_eq!(truncate_to_start(ts.clone(), None, 1000).unwrap(), ts);
        let sparse = vec![980, 960, 40, 20, 0];
        assert_eq!(
            truncate_to_start(sparse, Some(50), 1000).unwrap(),
            vec![40, 20, 0]
        );
    }

    #[test]
    fn truncation_rejects_bad_start() {
        let err = truncate_to_start(vec![3, 2, 1], Some(1000), 1000).unwrap_err();
        assert!(err.to_string().contains("start_t"), "{err}");
        let err = truncate_to_start(vec![3, 2, 1], Some(0), 1000).unwrap_err();
        assert!(err.to_string().contains("start_t"), "{err}");
    }

    #[test]
    fn step_index_past_the_end_is_an_error() {
        assert!(check_step(2, 3).is_ok());
        assert_eq!(
            check_step(3, 3),
            Err(SamplerError::StepIndex { index: 3, len: 3 })
        );
    }
}
