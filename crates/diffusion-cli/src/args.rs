//! Flags that several commands share, written once.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use clap::Args;
use diffusion_train::checkpoint::CheckpointChoice;
use diffusion_train::{LoadedRun, load_run};

/// A trained run to load: its directory, which checkpoint, which weights.
#[derive(Debug, Args, Clone)]
pub struct RunFlags {
    /// Run directory written by `train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Load the checkpoint of this step (`info --run DIR` lists them) and nothing else;
    /// default: the newest readable one, passing over damaged newer ones with a warning.
    #[arg(long, value_name = "STEP")]
    pub checkpoint: Option<usize>,
    /// Use the raw weights instead of their exponential moving average.
    #[arg(long)]
    pub no_ema: bool,
}

impl RunFlags {
    /// Loads the run, with one warning line for each damaged checkpoint passed over.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<LoadedRun<B>> {
        if !self.run.is_dir() {
            bail!(
                "run directory {} does not exist: train one with `diffusion-cli train --run {}`",
                self.run.display(),
                self.run.display()
            );
        }
        let choice = match self.checkpoint {
            Some(step) => CheckpointChoice::Step(step),
            None => CheckpointChoice::NewestReadable,
        };
        let run = load_run::<B>(&self.run, choice, !self.no_ema, device)?;
        for skipped in &run.skipped {
            let _ = writeln!(
                std::io::stderr(),
                "warning: passing over checkpoint {} ({}); using step {}",
                skipped.dir.display(),
                skipped.error,
                run.step
            );
        }
        Ok(run)
    }
}
