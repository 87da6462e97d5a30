//! Fréchet distance between Gaussian feature statistics (Heusel et al. 2017, "GANs Trained by
//! a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium"): FID when the features
//! are Inception pool3 activations.
//!
//! ```text
//! d^2 = |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})
//! ```
//!
//! # Against pytorch-fid
//!
//! pytorch-fid's `calculate_frechet_distance` computes `covmean = scipy.linalg.sqrtm(sigma1 @
//! sigma2)` (a Schur method), retries with `1e-6 I` added to both covariances if that is not
//! finite, raises `ValueError` if the diagonal of `covmean` has an imaginary part above 1e-3,
//! and keeps `trace(covmean).real`. Only that trace matters, and the trace of the principal
//! square root is the sum of the square roots of the eigenvalues of `sigma1 sigma2`. With
//! `sigma1 = V diag(l) V^T` and `W = V diag(sqrt(l))`, those eigenvalues are the eigenvalues of
//! the symmetric `M = W^T sigma2 W` (`W W^T = sigma1`, and `AB`, `BA` share their non-zero
//! eigenvalues), so here: two symmetric eigensolves and two products, no Schur form (faer;
//! about 3 s at d = 2048 on two cores, against 32 s for scipy's sqrtm and 14 s for the same
//! route with nalgebra: `scripts/bench/sqrtm-compare/RESULTS.md`).
//!
//! - Near-singular products (n < d, constant features): their zero eigenvalues come out of
//!   scipy as rounding noise (tiny positive, negative or complex values whose square roots add
//!   about 1e-8 relative to the trace) and out of the symmetric solver as tiny values that are
//!   clamped at zero. scipy 1.17's sqrtm stays finite on such products, so pytorch-fid does not
//!   take its `eps` fallback on them (the golden script records this per case). The two
//!   results differ by that noise: 1.4e-8 of the distance on the golden n < d case (d = 48,
//!   `tests/metrics_golden.rs`), 1.3e-7 of the trace at d = 2048 with n = 1000, where two
//!   implementations of scipy's own formula already differ from scipy by 3e-8
//!   (`scripts/bench/sqrtm-compare/RESULTS.md`).
//! - The eps fallback guards against an exactly singular Schur form, which this formulation does
//!   not have: zero eigenvalues simply contribute zero. A non-finite result can only come from
//!   overflow and is an [`EvalError::Linalg`].
//! - The imaginary-part check: for covariances (positive semi-definite) `M` is positive
//!   semi-definite and the square root is real. scipy's result turns complex when the product has
//!   a negative eigenvalue, which real covariances have only as rounding noise; a covariance, or
//!   a product, with an eigenvalue below `-1e-6` times the largest is an [`EvalError::Linalg`]
//!   here (pytorch-fid's test is absolute, 1e-3 on the imaginary part of the diagonal). Negative
//!   noise is clamped at zero, which is what taking the real part does in pytorch-fid.

use faer::{Accum, Mat, MatRef, Par, Side};

use crate::EvalError;
use crate::stats::FeatureStats;

/// A covariance or product eigenvalue below `-PSD_RTOL` times the largest is not rounding noise.
const PSD_RTOL: f64 = 1e-6;

/// The Fréchet distance between `N(a.mean, a.cov)` and `N(b.mean, b.cov)`: the same number as
/// pytorch-fid's `calculate_frechet_distance(a.mean, a.cov, b.mean, b.cov)` (see the module
/// documentation for how its square root is computed). Not clamped at zero: like pytorch-fid's,
/// it can come out a little below zero for two nearly identical sets.
///
/// Errors: statistics of different dimensions or with inconsistent shapes
/// ([`EvalError::Shape`]), non-finite values ([`EvalError::NonFinite`]), a covariance that is
/// not symmetric or not positive semi-definite, or an eigensolver that does not converge
/// ([`EvalError::Linalg`]).
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> Result<f64, EvalError> {
    a.validate("first statistics")?;
    b.validate("second statistics")?;
    if a.dim() != b.dim() {
        return Err(EvalError::Shape(format!(
            "Fréchet distance between statistics of dimension {} and {}",
            a.dim(),
            b.dim()
        )));
    }
    let (mu1, mu2) = (&a.mean, &b.mean);
    let diff_sq: f64 = mu1.iter().zip(mu2).map(|(x, y)| (x - y) * (x - y)).sum();
    let tr_covmean = trace_sqrt_product(&a.cov, &b.cov, a.dim())?;
    // pytorch-fid's order of terms.
    Ok(diff_sq + a.trace() + b.trace() - 2.0 * tr_covmean)
}

/// `trace((sigma1 sigma2)^{1/2})` for two `d x d` row-major covariances (symmetric positive
/// semi-definite): the term of the Fréchet distance that needs linear algebra.
///
/// Errors as [`frechet_distance`]; the shapes are checked, symmetry is assumed (the lower
/// triangles are read).
pub fn trace_sqrt_product(sigma1: &[f64], sigma2: &[f64], d: usize) -> Result<f64, EvalError> {
    if d == 0 || sigma1.len() != d * d || sigma2.len() != d * d {
        return Err(EvalError::Shape(format!(
            "trace_sqrt_product: covariances of {} and {} values are not {d} x {d}",
            sigma1.len(),
            sigma2.len()
        )));
    }
    let s1 = Mat::from_fn(d, d, |i, j| sigma1[i * d + j]);
    let s2 = Mat::from_fn(d, d, |i, j| sigma2[i * d + j]);

    // 1. sigma1 = V diag(l) V^T.
    let evd = s1
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| EvalError::Linalg(format!("eigendecomposition of sigma1: {e:?}")))?;
    let l = evd.S().column_vector();
    let l: Vec<f64> = (0..d).map(|i| l[i]).collect();
    check_psd(&l, "the first covariance")?;

    // 2. W = V diag(sqrt(l)), dropping the null space (l <= 0 after the check: noise), which
    //    contributes nothing to W W^T = sigma1: [d, r].
    let kept: Vec<usize> = (0..d).filter(|&j| l[j] > 0.0).collect();
    if kept.is_empty() {
        return Ok(0.0);
    }
    let v = evd.U();
    let w = Mat::from_fn(d, kept.len(), |i, c| v[(i, kept[c])] * l[kept[c]].sqrt());

    // 3. M = W^T sigma2 W: [r, r], with the eigenvalues of sigma1 sigma2 (and d - r zeros).
    let m = congruence(w.as_ref(), s2.as_ref());
    let mu = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| EvalError::Linalg(format!("eigenvalues of sigma1 sigma2: {e:?}")))?;
    check_psd(&mu, "the product of the covariances")?;

    // 4. trace of the square root: the sum of the square roots of the eigenvalues.
    let tr_covmean: f64 = mu.iter().map(|&x| x.max(0.0).sqrt()).sum();
    if !tr_covmean.is_finite() {
        return Err(EvalError::Linalg(format!(
            "trace of sqrt(sigma1 sigma2) is {tr_covmean} (overflow: covariances too large)"
        )));
    }
    Ok(tr_covmean)
}

/// `W^T S W` for `W: [d, r]`, `S: [d, d]` symmetric: [r, r].
fn congruence(w: MatRef<'_, f64>, s: MatRef<'_, f64>) -> Mat<f64> {
    let (d, r) = (w.nrows(), w.ncols());
    let mut sw = Mat::<f64>::zeros(d, r);
    faer::linalg::matmul::matmul(&mut sw, Accum::Replace, s, w, 1.0, Par::rayon(0));
    let mut m = Mat::<f64>::zeros(r, r);
    faer::linalg::matmul::matmul(
        &mut m,
        Accum::Replace,
        w.transpose(),
        &sw,
        1.0,
        Par::rayon(0),
    );
    m
}

/// Rejects eigenvalues that are negative beyond rounding noise.
fn check_psd(eigenvalues: &[f64], what: &str) -> Result<(), EvalError> {
    let max = eigenvalues.iter().copied().fold(0.0f64, f64::max);
    let min = eigenvalues.iter().copied().fold(0.0f64, f64::min);
    if min < -PSD_RTOL * max || (max == 0.0 && min < 0.0) {
        return Err(EvalError::Linalg(format!(
            "{what} is not positive semi-definite (eigenvalue {min:e} against a largest of \
             {max:e}); pytorch-fid would report an imaginary component"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagonal_stats(mean: Vec<f64>, diag: &[f64]) -> FeatureStats {
        let d = diag.len();
        let mut cov = vec![0.0; d * d];
        for (i, &v) in diag.iter().enumerate() {
            cov[i * d + i] = v;
        }
        FeatureStats { n: 10, mean, cov }
    }

    /// A fixed rotation (Givens rotations over all pairs) applied as Q diag Q^T.
    fn rotated(diag: &[f64]) -> Vec<f64> {
        let d = diag.len();
        let mut q = vec![0.0; d * d];
        for i in 0..d {
            q[i * d + i] = 1.0;
        }
        for a in 0..d {
            for b in a + 1..d {
                let t = 0.3 + 0.1 * (a * d + b) as f64;
                let (c, s) = (t.cos(), t.sin());
                for row in 0..d {
                    let (x, y) = (q[row * d + a], q[row * d + b]);
                    q[row * d + a] = c * x - s * y;
                    q[row * d + b] = s * x + c * y;
                }
            }
        }
        let mut out = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] = (0..d).map(|k| q[i * d + k] * diag[k] * q[j * d + k]).sum();
            }
        }
        out
    }

    #[test]
    fn commuting_covariances_have_the_closed_form() {
        // Same eigenvectors: d^2 = |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
        let a = [4.0, 1.0, 0.25, 9.0];
        let b = [1.0, 1.0, 1.0, 0.5];
        let sa = FeatureStats {
            n: 10,
            mean: vec![0.0, 1.0, 2.0, 3.0],
            cov: rotated(&a),
        };
        let sb = FeatureStats {
            n: 10,
            mean: vec![1.0, 1.0, 2.0, 1.0],
            cov: rotated(&b),
        };
        let expected = 1.0
            + 4.0
            + a.iter()
                .zip(&b)
                .map(|(x, y)| (x.sqrt() - y.sqrt()).powi(2))
                .sum::<f64>();
        let fd = frechet_distance(&sa, &sb).unwrap();
        assert!((fd - expected).abs() < 1e-12, "{fd} vs {expected}");
        // Symmetric in its arguments.
        let back = frechet_distance(&sb, &sa).unwrap();
        assert!((fd - back).abs() < 1e-12);
    }

    #[test]
    fn identical_statistics_are_at_distance_zero() {
        let s = FeatureStats {
            n: 10,
            mean: vec![0.5, -1.0, 2.0],
            cov: rotated(&[3.0, 0.1, 1e-4]),
        };
        let fd = frechet_distance(&s, &s).unwrap();
        assert!(fd.abs() < 1e-12, "{fd}");
    }

    #[test]
    fn singular_covariances_contribute_their_non_zero_part() {
        // Rank 1 and rank 2, overlapping in one direction: sqrt(2 * 8) = 4 there.
        let a = diagonal_stats(vec![0.0; 3], &[2.0, 0.0, 0.0]);
        let b = diagonal_stats(vec![0.0; 3], &[8.0, 1.0, 0.0]);
        let fd = frechet_distance(&a, &b).unwrap();
        assert!((fd - (2.0 + 9.0 - 2.0 * 4.0)).abs() < 1e-12, "{fd}");
        // An all-zero covariance: trace of the root is zero.
        let zero = diagonal_stats(vec![0.0; 3], &[0.0, 0.0, 0.0]);
        assert!((frechet_distance(&zero, &b).unwrap() - 9.0).abs() < 1e-12);
    }

    #[test]
    fn non_psd_inputs_are_a_linalg_error_not_a_panic() {
        // pytorch-fid raises "Imaginary component" on this pair.
        let a = diagonal_stats(vec![0.0; 3], &[1.0, 1.0, 1.0]);
        let b = diagonal_stats(vec![0.0; 3], &[1.0, 1.0, -0.5]);
        assert!(matches!(
            frechet_distance(&a, &b),
            Err(EvalError::Linalg(m)) if m.contains("product")
        ));
        assert!(matches!(
            frechet_distance(&b, &a),
            Err(EvalError::Linalg(m)) if m.contains("first covariance")
        ));
    }

    #[test]
    fn shapes_and_values_are_checked() {
        let a = diagonal_stats(vec![0.0; 3], &[1.0, 1.0, 1.0]);
        let b = diagonal_stats(vec![0.0; 2], &[1.0, 1.0]);
        assert!(matches!(frechet_distance(&a, &b), Err(EvalError::Shape(_))));
        let mut nan = a.clone();
        nan.cov[4] = f64::INFINITY;
        assert!(matches!(
            frechet_distance(&a, &nan),
            Err(EvalError::NonFinite(_))
        ));
        assert!(matches!(
            trace_sqrt_product(&[1.0], &[1.0, 2.0], 1),
            Err(EvalError::Shape(_))
        ));
    }
}
