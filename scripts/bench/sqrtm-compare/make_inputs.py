#!/usr/bin/env python3
"""Inputs and scipy reference values for the faer / nalgebra trace-of-sqrtm comparison.

Run from this folder with the evaluation venv (numpy, scipy, pytorch-fid), then the Rust side:

    /root/.venv-eval/bin/python make_inputs.py      # writes data/ (about 200 MB, git-ignored)
    cargo run --release                             # reads data/, prints the table

Cases, all at d = 2048 like Inception pool3 features:
- `features-10000`: covariances of two sets of 10,000 random features with a decaying
  spectrum (singular values ~ 1 / (1 + i / 16)) in nearby random rotations (the second set
  scaled by 1.1), plus one common offset; full rank, condition number about 1e4. The two distributions
  are close, as in a real comparison, so FD is small against the traces and cancellation in
  `tr S1 + tr S2 - 2 tr sqrt(S1 S2)` magnifies any error in the last term.
- `features-1000`: the same construction with 1,000 samples: rank 999 of 2048, the near-singular
  product pytorch-fid warns about.
- `commuting`: S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T with one rotation Q, whose exact answer is
  sum sqrt(a_i b_i) (math.fsum), independent of any sqrtm implementation.

For each case the reference JSON holds scipy 1.17's `trace(sqrtm(S1 @ S2)).real` (what
pytorch-fid's `calculate_frechet_distance` uses), its wall time, the squared mean difference and
the traces (so that the Rust side can turn a trace error into an FD error), and the exact value
where there is one. Matrices are raw little-endian f64, row-major, d * d values.
"""

import json
import math
import os
import time

import numpy as np
import scipy
from scipy import linalg

D = 2048
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def rotation(rs, d):
    q, r = np.linalg.qr(rs.randn(d, d))
    return q * np.sign(np.diag(r))


def features(rs, n, d, scale, q, offset):
    spectrum = scale / (1.0 + np.arange(d) / 16.0)
    x = (rs.randn(n, d) * spectrum) @ q.T
    return x + offset


def save(name, s1, s2, mean_diff2, extra):
    s1.astype("<f8").tofile(os.path.join(OUT, f"{name}.s1.f64"))
    s2.astype("<f8").tofile(os.path.join(OUT, f"{name}.s2.f64"))
    start = time.perf_counter()
    covmean = linalg.sqrtm(s1 @ s2)
    seconds = time.perf_counter() - start
    trace = float(np.trace(covmean).real)
    fd = mean_diff2 + float(np.trace(s1)) + float(np.trace(s2)) - 2.0 * trace
    print(f"{name}: scipy trace {trace!r} in {seconds:.1f} s (dtype {covmean.dtype}), FD {fd!r}")
    return dict(d=D, scipy_trace=trace, scipy_seconds=seconds, scipy_dtype=str(covmean.dtype),
                mean_diff2=mean_diff2, trace_s1=float(np.trace(s1)),
                trace_s2=float(np.trace(s2)), scipy_fd=fd, **extra)


def main():
    os.makedirs(OUT, exist_ok=True)
    rs = np.random.RandomState(2048)
    cases = {}
    q1 = rotation(rs, D)
    # A nearby rotation: the second set's principal axes are tilted a little.
    q2, r = np.linalg.qr(q1 + 0.05 * rs.randn(D, D) / np.sqrt(D))
    q2 = q2 * np.sign(np.diag(r))
    offset = rs.rand(D)
    for n in (10_000, 1_000):
        x1 = features(rs, n, D, 1.0, q1, offset)
        x2 = features(rs, n, D, 1.1, q2, offset)
        m1, m2 = x1.mean(0), x2.mean(0)
        s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
        diff = m1 - m2
        cases[f"features-{n}"] = save(f"features-{n}", s1, s2, float(diff @ diff), {})
    a = 1.0 / (1.0 + np.arange(D) / 16.0) ** 2
    b = a[::-1] * rs.uniform(0.5, 2.0, D)
    s1 = (q1 * a) @ q1.T
    s2 = (q1 * b) @ q1.T
    exact = math.fsum(math.sqrt(x * y) for x, y in zip(a, b))
    cases["commuting"] = save("commuting", s1, s2, 0.0, dict(exact_trace=exact))
    doc = dict(generator="make_inputs.py", numpy=np.__version__, scipy=scipy.__version__,
               cases=cases)
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
