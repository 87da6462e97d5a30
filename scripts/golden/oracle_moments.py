#!/usr/bin/env python3
"""std/sigma of diffusers' sigma samplers driven by the exact denoiser for Gaussian data.

The numbers quoted in crates/diffusion-core/src/sampler/oracle_tests.rs, from diffusers itself:
data N(0.5, 0.5^2), 4096 draws of seeded noise, the oracle E[eps | x_t] evaluated at the noise
level of the state each scheduler holds (`scale_model_input` for the sigma-space ones), linear
betas 1e-4..0.02 over 1000 timesteps. A deterministic sampler is an affine map, so
`std(out) / std(start) / sigma` is its slope over sigma: no sampling error, only the solver's
bias. CI never runs this (`pip install torch diffusers`):

    python3 scripts/golden/oracle_moments.py
"""

import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

MU, SIGMA = 0.5, 0.5
SIGMA_SPACE = (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler, HeunDiscreteScheduler)
STOCHASTIC = (EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler)


def oracle_eps(x, alpha_bar):
    alpha, sigma_t = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    marginal = alpha_bar * SIGMA**2 + 1 - alpha_bar
    return sigma_t * (x - alpha * MU) / marginal


def run(cls, steps, n=4096, **options):
    sched = cls(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02, **options)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(n, 1, 1, 1, generator=gen)
    sigma_space = cls in SIGMA_SPACE
    x = x_T * (1 + float(sched.sigmas[0]) ** 2) ** 0.5 if sigma_space else x_T.clone()
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t) if sigma_space else x
        index = sched.step_index if sched.step_index is not None else 0
        sigma = float(sched.sigmas[index])
        out = oracle_eps(inp, 1 / (1 + sigma**2))
        kwargs = {"generator": gen} if cls in STOCHASTIC else {}
        x = sched.step(out, t, x, **kwargs).prev_sample
    return x.mean().item(), (x.std() / x_T.std() / SIGMA).item()


def main():
    runs = [
        ("Euler-20", EulerDiscreteScheduler, 20, {}),
        ("Euler-50", EulerDiscreteScheduler, 50, {}),
        ("Euler-20 Karras", EulerDiscreteScheduler, 20, dict(use_karras_sigmas=True)),
        ("Euler-50 Karras", EulerDiscreteScheduler, 50, dict(use_karras_sigmas=True)),
        ("Heun-10", HeunDiscreteScheduler, 10, {}),
        ("Heun-25", HeunDiscreteScheduler, 25, {}),
        ("Heun-10 Karras", HeunDiscreteScheduler, 10, dict(use_karras_sigmas=True)),
        ("Heun-25 Karras", HeunDiscreteScheduler, 25, dict(use_karras_sigmas=True)),
        ("UniPC-10", UniPCMultistepScheduler, 10, {}),
        ("UniPC-20", UniPCMultistepScheduler, 20, {}),
        ("UniPC-50", UniPCMultistepScheduler, 50, {}),
        ("DPM++-20 Karras", DPMSolverMultistepScheduler, 20, dict(use_karras_sigmas=True)),
        ("Euler ancestral-20", EulerAncestralDiscreteScheduler, 20, {}),
        ("Euler ancestral-50", EulerAncestralDiscreteScheduler, 50, {}),
        ("DPM++ SDE-50", DPMSolverMultistepScheduler, 50, dict(algorithm_type="sde-dpmsolver++")),
        ("DPM++ SDE-30 Karras", DPMSolverMultistepScheduler, 30,
         dict(algorithm_type="sde-dpmsolver++", use_karras_sigmas=True)),
    ]
    for name, cls, steps, options in runs:
        mean, ratio = run(cls, steps, **options)
        print(f"{name:22} mean {mean:.4f}  std/sigma {ratio:.4f}")


if __name__ == "__main__":
    main()
