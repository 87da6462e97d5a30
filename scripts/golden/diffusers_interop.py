#!/usr/bin/env python3
"""Fixtures for `import-diffusers` / `export` (crates/diffusion-train/tests/interop.rs), written
by diffusers itself with seeded random weights, and a check that an exported folder loads back.

    python3 scripts/golden/diffusers_interop.py            # writes assets/diffusers/
    python3 scripts/golden/diffusers_interop.py --check-export DIR CASE
        # loads DIR (written by `diffusion-cli export`) with UNet2DModel.from_pretrained and
        # DDPMScheduler.from_pretrained and compares it with the fixture CASE

Cases (assets/diffusers/<case>/):
- `ddpm-cifar10-tiny`: a pipeline folder (model_index.json, unet/, scheduler/) with
  google/ddpm-cifar10-32's config (block types, layers_per_block 2, downsample_padding 0,
  flip_sin_to_cos false, freq_shift 1, norm_eps 1e-6, single-head attention at 16x16, its
  DDPMScheduler) at widths (4, 8, 8, 8) and 2 groups instead of (128, 256, 256, 256) and 32.
- `attention-conditional-scale-shift`: a model folder (config.json, safetensors,
  scheduler_config.json): class-conditional (3 classes + null), scale-shift time injection,
  attention with heads of 4, whose middle attention has no group norm in diffusers; a cosine
  schedule with v-prediction.
- `attention-conditional-bin`: the same net as a `.bin` pickle only (torch.save).

Each case also has `io.safetensors`: inputs `x`, `timesteps`, `labels` (class-conditional
only), the output `out` of the network in float64 from the float32 weights (stored as float32),
and the scheduler's `alphas_cumprod` (float64).

Generated with diffusers 0.42.1, torch 2.x (CPU).
"""
import json
import pathlib
import sys

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file

OUT = pathlib.Path(__file__).resolve().parent.parent.parent / "assets" / "diffusers"

CIFAR_TINY = dict(
    sample_size=32,
    in_channels=3,
    out_channels=3,
    block_out_channels=(4, 8, 8, 8),
    layers_per_block=2,
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    downsample_padding=0,
    flip_sin_to_cos=False,
    freq_shift=1,
    norm_eps=1e-6,
    norm_num_groups=2,
    attention_head_dim=None,
    mid_block_scale_factor=1,
    act_fn="silu",
    center_input_sample=False,
    time_embedding_type="positional",
)
# google/ddpm-cifar10-32's scheduler_config.json.
CIFAR_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    variance_type="fixed_small",
    clip_sample=True,
)
CONDITIONAL = dict(
    sample_size=8,
    in_channels=2,
    out_channels=2,
    block_out_channels=(4, 8),
    layers_per_block=1,
    down_block_types=("DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=2,
    attention_head_dim=4,
    num_class_embeds=4,
    resnet_time_scale_shift="scale_shift",
)
CONDITIONAL_SCHEDULER = dict(
    num_train_timesteps=100,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
)


def random_weights(model: torch.nn.Module) -> None:
    """Seeded N(0, 0.3^2) weights, norm weights around 1 so that a weight/bias mix-up shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn_like(p) * 0.3
            p.copy_(1.0 + noise if "norm" in name and name.endswith("weight") else noise)


def io_tensors(model: UNet2DModel, scheduler: DDPMScheduler, conditional: bool) -> dict:
    cfg = model.config
    x = torch.randn(2, cfg.in_channels, cfg.sample_size, cfg.sample_size)
    t = torch.tensor([3, scheduler.config.num_train_timesteps - 1])
    labels = torch.tensor([1, 3]) if conditional else None
    with torch.no_grad():
        out = model.double()(x.double(), t, class_labels=labels).sample.float()
    model.float()
    io = {"x": x, "timesteps": t, "out": out, "alphas_cumprod": scheduler.alphas_cumprod.double()}
    if conditional:
        io["labels"] = labels
    return io


def write_case(name, unet_kwargs, scheduler_kwargs, pipeline: bool, bin_only: bool = False):
    torch.manual_seed(0)
    model = UNet2DModel(**unet_kwargs).eval()
    random_weights(model)
    scheduler = DDPMScheduler(**scheduler_kwargs)
    root = OUT / name
    unet_dir = root / "unet" if pipeline else root
    sched_dir = root / "scheduler" if pipeline else root
    model.save_pretrained(unet_dir, safe_serialization=not bin_only)
    scheduler.save_pretrained(sched_dir)
    if pipeline:
        index = {
            "_class_name": "DDPMPipeline",
            "_diffusers_version": "0.42.1",
            "scheduler": ["diffusers", "DDPMScheduler"],
            "unet": ["diffusers", "UNet2DModel"],
        }
        (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    io = io_tensors(model, scheduler, "num_class_embeds" in unet_kwargs)
    save_file({k: v.contiguous() for k, v in io.items()}, str(root / "io.safetensors"))
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(root, sum(p.numel() for p in model.parameters()), "params,", size, "bytes")


def check_export(exported: pathlib.Path, case: str) -> None:
    """Loads an exported folder with diffusers and compares weights and output to the case."""
    fixture = OUT / case
    model = UNet2DModel.from_pretrained(exported).eval()
    scheduler = DDPMScheduler.from_pretrained(exported)
    io = load_file(str(fixture / "io.safetensors"))
    with torch.no_grad():
        out = model.double()(
            io["x"].double(), io["timesteps"], class_labels=io.get("labels")
        ).sample.float()
    worst = (out - io["out"]).abs().max().item()
    ac = (scheduler.alphas_cumprod.double() - io["alphas_cumprod"]).abs().max().item()
    print(f"{case}: from_pretrained output max abs diff {worst:.3g}, alphas_cumprod {ac:.3g}")
    assert worst < 1e-5 and ac < 1e-12, (worst, ac)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--check-export":
        check_export(pathlib.Path(sys.argv[2]), sys.argv[3])
        return
    write_case("ddpm-cifar10-tiny", CIFAR_TINY, CIFAR_SCHEDULER, pipeline=True)
    write_case(
        "attention-conditional-scale-shift", CONDITIONAL, CONDITIONAL_SCHEDULER, pipeline=False
    )
    write_case(
        "attention-conditional-bin",
        CONDITIONAL,
        CONDITIONAL_SCHEDULER,
        pipeline=False,
        bin_only=True,
    )


if __name__ == "__main__":
    main()
