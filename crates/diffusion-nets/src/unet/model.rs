//! The U-Net module: forward in numbered phases, input checks, and the `Denoiser` impl.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use diffusion_core::Denoiser;

use super::levels::{DownBlock, MidBlock, UpBlock};
use crate::NetError;
use crate::blocks::{LabelEmbedding, SinusoidalEmbedding, TimestepEmbedding};
use crate::fused::group_norm_silu;

/// A denoising U-Net (conv, residual or residual-attention), built by
/// [`crate::UNetConfig::init`]. Field names follow diffusers' `UNet2DModel`.
///
/// Dropout is active only on an autodiff backend (training); evaluate and sample with the
/// inner-backend module from `AutodiffModule::valid()`, which is deterministic.
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    /// Sinusoidal features of the timestep (no parameters).
    pub time_proj: SinusoidalEmbedding,
    /// MLP from the sinusoidal features to the time embedding.
    pub time_embedding: TimestepEmbedding<B>,
    /// Class embedding (with a null class), added to the time embedding.
    pub class_embedding: Option<LabelEmbedding<B>>,
    /// Stem: 3x3 convolution from the image to `base_channels`.
    pub conv_in: Conv2d<B>,
    /// Down levels, highest resolution first.
    pub down_blocks: Vec<DownBlock<B>>,
    /// Bottleneck.
    pub mid_block: MidBlock<B>,
    /// Up levels, lowest resolution first.
    pub up_blocks: Vec<UpBlock<B>>,
    /// Group norm of the head.
    pub conv_norm_out: GroupNorm<B>,
    /// Head: 3x3 convolution to the output channels.
    pub conv_out: Conv2d<B>,
    /// Channels the input must have.
    pub in_channels: usize,
    /// Number of real classes of a conditional net (the null class id).
    pub num_classes: Option<usize>,
    /// Inputs' height and width must be multiples of this.
    pub size_divisor: usize,
}

impl<B: Backend> UNet<B> {
    /// Predicts from a noisy batch, without checking the inputs (see [`UNet::try_forward`]).
    /// `labels = None` on a conditional net means the null class (unconditional branch).
    ///
    /// # Shapes
    /// - `x`: `[batch, in_channels, h, w]`, `h` and `w` multiples of `size_divisor`
    /// - `timesteps`: `[batch]`
    /// - `labels`: `[batch]`, each in `0..=num_classes`
    /// - returns: `[batch, out_channels, h, w]`
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        timesteps: Tensor<B, 1, Int>,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        self.forward_float(x, timesteps.float(), labels)
    }

    /// [`UNet::forward`] at timesteps that may lie between training timesteps (what the
    /// Euler and Heun samplers ask for with Karras or linspace sigmas).
    ///
    /// # Shapes
    /// As [`UNet::forward`].
    pub fn forward_float(
        &self,
        x: Tensor<B, 4>,
        timesteps: Tensor<B, 1>,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        let [batch, _, _, _] = x.dims();
        let device = x.device();

        // 1. Embed time and label.
        let mut temb = self
            .time_embedding
            .forward(self.time_proj.forward_float(timesteps)); // [batch, temb]
        if let Some(classes) = &self.class_embedding {
            temb = temb
                + match labels {
                    Some(labels) => classes.forward(labels),
                    None => classes.forward_null(batch, &device),
                };
        }

        // 2. Stem.
        let mut h = self.conv_in.forward(x); // [batch, base, h, w]
        let mut skips = vec![h.clone()];

        // 3. Down: every block pushes its output as a skip.
        for block in &self.down_blocks {
            h = block.forward(h, &temb, &mut skips);
        }

        // 4. Middle.
        h = self.mid_block.forward(h, &temb);

        // 5. Up: every block pops the skips of its level.
        for block in &self.up_blocks {
            h = block.forward(h, &temb, &mut skips);
        }

        // 6. Head.
        self.conv_out
            .forward(group_norm_silu(&self.conv_norm_out, h)) // [batch, out, h, w]
    }

    /// Checks shapes and label presence (no device sync): what must hold for `forward`
    /// not to panic inside a tensor op.
    pub fn check_input(
        &self,
        x: &Tensor<B, 4>,
        timesteps: &Tensor<B, 1, Int>,
        labels: Option<&Tensor<B, 1, Int>>,
    ) -> Result<(), NetError> {
        let [t_batch] = timesteps.dims();
        self.check_input_dims(x, t_batch, labels)
    }

    /// [`UNet::check_input`] with the number of timesteps instead of the tensor.
    fn check_input_dims(
        &self,
        x: &Tensor<B, 4>,
        t_batch: usize,
        labels: Option<&Tensor<B, 1, Int>>,
    ) -> Result<(), NetError> {
        let [batch, channels, height, width] = x.dims();
        if channels != self.in_channels {
            return Err(NetError::Shape(format!(
                "input has {channels} channels, the network expects {}",
                self.in_channels
            )));
        }
        let d = self.size_divisor;
        if height == 0 || width == 0 || !height.is_multiple_of(d) || !width.is_multiple_of(d) {
            return Err(NetError::Shape(format!(
                "input is {height}x{width}; height and width must be positive multiples of {d}"
            )));
        }
        if batch == 0 {
            return Err(NetError::Shape("empty batch".into()));
        }
        if t_batch != batch {
            return Err(NetError::Shape(format!(
                "{t_batch} timesteps for a batch of {batch}"
            )));
        }
        if let Some(labels) = labels {
            if self.num_classes.is_none() {
                return Err(NetError::UnexpectedLabels);
            }
            let [l_batch] = labels.dims();
            if l_batch != batch {
                return Err(NetError::Shape(format!(
                    "{l_batch} labels for a batch of {batch}"
                )));
            }
        }
        Ok(())
    }

    /// Checks label values: each must lie in `0..=num_classes` (`num_classes` is the null
    /// class); any label on an unconditional net is an error. Reads the labels back from the
    /// device, so call it once per batch of user input rather than per sampling step.
    pub fn check_labels(&self, labels: &Tensor<B, 1, Int>) -> Result<(), NetError> {
        let max = self.num_classes.ok_or(NetError::UnexpectedLabels)?;
        let values = labels
            .to_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .map_err(|e| NetError::Shape(format!("labels are not integers: {e:?}")))?;
        match values.into_iter().find(|l| *l < 0 || *l > max as i64) {
            Some(label) => Err(NetError::LabelOutOfRange { label, max }),
            None => Ok(()),
        }
    }

    /// [`UNet::forward`] after [`UNet::check_input`] and [`UNet::check_labels`].
    ///
    /// # Shapes
    /// As [`UNet::forward`].
    pub fn try_forward(
        &self,
        x: Tensor<B, 4>,
        timesteps: Tensor<B, 1, Int>,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Result<Tensor<B, 4>, NetError> {
        self.check_input(&x, &timesteps, labels.as_ref())?;
        if let Some(labels) = &labels {
            self.check_labels(labels)?;
        }
        Ok(self.forward(x, timesteps, labels))
    }
}

impl<B: Backend> Denoiser<B> for UNet<B> {
    /// Checks shapes (cheap, no device sync) and runs [`UNet::forward`]. Label *values* are
    /// not read back on every step: callers validate user labels once with
    /// [`UNet::check_labels`].
    ///
    /// # Panics
    /// On inputs that fail [`UNet::check_input`] (a programming error of the caller: the
    /// trait has no error channel).
    fn denoise(
        &self,
        x_t: Tensor<B, 4>,
        timesteps: Tensor<B, 1, Int>,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        if let Err(e) = self.check_input(&x_t, &timesteps, labels.as_ref()) {
            panic!("UNet::denoise: {e}");
        }
        self.forward(x_t, timesteps, labels)
    }

    /// As [`Denoiser::denoise`], with the continuous time embedding at a fractional `t`.
    fn denoise_at(
        &self,
        x_t: Tensor<B, 4>,
        t: f64,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Tensor<B, 4> {
        let batch = x_t.dims()[0];
        if let Err(e) = self.check_input_dims(&x_t, batch, labels.as_ref()) {
            panic!("UNet::denoise_at: {e}");
        }
        let timesteps = Tensor::<B, 1>::full([batch], t, &x_t.device());
        self.forward_float(x_t, timesteps, labels)
    }
}
