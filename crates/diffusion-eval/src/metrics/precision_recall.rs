//! Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
//! Metric for Assessing Generative Models"), as torch-fidelity's `prc_features_to_metric`.
//!
//! Each set's manifold is the union of balls around its points, the radius of a point's ball
//! being the distance to its k-th nearest neighbour in the same set, the point itself excluded
//! (torch-fidelity: `kthvalue(k + 1)` of a distance row that includes the zero self-distance).
//! Precision is the fraction of fake points inside some real ball, recall the fraction of real
//! points inside some fake ball; "inside" is `distance <= radius`, Euclidean distances.
//!
//! Distances come from `|x|^2 + |y|^2 - 2 x.y` (as `torch.cdist` computes them), in f64, one
//! tile of `ROW_BLOCK x COL_BLOCK` pairs at a time: memory stays `O((ROW_BLOCK + COL_BLOCK) *
//! dim + ROW_BLOCK * COL_BLOCK)` whatever the number of points, and the work is four passes of
//! matrix products (`N^2 dim` multiply-adds each for N points a set).

use faer::{Accum, Mat, Par};
use serde::{Deserialize, Serialize};

use crate::stats::check_finite_features;
use crate::{EvalError, Features};

/// Rows of the first operand per tile.
const ROW_BLOCK: usize = 1024;
/// Rows of the second operand per tile.
const COL_BLOCK: usize = 2048;

/// Precision and recall of a generated set against a real one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecall {
    /// Fraction of fake samples inside the real manifold (quality).
    pub precision: f64,
    /// Fraction of real samples inside the fake manifold (coverage).
    pub recall: f64,
}

impl PrecisionRecall {
    /// The harmonic mean, as torch-fidelity's `f_score` (its denominator floored at 1e-5).
    pub fn f_score(&self) -> f64 {
        2.0 * self.precision * self.recall / (self.precision + self.recall).max(1e-5)
    }
}

/// Precision and recall of `fake` against `real` with `k`-nearest-neighbour balls
/// (the paper and torch-fidelity use k = 3).
///
/// Errors: `k == 0` ([`EvalError::Config`]), a set with `k` rows or fewer
/// ([`EvalError::TooFewSamples`]: no k-th neighbour), different dimensions
/// ([`EvalError::Shape`]), non-finite features ([`EvalError::NonFinite`]).
pub fn precision_recall(
    real: &Features,
    fake: &Features,
    k: usize,
) -> Result<PrecisionRecall, EvalError> {
    if k == 0 {
        return Err(EvalError::Config {
            field: "k",
            message: "the neighbourhood size must be at least 1, got 0".into(),
        });
    }
    super::check_same_dim(real, fake, "precision/recall")?;
    for (set, name) in [(real, "real"), (fake, "fake")] {
        if set.len() <= k {
            return Err(EvalError::TooFewSamples {
                metric: if name == "real" {
                    "precision/recall (real set, k + 1)"
                } else {
                    "precision/recall (fake set, k + 1)"
                },
                need: k + 1,
                got: set.len(),
            });
        }
        check_finite_features(set, name)?;
    }
    let real_radii = knn_radii(real, k);
    let fake_radii = knn_radii(fake, k);
    let precision = fraction_covered(fake, real, &real_radii);
    let recall = fraction_covered(real, fake, &fake_radii);
    Ok(PrecisionRecall { precision, recall })
}

/// The distance from each row of `set` to its k-th nearest other row.
fn knn_radii(set: &Features, k: usize) -> Vec<f64> {
    // The k + 1 smallest distances of each row, ascending, self (0) included.
    let mut nearest = vec![f64::INFINITY; set.len() * (k + 1)];
    for_each_tile(set, set, |row0, col0, tile| {
        for c in 0..tile.ncols() {
            for r in 0..tile.nrows() {
                let (i, j) = (row0 + r, col0 + c);
                // The exact self-distance: the formula leaves rounding noise.
                let dist = if i == j { 0.0 } else { tile[(r, c)] };
                insert_sorted(&mut nearest[i * (k + 1)..(i + 1) * (k + 1)], dist);
            }
        }
    });
    nearest.chunks_exact(k + 1).map(|best| best[k]).collect()
}

/// Keeps `best` (ascending) the smallest values seen, inserting `value` if it belongs.
fn insert_sorted(best: &mut [f64], value: f64) {
    let last = best.len() - 1;
    if value >= best[last] {
        return;
    }
    let mut pos = last;
    while pos > 0 && best[pos - 1] > value {
        best[pos] = best[pos - 1];
        pos -= 1;
    }
    best[pos] = value;
}

/// The fraction of rows of `queries` within `radii[j]` of some row `j` of `centres`.
fn fraction_covered(queries: &Features, centres: &Features, radii: &[f64]) -> f64 {
    let mut covered = vec![false; queries.len()];
    for_each_tile(queries, centres, |row0, col0, tile| {
        for c in 0..tile.ncols() {
            let radius = radii[col0 + c];
            for r in 0..tile.nrows() {
                if tile[(r, c)] <= radius {
                    covered[row0 + r] = true;
                }
            }
        }
    });
    covered.iter().filter(|&&c| c).count() as f64 / queries.len() as f64
}

/// Calls `f(first_row, first_col, distances)` for every tile of the Euclidean distance matrix
/// between the rows of `a` and the rows of `b`, `distances[(r, c)]` being the distance between
/// rows `first_row + r` of `a` and `first_col + c` of `b`.
fn for_each_tile(a: &Features, b: &Features, mut f: impl FnMut(usize, usize, &Mat<f64>)) {
    let a_norms = squared_norms(a);
    let b_norms = squared_norms(b);
    let mut row0 = 0;
    while row0 < a.len() {
        let rows = ROW_BLOCK.min(a.len() - row0);
        let a_t = block_t(a, row0, rows); // [dim, rows]
        let mut col0 = 0;
        while col0 < b.len() {
            let cols = COL_BLOCK.min(b.len() - col0);
            let b_t = block_t(b, col0, cols); // [dim, cols]
            let mut tile = Mat::<f64>::zeros(rows, cols);
            faer::linalg::matmul::matmul(
                &mut tile,
                Accum::Replace,
                a_t.transpose(),
                &b_t,
                -2.0,
                Par::rayon(0),
            );
            for c in 0..cols {
                let bn = b_norms[col0 + c];
                for r in 0..rows {
                    let sq = tile[(r, c)] + a_norms[row0 + r] + bn;
                    tile[(r, c)] = sq.max(0.0).sqrt();
                }
            }
            f(row0, col0, &tile);
            col0 += cols;
        }
        row0 += rows;
    }
}

/// `|x|^2` of every row, in f64.
fn squared_norms(set: &Features) -> Vec<f64> {
    set.rows()
        .map(|row| row.iter().map(|&x| f64::from(x) * f64::from(x)).sum())
        .collect()
}

/// Rows `start..start + len` of `set` as the columns of a `[dim, len]` f64 matrix (each
/// column a contiguous copy of one row).
fn block_t(set: &Features, start: usize, len: usize) -> Mat<f64> {
    Mat::from_fn(set.dim(), len, |k, c| f64::from(set.row(start + c)[k]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(rows: &[&[f32]]) -> Features {
        Features::from_rows(rows[0].len(), rows.concat()).unwrap()
    }

    /// The definition with direct differences, quadratic memory.
    fn naive(real: &Features, fake: &Features, k: usize) -> PrecisionRecall {
        let dist = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
                .sum::<f64>()
                .sqrt()
        };
        let radii = |set: &Features| -> Vec<f64> {
            set.rows()
                .map(|x| {
                    let mut d: Vec<f64> = set.rows().map(|y| dist(x, y)).collect();
                    d.sort_by(f64::total_cmp);
                    d[k]
                })
                .collect()
        };
        let covered = |q: &Features, c: &Features, r: &[f64]| {
            q.rows()
                .filter(|x| c.rows().zip(r).any(|(y, &r)| dist(x, y) <= r))
                .count() as f64
                / q.len() as f64
        };
        let (rr, fr) = (radii(real), radii(fake));
        PrecisionRecall {
            precision: covered(fake, real, &rr),
            recall: covered(real, fake, &fr),
        }
    }

    fn cloud(n: usize, dim: usize, shift: f32, salt: usize) -> Features {
        let data = (0..n * dim)
            .map(|k| ((k * 7919 + salt * 104_729) % 1013) as f32 / 101.3 + shift)
            .collect();
        Features::from_rows(dim, data).unwrap()
    }

    #[test]
    fn a_hand_made_case() {
        // Real points on a line at 0, 1, 2, 3, 10; k = 1 radii: 1, 1, 1, 1, 7.
        let real = points(&[&[0.0], &[1.0], &[2.0], &[3.0], &[10.0]]);
        // Fake: 2.5 (inside), 5 (inside the ball of 10), 20 (outside), 1.5 (inside).
        let fake = points(&[&[2.5], &[5.0], &[20.0], &[1.5]]);
        let pr = precision_recall(&real, &fake, 1).unwrap();
        assert_eq!(pr.precision, 0.75);
        // Fake radii (k = 1): 1 (2.5 -> 1.5), 2.5 (5 -> 2.5), 15 (20 -> 5), 1 (1.5 -> 2.5).
        // Real 1, 2 and 3 lie within 1 of 1.5 or 2.5, 10 within 15 of 20; 0 is 1.5 from the
        // nearest fake point, outside every ball.
        assert_eq!(pr.recall, 0.8);
        assert_eq!(pr, naive(&real, &fake, 1));
    }

    #[test]
    fn matches_the_definition_across_several_tiles() {
        // More rows than ROW_BLOCK so that tiles and their offsets are exercised.
        let real = cloud(ROW_BLOCK + 40, 3, 0.0, 1);
        let fake = cloud(300, 3, 1.5, 2);
        let pr = precision_recall(&real, &fake, 3).unwrap();
        assert_eq!(pr, naive(&real, &fake, 3));
        assert!(pr.precision > 0.0 && pr.precision < 1.0, "{pr:?}");
    }

    #[test]
    fn identical_sets_are_fully_covered_and_far_sets_not_at_all() {
        let real = cloud(50, 4, 0.0, 3);
        let same = precision_recall(&real, &real, 3).unwrap();
        assert_eq!((same.precision, same.recall), (1.0, 1.0));
        assert!((same.f_score() - 1.0).abs() < 1e-12);
        let far = cloud(50, 4, 1000.0, 4);
        let apart = precision_recall(&real, &far, 3).unwrap();
        assert_eq!((apart.precision, apart.recall), (0.0, 0.0));
        assert_eq!(apart.f_score(), 0.0);
    }

    #[test]
    fn duplicates_count_as_neighbours() {
        // Three copies of one point: with k = 2 each copy's radius is 0 (its two twins).
        let real = points(&[&[0.0], &[0.0], &[0.0], &[5.0]]);
        let fake = points(&[&[0.0], &[0.1], &[4.0]]);
        let pr = precision_recall(&real, &fake, 2).unwrap();
        assert_eq!(pr, naive(&real, &fake, 2));
    }

    #[test]
    fn insert_sorted_keeps_the_smallest() {
        let mut best = [f64::INFINITY; 3];
        for v in [5.0, 1.0, 4.0, 0.5, 3.0, 9.0] {
            insert_sorted(&mut best, v);
        }
        assert_eq!(best, [0.5, 1.0, 3.0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let real = cloud(4, 2, 0.0, 5);
        assert!(matches!(
            precision_recall(&real, &real, 0),
            Err(EvalError::Config { .. })
        ));
        assert!(matches!(
            precision_recall(&real, &real, 4),
            Err(EvalError::TooFewSamples {
                need: 5,
                got: 4,
                ..
            })
        ));
        let other = cloud(10, 3, 0.0, 6);
        assert!(matches!(
            precision_recall(&real, &other, 1),
            Err(EvalError::Shape(_))
        ));
        let nan = Features::from_rows(2, vec![0.0, 1.0, 2.0, f32::NAN, 1.0, 1.0]).unwrap();
        assert!(matches!(
            precision_recall(&real, &nan, 1),
            Err(EvalError::NonFinite(_))
        ));
    }
}
