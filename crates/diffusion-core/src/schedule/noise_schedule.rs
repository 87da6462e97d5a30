//! Every per-timestep quantity derived from the betas, computed once in f64.

use super::ScheduleError;

/// A discrete-time variance-preserving noise schedule, `q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0,
/// (1 - alpha_bar_t) I)`, with timesteps `0..T` (diffusers' indexing: `t = 0` is the first
/// noising step, not the clean data).
///
/// All tables have length `T` and are indexed by timestep. The quantities of a reverse step
/// (posterior variance and mean coefficients, for any jump `t -> prev`) come from
/// [`Self::transition`].
#[derive(Debug, Clone, PartialEq)]
pub struct NoiseSchedule {
    betas: Vec<f64>,
    alphas: Vec<f64>,
    alpha_bar: Vec<f64>,
    sqrt_alpha_bar: Vec<f64>,
    sqrt_one_minus_alpha_bar: Vec<f64>,
    posterior_variance: Vec<f64>,
    snr: Vec<f64>,
}

impl NoiseSchedule {
    /// Builds a schedule from explicit betas (diffusers' `trained_betas`); each must be finite
    /// and in (0, 1).
    pub fn from_betas(betas: Vec<f64>) -> Result<Self, ScheduleError> {
        Self::from_betas_allowing_terminal_one(betas, false)
    }

    /// As [`Self::from_betas`], but with `terminal_one` the last beta may be exactly 1 (zero
    /// terminal SNR).
    pub(crate) fn from_betas_allowing_terminal_one(
        betas: Vec<f64>,
        terminal_one: bool,
    ) -> Result<Self, ScheduleError> {
        if betas.is_empty() {
            return Err(ScheduleError::OutOfRange {
                field: "num_timesteps",
                value: "0".into(),
                allowed: ">= 1".into(),
            });
        }
        let last = betas.len() - 1;
        for (index, &value) in betas.iter().enumerate() {
            let terminal_ok = terminal_one && index == last && value == 1.0;
            if !(terminal_ok || value.is_finite() && value > 0.0 && value < 1.0) {
                return Err(ScheduleError::InvalidBeta { index, value });
            }
        }
        Ok(Self::derive(betas))
    }

    fn derive(betas: Vec<f64>) -> Self {
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let mut alpha_bar = Vec::with_capacity(betas.len());
        let mut running = 1.0;
        for alpha in &alphas {
            running *= alpha;
            alpha_bar.push(running);
        }
        let map = |f: &dyn Fn(f64) -> f64| alpha_bar.iter().map(|&ab| f(ab)).collect::<Vec<_>>();
        let sqrt_alpha_bar = map(&|ab| ab.sqrt());
        let sqrt_one_minus_alpha_bar = map(&|ab| (1.0 - ab).sqrt());
        let snr = map(&|ab| ab / (1.0 - ab));

        let mut schedule = Self {
            betas,
            alphas,
            alpha_bar,
            sqrt_alpha_bar,
            sqrt_one_minus_alpha_bar,
            posterior_variance: Vec::new(),
            snr,
        };
        schedule.posterior_variance = (0..schedule.num_timesteps())
            .map(|t| schedule.transition(t, t.checked_sub(1)).posterior_variance)
            .collect();
        schedule
    }

    /// Number of diffusion timesteps `T`.
    pub fn num_timesteps(&self) -> usize {
        self.betas.len()
    }
    /// `beta_t`.
    pub fn betas(&self) -> &[f64] {
        &self.betas
    }
    /// `alpha_t = 1 - beta_t`.
    pub fn alphas(&self) -> &[f64] {
        &self.alphas
    }
    /// `alpha_bar_t = prod_{s <= t} alpha_s` (diffusers' `alphas_cumprod`).
    pub fn alpha_bar(&self) -> &[f64] {
        &self.alpha_bar
    }
    /// `sqrt(alpha_bar_t)`, the signal scale of `x_t`.
    pub fn sqrt_alpha_bar(&self) -> &[f64] {
        &self.sqrt_alpha_bar
    }
    /// `sqrt(1 - alpha_bar_t)`, the noise scale of `x_t`.
    pub fn sqrt_one_minus_alpha_bar(&self) -> &[f64] {
        &self.sqrt_one_minus_alpha_bar
    }
    /// Variance of `q(x_{t-1} | x_t, x_0)` along the full chain, `beta_tilde_t = beta_t (1 -
    /// alpha_bar_{t-1}) / (1 - alpha_bar_t)`, 0 at `t = 0`: the
    /// [`posterior_variance`](crate::schedule::Transition::posterior_variance) of
    /// `transition(t, t - 1)`.
    pub fn posterior_variance(&self) -> &[f64] {
        &self.posterior_variance
    }
    /// Signal-to-noise ratio `alpha_bar_t / (1 - alpha_bar_t)`.
    pub fn snr(&self) -> &[f64] {
        &self.snr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleConfig;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    #[test]
    fn derived_quantities_satisfy_their_definitions() {
        let s = ScheduleConfig::new().with_num_timesteps(50).init().unwrap();
        for t in 0..50 {
            let ab = s.alpha_bar()[t];
            let ab_prev = if t == 0 { 1.0 } else { s.alpha_bar()[t - 1] };
            assert!(close(s.alphas()[t], 1.0 - s.betas()[t], 1e-15));
            assert!(close(ab, ab_prev * s.alphas()[t], 1e-14));
            assert!(close(s.sqrt_alpha_bar()[t].powi(2), ab, 1e-14));
            assert!(close(
                s.sqrt_one_minus_alpha_bar()[t].powi(2),
                1.0 - ab,
                1e-14
            ));
            assert!(close(s.snr()[t], ab / (1.0 - ab), 1e-14));
        }
    }

    #[test]
    fn posterior_variance_is_the_full_chain_closed_form() {
        let s = ScheduleConfig::new().init().unwrap();
        assert_eq!(s.posterior_variance()[0], 0.0);
        for t in 1..s.num_timesteps() {
            let (beta, ab, ab_prev) = (s.betas()[t], s.alpha_bar()[t], s.alpha_bar()[t - 1]);
            let closed_form = beta * (1.0 - ab_prev) / (1.0 - ab);
            assert!(close(s.posterior_variance()[t], closed_form, 1e-9), "t={t}");
            assert!(s.posterior_variance()[t] < beta, "t={t}");
        }
        let single = ScheduleConfig::new().with_num_timesteps(1).init().unwrap();
        assert_eq!(single.posterior_variance(), [0.0]);
    }

    #[test]
    fn alpha_bar_decreases_strictly() {
        let s = ScheduleConfig::new().init().unwrap();
        assert!(s.alpha_bar().windows(2).all(|w| w[1] < w[0]));
        assert!(s.snr().windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn from_betas_rejects_values_outside_the_open_unit_interval() {
        for bad in [0.0, 1.0, -0.1, f64::NAN, f64::INFINITY] {
            let err = NoiseSchedule::from_betas(vec![0.1, bad, 0.2]).unwrap_err();
            assert!(
                matches!(err, ScheduleError::InvalidBeta { index: 1, .. }),
                "{err:?}"
            );
        }
        assert!(NoiseSchedule::from_betas(vec![]).is_err());
        // Exactly 1 is only allowed at the end when zero-terminal-SNR is asked for.
        assert!(NoiseSchedule::from_betas(vec![0.1, 1.0]).is_err());
        assert!(NoiseSchedule::from_betas_allowing_terminal_one(vec![0.1, 1.0], true).is_ok());
        assert!(NoiseSchedule::from_betas_allowing_terminal_one(vec![1.0, 0.1], true).is_err());
    }
}
