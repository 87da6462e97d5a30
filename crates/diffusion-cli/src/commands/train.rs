//! `diffusion-cli train`: a preset or a config file, command-line overrides, one run directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::AutodiffBackend;
use clap::Args;
use diffusion_core::{LossWeighting, PredictionType};
use diffusion_nets::UNetVariant;
use diffusion_train::data::DatasetSource;
use diffusion_train::data::{ImageShape, Split};
use diffusion_train::quality::{EvalSpec, Evaluator, MetricSet};
use diffusion_train::{LrDecay, RunDir, TrainConfig, TrainError, Trainer, TrainingEval};

use crate::args::{DataFlags, ScheduleFlags, config_name};
use crate::backend::{BackendTask, DeviceChoice, dispatch, ensure_available};
use crate::progress::{PhaseProgress, TrainProgress};

/// Train a diffusion model. With no flags: the `mnist` preset on the bundled MNIST sample, CPU.
///
/// Stopping: SIGINT (Ctrl-C), SIGTERM and SIGHUP finish the step, save a checkpoint and exit
/// with status 0; continue with `--resume`. Signals within a second of the first count as one;
/// a later one quits at once without saving, with status 128 + its number (130 for SIGINT,
/// 143 for SIGTERM).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Experiment config (JSON, as in assets/configs/); default: the preset.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Training preset: mnist, fashion-mnist, cifar10, cifar10-ddpm (default: chosen by --dataset).
    #[arg(long, conflicts_with = "config")]
    pub preset: Option<String>,
    #[command(flatten)]
    pub data: DataFlags,
    /// Resize the images to N x N and build the network for that size.
    #[arg(long, value_name = "N")]
    pub image_size: Option<usize>,
    /// Run directory for config.json, checkpoints/, metrics.jsonl and samples/ (default: runs/<preset>).
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Network variant: conv (no residual connections, no attention), residual, or
    /// residual-attention (the DDPM architecture).
    #[arg(long, value_parser = config_name::<UNetVariant>, value_name = "NAME")]
    pub model: Option<UNetVariant>,
    #[command(flatten)]
    pub schedule: ScheduleFlags,
    /// What the network predicts: eps (the noise, DDPM), x0 (the clean image) or v (the
    /// velocity, Salimans & Ho 2022); diffusers' names (epsilon, sample, v_prediction) work too.
    #[arg(long, value_parser = config_name::<PredictionType>, value_name = "NAME")]
    pub prediction: Option<PredictionType>,
    /// Train for this many passes over the dataset.
    #[arg(long, conflicts_with = "max_steps")]
    pub epochs: Option<usize>,
    /// Total optimizer steps of the run (counted across resumes).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Images per optimizer step.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (AdamW).
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW's decoupled weight decay, per unit of learning rate; 0 gives Adam.
    #[arg(long, value_name = "W")]
    pub weight_decay: Option<f32>,
    /// Steps of linear learning-rate warm-up up to --lr.
    #[arg(long, value_name = "N")]
    pub warmup_steps: Option<usize>,
    /// The learning rate after the warm-up: constant, or cosine (half-cosine down to the
    /// config's `min_lr_ratio` times the peak at the last step).
    #[arg(long, value_parser = config_name::<LrDecay>, value_name = "NAME")]
    pub lr_decay: Option<LrDecay>,
    /// Upper bound of the EMA decay, in [0, 1] (the EMA weights are what `sample` uses).
    #[arg(long, value_name = "D")]
    pub ema_decay: Option<f64>,
    /// Clip the global gradient norm at this value (> 0), or `off` to log it only.
    #[arg(long, value_parser = grad_clip, value_name = "NORM|off")]
    pub grad_clip: Option<GradClip>,
    /// Weight of each timestep's loss: uniform, or min-snr:GAMMA (Hang et al. 2023; the paper
    /// recommends min-snr:5), expressed in the space of the prediction type.
    #[arg(long, value_parser = loss_weighting, value_name = "uniform|min-snr:GAMMA")]
    pub loss_weighting: Option<LossWeighting>,
    /// Label dropout of a class-conditional run, in [0, 1): the fraction of images trained
    /// without their label, which classifier-free guidance needs.
    #[arg(long, value_name = "P")]
    pub p_uncond: Option<f64>,
    /// Micro-batches of --batch-size whose gradients are summed into one optimizer step
    /// (1 to 1024): the effective batch is their product.
    #[arg(long, value_name = "K")]
    pub grad_accum: Option<usize>,
    /// Keep this many newest checkpoints (1 to 10000); older ones are deleted.
    #[arg(long, value_name = "N")]
    pub keep_checkpoints: Option<usize>,
    /// Seed of every random choice (weights, noise, timesteps, data order).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Condition on class labels (with 10% label dropout for classifier-free guidance).
    #[arg(long, conflicts_with = "unconditional")]
    pub conditional: bool,
    /// Train without labels.
    #[arg(long)]
    pub unconditional: bool,
    /// Device: cpu, wgpu[:N] or cuda[:N].
    #[arg(long, default_value = "cpu")]
    pub device: DeviceChoice,
    /// Continue the run from its newest readable checkpoint (damaged newer ones are renamed
    /// to step-N.damaged and passed over); with none, say so and start a new run, so that one
    /// command serves the first launch and every relaunch of a preemptible job.
    #[arg(long)]
    pub resume: bool,
    /// Save a checkpoint every N steps.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Write a preview grid (EMA weights) every N steps.
    #[arg(long, value_name = "N")]
    pub sample_every: Option<usize>,
    /// Measure sample quality every N optimizer steps and at the last one (off by default):
    /// FD-classifier, and conditional accuracy for class-conditional runs (28x28 grayscale
    /// datasets), FID, KID, precision/recall and Inception Score once Inception's weights are
    /// fetched, of --eval-num images drawn from the EMA weights with the preview sampler, always
    /// from the same noise. Logged to metrics.jsonl and drawn by `plot`. The first use on a dataset
    /// trains its classifier (a minute or two) and caches it under the data directory.
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Images per measurement of --eval-every; FID-type metrics are biased by n, so compare
    /// only curves measured with the same number.
    #[arg(long, value_name = "K", default_value_t = 1000)]
    pub eval_num: usize,
}

fn default_preset(dataset: Option<&DatasetSource>) -> &'static str {
    match dataset {
        None | Some(DatasetSource::MnistSample | DatasetSource::Mnist) => "mnist",
        Some(DatasetSource::FashionMnist) => "fashion-mnist",
        Some(DatasetSource::Cifar10 | DatasetSource::Folder { .. }) => "cifar10",
    }
}

/// The experiment: the base config (file, saved run config or preset) with the flags applied.
fn build_config(args: &TrainArgs, run_dir: &Path) -> Result<TrainConfig> {
    let saved = match args.resume && args.config.is_none() && args.preset.is_none() {
        true => RunDir::new(run_dir).read_config()?,
        false => None,
    };
    let mut config = if let Some(path) = &args.config {
        TrainConfig::from_file(path)?
    } else if let Some(saved) = saved {
        saved
    } else {
        let name = args
            .preset
            .as_deref()
            .unwrap_or(default_preset(args.data.dataset.as_ref()));
        TrainConfig::preset(name)?
    };
    config.data = args.data.apply(config.data);
    if let Some(size) = args.image_size {
        config.data.image_size = Some(size);
        config.data.pad_to = None;
        config.model.image_size = size;
    }
    if let Some(model) = args.model {
        config.model.variant = model;
        if model != UNetVariant::ResidualAttention {
            config.model.attention_resolutions.clear();
        }
    }
    config.schedule = args.schedule.apply(config.schedule);
    if let Some(prediction) = args.prediction {
        config.prediction_type = prediction;
    }
    if let Some(epochs) = args.epochs {
        config.epochs = Some(epochs);
        config.max_steps = None;
    }
    if let Some(steps) = args.max_steps {
        config.max_steps = Some(steps);
        config.epochs = None;
    }
    if let Some(b) = args.batch_size {
        config.batch_size = b;
    }
    if let Some(lr) = args.lr {
        config.optimizer.lr = lr;
    }
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if args.conditional {
        config.model.num_classes = Some(config.model.num_classes.unwrap_or(10));
        if config.p_uncond == 0.0 {
            config.p_uncond = 0.1;
        }
    }
    if args.unconditional {
        config.model.num_classes = None;
        config.p_uncond = 0.0;
    }
    if let Some(p) = args.p_uncond {
        config.p_uncond = p;
    }
    if let Some(w) = args.weight_decay {
        config.optimizer.weight_decay = w;
    }
    if let Some(n) = args.warmup_steps {
        config.lr_schedule.warmup_steps = n;
    }
    if let Some(decay) = args.lr_decay {
        config.lr_schedule.decay = decay;
    }
    if let Some(d) = args.ema_decay {
        config.ema.decay = d;
    }
    if let Some(GradClip(norm)) = args.grad_clip {
        config.optimizer.grad_clip_norm = norm;
    }
    if let Some(weighting) = args.loss_weighting {
        config.loss_weighting = weighting;
    }
    if let Some(k) = args.grad_accum {
        config.grad_accum_steps = k;
    }
    if let Some(n) = args.keep_checkpoints {
        config.keep_last_checkpoints = n;
    }
    if let Some(n) = args.checkpoint_every {
        config.checkpoint_every = n;
    }
    if let Some(n) = args.sample_every {
        config.sample_every = n;
    }
    config.validate()?;
    Ok(config)
}

/// `--grad-clip`: a maximum global norm, or `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradClip(pub Option<f64>);

fn grad_clip(text: &str) -> Result<GradClip, String> {
    if matches!(text, "off" | "none") {
        return Ok(GradClip(None));
    }
    match text.parse::<f64>() {
        Ok(norm) if norm.is_finite() && norm > 0.0 => Ok(GradClip(Some(norm))),
        _ => Err(format!("expected a norm > 0 or `off`, got `{text}`")),
    }
}

/// `--loss-weighting`: `uniform` or `min-snr:GAMMA`.
fn loss_weighting(text: &str) -> Result<LossWeighting, String> {
    let weighting = match text.split_once(':') {
        None if text == "uniform" => LossWeighting::Uniform,
        Some(("min-snr", gamma)) => LossWeighting::MinSnr {
            gamma: gamma
                .parse()
                .map_err(|_| format!("min-snr's gamma must be a number, got `{gamma}`"))?,
        },
        _ => {
            return Err(format!(
                "expected `uniform` or `min-snr:GAMMA` (e.g. min-snr:5), got `{text}`"
            ));
        }
    };
    weighting.validate().map_err(|e| e.to_string())?;
    Ok(weighting)
}

struct TrainTask {
    config: TrainConfig,
    run_dir: PathBuf,
    resume: bool,
    stop: Arc<AtomicBool>,
    /// `--eval-every` and `--eval-num`.
    eval: Option<(usize, usize)>,
}

impl BackendTask for TrainTask {
    type Output = ();

    fn run<B: AutodiffBackend>(self, device: B::Device) -> Result<()> {
        let eval = match self.eval {
            Some((every, num)) => {
                let spec = EvalSpec {
                    data: self.config.data.clone(),
                    reference: Split::Test,
                    metrics: MetricSet::Auto,
                    reference_limit: num.max(10_000),
                    batch_size: 64,
                    image_shape: Some(ImageShape {
                        channels: self.config.model.in_channels,
                        height: self.config.model.image_size,
                        width: self.config.model.image_size,
                    }),
                };
                let evaluator = Evaluator::prepare::<B>(spec, &device, &mut PhaseProgress::new())
                    .context("preparing --eval-every")?;
                Some(TrainingEval {
                    every,
                    num,
                    evaluator,
                })
            }
            None => None,
        };
        let mut progress = TrainProgress::new(self.resume.then_some(self.run_dir.as_path()));
        let mut trainer = Trainer::<B>::new(self.config, &self.run_dir, device).resume(self.resume);
        if let Some(eval) = eval {
            trainer = trainer.with_eval(eval);
        }
        let result = trainer.run(&self.stop, &mut progress);
        progress.finish();
        let summary = result.map_err(|err| explain(err, &self.run_dir))?;
        let checkpoint = summary
            .last_checkpoint
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into());
        if summary.stopped {
            eprintln!(
                "stopped at step {}/{}; checkpoint {checkpoint}; continue with `--resume --run {}`",
                summary.final_step,
                summary.total_steps,
                self.run_dir.display()
            );
        } else {
            eprintln!(
                "done: step {}/{}, last loss {:.4}, checkpoint {checkpoint}",
                summary.final_step, summary.total_steps, summary.last_loss
            );
            eprintln!(
                "sample with: diffusion-cli sample --run {}",
                self.run_dir.display()
            );
        }
        Ok(())
    }
}

/// Adds what to do next to the errors users can fix.
fn explain(err: TrainError, run_dir: &Path) -> anyhow::Error {
    match err {
        TrainError::RunExists { .. } => anyhow::anyhow!(
            "{err}; continue it with `--resume`, or choose another directory with `--run DIR`"
        ),
        other => other.into(),
    }
    .context(format!("training into {}", run_dir.display()))
}

pub fn run(args: TrainArgs) -> Result<()> {
    ensure_available(args.device)?;
    let preset_name = args.preset.clone().unwrap_or_else(|| {
        match &args.config {
            Some(path) => path.file_stem().map(|s| s.to_string_lossy().into_owned()),
            None => None,
        }
        .unwrap_or_else(|| default_preset(args.data.dataset.as_ref()).to_string())
    });
    let run_dir = args
        .run
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&preset_name));
    let config = build_config(&args, &run_dir)?;
    if run_dir.exists() && !run_dir.is_dir() {
        bail!("--run {} exists and is not a directory", run_dir.display());
    }
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;

    let eval = match args.eval_every {
        Some(0) => bail!("--eval-every must be at least 1 (leave it out to measure nothing)"),
        Some(_) if args.eval_num < 2 => bail!("--eval-num must be at least 2"),
        Some(every) => Some((every, args.eval_num)),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    crate::stop::install(stop.clone())?;

    eprintln!(
        "run directory: {} (device {})",
        run_dir.display(),
        args.device
    );
    dispatch(
        args.device,
        TrainTask {
            config,
            run_dir,
            resume: args.resume,
            stop,
            eval,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_preset_follows_the_dataset() {
        assert_eq!(default_preset(None), "mnist");
        assert_eq!(
            default_preset(Some(&DatasetSource::FashionMnist)),
            "fashion-mnist"
        );
        assert_eq!(default_preset(Some(&DatasetSource::Cifar10)), "cifar10");
    }
}
