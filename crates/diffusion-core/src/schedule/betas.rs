//! Beta sequences, each computed in f64 from its closed form.
//!
//! Formulas follow Hugging Face diffusers so that a schedule named here gives the same betas
//! as the diffusers scheduler of the same name (up to diffusers' float32 rounding).

use std::f64::consts::FRAC_PI_2;

/// `n` evenly spaced values from `start` to `end` inclusive (`[start]` when `n == 1`), as
/// `numpy.linspace` / `torch.linspace`.
pub(crate) fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let last = (n - 1) as f64;
    (0..n)
        .map(|i| start + (end - start) * (i as f64) / last)
        .collect()
}

/// DDPM's linear schedule (Ho et al. 2020): `linspace(beta_start, beta_end, T)`.
pub(crate) fn linear(beta_start: f64, beta_end: f64, num_timesteps: usize) -> Vec<f64> {
    linspace(beta_start, beta_end, num_timesteps)
}

/// Stable Diffusion's "scaled_linear": linear in `sqrt(beta)`, then squared.
pub(crate) fn scaled_linear(beta_start: f64, beta_end: f64, num_timesteps: usize) -> Vec<f64> {
    linspace(beta_start.sqrt(), beta_end.sqrt(), num_timesteps)
        .into_iter()
        .map(|b| b * b)
        .collect()
}

/// diffusers' DDPMScheduler "sigmoid": `sigmoid(linspace(-6, 6, T)) * (end - start) + start`.
pub(crate) fn sigmoid(beta_start: f64, beta_end: f64, num_timesteps: usize) -> Vec<f64> {
    linspace(-6.0, 6.0, num_timesteps)
        .into_iter()
        .map(|x| 1.0 / (1.0 + (-x).exp()) * (beta_end - beta_start) + beta_start)
        .collect()
}

/// Nichol & Dhariwal (2021) cosine schedule, diffusers' "squaredcos_cap_v2":
/// `beta_i = min(1 - f((i+1)/T) / f(i/T), max_beta)` with `f(t) = cos((t + s)/(1 + s) * pi/2)^2`.
///
/// Every division is in f64: candle and diffusers-rs compute `i / T` on integers, which makes
/// every beta zero except the last.
pub(crate) fn cosine(cosine_s: f64, max_beta: f64, num_timesteps: usize) -> Vec<f64> {
    let alpha_bar = |t: f64| {
        ((t + cosine_s) / (1.0 + cosine_s) * FRAC_PI_2)
            .cos()
            .powi(2)
    };
    let steps = num_timesteps as f64;
    (0..num_timesteps)
        .map(|i| {
            let t1 = i as f64 / steps;
            let t2 = (i + 1) as f64 / steps;
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(max_beta)
        })
        .collect()
}

/// Lin et al. (2023), Algorithm 1 (diffusers' `rescale_zero_terminal_snr`): shift and scale
/// `sqrt(alpha_bar)` so the last timestep has zero signal while the first keeps its value.
/// The last beta becomes exactly 1. Needs at least two timesteps.
pub(crate) fn rescale_zero_terminal_snr(betas: &[f64]) -> Vec<f64> {
    let mut alpha_bar = 1.0;
    let mut sqrt_alpha_bar: Vec<f64> = betas
        .iter()
        .map(|beta| {
            alpha_bar *= 1.0 - beta;
            alpha_bar.sqrt()
        })
        .collect();
    let first = sqrt_alpha_bar[0];
    let last = sqrt_alpha_bar[sqrt_alpha_bar.len() - 1];
    let scale = first / (first - last);
    for value in &mut sqrt_alpha_bar {
        *value = (*value - last) * scale;
    }
    let alpha_bar: Vec<f64> = sqrt_alpha_bar.iter().map(|s| s * s).collect();
    let mut rescaled = Vec::with_capacity(betas.len());
    rescaled.push(1.0 - alpha_bar[0]);
    for window in alpha_bar.windows(2) {
        rescaled.push(1.0 - window[1] / window[0]);
    }
    rescaled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_endpoints_and_single_value() {
        let values = linspace(1e-4, 0.02, 1000);
        assert_eq!(values.len(), 1000);
        assert_eq!(values[0], 1e-4);
        assert!((values[999] - 0.02).abs() < 1e-15);
        assert!((values[500] - (1e-4 + (0.02 - 1e-4) * 500.0 / 999.0)).abs() < 1e-15);
        assert_eq!(linspace(0.3, 0.7, 1), vec![0.3]);
    }

    #[test]
    fn scaled_linear_is_square_of_linear_in_sqrt_space() {
        let betas = scaled_linear(0.00085, 0.012, 1000);
        assert!((betas[0] - 0.00085).abs() < 1e-15);
        assert!((betas[999] - 0.012).abs() < 1e-15);
        let mid = (0.00085f64.sqrt() + (0.012f64.sqrt() - 0.00085f64.sqrt()) * 0.5).powi(2);
        let odd = scaled_linear(0.00085, 0.012, 3);
        assert!((odd[1] - mid).abs() < 1e-15);
    }

    #[test]
    fn sigmoid_is_symmetric_around_the_midpoint() {
        let betas = sigmoid(1e-4, 0.02, 101);
        let mid = (1e-4 + 0.02) / 2.0;
        assert!((betas[50] - mid).abs() < 1e-12);
        for i in 0..50 {
            assert!((betas[i] + betas[100 - i] - 2.0 * mid).abs() < 1e-12);
            assert!(betas[i] < betas[i + 1]);
        }
        let low = 1.0 / (1.0 + 6f64.exp());
        assert!((betas[0] - (low * (0.02 - 1e-4) + 1e-4)).abs() < 1e-15);
    }

    #[test]
    fn cosine_betas_are_all_positive_not_just_the_last() {
        // The integer-division bug of candle/diffusers-rs gives zeros everywhere but the end.
        let betas = cosine(0.008, 0.999, 1000);
        assert!(betas.iter().all(|b| *b > 0.0));
        assert!(
            betas[0] > 1e-5 && betas[0] < 1e-4,
            "first beta {}",
            betas[0]
        );
        assert_eq!(betas[999], 0.999, "last beta is clipped at max_beta");
        // alpha_bar telescopes to f(t)/f(0) wherever no clipping happened.
        let f = |t: f64| ((t + 0.008) / 1.008 * FRAC_PI_2).cos().powi(2);
        let alpha_bar_500: f64 = betas[..500].iter().map(|b| 1.0 - b).product();
        assert!((alpha_bar_500 - f(0.5) / f(0.0)).abs() < 1e-12);
    }

    #[test]
    fn rescale_gives_zero_terminal_snr_and_keeps_the_first_alpha_bar() {
        let betas = linear(1e-4, 0.02, 1000);
        let rescaled = rescale_zero_terminal_snr(&betas);
        assert_eq!(rescaled.len(), 1000);
        assert_eq!(rescaled[999], 1.0);
        assert!((rescaled[0] - betas[0]).abs() < 1e-15);
        assert!(rescaled[..999].iter().all(|b| *b > 0.0 && *b < 1.0));
    }
}
