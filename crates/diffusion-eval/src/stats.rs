//! [`FeatureStats`]: the Gaussian statistics (mean, covariance) of a feature matrix, in f64.
//!
//! These are what pytorch-fid's `calculate_activation_statistics` returns
//! (`np.mean(act, axis=0)`, `np.cov(act, rowvar=False)`) and what the Fréchet distance compares.
//! They are also what a dataset's reference statistics are cached as.

use faer::{Accum, Mat, Par};
use serde::{Deserialize, Serialize};

use crate::{EvalError, Features};

/// Rows per block when accumulating the covariance: bounds the f64 copy of the features to
/// `BLOCK_ROWS * dim` values, whatever their number.
const BLOCK_ROWS: usize = 512;

/// How far a covariance may be from symmetric, relative to its largest diagonal entry, before
/// it is rejected (np.cov's products leave differences of a few ulp).
const SYMMETRY_RTOL: f64 = 1e-8;

/// Mean and covariance of `n` feature vectors of dimension `dim()`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    /// The number of feature vectors the statistics were computed from.
    pub n: usize,
    /// The mean feature vector, `dim` values.
    pub mean: Vec<f64>,
    /// The covariance, `dim * dim` values row-major, with the `n - 1` denominator of
    /// `np.cov(rowvar=False)` (ddof = 1).
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Mean and covariance of `features`, accumulated in f64 (two passes: the mean, then the
    /// centred products in blocks of rows).
    ///
    /// Errors: fewer than two rows ([`EvalError::TooFewSamples`]), a NaN or infinite value
    /// ([`EvalError::NonFinite`]).
    pub fn from_features(features: &Features) -> Result<Self, EvalError> {
        let (n, dim) = (features.len(), features.dim());
        if n < 2 {
            return Err(EvalError::TooFewSamples {
                metric: "a covariance",
                need: 2,
                got: n,
            });
        }
        check_finite_features(features, "features")?;

        let mut mean = vec![0.0f64; dim];
        for row in features.rows() {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let inv_n = 1.0 / n as f64;
        mean.iter_mut().for_each(|m| *m *= inv_n);

        // cov = Xc^T Xc / (n - 1), Xc the centred rows, summed block by block.
        let mut gram = Mat::<f64>::zeros(dim, dim);
        let mut start = 0;
        while start < n {
            let rows = BLOCK_ROWS.min(n - start);
            // Column r of `centred_t` is row `start + r`, centred: [dim, rows].
            let centred_t = Mat::from_fn(dim, rows, |j, r| {
                f64::from(features.row(start + r)[j]) - mean[j]
            });
            faer::linalg::matmul::matmul(
                &mut gram,
                Accum::Add,
                &centred_t,
                centred_t.transpose(),
                1.0,
                Par::rayon(0),
            );
            start += rows;
        }
        let inv_ddof = 1.0 / (n - 1) as f64;
        let mut cov = vec![0.0f64; dim * dim];
        // Copy the lower triangle to both halves: exactly symmetric.
        for i in 0..dim {
            for j in 0..=i {
                let c = gram[(i, j)] * inv_ddof;
                cov[i * dim + j] = c;
                cov[j * dim + i] = c;
            }
        }
        Ok(Self { n, mean, cov })
    }

    /// The feature dimension.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Checks what the metrics rely on: a non-empty mean, a `dim * dim` covariance, finite
    /// values, a symmetric covariance. `what` names the statistics in the error (e.g.
    /// `reference statistics`).
    pub fn validate(&self, what: &str) -> Result<(), EvalError> {
        let dim = self.dim();
        if dim == 0 {
            return Err(EvalError::Shape(format!("{what}: empty mean vector")));
        }
        if self.cov.len() != dim * dim {
            return Err(EvalError::Shape(format!(
                "{what}: covariance has {} values, a {dim}-dimensional mean needs {}",
                self.cov.len(),
                dim * dim
            )));
        }
        if let Some(i) = self.mean.iter().position(|m| !m.is_finite()) {
            return Err(EvalError::NonFinite(format!(
                "{what}: mean[{i}] is {}",
                self.mean[i]
            )));
        }
        if let Some(k) = self.cov.iter().position(|c| !c.is_finite()) {
            return Err(EvalError::NonFinite(format!(
                "{what}: covariance[{}][{}] is {}",
                k / dim,
                k % dim,
                self.cov[k]
            )));
        }
        let scale = (0..dim)
            .map(|i| self.cov[i * dim + i].abs())
            .fold(0.0f64, f64::max);
        for i in 0..dim {
            for j in 0..i {
                let (a, b) = (self.cov[i * dim + j], self.cov[j * dim + i]);
                if (a - b).abs() > SYMMETRY_RTOL * scale {
                    return Err(EvalError::Linalg(format!(
                        "{what}: covariance is not symmetric (cov[{i}][{j}] = {a}, \
                         cov[{j}][{i}] = {b})"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The trace of the covariance (the total variance).
    pub fn trace(&self) -> f64 {
        let dim = self.dim();
        (0..dim).map(|i| self.cov[i * dim + i]).sum()
    }
}

/// [`EvalError::NonFinite`] naming the first NaN or infinite value of `features`.
pub(crate) fn check_finite_features(features: &Features, what: &str) -> Result<(), EvalError> {
    match features.as_slice().iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(k) => {
            let dim = features.dim();
            Err(EvalError::NonFinite(format!(
                "{what}: row {}, column {} is {}",
                k / dim,
                k % dim,
                features.as_slice()[k]
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_cov(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
        let (n, d) = (rows.len(), rows[0].len());
        let mean: Vec<f64> = (0..d)
            .map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n as f64)
            .collect();
        let mut cov = vec![0.0; d * d];
        for r in rows {
            for i in 0..d {
                for j in 0..d {
                    cov[i * d + j] += (r[i] - mean[i]) * (r[j] - mean[j]) / (n - 1) as f64;
                }
            }
        }
        (mean, cov)
    }

    #[test]
    fn mean_and_covariance_match_the_textbook_formula_across_blocks() {
        // More rows than one block, so that the block accumulation is exercised.
        let (n, d) = (BLOCK_ROWS + 37, 5);
        let data: Vec<f32> = (0..n * d)
            .map(|k| ((k * 7919 % 1009) as f32 / 1009.0 - 0.5) * (1 + k % d) as f32)
            .collect();
        let features = Features::from_rows(d, data.clone()).unwrap();
        let stats = FeatureStats::from_features(&features).unwrap();
        let rows: Vec<Vec<f64>> = data
            .chunks(d)
            .map(|r| r.iter().map(|&x| f64::from(x)).collect())
            .collect();
        let (mean, cov) = naive_cov(&rows);
        assert_eq!((stats.n, stats.dim()), (n, d));
        for (a, b) in stats.mean.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        for (a, b) in stats.cov.iter().zip(&cov) {
            assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
        assert!((stats.trace() - (0..d).map(|i| cov[i * d + i]).sum::<f64>()).abs() < 1e-12);
        stats.validate("test").unwrap();
    }

    #[test]
    fn two_rows_are_enough_and_one_is_not() {
        let two = Features::from_rows(2, vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let stats = FeatureStats::from_features(&two).unwrap();
        assert_eq!(stats.mean, vec![1.0, 2.0]);
        assert_eq!(stats.cov, vec![2.0, 2.0, 2.0, 2.0]);
        let one = two.head(1);
        assert!(matches!(
            FeatureStats::from_features(&one),
            Err(EvalError::TooFewSamples {
                need: 2,
                got: 1,
                ..
            })
        ));
    }

    #[test]
    fn non_finite_features_are_an_error_naming_the_value() {
        let f = Features::from_rows(2, vec![0.0, 1.0, f32::NAN, 3.0]).unwrap();
        let err = FeatureStats::from_features(&f).unwrap_err();
        assert!(matches!(err, EvalError::NonFinite(_)));
        assert!(err.to_string().contains("row 1, column 0"), "{err}");
    }

    #[test]
    fn validate_rejects_bad_shapes_values_and_asymmetry() {
        let good = FeatureStats {
            n: 3,
            mean: vec![0.0, 0.0],
            cov: vec![1.0, 0.5, 0.5, 1.0],
        };
        good.validate("x").unwrap();
        let mut short = good.clone();
        short.cov.pop();
        assert!(matches!(short.validate("x"), Err(EvalError::Shape(_))));
        let mut nan = good.clone();
        nan.mean[1] = f64::NAN;
        assert!(matches!(nan.validate("x"), Err(EvalError::NonFinite(_))));
        let mut asym = good.clone();
        asym.cov[1] = 0.6;
        assert!(matches!(asym.validate("x"), Err(EvalError::Linalg(_))));
        let empty = FeatureStats {
            n: 0,
            mean: vec![],
            cov: vec![],
        };
        assert!(matches!(empty.validate("x"), Err(EvalError::Shape(_))));
    }
}
