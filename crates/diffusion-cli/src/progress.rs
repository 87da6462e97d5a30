//! Training progress on the terminal: a bar with ETA, loss and images/s, or plain log lines
//! when standard error is not a terminal (CI logs, redirected output).

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
            TrainEvent::SkippedNonFinite { step, consecutive } => self.println(format!(
                "step {step}: skipped, non-finite loss or gradient ({consecutive} in a row)"
            )),
        }
    }
}
