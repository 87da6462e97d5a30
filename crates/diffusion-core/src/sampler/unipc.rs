//! Zhao, Bai, Rao, Zhou & Lu (2023), "UniPC: A Unified Predictor-Corrector Framework for Fast
//! Sampling of Diffusion Models", arXiv:2302.04867: the multistep predictor UniP and, from the
//! second step on, the corrector UniC, which improves each state with the model output
//! evaluated at it before the next prediction (no extra evaluation). As diffusers'
//! `UniPCMultistepScheduler(predict_x0=True, lower_order_final=True,
//! final_sigmas_type="zero")`, with `solver_type` `bh2` (default) or `bh1`.
//!
//! In the data-prediction form, with `lambda = ln(alpha / sigma)`, `h = lambda_next -
//! lambda_here`, `hh = -h`: `x_next = (sigma_next / sigma_here) x - alpha_next (e^{hh} - 1) m0
//! - alpha_next B(h) sum_k rho_k D_k`, where `D_k = (m_k - m0) / r_k` are the scaled
//! differences of earlier data predictions and `rho` solves the order conditions `R rho = b`.
//!
//! | ours                 | paper (Algorithms 1-2)     | diffusers                          |
//! |----------------------|----------------------------|------------------------------------|
//! | `history[0]`         | `x_theta(x_{t_{i-1}})`     | `model_outputs[-1]`, `m0`          |
//! | `history[k]`         | `x_theta(x_{t_{i-1-k}})`   | `model_outputs[-(k + 1)]`          |
//! | `rks[k]`             | `r_k`                      | `rks`                              |
//! | `b_h`                | `B(h)`                     | `B_h`                              |
//! | `rhos`               | `a` (predictor), `c`       | `rhos_p`, `rhos_c`                 |
//! | `last_x`             | `x_{t_{i-1}}` before UniC  | `last_sample`                      |
//! | `order`              | `p`                        | `this_order`                       |

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};
use serde::{Deserialize, Serialize};

use super::dpm_solver::alpha_sigma_lambda;
use super::sigmas::{Ladder, alpha_bar_of};
use super::{
    Sampler, SamplerError, TimestepSpacing, check_clip, check_multistep, clip_x0, out_of_range,
};
use crate::{NoiseSchedule, NoiseSource, PredictionType};

/// UniPC's `B(h)` (diffusers' `solver_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UniPcVariant {
    /// `B(h) = h` (the paper's recommendation for unconditional sampling).
    Bh1,
    /// `B(h) = e^h - 1` (diffusers' default, for guided sampling).
    Bh2,
}

/// Configuration of a [`UniPc`] sampler; defaults follow diffusers.
#[derive(Config, Debug, PartialEq)]
pub struct UniPcConfig {
    /// Number of steps (model evaluations), in `1..=T`.
    #[config(default = 20)]
    pub num_steps: usize,
    /// Order of the predictor (the corrector is one higher), 1 to 3.
    #[config(default = 2)]
    pub solver_order: usize,
    /// `bh1` or `bh2`.
    #[config(default = "UniPcVariant::Bh2")]
    pub variant: UniPcVariant,
    /// How timesteps are picked, as for DPM-Solver++ ([`TimestepSpacing::solver_timesteps`]).
    /// Ignored with `karras`.
    #[config(default = "TimestepSpacing::Linspace")]
    pub spacing: TimestepSpacing,
    /// Added to every timestep of leading spacing.
    #[config(default = 0)]
    pub steps_offset: usize,
    /// Karras et al. (2022)'s sigmas over the whole schedule, as for DPM-Solver++.
    #[config(default = false)]
    pub karras: bool,
    /// Clip the data prediction to `[-clip_sample_range, clip_sample_range]` before each
    /// update (diffusers' `thresholding=True` with `sample_max_value=1`, which is a plain clip
    /// at range 1; off by default, as there).
    #[config(default = false)]
    pub clip_sample: bool,
    /// Bound of the clip; finite and > 0.
    #[config(default = 1.0)]
    pub clip_sample_range: f64,
    /// Start the reverse process at this timestep instead of the noisiest (`None`).
    pub start_t: Option<usize>,
}

impl UniPcConfig {
    /// Builds the sampler for `schedule` and a model predicting `prediction`.
    pub fn init<B: Backend>(
        &self,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
    ) -> Result<UniPc<B>, SamplerError> {
        if !(1..=3).contains(&self.solver_order) {
            return Err(out_of_range("solver_order", self.solver_order, "1, 2 or 3"));
        }
        let clip = check_clip(self.clip_sample, self.clip_sample_range)?;
        let ladder = Ladder::solver(
            schedule,
            self.spacing,
            self.num_steps,
            self.steps_offset,
            self.karras,
            self.start_t,
        )?;
        let lambdas = ladder
            .sigmas
            .iter()
            .map(|&s| alpha_sigma_lambda(alpha_bar_of(s)))
            .collect();
        Ok(UniPc {
            timesteps: ladder.timesteps,
            levels: lambdas,
            prediction,
            solver_order: self.solver_order,
            variant: self.variant,
            clip,
            history: Vec::new(),
            last: None,
            next_step: 0,
        })
    }
}

/// The state before the last correction and the order its prediction used.
#[derive(Debug, Clone)]
struct Last<B: Backend> {
    x: Tensor<B, 4>,
    order: usize,
}

/// UniPC multistep sampler.
#[derive(Debug, Clone)]
pub struct UniPc<B: Backend> {
    timesteps: Vec<usize>,
    /// `(alpha, sigma, lambda)` of every step's start, then of clean data.
    levels: Vec<(f64, f64, f64)>,
    prediction: PredictionType,
    solver_order: usize,
    variant: UniPcVariant,
    clip: Option<f64>,
    /// Data predictions, newest first, at most `solver_order`.
    history: Vec<Tensor<B, 4>>,
    last: Option<Last<B>>,
    next_step: usize,
}

/// Solves the small dense system `a x = b` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let factor = a[row][col] / a[col][col];
            let pivot_row = a[col].clone();
            for (value, above) in a[row].iter_mut().zip(pivot_row).skip(col) {
                *value -= factor * above;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x
}

/// The order conditions of one UniP or UniC update.
struct Update {
    /// `e^{hh} - 1`.
    h_phi_1: f64,
    b_h: f64,
    /// `R[i][k] = rks[k]^i`.
    r: Vec<Vec<f64>>,
    b: Vec<f64>,
}

impl Update {
    /// `rks` ends with 1 (the point itself); `order = rks.len()`.
    fn new(h: f64, rks: &[f64], variant: UniPcVariant) -> Self {
        let hh = -h;
        let h_phi_1 = hh.exp_m1();
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let b_h = match variant {
            UniPcVariant::Bh1 => hh,
            UniPcVariant::Bh2 => hh.exp_m1(),
        };
        let mut factorial = 1.0;
        let (mut r, mut b) = (Vec::new(), Vec::new());
        for i in 1..=rks.len() {
            r.push(rks.iter().map(|rk| rk.powi(i as i32 - 1)).collect());
            b.push(h_phi_k * factorial / b_h);
            factorial *= (i + 1) as f64;
            h_phi_k = h_phi_k / hh - 1.0 / factorial;
        }
        Self { h_phi_1, b_h, r, b }
    }

    /// The predictor's `rho`: `0.5` at order 2, else the leading `order - 1` conditions.
    fn rhos_predictor(&self) -> Vec<f64> {
        let k = self.b.len() - 1;
        match k {
            0 => Vec::new(),
            1 => vec![0.5],
            _ => solve(
                self.r[..k].iter().map(|row| row[..k].to_vec()).collect(),
                self.b[..k].to_vec(),
            ),
        }
    }

    /// The corrector's `rho`: `0.5` at order 1, else all conditions.
    fn rhos_corrector(&self) -> Vec<f64> {
        if self.b.len() == 1 {
            vec![0.5]
        } else {
            solve(self.r.clone(), self.b.clone())
        }
    }
}

impl<B: Backend> UniPc<B> {
    /// `x_from` at level `from` moved to level `to` with data prediction `m0`, plus the
    /// correction `sum_k rhos[k] d[k]`: `(sigma_to / sigma_from) x - alpha_to (e^{hh} - 1) m0
    /// - alpha_to B(h) sum`.
    fn update(
        &self,
        x_from: Tensor<B, 4>,
        from: usize,
        to: usize,
        m0: Tensor<B, 4>,
        update: &Update,
        correction: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        let (_, sigma_from, _) = self.levels[from];
        let (alpha_to, sigma_to, _) = self.levels[to];
        let x = x_from.mul_scalar(sigma_to / sigma_from) - m0.mul_scalar(alpha_to * update.h_phi_1);
        match correction {
            Some(c) => x - c.mul_scalar(alpha_to * update.b_h),
            None => x,
        }
    }

    /// `rks` and `D_k = (m_k - m0) / r_k` of the `order - 1` earlier predictions, relative to
    /// the step from level `s0` to `to`; `history[0]` is `m0` at `s0`.
    fn differences(
        &self,
        history: &[Tensor<B, 4>],
        s0: usize,
        to: usize,
        order: usize,
    ) -> (Vec<f64>, Vec<Tensor<B, 4>>) {
        let lambda = |i: usize| self.levels[i].2;
        let h = lambda(to) - lambda(s0);
        let (mut rks, mut ds) = (Vec::new(), Vec::new());
        for k in 1..order {
            let rk = (lambda(s0 - k) - lambda(s0)) / h;
            ds.push((history[k].clone() - history[0].clone()).div_scalar(rk));
            rks.push(rk);
        }
        rks.push(1.0);
        (rks, ds)
    }

    fn weighted(ds: &[Tensor<B, 4>], rhos: &[f64]) -> Option<Tensor<B, 4>> {
        ds.iter()
            .zip(rhos)
            .map(|(d, rho)| d.clone().mul_scalar(*rho))
            .reduce(|a, b| a + b)
    }
}

impl<B: Backend> Sampler<B> for UniPc<B> {
    fn timesteps(&self) -> &[usize] {
        &self.timesteps
    }

    fn prediction_type(&self) -> PredictionType {
        self.prediction
    }

    fn state_alpha_bar(&self, eval_index: usize) -> f64 {
        let (alpha, _, _) = self.levels[eval_index.min(self.timesteps.len())];
        alpha * alpha
    }

    fn reset(&mut self) {
        self.history.clear();
        self.last = None;
        self.next_step = 0;
    }

    fn step(
        &mut self,
        model_output: Tensor<B, 4>,
        step_index: usize,
        x_t: Tensor<B, 4>,
        _noise: &mut dyn NoiseSource<B>,
    ) -> Result<Tensor<B, 4>, SamplerError> {
        if check_multistep(step_index, self.next_step, self.timesteps.len())? {
            <Self as Sampler<B>>::reset(self);
        }
        let (alpha, _, _) = self.levels[step_index];
        let m_now = clip_x0(
            self.prediction
                .split(model_output, x_t.clone(), alpha * alpha)
                .pred_x0,
            self.clip,
        );

        // UniC: correct this state with the prediction just made at it.
        let x = match self.last.take() {
            Some(last) => {
                let (s0, here) = (step_index - 1, step_index);
                let (rks, ds) = self.differences(&self.history, s0, here, last.order);
                let h = self.levels[here].2 - self.levels[s0].2;
                let update = Update::new(h, &rks, self.variant);
                let rhos = update.rhos_corrector();
                let d_t = m_now.clone() - self.history[0].clone();
                let mut correction = d_t.mul_scalar(rhos[rhos.len() - 1]);
                if let Some(res) = Self::weighted(&ds, &rhos[..rhos.len() - 1]) {
                    correction = res + correction;
                }
                self.update(
                    last.x,
                    s0,
                    here,
                    self.history[0].clone(),
                    &update,
                    Some(correction),
                )
            }
            None => x_t,
        };

        self.history.insert(0, m_now);
        self.history.truncate(self.solver_order);
        // Lower orders at the start (warm-up) and towards the end (lower_order_final).
        let remaining = self.timesteps.len() - step_index;
        let order = self.solver_order.min(remaining).min(self.history.len());

        // UniP: predict the next state.
        let (s0, to) = (step_index, step_index + 1);
        let (rks, ds) = self.differences(&self.history, s0, to, order);
        let h = self.levels[to].2 - self.levels[s0].2;
        let update = Update::new(h, &rks, self.variant);
        let correction = Self::weighted(&ds, &update.rhos_predictor());
        let x_next = self.update(
            x.clone(),
            s0,
            to,
            self.history[0].clone(),
            &update,
            correction,
        );
        self.last = Some(Last { x, order });
        self.next_step = step_index + 1;
        Ok(x_next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_matches_a_known_system() {
        let x = solve(
            vec![
                vec![2.0, 1.0, -1.0],
                vec![-3.0, -1.0, 2.0],
                vec![-2.0, 1.0, 2.0],
            ],
            vec![8.0, -11.0, -3.0],
        );
        for (got, want) in x.iter().zip([2.0, 3.0, -1.0]) {
            assert!((got - want).abs() < 1e-12, "{x:?}");
        }
    }

    #[test]
    fn invalid_orders_are_rejected() {
        let schedule = crate::ScheduleConfig::new().init().unwrap();
        for order in [0, 4] {
            let err = UniPcConfig::new()
                .with_solver_order(order)
                .init::<crate::tests::TestBackend>(&schedule, PredictionType::Epsilon)
                .unwrap_err();
            assert!(err.to_string().contains("solver_order"), "{err}");
        }
    }
}
