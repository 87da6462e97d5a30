//! AdamW with every hyper-parameter explicit.

use burn::config::Config;
use burn::optim::AdamWConfig;

use crate::TrainError;

/// AdamW (Loshchilov & Hutter, decoupled weight decay) as PyTorch's `torch.optim.AdamW`.
///
/// The update is `p <- p * (1 - lr * weight_decay) - lr * m_hat / (sqrt(v_hat) + epsilon)`.
/// Burn's own `AdamWConfig` defaults differ from PyTorch's (`epsilon = 1e-5`,
/// `weight_decay = 1e-4`); here every value is spelled out:
/// - `beta_1 = 0.9`, `beta_2 = 0.999`, `epsilon = 1e-8`: PyTorch's defaults, and what the DDPM
///   paper, diffusers' training scripts and lucidrains use.
/// - `weight_decay = 0.0`: the DDPM paper and lucidrains train with plain Adam, which is AdamW
///   with no decay (PyTorch's AdamW default is `0.01`; diffusers' scripts use `1e-2`).
/// - `grad_clip_norm = 1.0`: clip by the global norm over all parameters, as
///   `torch.nn.utils.clip_grad_norm_` (Burn's built-in clipping is per tensor, so it is not used).
#[derive(Config, Debug, PartialEq)]
pub struct OptimizerConfig {
    /// Peak learning rate, reached at the end of the warm-up.
    #[config(default = 2e-4)]
    pub lr: f64,
    /// Exponential decay rate of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Exponential decay rate of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the denominator for numerical stability (PyTorch's default, not Burn's 1e-5).
    #[config(default = 1e-8)]
    pub epsilon: f32,
    /// Decoupled weight decay per unit of learning rate; 0 gives Adam.
    #[config(default = 0.0)]
    pub weight_decay: f32,
    /// Maximum global gradient norm; `None` disables clipping (the norm is still logged).
    #[config(default = "Some(1.0)")]
    pub grad_clip_norm: Option<f64>,
}

impl OptimizerConfig {
    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err(TrainError::invalid(
                "optimizer.lr",
                format!("must be in (0, 1], got {}", self.lr),
            ));
        }
        for (field, beta) in [
            ("optimizer.beta_1", self.beta_1),
            ("optimizer.beta_2", self.beta_2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(TrainError::invalid(
                    field,
                    format!("must be in [0, 1), got {beta}"),
                ));
            }
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(TrainError::invalid(
                "optimizer.epsilon",
                format!("must be finite and > 0, got {}", self.epsilon),
            ));
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return Err(TrainError::invalid(
                "optimizer.weight_decay",
                format!("must be in [0, 1), got {}", self.weight_decay),
            ));
        }
        if let Some(norm) = self.grad_clip_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(TrainError::invalid(
                "optimizer.grad_clip_norm",
                format!("must be finite and > 0 (or null to disable), got {norm}"),
            ));
        }
        Ok(())
    }

    /// The Burn optimizer config, without Burn's per-tensor clipping (see
    /// [`crate::clip_grad_norm`]).
    pub fn to_burn(&self) -> AdamWConfig {
        AdamWConfig::new()
            .with_beta_1(self.beta_1)
            .with_beta_2(self.beta_2)
            .with_epsilon(self.epsilon)
            .with_weight_decay(self.weight_decay)
            .with_grad_clipping(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestAutodiff;
    use burn::module::{Module, Param};
    use burn::optim::{GradientsParams, Optimizer};
    use burn::tensor::{Tensor, TensorData};

    #[derive(Module, Debug)]
    struct Scalar<B: burn::tensor::backend::Backend> {
        w: Param<Tensor<B, 1>>,
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_field() {
        OptimizerConfig::new().validate().unwrap();
        let err = OptimizerConfig::new().with_lr(0.0).validate().unwrap_err();
        assert!(err.to_string().contains("optimizer.lr"));
        let err = OptimizerConfig::new()
            .with_beta_2(1.0)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("optimizer.beta_2"));
        let err = OptimizerConfig::new()
            .with_grad_clip_norm(Some(-1.0))
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("optimizer.grad_clip_norm"));
    }

    /// Two AdamW steps on one scalar against the PyTorch formula computed by hand in f64.
    #[test]
    fn adamw_matches_the_pytorch_update() {
        let device = Default::default();
        let config = OptimizerConfig::new().with_weight_decay(0.1);
        let mut optim = config
            .to_burn()
            .init::<TestAutodiff, Scalar<TestAutodiff>>();
        let mut model = Scalar {
            w: Param::from_tensor(Tensor::<TestAutodiff, 1>::from_data(
                TensorData::from([1.5f32]),
                &device,
            )),
        };
        let lr = 0.01;
        let (b1, b2, eps, wd) = (0.9f64, 0.999f64, 1e-8f64, 0.1f64);
        let (mut w, mut m, mut v) = (1.5f64, 0.0f64, 0.0f64);
        for t in 1..=2 {
            // loss = w^3, grad = 3 w^2
            let loss = model.w.val().powi_scalar(3).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
            let g = 3.0 * w * w;
            m = b1 * m + (1.0 - b1) * g;
            v = b2 * v + (1.0 - b2) * g * g;
            let m_hat = m / (1.0 - b1.powi(t));
            let v_hat = v / (1.0 - b2.powi(t));
            w = w * (1.0 - lr * wd) - lr * m_hat / (v_hat.sqrt() + eps);
        }
        let got = model.w.val().into_data().to_vec::<f32>().unwrap()[0] as f64;
        assert!((got - w).abs() < 1e-5, "burn {got} vs torch formula {w}");
    }
}
