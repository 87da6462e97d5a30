//! Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs"), as
//! torch-fidelity's `isc_features_to_metric(logits, splits, shuffle=False)`:
//!
//! ```text
//! p(y|x) = softmax(logits),  p(y) = mean over the split of p(y|x)
//! IS     = exp(mean over the split of KL(p(y|x) || p(y)))
//! ```
//!
//! computed on each of `splits` consecutive chunks (rows `i N / splits .. (i + 1) N / splits`,
//! integer division, no shuffling), then the mean and standard deviation (ddof = 0) over chunks.
//!
//! It takes **logits**, not probabilities: torch-fidelity's input is the Inception classifier's
//! `logits_unbiased` and it applies `softmax` / `log_softmax` itself (in float64, as here).
//! Where a probability underflows to zero its KL term is taken as zero (its limit); torch gives
//! NaN there, for logit gaps above about 745.

use crate::stats::check_finite_features;
use crate::{EvalError, Features};

/// The Inception Score of `logits` (one row of class logits per image): `(mean, std)` over
/// `splits` consecutive chunks.
///
/// Errors: `splits == 0` ([`EvalError::Config`]), fewer rows than splits
/// ([`EvalError::TooFewSamples`]: a chunk would be empty), fewer than two classes
/// ([`EvalError::Shape`]), non-finite logits ([`EvalError::NonFinite`]).
pub fn inception_score(logits: &Features, splits: usize) -> Result<(f64, f64), EvalError> {
    if splits == 0 {
        return Err(EvalError::Config {
            field: "splits",
            message: "must be at least 1, got 0".into(),
        });
    }
    let n = logits.len();
    if n < splits {
        return Err(EvalError::TooFewSamples {
            metric: "Inception Score (one per split)",
            need: splits,
            got: n,
        });
    }
    if logits.dim() < 2 {
        return Err(EvalError::Shape(format!(
            "Inception Score needs at least 2 classes, got {}",
            logits.dim()
        )));
    }
    check_finite_features(logits, "Inception Score logits")?;

    let log_p: Vec<Vec<f64>> = logits.rows().map(log_softmax).collect();
    let scores: Vec<f64> = (0..splits)
        .map(|i| split_score(&log_p[i * n / splits..(i + 1) * n / splits]))
        .collect();
    let count = scores.len() as f64;
    let mean = scores.iter().sum::<f64>() / count;
    let var = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / count;
    Ok((mean, var.sqrt()))
}

/// `exp(mean_x KL(p(y|x) || p(y)))` over one chunk of log-probabilities.
fn split_score(log_p: &[Vec<f64>]) -> f64 {
    let classes = log_p[0].len();
    let rows = log_p.len() as f64;
    let mut q = vec![0.0f64; classes];
    for row in log_p {
        for (q, &lp) in q.iter_mut().zip(row) {
            *q += lp.exp();
        }
    }
    let log_q: Vec<f64> = q.iter().map(|&q| (q / rows).ln()).collect();
    let mean_kl = log_p
        .iter()
        .map(|row| {
            row.iter()
                .zip(&log_q)
                .map(|(&lp, &lq)| {
                    let p = lp.exp();
                    if p == 0.0 { 0.0 } else { p * (lp - lq) }
                })
                .sum::<f64>()
        })
        .sum::<f64>()
        / rows;
    mean_kl.exp()
}

/// `log_softmax` of one row, in f64, shifted by its maximum.
fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let log_sum = row
        .iter()
        .map(|&x| (f64::from(x) - max).exp())
        .sum::<f64>()
        .ln();
    row.iter().map(|&x| f64::from(x) - max - log_sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_predictions_score_one() {
        let logits = Features::from_rows(4, vec![0.5; 4 * 20]).unwrap();
        let (mean, std) = inception_score(&logits, 4).unwrap();
        assert!((mean - 1.0).abs() < 1e-12 && std < 1e-12, "{mean} {std}");
    }

    #[test]
    fn confident_predictions_spread_evenly_score_the_class_count() {
        // Each row is sure of one class, every class equally often in each split: IS -> C.
        let classes = 5;
        let data: Vec<f32> = (0..classes * 4)
            .flat_map(|r| (0..classes).map(move |c| if c == r % classes { 40.0 } else { 0.0 }))
            .collect();
        let logits = Features::from_rows(classes, data).unwrap();
        let (mean, std) = inception_score(&logits, 4).unwrap();
        assert!((mean - classes as f64).abs() < 1e-12, "{mean}");
        assert!(std < 1e-12);
    }

    #[test]
    fn matches_the_formula_on_a_small_case_with_uneven_splits() {
        // 5 rows in 2 splits: rows 0..2 and 2..5 (integer division).
        let rows = [
            [1.0f32, 0.0, -1.0],
            [0.0, 2.0, 0.5],
            [3.0, 0.0, 0.0],
            [0.0, 0.0, 1.0],
            [-1.0, 1.0, 0.0],
        ];
        let logits = Features::from_rows(3, rows.concat()).unwrap();
        let softmax = |r: &[f32; 3]| {
            let e: Vec<f64> = r.iter().map(|&x| f64::from(x).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect::<Vec<_>>()
        };
        let score = |chunk: &[[f32; 3]]| {
            let p: Vec<Vec<f64>> = chunk.iter().map(softmax).collect();
            let q: Vec<f64> = (0..3)
                .map(|c| p.iter().map(|r| r[c]).sum::<f64>() / p.len() as f64)
                .collect();
            let kl: f64 = p
                .iter()
                .map(|r| (0..3).map(|c| r[c] * (r[c] / q[c]).ln()).sum::<f64>())
                .sum::<f64>()
                / p.len() as f64;
            kl.exp()
        };
        let (a, b) = (score(&rows[..2]), score(&rows[2..]));
        let (mean, std) = inception_score(&logits, 2).unwrap();
        assert!((mean - (a + b) / 2.0).abs() < 1e-12, "{mean}");
        assert!((std - (a - b).abs() / 2.0).abs() < 1e-12, "{std}");
    }

    #[test]
    fn bad_inputs_are_errors() {
        let logits = Features::from_rows(3, vec![0.0; 6]).unwrap();
        assert!(matches!(
            inception_score(&logits, 0),
            Err(EvalError::Config { .. })
        ));
        assert!(matches!(
            inception_score(&logits, 3),
            Err(EvalError::TooFewSamples {
                need: 3,
                got: 2,
                ..
            })
        ));
        let one_class = Features::from_rows(1, vec![0.0; 4]).unwrap();
        assert!(matches!(
            inception_score(&one_class, 2),
            Err(EvalError::Shape(_))
        ));
        let nan = Features::from_rows(3, vec![0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0]).unwrap();
        assert!(matches!(
            inception_score(&nan, 1),
            Err(EvalError::NonFinite(_))
        ));
    }
}
