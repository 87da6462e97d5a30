//! `diffusion-cli forward`: the forward process q(x_t | x_0) on a real image, as a strip and a GIF.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use diffusion_core::forward::timesteps_tensor;
use diffusion_core::schedule::ScheduleConfig;
use diffusion_core::{NoiseRng, q_sample};
use diffusion_train::data::DataConfig;
use diffusion_train::quality::QualityProgress;

use crate::args::{DataFlags, ScheduleFlags};
use crate::images::{GifWriter, evenly_spaced, grid, save_png, to_images};
use crate::progress::PhaseProgress;
use crate::real_images::{dataset_images, file_image};

type B = burn::backend::Flex;

/// Noise a real image in closed form, x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) eps, at several t.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["dataset", "image"])))]
pub struct ForwardArgs {
    #[command(flatten)]
    pub data: DataFlags,
    /// Index of the image in the dataset.
    #[arg(long, default_value_t = 0, requires = "dataset")]
    pub index: usize,
    /// An image file instead of a dataset (PNG, JPEG).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    /// Timesteps shown in the strip, comma-separated (default: ten, evenly spaced, 0 to T-1).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2,...")]
    pub at: Option<Vec<usize>>,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Strip PNG to write: x_t at each chosen t, left to right.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
    /// Also write the whole forward process as a looping GIF.
    #[arg(long, value_name = "FILE.gif")]
    pub gif: Option<PathBuf>,
}

pub fn run(args: ForwardArgs) -> Result<()> {
    let device = Default::default();
    let schedule = args.schedule.apply(ScheduleConfig::new()).init()?;
    let t_max = schedule.num_timesteps() - 1;
    let x0 = match (&args.image, &args.data.dataset) {
        (Some(path), _) => file_image::<B>(path, &device)?,
        (None, Some(_)) => {
            let data = args.data.apply(DataConfig::new());
            dataset_images::<B>(&data, args.index, 1, &device)?.0
        }
        (None, None) => bail!("give --dataset NAME [--index I] or --image FILE"),
    };
    let at = match &args.at {
        Some(at) => at.clone(),
        None => (0..10).map(|k| k * t_max / 9).collect(),
    };
    if let Some(bad) = at.iter().find(|&&t| t > t_max) {
        bail!("--at {bad} is out of range: the schedule has timesteps 0..={t_max}");
    }
    // One noise draw for every t, as in the closed form: the strip shows the same eps growing.
    let noise = NoiseRng::seed_from_u64(args.seed).gaussian_tensor::<B, 4>(x0.dims(), &device);
    let noised = |t: usize| {
        q_sample(
            &schedule,
            x0.clone(),
            noise.clone(),
            timesteps_tensor(&[t], &device),
        )
    };
    let gif_frames = match args.gif {
        Some(_) => evenly_spaced(t_max + 1, 60),
        None => Vec::new(),
    };
    let mut progress = PhaseProgress::new();
    progress.begin(
        &format!("noising to {} timesteps", at.len() + gif_frames.len()),
        at.len() + gif_frames.len(),
    );
    let mut tiles = Vec::with_capacity(at.len());
    for (i, &t) in at.iter().enumerate() {
        tiles.extend(to_images(noised(t))?);
        progress.advance(i + 1);
    }
    let mut gif = GifWriter::new(50, 1200);
    for (i, &t) in gif_frames.iter().enumerate() {
        gif.push(grid(&to_images(noised(t))?, 1));
        progress.advance(at.len() + i + 1);
    }
    progress.finish();
    save_png(&grid(&tiles, tiles.len()), &args.out)?;
    eprintln!("wrote {} (t = {})", args.out.display(), join(&at));
    if let Some(path) = &args.gif {
        gif.write(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn join(values: &[usize]) -> String {
    values
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
