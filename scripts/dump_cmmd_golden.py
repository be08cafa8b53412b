#!/usr/bin/env python3
"""Writes tests/golden/cmmd_formula.safetensors: feature sets and their CMMD (Jayasumana et al. 2024,
"Rethinking FID"), transcribed here in float64 numpy from the paper's definition:

    gamma = 1 / (2 sigma^2), sigma = 10;  k(a, b) = exp(-gamma (|a|^2 + |b|^2 - 2 <a, b>))
    CMMD = 1000 (mean k(x_i, x_j) + mean k(y_i, y_j) - 2 mean k(x_i, y_j))

the biased MMD^2: every mean over all pairs, the diagonals included.

    python scripts/dump_cmmd_golden.py [--out tests/golden/cmmd_formula.safetensors]

Cases (numpy PCG64, seed 2024; features stored as float32, the value computed from them in f64):
  clip: n = 37 samples, m = 53 reference rows, d = 768, unit rows as CLIP embeddings are
        (the reference's rows drawn around a shifted mean);
  wide: n = 64, m = 16, d = 40, rows of norm about 6, so the kernel spans a wide range.
Needs numpy, safetensors.
"""
import argparse
import json

import numpy as np
from safetensors.numpy import save_file

SIGMA, SCALE = 10.0, 1000.0


def mean_kernel(a, b):
    """mean over all (i, j) of exp(-gamma ||a_i - b_j||^2), the squared distance by the norm
    expansion, in float64."""
    gamma = 1.0 / (2.0 * SIGMA**2)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.exp(-gamma * sq).mean()


def cmmd(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return SCALE * (mean_kernel(x, x) + mean_kernel(y, y) - 2.0 * mean_kernel(x, y))


def unit_rows(rng, n, d, shift):
    v = rng.standard_normal((n, d)) + shift
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/golden/cmmd_formula.safetensors")
    args = ap.parse_args()
    rng = np.random.default_rng(2024)
    direction = rng.standard_normal(768) * 0.08
    cases = {
        "clip": (unit_rows(rng, 37, 768, 0.0), unit_rows(rng, 53, 768, direction)),
        "wide": ((rng.standard_normal((64, 40)) * 1.0).astype(np.float32),
                 (rng.standard_normal((16, 40)) * 0.9 + 0.3).astype(np.float32)),
    }
    tensors, values = {}, {}
    for name, (x, y) in cases.items():
        v = cmmd(x, y)
        tensors[f"{name}.x"], tensors[f"{name}.y"] = x, y
        tensors[f"{name}.cmmd"] = np.array([v], dtype=np.float64)
        values[name] = v
    config = {"sigma": SIGMA, "scale": SCALE, "seed": 2024,
              "cases": {k: {"n": len(x), "m": len(y), "d": x.shape[1]} for k, (x, y) in cases.items()}}
    meta = {"format": "sitdiv-golden", "version": "1", "producer": f"scripts/dump_cmmd_golden.py, numpy {np.__version__}",
            "config": json.dumps(config, sort_keys=True)}
    save_file(tensors, args.out, metadata=meta)
    print(json.dumps(values, indent=1))


if __name__ == "__main__":
    main()
