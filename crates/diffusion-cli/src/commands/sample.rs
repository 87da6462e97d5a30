//! `diffusion-cli sample`: turn noise into images with a trained run.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use diffusion_core::{NoiseRng, SamplerConfig, sample_loop};
use diffusion_train::quality::conditioning;
use diffusion_train::{LoadedRun, RunDir, TrainConfig};
use image::DynamicImage;

use crate::args::{RunFlags, SamplerFlags};
use crate::backend::{BackendTask, DeviceChoice, dispatch, ensure_available};
use crate::images::{GifWriter, evenly_spaced, grid, save_png, to_images, upscale};

/// Generate images from a trained run (EMA weights unless --no-ema).
#[derive(Debug, Args)]
pub struct SampleArgs {
    #[command(flatten)]
    pub run: RunFlags,
    #[command(flatten)]
    pub sampler: SamplerFlags,
    /// Number of images.
    #[arg(short = 'n', long = "num", default_value_t = 16)]
    pub num: usize,
    /// Class to generate (conditional models); default: cycle through all classes.
    #[arg(long)]
    pub class: Option<usize>,
    /// Classifier-free guidance scale for conditional models: 1 samples the conditional model
    /// as trained, larger values push harder towards the class but need a well-trained
    /// unconditional branch (p_uncond); the CPU preset's 1500 steps do not give it one.
    #[arg(long, default_value_t = 1.0)]
    pub guidance: f64,
    /// Seed of the starting noise and of stochastic samplers.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Grid PNG to write (default: <run>/samples/<sampler>-<steps>-seed<seed>.png).
    #[arg(long, value_name = "FILE.png")]
    pub out: Option<PathBuf>,
    /// Also write one PNG per image here: sample_NNNNN.png, or sample_NNNNN_class_K.png.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Write the reverse process of the first images as an animated, looping GIF.
    #[arg(long, value_name = "FILE.gif")]
    pub gif: Option<PathBuf>,
    /// Write a progressive strip: x_t at --strip-steps steps (columns) for the first eight
    /// images (rows).
    #[arg(long, value_name = "FILE.png")]
    pub strip: Option<PathBuf>,
    /// Columns of the progressive strip: steps of the reverse process, evenly spaced, last included.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub strip_steps: usize,
    /// Images per forward pass (bounds memory; -n can be larger).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Grid columns (default: the number of classes for conditional models, else 8).
    #[arg(long)]
    pub columns: Option<usize>,
    /// Device: cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
}

/// Labels for `n` images: one class, or all classes in turn; `None` for unconditional models.
pub fn labels_for(
    config: &TrainConfig,
    class: Option<usize>,
    n: usize,
) -> Result<Option<Vec<usize>>> {
    match (config.model.num_classes, class) {
        (None, Some(_)) => {
            bail!("--class needs a conditional model; this run was trained without labels")
        }
        (None, None) => Ok(None),
        (Some(k), Some(c)) if c >= k => bail!(
            "--class {c} is out of range: this model knows classes 0..{}",
            k - 1
        ),
        (Some(_), Some(c)) => Ok(Some(vec![c; n])),
        (Some(k), None) => Ok(Some((0..n).map(|i| i % k).collect())),
    }
}

struct SampleTask {
    args: SampleArgs,
}

impl BackendTask for SampleTask {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        sample::<B::InnerBackend>(&self.args, &device)
    }
}

fn sample<B: Backend>(args: &SampleArgs, device: &B::Device) -> Result<()> {
    if args.num == 0 || args.batch_size == 0 || args.strip_steps == 0 {
        bail!("-n, --batch-size and --strip-steps must be at least 1");
    }
    let LoadedRun {
        config,
        model,
        schedule,
        ..
    } = args.run.load::<B>(device)?;
    let labels = labels_for(&config, args.class, args.num)?;
    let sampler_config = args.sampler.config(SamplerConfig::default())?;
    let mut sampler = sampler_config.init::<B>(&schedule, config.prediction_type)?;
    let steps = sampler.timesteps().len();
    let (c, size) = (config.model.in_channels, config.model.image_size);
    let mut rng = NoiseRng::seed_from_u64(args.seed);

    let gif_steps = evenly_spaced(steps, 60);
    let strip_steps = evenly_spaced(steps, args.strip_steps);
    let mut gif = GifWriter::new(60, 1500);
    let mut strip_columns: Vec<Vec<DynamicImage>> = Vec::new();
    let watched = 16.min(args.num);
    let columns = args
        .columns
        .unwrap_or(config.model.num_classes.filter(|k| *k <= 16).unwrap_or(8));

    let mut images = Vec::with_capacity(args.num);
    let started = std::time::Instant::now();
    for (chunk, start) in (0..args.num).step_by(args.batch_size).enumerate() {
        let n = args.batch_size.min(args.num - start);
        let x_t = rng.gaussian_tensor::<B, 4>([n, c, size, size], device);
        let chunk_labels = labels.as_ref().map(|l| &l[start..start + n]);
        let cond = conditioning::<B>(
            chunk_labels,
            config.model.num_classes,
            args.guidance,
            device,
        );
        let record = chunk == 0 && (args.gif.is_some() || args.strip.is_some());
        let mut frame_error = None;
        if record && args.gif.is_some() {
            gif.push(grid(
                &to_images(x_t.clone().slice(0..watched.min(n)))?,
                columns,
            ));
        }
        let x0 = sample_loop(
            &model,
            sampler.as_mut(),
            x_t,
            &cond,
            &mut rng,
            |i, _t, x| {
                if !record || frame_error.is_some() {
                    return;
                }
                let wanted_gif = args.gif.is_some() && gif_steps.contains(&i);
                let wanted_strip = args.strip.is_some() && strip_steps.contains(&i);
                if !(wanted_gif || wanted_strip) {
                    return;
                }
                match to_images(x.clone().slice(0..watched.min(n))) {
                    Ok(tiles) => {
                        if wanted_gif {
                            gif.push(grid(&tiles, columns));
                        }
                        if wanted_strip {
                            strip_columns.push(tiles.into_iter().take(8).collect());
                        }
                    }
                    Err(err) => frame_error = Some(err),
                }
            },
        )?;
        if let Some(err) = frame_error {
            return Err(err);
        }
        images.extend(to_images(x0)?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "sampled {} images with {steps} steps in {elapsed:.1}s ({:.2} images/s)",
        images.len(),
        images.len() as f64 / elapsed
    );

    let out = args.out.clone().unwrap_or_else(|| {
        let name = format!("{}-{steps}-seed{}.png", sampler_config.name(), args.seed);
        RunDir::new(&args.run.run).samples_dir().join(name)
    });
    save_png(&grid(&images, columns), &out)?;
    eprintln!("wrote {}", out.display());
    if let Some(dir) = &args.out_dir {
        write_individual(&images, labels.as_deref(), dir)?;
        eprintln!("wrote {} images to {}", images.len(), dir.display());
    }
    if let Some(path) = &args.gif {
        let frames = gif.len();
        gif.write(path)?;
        eprintln!("wrote {} ({frames} frames)", path.display());
    }
    if let Some(path) = &args.strip {
        save_png(&strip(&strip_columns), path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn write_individual(images: &[DynamicImage], labels: Option<&[usize]>, dir: &Path) -> Result<()> {
    for (i, image) in images.iter().enumerate() {
        let name = match labels {
            Some(labels) => format!("sample_{i:05}_class_{}.png", labels[i]),
            None => format!("sample_{i:05}.png"),
        };
        save_png(image, &dir.join(name))?;
    }
    Ok(())
}

/// Rows are images, columns are steps of the reverse process.
pub fn strip(columns: &[Vec<DynamicImage>]) -> DynamicImage {
    let rows = columns.first().map_or(0, Vec::len);
    let mut tiles = Vec::with_capacity(rows * columns.len());
    for r in 0..rows {
        for column in columns {
            tiles.push(upscale(&column[r], 56));
        }
    }
    diffusion_train::image_grid(&tiles, columns.len().max(1))
}

pub fn run(args: SampleArgs) -> Result<()> {
    let device = args.device;
    ensure_available(device)?;
    dispatch(device, SampleTask { args })
}
