//! `diffusion-cli sample`: turn noise into images with a trained run.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use clap::Args;
use diffusion_core::{NoiseRng, SamplerConfig, inpaint_loop, noised_start, sample_loop};
use diffusion_train::quality::{QualityProgress, conditioning};
use diffusion_train::{LoadedRun, RunDir, TrainConfig};
use image::DynamicImage;

use crate::args::{RunFlags, SamplerFlags};
use crate::backend::{BackendTask, DeviceChoice, dispatch, ensure_available};
use crate::images::{GifWriter, evenly_spaced, grid, save_png, to_images, upscale};
use crate::init_image::{IMG2IMG_STRENGTH, UserImage, check_strength, strength_start};
use crate::progress::PhaseProgress;

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
    /// Grid PNG to write (default: <run>/samples/<sampler>-<steps>-seed<seed>.png, ending in
    /// -img2img or -inpaint with --init-image).
    #[arg(long, value_name = "FILE.png")]
    pub out: Option<PathBuf>,
    /// Also write one PNG per image here, named by index, class and seed:
    /// sample_NNNNN_class_K_seed_S.png (sample_NNNNN_seed_S.png without classes).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Start from this image (PNG, JPEG, any size; stretched to the model's size, converted
    /// to its channels) noised part of the way instead of from pure noise: img2img, SDEdit
    /// (Meng et al. 2022).
    #[arg(long, value_name = "FILE")]
    pub init_image: Option<PathBuf>,
    /// With --init-image: the fraction of the reverse process to run, in (0, 1], as diffusers:
    /// the last floor(steps * S) steps; small keeps the image, 1 starts from noise
    /// [default: 0.8, with --mask 1].
    #[arg(long, value_name = "S")]
    pub strength: Option<f64>,
    /// With --init-image: inpaint. A mask of the image's width and height, grayscale (or the
    /// model's channels): white (>= 128) pixels keep the image, black ones are generated (the
    /// opposite of diffusers' masks). Method: replacement, the known region is put back,
    /// noised to the current level, after every step (no RePaint resampling).
    #[arg(long, value_name = "FILE")]
    pub mask: Option<PathBuf>,
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

/// The checks that need no run: counts, and the flags that only make sense together.
fn check_flags(args: &SampleArgs) -> Result<Option<f64>> {
    if args.num == 0 || args.batch_size == 0 || args.strip_steps == 0 {
        bail!("-n, --batch-size and --strip-steps must be at least 1");
    }
    if args.init_image.is_none() {
        if args.strength.is_some() {
            bail!("--strength needs --init-image FILE: the image to start from");
        }
        if args.mask.is_some() {
            bail!("--mask needs --init-image FILE: the image whose pixels it keeps");
        }
        return Ok(None);
    }
    let default = if args.mask.is_some() {
        1.0
    } else {
        IMG2IMG_STRENGTH
    };
    let strength = args.strength.unwrap_or(default);
    check_strength(strength)?;
    Ok(Some(strength))
}

fn sample<B: Backend>(args: &SampleArgs, device: &B::Device) -> Result<()> {
    let strength = check_flags(args)?;
    let LoadedRun {
        config,
        model,
        schedule,
        ..
    } = args.run.load::<B>(device)?;
    let labels = labels_for(&config, args.class, args.num)?;
    let (c, size) = (config.model.in_channels, config.model.image_size);
    let mut sampler_config = args.sampler.config(SamplerConfig::default())?;
    let mut sampler = SamplerFlags::init::<B>(&sampler_config, &schedule, config.prediction_type)?;
    let user = match (&args.init_image, strength) {
        (Some(path), Some(strength)) => {
            let user = UserImage::<B>::load(path, args.mask.as_deref(), c, size, device)?;
            let start_t = strength_start(sampler.timesteps(), strength)?;
            sampler_config = sampler_config.with_start_t(Some(start_t));
            sampler = SamplerFlags::init::<B>(&sampler_config, &schedule, config.prediction_type)?;
            if user.mask.is_some() {
                eprintln!(
                    "inpainting: {:.1}% of the pixels kept, the rest generated; from t = {start_t}",
                    100.0 * user.known_fraction
                );
            } else {
                eprintln!("img2img: strength {strength}, from t = {start_t}");
            }
            Some((user, strength))
        }
        _ => None,
    };
    let steps = sampler.timesteps().len();
    let evaluations = sampler.model_timesteps().len();
    let mut rng = NoiseRng::seed_from_u64(args.seed);

    let gif_steps = evenly_spaced(evaluations, 60);
    let strip_steps = evenly_spaced(evaluations, args.strip_steps);
    let mut gif = GifWriter::new(60, 1500);
    let mut strip_columns: Vec<Vec<DynamicImage>> = Vec::new();
    let watched = 16.min(args.num);
    let columns = args
        .columns
        .unwrap_or(config.model.num_classes.filter(|k| *k <= 16).unwrap_or(8));

    let mut images = Vec::with_capacity(args.num);
    let started = std::time::Instant::now();
    let mut progress = PhaseProgress::new();
    progress.begin(
        &format!(
            "sampling {} images ({}, {steps} steps)",
            args.num,
            sampler_config.name()
        ),
        args.num.div_ceil(args.batch_size) * evaluations,
    );
    let mut evaluated = 0;
    for (chunk, start) in (0..args.num).step_by(args.batch_size).enumerate() {
        let n = args.batch_size.min(args.num - start);
        let x_t = match &user {
            // Inpainting at full strength starts from noise, as diffusers' does.
            Some((user, strength)) if user.mask.is_none() || *strength < 1.0 => {
                let x0 = user.image.clone().expand([n, c, size, size]);
                noised_start(&schedule, sampler.as_ref(), x0, &mut rng)
            }
            _ => rng.gaussian_tensor::<B, 4>([n, c, size, size], device),
        };
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
        let mut on_step = |i: usize, _t: usize, x: &Tensor<B, 4>| {
            evaluated += 1;
            progress.advance(evaluated);
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
        };
        let known = user
            .as_ref()
            .and_then(|(u, _)| Some((&u.image, u.mask.as_ref()?)));
        let x0 = match known {
            Some((image, mask)) => inpaint_loop(
                &model,
                sampler.as_mut(),
                x_t,
                image.clone(),
                mask.clone(),
                &cond,
                &mut rng,
                &mut on_step,
            )?,
            None => sample_loop(&model, sampler.as_mut(), x_t, &cond, &mut rng, &mut on_step)?,
        };
        if let Some(err) = frame_error {
            return Err(err);
        }
        images.extend(to_images(x0)?);
    }
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "sampled {} images with {steps} steps in {elapsed:.1}s ({:.2} images/s)",
        images.len(),
        images.len() as f64 / elapsed
    );

    let out = args.out.clone().unwrap_or_else(|| {
        let kind = match &user {
            Some((user, _)) if user.mask.is_some() => "-inpaint",
            Some(_) => "-img2img",
            None => "",
        };
        let name = format!(
            "{}-{steps}-seed{}{kind}.png",
            sampler_config.name(),
            args.seed
        );
        RunDir::new(&args.run.run).samples_dir().join(name)
    });
    save_png(&grid(&images, columns), &out)?;
    eprintln!("wrote {}", out.display());
    if let Some(dir) = &args.out_dir {
        write_individual(&images, labels.as_deref(), args.seed, dir)?;
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

fn write_individual(
    images: &[DynamicImage],
    labels: Option<&[usize]>,
    seed: u64,
    dir: &Path,
) -> Result<()> {
    for (i, image) in images.iter().enumerate() {
        let name = match labels {
            Some(labels) => format!("sample_{i:05}_class_{}_seed_{seed}.png", labels[i]),
            None => format!("sample_{i:05}_seed_{seed}.png"),
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
