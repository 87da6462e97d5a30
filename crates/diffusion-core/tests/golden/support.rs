//! Reading the golden file and mapping diffusers' configs onto ours.

use std::collections::VecDeque;

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use diffusion_core::{
    BetaSchedule, Conditioning, Denoiser, NoiseSchedule, NoiseSource, PredictionType, Sampler,
    ScheduleConfig, TimestepSpacing, sample_loop,
};
use serde_json::Value;

pub type TestBackend = burn::backend::Flex;

pub const LOOP_TOL: f64 = 1e-4;

pub fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../assets/golden/diffusers.json"
    );
    let text = std::fs::read_to_string(path).expect("golden file is committed in assets/golden");
    serde_json::from_str(&text).expect("golden file is valid JSON")
}

pub fn cases(kind: &str) -> Vec<Value> {
    let cases: Vec<Value> = golden()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|case| case["kind"] == kind)
        .cloned()
        .collect();
    assert!(!cases.is_empty(), "no golden cases of kind {kind}");
    cases
}

pub fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

pub fn usizes(value: &Value) -> Vec<usize> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_u64().expect("integer") as usize)
        .collect()
}

pub fn shape(case: &Value) -> [usize; 4] {
    usizes(&case["shape"]).try_into().expect("4-d shape")
}

pub fn tensor(case: &Value, values: &Value) -> Tensor<TestBackend, 4> {
    let values: Vec<f32> = floats(values).into_iter().map(|v| v as f32).collect();
    Tensor::from_data(TensorData::new(values, shape(case)), &Default::default())
}

pub fn to_vec(tensor: Tensor<TestBackend, 4>) -> Vec<f64> {
    let values = tensor.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    values.into_iter().map(f64::from).collect()
}

/// Element-wise `|a - e| <= abs + rel |e|`.
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], abs: f64, rel: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut worst = (0.0f64, 0);
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let err = (a - e).abs();
        assert!(
            err <= abs + rel * e.abs(),
            "{what}[{i}]: ours {a}, diffusers {e}, |diff| {err:e}"
        );
        if err > worst.0 {
            worst = (err, i);
        }
    }
    if actual.len() > 1 {
        eprintln!("{what}: max |diff| {:e} at {}", worst.0, worst.1);
    }
}

pub fn str_of<'a>(config: &'a Value, key: &str, default: &'a str) -> &'a str {
    config.get(key).and_then(Value::as_str).unwrap_or(default)
}

pub fn bool_of(config: &Value, key: &str, default: bool) -> bool {
    config.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// Our schedule from diffusers' config names and defaults.
pub fn schedule_config(config: &Value) -> ScheduleConfig {
    let schedule = match str_of(config, "beta_schedule", "linear") {
        "linear" => BetaSchedule::Linear,
        "scaled_linear" => BetaSchedule::ScaledLinear,
        "squaredcos_cap_v2" => BetaSchedule::Cosine,
        "sigmoid" => BetaSchedule::Sigmoid,
        other => panic!("unknown beta_schedule {other}"),
    };
    let number =
        |key: &str, default: f64| config.get(key).and_then(Value::as_f64).unwrap_or(default);
    ScheduleConfig::new()
        .with_num_timesteps(config["num_train_timesteps"].as_u64().unwrap() as usize)
        .with_schedule(schedule)
        .with_beta_start(number("beta_start", 1e-4))
        .with_beta_end(number("beta_end", 0.02))
        .with_rescale_zero_terminal_snr(bool_of(config, "rescale_betas_zero_snr", false))
}

pub fn schedule_of(config: &Value) -> NoiseSchedule {
    schedule_config(config)
        .init()
        .expect("golden schedules are valid")
}

pub fn prediction_of(config: &Value) -> PredictionType {
    match str_of(config, "prediction_type", "epsilon") {
        "epsilon" => PredictionType::Epsilon,
        "sample" => PredictionType::Sample,
        "v_prediction" => PredictionType::VPrediction,
        other => panic!("unknown prediction_type {other}"),
    }
}

pub fn spacing_of(config: &Value, default: &str) -> TimestepSpacing {
    match str_of(config, "timestep_spacing", default) {
        "leading" => TimestepSpacing::Leading,
        "trailing" => TimestepSpacing::Trailing,
        "linspace" => TimestepSpacing::Linspace,
        other => panic!("unknown timestep_spacing {other}"),
    }
}

/// Hands out diffusers' recorded noises in the order they were drawn.
pub struct Replay<B: Backend> {
    pub noises: VecDeque<Tensor<B, 4>>,
}

impl<B: Backend> NoiseSource<B> for Replay<B> {
    fn gaussian(&mut self, shape: [usize; 4], _device: &B::Device) -> Tensor<B, 4> {
        let noise = self
            .noises
            .pop_front()
            .expect("sampler drew more noise than diffusers");
        assert_eq!(noise.dims(), shape);
        noise
    }
}

/// The dummy model of the golden file.
pub struct Dummy {
    pub a: f64,
    pub b: f64,
    pub num_train_timesteps: usize,
}

impl Dummy {
    pub fn of(case: &Value) -> Self {
        Self {
            a: case["model"]["a"].as_f64().unwrap(),
            b: case["model"]["b"].as_f64().unwrap(),
            num_train_timesteps: case["config"]["num_train_timesteps"].as_u64().unwrap() as usize,
        }
    }
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
            .mul_scalar(self.b / self.num_train_timesteps as f64)
            .reshape([batch, 1, 1, 1]);
        x_t.mul_scalar(self.a) + t
    }

    /// Exact at fractional timesteps, as diffusers' loop feeds the float timestep itself.
    fn denoise_at(
        &self,
        x_t: Tensor<TestBackend, 4>,
        t: f64,
        _labels: Option<Tensor<TestBackend, 1, Int>>,
    ) -> Tensor<TestBackend, 4> {
        x_t.mul_scalar(self.a)
            .add_scalar(self.b * t / self.num_train_timesteps as f64)
    }
}

/// Runs our loop on the case's x_T and compares with diffusers' result.
pub fn check_loop(
    name: &str,
    case: &Value,
    sampler: &mut dyn Sampler<TestBackend>,
    noises: Vec<Tensor<TestBackend, 4>>,
) {
    assert_eq!(
        sampler.timesteps(),
        usizes(&case["timesteps"]).as_slice(),
        "{name}: timesteps"
    );
    let mut replay = Replay {
        noises: noises.into(),
    };
    let out = sample_loop(
        &Dummy::of(case),
        sampler,
        tensor(case, &case["x_T"]),
        &Conditioning::Unconditional,
        &mut replay,
        |_, _, _| {},
    )
    .unwrap();
    assert!(
        replay.noises.is_empty(),
        "{name}: sampler drew less noise than diffusers"
    );
    assert_close(
        name,
        &to_vec(out),
        &floats(&case["expected"]),
        LOOP_TOL,
        LOOP_TOL,
    );
}
