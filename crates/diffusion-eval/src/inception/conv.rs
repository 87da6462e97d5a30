//! `BasicConv2d`, torchvision's conv + batch norm + ReLU unit, and [`Builder`], which reads it
//! from a [`WeightSource`] under its state-dict prefix (`Mixed_5b.branch1x1.conv.weight`,
//! `.bn.*`) and folds the eval-mode batch norm into the convolution.

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::relu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::WeightSource;
use crate::EvalError;

/// torchvision's `BasicConv2d` uses `BatchNorm2d(eps=0.001)`.
pub const BATCH_NORM_EPS: f64 = 1e-3;

/// Shape of one `BasicConv2d`: channels, kernel, stride and (symmetric) padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConvSpec {
    c_in: usize,
    c_out: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 2],
}

impl ConvSpec {
    /// A stride-1, unpadded `kernel` convolution from `c_in` to `c_out` channels.
    pub(crate) const fn new(c_in: usize, c_out: usize, kernel: [usize; 2]) -> Self {
        Self {
            c_in,
            c_out,
            kernel,
            stride: 1,
            padding: [0, 0],
        }
    }

    pub(crate) const fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    pub(crate) const fn padding(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }
}

/// Turns state-dict entries into modules on `device`.
pub(crate) struct Builder<'a, B: Backend> {
    pub(crate) source: &'a mut dyn WeightSource,
    pub(crate) device: &'a B::Device,
}

impl<B: Backend> Builder<'_, B> {
    /// The `BasicConv2d` under `prefix` (`Mixed_5b.branch1x1`): its conv weight and batch-norm statistics, with the
    /// (eval-mode) batch norm folded into the convolution.
    ///
    /// `relu(gamma * (conv(x, w) - mean) / sqrt(var + eps) + beta)` is `relu(conv(x, w * s) + b)`
    /// with `s = gamma / sqrt(var + eps)` and `b = beta - mean * s` per output channel: one pass
    /// over the activations instead of two, computed here in f64 from the f32 parameters.
    pub(crate) fn conv(
        &mut self,
        prefix: &str,
        spec: ConvSpec,
    ) -> Result<BasicConv2d<B>, EvalError> {
        let key = |part: &str| format!("{prefix}.{part}");
        let ConvSpec {
            c_in,
            c_out,
            kernel: [kh, kw],
            ..
        } = spec;
        let mut weight = self
            .source
            .tensor(&key("conv.weight"), &[c_out, c_in, kh, kw])?;
        let gamma = self.source.tensor(&key("bn.weight"), &[c_out])?;
        let beta = self.source.tensor(&key("bn.bias"), &[c_out])?;
        let mean = self.source.tensor(&key("bn.running_mean"), &[c_out])?;
        let var = self.source.tensor(&key("bn.running_var"), &[c_out])?;

        let fan_in = c_in * kh * kw;
        let mut bias = Vec::with_capacity(c_out);
        for (o, row) in weight.chunks_exact_mut(fan_in).enumerate() {
            let scale = f64::from(gamma[o]) / (f64::from(var[o]) + BATCH_NORM_EPS).sqrt();
            for w in row {
                *w = (f64::from(*w) * scale) as f32;
            }
            bias.push((f64::from(beta[o]) - f64::from(mean[o]) * scale) as f32);
        }
        let [ph, pw] = spec.padding;
        let conv = Conv2d {
            weight: Param::from_data(TensorData::new(weight, [c_out, c_in, kh, kw]), self.device),
            bias: Some(Param::from_data(
                TensorData::new(bias, [c_out]),
                self.device,
            )),
            stride: [spec.stride, spec.stride],
            kernel_size: [kh, kw],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(ph, pw, ph, pw),
        };
        Ok(BasicConv2d { conv })
    }
}

/// torchvision's `BasicConv2d` (conv without bias, batch norm, ReLU), batch norm folded in.
#[derive(Module, Debug)]
pub struct BasicConv2d<B: Backend> {
    conv: Conv2d<B>,
}

impl<B: Backend> BasicConv2d<B> {
    /// # Shapes
    /// `[n, c_in, h, w]` to `[n, c_out, h', w']`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        relu(self.conv.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;

    use super::*;

    type B = burn::backend::Flex;

    /// Values by position and by the key's last part (positive variances, gammas near 1).
    struct Formula;

    impl WeightSource for Formula {
        fn tensor(&mut self, key: &str, shape: &[usize]) -> Result<Vec<f32>, EvalError> {
            let n: usize = shape.iter().product();
            let offset = match key.rsplit('.').next() {
                Some("running_var") => 1.5,
                Some("weight") if key.contains(".bn.") => 0.8,
                _ => 0.0,
            };
            Ok((0..n)
                .map(|i| offset + ((i * 7 % 11) as f32 - 5.0) / 10.0)
                .collect())
        }
    }

    #[test]
    fn folded_batch_norm_is_conv_then_eval_batch_norm() {
        let device = Default::default();
        let spec = ConvSpec::new(2, 3, [3, 1]).stride(2).padding([1, 0]);
        let folded = Builder::<B> {
            source: &mut Formula,
            device: &device,
        }
        .conv("Mixed_9z.branch", spec)
        .unwrap();

        let tensor = |key: &str, shape: [usize; 4]| {
            let values = Formula.tensor(key, &shape).unwrap();
            Tensor::<B, 4>::from_data(TensorData::new(values, shape), &device)
        };
        let w = tensor("k.conv.weight", [3, 2, 3, 1]);
        let [gamma, beta, mean, var] =
            ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
                .map(|part| tensor(&format!("k.{part}"), [1, 3, 1, 1]));
        let x = Tensor::<B, 4>::from_data(
            TensorData::new(
                (0..2 * 2 * 5 * 4)
                    .map(|i| (i as f32 * 0.37).sin())
                    .collect(),
                [2, 2, 5, 4],
            ),
            &device,
        );
        let options = ConvOptions::new([2, 2], [1, 0], [1, 1], 1);
        let y = conv2d(x.clone(), w, None, options);
        let want = relu((y - mean) / (var + BATCH_NORM_EPS as f32).sqrt() * gamma + beta);
        let got = folded.forward(x);
        assert_eq!(got.dims(), [2, 3, 3, 2]); // 5 rows padded by 1, 4 columns, stride 2
        got.into_data()
            .assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    }
}
