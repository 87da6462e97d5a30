//! Averages of the steps between two lines of `metrics.jsonl`.

use super::StepOutcome;
use crate::checkpoint::CheckpointState;
use crate::metrics::MetricsRecord;

/// Sums between two metrics lines.
#[derive(Debug, Default)]
pub(crate) struct LogWindow {
    loss: f64,
    grad_norm: f64,
    applied: usize,
    images: usize,
    seconds: f64,
}

impl LogWindow {
    pub(crate) fn add(&mut self, outcome: &StepOutcome, seconds: f64) {
        if outcome.applied {
            self.loss += outcome.loss;
            self.grad_norm += outcome.grad_norm;
            self.applied += 1;
        }
        self.images += outcome.images;
        self.seconds += seconds;
    }

    pub(crate) fn take(&mut self, state: &CheckpointState, ema_decay: f64) -> MetricsRecord {
        let n = self.applied.max(1) as f64;
        let record = MetricsRecord {
            step: state.step,
            loss: if self.applied == 0 {
                f64::NAN
            } else {
                self.loss / n
            },
            lr: state.lr,
            grad_norm: if self.applied == 0 {
                f64::NAN
            } else {
                self.grad_norm / n
            },
            ema_decay,
            images_per_sec: self.images as f64 / self.seconds.max(1e-9),
            wall_time_s: state.wall_time_s,
            skipped_nonfinite: state.skipped_nonfinite,
            eval: None,
        };
        *self = Self::default();
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_window_averages_applied_steps_only() {
        let mut window = LogWindow::default();
        let applied = StepOutcome {
            loss: 1.0,
            grad_norm: 2.0,
            ema_decay: 0.5,
            images: 4,
            applied: true,
        };
        window.add(&applied, 1.0);
        window.add(
            &StepOutcome {
                loss: 3.0,
                ..applied
            },
            1.0,
        );
        window.add(
            &StepOutcome {
                loss: f64::NAN,
                applied: false,
                ..applied
            },
            2.0,
        );
        let mut state = CheckpointState::new(3, 0);
        state.skipped_nonfinite = 1;
        let record = window.take(&state, 0.5);
        assert_eq!((record.step, record.loss, record.grad_norm), (3, 2.0, 2.0));
        assert_eq!(record.images_per_sec, 12.0 / 4.0);
        assert_eq!(record.skipped_nonfinite, 1);
        assert!(
            window.take(&state, 0.5).loss.is_nan(),
            "the window was reset"
        );
    }
}
