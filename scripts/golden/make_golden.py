#!/usr/bin/env python3
"""Golden numbers from Hugging Face diffusers for diffusion-core's conformance tests.

Run once on a machine with `pip install torch diffusers` (CI never runs it):

    python3 scripts/golden/make_golden.py > assets/golden/diffusers.json

Every case is self-describing: `kind`, diffusers' own config names under `config`, the inputs as
flat float lists with `shape`, the timesteps diffusers chose, and the expected outputs. The dummy
model of the loop cases is eps(x, t) = a * x + b * t / T (its output is read as epsilon, v or x0
according to `prediction_type`). Stochastic samplers get their per-step noise from the file:
`noises[i]` is the noise drawn at loop step i (DDPM's randn_tensor is patched to return it).

The `sigma_loop` cases (Euler, Euler ancestral, Heun, DPM-Solver++ with Karras sigmas or the
SDE, UniPC) give `x_T` in the variance-preserving space our samplers keep: diffusers' sigma-space
samplers start from `x_T * sqrt(1 + sigma_max^2)` and feed the model
`scale_model_input(x) = x / sqrt(1 + sigma^2)`, which is `x_t` again; their final state, at
sigma = 0, is the same in both spaces. `model_timesteps` are what the model was given, one per
evaluation (fractional for Karras sigmas and Euler's linspace, `2 n - 1` of them for Heun).
They come from a second generator (seed 20261206) so that the older cases stay as they were.
"""

import json
import sys

import diffusers
import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers import scheduling_ddpm, scheduling_euler_ancestral_discrete

SHAPE = [2, 1, 3, 3]
A, B = 0.5, 0.1


def flat(t):
    return [float(v) for v in t.detach().double().flatten().tolist()]


def randn(gen):
    return torch.randn(SHAPE, generator=gen, dtype=torch.float32)


def dummy_model(x, t, num_train_timesteps):
    return A * x + B * float(t) / num_train_timesteps


class PatchedNoise:
    """Makes diffusers' DDPMScheduler draw our recorded noises, in order."""

    def __init__(self, noises):
        self.noises = list(noises)
        self.used = 0

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        noise = self.noises[self.used]
        self.used += 1
        assert list(shape) == list(noise.shape)
        return noise.to(dtype=dtype)


def schedule_cases():
    specs = [
        dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02),
        dict(num_train_timesteps=500, beta_schedule="linear", beta_start=2e-4, beta_end=0.04),
        dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
        dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"),
        dict(num_train_timesteps=10, beta_schedule="squaredcos_cap_v2"),
        dict(num_train_timesteps=1000, beta_schedule="sigmoid", beta_start=1e-4, beta_end=0.02),
        dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
             rescale_betas_zero_snr=True),
        dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
             rescale_betas_zero_snr=True),
    ]
    for spec in specs:
        sched = DDPMScheduler(**spec)
        yield dict(
            kind="schedule",
            config=spec,
            betas=flat(sched.betas),
            alphas_cumprod=flat(sched.alphas_cumprod),
        )


def add_noise_case(gen):
    config = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    sched = DDPMScheduler(**config)
    x0, noise = randn(gen), randn(gen)
    timesteps = torch.tensor([10, 999])
    out = sched.add_noise(x0, noise, timesteps)
    return dict(kind="add_noise", config=config, shape=SHAPE, x0=flat(x0), noise=flat(noise),
                timesteps=timesteps.tolist(), expected=flat(out))


def ddpm_step_cases(gen):
    for variance_type in ["fixed_small", "fixed_large"]:
        for prediction_type in ["epsilon", "v_prediction", "sample"]:
            for clip_sample in [False, True]:
                config = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                              beta_end=0.02, variance_type=variance_type, clip_sample=clip_sample,
                              prediction_type=prediction_type)
                sched = DDPMScheduler(**config)
                sched.set_timesteps(1000)
                x_t, model_output, noise = randn(gen) * 1.5, randn(gen), randn(gen)
                t = 500
                patched = PatchedNoise([noise])
                original = scheduling_ddpm.randn_tensor
                scheduling_ddpm.randn_tensor = patched
                try:
                    out = sched.step(model_output, t, x_t)
                finally:
                    scheduling_ddpm.randn_tensor = original
                yield dict(kind="ddpm_step", config=config, shape=SHAPE, timestep=t, x_t=flat(x_t),
                           model_output=flat(model_output), noise=flat(noise),
                           prev_sample=flat(out.prev_sample),
                           pred_original_sample=flat(out.pred_original_sample))


def ddpm_loop_cases(gen):
    specs = [
        dict(num_train_timesteps=50, beta_schedule="linear", beta_start=1e-3, beta_end=0.2,
             variance_type="fixed_small", clip_sample=False, prediction_type="epsilon"),
        dict(num_train_timesteps=50, beta_schedule="squaredcos_cap_v2", variance_type="fixed_large",
             clip_sample=True, prediction_type="epsilon"),
    ]
    for config in specs:
        sched = DDPMScheduler(**config)
        T = config["num_train_timesteps"]
        sched.set_timesteps(T)
        x_T = randn(gen)
        noises = [randn(gen) for _ in sched.timesteps]
        # diffusers draws no noise at t = 0; keep the list one-per-step regardless.
        patched = PatchedNoise([n for n, t in zip(noises, sched.timesteps) if int(t) > 0])
        original = scheduling_ddpm.randn_tensor
        scheduling_ddpm.randn_tensor = patched
        try:
            x = x_T.clone()
            for t in sched.timesteps:
                x = sched.step(dummy_model(x, t, T), t, x).prev_sample
        finally:
            scheduling_ddpm.randn_tensor = original
        yield dict(kind="ddpm_loop", config=config, shape=SHAPE, model=dict(a=A, b=B),
                   num_inference_steps=T, timesteps=[int(t) for t in sched.timesteps],
                   x_T=flat(x_T), noises=[flat(n) for n in noises], expected=flat(x))


def ddim_loop_cases(gen):
    base = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                clip_sample=False, set_alpha_to_one=True, steps_offset=0)
    runs = [
        (dict(timestep_spacing="leading", prediction_type="epsilon"), 50, 0.0),
        (dict(timestep_spacing="trailing", prediction_type="epsilon"), 50, 0.0),
        (dict(timestep_spacing="linspace", prediction_type="epsilon"), 20, 0.0),
        (dict(timestep_spacing="trailing", prediction_type="v_prediction"), 10, 0.0),
        (dict(timestep_spacing="leading", prediction_type="sample"), 10, 0.0),
        (dict(timestep_spacing="leading", prediction_type="epsilon", steps_offset=1), 20, 1.0),
        (dict(timestep_spacing="trailing", prediction_type="epsilon", beta_schedule="squaredcos_cap_v2",
              set_alpha_to_one=False), 20, 0.5),
    ]
    for overrides, steps, eta in runs:
        config = {**base, **overrides}
        if config["beta_schedule"] != "linear":
            config.pop("beta_start")
            config.pop("beta_end")
        sched = DDIMScheduler(**config)
        T = config["num_train_timesteps"]
        sched.set_timesteps(steps)
        x_T = randn(gen)
        noises = [randn(gen) for _ in sched.timesteps]
        x = x_T.clone()
        for t, noise in zip(sched.timesteps, noises):
            out = sched.step(dummy_model(x, t, T), t, x, eta=eta,
                             variance_noise=noise if eta > 0 else None)
            x = out.prev_sample
        yield dict(kind="ddim_loop", config=config, shape=SHAPE, model=dict(a=A, b=B), eta=eta,
                   num_inference_steps=steps, timesteps=[int(t) for t in sched.timesteps],
                   x_T=flat(x_T), noises=[flat(n) for n in noises], expected=flat(x))


def dpm_loop_cases(gen):
    base = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                algorithm_type="dpmsolver++", solver_order=2, lower_order_final=True,
                final_sigmas_type="zero", timestep_spacing="linspace", thresholding=False)
    runs = [
        (dict(prediction_type="epsilon"), 20),
        (dict(prediction_type="epsilon"), 10),
        (dict(prediction_type="v_prediction"), 10),
        (dict(prediction_type="epsilon", beta_schedule="squaredcos_cap_v2"), 25),
        (dict(prediction_type="sample"), 15),
    ]
    for overrides, steps in runs:
        config = {**base, **overrides}
        if config["beta_schedule"] != "linear":
            config.pop("beta_start")
            config.pop("beta_end")
        sched = DPMSolverMultistepScheduler(**config)
        T = config["num_train_timesteps"]
        sched.set_timesteps(steps)
        x_T = randn(gen)
        x = x_T.clone()
        for t in sched.timesteps:
            x = sched.step(dummy_model(x, t, T), t, x).prev_sample
        yield dict(kind="dpm_loop", config=config, shape=SHAPE, model=dict(a=A, b=B),
                   num_inference_steps=steps, timesteps=[int(t) for t in sched.timesteps],
                   x_T=flat(x_T), expected=flat(x))


SIGMA_SCHEDULERS = {
    "euler": EulerDiscreteScheduler,
    "euler-a": EulerAncestralDiscreteScheduler,
    "heun": HeunDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}
# Samplers whose state diffusers keeps in sigma space (x0 + sigma * eps).
SIGMA_SPACE = {"euler", "euler-a", "heun"}


class PatchedSteps:
    """Makes EulerAncestralDiscreteScheduler draw our recorded noises, in order."""

    def __init__(self, noises):
        self.inner = PatchedNoise(noises)

    def __enter__(self):
        self.original = scheduling_euler_ancestral_discrete.randn_tensor
        scheduling_euler_ancestral_discrete.randn_tensor = self.inner
        return self.inner

    def __exit__(self, *exc):
        scheduling_euler_ancestral_discrete.randn_tensor = self.original


def sigma_loop_cases(gen):
    linear = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    cosine = dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    runs = [
        # (sampler, schedule, scheduler options, steps)
        ("euler", linear, dict(prediction_type="epsilon"), 20),
        ("euler", linear, dict(prediction_type="v_prediction", timestep_spacing="trailing"), 10),
        ("euler", linear, dict(prediction_type="epsilon", use_karras_sigmas=True), 15),
        ("euler", cosine, dict(prediction_type="sample", timestep_spacing="leading", steps_offset=1), 12),
        ("euler-a", linear, dict(prediction_type="epsilon"), 20),
        ("euler-a", linear, dict(prediction_type="v_prediction", timestep_spacing="trailing"), 10),
        ("euler-a", linear, dict(prediction_type="epsilon", use_karras_sigmas=True), 12),
        ("heun", linear, dict(prediction_type="epsilon"), 10),
        ("heun", linear, dict(prediction_type="v_prediction", use_karras_sigmas=True), 8),
        ("heun", cosine, dict(prediction_type="sample", timestep_spacing="leading", steps_offset=1), 6),
        ("dpm++", linear, dict(prediction_type="epsilon", use_karras_sigmas=True), 20),
        ("dpm++", linear, dict(prediction_type="v_prediction", use_karras_sigmas=True), 10),
        ("dpm++", linear, dict(prediction_type="epsilon", algorithm_type="sde-dpmsolver++"), 20),
        ("dpm++", linear, dict(prediction_type="epsilon", algorithm_type="sde-dpmsolver++",
                               use_karras_sigmas=True), 15),
        ("unipc", linear, dict(prediction_type="epsilon"), 20),
        ("unipc", linear, dict(prediction_type="epsilon"), 10),
        ("unipc", linear, dict(prediction_type="v_prediction", use_karras_sigmas=True), 12),
        ("unipc", linear, dict(prediction_type="epsilon", solver_order=3), 15),
        ("unipc", linear, dict(prediction_type="sample", solver_type="bh1", timestep_spacing="trailing"), 8),
        ("unipc", cosine, dict(prediction_type="epsilon", solver_order=1), 10),
        # x0 clipped to [-1, 1]: Heun's clip_sample; thresholding with sample_max_value = 1.
        ("heun", linear, dict(prediction_type="epsilon", clip_sample=True), 8),
        ("dpm++", linear, dict(prediction_type="epsilon", thresholding=True, sample_max_value=1.0), 12),
        ("dpm++", linear, dict(prediction_type="v_prediction", thresholding=True, sample_max_value=1.0,
                               algorithm_type="sde-dpmsolver++", use_karras_sigmas=True), 10),
        ("unipc", linear, dict(prediction_type="epsilon", thresholding=True, sample_max_value=1.0), 12),
    ]
    for name, schedule, options, steps in runs:
        cls = SIGMA_SCHEDULERS[name]
        config = {**schedule, **options}
        if name == "dpm++":
            config = {**dict(solver_order=2, lower_order_final=True, final_sigmas_type="zero",
                             timestep_spacing="linspace"), **config}
        if name == "unipc":
            config = {**dict(solver_order=2, solver_type="bh2", predict_x0=True, lower_order_final=True,
                             final_sigmas_type="zero", timestep_spacing="linspace"), **config}
        karras_ancestral = name == "euler-a" and config.get("use_karras_sigmas")
        if karras_ancestral:
            # diffusers' ancestral scheduler has no Karras option: its step on the Euler
            # scheduler's Karras sigmas and timesteps.
            ancestral_config = {k: v for k, v in config.items() if k != "use_karras_sigmas"}
            sched = cls(**ancestral_config)
            sched.set_timesteps(steps)
            donor = EulerDiscreteScheduler(**config)
            donor.set_timesteps(steps)
            sched.sigmas = donor.sigmas.clone()
            sched.timesteps = donor.timesteps.clone()
        else:
            sched = cls(**config)
            sched.set_timesteps(steps)
        T = config["num_train_timesteps"]
        x_T = randn(gen)
        model_timesteps = [float(t) for t in sched.timesteps]
        stochastic = name == "euler-a" or config.get("algorithm_type") == "sde-dpmsolver++"
        noises = [randn(gen) for _ in model_timesteps] if stochastic else []
        sigma_max = float(sched.sigmas[0])
        x = x_T.clone() * (1 + sigma_max**2) ** 0.5 if name in SIGMA_SPACE else x_T.clone()
        states = []
        with PatchedSteps(noises):
            for i, t in enumerate(sched.timesteps):
                inp = sched.scale_model_input(x, t) if name in SIGMA_SPACE else x
                out = dummy_model(inp, t, T)
                if name == "dpm++" and noises:
                    x = sched.step(out, t, x, variance_noise=noises[i]).prev_sample
                else:
                    x = sched.step(out, t, x).prev_sample
                # The state after each evaluation, in our variance-preserving space.
                level = float(sched.sigmas[sched.step_index]) if name in SIGMA_SPACE else 0.0
                states.append(flat(x / (1 + level**2) ** 0.5))
        if karras_ancestral:
            config = {**config, "note": "EulerAncestralDiscreteScheduler on EulerDiscreteScheduler's Karras sigmas"}
        case = dict(kind="sigma_loop", sampler=name, config=config, shape=SHAPE, model=dict(a=A, b=B),
                    num_inference_steps=steps, model_timesteps=model_timesteps,
                    x_T=flat(x_T), noises=[flat(n) for n in noises], states=states[:-1], expected=flat(x))
        if not torch.isfinite(x).all():
            # UniPC bh1 with final_sigmas_type="zero": B(h) = h = -inf at the last step times a
            # zero correction gives NaN in diffusers; only the states before it are golden.
            case["expected"] = None
            case["note"] = "diffusers' last step is NaN (bh1: B(h) = -inf times a zero correction)"
        yield case


def main():
    gen = torch.Generator().manual_seed(20061122)
    cases = []
    cases += list(schedule_cases())
    cases.append(add_noise_case(gen))
    cases += list(ddpm_step_cases(gen))
    cases += list(ddpm_loop_cases(gen))
    cases += list(ddim_loop_cases(gen))
    cases += list(dpm_loop_cases(gen))
    cases += list(sigma_loop_cases(torch.Generator().manual_seed(20261206)))
    doc = dict(
        generator="scripts/golden/make_golden.py",
        diffusers=diffusers.__version__,
        torch=torch.__version__,
        numpy=np.__version__,
        dummy_model="eps(x, t) = a * x + b * t / num_train_timesteps",
        cases=cases,
    )
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
