//! Metrics on feature matrices, each in its own file with its paper and its reference
//! implementation:
//!
//! - [`frechet_distance`]: between Gaussian statistics ([`crate::stats::FeatureStats`]), as
//!   pytorch-fid's `calculate_frechet_distance` (FID with Inception features).
//! - [`kid`]: Kernel Inception Distance, the unbiased polynomial-kernel MMD^2 over subsets, as
//!   torch-fidelity.
//! - [`inception_score`]: from classifier logits, as torch-fidelity's `isc` without shuffling.
//! - [`precision_recall`]: k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019), as
//!   torch-fidelity's `prc`.
//!
//! All statistics are computed in f64 from the f32 features. Inputs are checked: mismatched
//! dimensions, too few samples and NaN or infinite values are errors, never panics. Each metric
//! is tested three ways: closed forms or properties, a direct implementation of its definition,
//! and golden numbers from the reference libraries (`tests/metrics_golden.rs`).

mod frechet;
mod inception_score;
mod kid;
mod precision_recall;

pub use frechet::{frechet_distance, trace_sqrt_product};
pub use inception_score::inception_score;
pub use kid::{Kid, KidConfig, kid, kid_from_subsets};
pub use precision_recall::{PrecisionRecall, precision_recall};

use crate::{EvalError, Features};

/// [`EvalError::Shape`] unless both sets have the same feature dimension.
fn check_same_dim(a: &Features, b: &Features, metric: &str) -> Result<(), EvalError> {
    if a.dim() != b.dim() {
        return Err(EvalError::Shape(format!(
            "{metric} between features of dimension {} and {}",
            a.dim(),
            b.dim()
        )));
    }
    Ok(())
}
