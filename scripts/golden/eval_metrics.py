#!/usr/bin/env python3
"""Golden numbers from pytorch-fid and torch-fidelity for diffusion-eval's metrics.

Run once (CI never runs it) with numpy, scipy, torch, pytorch-fid and torch-fidelity installed
(`pip install numpy scipy torch pytorch-fid==0.3.0 torch-fidelity==0.4.0`):

    python3 scripts/golden/eval_metrics.py > assets/golden/eval_metrics.json

and `cargo test -p diffusion-eval --test metrics_golden` compares against the file.

Inputs come from one numpy RandomState (fixed seed) and are rounded to float32 (our `Features`
are f32); the file stores them as 9-significant-digit decimals, which read back as the same
float32 values. Every expected value is computed by the library function itself on the
float64 versions of those values:

- `fd`: pytorch-fid's `calculate_frechet_distance` on `np.mean(x, 0)`, `np.cov(x, rowvar=False)`
  (pytorch-fid's `calculate_activation_statistics` takes the mean in the activations' dtype,
  float32; we take it in float64). Each case records whether pytorch-fid took its eps fallback
  (it prints a message) and the dtype scipy's sqrtm returned. `stats` cases give the
  statistics directly; `expected_error` holds pytorch-fid's exception where it raises.
- `kid`: torch-fidelity's `kid_features_to_metric` on float64 tensors (it computes in the
  features' dtype), with the subset indices it draws exported (replayed here from the same
  `np.random.RandomState(rng_seed)` calls and checked against its result).
- `isc`: torch-fidelity's `isc_features_to_metric(logits, splits, shuffle=False)`.
- `prc`: torch-fidelity's `prc_features_to_metric(fake, real)` (its `features_1` is the
  generated set; it averages in float32, so the exact counts are stored too), cross-checked
  here against a direct numpy implementation, with the smallest
  relative margin between a decisive distance and its radius recorded (rounding cannot flip a
  comparison unless that margin is near 1e-15).
"""

import contextlib
import io
import json
import sys
import warnings

import numpy as np
import pytorch_fid
import scipy
import torch
import torch_fidelity
from pytorch_fid.fid_score import calculate_frechet_distance
from scipy import linalg
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kernel_mmd, kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

SEED = 20190415


def f32(x):
    """Rounds to float32 and back to float64: the values our Rust side will see."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def flat(x):
    """A float32 matrix as short decimals that read back as the same float32 values."""
    return [float(f"{v:.9g}") for v in np.asarray(x, dtype=np.float32).ravel()]


def flat64(x):
    return [float(v) for v in np.asarray(x, dtype=np.float64).ravel()]


def fid_call(mu1, sigma1, mu2, sigma2):
    """pytorch-fid's result (or exception), whether it took the eps fallback, sqrtm's dtype."""
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.simplefilter("ignore")
        dtype = str(linalg.sqrtm(sigma1 @ sigma2).dtype)
        try:
            value, error = float(calculate_frechet_distance(mu1, sigma1, mu2, sigma2)), None
        except ValueError as e:
            value, error = None, f"ValueError: {e}"
    fallback = "adding" in out.getvalue()
    return value, error, fallback, dtype


def fd_features_case(name, x1, x2, with_stats=False):
    x1, x2 = f32(x1), f32(x2)
    mu1, mu2 = np.mean(x1, axis=0), np.mean(x2, axis=0)
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    value, error, fallback, dtype = fid_call(mu1, s1, mu2, s2)
    assert error is None, error
    case = dict(kind="fd", name=name, dim=x1.shape[1], features1=flat(x1),
                features2=flat(x2), n1=x1.shape[0], n2=x2.shape[0], expected=value,
                eps_fallback=fallback, sqrtm_dtype=dtype,
                rank1=int(np.linalg.matrix_rank(s1)), rank2=int(np.linalg.matrix_rank(s2)),
                trace_sum=float(np.trace(s1) + np.trace(s2)))
    if with_stats:
        case.update(mean1=flat64(mu1), cov1=flat64(s1))
    return case


def fd_stats_case(name, mu1, s1, mu2, s2):
    value, error, fallback, dtype = fid_call(mu1, s1, mu2, s2)
    case = dict(kind="fd_stats", name=name, dim=len(mu1), mean1=flat64(mu1), cov1=flat64(s1),
                mean2=flat64(mu2), cov2=flat64(s2), eps_fallback=fallback, sqrtm_dtype=dtype,
                trace_sum=float(np.trace(s1) + np.trace(s2)))
    if error is None:
        case["expected"] = value
    else:
        case["expected_error"] = error
    return case


def correlated(rs, n, d, scale=1.0, shift=0.0):
    mix = rs.randn(d, d) / np.sqrt(d)
    return (rs.randn(n, d) * scale) @ mix + shift


def fd_cases(rs):
    yield fd_features_case("well_conditioned", correlated(rs, 120, 16),
                           correlated(rs, 100, 16, 1.2, 0.3), with_stats=True)
    # n < d: rank 19 and 29 of 48, a near-singular product.
    yield fd_features_case("n_less_than_d", correlated(rs, 20, 48), correlated(rs, 30, 48, 0.9))
    # Zero-variance features: 4 constant in both sets, 2 more only in the second.
    x1, x2 = correlated(rs, 60, 24), correlated(rs, 60, 24, 1.1, 0.2)
    x1[:, :4] = 0.5
    x2[:, :4] = -1.0
    x2[:, 10:12] = 2.0
    yield fd_features_case("constant_features", x1, x2)
    x = correlated(rs, 40, 8)
    yield fd_features_case("identical_sets", x, x.copy())
    # The same covariance, different means: FD is |mu1 - mu2|^2 up to the trace terms' noise.
    x = f32(correlated(rs, 100, 8))
    s = np.cov(x, rowvar=False)
    mu1, mu2 = x.mean(0), x.mean(0) + f32(rs.uniform(-1, 1, 8))
    yield fd_stats_case("means_differ_only", mu1, s, mu2, s)
    # Not a covariance: pytorch-fid raises "Imaginary component".
    yield fd_stats_case("not_positive_semidefinite", np.zeros(3), np.eye(3), np.zeros(3),
                        np.diag([1.0, 1.0, -0.5]))


def kid_case(rs, name, n1, n2, d, subsets, subset_size, seed, **kernel):
    real = f32(rs.randn(n1, d))
    fake = f32(rs.randn(n2, d) * 1.1 + 0.1)
    kwargs = dict(kid_subsets=subsets, kid_subset_size=subset_size, rng_seed=seed,
                  verbose=False, **kernel)
    # features_1 = real, features_2 = fake; the estimate is symmetric.
    result = kid_features_to_metric(torch.from_numpy(real), torch.from_numpy(fake), **kwargs)
    # The same draws as kid_features_to_metric's loop.
    rng = np.random.RandomState(seed)
    indices = []
    for _ in range(subsets):
        i1 = rng.choice(n1, subset_size, replace=False)
        i2 = rng.choice(n2, subset_size, replace=False)
        indices.append([[int(i) for i in i1], [int(i) for i in i2]])
    full = {"kid_kernel": "poly", "kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None,
            "kid_kernel_poly_coef0": 1, **kernel}
    mmds = [kernel_mmd(real[i1], fake[i2], **full) for i1, i2 in indices]
    assert np.isclose(np.mean(mmds), result["kernel_inception_distance_mean"], rtol=1e-12)
    assert np.isclose(np.std(mmds), result["kernel_inception_distance_std"], rtol=1e-12)
    return dict(kind="kid", name=name, dim=d, real=flat(real), fake=flat(fake), n_real=n1,
                n_fake=n2, subsets=indices, subset_size=subset_size,
                degree=full["kid_kernel_poly_degree"], gamma=full["kid_kernel_poly_gamma"],
                coef0=float(full["kid_kernel_poly_coef0"]),
                expected_mean=result["kernel_inception_distance_mean"],
                expected_std=result["kernel_inception_distance_std"])


def isc_case(rs):
    logits = f32(rs.randn(100, 10) * 3.0 + rs.randn(10))
    splits = [5, 3, 1]
    results = [isc_features_to_metric(torch.from_numpy(logits), splits=s, shuffle=False)
               for s in splits]
    return dict(kind="isc", name="logits_100x10", dim=10, logits=flat(logits), n=100,
                splits=splits, expected_mean=[r["inception_score_mean"] for r in results],
                expected_std=[r["inception_score_std"] for r in results])


def prc_numpy(real, fake, k):
    """The definition with direct differences; also the smallest |distance - radius| / radius."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    r_real = np.sort(dist(real, real), axis=1)[:, k]
    r_fake = np.sort(dist(fake, fake), axis=1)[:, k]
    d_fr = dist(fake, real)
    precision = float((d_fr <= r_real[None, :]).any(axis=1).mean())
    recall = float((d_fr.T <= r_fake[None, :]).any(axis=1).mean())
    margin = min(np.min(np.abs(d_fr - r_real[None, :]) / r_real[None, :]),
                 np.min(np.abs(d_fr.T - r_fake[None, :]) / r_fake[None, :]))
    return precision, recall, float(margin)


def prc_case(rs, name, n_real, n_fake, d, k, scale, shift):
    real = f32(rs.randn(n_real, d))
    fake = f32(rs.randn(n_fake, d) * scale + shift)
    result = prc_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real),
                                    prc_neighborhood=k, prc_batch_size=10000,
                                    save_cpu_ram=False, verbose=False)
    precision, recall, margin = prc_numpy(real, fake, k)
    # torch-fidelity averages in float32 (`.float().mean()`): the same fractions to 1e-7.
    assert abs(precision - result["precision"]) < 1e-6, (result, precision)
    assert abs(recall - result["recall"]) < 1e-6, (result, recall)
    assert margin > 1e-9, margin
    return dict(kind="prc", name=name, dim=d, real=flat(real), fake=flat(fake), n_real=n_real,
                n_fake=n_fake, k=k, expected_precision=result["precision"],
                expected_recall=result["recall"],
                precision_count=int(round(precision * n_fake)),
                recall_count=int(round(recall * n_real)), min_relative_margin=margin)


def main():
    rs = np.random.RandomState(SEED)
    cases = list(fd_cases(rs))
    cases.append(kid_case(rs, "poly3_default_kernel", 50, 40, 16, 10, 20, 2020))
    cases.append(kid_case(rs, "poly2_gamma_coef0", 30, 35, 8, 6, 15, 7,
                          kid_kernel_poly_degree=2, kid_kernel_poly_gamma=0.05,
                          kid_kernel_poly_coef0=0.5))
    cases.append(isc_case(rs))
    cases.append(prc_case(rs, "overlapping_k3", 100, 80, 10, 3, 1.3, 0.3))
    cases.append(prc_case(rs, "shifted_k3", 60, 70, 6, 3, 0.8, 0.8))
    doc = dict(
        generator="scripts/golden/eval_metrics.py",
        seed=SEED,
        numpy=np.__version__,
        scipy=scipy.__version__,
        torch=torch.__version__,
        pytorch_fid=pytorch_fid.__version__,
        torch_fidelity=torch_fidelity.__version__,
        cases=cases,
    )
    # One case a line: the inputs are long lists of numbers.
    cases = doc.pop("cases")
    head = json.dumps(doc, indent=1)[:-2]
    sys.stdout.write(head + ',\n "cases": [\n')
    sys.stdout.write(",\n".join("  " + json.dumps(case) for case in cases))
    sys.stdout.write("\n ]\n}\n")


if __name__ == "__main__":
    main()
