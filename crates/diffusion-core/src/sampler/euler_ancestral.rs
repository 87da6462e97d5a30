//! Euler ancestral sampling: an Euler step down to `sigma_down`, then fresh noise of
//! `sigma_up` back up to `sigma_next` (k-diffusion's `sample_euler_ancestral`, eta = 1), as
//! diffusers' `EulerAncestralDiscreteScheduler`.
//!
//! `sigma_up = sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)` and
//! `sigma_down = sqrt(sigma_next^2 - sigma_up^2)`: the step lands at variance `sigma_next^2`,
//! as the forward process would. [`super::Euler::ancestral`] builds the sampler; the state is
//! kept as `x_t` (see [`super::sigmas`]).
//!
//! | ours                  | diffusers                          |
//! |-----------------------|------------------------------------|
//! | `sigma`, `sigma_next` | `sigma_from`, `sigma_to`           |
//! | `sigma_up`            | `sigma_up`                         |
//! | `sigma_down`          | `sigma_down`                       |
//! | `x_sigma`             | `sample`                           |
//! | `pred_x0`             | `pred_original_sample`             |

use burn::tensor::{Tensor, backend::Backend};

use crate::NoiseSource;

/// One ancestral step in sigma space from `x_sigma` at `sigma`, with the Euler slope
/// `derivative`, to `sigma_next`: Euler down to `sigma_down`, then noise of `sigma_up`.
///
/// # Shapes
/// - `x_sigma`, `derivative`: `[batch, channels, height, width]`
/// - returns: `[batch, channels, height, width]`, in sigma space at `sigma_next`
pub(crate) fn ancestral_update<B: Backend>(
    x_sigma: Tensor<B, 4>,
    derivative: Tensor<B, 4>,
    sigma: f64,
    sigma_next: f64,
    noise: &mut dyn NoiseSource<B>,
) -> Tensor<B, 4> {
    let sigma_up = (sigma_next.powi(2) * (sigma.powi(2) - sigma_next.powi(2)) / sigma.powi(2))
        .max(0.0)
        .sqrt();
    let sigma_down = (sigma_next.powi(2) - sigma_up.powi(2)).max(0.0).sqrt();
    let (dims, device) = (x_sigma.dims(), x_sigma.device());
    let x_down = x_sigma + derivative.mul_scalar(sigma_down - sigma);
    // Drawn on every step, the last one (sigma_up = 0) too, so the stream matches diffusers.
    let z = noise.gaussian(dims, &device);
    x_down + z.mul_scalar(sigma_up)
}
