//! Noise levels as `sigma = sqrt((1 - alpha_bar) / alpha_bar)`, the variance-exploding view
//! that diffusers' Euler, Heun, DPM-Solver and UniPC schedulers step in, and Karras et al.
//! (2022)'s spacing of them (eq. 5, `rho = 7`).
//!
//! A state at `sigma` is `x_sigma = x0 + sigma * eps` in that view and
//! `x_t = x_sigma / sqrt(1 + sigma^2)` in ours (variance preserving, `alpha_bar = 1 / (1 +
//! sigma^2)`). The samplers here keep `x_t`, so the model always sees what it was trained
//! on (diffusers' `scale_model_input` does the same division).
//!
//! | ours               | Karras et al.     | diffusers                          |
//! |--------------------|-------------------|------------------------------------|
//! | `sigmas[i]`        | `sigma_i`         | `self.sigmas[i]`                   |
//! | `model_timesteps`  | `t_i` (inverse)   | `self.timesteps`                   |
//! | [`sigma_to_t`]     |                   | `_sigma_to_t`                      |
//! | [`karras`]         | eq. 5             | `_convert_to_karras`               |

use burn::config::Config;

use super::spacing::check_num_steps;
use super::{SamplerError, TimestepSpacing, out_of_range};
use crate::NoiseSchedule;

/// Configuration of the Euler, Euler ancestral and Heun samplers: where their sigmas lie.
/// Defaults follow diffusers' `EulerDiscreteScheduler`.
#[derive(Config, Debug, PartialEq)]
pub struct SigmaConfig {
    /// Number of steps, in `1..=T` (Heun evaluates the model `2 n - 1` times).
    #[config(default = 20)]
    pub num_steps: usize,
    /// How the steps' timesteps are picked; linspace is not rounded here (diffusers' Euler).
    #[config(default = "TimestepSpacing::Linspace")]
    pub spacing: TimestepSpacing,
    /// Added to every timestep of leading spacing.
    #[config(default = 0)]
    pub steps_offset: usize,
    /// Karras et al. (2022)'s sigmas (`use_karras_sigmas`) between the spacing's first and
    /// last sigma, equal steps in `sigma^(1/7)`.
    #[config(default = false)]
    pub karras: bool,
    /// Start the reverse process at this timestep instead of the noisiest (`None`); only
    /// steps starting at or below it are run.
    pub start_t: Option<usize>,
    /// Clip the predicted `x0` to `[-clip_sample_range, clip_sample_range]` before each slope
    /// (Heun's `clip_sample` in diffusers; its Euler schedulers have none, the same clip is
    /// offered here). Off by default, as there.
    #[config(default = false)]
    pub clip_sample: bool,
    /// Bound of the clip; finite and > 0.
    #[config(default = 1.0)]
    pub clip_sample_range: f64,
}

impl SigmaConfig {
    /// The sigmas and model timesteps of these settings.
    pub(crate) fn ladder(&self, schedule: &NoiseSchedule) -> Result<Ladder, SamplerError> {
        Ladder::euler(
            schedule,
            self.spacing,
            self.num_steps,
            self.steps_offset,
            self.karras,
        )?
        .start_at(self.start_t, schedule.num_timesteps())
    }
}

/// `sqrt(1 + sigma^2)`: `x_sigma = x_t * scale(sigma)`.
pub(crate) fn scale(sigma: f64) -> f64 {
    (1.0 + sigma * sigma).sqrt()
}

/// `sigma` of every training timestep; a zero terminal `alpha_bar` is floored at `2^-24`
/// as diffusers does, so that the largest sigma stays finite.
pub(crate) fn grid_sigmas(schedule: &NoiseSchedule) -> Vec<f64> {
    schedule
        .alpha_bar()
        .iter()
        .map(|&ab| {
            let ab = if ab == 0.0 { 2f64.powi(-24) } else { ab };
            ((1.0 - ab) / ab).sqrt()
        })
        .collect()
}

/// `alpha_bar` of the state at `sigma`.
pub(crate) fn alpha_bar_of(sigma: f64) -> f64 {
    1.0 / (1.0 + sigma * sigma)
}

/// `numpy.interp(ts, arange(len(grid)), grid)`: linear between the two neighbours, clamped at
/// the ends.
fn interp(t: f64, grid: &[f64]) -> f64 {
    let last = grid.len() - 1;
    if t <= 0.0 {
        return grid[0];
    }
    if t >= last as f64 {
        return grid[last];
    }
    let low = t.floor() as usize;
    let w = t - low as f64;
    grid[low] + w * (grid[low + 1] - grid[low])
}

/// Karras et al.'s `n` sigmas from `sigma_max` down to `sigma_min`: equal steps in
/// `sigma^(1/7)`.
pub(crate) fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    (0..n)
        .map(|i| {
            let ramp = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            (max_inv + ramp * (min_inv - max_inv)).powf(rho)
        })
        .collect()
}

/// The fractional training timestep whose sigma is `sigma`: `ln sigma` interpolated between
/// the two neighbouring timesteps of `log_sigmas` (increasing), as diffusers' `_sigma_to_t`.
pub(crate) fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // The last index whose log sigma is <= ours, at most len - 2.
    let count = log_sigmas.iter().filter(|&&l| log_sigma - l >= 0.0).count();
    let low = count.saturating_sub(1).min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// Where a sigma sampler's steps start and what the model is evaluated at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ladder {
    /// The nearest training timestep of each step's start (for [`super::Sampler::timesteps`]).
    pub timesteps: Vec<usize>,
    /// The timestep each step's model evaluation is given; fractional for Karras sigmas and
    /// Euler's linspace.
    pub model_timesteps: Vec<f64>,
    /// `n + 1` sigmas: each step's start, then 0 (clean data).
    pub sigmas: Vec<f64>,
}

impl Ladder {
    /// Euler and Heun (`EulerDiscreteScheduler.set_timesteps`): the spacing's fractional
    /// timesteps, their sigmas interpolated linearly; with `karras`, Karras sigmas between the
    /// first and last of those and their timesteps by [`sigma_to_t`].
    pub fn euler(
        schedule: &NoiseSchedule,
        spacing: TimestepSpacing,
        num_steps: usize,
        steps_offset: usize,
        karras_sigmas: bool,
    ) -> Result<Self, SamplerError> {
        let grid = grid_sigmas(schedule);
        let ts = spacing.float_timesteps(schedule.num_timesteps(), num_steps, steps_offset)?;
        let sigmas: Vec<f64> = ts.iter().map(|&t| interp(t, &grid)).collect();
        let (model_timesteps, sigmas) = if karras_sigmas {
            let sigmas = karras(sigmas[sigmas.len() - 1], sigmas[0], num_steps);
            let log_sigmas: Vec<f64> = grid.iter().map(|s| s.ln()).collect();
            let ts = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
            (ts, sigmas)
        } else {
            (ts, sigmas)
        };
        Ok(Self::finish(model_timesteps, sigmas))
    }

    /// DPM-Solver++ and UniPC (`DPMSolverMultistepScheduler.set_timesteps`): the solver's
    /// integer timesteps at the schedule's own sigmas; with `karras`, Karras sigmas over the
    /// whole schedule and their timesteps by [`sigma_to_t`], rounded unless rounding would give
    /// two steps the same timestep, in which case they stay fractional. diffusers rounds them
    /// for every beta schedule but `squaredcos_cap_v2`, whose huge terminal sigma crowds the
    /// first steps onto timestep `T - 1`; the rule here gives the same timesteps for its
    /// linear-schedule runs and never feeds one timestep to several noise levels. Steps
    /// starting above `start_t` are dropped ([`Ladder::start_at`]).
    pub fn solver(
        schedule: &NoiseSchedule,
        spacing: TimestepSpacing,
        num_steps: usize,
        steps_offset: usize,
        karras_sigmas: bool,
        start_t: Option<usize>,
    ) -> Result<Self, SamplerError> {
        Self::solver_levels(schedule, spacing, num_steps, steps_offset, karras_sigmas)?
            .start_at(start_t, schedule.num_timesteps())
    }

    /// [`Ladder::solver`] over the whole schedule.
    fn solver_levels(
        schedule: &NoiseSchedule,
        spacing: TimestepSpacing,
        num_steps: usize,
        steps_offset: usize,
        karras_sigmas: bool,
    ) -> Result<Self, SamplerError> {
        let grid = grid_sigmas(schedule);
        let num_train = schedule.num_timesteps();
        if karras_sigmas {
            check_num_steps(num_train, num_steps)?;
            let sigmas = karras(grid[0], grid[num_train - 1], num_steps);
            let log_sigmas: Vec<f64> = grid.iter().map(|s| s.ln()).collect();
            let fractional: Vec<f64> = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
            let rounded: Vec<f64> = fractional.iter().map(|t| t.round_ties_even()).collect();
            let repeats = rounded.windows(2).any(|w| w[1] >= w[0]);
            Ok(Self::finish(
                if repeats { fractional } else { rounded },
                sigmas,
            ))
        } else {
            let ts = spacing.solver_timesteps(num_train, num_steps, steps_offset)?;
            let sigmas = ts.iter().map(|&t| grid[t]).collect();
            Ok(Self::finish(
                ts.into_iter().map(|t| t as f64).collect(),
                sigmas,
            ))
        }
    }

    fn finish(model_timesteps: Vec<f64>, mut sigmas: Vec<f64>) -> Self {
        sigmas.push(0.0);
        let timesteps = model_timesteps
            .iter()
            .map(|t| t.round_ties_even().max(0.0) as usize)
            .collect();
        Self {
            timesteps,
            model_timesteps,
            sigmas,
        }
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.model_timesteps.len()
    }

    /// Drops the steps that start above `start_t` (img2img's partial reverse process).
    pub fn start_at(
        mut self,
        start_t: Option<usize>,
        num_train: usize,
    ) -> Result<Self, SamplerError> {
        let Some(start_t) = start_t else {
            return Ok(self);
        };
        if start_t >= num_train {
            return Err(out_of_range(
                "start_t",
                start_t,
                format!("in 0..{num_train} (below the schedule's num_timesteps)"),
            ));
        }
        let skip = self.timesteps.iter().take_while(|&&t| t > start_t).count();
        if skip == self.len() {
            return Err(out_of_range(
                "start_t",
                start_t,
                "at least the smallest timestep of the sampler's spacing",
            ));
        }
        self.timesteps.drain(..skip);
        self.model_timesteps.drain(..skip);
        self.sigmas.drain(..skip);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScheduleConfig;

    #[test]
    fn sigma_to_t_inverts_the_grid() {
        let schedule = ScheduleConfig::new().init().unwrap();
        let grid = grid_sigmas(&schedule);
        let log_sigmas: Vec<f64> = grid.iter().map(|s| s.ln()).collect();
        for t in [0usize, 1, 17, 500, 998, 999] {
            assert!(
                (sigma_to_t(grid[t], &log_sigmas) - t as f64).abs() < 1e-9,
                "{t}"
            );
        }
        // Halfway in log sigma is halfway in t.
        let mid = ((grid[10].ln() + grid[11].ln()) / 2.0).exp();
        assert!((sigma_to_t(mid, &log_sigmas) - 10.5).abs() < 1e-9);
        // Outside the grid: clamped to the ends.
        assert_eq!(sigma_to_t(1e-6, &log_sigmas), 0.0);
        assert_eq!(sigma_to_t(1e6, &log_sigmas), 999.0);
    }

    #[test]
    fn karras_sigmas_run_from_max_to_min() {
        let s = karras(0.01, 80.0, 5);
        assert!(
            (s[0] - 80.0).abs() < 1e-9 && (s[4] - 0.01).abs() < 1e-12,
            "{s:?}"
        );
        assert!(s.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn ladders_end_at_zero_and_start_at_can_cut_them() {
        let schedule = ScheduleConfig::new().init().unwrap();
        for karras in [false, true] {
            let l = Ladder::euler(&schedule, TimestepSpacing::Linspace, 10, 0, karras).unwrap();
            assert_eq!((l.len(), l.sigmas.len()), (10, 11));
            assert_eq!(*l.sigmas.last().unwrap(), 0.0);
            let cut = l.clone().start_at(Some(500), 1000).unwrap();
            assert!(cut.timesteps[0] <= 500 && cut.len() < 10, "{cut:?}");
            assert_eq!(cut.sigmas.len(), cut.len() + 1);
        }
        let solver =
            Ladder::solver(&schedule, TimestepSpacing::Linspace, 5, 0, false, None).unwrap();
        assert_eq!(solver.timesteps, vec![999, 799, 599, 400, 200]);
        assert!(Ladder::solver(&schedule, TimestepSpacing::Linspace, 0, 0, true, None).is_err());
    }
}
