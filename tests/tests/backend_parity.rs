//! Flex (the CPU reference) against a GPU backend: U-Net forward, one training step (loss and
//! updated weights) and a 10-step DDIM sample from fixed noise agree within stated tolerances.
//!
//! `cargo test -p diffusion-tests --features wgpu --test backend_parity` (or `--features cuda`).
//! Built without a GPU feature, each test reports itself as ignored with the command to run;
//! built with one, a missing device is a failure, never a silent pass.
//!
//! Tolerances. Both sides compute in f32; they differ only in summation order and in the
//! kernels' fused operations (GPU convolutions and matmuls reorder their reductions, GroupNorm
//! computes its variance differently). A 3x3 convolution over 32 channels sums 288 products, and
//! the tiny net stacks about 15 such layers plus attention, so relative differences of 1e-5 to
//! 1e-4 of the output scale are expected; we allow 1e-3 (forward, training loss). One AdamW step
//! moves each weight by lr * g / (|g| + eps): by almost exactly lr whatever the gradient's size,
//! except for gradients near eps = 1e-8, where a last-bit difference in g changes the update by a
//! sizeable fraction of lr (seen on lavapipe: 9e-5 with lr 1e-3). So no weight may differ by more
//! than 2 lr (opposite signs), and at most 0.1% of them by more than lr / 100.
//! DDIM runs the net ten times and divides by sqrt(alpha_bar) at the noisiest step (x ~10), so
//! the sample is compared at 5e-3 of its scale.

use burn::module::Module;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use diffusion_core::{
    Conditioning, DdimConfig, LossWeighting, NoiseRng, PredictionType, ScheduleConfig, sample_loop,
};
use diffusion_nets::{UNet, UNetConfig};
use diffusion_train::{DiffusionObjective, OptimizerConfig, clip_grad_norm};

type Flex = burn::backend::Autodiff<burn::backend::Flex>;

/// A residual-attention net small enough for a software Vulkan driver, with labels. No dropout:
/// its masks come from each backend's own RNG.
fn tiny_net() -> UNetConfig {
    UNetConfig::new(1, 16)
        .with_dropout(0.0)
        .with_base_channels(16)
        .with_channel_mults(vec![1, 2])
        .with_num_res_blocks(1)
        .with_attention_resolutions(vec![8])
        .with_norm_groups(4)
        .with_num_classes(Some(10))
}

/// The same weights on another backend: saved from the Flex model, loaded on `B`.
fn copy_model<B: Backend>(
    model: &UNet<burn::backend::Flex>,
    config: &UNetConfig,
    device: &B::Device,
) -> UNet<B> {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder.record(model.clone().into_record(), ()).unwrap();
    let record = recorder.load(bytes, device).unwrap();
    config.init::<B>(device).unwrap().load_record(record)
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// Largest absolute difference, and the largest magnitude of the reference.
fn compare(ours: &[f32], reference: &[f32]) -> (f32, f32) {
    assert_eq!(ours.len(), reference.len());
    let diff = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    let scale = reference.iter().map(|v| v.abs()).fold(0.0, f32::max);
    (diff, scale)
}

fn inputs<B: Backend>(device: &B::Device) -> (Tensor<B, 4>, Tensor<B, 1, Int>, Tensor<B, 1, Int>) {
    let mut rng = NoiseRng::seed_from_u64(3);
    let x = rng.gaussian_tensor::<B, 4>([3, 1, 16, 16], device);
    let t = Tensor::from_data(TensorData::from([10i64, 500, 999]), device);
    let labels = Tensor::from_data(TensorData::from([1i64, 7, 10]), device);
    (x, t, labels)
}

fn forward_parity<G: Backend>(device: G::Device) {
    let config = tiny_net();
    let cpu_device = Default::default();
    burn::backend::Flex::seed(&cpu_device, 1);
    let cpu = config.init::<burn::backend::Flex>(&cpu_device).unwrap();
    let gpu = copy_model::<G>(&cpu, &config, &device);
    let (x, t, labels) = inputs::<burn::backend::Flex>(&cpu_device);
    let (gx, gt, gl) = inputs::<G>(&device);
    let reference = values(cpu.forward(x, t, Some(labels)));
    let ours = values(gpu.forward(gx, gt, Some(gl)));
    let (diff, scale) = compare(&ours, &reference);
    eprintln!("forward: max |gpu - flex| = {diff:.3e} at output scale {scale:.3}");
    assert!(
        diff <= 1e-3 * scale.max(1.0),
        "forward differs by {diff} (scale {scale})"
    );
}

/// One AdamW step with global-norm clipping on the diffusion loss; returns the loss and the
/// updated weights.
fn train_step<B: AutodiffBackend>(model: UNet<B>, device: &B::Device) -> (f64, Vec<f32>) {
    let schedule = ScheduleConfig::new().init().unwrap();
    let objective = DiffusionObjective::new(
        schedule,
        PredictionType::Epsilon,
        LossWeighting::Uniform,
        0.0,
        Some(10),
    )
    .unwrap();
    let mut rng = NoiseRng::seed_from_u64(11);
    let x0 = rng
        .gaussian_tensor::<B, 4>([4, 1, 16, 16], device)
        .clamp(-1.0, 1.0);
    let labels = Tensor::<B, 1, Int>::from_data(TensorData::from([0i64, 3, 5, 9]), device);
    let loss = objective.loss(&model, x0, labels, &mut rng);
    let loss_value: f64 = values(loss.clone())[0] as f64;
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let (grads, _norm) = clip_grad_norm(&model, grads, Some(1.0));
    let mut optim = OptimizerConfig::new().to_burn().init::<B, UNet<B>>();
    let model = optim.step(LR, model, grads);
    (loss_value, flat_weights(&model))
}

const LR: f64 = 1e-3;

fn flat_weights<B: Backend>(model: &UNet<B>) -> Vec<f32> {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    // Reload on Flex to read every parameter in the same order on both sides.
    let bytes = recorder.record(model.clone().into_record(), ()).unwrap();
    let cpu_device = Default::default();
    let record = recorder.load(bytes, &cpu_device).unwrap();
    let cpu: UNet<burn::backend::Flex> = tiny_net().init(&cpu_device).unwrap().load_record(record);
    let mut out = Vec::new();
    let mut collect = WeightCollector(&mut out);
    cpu.visit(&mut collect);
    out
}

struct WeightCollector<'a>(&'a mut Vec<f32>);

impl<B: Backend> burn::module::ModuleVisitor<B> for WeightCollector<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        self.0.extend(values(param.val()));
    }
}

fn train_step_parity<G: AutodiffBackend>(device: G::Device) {
    let config = tiny_net();
    let cpu_device = Default::default();
    burn::backend::Flex::seed(&cpu_device, 2);
    let cpu = config.init::<burn::backend::Flex>(&cpu_device).unwrap();
    let gpu = copy_model::<G>(&cpu, &config, &device);
    let cpu_ad = copy_model::<Flex>(&cpu, &config, &cpu_device);
    let (ref_loss, ref_weights) = train_step::<Flex>(cpu_ad, &cpu_device);
    let (loss, weights) = train_step::<G>(gpu, &device);
    let loss_diff = (loss - ref_loss).abs();
    eprintln!("train step: loss flex {ref_loss:.6} gpu {loss:.6}");
    assert!(
        loss_diff <= 1e-3 * ref_loss.abs(),
        "loss {loss} vs {ref_loss}"
    );
    let (diff, _) = compare(&weights, &ref_weights);
    let loose = weights
        .iter()
        .zip(&ref_weights)
        .filter(|(a, b)| ((*a - *b).abs() as f64) > LR * 1e-2)
        .count();
    eprintln!(
        "train step: max |weight difference| = {diff:.3e} (lr {LR}); {loose} of {} weights differ by more than lr/100",
        weights.len()
    );
    assert!(
        (diff as f64) <= 2.0 * LR,
        "updated weights differ by {diff}"
    );
    assert!(
        loose * 1000 <= weights.len(),
        "{loose} weights differ by more than lr/100"
    );
    let before = flat_weights(&cpu);
    let moved = before
        .iter()
        .zip(&ref_weights)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        moved > before.len() / 2,
        "the step must actually move the weights"
    );
}

fn ddim_parity<G: Backend>(device: G::Device) {
    let config = tiny_net();
    let cpu_device = Default::default();
    burn::backend::Flex::seed(&cpu_device, 3);
    let cpu = config.init::<burn::backend::Flex>(&cpu_device).unwrap();
    let gpu = copy_model::<G>(&cpu, &config, &device);
    let schedule = ScheduleConfig::new().init().unwrap();
    let sampler = DdimConfig::new().with_num_steps(10);
    let run = |device: &G::Device| {
        let mut sampler = sampler.init(&schedule, PredictionType::Epsilon).unwrap();
        let mut rng = NoiseRng::seed_from_u64(5);
        let x_t = rng.gaussian_tensor::<G, 4>([2, 1, 16, 16], device);
        let labels = Tensor::<G, 1, Int>::from_data(TensorData::from([2i64, 8]), device);
        values(
            sample_loop(
                &gpu,
                &mut sampler,
                x_t,
                &Conditioning::Labels(labels),
                &mut rng,
                |_, _, _| {},
            )
            .unwrap(),
        )
    };
    let ours = run(&device);
    let mut sampler_cpu = sampler.init(&schedule, PredictionType::Epsilon).unwrap();
    let mut rng = NoiseRng::seed_from_u64(5);
    let x_t = rng.gaussian_tensor::<burn::backend::Flex, 4>([2, 1, 16, 16], &cpu_device);
    let labels = Tensor::from_data(TensorData::from([2i64, 8]), &cpu_device);
    let reference = values(
        sample_loop(
            &cpu,
            &mut sampler_cpu,
            x_t,
            &Conditioning::Labels(labels),
            &mut rng,
            |_, _, _| {},
        )
        .unwrap(),
    );
    let (diff, scale) = compare(&ours, &reference);
    eprintln!("ddim-10: max |gpu - flex| = {diff:.3e} at sample scale {scale:.3}");
    assert!(
        diff <= 5e-3 * scale.max(1.0),
        "DDIM sample differs by {diff} (scale {scale})"
    );
}

#[cfg(feature = "wgpu")]
mod wgpu_device {
    pub type Gpu = burn::backend::Autodiff<burn::backend::Wgpu>;

    /// The default adapter; a clear failure when there is none.
    pub fn device() -> burn::backend::wgpu::WgpuDevice {
        let device = burn::backend::wgpu::WgpuDevice::DefaultDevice;
        let probe = std::panic::catch_unwind(|| {
            let t = burn::tensor::Tensor::<Gpu, 1>::from_floats([1.0, 2.0], &device);
            t.sum().into_scalar()
        });
        assert!(
            probe.is_ok(),
            "built with --features wgpu but no WGPU adapter works here: install a Vulkan driver \
             (on Debian: apt-get install mesa-vulkan-drivers libvulkan1) or build without the feature"
        );
        device
    }
}

#[cfg(feature = "cuda")]
mod cuda_device {
    pub type Gpu = burn::backend::Autodiff<burn::backend::Cuda>;

    pub fn device() -> burn::backend::cuda::CudaDevice {
        let device = burn::backend::cuda::CudaDevice { index: 0 };
        let probe = std::panic::catch_unwind(|| {
            let t = burn::tensor::Tensor::<Gpu, 1>::from_floats([1.0, 2.0], &device);
            t.sum().into_scalar()
        });
        assert!(
            probe.is_ok(),
            "built with --features cuda but no CUDA device works here (driver missing?)"
        );
        device
    }
}

// rustfmt re-indents attributes inside this macro on every run; keep it as written.
#[rustfmt::skip]
macro_rules! parity_tests {
    ($feature:literal, $reason:literal, $module:ident, $forward:ident, $train:ident, $ddim:ident) => {
        #[test]
        #[cfg_attr(not(feature = $feature), ignore = $reason)]
        fn $forward() {
            #[cfg(feature = $feature)]
            forward_parity::<<$module::Gpu as AutodiffBackend>::InnerBackend>($module::device());
        }

        #[test]
        #[cfg_attr(not(feature = $feature), ignore = $reason)]
        fn $train() {
            #[cfg(feature = $feature)]
            train_step_parity::<$module::Gpu>($module::device());
        }

        #[test]
        #[cfg_attr(not(feature = $feature), ignore = $reason)]
        fn $ddim() {
            #[cfg(feature = $feature)]
            ddim_parity::<<$module::Gpu as AutodiffBackend>::InnerBackend>($module::device());
        }
    };
}

parity_tests!(
    "wgpu",
    "built without --features wgpu: cargo test -p diffusion-tests --features wgpu --test backend_parity",
    wgpu_device,
    wgpu_forward_matches_flex,
    wgpu_train_step_matches_flex,
    wgpu_ddim_matches_flex
);
parity_tests!(
    "cuda",
    "built without --features cuda: cargo test -p diffusion-tests --features cuda --test backend_parity",
    cuda_device,
    cuda_forward_matches_flex,
    cuda_train_step_matches_flex,
    cuda_ddim_matches_flex
);

/// Every parity check run with Flex on both sides: the harness itself (weight copy, training
/// step, sampling loop, comparisons) must pass when the backends agree exactly.
#[test]
fn flex_against_itself_passes_every_parity_check() {
    forward_parity::<burn::backend::Flex>(Default::default());
    train_step_parity::<Flex>(Default::default());
    ddim_parity::<burn::backend::Flex>(Default::default());
}

/// The Flex side against itself through the same code path: the harness must be able to
/// pass, and a perturbed copy must fail it (so a parity test cannot pass vacuously).
#[test]
fn harness_detects_a_perturbed_model() {
    let config = tiny_net();
    let device = Default::default();
    burn::backend::Flex::seed(&device, 4);
    let cpu = config.init::<burn::backend::Flex>(&device).unwrap();
    let copy = copy_model::<burn::backend::Flex>(&cpu, &config, &device);
    let (x, t, l) = inputs::<burn::backend::Flex>(&device);
    let a = values(cpu.forward(x.clone(), t.clone(), Some(l.clone())));
    let b = values(copy.forward(x.clone(), t.clone(), Some(l.clone())));
    assert_eq!(
        compare(&a, &b).0,
        0.0,
        "a copy through the recorder is exact"
    );
    let perturbed = copy.map(&mut Perturb);
    let c = values(perturbed.forward(x, t, Some(l)));
    let (diff, scale) = compare(&c, &a);
    assert!(
        diff > 1e-3 * scale.max(1.0),
        "a 1% weight change must exceed the forward tolerance"
    );
}

struct Perturb;

impl<B: Backend> burn::module::ModuleMapper<B> for Perturb {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<B, D>>,
    ) -> burn::module::Param<Tensor<B, D>> {
        param.map(|t| t.mul_scalar(1.01))
    }
}
