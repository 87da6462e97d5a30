//! Progress reporting: the library draws nothing; it calls an observer after every step and on
//! notable events, and the CLI turns that into a progress bar.

use std::path::PathBuf;

/// What happened in one optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepProgress {
    /// Optimizer steps completed (this one included).
    pub step: usize,
    /// Total steps of the run.
    pub total_steps: usize,
    /// Loss of this step (NaN or infinite when the step was skipped).
    pub loss: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Images per second of this step.
    pub images_per_sec: f64,
    /// Whether the step was skipped for a non-finite loss or gradient.
    pub skipped: bool,
}

/// Something worth telling the user about besides step progress.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainEvent {
    /// Training starts at `step` of `total_steps` (non-zero after a resume).
    Started {
        /// First step to train.
        step: usize,
        /// Total steps of the run.
        total_steps: usize,
        /// Whether a checkpoint was resumed.
        resumed: bool,
    },
    /// A checkpoint directory was completed.
    CheckpointSaved {
        /// Its step.
        step: usize,
        /// The directory.
        path: PathBuf,
    },
    /// A checkpoint could not be read and was passed over when resuming; it was renamed, not
    /// deleted.
    CheckpointSkipped {
        /// Its step.
        step: usize,
        /// Where it was.
        path: PathBuf,
        /// Where it is now (`step-N.damaged`).
        moved_to: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// A preview grid was written.
    PreviewSaved {
        /// Its step.
        step: usize,
        /// The PNG file.
        path: PathBuf,
    },
    /// Sample quality was measured (`Trainer::with_eval`).
    Evaluated {
        /// The step.
        step: usize,
        /// What was measured.
        scores: crate::quality::Scores,
    },
    /// A step was skipped for a non-finite loss or gradient.
    SkippedNonFinite {
        /// The step.
        step: usize,
        /// Skips in a row so far.
        consecutive: usize,
    },
}

/// Receives training progress. Both methods default to doing nothing.
pub trait TrainObserver {
    /// Called after every optimizer step.
    fn on_step(&mut self, _progress: &StepProgress) {}
    /// Called on checkpoints, previews, skips and at the start.
    fn on_event(&mut self, _event: &TrainEvent) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl TrainObserver for NoObserver {}

/// Any `FnMut(&StepProgress)` observes steps.
impl<F: FnMut(&StepProgress)> TrainObserver for F {
    fn on_step(&mut self, progress: &StepProgress) {
        self(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_observe_steps() {
        let mut seen = Vec::new();
        let mut observer = |p: &StepProgress| seen.push(p.step);
        let progress = StepProgress {
            step: 3,
            total_steps: 10,
            loss: 0.1,
            grad_norm: 1.0,
            lr: 1e-3,
            images_per_sec: 10.0,
            skipped: false,
        };
        observer.on_step(&progress);
        observer.on_event(&TrainEvent::SkippedNonFinite {
            step: 3,
            consecutive: 1,
        });
        assert_eq!(seen, vec![3]);
    }
}
