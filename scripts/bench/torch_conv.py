#!/usr/bin/env python3
"""PyTorch's side of `cargo bench -p diffusion-tests --bench flex_conv`: a preset's 3x3
convolutions (`mnist` or `cifar10`), batch 32, forward and both gradients, in milliseconds
(best of five runs of ten calls) and GFLOP/s. Run with the same thread count: `python3
scripts/bench/torch_conv.py --threads 2 [--preset cifar10] [--cold]`. Never part of CI."""

import argparse
import time

import torch

BATCH = 32
# (c_in, c_out, size, stride, calls per training step): tests/benches/flex_conv.rs's lists.
MNIST = [(1, 16, 28, 1, 1), (16, 16, 28, 1, 4), (16, 16, 28, 2, 1), (16, 32, 14, 1, 1),
         (32, 32, 14, 1, 4), (32, 32, 14, 2, 1), (32, 32, 7, 1, 8), (64, 32, 7, 1, 2),
         (64, 32, 14, 1, 1), (48, 32, 14, 1, 1), (32, 32, 28, 1, 1), (48, 16, 28, 1, 1),
         (32, 16, 28, 1, 1), (16, 1, 28, 1, 1)]
CIFAR10 = [(3, 64, 32, 1, 1), (64, 64, 32, 1, 7), (64, 64, 32, 2, 1), (64, 128, 16, 1, 1),
           (128, 128, 16, 1, 7), (128, 128, 16, 2, 1), (128, 128, 8, 1, 8),
           (128, 128, 8, 2, 1), (128, 128, 4, 1, 11), (256, 128, 4, 1, 3),
           (256, 128, 8, 1, 3), (256, 128, 16, 1, 2), (192, 128, 16, 1, 1),
           (128, 128, 32, 1, 1), (192, 64, 32, 1, 1), (128, 64, 32, 1, 2), (64, 3, 32, 1, 1)]


def seconds(f, cold=False):
    """Seconds per call, the best of five runs of ten calls; with `cold`, each call timed alone
    after evict_caches() (flex_conv's --cold)."""
    f()
    best = float("inf")
    for _ in range(5):
        total = 0.0
        for _ in range(10):
            if cold:
                evict_caches()
            call = time.perf_counter()
            f()
            total += time.perf_counter() - call
        best = min(best, total / 10)
    return best


EVICT = None


def evict_caches():
    """Writes and reads 64 MiB with torch's threads, more than the machine's L2 and L3."""
    global EVICT
    if EVICT is None:
        EVICT = torch.empty(16 << 20)
    EVICT.add_(1.0)
    float(EVICT[::4096].sum())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default: 2)")
    p.add_argument("--cold", action="store_true",
                   help="evict the caches before each timed call (flex_conv's --cold)")
    p.add_argument("--preset", choices=["mnist", "cifar10"], default="mnist",
                   help="whose convolutions (default: mnist)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.preset}, threads: {torch.get_num_threads()}, batch {BATCH}, "
          f"torch {torch.__version__}" + (", caches evicted before each call" if args.cold else ""))
    totals, per_step = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    cold = args.cold
    for c_in, c_out, size, stride, calls in MNIST if args.preset == "mnist" else CIFAR10:
        out = (size + 2 - 3) // stride + 1
        flops = 2.0 * BATCH * c_out * out * out * c_in * 9
        x = torch.rand(BATCH, c_in, size, size)
        w = torch.rand(c_out, c_in, 3, 3)
        b = torch.rand(c_out)
        g = torch.rand(BATCH, c_out, out, out)
        grads = torch.ops.aten.convolution_backward
        args = dict(bias_sizes=[c_out], stride=[stride] * 2, padding=[1, 1], dilation=[1, 1],
                    transposed=False, output_padding=[0, 0], groups=1)
        with torch.no_grad():
            times = [
                seconds(lambda: torch.nn.functional.conv2d(x, w, b, stride, 1), cold),
                seconds(lambda: grads(g, x, w, output_mask=[True, False, False], **args), cold),
                seconds(lambda: grads(g, x, w, output_mask=[False, True, False], **args), cold),
            ]
        cells = [f"{t * 1e3:6.2f} ms {flops / t / 1e9:6.1f} GF/s" for t in times]
        print(f"{c_in:3} -> {c_out:3}, {size:2}x{size:2}, stride {stride}, x{calls:2}: "
              f"forward {cells[0]} | "
              f"input grad {cells[1]} | weight grad {cells[2]}")
        totals = [a + t for a, t in zip(totals, times)]
        per_step = [a + calls * t for a, t in zip(per_step, times)]
    print(f"total: forward {totals[0] * 1e3:.2f} ms, input grad {totals[1] * 1e3:.2f} ms, "
          f"weight grad {totals[2] * 1e3:.2f} ms")
    print(f"per training step (each shape times its calls): forward {per_step[0] * 1e3:.2f} ms, "
          f"input grad {per_step[1] * 1e3:.2f} ms, weight grad {per_step[2] * 1e3:.2f} ms, "
          f"all {sum(per_step) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
