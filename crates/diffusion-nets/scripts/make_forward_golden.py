#!/usr/bin/env python3
"""Golden forward passes of tiny diffusers UNet2DModels, for the parity tests of
src/unet/diffusers_import.rs.

Each case builds a small UNet2DModel, overwrites every parameter with seeded random values
(norm weights around 1, so that a weight/bias mix-up shows), runs one forward pass in float64
and writes weights (diffusers names, PyTorch layout), inputs and output to
assets/golden/<case>.json, together with the equivalent `UNetConfig` of this crate.

    python3 crates/diffusion-nets/scripts/make_forward_golden.py

Generated with diffusers 0.42.1, torch 2.x (CPU).
"""
import json
import pathlib

import torch
from diffusers import UNet2DModel

OUT = pathlib.Path(__file__).resolve().parent.parent / "assets" / "golden"

CASES = {
    # Residual-attention net, additive time injection, 3 classes (+ null), 2 heads of 4.
    "unet_attention_conditional": dict(
        diffusers=dict(
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
        ),
        ours=dict(
            in_channels=2,
            image_size=8,
            out_channels=None,
            base_channels=4,
            channel_mults=[1, 2],
            num_res_blocks=1,
            attention_resolutions=[4],
            dropout=0.0,
            num_classes=3,
            time_injection="additive",
            norm_groups=2,
            norm_eps=1e-5,
            attention_head_dim=4,
            variant="residual-attention",
        ),
        labels=[1, 3],
    ),
    # Residual net without attention, scale-shift time injection, unconditional, 3 levels.
    "unet_residual_scale_shift": dict(
        diffusers=dict(
            sample_size=8,
            in_channels=1,
            out_channels=1,
            block_out_channels=(4, 4, 8),
            layers_per_block=1,
            down_block_types=("DownBlock2D",) * 3,
            up_block_types=("UpBlock2D",) * 3,
            norm_num_groups=2,
            add_attention=False,
            resnet_time_scale_shift="scale_shift",
        ),
        ours=dict(
            in_channels=1,
            image_size=8,
            out_channels=None,
            base_channels=4,
            channel_mults=[1, 1, 2],
            num_res_blocks=1,
            attention_resolutions=[],
            dropout=0.0,
            num_classes=None,
            time_injection="scale-shift",
            norm_groups=2,
            norm_eps=1e-5,
            attention_head_dim=None,
            variant="residual",
        ),
        labels=None,
    ),
}


def rounded(t: torch.Tensor) -> torch.Tensor:
    """Six decimals, so that the JSON is small and holds exactly the values the output used."""
    return torch.round(t * 1e6) / 1e6


def tensor_json(t: torch.Tensor, decimals: int = 6) -> dict:
    return {"shape": list(t.shape), "data": [round(v, decimals) for v in t.flatten().tolist()]}


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        torch.manual_seed(0)
        model = UNet2DModel(**case["diffusers"]).double().eval()
        with torch.no_grad():
            for pname, p in model.named_parameters():
                noise = torch.randn_like(p) * 0.3
                is_norm_weight = "norm" in pname and pname.endswith("weight")
                p.copy_(rounded(1.0 + noise if is_norm_weight else noise))
        channels = case["diffusers"]["in_channels"]
        x = rounded(torch.randn(2, channels, 8, 8, dtype=torch.float64))
        t = torch.tensor([3, 777])
        labels = None if case["labels"] is None else torch.tensor(case["labels"])
        with torch.no_grad():
            out = model(x, t, class_labels=labels).sample
        golden = {
            "config": case["ours"],
            "params": {n: tensor_json(p) for n, p in model.named_parameters()},
            "x": tensor_json(x),
            "timesteps": t.tolist(),
            "labels": case["labels"],
            "out": tensor_json(out, 9),
        }
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(golden))
        print(path, sum(p.numel() for p in model.parameters()), "params")


if __name__ == "__main__":
    main()
