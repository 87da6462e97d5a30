//! The contract every sampler keeps, checked for each sampler under several configurations:
//! timesteps in range and decreasing, noise levels falling, shape kept, finite output, seeded determinism,
//! steps past the end rejected.

use burn::tensor::{Int, Tensor};

use super::*;
use crate::tests::{TestBackend, to_vec};
use crate::{
    BetaSchedule, Conditioning, Denoiser, NoiseRng, NoiseSchedule, ScheduleConfig, sample_loop,
};

/// diffusers' dummy model for scheduler tests: `a * x + b * t / T`.
struct Dummy {
    num_train_timesteps: usize,
}

impl Denoiser<TestBackend> for Dummy {
    fn denoise(
        &self,
        x_t: Tensor<TestBackend, 4>,
        timesteps: Tensor<TestBackend, 1, Int>,
        _labels: Option<Tensor<TestBackend, 1, Int>>,
    ) -> Tensor<TestBackend, 4> {
        let [batch] = timesteps.dims();
        let t = timesteps
            .float()
            .div_scalar(self.num_train_timesteps as f64)
            .reshape([batch, 1, 1, 1]);
        x_t.mul_scalar(0.3) + t.mul_scalar(0.1)
    }
}

fn run(
    config: &SamplerConfig,
    schedule: &NoiseSchedule,
    prediction: PredictionType,
    seed: u64,
) -> Vec<f32> {
    let device = Default::default();
    let mut sampler = config.init::<TestBackend>(schedule, prediction).unwrap();
    let mut rng = NoiseRng::seed_from_u64(seed);
    let shape = [2, 3, 4, 4];
    let x_t = rng.gaussian_tensor::<TestBackend, 4>(shape, &device);
    let dummy = Dummy {
        num_train_timesteps: schedule.num_timesteps(),
    };
    let mut steps = 0;
    let out = sample_loop(
        &dummy,
        sampler.as_mut(),
        x_t,
        &Conditioning::Unconditional,
        &mut rng,
        |_, _, x| {
            assert_eq!(x.dims(), shape);
            steps += 1;
        },
    )
    .unwrap();
    assert_eq!(steps, sampler.model_timesteps().len());
    assert_eq!(out.dims(), shape, "{config:?}");
    to_vec(out)
}

fn check_contract(config: SamplerConfig, schedule: &NoiseSchedule) {
    for prediction in [
        PredictionType::Epsilon,
        PredictionType::Sample,
        PredictionType::VPrediction,
    ] {
        let sampler = config.init::<TestBackend>(schedule, prediction).unwrap();
        let ts = sampler.timesteps();
        assert!(!ts.is_empty(), "{config:?}");
        assert!(
            ts.iter().all(|t| *t < schedule.num_timesteps()),
            "{config:?}: {ts:?}"
        );
        // Strictly decreasing but where Karras sigmas round to one timestep (non-increasing).
        assert!(ts.windows(2).all(|w| w[1] <= w[0]), "{config:?}: {ts:?}");
        let model_ts = sampler.model_timesteps();
        assert!(
            model_ts.windows(2).all(|w| w[1] <= w[0])
                && model_ts
                    .iter()
                    .all(|t| *t >= 0.0 && *t <= (schedule.num_timesteps() - 1) as f64),
            "{config:?}: {model_ts:?}"
        );
        // The noise level falls (strictly over the run, never rising) down to the result's.
        let levels: Vec<f64> = (0..=model_ts.len())
            .map(|i| sampler.state_alpha_bar(i))
            .collect();
        assert!(
            levels.windows(2).all(|w| w[1] >= w[0]) && levels[model_ts.len()] > levels[0],
            "{config:?}: {levels:?}"
        );

        let first = run(&config, schedule, prediction, 42);
        assert!(
            first.iter().all(|v| v.is_finite()),
            "{config:?} {prediction:?}"
        );
        assert_eq!(
            first,
            run(&config, schedule, prediction, 42),
            "{config:?} not seeded"
        );
        assert_ne!(
            first,
            run(&config, schedule, prediction, 43),
            "{config:?} ignores the seed"
        );

        let mut sampler = config.init::<TestBackend>(schedule, prediction).unwrap();
        let len = sampler.model_timesteps().len();
        assert!(len >= ts.len(), "{config:?}");
        let x = Tensor::<TestBackend, 4>::zeros([1, 1, 1, 1], &Default::default());
        let err = sampler
            .step(x.clone(), len, x, &mut NoiseRng::seed_from_u64(0))
            .unwrap_err();
        assert_eq!(err, SamplerError::StepIndex { index: len, len });
    }
}

fn configs() -> Vec<SamplerConfig> {
    vec![
        SamplerConfig::Ddpm(DdpmConfig::new()),
        SamplerConfig::Ddpm(
            DdpmConfig::new()
                .with_num_steps(Some(25))
                .with_variance(DdpmVariance::FixedLarge)
                .with_spacing(TimestepSpacing::Trailing),
        ),
        SamplerConfig::Ddpm(DdpmConfig::new().with_start_t(Some(10))),
        SamplerConfig::Ddim(DdimConfig::new()),
        SamplerConfig::Ddim(
            DdimConfig::new()
                .with_num_steps(20)
                .with_eta(1.0)
                .with_spacing(TimestepSpacing::Trailing),
        ),
        SamplerConfig::Ddim(
            DdimConfig::new()
                .with_num_steps(10)
                .with_spacing(TimestepSpacing::Linspace)
                .with_set_alpha_to_one(false),
        ),
        SamplerConfig::Ddim(
            DdimConfig::new()
                .with_num_steps(20)
                .with_spacing(TimestepSpacing::Quadratic)
                .with_clip_sample(false),
        ),
        SamplerConfig::Ddim(
            DdimConfig::new()
                .with_start_t(Some(50))
                .with_steps_offset(1),
        ),
        SamplerConfig::DpmSolver(DpmSolverConfig::new()),
        SamplerConfig::DpmSolver(
            DpmSolverConfig::new()
                .with_num_steps(10)
                .with_spacing(TimestepSpacing::Trailing),
        ),
        SamplerConfig::DpmSolver(DpmSolverConfig::new().with_solver_order(1)),
        SamplerConfig::DpmSolver(DpmSolverConfig::new().with_num_steps(1)),
        SamplerConfig::DpmSolver(
            DpmSolverConfig::new()
                .with_num_steps(50)
                .with_start_t(Some(100)),
        ),
        SamplerConfig::DpmSolver(DpmSolverConfig::new().with_karras(true)),
        SamplerConfig::DpmSolver(
            DpmSolverConfig::new()
                .with_algorithm(DpmAlgorithm::Sde)
                .with_karras(true)
                .with_num_steps(15),
        ),
        SamplerConfig::DpmSolver(
            DpmSolverConfig::new()
                .with_algorithm(DpmAlgorithm::Sde)
                .with_start_t(Some(300)),
        ),
        SamplerConfig::Euler(SigmaConfig::new()),
        SamplerConfig::Euler(SigmaConfig::new().with_karras(true).with_num_steps(1)),
        SamplerConfig::Euler(
            SigmaConfig::new()
                .with_spacing(TimestepSpacing::Leading)
                .with_steps_offset(1)
                .with_start_t(Some(400)),
        ),
        SamplerConfig::EulerAncestral(SigmaConfig::new().with_num_steps(10)),
        SamplerConfig::EulerAncestral(SigmaConfig::new().with_karras(true)),
        SamplerConfig::Heun(SigmaConfig::new().with_num_steps(10)),
        SamplerConfig::Heun(SigmaConfig::new().with_num_steps(1)),
        SamplerConfig::Heun(
            SigmaConfig::new()
                .with_karras(true)
                .with_spacing(TimestepSpacing::Trailing),
        ),
        SamplerConfig::UniPc(UniPcConfig::new()),
        SamplerConfig::UniPc(UniPcConfig::new().with_solver_order(3).with_num_steps(10)),
        SamplerConfig::UniPc(
            UniPcConfig::new()
                .with_solver_order(1)
                .with_variant(UniPcVariant::Bh1)
                .with_karras(true),
        ),
        SamplerConfig::UniPc(UniPcConfig::new().with_num_steps(2)),
        SamplerConfig::UniPc(UniPcConfig::new().with_start_t(Some(200))),
    ]
}

#[test]
fn every_sampler_keeps_the_contract_on_a_linear_schedule() {
    let schedule = ScheduleConfig::new().init().unwrap();
    for config in configs() {
        check_contract(config, &schedule);
    }
}

#[test]
fn every_sampler_keeps_the_contract_on_a_short_cosine_schedule() {
    let schedule = ScheduleConfig::new()
        .with_schedule(BetaSchedule::Cosine)
        .with_num_timesteps(100)
        .init()
        .unwrap();
    for config in [
        SamplerConfig::Ddpm(DdpmConfig::new()),
        SamplerConfig::Ddim(DdimConfig::new().with_num_steps(7).with_eta(0.5)),
        SamplerConfig::DpmSolver(DpmSolverConfig::new().with_num_steps(13)),
        SamplerConfig::DpmSolver(DpmSolverConfig::new().with_num_steps(9).with_karras(true)),
        SamplerConfig::Euler(SigmaConfig::new().with_num_steps(9)),
        SamplerConfig::Heun(SigmaConfig::new().with_num_steps(6).with_karras(true)),
        SamplerConfig::UniPc(UniPcConfig::new().with_num_steps(11).with_solver_order(3)),
    ] {
        check_contract(config, &schedule);
    }
}
