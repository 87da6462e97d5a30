//! Which of the `T` training timesteps a sampler with `n` steps visits.
//!
//! Leading, trailing and linspace follow diffusers' formulas (`set_timesteps`); quadratic
//! follows the original DDIM code (Song et al. 2021, `skip_type="quad"`). See Lin et al.
//! (2023), Table 2, for why trailing is better at few steps.

use serde::{Deserialize, Serialize};

use super::SamplerError;

/// How `n` inference timesteps are picked out of `0..T`; every result is strictly decreasing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestepSpacing {
    /// `arange(0, n) * (T // n)`, reversed, plus `steps_offset`; ends at the cleanest timestep.
    Leading,
    /// `round(arange(T, 0, -T/n)) - 1`; starts at the noisiest timestep `T - 1`.
    Trailing,
    /// `round(linspace(0, T - 1, n))`, reversed; visits both ends.
    Linspace,
    /// `int(linspace(0, sqrt(0.8 T), n) ** 2)`, reversed; dense near the data.
    Quadratic,
}

/// `numpy.linspace(0, stop, num)`, computed the way numpy does (`i * step`, last set to
/// `stop`), so that ties at .5 round identically.
fn np_linspace(stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![0.0];
    }
    let step = stop / (num - 1) as f64;
    let mut values: Vec<f64> = (0..num).map(|i| i as f64 * step).collect();
    values[num - 1] = stop;
    values
}

/// Rounds half to even, as numpy does.
fn np_round(value: f64) -> i64 {
    value.round_ties_even() as i64
}

fn out_of_range(field: &'static str, value: impl ToString, allowed: String) -> SamplerError {
    SamplerError::OutOfRange {
        field,
        value: value.to_string(),
        allowed,
    }
}

impl TimestepSpacing {
    /// The timesteps of a DDPM or DDIM sampler with `num_steps` steps, as diffusers'
    /// `DDIMScheduler.set_timesteps` (`steps_offset` applies to leading only, as there).
    ///
    /// For trailing with some `n` (61, 103, ... for `T = 1000`) numpy's `arange` returns one
    /// element too many, ending at timestep -1; here exactly `n` values are produced.
    pub fn timesteps(
        self,
        num_train_timesteps: usize,
        num_steps: usize,
        steps_offset: usize,
    ) -> Result<Vec<usize>, SamplerError> {
        check_num_steps(num_train_timesteps, num_steps)?;
        let (t_max, n) = (num_train_timesteps, num_steps);
        let raw: Vec<i64> = match self {
            Self::Leading => {
                let ratio = t_max / n;
                (0..n)
                    .rev()
                    .map(|i| (i * ratio + steps_offset) as i64)
                    .collect()
            }
            Self::Trailing => trailing(t_max, n),
            Self::Linspace => np_linspace((t_max - 1) as f64, n)
                .into_iter()
                .rev()
                .map(np_round)
                .collect(),
            // Python's int() truncates toward zero, as `as` does.
            Self::Quadratic => np_linspace((t_max as f64 * 0.8).sqrt(), n)
                .into_iter()
                .rev()
                .map(|x| (x * x) as i64)
                .collect(),
        };
        finish(self, raw, t_max, n, steps_offset)
    }

    /// The timesteps of the sigma samplers (Euler, Euler ancestral, Heun), as diffusers'
    /// `EulerDiscreteScheduler.set_timesteps`: as [`TimestepSpacing::timesteps`], except that
    /// linspace is not rounded (`linspace(0, T - 1, n)` in float32, reversed), so the model
    /// is evaluated between training timesteps.
    pub fn float_timesteps(
        self,
        num_train_timesteps: usize,
        num_steps: usize,
        steps_offset: usize,
    ) -> Result<Vec<f64>, SamplerError> {
        check_num_steps(num_train_timesteps, num_steps)?;
        match self {
            Self::Linspace => Ok(np_linspace((num_train_timesteps - 1) as f64, num_steps)
                .into_iter()
                .rev()
                .map(|t| t as f32 as f64)
                .collect()),
            _ => Ok(self
                .timesteps(num_train_timesteps, num_steps, steps_offset)?
                .into_iter()
                .map(|t| t as f64)
                .collect()),
        }
    }

    /// The timesteps of DPM-Solver, as diffusers' `DPMSolverMultistepScheduler.set_timesteps`:
    /// linspace and leading are built for `n + 1` points and the cleanest one (timestep 0)
    /// dropped, because the solver's last step goes to sigma = 0 instead.
    pub fn solver_timesteps(
        self,
        num_train_timesteps: usize,
        num_steps: usize,
        steps_offset: usize,
    ) -> Result<Vec<usize>, SamplerError> {
        check_num_steps(num_train_timesteps, num_steps)?;
        let (t_max, n) = (num_train_timesteps, num_steps);
        let raw: Vec<i64> = match self {
            Self::Linspace => np_linspace((t_max - 1) as f64, n + 1)
                .into_iter()
                .skip(1)
                .rev()
                .map(np_round)
                .collect(),
            Self::Leading => {
                let ratio = t_max / (n + 1);
                (1..=n)
                    .rev()
                    .map(|i| (i * ratio + steps_offset) as i64)
                    .collect()
            }
            Self::Trailing | Self::Quadratic => {
                return self.timesteps(num_train_timesteps, num_steps, steps_offset);
            }
        };
        finish(self, raw, t_max, n, steps_offset)
    }
}

pub(super) fn check_num_steps(
    num_train_timesteps: usize,
    num_steps: usize,
) -> Result<(), SamplerError> {
    if num_steps == 0 || num_steps > num_train_timesteps {
        return Err(out_of_range(
            "num_steps",
            num_steps,
            format!("in 1..={num_train_timesteps} (the schedule's num_timesteps)"),
        ));
    }
    Ok(())
}

/// numpy's `round(arange(T, 0, -T/n)) - 1`, truncated to `n` values. numpy's `arange` fills
/// `start + i * delta` with `delta = (start + step) - start`, reproduced here bit for bit.
fn trailing(t_max: usize, n: usize) -> Vec<i64> {
    let start = t_max as f64;
    let step = -(start / n as f64);
    let delta = (start + step) - start;
    (0..n)
        .map(|i| {
            let value = if i == 1 {
                start + step
            } else {
                start + i as f64 * delta
            };
            np_round(value) - 1
        })
        .collect()
}

fn finish(
    spacing: TimestepSpacing,
    raw: Vec<i64>,
    t_max: usize,
    n: usize,
    steps_offset: usize,
) -> Result<Vec<usize>, SamplerError> {
    if raw.iter().any(|t| *t < 0 || *t >= t_max as i64) {
        return Err(out_of_range(
            "steps_offset",
            steps_offset,
            format!("small enough that every timestep stays below {t_max}"),
        ));
    }
    if raw.windows(2).any(|w| w[1] >= w[0]) {
        return Err(out_of_range(
            "num_steps",
            n,
            format!("small enough that {spacing:?} spacing over {t_max} timesteps has no repeats"),
        ));
    }
    Ok(raw.into_iter().map(|t| t as usize).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_matches_diffusers() {
        let ts = TimestepSpacing::Leading.timesteps(1000, 10, 0).unwrap();
        assert_eq!(ts, vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
        let offset = TimestepSpacing::Leading.timesteps(1000, 4, 1).unwrap();
        assert_eq!(offset, vec![751, 501, 251, 1]);
        let full = TimestepSpacing::Leading.timesteps(1000, 1000, 0).unwrap();
        assert_eq!(full, (0..1000).rev().collect::<Vec<_>>());
    }

    #[test]
    fn trailing_matches_diffusers() {
        let ts = TimestepSpacing::Trailing.timesteps(1000, 10, 0).unwrap();
        assert_eq!(ts, vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
        // T/n = 333.33...: numpy gives [999, 666, 332] (333.33 rounds to 333).
        let thirds = TimestepSpacing::Trailing.timesteps(1000, 3, 0).unwrap();
        assert_eq!(thirds, vec![999, 666, 332]);
        // n = 61 is where numpy's arange overshoots; we stop at n values, all >= 0.
        let odd = TimestepSpacing::Trailing.timesteps(1000, 61, 0).unwrap();
        assert_eq!(odd.len(), 61);
        assert_eq!(odd[0], 999);
    }

    #[test]
    fn linspace_matches_diffusers_with_half_to_even_rounding() {
        let ts = TimestepSpacing::Linspace.timesteps(1000, 5, 0).unwrap();
        // linspace(0, 999, 5) = [0, 249.75, 499.5, 749.25, 999]; 499.5 rounds to 500 (even).
        assert_eq!(ts, vec![999, 749, 500, 250, 0]);
        assert_eq!(
            TimestepSpacing::Linspace.timesteps(10, 1, 0).unwrap(),
            vec![0]
        );
    }

    #[test]
    fn quadratic_matches_the_ddim_code() {
        // numpy: (linspace(0, sqrt(800), 5) ** 2).astype(int) = [0, 50, 200, 450, 800],
        // the last being int(800.0000000000001).
        let ts = TimestepSpacing::Quadratic.timesteps(1000, 5, 0).unwrap();
        assert_eq!(ts, vec![800, 450, 200, 50, 0]);
    }

    #[test]
    fn quadratic_with_too_many_steps_is_rejected_instead_of_repeating() {
        let err = TimestepSpacing::Quadratic
            .timesteps(1000, 100, 0)
            .unwrap_err();
        assert!(err.to_string().contains("num_steps"), "{err}");
    }

    #[test]
    fn dpm_solver_linspace_drops_timestep_zero() {
        let ts = TimestepSpacing::Linspace
            .solver_timesteps(1000, 5, 0)
            .unwrap();
        // round(linspace(0, 999, 6)) = [0, 200, 400, 599, 799, 999] -> reversed, last dropped.
        assert_eq!(ts, vec![999, 799, 599, 400, 200]);
        let leading = TimestepSpacing::Leading
            .solver_timesteps(1000, 4, 0)
            .unwrap();
        assert_eq!(leading, vec![800, 600, 400, 200]);
    }

    #[test]
    fn all_spacings_are_strictly_decreasing_and_in_range() {
        for spacing in [
            TimestepSpacing::Leading,
            TimestepSpacing::Trailing,
            TimestepSpacing::Linspace,
        ] {
            for t_max in [1, 7, 500, 1000] {
                for n in [1, 2, 3, 7, 50, 61, 999, 1000] {
                    if n > t_max {
                        continue;
                    }
                    let mut lists = vec![spacing.timesteps(t_max, n, 0).unwrap()];
                    // The solver's n + 1-point lists repeat timesteps when n is close to T
                    // (in diffusers too); that must be an error naming num_steps, never a
                    // silently repeated step.
                    match spacing.solver_timesteps(t_max, n, 0) {
                        Ok(ts) => lists.push(ts),
                        Err(err) => assert!(err.to_string().contains("num_steps"), "{err}"),
                    }
                    for ts in lists {
                        assert_eq!(ts.len(), n, "{spacing:?} T={t_max} n={n}");
                        assert!(
                            ts.windows(2).all(|w| w[1] < w[0]),
                            "{spacing:?} T={t_max} n={n}"
                        );
                        assert!(ts[0] < t_max);
                    }
                }
            }
        }
    }

    #[test]
    fn step_counts_outside_one_to_t_are_rejected() {
        for n in [0, 1001] {
            let err = TimestepSpacing::Leading.timesteps(1000, n, 0).unwrap_err();
            assert!(err.to_string().contains("num_steps"), "{err}");
            assert!(err.to_string().contains("1..=1000"), "{err}");
        }
        let err = TimestepSpacing::Leading
            .timesteps(1000, 10, 100)
            .unwrap_err();
        assert!(err.to_string().contains("steps_offset"), "{err}");
    }
}
