//! The one thing samplers need from a network.

use burn::tensor::{Int, Tensor, backend::Backend};

/// A network that, given a noisy batch `x_t` at integer timesteps `t`, predicts the quantity
/// named by the schedule's [`crate::PredictionType`] (epsilon, x0 or v).
///
/// Core never depends on the network crate: the U-Nets implement this trait, and so can any
/// closed-form oracle or test double.
///
/// # Shapes
/// - `x_t`: `[batch, channels, height, width]`
/// - `timesteps`: `[batch]`, each in `0..num_train_timesteps`
/// - `labels`: `[batch]` class ids; `None` asks for the unconditional prediction. A conditional
///   network also accepts its null class id (`num_classes`) for classifier-free guidance.
/// - returns: `[batch, channels, height, width]`
pub trait Denoiser<B: Backend> {
    fn denoise(
        &self,
        x_t: Tensor<B, 4>,
        timesteps: Tensor<B, 1, Int>,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4>;
}
