//! `diffusion-cli info`: what a preset or a run directory holds.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use clap::Args;
use diffusion_nets::UNetConfig;
use diffusion_train::RunDir;
use diffusion_train::TrainConfig;
use diffusion_train::checkpoint::read_state;

/// Show the configuration, parameter count and checkpoints of a preset or a run.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["run", "preset"])))]
pub struct InfoArgs {
    /// A run directory written by `train`.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A preset name: a training preset (assets/configs/) or a network preset.
    #[arg(long)]
    pub preset: Option<String>,
}

pub fn run(args: InfoArgs) -> Result<()> {
    if let Some(name) = &args.preset {
        return preset_info(name);
    }
    let Some(run_dir) = &args.run else {
        bail!("give --run DIR or --preset NAME")
    };
    run_info(run_dir)
}

fn preset_info(name: &str) -> Result<()> {
    let (model, train) = match TrainConfig::preset(name) {
        Ok(config) => (config.model.clone(), Some(config)),
        Err(_) => match UNetConfig::preset(name) {
            Ok(model) => (model, None),
            Err(_) => {
                let mut known: Vec<&str> = TrainConfig::preset_names();
                known.extend(UNetConfig::preset_names());
                known.sort_unstable();
                known.dedup();
                bail!(
                    "unknown preset `{name}`; known presets: {}",
                    known.join(", ")
                );
            }
        },
    };
    println!("preset: {name}");
    // The description belongs to the network preset of that name; a training preset of the
    // same name (`mnist`) may use another network, which its printed config shows.
    if train.is_none()
        && let Some(description) = UNetConfig::preset_description(name)
    {
        println!("network: {description}");
    }
    match &train {
        Some(config) => println!("{}", config.to_json()?),
        None => println!("{}", serde_json::to_string_pretty(&model)?),
    }
    print_model_size(&model)
}

fn print_model_size(model: &UNetConfig) -> Result<()> {
    let device = burn::backend::flex::FlexDevice;
    let net = model.init::<burn::backend::Flex>(&device)?;
    println!("variant: {}", model.variant.name());
    println!("parameters: {}", net.num_params());
    let macs = model.macs_per_image()?;
    println!("forward cost: {:.3} GMACs per image", macs as f64 / 1e9);
    Ok(())
}

fn run_info(run_dir: &std::path::Path) -> Result<()> {
    if !run_dir.is_dir() {
        bail!("run directory {} does not exist", run_dir.display());
    }
    let layout = RunDir::new(run_dir);
    let checkpoints = layout.checkpoints()?;
    let config_path = layout.config_file();
    let config = TrainConfig::from_file(&config_path).with_context(|| {
        format!(
            "{} is not a run directory written by `train`",
            run_dir.display()
        )
    })?;
    println!("run: {}", run_dir.display());
    println!("dataset: {:?}", config.data.dataset);
    println!("{}", config.to_json()?);
    print_model_size(&config.model)?;
    if checkpoints.is_empty() {
        println!("checkpoints: none yet");
    }
    for (step, dir) in &checkpoints {
        match read_state(dir) {
            Ok(_) => println!("checkpoint: step {step} at {}", dir.display()),
            Err(err) => println!(
                "checkpoint: step {step} at {} is unreadable: {err}",
                dir.display()
            ),
        }
    }
    if let Some((step, _)) = checkpoints.last() {
        println!("step: {step}");
    }
    Ok(())
}
