//! Exponential moving average of the weights, as diffusers' `EMAModel`.
//!
//! The EMA copy lives on the inner (non-autodiff) backend, obtained with `.valid()`, so it never
//! joins the autodiff graph; it is updated with a [`ModuleMapper`] as in Burn's wgan example.

use burn::config::Config;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How the decay grows from 0 to its cap during the first updates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmaWarmup {
    /// No warm-up: the decay is `decay` from the first update (the DDPM paper).
    None,
    /// diffusers' default: `(1 + s) / (10 + s)`.
    Diffusers,
    /// diffusers' `use_ema_warmup`: `1 - (1 + s / inv_gamma)^(-power)`.
    Power {
        /// Inverse multiplicative factor of the step.
        inv_gamma: f64,
        /// Exponent; 2/3 suits runs of ~1M steps, 3/4 of ~100k steps.
        power: f64,
    },
}

/// EMA of the weights.
#[derive(Config, Debug, PartialEq)]
pub struct EmaConfig {
    /// Upper bound of the decay.
    #[config(default = 0.9999)]
    pub decay: f64,
    /// Lower bound of the decay once updates start.
    #[config(default = 0.0)]
    pub min_decay: f64,
    /// Optimizer steps before the EMA starts following the weights (it copies them until then).
    #[config(default = 0)]
    pub update_after_step: usize,
    /// Warm-up rule.
    #[config(default = "EmaWarmup::Diffusers")]
    pub warmup: EmaWarmup,
}

impl EmaConfig {
    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(0.0..=1.0).contains(&self.decay) {
            return Err(TrainError::invalid(
                "ema.decay",
                format!("must be in [0, 1], got {}", self.decay),
            ));
        }
        if !(0.0..=self.decay).contains(&self.min_decay) {
            return Err(TrainError::invalid(
                "ema.min_decay",
                format!(
                    "must be in [0, ema.decay = {}], got {}",
                    self.decay, self.min_decay
                ),
            ));
        }
        if let EmaWarmup::Power { inv_gamma, power } = self.warmup
            && !(inv_gamma.is_finite() && inv_gamma > 0.0 && power.is_finite() && power > 0.0)
        {
            return Err(TrainError::invalid(
                "ema.warmup",
                format!("inv_gamma and power must be finite and > 0, got {inv_gamma}, {power}"),
            ));
        }
        Ok(())
    }

    /// Decay used by the update that follows optimizer step number `optimization_step`
    /// (1-based: the first update passes 1), exactly as diffusers' `EMAModel.get_decay`.
    pub fn decay_at(&self, optimization_step: usize) -> f64 {
        let step = optimization_step as f64 - self.update_after_step as f64 - 1.0;
        if step <= 0.0 {
            return 0.0;
        }
        let warm = match self.warmup {
            EmaWarmup::None => self.decay,
            EmaWarmup::Diffusers => (1.0 + step) / (10.0 + step),
            EmaWarmup::Power { inv_gamma, power } => 1.0 - (1.0 + step / inv_gamma).powf(-power),
        };
        warm.min(self.decay).max(self.min_decay)
    }
}

/// Moves `ema` towards the current weights of `model`: `ema <- ema - (1 - decay) (ema - model)`.
///
/// Parameters are paired by [`burn::module::ParamId`], which `.valid()`, records and
/// checkpoints preserve; an EMA parameter with no counterpart is left as is.
pub fn ema_update<B, M>(ema: M::InnerModule, model: &M, decay: f64) -> M::InnerModule
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let current = model.valid();
    let mut weights = GradientsParams::new();
    current.visit(&mut CollectWeights::<B::InnerBackend> {
        weights: &mut weights,
        _backend: core::marker::PhantomData,
    });
    ema.map(&mut EmaMapper::<B::InnerBackend> {
        weights,
        decay,
        _backend: core::marker::PhantomData,
    })
}

struct CollectWeights<'a, B: Backend> {
    weights: &'a mut GradientsParams,
    _backend: core::marker::PhantomData<B>,
}

impl<B: Backend> ModuleVisitor<B> for CollectWeights<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.weights.register::<B, D>(param.id, param.val());
    }
}

struct EmaMapper<B: Backend> {
    weights: GradientsParams,
    decay: f64,
    _backend: core::marker::PhantomData<B>,
}

impl<B: Backend> ModuleMapper<B> for EmaMapper<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, ema, mapper) = param.consume();
        let updated = match self.weights.remove::<B, D>(id) {
            // decay 0 copies exactly instead of computing ema - (ema - w), which can round.
            Some(weight) if self.decay == 0.0 => weight,
            Some(weight) => {
                let diff = ema.clone() - weight; // [same shape as the parameter]
                ema - diff.mul_scalar(1.0 - self.decay)
            }
            None => ema,
        };
        Param::from_mapped_value(id, updated.detach(), mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{TestAutodiff, TestBackend};
    use burn::tensor::TensorData;

    #[derive(Module, Debug)]
    struct Toy<B: Backend> {
        a: Param<Tensor<B, 2>>,
        b: Param<Tensor<B, 1>>,
    }

    fn toy(values: [f32; 3]) -> Toy<TestAutodiff> {
        let device = Default::default();
        Toy {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(values[..2].to_vec(), [1, 2]),
                &device,
            )),
            b: Param::from_tensor(Tensor::from_data(TensorData::from([values[2]]), &device)),
        }
    }

    fn flat(module: &Toy<TestBackend>) -> Vec<f64> {
        let mut out: Vec<f64> = module.a.val().into_data().iter::<f64>().collect();
        out.extend(module.b.val().into_data().iter::<f64>());
        out
    }

    #[test]
    fn diffusers_decay_rules() {
        let config = EmaConfig::new();
        assert_eq!(config.decay_at(1), 0.0);
        assert!((config.decay_at(2) - 2.0 / 11.0).abs() < 1e-15);
        assert!((config.decay_at(101) - 101.0 / 110.0).abs() < 1e-15);
        assert_eq!(config.decay_at(10_000_000), 0.9999);

        let power = EmaConfig::new().with_warmup(EmaWarmup::Power {
            inv_gamma: 1.0,
            power: 0.75,
        });
        assert!((power.decay_at(11) - (1.0 - 11f64.powf(-0.75))).abs() < 1e-15);

        let floored = EmaConfig::new()
            .with_min_decay(0.5)
            .with_update_after_step(3);
        assert_eq!(floored.decay_at(4), 0.0);
        assert_eq!(floored.decay_at(5), 0.5);
        assert_eq!(
            EmaConfig::new().with_warmup(EmaWarmup::None).decay_at(2),
            0.9999
        );
    }

    #[test]
    fn bad_decays_are_rejected_with_their_field() {
        let err = EmaConfig::new().with_decay(1.5).validate().unwrap_err();
        assert!(err.to_string().contains("ema.decay"));
        let err = EmaConfig::new()
            .with_min_decay(0.99999)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("ema.min_decay"));
    }

    /// The mapper against the recurrence computed on the host in f64 over a sequence of
    /// weights, with the diffusers warm-up.
    #[test]
    fn ema_follows_the_closed_form() {
        let config = EmaConfig::new().with_decay(0.8);
        let mut model = toy([1.0, -2.0, 0.5]);
        let mut ema = model.valid();
        let mut expected = flat(&ema);
        for step in 1..=6usize {
            let values = [
                step as f32,
                -(step as f32) * 0.5,
                0.25 * step as f32 * step as f32,
            ];
            let fresh = toy(values);
            // keep the ids of the original parameters, change only the values
            model = Toy {
                a: Param::initialized(model.a.id, fresh.a.val()),
                b: Param::initialized(model.b.id, fresh.b.val()),
            };
            let decay = config.decay_at(step);
            ema = ema_update::<TestAutodiff, _>(ema, &model, decay);
            for (e, w) in expected.iter_mut().zip(values) {
                *e = decay * *e + (1.0 - decay) * w as f64;
            }
            let got = flat(&ema);
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-5, "step {step}: {got:?} vs {expected:?}");
            }
        }
        // the first update (decay 0) copies, later ones blend
        assert!(config.decay_at(1) == 0.0 && config.decay_at(6) > 0.0);
    }
}
