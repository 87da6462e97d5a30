//! Learning rate: linear warm-up, then constant or cosine decay.
//!
//! The rate is a pure function of the optimizer step, so a resumed run continues on exactly the
//! same curve with no scheduler state to save.

use std::f64::consts::PI;

use burn::config::Config;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// What happens after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrDecay {
    /// Keep the peak rate (the DDPM paper, lucidrains).
    Constant,
    /// Half-cosine from the peak down to `min_lr_ratio * peak` at the last step (diffusers'
    /// `get_cosine_schedule_with_warmup` with a floor).
    Cosine,
}

/// Learning-rate schedule.
#[derive(Config, Debug, PartialEq)]
pub struct LrScheduleConfig {
    /// Steps of linear warm-up; step `s` (0-based) uses `peak * min(1, (s + 1) / warmup_steps)`,
    /// so the first step already moves the weights (diffusers starts at exactly 0).
    #[config(default = 0)]
    pub warmup_steps: usize,
    /// Shape after the warm-up.
    #[config(default = "LrDecay::Constant")]
    pub decay: LrDecay,
    /// Final rate of the cosine decay as a fraction of the peak, in [0, 1].
    #[config(default = 0.0)]
    pub min_lr_ratio: f64,
}

impl LrScheduleConfig {
    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(TrainError::invalid(
                "lr_schedule.min_lr_ratio",
                format!("must be in [0, 1], got {}", self.min_lr_ratio),
            ));
        }
        Ok(())
    }

    /// Learning rate of optimizer step `step` (0-based) in a run of `total_steps` steps.
    pub fn lr_at(&self, peak_lr: f64, step: usize, total_steps: usize) -> f64 {
        if step < self.warmup_steps {
            return peak_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.decay {
            LrDecay::Constant => peak_lr,
            LrDecay::Cosine => {
                let decay_steps = total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress =
                    ((step - self.warmup_steps) as f64 / decay_steps as f64).clamp(0.0, 1.0);
                let cosine = 0.5 * (1.0 + (PI * progress).cos());
                peak_lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_is_linear_then_constant() {
        let schedule = LrScheduleConfig::new().with_warmup_steps(4);
        let lrs: Vec<f64> = (0..6).map(|s| schedule.lr_at(1.0, s, 100)).collect();
        assert_eq!(lrs, vec![0.25, 0.5, 0.75, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_goes_from_peak_to_floor() {
        let schedule = LrScheduleConfig::new()
            .with_warmup_steps(10)
            .with_decay(LrDecay::Cosine)
            .with_min_lr_ratio(0.1);
        let total = 110;
        assert!((schedule.lr_at(2.0, 10, total) - 2.0).abs() < 1e-12);
        assert!((schedule.lr_at(2.0, 60, total) - 2.0 * (0.1 + 0.9 * 0.5)).abs() < 1e-12);
        assert!((schedule.lr_at(2.0, total, total) - 0.2).abs() < 1e-12);
        let mut previous = f64::INFINITY;
        for step in 10..total {
            let lr = schedule.lr_at(2.0, step, total);
            assert!(lr <= previous);
            previous = lr;
        }
    }

    #[test]
    fn out_of_range_floor_is_rejected() {
        let err = LrScheduleConfig::new()
            .with_min_lr_ratio(1.5)
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("lr_schedule.min_lr_ratio"));
    }
}
