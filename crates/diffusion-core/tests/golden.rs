//! Golden numbers from Hugging Face diffusers (`assets/golden/diffusers.json`, written by
//! `scripts/golden/make_golden.py`): schedules, `add_noise`, single DDPM steps and full
//! DDPM / DDIM / DPM-Solver++ loops with the dummy model `eps(x, t) = a x + b t / T`, and the
//! sigma samplers' loops (Euler, Euler ancestral, Heun, DPM-Solver++ with Karras sigmas or
//! the SDE, UniPC), every intermediate state included.
//!
//! diffusers computes in float32; we compute coefficients in f64 on the host and tensors in
//! f32. Tolerances:
//! - betas: 1e-6 relative to diffusers' float32 betas (float32 carries 6e-8), except where
//!   diffusers' zero-terminal-SNR rescale loses float32 digits to cancellation: there a
//!   derived per-element bound (see `diffusers_beta_error`);
//! - alpha_bar: 1e-6 relative to an f64 cumulative product of diffusers' betas (isolates our
//!   formulas from float32 accumulation), widened only by the float32 rounding of those betas
//!   as amplified by `1 - beta` near 1 (see the test), and 1e-4 relative to diffusers' own
//!   float32 `alphas_cumprod` (float32 cumprod drifts by up to ~1000 * 6e-8 over 1000 steps);
//! - `add_noise`, one step and full loops: `|ours - theirs| <= 1e-4 + 1e-4 |theirs|`
//!   (absolute plus relative), element-wise.

#[path = "golden/support.rs"]
mod support;

use diffusion_core::forward::timesteps_tensor;
use diffusion_core::{
    Conditioning, DdimConfig, DdpmConfig, DdpmVariance, DpmAlgorithm, DpmSolverConfig,
    NoiseSchedule, Sampler, SamplerConfig, SigmaConfig, TimestepSpacing, UniPcConfig, UniPcVariant,
    q_sample, sample_loop,
};
use serde_json::Value;
use support::*;

/// How far diffusers' float32 betas may sit from the exact ones, element-wise.
///
/// Direct schedules are evaluated once in float32: 1e-6 relative (16 ulp). The zero-terminal-SNR
/// rescale is not: it subtracts `s_T = sqrt(alpha_bar_T)` from each `s_t` (cancellation, a
/// relative error of about `4 u (s_t + s_T) / (s_t - s_T)` with `u = 2^-24`, huge near the
/// end), divides consecutive `alpha_bar`s and computes `beta = 1 - alpha` (an absolute `2 u`).
/// The bound sums those; the observed errors reach 0.58 of it.
fn diffusers_beta_error(config: &Value, ours: &NoiseSchedule) -> Vec<f64> {
    let direct: Vec<f64> = ours.betas().iter().map(|b| 1e-6 * b).collect();
    if !bool_of(config, "rescale_betas_zero_snr", false) {
        return direct;
    }
    let u = 2f64.powi(-24);
    let unscaled = schedule_config(config)
        .with_rescale_zero_terminal_snr(false)
        .init()
        .unwrap();
    let s = unscaled.sqrt_alpha_bar();
    let s_last = s[s.len() - 1];
    let cancellation: Vec<f64> = s
        .iter()
        .map(|s_t| 4.0 * u * (s_t + s_last) / (s_t - s_last))
        .collect();
    (0..s.len())
        .map(|t| {
            if t + 1 == s.len() {
                return 0.0; // alpha_bar_T is exactly 0 in both: beta_T = 1 exactly
            }
            let previous = if t == 0 { 0.0 } else { cancellation[t - 1] };
            direct[t] + 2.0 * u + ours.alphas()[t] * (cancellation[t] + previous)
        })
        .collect()
}

#[test]
fn schedules_match_diffusers() {
    for case in cases("schedule") {
        let name = format!("schedule {}", case["config"]);
        let ours = schedule_of(&case["config"]);
        let betas = floats(&case["betas"]);
        let beta_error = diffusers_beta_error(&case["config"], &ours);
        for t in 0..betas.len() {
            let what = format!("{name} betas at t={t}");
            assert_close(
                &what,
                &ours.betas()[t..=t],
                &betas[t..=t],
                beta_error[t],
                0.0,
            );
        }

        let mut running = 1.0;
        let cumprod: Vec<f64> = betas
            .iter()
            .map(|b| {
                running *= 1.0 - b;
                running
            })
            .collect();
        // Each float32 beta error e_t becomes a relative error e_t / (1 - beta_t) of alpha_t,
        // and of every later alpha_bar: large where beta nears 1 (the cosine cap 0.999).
        // That much of the difference is diffusers' rounding, not our formulas.
        let mut inherited = 0.0;
        for (t, beta) in betas.iter().enumerate() {
            if *beta < 1.0 {
                inherited += (beta_error[t] + 2f64.powi(-24) * beta) / (1.0 - beta);
            }
            assert_close(
                &format!("{name} alpha_bar vs f64 at t={t}"),
                &ours.alpha_bar()[t..=t],
                &cumprod[t..=t],
                0.0,
                1e-6 + inherited,
            );
        }
        let theirs = floats(&case["alphas_cumprod"]);
        assert_close(
            &format!("{name} alpha_bar vs f32"),
            ours.alpha_bar(),
            &theirs,
            0.0,
            1e-4,
        );
    }
}

#[test]
fn add_noise_matches_diffusers() {
    for case in cases("add_noise") {
        let schedule = schedule_of(&case["config"]);
        let steps = usizes(&case["timesteps"]);
        let t = timesteps_tensor::<TestBackend>(&steps, &Default::default());
        let out = q_sample(
            &schedule,
            tensor(&case, &case["x0"]),
            tensor(&case, &case["noise"]),
            t,
        );
        assert_close(
            "add_noise",
            &to_vec(out),
            &floats(&case["expected"]),
            LOOP_TOL,
            LOOP_TOL,
        );
    }
}

fn ddpm_config(config: &Value, num_steps: Option<usize>) -> DdpmConfig {
    let variance = match str_of(config, "variance_type", "fixed_small") {
        "fixed_small" => DdpmVariance::FixedSmall,
        "fixed_large" => DdpmVariance::FixedLarge,
        other => panic!("unsupported variance_type {other}"),
    };
    DdpmConfig::new()
        .with_num_steps(num_steps)
        .with_variance(variance)
        .with_clip_sample(bool_of(config, "clip_sample", true))
        .with_spacing(spacing_of(config, "leading"))
}

#[test]
fn ddpm_single_steps_match_diffusers() {
    for case in cases("ddpm_step") {
        let config = &case["config"];
        let name = format!("ddpm_step {config}");
        let schedule = schedule_of(config);
        let prediction = prediction_of(config);
        let mut ddpm = ddpm_config(config, None)
            .init(&schedule, prediction)
            .unwrap();
        let t = case["timestep"].as_u64().unwrap() as usize;
        let step_index = <_ as Sampler<TestBackend>>::timesteps(&ddpm)
            .iter()
            .position(|s| *s == t)
            .unwrap();
        let x_t = tensor(&case, &case["x_t"]);
        let model_output = tensor(&case, &case["model_output"]);

        // pred_original_sample, clipped as diffusers does when clip_sample is set.
        let alpha_bar_t = schedule.alpha_bar()[t];
        let mut pred_x0 = prediction
            .split(model_output.clone(), x_t.clone(), alpha_bar_t)
            .pred_x0;
        if bool_of(config, "clip_sample", true) {
            pred_x0 = pred_x0.clamp(-1.0, 1.0);
        }
        let expected_x0 = floats(&case["pred_original_sample"]);
        assert_close(
            &format!("{name} pred_x0"),
            &to_vec(pred_x0),
            &expected_x0,
            LOOP_TOL,
            LOOP_TOL,
        );

        let mut replay = Replay {
            noises: vec![tensor(&case, &case["noise"])].into(),
        };
        let out = ddpm
            .step(model_output, step_index, x_t, &mut replay)
            .unwrap();
        assert!(replay.noises.is_empty());
        assert_close(
            &name,
            &to_vec(out),
            &floats(&case["prev_sample"]),
            LOOP_TOL,
            LOOP_TOL,
        );
    }
}

#[test]
fn ddpm_loops_match_diffusers() {
    for case in cases("ddpm_loop") {
        let config = &case["config"];
        let schedule = schedule_of(config);
        let steps = case["num_inference_steps"].as_u64().unwrap() as usize;
        let mut ddpm = ddpm_config(config, Some(steps))
            .init(&schedule, prediction_of(config))
            .unwrap();
        // One recorded noise per step; diffusers draws none on the step from t = 0.
        let timesteps = usizes(&case["timesteps"]);
        let noises = case["noises"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&timesteps)
            .filter(|(_, t)| **t > 0)
            .map(|(noise, _)| tensor(&case, noise))
            .collect();
        check_loop(&format!("ddpm_loop {config}"), &case, &mut ddpm, noises);
    }
}

#[test]
fn ddim_loops_match_diffusers() {
    for case in cases("ddim_loop") {
        let config = &case["config"];
        let schedule = schedule_of(config);
        let eta = case["eta"].as_f64().unwrap();
        let ddim_config = DdimConfig::new()
            .with_num_steps(case["num_inference_steps"].as_u64().unwrap() as usize)
            .with_eta(eta)
            .with_spacing(spacing_of(config, "leading"))
            .with_steps_offset(config["steps_offset"].as_u64().unwrap_or(0) as usize)
            .with_set_alpha_to_one(bool_of(config, "set_alpha_to_one", true))
            .with_clip_sample(bool_of(config, "clip_sample", true))
            // diffusers' DDIMScheduler steps by T // num_steps.
            .with_fixed_stride(true);
        let mut ddim = ddim_config.init(&schedule, prediction_of(config)).unwrap();
        // diffusers passes a recorded noise on every step when eta > 0, none otherwise.
        let noises = if eta > 0.0 {
            case["noises"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| tensor(&case, n))
                .collect()
        } else {
            Vec::new()
        };
        check_loop(
            &format!("ddim_loop {config} eta={eta}"),
            &case,
            &mut ddim,
            noises,
        );
    }
}

#[test]
fn ddim_next_listed_timestep_agrees_with_diffusers_where_the_stride_does() {
    // Leading spacing, and trailing when num_steps divides T: both rules give the same steps.
    for case in cases("ddim_loop") {
        let config = &case["config"];
        let spacing = spacing_of(config, "leading");
        let steps = case["num_inference_steps"].as_u64().unwrap() as usize;
        let num_train = config["num_train_timesteps"].as_u64().unwrap() as usize;
        if spacing == TimestepSpacing::Linspace
            || !num_train.is_multiple_of(steps)
            || case["eta"].as_f64() != Some(0.0)
        {
            continue;
        }
        let schedule = schedule_of(config);
        let mut ddim = DdimConfig::new()
            .with_num_steps(steps)
            .with_spacing(spacing)
            .with_steps_offset(config["steps_offset"].as_u64().unwrap_or(0) as usize)
            .with_set_alpha_to_one(bool_of(config, "set_alpha_to_one", true))
            .with_clip_sample(bool_of(config, "clip_sample", true))
            .init(&schedule, prediction_of(config))
            .unwrap();
        check_loop(
            &format!("ddim_loop next-listed {config}"),
            &case,
            &mut ddim,
            Vec::new(),
        );
    }
}

#[test]
fn dpm_solver_loops_match_diffusers() {
    for case in cases("dpm_loop") {
        let config = &case["config"];
        assert_eq!(str_of(config, "algorithm_type", ""), "dpmsolver++");
        assert_eq!(str_of(config, "final_sigmas_type", ""), "zero");
        let schedule = schedule_of(config);
        let mut solver = DpmSolverConfig::new()
            .with_num_steps(case["num_inference_steps"].as_u64().unwrap() as usize)
            .with_solver_order(config["solver_order"].as_u64().unwrap() as usize)
            .with_spacing(spacing_of(config, "linspace"))
            .init::<TestBackend>(&schedule, prediction_of(config))
            .unwrap();
        check_loop(
            &format!("dpm_loop {config}"),
            &case,
            &mut solver,
            Vec::new(),
        );
    }
}

/// Our sampler for a `sigma_loop` case, from diffusers' config names.
fn sigma_sampler_of(case: &Value) -> SamplerConfig {
    let config = &case["config"];
    let steps = case["num_inference_steps"].as_u64().unwrap() as usize;
    let karras = bool_of(config, "use_karras_sigmas", false);
    // Heun's clip_sample, and DPM-Solver++'s and UniPC's thresholding with
    // sample_max_value = 1 (a plain clip to [-1, 1]).
    let clip = bool_of(config, "clip_sample", false) || bool_of(config, "thresholding", false);
    if bool_of(config, "thresholding", false) {
        assert_eq!(config["sample_max_value"].as_f64(), Some(1.0), "{config}");
    }
    let uint = |key: &str, default: u64| config.get(key).and_then(Value::as_u64).unwrap_or(default);
    let sigma = || {
        SigmaConfig::new()
            .with_num_steps(steps)
            .with_spacing(spacing_of(config, "linspace"))
            .with_steps_offset(uint("steps_offset", 0) as usize)
            .with_karras(karras)
            .with_clip_sample(clip)
    };
    match case["sampler"].as_str().unwrap() {
        "euler" => SamplerConfig::Euler(sigma()),
        "euler-a" => SamplerConfig::EulerAncestral(sigma()),
        "heun" => SamplerConfig::Heun(sigma()),
        "dpm++" => SamplerConfig::DpmSolver(
            DpmSolverConfig::new()
                .with_num_steps(steps)
                .with_solver_order(uint("solver_order", 2) as usize)
                .with_spacing(spacing_of(config, "linspace"))
                .with_karras(karras)
                .with_clip_sample(clip)
                .with_algorithm(match str_of(config, "algorithm_type", "dpmsolver++") {
                    "dpmsolver++" => DpmAlgorithm::Ode,
                    "sde-dpmsolver++" => DpmAlgorithm::Sde,
                    other => panic!("unknown algorithm_type {other}"),
                }),
        ),
        "unipc" => SamplerConfig::UniPc(
            UniPcConfig::new()
                .with_num_steps(steps)
                .with_solver_order(uint("solver_order", 2) as usize)
                .with_spacing(spacing_of(config, "linspace"))
                .with_karras(karras)
                .with_clip_sample(clip)
                .with_variant(match str_of(config, "solver_type", "bh2") {
                    "bh1" => UniPcVariant::Bh1,
                    "bh2" => UniPcVariant::Bh2,
                    other => panic!("unknown solver_type {other}"),
                }),
        ),
        other => panic!("unknown sampler {other}"),
    }
}

#[test]
fn sigma_sampler_loops_match_diffusers_at_every_state() {
    let cases = cases("sigma_loop");
    for name in ["euler", "euler-a", "heun", "dpm++", "unipc"] {
        assert!(
            cases.iter().any(|c| c["sampler"] == name),
            "no golden case for {name}"
        );
    }
    for case in cases {
        let what = format!("{} {}", case["sampler"], case["config"]);
        let schedule = schedule_of(&case["config"]);
        let mut sampler = sigma_sampler_of(&case)
            .init::<TestBackend>(&schedule, prediction_of(&case["config"]))
            .unwrap();
        // diffusers finds Karras timesteps in the log sigmas of its float32 `alphas_cumprod`,
        // which drifts by up to 1e-4 relative (see the top): that moves them by up to ~2e-3.
        // The dummy model's output moves by b * 2e-3 / T, far inside the state tolerance.
        assert_close(
            &format!("{what}: model timesteps"),
            &sampler.model_timesteps(),
            &floats(&case["model_timesteps"]),
            1e-2,
            0.0,
        );
        let noises = case["noises"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| tensor(&case, n))
            .collect::<Vec<_>>();
        let mut replay = Replay {
            noises: noises.into(),
        };
        let mut states = Vec::new();
        let out = sample_loop(
            &Dummy::of(&case),
            sampler.as_mut(),
            tensor(&case, &case["x_T"]),
            &Conditioning::Unconditional,
            &mut replay,
            |_, _, x| states.push(to_vec(x.clone())),
        )
        .unwrap();
        assert!(
            replay.noises.is_empty(),
            "{what}: sampler drew less noise than diffusers"
        );
        let expected_states = case["states"].as_array().unwrap();
        assert_eq!(
            states.len(),
            expected_states.len() + 1,
            "{what}: evaluations"
        );
        for (i, (ours, theirs)) in states.iter().zip(expected_states).enumerate() {
            assert_close(
                &format!("{what}: state {i}"),
                ours,
                &floats(theirs),
                LOOP_TOL,
                LOOP_TOL,
            );
        }
        let out = to_vec(out);
        match case.get("expected").filter(|e| !e.is_null()) {
            Some(expected) => assert_close(&what, &out, &floats(expected), LOOP_TOL, LOOP_TOL),
            // diffusers' own last step is NaN there (see the case's note); ours must be finite.
            None => assert!(out.iter().all(|v| v.is_finite()), "{what}: {out:?}"),
        }
    }
}
