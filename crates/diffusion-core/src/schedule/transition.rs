//! One reverse step's view of the schedule: the jump from timestep `t` to the next, smaller
//! timestep `prev` of a sampling grid, and the posterior `q(x_prev | x_t, x_0)` of that jump.
//! DDPM, DDIM and DPM-Solver++ read their coefficients from here.
//!
//! | ours                 | paper (Ho et al. 2020, eqs. 6-7)    | diffusers                    |
//! |----------------------|-------------------------------------|------------------------------|
//! | `alpha_bar_t`        | `alpha_bar_t`                       | `alpha_prod_t`               |
//! | `alpha_bar_prev`     | `alpha_bar_{t-1}`                   | `alpha_prod_t_prev`          |
//! | `alpha`              | `alpha_t` (of the jump)             | `current_alpha_t`            |
//! | `beta`               | `beta_t` (of the jump)              | `current_beta_t`             |
//! | `posterior_variance` | `beta_tilde_t`                      | `variance` (`_get_variance`) |
//! | `coef_x0`            | `x_0`'s coefficient in `mu_tilde_t` | `pred_original_sample_coeff` |
//! | `coef_xt`            | `x_t`'s coefficient in `mu_tilde_t` | `current_sample_coeff`       |
//!
//! With strided sampling (fewer steps than `T`) `alpha` and `beta` are those of the whole jump,
//! `alpha = alpha_bar_t / alpha_bar_prev`, exactly as diffusers computes them; for the full
//! chain (`prev = t - 1`) they are the schedule's own `alpha_t` and `beta_t` up to rounding.

use super::NoiseSchedule;

/// The quantities of one reverse step from timestep `t` to `prev` (see the module notes).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Transition {
    /// `alpha_bar` at the current timestep `t`.
    pub alpha_bar_t: f64,
    /// `alpha_bar` where the step lands: at `prev`, or 1 for clean data.
    pub alpha_bar_prev: f64,
    /// `alpha_bar_t / alpha_bar_prev`, the signal kept over the jump.
    pub alpha: f64,
    /// `1 - alpha`, the noise added over the jump.
    pub beta: f64,
    /// Variance of `q(x_prev | x_t, x_0)`: `(1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta`.
    pub posterior_variance: f64,
    /// Coefficient of `x_0` in the posterior mean: `sqrt(alpha_bar_prev) beta / (1 - alpha_bar_t)`.
    pub coef_x0: f64,
    /// Coefficient of `x_t` in the posterior mean:
    /// `sqrt(alpha) (1 - alpha_bar_prev) / (1 - alpha_bar_t)`.
    pub coef_xt: f64,
}

impl Transition {
    /// The step from `alpha_bar_t` to `alpha_bar_prev`, each formula written once, in the
    /// operation order of diffusers' `DDPMScheduler.step` and `_get_variance`.
    fn between(alpha_bar_t: f64, alpha_bar_prev: f64) -> Self {
        let beta_prod_t = 1.0 - alpha_bar_t;
        let beta_prod_t_prev = 1.0 - alpha_bar_prev;
        let alpha = alpha_bar_t / alpha_bar_prev;
        let beta = 1.0 - alpha;
        Self {
            alpha_bar_t,
            alpha_bar_prev,
            alpha,
            beta,
            posterior_variance: beta_prod_t_prev / beta_prod_t * beta,
            coef_x0: alpha_bar_prev.sqrt() * beta / beta_prod_t,
            coef_xt: alpha.sqrt() * beta_prod_t_prev / beta_prod_t,
        }
    }
}

impl NoiseSchedule {
    /// The reverse step from timestep `t` to `prev`, the next (smaller or equal) timestep of a
    /// sampling grid. `None` is the step to clean data, `alpha_bar_prev = 1` (diffusers'
    /// `one`, or `final_alpha_cumprod` with `set_alpha_to_one = True`); diffusers'
    /// `set_alpha_to_one = False` is `Some(0)`, the final step landing on `alpha_bar_0`.
    ///
    /// # Panics
    /// If `t` is not below [`Self::num_timesteps`] or `prev > t`.
    pub fn transition(&self, t: usize, prev: Option<usize>) -> Transition {
        let alpha_bar = self.alpha_bar();
        let alpha_bar_prev = match prev {
            Some(prev) => {
                assert!(
                    prev <= t,
                    "transition from t = {t} to a later timestep {prev}"
                );
                alpha_bar[prev]
            }
            None => 1.0,
        };
        Transition::between(alpha_bar[t], alpha_bar_prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{BetaSchedule, ScheduleConfig};

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    fn schedules() -> Vec<NoiseSchedule> {
        vec![
            ScheduleConfig::new().init().unwrap(),
            ScheduleConfig::new()
                .with_schedule(BetaSchedule::Cosine)
                .with_num_timesteps(100)
                .init()
                .unwrap(),
        ]
    }

    #[test]
    fn one_step_transition_is_the_posterior_of_ho_et_al() {
        // The closed forms of Ho et al. eqs. (6)-(7), written with the schedule's own beta_t.
        for s in schedules() {
            for t in 1..s.num_timesteps() {
                let tr = s.transition(t, Some(t - 1));
                let (beta_t, ab_t, ab_prev) =
                    (s.betas()[t], s.alpha_bar()[t], s.alpha_bar()[t - 1]);
                assert_eq!((tr.alpha_bar_t, tr.alpha_bar_prev), (ab_t, ab_prev));
                assert!(close(tr.beta, beta_t, 1e-9), "t={t}");
                assert!(close(tr.alpha, s.alphas()[t], 1e-12), "t={t}");
                let variance = beta_t * (1.0 - ab_prev) / (1.0 - ab_t);
                assert!(close(tr.posterior_variance, variance, 1e-9), "t={t}");
                let coef_x0 = beta_t * ab_prev.sqrt() / (1.0 - ab_t);
                assert!(close(tr.coef_x0, coef_x0, 1e-9), "t={t}");
                let coef_xt = (1.0 - ab_prev) * s.alphas()[t].sqrt() / (1.0 - ab_t);
                assert!(close(tr.coef_xt, coef_xt, 1e-12), "t={t}");
                // The posterior is narrower than the forward step it inverts.
                assert!(tr.posterior_variance < tr.beta, "t={t}");
            }
        }
    }

    #[test]
    fn strided_transition_is_the_posterior_of_the_whole_jump() {
        // q(x_prev | x_t, x_0) for a jump of many steps is Gaussian with the same formulas, the
        // jump's alpha being alpha_bar_t / alpha_bar_prev; check the mean and variance against
        // the Gaussian conditioning of the joint (x_prev, x_t) given x_0 directly.
        let s = ScheduleConfig::new().init().unwrap();
        for (t, prev) in [(999, 899), (500, 480), (40, 0), (7, 6)] {
            let tr = s.transition(t, Some(prev));
            let (ab_t, ab_p) = (s.alpha_bar()[t], s.alpha_bar()[prev]);
            // x_t = sqrt(a) x_prev + sqrt(1 - a) e with a = ab_t / ab_p; x_prev | x_0 has
            // mean sqrt(ab_p) x_0, variance 1 - ab_p. Conditioning on x_t:
            let a = ab_t / ab_p;
            let gain = (1.0 - ab_p) * a.sqrt() / (1.0 - ab_t); // Cov(x_prev, x_t) / Var(x_t)
            let variance = (1.0 - ab_p) - gain * a.sqrt() * (1.0 - ab_p);
            let coef_x0 = ab_p.sqrt() - gain * ab_t.sqrt();
            assert!(close(tr.coef_xt, gain, 1e-12), "{t}->{prev}");
            assert!(close(tr.coef_x0, coef_x0, 1e-9), "{t}->{prev}");
            assert!(close(tr.posterior_variance, variance, 1e-9), "{t}->{prev}");
        }
    }

    #[test]
    fn coefficients_keep_a_noiseless_state_on_the_forward_path() {
        // With no noise, x_t = sqrt(ab_t) x0 and the mean must be sqrt(ab_prev) x0; and the
        // variance plus the explained part adds up to the marginal variance 1 - ab_prev.
        for s in schedules() {
            let last = s.num_timesteps() - 1;
            for (t, prev) in [
                (last, Some(last / 2)),
                (last / 2, Some(0)),
                (3, None),
                (0, None),
            ] {
                let tr = s.transition(t, prev);
                let mean = tr.coef_x0 + tr.coef_xt * tr.alpha_bar_t.sqrt();
                assert!(
                    close(mean, tr.alpha_bar_prev.sqrt(), 1e-12),
                    "{t}->{prev:?}"
                );
                let total = tr.posterior_variance + tr.coef_xt.powi(2) * (1.0 - tr.alpha_bar_t);
                assert!(close(total, 1.0 - tr.alpha_bar_prev, 1e-9), "{t}->{prev:?}");
                assert!(close(tr.alpha + tr.beta, 1.0, 1e-15), "{t}->{prev:?}");
            }
        }
    }

    #[test]
    fn the_step_to_clean_data_is_deterministic_and_returns_x0() {
        let s = ScheduleConfig::new().init().unwrap();
        for t in [0, 5, 999] {
            let tr = s.transition(t, None);
            assert_eq!(tr.alpha_bar_prev, 1.0);
            assert_eq!(tr.posterior_variance, 0.0);
            assert_eq!(tr.coef_xt, 0.0);
            assert!(close(tr.coef_x0, 1.0, 1e-12), "t={t}");
        }
        // Staying put (set_alpha_to_one = false at t = 0): the identity.
        let tr = s.transition(0, Some(0));
        assert_eq!(
            (tr.beta, tr.posterior_variance, tr.coef_x0),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(tr.coef_xt, 1.0);
    }

    #[test]
    fn zero_terminal_snr_has_a_finite_transition() {
        let s = ScheduleConfig::new()
            .with_rescale_zero_terminal_snr(true)
            .init()
            .unwrap();
        let tr = s.transition(999, Some(979));
        assert_eq!((tr.alpha_bar_t, tr.alpha, tr.beta), (0.0, 0.0, 1.0));
        assert!(close(tr.posterior_variance, 1.0 - tr.alpha_bar_prev, 1e-15));
        assert_eq!(tr.coef_xt, 0.0);
    }

    #[test]
    #[should_panic(expected = "later timestep")]
    fn a_transition_forward_in_time_panics() {
        ScheduleConfig::new()
            .init()
            .unwrap()
            .transition(10, Some(11));
    }
}
