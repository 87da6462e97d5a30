#!/usr/bin/env python3
"""Golden data for diffusion-eval's FID Inception, from pytorch-fid itself, without its weights.

No machine here can download `pt_inception-2015-12-05-6726825d.pth`, so parity is proven with
deterministic weights instead: every parameter is a closed-form function of its state-dict key
and flat index (below, and the same in `crates/diffusion-eval/tests/inception_parity.rs`).
pytorch-fid's own `InceptionV3(resize_input=True, normalize_input=True)` is built with those
weights (its download is patched to return them) and run in float64 on fixed images.

Run once on a machine with `pip install torch torchvision pytorch-fid==0.3.0` (CI never runs it):

    python3 scripts/golden/inception_fid.py

It writes
- `assets/golden/inception_fid_keys.json`: every (key, shape) of the FID network's state_dict;
- `assets/golden/inception_fid_features.json`: the images (uint8, as pytorch-fid's loader
  reads them), their pool3 features and fc logits, and a few resized pixels;
- `crates/diffusion-eval/tests/fixtures/inception_fid_{legacy,zip}.pth`: a few real key names
  in the legacy (pre-1.6, pickle) and the zip format, for the reader tests (the legacy file's
  bytes differ from run to run, as its storage keys are object ids; its content does not).

`--full-pth DIR` also writes the whole deterministic state_dict in both formats (95 MB each, not
committed) for the optional end-to-end test: `INCEPTION_FID_DETERMINISTIC_PTH=DIR/...pth`.

# The deterministic weights

    seed(key)  = fold h = (h * 31 + byte) mod 2^32 over the key's UTF-8 bytes, from h = 0
    mix(s, i)  = murmur3's fmix32 of s ^ (i * 0x9E3779B9 mod 2^32)
    u(key, i)  = mix(seed(key), i) / 2^32 * 2 - 1            (exact in f64, in [-1, 1))

    *.conv.weight [o, c, kh, kw]  u * (sqrt(3) * GAIN / sqrt(c * kh * kw))
    *.bn.weight                   1 + 0.2 u
    *.bn.bias                     0.1 u
    *.bn.running_mean             0.1 u
    *.bn.running_var              1 + 0.5 u
    fc.weight [1008, 2048]        u * (sqrt(3) / sqrt(2048))
    fc.bias                       0.1 u

each computed in f64 and rounded to f32 (the dtype of the state dict). Integer arithmetic makes
u bit-exact in any language; sqrt is correctly rounded, so the f32 values are too.
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytorch_fid
import pytorch_fid.inception as fid
import torch
import torch.nn.functional as F
import torchvision

ROOT = Path(__file__).resolve().parents[2]
GAIN = math.sqrt(2.0)
M32 = 0xFFFFFFFF


def seed(key):
    h = 0
    for b in key.encode("utf-8"):
        h = (h * 31 + b) & M32
    return h


def unit(key, n):
    """u(key, i) for i in 0..n, as float64."""
    x = np.arange(n, dtype=np.uint64)
    x = (x * np.uint64(0x9E3779B9)) & np.uint64(M32)
    x ^= np.uint64(seed(key))
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x85EBCA6B)) & np.uint64(M32)
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(0xC2B2AE35)) & np.uint64(M32)
    x ^= x >> np.uint64(16)
    return x.astype(np.float64) / 4294967296.0 * 2.0 - 1.0


def value(key, shape):
    """The deterministic f32 tensor for a float parameter `key` of `shape`."""
    n = int(np.prod(shape)) if shape else 1
    u = unit(key, n)
    if key.endswith(".conv.weight"):
        fan_in = int(np.prod(shape[1:]))
        v = u * (math.sqrt(3.0) * GAIN / math.sqrt(fan_in))
    elif key.endswith(".bn.weight"):
        v = 1.0 + 0.2 * u
    elif key.endswith(".bn.bias") or key.endswith(".bn.running_mean") or key == "fc.bias":
        v = 0.1 * u
    elif key.endswith(".bn.running_var"):
        v = 1.0 + 0.5 * u
    elif key == "fc.weight":
        v = u * (math.sqrt(3.0) / math.sqrt(2048))
    else:
        raise KeyError(key)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


def fid_state_dict_shapes():
    """(key, shape, dtype) of pytorch-fid's FID network, built as `fid_inception_v3` builds it."""
    captured = {}
    original = torch.nn.Module.load_state_dict

    def capture(self, state_dict, strict=True, assign=False):
        captured["net"] = self

    fid.load_state_dict_from_url = lambda *a, **k: None
    torch.nn.Module.load_state_dict = capture
    try:
        fid.fid_inception_v3()
    finally:
        torch.nn.Module.load_state_dict = original
    return [(k, list(t.shape), t.dtype) for k, t in captured["net"].state_dict().items()]


def deterministic_state_dict(shapes):
    sd = {}
    for key, shape, dtype in shapes:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.zeros(shape, dtype=dtype)
        else:
            sd[key] = value(key, shape)
    return sd


def images():
    """Two 28x28 gray and two 32x32 RGB uint8 images: smooth shapes, edges and noise."""
    out = []
    for n, (c, size) in enumerate([(1, 28), (1, 28), (3, 32), (3, 32)]):
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        chans = []
        for ch in range(c):
            cx, cy = size * (0.3 + 0.15 * n), size * (0.6 - 0.1 * ch)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (size / 5) ** 2))
            wave = 0.5 + 0.5 * np.sin(x * (0.35 + 0.1 * n) + y * 0.2 * (ch + 1))
            edge = (x + 2 * y > size * (1.2 + 0.2 * ch)).astype(np.float64)
            noise = unit(f"image{n}.{ch}", size * size).reshape(size, size)
            v = 0.45 * blob + 0.3 * wave + 0.2 * edge + 0.05 * noise
            chans.append(np.clip(np.round(v * 255), 0, 255).astype(np.uint8))
        out.append(np.stack(chans))
    return out


def to_fid_input(img):
    """What pytorch-fid's ImagePathDataset yields: PIL convert('RGB') then ToTensor (k/255)."""
    t = torch.from_numpy(img.astype(np.float64) / 255.0)
    if t.shape[0] == 1:
        t = t.repeat(3, 1, 1)
    return t


def flat(t, digits=10):
    return [float(f"{v:.{digits}g}") for v in t.flatten().tolist()]


def run(model, batch):
    with torch.no_grad():
        return model(batch)[0].flatten(1)


def write_pth(path, sd, legacy):
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full-pth", type=Path, help="also write the full deterministic .pth files here")
    args = parser.parse_args()
    torch.set_num_threads(2)

    shapes = fid_state_dict_shapes()
    sd = deterministic_state_dict(shapes)
    keys = {
        "about": "state_dict of pytorch_fid.inception.fid_inception_v3(), in order; "
        "written by scripts/golden/inception_fid.py",
        "pytorch_fid": pytorch_fid.__version__,
        "torchvision": torchvision.__version__,
        "keys": [{"key": k, "shape": s, "dtype": str(d).removeprefix("torch.")} for k, s, d in shapes],
    }
    # One entry per line: readable diffs when torchvision or pytorch-fid change.
    entries = ",\n  ".join(json.dumps(k) for k in keys.pop("keys"))
    head = json.dumps(keys, indent=1)[:-2]
    (ROOT / "assets/golden/inception_fid_keys.json").write_text(f'{head},\n "keys": [\n  {entries}\n ]\n}}\n')

    # pytorch-fid's own wrapper, with our weights instead of the download (strict load).
    fid.load_state_dict_from_url = lambda *a, **k: sd
    model = fid.InceptionV3([fid.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()

    imgs = images()
    groups = [[0, 1], [2, 3]]  # one batch per input size
    feats64, feats32, logits64 = {}, {}, {}
    fc_w, fc_b = sd["fc.weight"].double(), sd["fc.bias"].double()
    for group in groups:
        batch = torch.stack([to_fid_input(imgs[i]) for i in group])
        f64 = run(model.double(), batch)
        f32 = run(model.float(), batch.float()).double()
        for j, i in enumerate(group):
            feats64[i], feats32[i] = f64[j], f32[j]
            logits64[i] = f64[j] @ fc_w.T + fc_b
    f64 = torch.stack([feats64[i] for i in range(len(imgs))])
    f32 = torch.stack([feats32[i] for i in range(len(imgs))])
    lg = torch.stack([logits64[i] for i in range(len(imgs))])

    # pytorch-fid's preprocessing on its own, at a few points of image 0 (gray, 28 -> 299).
    x = to_fid_input(imgs[0]).unsqueeze(0)
    resized = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    points = [(y, x_) for y in (0, 1, 5, 149, 150, 297, 298) for x_ in (0, 2, 10, 77, 150, 296, 298)]
    probes = [[y, x_, float(resized[0, 0, y, x_])] for y, x_ in points]

    err = (f32 - f64).abs()
    golden = {
        "about": "pytorch-fid InceptionV3 (resize_input, normalize_input, pool3) with the "
        "deterministic weights of scripts/golden/inception_fid.py, in float64",
        "generator": {
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "pytorch_fid": pytorch_fid.__version__,
            "gain": GAIN,
        },
        "images": [{"shape": list(img.shape), "pixels": img.flatten().tolist()} for img in imgs],
        "batches": groups,
        "features": [flat(f) for f in f64],
        "logits": [flat(v) for v in lg],
        "resize_probes": {"image": 0, "points": probes},
        "torch_float32": {
            "max_abs_err": float(err.max()),
            "max_rel_err": float((err / f64.abs().clamp_min(1e-3)).max()),
        },
        "feature_stats": {
            "mean": float(f64.mean()),
            "max": float(f64.max()),
            "zero_fraction": float((f64 == 0).double().mean()),
        },
    }
    out = ROOT / "assets/golden/inception_fid_features.json"
    out.write_text(json.dumps(golden, separators=(",", ":")) + "\n")
    print(f"features: mean {golden['feature_stats']} torch f32 vs f64 {golden['torch_float32']}")

    # Reader fixtures: Conv2d_1a_3x3 complete (with its int64 num_batches_tracked), nothing
    # after it; the zip one adds Conv2d_2a_3x3's conv weight with a wrong (smaller) shape.
    fixtures = ROOT / "crates/diffusion-eval/tests/fixtures"
    fixtures.mkdir(parents=True, exist_ok=True)
    small = {k: v for k, v in sd.items() if k.startswith("Conv2d_1a_3x3.")}
    write_pth(fixtures / "inception_fid_legacy.pth", small, legacy=True)
    wrong = value("Conv2d_2a_3x3.conv.weight", [4, 32, 3, 3])
    write_pth(fixtures / "inception_fid_zip.pth", dict(small, **{"Conv2d_2a_3x3.conv.weight": wrong}), legacy=False)

    if args.full_pth:
        args.full_pth.mkdir(parents=True, exist_ok=True)
        write_pth(args.full_pth / "deterministic_legacy.pth", sd, legacy=True)
        write_pth(args.full_pth / "deterministic_zip.pth", sd, legacy=False)


if __name__ == "__main__":
    main()
