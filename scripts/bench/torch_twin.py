#!/usr/bin/env python3
"""The PyTorch twin of `diffusion-cli bench`: the same network as diffusers' `UNet2DModel`, the
same training step and the same DDIM sampling, timed the same way.

`cargo xtask bench` runs it next to ours when `torch` and `diffusers` are importable, with the
`model` object of our result as --model-config, and prints the ratio ours / PyTorch per figure.
It is never part of CI. By hand (a training config with a "model" key works too):

    python3 scripts/bench/torch_twin.py --model-config assets/configs/mnist.json \\
        --batch-size 32 --train-steps 10 --warmup 3 --sample-batches 2 --ddim-steps 50 \\
        --threads 2 --num-timesteps 1000

Prints one JSON object on stdout, with the keys of `diffusion-cli bench`; progress goes to
stderr. Per measured training step: batch / wall time of the step (noising, forward, loss,
backward, gradient clipping, AdamW, EMA). Per measured sampling batch: batch / wall time of a
whole DDIM run with the EMA model. One warm-up sampling batch runs before the measured ones.

Our network is built to be state-dict compatible with `UNet2DModel` (see
crates/diffusion-nets/src/unet/build.rs); the parameter counts must agree, and
`cargo xtask bench` refuses to compare when they do not.
"""

import argparse
import json
import os
import pathlib
import sys
import time

LR = 2e-4
EMA_DECAY = 0.995
GRAD_CLIP_NORM = 1.0
BETA_START, BETA_END = 1e-4, 0.02
SEED = 0


class UnmappableConfig(Exception):
    """A UNetConfig with no UNet2DModel counterpart."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-config", type=pathlib.Path, required=True,
                   help="our UNetConfig as JSON, or a training config holding it under \"model\"")
    p.add_argument("--preset", help="name reported in the result (default: the file's stem)")
    numbers = [
        ("--batch-size", 32, "images per step and per batch"),
        ("--train-steps", 10, "measured training steps"),
        ("--warmup", 3, "training steps before measuring"),
        ("--sample-batches", 2, "measured sampling batches, after one warm-up batch"),
        ("--ddim-steps", 50, "DDIM steps per sampling batch"),
        ("--threads", 2, "intra-op threads of torch"),
        ("--num-timesteps", 1000, "T of the linear schedule"),
    ]
    for flag, default, text in numbers:
        p.add_argument(flag, type=int, default=default, help=f"{text} (default: {default})")
    p.add_argument("--expect-params", type=int,
                   help="fail before measuring unless the network has this many parameters")
    args = p.parse_args()
    for name in ("batch_size", "train_steps", "sample_batches", "ddim_steps", "threads",
                 "num_timesteps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be at least 0")
    return args


def load_model_config(path: pathlib.Path) -> dict:
    config = json.loads(path.read_text())
    return config.get("model", config)


def unet2d_kwargs(cfg: dict) -> dict:
    """The `UNet2DModel` arguments of our `UNetConfig` (crates/diffusion-nets/src/unet/)."""
    variant = cfg.get("variant", "residual-attention")
    if variant not in ("residual", "residual-attention"):
        raise UnmappableConfig(
            f"variant `{variant}` has no UNet2DModel counterpart (its blocks have no residual "
            "connections); the twin maps `residual` and `residual-attention`")
    time_injection = {"additive": "default", "scale-shift": "scale_shift"}.get(
        cfg.get("time_injection", "additive"))
    if time_injection is None:
        raise UnmappableConfig(f"time_injection `{cfg['time_injection']}` is not known")
    base, mults = cfg["base_channels"], cfg["channel_mults"]
    size = cfg["image_size"]
    attention = variant == "residual-attention"
    # Level i works at size / 2^i; attention follows every residual block of a level whose
    # resolution is listed (and, for residual-attention, the middle block always has one).
    level_attention = [attention and (size >> i) in cfg.get("attention_resolutions", [])
                       for i in range(len(mults))]
    num_classes = cfg.get("num_classes")
    groups = cfg["norm_groups"]
    return dict(
        sample_size=size,
        in_channels=cfg["in_channels"],
        out_channels=cfg.get("out_channels") or cfg["in_channels"],
        block_out_channels=tuple(base * m for m in mults),
        layers_per_block=cfg["num_res_blocks"],
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D"
                               for a in level_attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D"
                             for a in reversed(level_attention)),
        add_attention=attention,
        norm_num_groups=groups,
        # diffusers drops the group norm of the middle attention block under scale-shift
        # unless asked for one; ours always has it.
        attn_norm_num_groups=groups,
        norm_eps=cfg.get("norm_eps", 1e-5),
        # None: one head over all channels, as ours (diffusers then uses the channel count).
        attention_head_dim=cfg.get("attention_head_dim"),
        dropout=cfg.get("dropout", 0.0),
        resnet_time_scale_shift=time_injection,
        # Our table has one more row, the null class of classifier-free guidance.
        num_class_embeds=None if num_classes is None else num_classes + 1,
    )


def progress(message: str) -> None:
    print(f"\rtorch twin: {message}", end="", file=sys.stderr, flush=True)


def measure_training(model, cfg: dict, args) -> tuple:
    """Trains for warm-up + measured steps; returns images/s of each measured step and the
    EMA model."""
    import copy

    import torch

    gen = torch.Generator().manual_seed(SEED)
    betas = torch.linspace(BETA_START, BETA_END, args.num_timesteps, dtype=torch.float64)
    alpha_bar = torch.cumprod(1.0 - betas, dim=0).float()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    ema_params, params = list(ema.parameters()), list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=LR)
    b, c, size = args.batch_size, cfg["in_channels"], cfg["image_size"]
    num_classes = cfg.get("num_classes")
    model.train()
    rates = []
    total = args.warmup + args.train_steps
    for step in range(1, total + 1):
        progress(f"training step {step}/{total}")
        started = time.perf_counter()
        x0 = torch.rand(b, c, size, size, generator=gen) * 2 - 1  # [b, c, h, w] in [-1, 1]
        labels = (None if num_classes is None
                  else torch.randint(0, num_classes, (b,), generator=gen))
        t = torch.randint(0, args.num_timesteps, (b,), generator=gen)
        eps = torch.randn(x0.shape, generator=gen)
        ab = alpha_bar[t].view(b, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
        pred = model(x_t, t, class_labels=labels).sample
        loss = torch.nn.functional.mse_loss(pred, eps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
        optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - EMA_DECAY)
        elapsed = time.perf_counter() - started
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at training step {step}")
        if step > args.warmup:
            rates.append(b / elapsed)
    print(file=sys.stderr)
    return rates, ema


def measure_sampling(ema, cfg: dict, args) -> list:
    """Images/s of each measured DDIM batch (after one warm-up batch), with labels, no guidance."""
    import torch
    from diffusers import DDIMScheduler

    # diffusers' defaults, which are ours too: leading spacing, clipping, alpha_bar_prev = 1 last.
    scheduler = DDIMScheduler(num_train_timesteps=args.num_timesteps, beta_start=BETA_START,
                              beta_end=BETA_END, beta_schedule="linear")
    gen = torch.Generator().manual_seed(SEED + 1)
    b, c, size = args.batch_size, cfg["in_channels"], cfg["image_size"]
    num_classes = cfg.get("num_classes")
    labels = None if num_classes is None else torch.arange(b) % num_classes
    rates = []
    with torch.inference_mode():
        for batch in range(args.sample_batches + 1):
            progress(f"sampling batch {batch}/{args.sample_batches}")
            started = time.perf_counter()
            scheduler.set_timesteps(args.ddim_steps)
            x = torch.randn(b, c, size, size, generator=gen)  # [b, c, h, w]
            for t in scheduler.timesteps:
                eps = ema(x, t, class_labels=labels).sample
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            elapsed = time.perf_counter() - started
            if batch > 0:
                rates.append(b / elapsed)
    print(file=sys.stderr)
    return rates


def main() -> int:
    args = parse_args()
    # Before torch is imported, so that OpenMP and MKL size their pools to match.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import resource

    import torch
    from diffusers import UNet2DModel

    torch.set_num_threads(args.threads)
    try:
        cfg = load_model_config(args.model_config)
        kwargs = unet2d_kwargs(cfg)
    except (OSError, ValueError, KeyError, UnmappableConfig) as e:
        detail = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        print(f"torch twin: cannot build the network of {args.model_config}: {detail}",
              file=sys.stderr)
        return 2
    torch.manual_seed(SEED)
    model = UNet2DModel(**kwargs)
    params = sum(p.numel() for p in model.parameters())
    if args.expect_params is not None and params != args.expect_params:
        print(f"torch twin: UNet2DModel has {params} parameters, ours {args.expect_params}: "
              "the mapping in unet2d_kwargs does not build the same network", file=sys.stderr)
        return 2
    print(f"torch twin: {params} parameters, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}", file=sys.stderr)

    train_rates, ema = measure_training(model, cfg, args)
    sample_rates = measure_sampling(ema, cfg, args)
    result = {
        "impl": f"pytorch {torch.__version__}",
        "preset": args.preset or args.model_config.stem,
        "batch_size": args.batch_size,
        "params": params,
        "threads": torch.get_num_threads(),
        "model": cfg,
        "num_timesteps": args.num_timesteps,
        "train_images_per_sec": train_rates,
        "sample_images_per_sec": sample_rates,
        # Linux reports ru_maxrss in KiB.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
