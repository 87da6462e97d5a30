//! `diffusion-cli export`: a run's network as a diffusers `UNet2DModel` folder.

use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Flex;
use clap::Args;
use diffusion_train::interop::export_diffusers_folder;

use crate::args::RunFlags;

/// Write a run's network as a diffusers folder (config.json, diffusion_pytorch_model.safetensors,
/// scheduler_config.json) that `UNet2DModel.from_pretrained` and
/// `DDPMScheduler.from_pretrained` load.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub run: RunFlags,
    /// The folder to write; it must not exist yet.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let device = Default::default();
    let loaded = args.run.load::<Flex>(&device)?;
    export_diffusers_folder(&loaded.config, &loaded.model, &args.out)
        .with_context(|| format!("exporting {}", args.run.run.display()))?;
    println!(
        "exported step {} ({} weights) of {} to {}",
        loaded.step,
        if args.run.no_ema { "raw" } else { "EMA" },
        args.run.run.display(),
        args.out.display()
    );
    Ok(())
}
