//! Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
//! estimate of the squared MMD between two feature sets under the polynomial kernel
//! `k(x, y) = (gamma x.y + coef0)^degree`, averaged over random subsets, as torch-fidelity's
//! `kid_features_to_metric` (its `mmd2(..., mmd_est="unbiased")` and `kernel_poly`).
//!
//! For one pair of subsets `X`, `Y` of `m` rows each (`K_XX`, `K_YY`, `K_XY` the kernel
//! matrices):
//!
//! ```text
//! mmd2 = (sum_{i != j} K_XX[i,j] + sum_{i != j} K_YY[i,j]) / (m (m - 1))
//!      - 2 sum_{i,j} K_XY[i,j] / m^2
//! ```
//!
//! and the result is the mean and the standard deviation (numpy's `np.std`, ddof = 0) over the
//! subsets. The estimate is symmetric in the two sets. torch-fidelity computes in the dtype of
//! the features (float32 in practice, where the cancellation in `mmd2` costs it several digits);
//! this computes in f64. Subsets are drawn with our own seeded ChaCha8 generator, so [`kid`]
//! does not reproduce torch-fidelity's subsets; [`kid_from_subsets`] takes given ones (the golden
//! test replays torch-fidelity's).

use faer::{Accum, Mat, Par};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::stats::check_finite_features;
use crate::{EvalError, Features};

/// KID's protocol: subsets and kernel. The defaults are torch-fidelity's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KidConfig {
    /// Number of subset pairs averaged over (torch-fidelity `kid_subsets`, 100).
    pub subsets: usize,
    /// Rows per subset, drawn without replacement from each set (`kid_subset_size`, 1000);
    /// at least 2, at most the size of either set.
    pub subset_size: usize,
    /// Polynomial kernel degree (`kid_kernel_poly_degree`, 3), at least 1.
    pub degree: u32,
    /// Kernel scale (`kid_kernel_poly_gamma`); `None` is `1 / dim`, torch-fidelity's default.
    pub gamma: Option<f64>,
    /// Kernel offset (`kid_kernel_poly_coef0`, 1).
    pub coef0: f64,
    /// Seed of the subset draws (torch-fidelity's `rng_seed` default, 2020, though its numpy
    /// generator draws other subsets).
    pub seed: u64,
}

impl Default for KidConfig {
    fn default() -> Self {
        Self {
            subsets: 100,
            subset_size: 1000,
            degree: 3,
            gamma: None,
            coef0: 1.0,
            seed: 2020,
        }
    }
}

impl KidConfig {
    /// Checks every field against its allowed range ([`EvalError::Config`] names the field).
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |field, message: String| Err(EvalError::Config { field, message });
        if self.subsets == 0 {
            return bad("KidConfig.subsets", "must be at least 1, got 0".into());
        }
        if self.subset_size < 2 {
            return bad(
                "KidConfig.subset_size",
                format!("must be at least 2, got {}", self.subset_size),
            );
        }
        self.validate_kernel()
    }

    fn validate_kernel(&self) -> Result<(), EvalError> {
        let bad = |field, message: String| Err(EvalError::Config { field, message });
        if self.degree == 0 {
            return bad("KidConfig.degree", "must be at least 1, got 0".into());
        }
        if let Some(gamma) = self.gamma
            && !(gamma.is_finite() && gamma > 0.0)
        {
            return bad(
                "KidConfig.gamma",
                format!("must be finite and positive, got {gamma}"),
            );
        }
        if !self.coef0.is_finite() {
            return bad(
                "KidConfig.coef0",
                format!("must be finite, got {}", self.coef0),
            );
        }
        Ok(())
    }
}

/// A KID estimate and the protocol it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Kid {
    /// Mean of the per-subset unbiased MMD^2 estimates (can be slightly negative).
    pub mean: f64,
    /// Their standard deviation (ddof = 0, as `np.std`).
    pub std: f64,
    /// Number of subset pairs.
    pub subsets: usize,
    /// Rows per subset.
    pub subset_size: usize,
}

/// KID between `real` and `fake` with `cfg.subsets` pairs of random subsets of
/// `cfg.subset_size` rows each, drawn from `cfg.seed`.
///
/// Errors: an invalid config ([`EvalError::Config`]), a set smaller than `subset_size`
/// ([`EvalError::TooFewSamples`]), different dimensions ([`EvalError::Shape`]), non-finite
/// features ([`EvalError::NonFinite`]).
pub fn kid(real: &Features, fake: &Features, cfg: &KidConfig) -> Result<Kid, EvalError> {
    cfg.validate()?;
    for set in [real, fake] {
        if set.len() < cfg.subset_size {
            return Err(EvalError::TooFewSamples {
                metric: "KID (subset_size)",
                need: cfg.subset_size,
                got: set.len(),
            });
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let subsets: Vec<(Vec<usize>, Vec<usize>)> = (0..cfg.subsets)
        .map(|_| {
            let r = rand::seq::index::sample(&mut rng, real.len(), cfg.subset_size).into_vec();
            let f = rand::seq::index::sample(&mut rng, fake.len(), cfg.subset_size).into_vec();
            (r, f)
        })
        .collect();
    kid_from_subsets(real, fake, &subsets, cfg)
}

/// KID over given subsets: each pair holds row indices into `real` and into `fake`, all of one
/// length `m >= 2` (torch-fidelity's estimator needs equal sizes). Only the kernel fields of
/// `cfg` are used (`degree`, `gamma`, `coef0`).
///
/// Errors: no subsets, unequal or too short index lists, an index out of range or different
/// dimensions ([`EvalError::Shape`]), an invalid kernel ([`EvalError::Config`]), non-finite
/// features ([`EvalError::NonFinite`]).
pub fn kid_from_subsets(
    real: &Features,
    fake: &Features,
    subsets: &[(Vec<usize>, Vec<usize>)],
    cfg: &KidConfig,
) -> Result<Kid, EvalError> {
    cfg.validate_kernel()?;
    super::check_same_dim(real, fake, "KID")?;
    check_finite_features(real, "KID real features")?;
    check_finite_features(fake, "KID fake features")?;
    let m = match subsets.first() {
        None => return Err(EvalError::Shape("KID needs at least one subset".into())),
        Some((r, _)) => r.len(),
    };
    if m < 2 {
        return Err(EvalError::Shape(format!(
            "KID subsets need at least 2 rows, got {m}"
        )));
    }
    for (s, (r, f)) in subsets.iter().enumerate() {
        if r.len() != m || f.len() != m {
            return Err(EvalError::Shape(format!(
                "KID subset {s} has {} real and {} fake rows, expected {m} of each",
                r.len(),
                f.len()
            )));
        }
        for (indices, set, name) in [(r, real, "real"), (f, fake, "fake")] {
            if let Some(&bad) = indices.iter().find(|&&i| i >= set.len()) {
                return Err(EvalError::Shape(format!(
                    "KID subset {s}: {name} row {bad} out of range ({} rows)",
                    set.len()
                )));
            }
        }
    }

    let gamma = cfg.gamma.unwrap_or(1.0 / real.dim() as f64);
    let kernel = PolyKernel {
        gamma,
        coef0: cfg.coef0,
        degree: cfg.degree as i32,
    };
    let mmds: Vec<f64> = subsets
        .iter()
        .map(|(r, f)| {
            let x = gather_t(real, r);
            let y = gather_t(fake, f);
            mmd2_unbiased(&kernel, &x, &y)
        })
        .collect();
    let count = mmds.len() as f64;
    let mean = mmds.iter().sum::<f64>() / count;
    let var = mmds.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / count;
    Ok(Kid {
        mean,
        std: var.sqrt(),
        subsets: subsets.len(),
        subset_size: m,
    })
}

/// `k(x, y) = (gamma x.y + coef0)^degree`.
struct PolyKernel {
    gamma: f64,
    coef0: f64,
    degree: i32,
}

impl PolyKernel {
    /// The kernel matrix between the columns of `a_t` and of `b_t` (`[dim, m]` each): [m, m].
    fn matrix(&self, a_t: &Mat<f64>, b_t: &Mat<f64>) -> Mat<f64> {
        let mut dot = Mat::<f64>::zeros(a_t.ncols(), b_t.ncols());
        faer::linalg::matmul::matmul(
            &mut dot,
            Accum::Replace,
            a_t.transpose(),
            b_t,
            1.0,
            Par::rayon(0),
        );
        Mat::from_fn(dot.nrows(), dot.ncols(), |i, j| {
            (dot[(i, j)] * self.gamma + self.coef0).powi(self.degree)
        })
    }
}

/// torch-fidelity's `mmd2(K_XX, K_XY, K_YY)` with `mmd_est="unbiased"`, for subsets given as
/// `[dim, m]` matrices (one row per column).
fn mmd2_unbiased(kernel: &PolyKernel, x_t: &Mat<f64>, y_t: &Mat<f64>) -> f64 {
    let m = x_t.ncols() as f64;
    let off_diagonal_sum = |k: &Mat<f64>| -> f64 {
        let total: f64 = (0..k.ncols()).map(|j| k.col(j).iter().sum::<f64>()).sum();
        let diagonal: f64 = (0..k.ncols()).map(|i| k[(i, i)]).sum();
        total - diagonal
    };
    let kt_xx_sum = off_diagonal_sum(&kernel.matrix(x_t, x_t));
    let kt_yy_sum = off_diagonal_sum(&kernel.matrix(y_t, y_t));
    let k_xy = kernel.matrix(x_t, y_t);
    let k_xy_sum: f64 = (0..k_xy.ncols())
        .map(|j| k_xy.col(j).iter().sum::<f64>())
        .sum();
    (kt_xx_sum + kt_yy_sum) / (m * (m - 1.0)) - 2.0 * k_xy_sum / (m * m)
}

/// Rows `indices` of `set` as the columns of a `[dim, indices.len()]` f64 matrix.
fn gather_t(set: &Features, indices: &[usize]) -> Mat<f64> {
    Mat::from_fn(set.dim(), indices.len(), |k, c| {
        f64::from(set.row(indices[c])[k])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(n: usize, dim: usize, shift: f32, salt: usize) -> Features {
        let data = (0..n * dim)
            .map(|k| ((k * 7919 + salt * 104_729) % 1013) as f32 / 1013.0 + shift)
            .collect();
        Features::from_rows(dim, data).unwrap()
    }

    /// The estimator written out entry by entry, as in the paper.
    fn mmd2_naive(x: &[&[f32]], y: &[&[f32]], gamma: f64, coef0: f64, degree: i32) -> f64 {
        let k = |a: &[f32], b: &[f32]| {
            let dot: f64 = a
                .iter()
                .zip(b)
                .map(|(p, q)| f64::from(*p) * f64::from(*q))
                .sum();
            (gamma * dot + coef0).powi(degree)
        };
        let m = x.len();
        let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    xx += k(x[i], x[j]);
                    yy += k(y[i], y[j]);
                }
                xy += k(x[i], y[j]);
            }
        }
        let m = m as f64;
        (xx + yy) / (m * (m - 1.0)) - 2.0 * xy / (m * m)
    }

    #[test]
    fn matches_the_estimator_written_out() {
        let (real, fake) = (features(12, 5, 0.0, 1), features(15, 5, 0.3, 2));
        let subsets = vec![
            (vec![0, 3, 5, 7, 11], vec![14, 2, 9, 0, 4]),
            (vec![1, 2, 3, 4, 6], vec![5, 6, 7, 8, 10]),
        ];
        let cfg = KidConfig::default();
        let kid = kid_from_subsets(&real, &fake, &subsets, &cfg).unwrap();
        let per_subset: Vec<f64> = subsets
            .iter()
            .map(|(r, f)| {
                let x: Vec<&[f32]> = r.iter().map(|&i| real.row(i)).collect();
                let y: Vec<&[f32]> = f.iter().map(|&i| fake.row(i)).collect();
                mmd2_naive(&x, &y, 1.0 / 5.0, 1.0, 3)
            })
            .collect();
        let mean = (per_subset[0] + per_subset[1]) / 2.0;
        let std = (per_subset[0] - per_subset[1]).abs() / 2.0;
        assert!(
            (kid.mean - mean).abs() < 1e-12 * mean.abs().max(1.0),
            "{kid:?}"
        );
        assert!((kid.std - std).abs() < 1e-12, "{kid:?} vs {std}");
        assert!(kid.mean > 0.0, "shifted sets are apart");
        assert_eq!((kid.subsets, kid.subset_size), (2, 5));
    }

    #[test]
    fn whole_set_subsets_give_the_full_estimate_with_zero_spread() {
        // With subset_size = n every subset is a permutation of the whole set, and the
        // estimator does not depend on the order of rows.
        let (real, fake) = (features(9, 4, 0.0, 3), features(9, 4, 0.1, 4));
        let cfg = KidConfig {
            subsets: 4,
            subset_size: 9,
            seed: 7,
            ..KidConfig::default()
        };
        let k = kid(&real, &fake, &cfg).unwrap();
        let all: Vec<usize> = (0..9).collect();
        let full = kid_from_subsets(&real, &fake, &[(all.clone(), all)], &cfg).unwrap();
        assert!((k.mean - full.mean).abs() < 1e-12, "{k:?} vs {full:?}");
        assert!(k.std < 1e-12);
    }

    #[test]
    fn seeded_draws_repeat_and_differ_between_seeds() {
        let (real, fake) = (features(40, 3, 0.0, 5), features(40, 3, 0.05, 6));
        let cfg = KidConfig {
            subsets: 5,
            subset_size: 10,
            ..KidConfig::default()
        };
        let a = kid(&real, &fake, &cfg).unwrap();
        assert_eq!(a, kid(&real, &fake, &cfg).unwrap());
        let other = KidConfig { seed: 1, ..cfg };
        assert_ne!(a.mean, kid(&real, &fake, &other).unwrap().mean);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let (real, fake) = (features(8, 3, 0.0, 7), features(8, 3, 0.0, 8));
        let cfg = KidConfig::default();
        assert!(matches!(
            kid(&real, &fake, &cfg),
            Err(EvalError::TooFewSamples {
                need: 1000,
                got: 8,
                ..
            })
        ));
        let small = KidConfig {
            subset_size: 1,
            ..cfg.clone()
        };
        assert!(matches!(
            kid(&real, &fake, &small),
            Err(EvalError::Config {
                field: "KidConfig.subset_size",
                ..
            })
        ));
        let gamma = KidConfig {
            gamma: Some(-1.0),
            subset_size: 4,
            ..cfg.clone()
        };
        assert!(matches!(
            kid(&real, &fake, &gamma),
            Err(EvalError::Config {
                field: "KidConfig.gamma",
                ..
            })
        ));
        let out_of_range = [(vec![0, 1], vec![1, 8])];
        assert!(matches!(
            kid_from_subsets(&real, &fake, &out_of_range, &cfg),
            Err(EvalError::Shape(_))
        ));
        let unequal = [(vec![0, 1, 2], vec![1, 2])];
        assert!(matches!(
            kid_from_subsets(&real, &fake, &unequal, &cfg),
            Err(EvalError::Shape(_))
        ));
        assert!(matches!(
            kid_from_subsets(&real, &fake, &[], &cfg),
            Err(EvalError::Shape(_))
        ));
        let other_dim = features(8, 4, 0.0, 9);
        assert!(matches!(
            kid_from_subsets(&real, &other_dim, &[(vec![0, 1], vec![0, 1])], &cfg),
            Err(EvalError::Shape(_))
        ));
    }
}
