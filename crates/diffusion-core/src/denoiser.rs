//! The one thing samplers need from a network.

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::forward::timesteps_tensor;

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

    /// The prediction at one shared, possibly fractional timestep `t` for the whole batch:
    /// what the samplers that evaluate between training timesteps (Euler, Heun with
    /// Karras or linspace sigmas) call. The default rounds `t` to the nearest training
    /// timestep, which is exact for the integer timesteps of DDPM, DDIM and DPM-Solver++;
    /// networks with a continuous time embedding (the U-Nets) override it.
    ///
    /// # Shapes
    /// As [`Denoiser::denoise`].
    fn denoise_at(
        &self,
        x_t: Tensor<B, 4>,
        t: f64,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        let batch = x_t.dims()[0];
        let rounded = t.round().max(0.0) as usize;
        let timesteps = timesteps_tensor(&vec![rounded; batch], &x_t.device());
        self.denoise(x_t, timesteps, labels)
    }
}
