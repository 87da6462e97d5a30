//! `diffusion-cli denoise`: noise real images to t in closed form, run the reverse process from
//! there, and compare (the seed experiment that starts the reverse process at t = 50, 10, 5).

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use diffusion_core::{DdpmConfig, NoiseRng, SamplerConfig, noised_start, sample_loop};
use diffusion_train::LoadedRun;
use diffusion_train::quality::{QualityProgress, conditioning};

use crate::args::{DataFlags, RunFlags, SamplerFlags};
use crate::backend::{BackendTask, DeviceChoice, dispatch, ensure_available};
use crate::images::{grid, save_png, to_images};
use crate::progress::PhaseProgress;
use crate::real_images::{dataset_images, mse_psnr};

/// Denoise partly noised real images with a trained run.
#[derive(Debug, Args)]
pub struct DenoiseArgs {
    #[command(flatten)]
    pub run: RunFlags,
    /// Timesteps to start the reverse process from, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "5,10,50",
        value_name = "T1,T2,..."
    )]
    pub from_t: Vec<usize>,
    /// The real images (default: the run's own dataset).
    #[command(flatten)]
    pub data: DataFlags,
    /// Index of the first image.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Number of images.
    #[arg(short = 'n', long = "num", default_value_t = 8)]
    pub num: usize,
    /// The sampler (default ddpm: every step from t down to 0).
    #[command(flatten)]
    pub sampler: SamplerFlags,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// PNG to write: rows are images; columns original, then noisy and denoised for each t.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Device: cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

struct DenoiseTask {
    args: DenoiseArgs,
}

impl BackendTask for DenoiseTask {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        denoise::<B::InnerBackend>(&self.args, &device)
    }
}

fn denoise<B: Backend>(args: &DenoiseArgs, device: &B::Device) -> Result<()> {
    if args.num == 0 || args.from_t.is_empty() {
        bail!("need at least one image (-n) and one timestep (--from-t)");
    }
    let LoadedRun {
        config,
        model,
        schedule,
        ..
    } = args.run.load::<B>(device)?;
    let t_max = schedule.num_timesteps() - 1;
    if let Some(bad) = args.from_t.iter().find(|&&t| t > t_max) {
        bail!("--from-t {bad} is out of range: this run has timesteps 0..={t_max}");
    }
    let data = args.data.apply(config.data.clone());
    let (x0, labels) = dataset_images::<B>(&data, args.index, args.num, device)?;
    let [n, c, h, w] = x0.dims();
    if [c, h, w]
        != [
            config.model.in_channels,
            config.model.image_size,
            config.model.image_size,
        ]
    {
        bail!(
            "the images are {c}x{h}x{w} but the model expects {}x{s}x{s}",
            config.model.in_channels,
            s = config.model.image_size
        );
    }
    // A conditional model is given the true labels, without guidance.
    let labels = config.model.num_classes.map(|_| labels);
    let cond = conditioning::<B>(labels.as_deref(), config.model.num_classes, 1.0, device);
    let sampler_config = args
        .sampler
        .config(SamplerConfig::Ddpm(DdpmConfig::new()))?;
    let mut rng = NoiseRng::seed_from_u64(args.seed);
    // Every sampler is built, and so its flags checked, before the first step.
    let mut samplers = Vec::with_capacity(args.from_t.len());
    for &t in &args.from_t {
        let from_t = sampler_config.clone().with_start_t(Some(t));
        samplers.push(SamplerFlags::init::<B>(
            &from_t,
            &schedule,
            config.prediction_type,
        )?);
    }
    let evaluations: usize = samplers.iter().map(|s| s.model_timesteps().len()).sum();
    let mut progress = PhaseProgress::new();
    progress.begin(
        &format!(
            "denoising {n} images from {} starts ({})",
            args.from_t.len(),
            sampler_config.name()
        ),
        evaluations,
    );
    let mut evaluated = 0;

    let mut columns: Vec<Tensor<B, 4>> = vec![x0.clone()];
    let mut table =
        vec!["t_start  mse_noisy  psnr_noisy_db  mse_denoised  psnr_denoised_db".to_string()];
    for mut sampler in samplers {
        let start = sampler.timesteps()[0];
        let noisy = noised_start(&schedule, sampler.as_ref(), x0.clone(), &mut rng);
        let denoised = sample_loop(
            &model,
            sampler.as_mut(),
            noisy.clone(),
            &cond,
            &mut rng,
            |_, _, _| {
                evaluated += 1;
                progress.advance(evaluated);
            },
        )?;
        let (mse_noisy, psnr_noisy) = mse_psnr(noisy.clone().clamp(-1.0, 1.0), x0.clone());
        let (mse_out, psnr_out) = mse_psnr(denoised.clone().clamp(-1.0, 1.0), x0.clone());
        table.push(format!(
            "{start:>7}  {mse_noisy:>9.5}  {psnr_noisy:>13.2}  {mse_out:>12.5}  {psnr_out:>16.2}"
        ));
        columns.push(noisy);
        columns.push(denoised);
    }
    progress.finish();
    // After the bar is gone, so that it never draws over the table.
    for line in table {
        println!("{line}");
    }
    // Row-major tiles: for each image, original | noisy t1 | denoised t1 | ...
    let per_column: Vec<_> = columns.into_iter().map(to_images).collect::<Result<_>>()?;
    let tiles: Vec<_> = (0..n)
        .flat_map(|i| per_column.iter().map(move |col| col[i].clone()))
        .collect();
    save_png(&grid(&tiles, per_column.len()), &args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

pub fn run(args: DenoiseArgs) -> Result<()> {
    ensure_available(args.device)?;
    let device = args.device;
    dispatch(device, DenoiseTask { args })
}
