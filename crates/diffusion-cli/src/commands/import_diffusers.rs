//! `diffusion-cli import-diffusers`: a diffusers `UNet2DModel` folder as a run directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use clap::Args;
use diffusion_train::TrainConfig;
use diffusion_train::interop::import_diffusers_run;

use crate::args::DataFlags;

/// Import a diffusers UNet2DModel (model folder or pipeline folder) as a run directory that
/// `sample`, `eval`, `denoise`, `info` and `train --resume` take.
#[derive(Debug, Args)]
pub struct ImportDiffusersArgs {
    /// A diffusers model folder (config.json, diffusion_pytorch_model.safetensors or .bin,
    /// optionally scheduler_config.json) or a pipeline folder with unet/ and scheduler/.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// The run directory to write; it must not exist yet.
    #[arg(long, value_name = "OUT")]
    pub run: PathBuf,
    /// Training preset whose data and training settings the run takes (for `train --resume`
    /// and `eval`) [default: cifar10-ddpm for 3-channel nets, mnist otherwise].
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    #[command(flatten)]
    pub data: DataFlags,
}

pub fn run(args: ImportDiffusersArgs) -> Result<()> {
    let device = Default::default();
    let report = import_diffusers_run::<Autodiff<Flex>>(
        &args.dir,
        &args.run,
        |net| {
            let name = args.preset.as_deref().unwrap_or(match net.in_channels {
                3 => "cifar10-ddpm",
                _ => "mnist",
            });
            let mut config = TrainConfig::preset(name)?;
            config.data = args.data.apply(config.data);
            Ok(config)
        },
        &device,
    )
    .with_context(|| format!("importing {}", args.dir.display()))?;
    let config = &report.config;
    println!(
        "imported {} into {} (step 0; optimizer fresh)",
        report.weights_file.display(),
        args.run.display()
    );
    println!(
        "network: {} {}x{}x{}, base {} x {:?}, {} class(es)",
        config.model.variant.name(),
        config.model.in_channels,
        config.model.image_size,
        config.model.image_size,
        config.model.base_channels,
        config.model.channel_mults,
        config.model.num_classes.map_or(0, |n| n)
    );
    if !report.had_scheduler {
        println!("no scheduler_config.json: the preset's schedule is used");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    println!(
        "sample with: diffusion-cli sample --run {}",
        args.run.display()
    );
    Ok(())
}
