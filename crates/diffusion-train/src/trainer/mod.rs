//! The training loop: a step-based loop (Burn's `Learner` is epoch-based and has no EMA hook)
//! that owns the run directory while it runs.

mod log_window;
mod preview;
mod step;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::data::dataset::Dataset;
use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use diffusion_core::NoiseSchedule;
use diffusion_nets::UNet;

pub use preview::write_preview;
pub use step::StepOutcome;

use crate::checkpoint::store::{quarantine, replace_file};
use crate::checkpoint::{
    CheckpointChoice, CheckpointState, all_finite, list_checkpoints, load_checkpoint,
    pick_checkpoint, save_checkpoint, verify_checkpoint,
};
use crate::data::{DataOrder, ImageDataset};
use crate::metrics::MetricsLog;
use crate::objective::DiffusionObjective;
use crate::observer::{StepProgress, TrainEvent, TrainObserver};
use crate::quality::{Evaluator, SampleSpec, Scores, class_labels, sample_in_batches};
use crate::run_dir::RunDir;
use crate::seeds::{eval_seed, init_seed};
use crate::{TrainConfig, TrainError};
use log_window::LogWindow;
use step::{StepData, optimizer_step};

/// How a call to [`Trainer::run`] ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Step training started from (non-zero after a resume).
    pub start_step: usize,
    /// Optimizer steps completed when it returned.
    pub final_step: usize,
    /// Total steps of the run.
    pub total_steps: usize,
    /// Whether it returned early because the stop flag was set.
    pub stopped: bool,
    /// Loss of the last applied step (NaN if none).
    pub last_loss: f64,
    /// Steps skipped for a non-finite loss or gradient, over the whole run.
    pub skipped_nonfinite: usize,
    /// The newest checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
}

/// Trains a [`diffusion_nets::UNet`] as described by a [`TrainConfig`] into a run directory:
/// `config.json`, `checkpoints/`, `metrics.jsonl`, `samples/`.
///
/// ```no_run
/// # use std::sync::atomic::AtomicBool;
/// # use diffusion_train::{Trainer, TrainConfig, NoObserver};
/// # type B = burn::backend::Autodiff<burn::backend::Flex>;
/// let config = TrainConfig::preset("mnist")?;
/// let stop = AtomicBool::new(false);
/// let summary = Trainer::<B>::new(config, "runs/mnist", Default::default())
///     .resume(true)
///     .run(&stop, &mut NoObserver)?;
/// # Ok::<(), diffusion_train::TrainError>(())
/// ```
pub struct Trainer<B: AutodiffBackend> {
    config: TrainConfig,
    run_dir: PathBuf,
    device: B::Device,
    resume: bool,
    dataset: Option<ImageDataset>,
    eval: Option<TrainingEval<B::InnerBackend>>,
}

/// Sample quality measured during training: every `every` steps (and at the last), `num`
/// images drawn with the preview sampler from the EMA weights, from the same noise each time,
/// scored by a prepared [`Evaluator`] and logged to `metrics.jsonl`.
#[derive(Debug)]
pub struct TrainingEval<B: Backend> {
    /// Optimizer steps between measurements; at least 1.
    pub every: usize,
    /// Images per measurement; at least 2.
    pub num: usize,
    /// The feature networks and reference features.
    pub evaluator: Evaluator<B>,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A trainer for `config` writing into `run_dir` on `device`.
    pub fn new(config: TrainConfig, run_dir: impl AsRef<Path>, device: B::Device) -> Self {
        Self {
            config,
            run_dir: run_dir.as_ref().to_path_buf(),
            device,
            resume: false,
            dataset: None,
            eval: None,
        }
    }

    /// Continue from the newest readable checkpoint of the run directory, if there is one
    /// (a fresh run otherwise: [`TrainEvent::Started`] says which). Damaged newer checkpoints
    /// are passed over, renamed to `step-N.damaged` and reported as
    /// [`TrainEvent::CheckpointSkipped`]; when none can be read, the run is an error, never
    /// restarted. Without it, a run directory that already holds checkpoints is an error.
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// Train on this dataset instead of loading `config.data` (tests, custom data).
    pub fn with_dataset(mut self, dataset: ImageDataset) -> Self {
        self.dataset = Some(dataset);
        self
    }

    /// Measure sample quality during training (see [`TrainingEval`]).
    pub fn with_eval(mut self, eval: TrainingEval<B::InnerBackend>) -> Self {
        self.eval = Some(eval);
        self
    }

    /// Trains until `max_steps` (or the converted `epochs`) optimizer steps are done, or until
    /// `stop` is set, in which case a checkpoint is saved and the call returns cleanly.
    pub fn run(
        self,
        stop: &AtomicBool,
        observer: &mut dyn TrainObserver,
    ) -> Result<TrainSummary, TrainError> {
        let Self {
            config,
            run_dir,
            device,
            resume,
            dataset,
            eval,
        } = self;
        config.validate()?;
        if let Some(eval) = &eval
            && (eval.every == 0 || eval.num < 2)
        {
            return Err(TrainError::invalid(
                "eval_every",
                "needs at least 1 step between measurements and at least 2 images each",
            ));
        }
        let layout = RunDir::new(&run_dir);
        let _lock = layout.lock()?;
        let dataset = match dataset {
            Some(dataset) => dataset,
            None => config.data.load_dataset()?,
        };
        check_data_fits(&config, &dataset)?;
        let schedule = config.schedule.init()?;
        let total_steps = config.total_steps(dataset.len());
        let objective = DiffusionObjective::new(
            schedule.clone(),
            config.prediction_type,
            config.loss_weighting,
            config.p_uncond,
            config.model.num_classes,
        )?;

        if !resume && !list_checkpoints(&run_dir)?.is_empty() {
            return Err(TrainError::RunExists { run_dir });
        }
        let latest = match resume {
            true => pick_checkpoint(&run_dir, CheckpointChoice::NewestReadable, |dir| {
                verify_checkpoint(dir)?;
                load_checkpoint::<B>(dir, &config, &device)
            })?,
            false => None,
        };
        for skipped in latest.iter().flat_map(|picked| &picked.skipped) {
            // Out of the way of the checkpoints this run will write at the same steps.
            let moved_to = quarantine(&skipped.dir)?;
            observer.on_event(&TrainEvent::CheckpointSkipped {
                step: skipped.step,
                path: skipped.dir.clone(),
                moved_to,
                reason: skipped.error.to_string(),
            });
        }
        let resumed_from = latest.as_ref().map(|picked| picked.dir.clone());
        let (mut model, mut ema, mut optim, mut state) = match latest {
            Some(picked) => {
                let loaded = picked.value;
                tracing::info!(step = loaded.state.step, dir = %picked.dir.display(), "resuming");
                (loaded.model, loaded.ema, loaded.optim, loaded.state)
            }
            None => {
                B::seed(&device, init_seed(config.seed));
                let model = config.model.init::<B>(&device)?;
                // Materialize the lazily initialized weights now, under the seed just set.
                all_finite(&model);
                let ema = model.valid();
                let optim = config.optimizer.to_burn().init();
                (model, ema, optim, CheckpointState::new(0, config.seed))
            }
        };
        let resumed = resumed_from.is_some();
        let start_step = state.step;
        replace_file(&layout.config_file(), config.to_json()?.as_bytes())?;
        let mut metrics = MetricsLog::open(&run_dir, start_step)?;
        let mut last_checkpoint = resumed_from;
        if !resumed {
            // A fresh run gets its step-0 checkpoint at once, so a kill at any later moment
            // leaves something to resume from.
            let dir = save_checkpoint(&run_dir, &config, &model, &ema, &optim, &state)?;
            last_checkpoint = Some(dir);
        }
        observer.on_event(&TrainEvent::Started {
            step: start_step,
            total_steps,
            resumed,
        });
        tracing::info!(start_step, total_steps, run_dir = %run_dir.display(), "training");

        let batcher = config.data.batcher(&dataset, config.seed);
        let mut order = DataOrder::new(config.seed, dataset.len(), config.batch_size)?;
        let started = Instant::now();
        let base_wall = state.wall_time_s;
        let mut window = LogWindow::default();
        let mut last_loss = f64::NAN;
        let mut stopped = false;
        let mut saved_step = start_step;

        while state.step < total_steps {
            if stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            let step = state.step;
            let lr = config
                .lr_schedule
                .lr_at(config.optimizer.lr, step, total_steps);
            let step_started = Instant::now();
            let data = StepData {
                dataset: &dataset,
                batcher: &batcher,
                order: &mut order,
            };
            let outcome;
            (model, ema, outcome) = optimizer_step(
                &config,
                &objective,
                data,
                (model, ema, &mut optim),
                step,
                lr,
                &device,
            );
            let seconds = step_started.elapsed().as_secs_f64();
            state.step += 1;
            state.lr = lr;
            (state.epoch, state.batch_index) =
                order.position((state.step * config.grad_accum_steps) as u64);
            state.wall_time_s = base_wall + started.elapsed().as_secs_f64();
            if outcome.applied {
                state.consecutive_nonfinite = 0;
                last_loss = outcome.loss;
            } else {
                state.skipped_nonfinite += 1;
                state.consecutive_nonfinite += 1;
                tracing::warn!(
                    step = state.step,
                    loss = outcome.loss,
                    grad_norm = outcome.grad_norm,
                    "non-finite loss or gradient: step skipped"
                );
                observer.on_event(&TrainEvent::SkippedNonFinite {
                    step: state.step,
                    consecutive: state.consecutive_nonfinite,
                });
            }
            window.add(&outcome, seconds);
            observer.on_step(&StepProgress {
                step: state.step,
                total_steps,
                loss: outcome.loss,
                grad_norm: outcome.grad_norm,
                lr,
                images_per_sec: outcome.images as f64 / seconds.max(1e-9),
                skipped: !outcome.applied,
            });
            if state.consecutive_nonfinite >= config.max_consecutive_nonfinite {
                return Err(TrainError::Diverged {
                    step: state.step,
                    consecutive: state.consecutive_nonfinite,
                });
            }

            let last = state.step == total_steps;
            let scores = match &eval {
                Some(eval) if state.step % eval.every == 0 || last => {
                    let scores = measure(eval, &ema, &config, &schedule, &device)?;
                    observer.on_event(&TrainEvent::Evaluated {
                        step: state.step,
                        scores: scores.clone(),
                    });
                    Some(scores)
                }
                _ => None,
            };
            if state.step % config.log_every == 0 || last || scores.is_some() {
                let mut record = window.take(&state, outcome.ema_decay);
                record.eval = scores;
                tracing::info!(
                    step = record.step,
                    loss = record.loss,
                    lr = record.lr,
                    grad_norm = record.grad_norm,
                    images_per_sec = record.images_per_sec,
                    "train"
                );
                metrics.append(&record)?;
            }
            if config.sample_every > 0 && (state.step % config.sample_every == 0 || last) {
                let path = layout.preview_file(state.step);
                write_preview(&ema, &config, &schedule, &path, &device)?;
                observer.on_event(&TrainEvent::PreviewSaved {
                    step: state.step,
                    path,
                });
            }
            if state.step % config.checkpoint_every == 0 || last {
                let dir = save_checkpoint(&run_dir, &config, &model, &ema, &optim, &state)?;
                saved_step = state.step;
                observer.on_event(&TrainEvent::CheckpointSaved {
                    step: state.step,
                    path: dir.clone(),
                });
                last_checkpoint = Some(dir);
            }
        }
        if saved_step != state.step {
            let dir = save_checkpoint(&run_dir, &config, &model, &ema, &optim, &state)?;
            observer.on_event(&TrainEvent::CheckpointSaved {
                step: state.step,
                path: dir.clone(),
            });
            last_checkpoint = Some(dir);
        }
        Ok(TrainSummary {
            run_dir,
            start_step,
            final_step: state.step,
            total_steps,
            stopped,
            last_loss,
            skipped_nonfinite: state.skipped_nonfinite,
            last_checkpoint,
        })
    }
}

/// Samples `eval.num` images from the EMA weights with the preview sampler, from the run's
/// fixed evaluation noise, and scores them.
fn measure<B: Backend>(
    eval: &TrainingEval<B>,
    ema: &UNet<B>,
    config: &TrainConfig,
    schedule: &NoiseSchedule,
    device: &B::Device,
) -> Result<Scores, TrainError> {
    let spec = SampleSpec {
        sampler: config.preview.sampler(),
        num: eval.num,
        batch_size: config.batch_size.clamp(1, 256),
        seed: eval_seed(config.seed),
        guidance: 1.0,
    };
    let labels = class_labels(config.model.num_classes, eval.num);
    let mut features = eval.evaluator.collector();
    sample_in_batches(
        ema,
        config,
        schedule,
        &spec,
        labels.as_deref(),
        device,
        &mut |images, labels| eval.evaluator.observe(&mut features, images, labels),
        &mut |_| {},
    )?;
    eval.evaluator.score(&features)
}

/// The data must have the network's channels and size, and no more classes than it has.
fn check_data_fits(config: &TrainConfig, dataset: &ImageDataset) -> Result<(), TrainError> {
    let model = &config.model;
    if dataset.is_empty() {
        return Err(TrainError::invalid("data", "the dataset is empty"));
    }
    if dataset.channels() != model.in_channels {
        return Err(TrainError::invalid(
            "model.in_channels",
            format!(
                "is {}, but the images have {} channels",
                model.in_channels,
                dataset.channels()
            ),
        ));
    }
    if dataset.height() != model.image_size || dataset.width() != model.image_size {
        return Err(TrainError::invalid(
            "model.image_size",
            format!(
                "is {}, but the images are {}x{} (set data.image_size / data.pad_to)",
                model.image_size,
                dataset.height(),
                dataset.width()
            ),
        ));
    }
    if let Some(classes) = model.num_classes
        && dataset.num_classes() > classes
    {
        return Err(TrainError::invalid(
            "model.num_classes",
            format!(
                "is {classes}, but the dataset has {} classes",
                dataset.num_classes()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tiny_dataset, tiny_train_config};

    #[test]
    fn data_that_does_not_fit_the_net_names_the_field() {
        let config = tiny_train_config();
        check_data_fits(&config, &tiny_dataset()).unwrap();
        let mut bigger = config.clone();
        bigger.model.image_size = 16;
        let err = check_data_fits(&bigger, &tiny_dataset()).unwrap_err();
        assert!(err.to_string().contains("model.image_size"), "{err}");
        let mut rgb = config.clone();
        rgb.model.in_channels = 3;
        let err = check_data_fits(&rgb, &tiny_dataset()).unwrap_err();
        assert!(err.to_string().contains("model.in_channels"), "{err}");
        let mut fewer = config;
        fewer.model.num_classes = Some(2);
        let err = check_data_fits(&fewer, &tiny_dataset()).unwrap_err();
        assert!(err.to_string().contains("model.num_classes"), "{err}");
    }
}
