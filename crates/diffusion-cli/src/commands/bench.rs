//! `diffusion-cli bench`: training and sampling throughput and peak memory of a preset, as one
//! JSON object on standard output. `cargo xtask bench` runs it next to the PyTorch twin
//! (`scripts/bench/torch_twin.py`) and prints the ratios.
//!
//! Training goes through the real [`Trainer`] (data, objective, clipping, AdamW, EMA) on
//! synthetic images of the preset's shape, so that presets whose dataset is not on disk can
//! be measured; sampling is DDIM with one network evaluation per step (labels, no guidance).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor};
use clap::Args;
use diffusion_core::{Conditioning, DdimConfig, NoiseRng, SamplerConfig, sample_loop};
use diffusion_train::data::{ImageDataset, ImageShape};
use diffusion_train::{StepProgress, TrainConfig, Trainer};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::backend::{BackendTask, DeviceChoice, dispatch, ensure_available};

/// Measure training and sampling speed and peak memory of a preset (JSON on stdout).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Training preset whose network, schedule and optimizer are measured.
    #[arg(long, default_value = "mnist")]
    pub preset: String,
    /// Images per training step and per sampling batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Measured training steps (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub train_steps: usize,
    /// Training steps run before measuring.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Measured sampling batches (after one warm-up batch).
    #[arg(long, default_value_t = 2)]
    pub sample_batches: usize,
    /// DDIM steps per sampling batch.
    #[arg(long, default_value_t = 50)]
    pub ddim_steps: usize,
    /// Device: cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

/// What `bench` prints; `cargo xtask bench` reads these fields.
#[derive(Debug, Serialize)]
struct BenchReport {
    #[serde(rename = "impl")]
    implementation: String,
    preset: String,
    batch_size: usize,
    params: usize,
    threads: usize,
    model: diffusion_nets::UNetConfig,
    num_timesteps: usize,
    train_images_per_sec: Vec<f64>,
    sample_images_per_sec: Vec<f64>,
    peak_rss_mib: Option<f64>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if args.batch_size == 0 || args.train_steps == 0 || args.sample_batches == 0 {
        bail!("--batch-size, --train-steps and --sample-batches must be at least 1");
    }
    if args.ddim_steps == 0 {
        bail!("--ddim-steps must be at least 1");
    }
    ensure_available(args.device)?;
    let device = args.device;
    let report = dispatch(device, BenchTask { args })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

struct BenchTask {
    args: BenchArgs,
}

impl BackendTask for BenchTask {
    type Output = BenchReport;

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<BenchReport> {
        let args = self.args;
        let config = TrainConfig::preset(&args.preset)?
            .with_batch_size(args.batch_size)
            .with_grad_accum_steps(1)
            .with_max_steps(Some(args.warmup + args.train_steps))
            .with_epochs(None)
            .with_checkpoint_every(usize::MAX)
            .with_sample_every(0)
            .with_log_every(usize::MAX);
        let params = config.model.init::<B::InnerBackend>(&device)?.num_params();
        let threads = rayon_threads();

        eprintln!(
            "bench: {} ({params} parameters), batch {}, {threads} threads, device {}",
            args.preset, args.batch_size, args.device
        );
        let train_images_per_sec = train_rates::<B>(&config, &args, &device)?;
        let sample_images_per_sec = sample_rates::<B::InnerBackend>(&config, &args, &device)?;
        Ok(BenchReport {
            implementation: format!("burn-diffusion ({})", args.device),
            preset: args.preset.clone(),
            batch_size: args.batch_size,
            params,
            threads,
            num_timesteps: config.schedule.num_timesteps,
            model: config.model,
            train_images_per_sec,
            sample_images_per_sec,
            peak_rss_mib: peak_rss_mib(),
        })
    }
}

/// Images per second of each training step after the warm-up.
fn train_rates<B: AutodiffBackend>(
    config: &TrainConfig,
    args: &BenchArgs,
    device: &B::Device,
) -> Result<Vec<f64>> {
    let dataset = synthetic_dataset(config, 4 * args.batch_size)?;
    let run_dir = tempfile::tempdir().context("creating a scratch run directory")?;
    let mut rates = Vec::with_capacity(args.train_steps);
    let mut observer = |p: &StepProgress| {
        if p.step > args.warmup {
            rates.push(p.images_per_sec);
        }
        eprint!("\rbench: training step {}/{}", p.step, p.total_steps);
    };
    let stop = AtomicBool::new(false);
    Trainer::<B>::new(config.clone(), run_dir.path(), device.clone())
        .with_dataset(dataset)
        .run(&stop, &mut observer)?;
    eprintln!();
    Ok(rates)
}

/// Images per second of each DDIM batch after one warm-up batch.
fn sample_rates<B: Backend>(
    config: &TrainConfig,
    args: &BenchArgs,
    device: &B::Device,
) -> Result<Vec<f64>> {
    let model = config.model.init::<B>(device)?;
    let schedule = config.schedule.init()?;
    let mut sampler = SamplerConfig::Ddim(DdimConfig::new().with_num_steps(args.ddim_steps))
        .init::<B>(&schedule, config.prediction_type)?;
    let (c, size, n) = (
        config.model.in_channels,
        config.model.image_size,
        args.batch_size,
    );
    let mut rng = NoiseRng::seed_from_u64(0);
    let mut rates = Vec::with_capacity(args.sample_batches);
    for batch in 0..=args.sample_batches {
        eprint!("\rbench: sampling batch {batch}/{}", args.sample_batches);
        let conditioning = match config.model.num_classes {
            Some(k) => {
                let labels: Vec<i64> = (0..n).map(|i| (i % k) as i64).collect();
                Conditioning::Labels(Tensor::<B, 1, Int>::from_data(labels.as_slice(), device))
            }
            None => Conditioning::Unconditional,
        };
        let started = Instant::now();
        let x_t = rng.gaussian_tensor::<B, 4>([n, c, size, size], device);
        let x0 = sample_loop(
            &model,
            sampler.as_mut(),
            x_t,
            &conditioning,
            &mut rng,
            |_, _, _| {},
        )?;
        // Reading the result back waits for asynchronous backends to finish.
        let _ = x0.into_data();
        if batch > 0 {
            rates.push(n as f64 / started.elapsed().as_secs_f64());
        }
    }
    eprintln!();
    Ok(rates)
}

/// Random images of the preset's shape, labels cycling through its classes.
fn synthetic_dataset(config: &TrainConfig, len: usize) -> Result<ImageDataset> {
    let model = &config.model;
    let shape = ImageShape {
        channels: model.in_channels,
        height: model.image_size,
        width: model.image_size,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let pixels: Vec<u8> = (0..len * shape.len()).map(|_| rng.random()).collect();
    let classes = model.num_classes.unwrap_or(1);
    let labels = (0..len).map(|i| i % classes).collect();
    Ok(ImageDataset::from_raw(pixels, labels, shape, classes)?)
}

/// Threads rayon (and so Flex) uses: `RAYON_NUM_THREADS`, else the available cores.
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
