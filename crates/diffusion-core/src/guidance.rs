//! Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance",
//! arXiv:2207.12598): one network trained with labels randomly replaced by a null class
//! gives both predictions, and sampling extrapolates from the unconditional one.

use burn::config::Config;
use burn::tensor::{Tensor, backend::Backend};

use crate::SamplerError;
use crate::sampler::out_of_range;

/// Guidance parameters.
#[derive(Config, Debug, PartialEq)]
pub struct GuidanceConfig {
    /// Guidance weight `w` in `uncond + w (cond - uncond)`: 1 is plain conditional sampling,
    /// 0 unconditional, larger values trade diversity for fidelity. Finite.
    #[config(default = 3.0)]
    pub scale: f64,
    /// The class id the network was trained to read as "no label" (usually `num_classes`).
    pub null_label: usize,
}

impl GuidanceConfig {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), SamplerError> {
        if self.scale.is_finite() {
            Ok(())
        } else {
            Err(out_of_range("guidance scale", self.scale, "finite"))
        }
    }
}

/// Combines the two predictions: `uncond + scale * (cond - uncond)`. Works for any
/// prediction type, since each is affine in the score.
///
/// # Shapes
/// - `cond`, `uncond`: `[batch, channels, height, width]`
/// - returns: `[batch, channels, height, width]`
pub fn guide<B: Backend>(cond: Tensor<B, 4>, uncond: Tensor<B, 4>, scale: f64) -> Tensor<B, 4> {
    uncond.clone() + (cond - uncond).mul_scalar(scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{TestBackend, assert_close};

    #[test]
    fn scale_zero_one_and_beyond() {
        let device = Default::default();
        let cond = Tensor::<TestBackend, 4>::from_floats([[[[1.0, 2.0]]]], &device);
        let uncond = Tensor::<TestBackend, 4>::from_floats([[[[0.5, -1.0]]]], &device);
        assert_close(
            guide(cond.clone(), uncond.clone(), 0.0),
            uncond.clone(),
            1e-7,
        );
        assert_close(guide(cond.clone(), uncond.clone(), 1.0), cond.clone(), 1e-7);
        let expected = Tensor::<TestBackend, 4>::from_floats([[[[2.0, 8.0]]]], &device);
        assert_close(guide(cond, uncond, 3.0), expected, 1e-6);
    }

    #[test]
    fn non_finite_scale_is_rejected() {
        let err = GuidanceConfig::new(10)
            .with_scale(f64::NAN)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("guidance scale"), "{err}");
        assert!(GuidanceConfig::new(10).validate().is_ok());
    }
}
