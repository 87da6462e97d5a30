//! Branch-free `exp`, `sigmoid` and a softmax row for f32, written so that loops over them
//! vectorize (libm's `expf` is a call per element, which leaves SiLU and softmax scalar).
//!
//! The same functions as the patched burn-flex's `ops::activation::{exp_f32, sigmoid_f32}`
//! and `ops::attention::softmax_row_f32` (`patches/burn-flex/`), kept here so that the
//! kernels build against burn-flex as published, where they are private or absent, and give
//! the same bits either way.

/// Interleaved partial maxima and sums of [`softmax_row`]; the compiler keeps each set in one
/// vector register.
const LANES: usize = 8;

/// `e^x` for f32 (Cephes' `expf`: range reduction by ln 2 in two parts, a degree-5
/// polynomial, and the power of two built in the exponent bits), branch-free so that the
/// compiler vectorizes loops over it. Within [-87.3, 88.7], where `e^x` is a normal f32, the
/// relative error is within 2 ulp; above it the result is infinity, below it 0 (subnormal
/// results are flushed), and NaN stays NaN.
#[inline]
// max/min rather than clamp, and Cephes' coefficients as published (the last rounds to 0.5):
// the code of the patched burn-flex, for the same bits.
#[allow(clippy::manual_clamp, clippy::excessive_precision)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MIN: f32 = -87.336_55;
    const MAX: f32 = 88.722_83;
    // Adding and subtracting 1.5 * 2^23 rounds to an integer (exact for |v| < 2^22), and
    // the integer is then the low bits of the sum: no `floor` (a libm call on baseline
    // x86-64) and no float-to-int cast (scalar code for its NaN and overflow cases).
    const ROUND: f32 = 12_582_912.0;
    // max/min rather than clamp: NaN becomes MIN here and is put back at the end.
    let xc = x.max(MIN).min(MAX);
    // n = round(x / ln 2), then r = x - n ln 2 in [-ln2/2, ln2/2].
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let r = xc - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1;
    let e_r = p * r2 + r + 1.0;
    // 2^n for n in [-126, 128], as two factors so that n = 128 fits the exponent field.
    let n = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let half = n >> 1;
    let pow2 = |k: i32| f32::from_bits((k.wrapping_add(127) as u32) << 23);
    let e = e_r * pow2(half) * pow2(n - half);
    // Selects, not branches: they compile to blends.
    let e = if x > MAX { f32::INFINITY } else { e };
    let e = if x < MIN { 0.0 } else { e };
    if x.is_nan() { x } else { e }
}

/// `1 / (1 + e^-x)` without branches or libm calls, so that loops over it vectorize.
///
/// `e^-x` comes from [`exp`] (within 2 ulp); where it overflows (`x < -88.7`) the result is
/// 0, where it underflows 1. NaN stays NaN.
#[inline]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `row ← softmax(row · scale)` with [`exp`] and [`LANES`] partial maxima and sums, so that
/// the loops vectorize. A row of only `-inf` becomes zeros.
pub(crate) fn softmax_row(row: &mut [f32], scale: f32) {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    for chunk in row.chunks_mut(LANES) {
        for (s, m) in chunk.iter_mut().zip(&mut maxima) {
            *s *= scale;
            *m = if *s > *m { *s } else { *m };
        }
    }
    let max = maxima.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return;
    }
    let mut sums = [0.0f32; LANES];
    for chunk in row.chunks_mut(LANES) {
        for (s, acc) in chunk.iter_mut().zip(&mut sums) {
            *s = exp(*s - max);
            *acc += *s;
        }
    }
    let inv_sum = 1.0 / sums.iter().sum::<f32>();
    row.iter_mut().for_each(|s| *s *= inv_sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Within `ulps` units in the last place of `want` (rounded to f32), or both tiny.
    fn within_ulps(got: f32, want: f64, ulps: f64, tiny: f64) -> bool {
        (got as f64 - want).abs() <= ulps * f32::EPSILON as f64 * want.abs() + tiny
    }

    /// Evenly spaced values over `[lo, hi]`, plus the special values.
    fn sweep(lo: f32, hi: f32, n: usize) -> Vec<f32> {
        let mut xs: Vec<f32> = (0..=n)
            .map(|i| lo + (hi - lo) * i as f32 / n as f32)
            .collect();
        xs.extend([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 0.5, -0.5]);
        xs
    }

    #[test]
    fn exp_matches_f64_within_2_ulp_where_the_result_is_normal() {
        for x in sweep(-87.3, 88.7, 200_000) {
            let want = (x as f64).exp();
            assert!(
                within_ulps(exp(x), want, 2.0, 0.0),
                "exp({x}) = {} want {want}",
                exp(x)
            );
        }
    }

    #[test]
    fn exp_saturates_and_keeps_nan() {
        for x in [88.8, 89.0, 1e10, f32::MAX, f32::INFINITY] {
            assert_eq!(exp(x), f32::INFINITY, "exp({x})");
        }
        for x in [-87.4, -88.0, -100.0, -1e10, f32::MIN, f32::NEG_INFINITY] {
            assert_eq!(exp(x), 0.0, "exp({x})");
        }
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn sigmoid_matches_a_scalar_loop_in_f64() {
        // Spans the range where sigmoid saturates, plus the extremes.
        let mut xs = sweep(-100.0, 100.0, 200_000);
        xs.extend([88.0, -88.0, 89.0, -89.0, f32::MAX, f32::MIN]);
        let mut got = vec![0.0f32; xs.len()];
        // The loop the kernels run (and that vectorizes).
        for (g, &x) in got.iter_mut().zip(&xs) {
            *g = sigmoid(x);
        }
        for (&g, &x) in got.iter().zip(&xs) {
            let want = 1.0 / (1.0 + (-(x as f64)).exp());
            // A few ulp, or absolute 1e-36 where exp flushes a subnormal result to 0.
            assert!(
                within_ulps(g, want, 4.0, 1e-36),
                "sigmoid({x}) = {g} want {want}"
            );
        }
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert_eq!(sigmoid(f32::NEG_INFINITY), 0.0);
        assert!(sigmoid(f32::NAN).is_nan(), "NaN must stay NaN");
    }

    /// `softmax(row · scale)` by the textbook loops, in f64.
    fn softmax_reference(row: &[f32], scale: f32) -> Vec<f64> {
        let scaled: Vec<f64> = row.iter().map(|&s| (s * scale) as f64).collect();
        let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scaled.iter().map(|&s| (s - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|&e| e / sum).collect()
    }

    #[test]
    fn softmax_row_matches_a_scalar_loop_in_f64() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 * 20.0 - 10.0
        };
        // Lengths around the lane count, a U-Net's token counts, and a long odd one.
        for len in [1, 2, 7, 8, 9, 15, 16, 17, 49, 64, 256, 1031] {
            for scale in [1.0, 0.125, 3.0] {
                let row: Vec<f32> = (0..len).map(|_| next()).collect();
                let mut got = row.clone();
                softmax_row(&mut got, scale);
                let want = softmax_reference(&row, scale);
                let total: f64 = got.iter().map(|&p| p as f64).sum();
                assert!((total - 1.0).abs() < 1e-5, "len {len}: sums to {total}");
                for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= 1e-6 * w + 1e-12,
                        "len {len} scale {scale} [{i}]: {g} want {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn softmax_row_of_masked_scores() {
        let mut row = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
        softmax_row(&mut row, 1.0);
        assert_eq!(row, [0.0, 0.5, 0.0, 0.5]);
        let mut row = [f32::NEG_INFINITY; 11];
        softmax_row(&mut row, 0.5);
        assert_eq!(row, [0.0; 11], "an all-masked row is zeros, not NaN");
        let mut row = [1e30, 0.0, -1e30];
        softmax_row(&mut row, 1.0);
        assert_eq!(row, [1.0, 0.0, 0.0], "large scores do not overflow");
    }
}
