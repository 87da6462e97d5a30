//! Progress on the terminal: training's bar with ETA, loss and images/s, and a bar per phase
//! of the other commands; plain log lines when standard error is not a terminal (CI logs,
//! redirected output).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diffusion_train::{StepProgress, TrainEvent, TrainObserver};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Draws training progress.
pub struct TrainProgress {
    bar: Option<ProgressBar>,
    last_line: Instant,
    line_every: Duration,
    resume_into: Option<PathBuf>,
}

impl TrainProgress {
    /// `resume_into`: the run directory when `--resume` was given, to say so when there was
    /// nothing to resume.
    pub fn new(resume_into: Option<&Path>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise} < {eta_precise}] {wide_bar} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            last_line: Instant::now(),
            line_every: Duration::from_secs(15),
            resume_into: resume_into.map(Path::to_path_buf),
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl TrainObserver for TrainProgress {
    fn on_step(&mut self, p: &StepProgress) {
        let msg = format!(
            "loss {:.4} | {:.0} img/s | lr {:.2e}",
            p.loss, p.images_per_sec, p.lr
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length(p.total_steps as u64);
                bar.set_position(p.step as u64);
                bar.set_message(msg);
            }
            None => {
                if self.last_line.elapsed() >= self.line_every || p.step == p.total_steps {
                    self.last_line = Instant::now();
                    eprintln!("step {}/{} {msg}", p.step, p.total_steps);
                }
            }
        }
    }

    fn on_event(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started {
                step,
                total_steps,
                resumed,
            } => {
                if let Some(bar) = &self.bar {
                    bar.set_length(*total_steps as u64);
                    bar.set_position(*step as u64);
                    bar.reset_eta();
                }
                if *resumed {
                    self.println(format!("resuming at step {step} of {total_steps}"));
                } else if let Some(dir) = &self.resume_into {
                    self.println(format!(
                        "nothing to resume in {} (no checkpoint): starting a new run of {total_steps} steps",
                        dir.display()
                    ));
                } else {
                    self.println(format!("training {total_steps} steps"));
                }
            }
            TrainEvent::CheckpointSaved { step, path } => {
                self.println(format!("step {step}: checkpoint {}", path.display()))
            }
            TrainEvent::CheckpointSkipped {
                path,
                moved_to,
                reason,
                ..
            } => self.println(format!(
                "warning: passing over checkpoint {} ({reason}); kept as {}",
                path.display(),
                moved_to.display()
            )),
            TrainEvent::PreviewSaved { step, path } => {
                self.println(format!("step {step}: preview {}", path.display()))
            }
            TrainEvent::Evaluated { step, scores } => {
                let mut parts = Vec::new();
                for (name, value) in [
                    ("FD-classifier", scores.fd_classifier),
                    ("accuracy", scores.accuracy),
                    ("FID", scores.fid),
                    ("KID", scores.kid),
                ] {
                    if let Some(v) = value {
                        parts.push(format!("{name} {v:.4}"));
                    }
                }
                self.println(format!(
                    "step {step}: {} (n = {})",
                    parts.join(", "),
                    scores.n
                ))
            }
            TrainEvent::SkippedNonFinite { step, consecutive } => self.println(format!(
                "step {step}: skipped, non-finite loss or gradient ({consecutive} in a row)"
            )),
        }
    }
}

/// Progress of the phases of a command (sampler steps of `sample` and `denoise`, frames of
/// `forward`; training the classifier, extracting reference features and sampling in `eval`):
/// one bar per phase on a terminal, a line every 15 s otherwise.
pub struct PhaseProgress {
    bar: Option<ProgressBar>,
    phase: String,
    total: usize,
    last_line: Instant,
    started: Instant,
}

impl PhaseProgress {
    pub fn new() -> Self {
        Self {
            bar: None,
            phase: String::new(),
            total: 0,
            last_line: Instant::now(),
            started: Instant::now(),
        }
    }
}

impl diffusion_train::quality::QualityProgress for PhaseProgress {
    fn begin(&mut self, phase: &str, total: usize) {
        self.finish();
        self.phase = phase.to_string();
        self.total = total;
        self.started = Instant::now();
        self.last_line = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(total as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {msg} [{elapsed_precise} < {eta_precise}] {wide_bar} {pos}/{len}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(phase.to_string());
            self.bar = Some(bar);
        } else {
            eprintln!("{phase}: 0/{total}");
        }
    }

    fn advance(&mut self, done: usize) {
        match &self.bar {
            Some(bar) => bar.set_position(done as u64),
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(15) {
                    self.last_line = Instant::now();
                    eprintln!("{}: {done}/{}", self.phase, self.total);
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.phase.is_empty() {
            eprintln!(
                "{}: done in {:.1}s",
                std::mem::take(&mut self.phase),
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    fn note(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}
