//! diffusers' `scheduler_config.json` (DDPMScheduler, and the beta keys every scheduler of the
//! DDPM family shares) to and from [`ScheduleConfig`] and [`PredictionType`].
//!
//! What changes training (the betas, `num_train_timesteps`, `prediction_type`,
//! `rescale_betas_zero_snr`) is mapped or refused; what only changes sampling
//! (`variance_type`, `clip_sample`, `timestep_spacing`, ..) is not part of a run, so it comes
//! back as notes naming the `sample` flags that reproduce it.

use diffusion_core::PredictionType;
use diffusion_core::schedule::{BetaSchedule, ScheduleConfig};
use serde_json::{Value, json};

/// The schedule a scheduler config describes, and notes for the user.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedSchedule {
    /// The noise schedule.
    pub schedule: ScheduleConfig,
    /// What the network predicts.
    pub prediction_type: PredictionType,
    /// Sampling settings that differ from `sample`'s defaults, with the flag to use.
    pub notes: Vec<String>,
}

/// `Err((option, message))` names the first option that cannot be mapped.
pub fn schedule_from_diffusers(config: &Value) -> Result<ImportedSchedule, (String, String)> {
    let fail = |option: &str, message: String| Err((option.to_string(), message));
    let Some(map) = config.as_object() else {
        return fail("scheduler_config.json", "is not a JSON object".into());
    };
    let get = |key: &str| map.get(key).filter(|v| !v.is_null());
    let number = |key: &str, default: f64| get(key).and_then(Value::as_f64).unwrap_or(default);
    let text = |key: &str, default: &'static str| -> String {
        get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    if get("trained_betas").is_some() {
        return fail(
            "trained_betas",
            "explicit betas are not supported; only beta_schedule".into(),
        );
    }
    let schedule = match text("beta_schedule", "linear").as_str() {
        "linear" => BetaSchedule::Linear,
        "scaled_linear" => BetaSchedule::ScaledLinear,
        "squaredcos_cap_v2" => BetaSchedule::Cosine,
        "sigmoid" => BetaSchedule::Sigmoid,
        other => {
            return fail(
                "beta_schedule",
                format!(
                    "= \"{other}\" is not supported (linear, scaled_linear, squaredcos_cap_v2, \
                     sigmoid are)"
                ),
            );
        }
    };
    let Some(steps) = get("num_train_timesteps")
        .map_or(Some(1000), Value::as_u64)
        .filter(|n| *n > 0)
    else {
        return fail(
            "num_train_timesteps",
            "must be a positive integer".to_string(),
        );
    };
    let prediction_type = match text("prediction_type", "epsilon").as_str() {
        "epsilon" => PredictionType::Epsilon,
        "sample" => PredictionType::Sample,
        "v_prediction" => PredictionType::VPrediction,
        other => {
            return fail(
                "prediction_type",
                format!("= \"{other}\" is not supported (epsilon, sample, v_prediction are)"),
            );
        }
    };
    let mut notes = vec![];
    match text("variance_type", "fixed_small").as_str() {
        "fixed_small" => {}
        "fixed_large" => notes.push(
            "variance_type fixed_large: sample with `--sampler ddpm --variance fixed-large`".into(),
        ),
        other => {
            return fail(
                "variance_type",
                format!(
                    "= \"{other}\" is not supported (fixed_small, fixed_large are; a learned \
                     variance needs twice the output channels)"
                ),
            );
        }
    }
    let clip = get("clip_sample").and_then(Value::as_bool).unwrap_or(true);
    let range = number("clip_sample_range", 1.0);
    if !clip {
        notes.push("clip_sample false: sample with `--no-clip`".into());
    } else if range != 1.0 {
        notes.push(format!(
            "clip_sample_range {range}: sample with `--clip {range}`"
        ));
    }
    if get("thresholding").and_then(Value::as_bool) == Some(true) {
        notes.push("thresholding (dynamic) is not implemented here; samples are clipped".into());
    }
    let schedule = ScheduleConfig::new()
        .with_num_timesteps(steps as usize)
        .with_schedule(schedule)
        .with_beta_start(number("beta_start", 1e-4))
        .with_beta_end(number("beta_end", 0.02))
        .with_rescale_zero_terminal_snr(
            get("rescale_betas_zero_snr")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
    if let Err(err) = schedule.validate() {
        return fail("scheduler_config.json", err.to_string());
    }
    Ok(ImportedSchedule {
        schedule,
        prediction_type,
        notes,
    })
}

/// The `scheduler_config.json` of a `DDPMScheduler` with this schedule; `Err((field,
/// message))` when diffusers has no such schedule (a cosine offset or cap other than its own).
pub fn schedule_to_diffusers(
    schedule: &ScheduleConfig,
    prediction_type: PredictionType,
) -> Result<Value, (String, String)> {
    let defaults = ScheduleConfig::new();
    let beta_schedule = match schedule.schedule {
        BetaSchedule::Linear => "linear",
        BetaSchedule::ScaledLinear => "scaled_linear",
        BetaSchedule::Sigmoid => "sigmoid",
        BetaSchedule::Cosine => {
            for (field, value, want) in [
                ("schedule.cosine_s", schedule.cosine_s, defaults.cosine_s),
                ("schedule.max_beta", schedule.max_beta, defaults.max_beta),
            ] {
                if value != want {
                    return Err((
                        field.into(),
                        format!("= {value}: diffusers' squaredcos_cap_v2 fixes it at {want}"),
                    ));
                }
            }
            "squaredcos_cap_v2"
        }
    };
    let prediction = match prediction_type {
        PredictionType::Epsilon => "epsilon",
        PredictionType::Sample => "sample",
        PredictionType::VPrediction => "v_prediction",
    };
    Ok(json!({
        "_class_name": "DDPMScheduler",
        "_diffusers_version": "0.42.1",
        "num_train_timesteps": schedule.num_timesteps,
        "beta_start": schedule.beta_start,
        "beta_end": schedule.beta_end,
        "beta_schedule": beta_schedule,
        "trained_betas": null,
        "variance_type": "fixed_small",
        "clip_sample": true,
        "clip_sample_range": 1.0,
        "prediction_type": prediction,
        "thresholding": false,
        "timestep_spacing": "leading",
        "steps_offset": 0,
        "rescale_betas_zero_snr": schedule.rescale_zero_terminal_snr,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddpm_cifar10_scheduler_is_the_default_schedule() {
        let config = json!({
            "_class_name": "DDPMScheduler",
            "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
            "clip_sample": true, "num_train_timesteps": 1000, "trained_betas": null,
            "variance_type": "fixed_small"
        });
        let imported = schedule_from_diffusers(&config).unwrap();
        assert_eq!(imported.schedule, ScheduleConfig::new());
        assert_eq!(imported.prediction_type, PredictionType::Epsilon);
        assert!(imported.notes.is_empty());
    }

    #[test]
    fn export_then_import_is_the_same_schedule() {
        let schedule = ScheduleConfig::new()
            .with_schedule(BetaSchedule::Cosine)
            .with_num_timesteps(100);
        let json = schedule_to_diffusers(&schedule, PredictionType::VPrediction).unwrap();
        let back = schedule_from_diffusers(&json).unwrap();
        assert_eq!(back.schedule, schedule);
        assert_eq!(back.prediction_type, PredictionType::VPrediction);
        let odd = schedule.with_cosine_s(0.01);
        let (field, _) = schedule_to_diffusers(&odd, PredictionType::Epsilon).unwrap_err();
        assert_eq!(field, "schedule.cosine_s");
    }

    #[test]
    fn unmappable_options_are_named_and_sampling_ones_noted() {
        for (key, value) in [
            ("beta_schedule", json!("exp")),
            ("trained_betas", json!([0.1, 0.2])),
            ("variance_type", json!("learned_range")),
            ("prediction_type", json!("flow")),
        ] {
            let (option, _) = schedule_from_diffusers(&json!({ key: value })).unwrap_err();
            assert_eq!(option, key);
        }
        let imported = schedule_from_diffusers(&json!({
            "variance_type": "fixed_large", "clip_sample": false
        }))
        .unwrap();
        assert_eq!(imported.notes.len(), 2, "{:?}", imported.notes);
        assert!(imported.notes[1].contains("--no-clip"));
    }
}
