//! Gradient clipping by the global norm over all parameters, as `torch.nn.utils.clip_grad_norm_`.
//!
//! Burn's built-in clipping works tensor by tensor, which changes the direction of the update;
//! the global norm scales every gradient by one factor.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

/// Computes the L2 norm of all gradients of `module` taken together and, when `max_norm` is
/// given and the norm exceeds it, scales every gradient by `max_norm / (norm + 1e-6)` (the
/// PyTorch formula). Returns the gradients and the norm before clipping.
///
/// A non-finite norm leaves the gradients untouched: the caller skips such a step.
pub fn clip_grad_norm<B, M>(
    module: &M,
    mut grads: GradientsParams,
    max_norm: Option<f64>,
) -> (GradientsParams, f64)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let norm = global_grad_norm::<B, M>(module, &grads);
    if let Some(max_norm) = max_norm
        && norm.is_finite()
    {
        let coef = max_norm / (norm + 1e-6);
        if coef < 1.0 {
            module.visit(&mut ScaleGrads::<B> {
                grads: &mut grads,
                factor: coef,
                _backend: core::marker::PhantomData,
            });
        }
    }
    (grads, norm)
}

/// The L2 norm of all gradients of `module` taken together (f64 on the host; one device read).
pub fn global_grad_norm<B, M>(module: &M, grads: &GradientsParams) -> f64
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
{
    let mut squares = SumSquares::<B> {
        grads,
        sums: Vec::new(),
    };
    module.visit(&mut squares);
    if squares.sums.is_empty() {
        return 0.0;
    }
    let sums = Tensor::cat(squares.sums, 0); // [num_params]
    let data = sums.into_data();
    let total: f64 = data.iter::<f64>().sum();
    total.sqrt()
}

struct SumSquares<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    sums: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for SumSquares<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.sums.push(grad.square().sum());
        }
    }
}

struct ScaleGrads<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    factor: f64,
    _backend: core::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ScaleGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads
                .register::<B::InnerBackend, D>(param.id, grad.mul_scalar(self.factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TestAutodiff;
    use burn::module::Module;
    use burn::tensor::TensorData;
    use burn::tensor::backend::Backend;

    #[derive(Module, Debug)]
    struct Toy<B: Backend> {
        a: Param<Tensor<B, 2>>,
        b: Param<Tensor<B, 1>>,
    }

    /// loss = sum(c_a * a) + sum(c_b * b): the gradients are the constants themselves.
    fn toy_grads(c_a: [f32; 4], c_b: [f32; 2]) -> (Toy<TestAutodiff>, GradientsParams) {
        let device = Default::default();
        let toy = Toy {
            a: Param::from_tensor(Tensor::<TestAutodiff, 2>::ones([2, 2], &device)),
            b: Param::from_tensor(Tensor::<TestAutodiff, 1>::ones([2], &device)),
        };
        let ca =
            Tensor::<TestAutodiff, 2>::from_data(TensorData::new(c_a.to_vec(), [2, 2]), &device);
        let cb = Tensor::<TestAutodiff, 1>::from_data(TensorData::from(c_b), &device);
        let loss = (toy.a.val() * ca).sum() + (toy.b.val() * cb).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &toy);
        (toy, grads)
    }

    fn grad_values(toy: &Toy<TestAutodiff>, grads: &GradientsParams) -> Vec<f32> {
        let mut out = grads
            .get::<<TestAutodiff as AutodiffBackend>::InnerBackend, 2>(toy.a.id)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        out.extend(
            grads
                .get::<<TestAutodiff as AutodiffBackend>::InnerBackend, 1>(toy.b.id)
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap(),
        );
        out
    }

    #[test]
    fn global_norm_matches_a_hand_computation_and_scales_uniformly() {
        // |g|^2 = 1 + 4 + 4 + 16 + 9 + 0 = 34 -> norm sqrt(34), across both tensors
        let (toy, grads) = toy_grads([1.0, -2.0, 2.0, 4.0], [3.0, 0.0]);
        let (grads, norm) = clip_grad_norm::<TestAutodiff, _>(&toy, grads, Some(1.0));
        assert!((norm - 34f64.sqrt()).abs() < 1e-6, "norm {norm}");
        let coef = 1.0 / (34f64.sqrt() + 1e-6);
        let expected = [1.0, -2.0, 2.0, 4.0, 3.0, 0.0].map(|g: f64| g * coef);
        let got = grad_values(&toy, &grads);
        for (g, e) in got.iter().zip(expected) {
            assert!((*g as f64 - e).abs() < 1e-6, "{got:?} vs {expected:?}");
        }
        let clipped_norm = global_grad_norm::<TestAutodiff, _>(&toy, &grads);
        assert!((clipped_norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn small_gradients_and_disabled_clipping_are_untouched() {
        let (toy, grads) = toy_grads([0.1, 0.0, 0.0, 0.0], [0.0, 0.2]);
        let (grads, norm) = clip_grad_norm::<TestAutodiff, _>(&toy, grads, Some(1.0));
        assert!((norm - 0.05f64.sqrt()).abs() < 1e-6);
        assert_eq!(
            grad_values(&toy, &grads),
            vec![0.1, 0.0, 0.0, 0.0, 0.0, 0.2]
        );

        let (toy, grads) = toy_grads([10.0, 0.0, 0.0, 0.0], [0.0, 0.0]);
        let (grads, norm) = clip_grad_norm::<TestAutodiff, _>(&toy, grads, None);
        assert!((norm - 10.0).abs() < 1e-6);
        assert_eq!(grad_values(&toy, &grads)[0], 10.0);
    }

    #[test]
    fn a_nan_gradient_gives_a_nan_norm() {
        let (toy, grads) = toy_grads([f32::NAN, 0.0, 0.0, 0.0], [1.0, 0.0]);
        let (_, norm) = clip_grad_norm::<TestAutodiff, _>(&toy, grads, Some(1.0));
        assert!(!norm.is_finite());
    }
}
