#!/usr/bin/env python3
"""Golden numbers from Hugging Face diffusers for diffusion-core's conformance tests.

Run once on a machine with `pip install torch diffusers` (CI never runs it):

    python3 scripts/golden/make_golden.py > assets/golden/diffusers.json

Every case is self-describing: `kind`, diffusers' own config names under `config`, the inputs as
flat float lists with `shape`, the timesteps diffusers chose, and the expected outputs. The dummy
model of the loop cases is eps(x, t) = a * x + b * t / T (its output is read as epsilon, v or x0
according to `prediction_type`). Stochastic samplers get their per-step noise from the file:
`noises[i]` is the noise drawn at loop step i (DDPM's randn_tensor is patched to return it).
"""

import json
import sys

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers import scheduling_ddpm

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


def main():
    gen = torch.Generator().manual_seed(20061122)
    cases = []
    cases += list(schedule_cases())
    cases.append(add_noise_case(gen))
    cases += list(ddpm_step_cases(gen))
    cases += list(ddpm_loop_cases(gen))
    cases += list(ddim_loop_cases(gen))
    cases += list(dpm_loop_cases(gen))
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
