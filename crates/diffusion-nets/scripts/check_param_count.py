#!/usr/bin/env python3
"""Reference numbers for the `cifar10-ddpm` preset, from diffusers' UNet2DModel.

Prints the parameter count and the multiply-accumulates of one forward pass (FLOPs / 2 as
counted by torch.utils.flop_counter: convolutions, linears, attention matmuls) of the DDPM
CIFAR-10 network (Ho et al. 2020) as diffusers builds it. The Rust tests in
crates/diffusion-nets/src/unet/tests.rs assert the same numbers.

    python3 crates/diffusion-nets/scripts/check_param_count.py [--names]

Checked with diffusers 0.42.1: params 35746307, macs_per_image 6221856768 (and 1112801
parameters for the `mnist` preset).
`--names` writes the lines of assets/ddpm_cifar10_param_shapes.txt (after the first three),
which the structure test compares against, name by name and shape by shape:

    python3 scripts/check_param_count.py --names | tail -n +4 | sed "s/[(),]/ /g; s/  */ /g; s/ $//"
"""
import sys

import torch
from diffusers import UNet2DModel
from torch.utils.flop_counter import FlopCounterMode


def ddpm_cifar10() -> UNet2DModel:
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=32,
        # One head over all channels, as in DDPM (diffusers' default is heads of 8 channels;
        # the head count changes neither parameters nor MACs).
        attention_head_dim=None,
    )


def mnist() -> UNet2DModel:
    """The `mnist` preset: base 32, mults [1, 2, 2], one block per level, attention at 7x7."""
    return UNet2DModel(
        sample_size=28,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=None,
    )


def main() -> None:
    print("mnist_params", sum(p.numel() for p in mnist().parameters()))
    model = ddpm_cifar10().eval()
    print("params", sum(p.numel() for p in model.parameters()))
    x = torch.randn(1, 3, 32, 32)
    t = torch.tensor([10])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x, t)
    print("macs_per_image", counter.get_total_flops() // 2)
    if "--names" in sys.argv:
        for name, p in model.named_parameters():
            print(name, tuple(p.shape))


if __name__ == "__main__":
    main()
