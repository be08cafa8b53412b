#!/usr/bin/env python3
"""Writes tests/golden/metrics_small.safetensors: two small feature sets and every metric on them,
computed with the reference tools (scipy's sqrtm route for FID/sFID as the ADM evaluator does, prdc
for density/coverage) and with numpy transcriptions of the ADM evaluator's IS and precision/recall
formulas and of the unbiased polynomial-kernel MMD (KID) over the full sets.

    python scripts/dump_metric_golden.py [--out tests/golden/metrics_small.safetensors]

Needs: numpy, scipy, prdc, safetensors. Deterministic (numpy PCG64 seeded).
"""
import argparse
import json

import numpy as np
import prdc
import scipy
from scipy import linalg
from safetensors.numpy import save_file

N, D_POOL, D_SPATIAL, C = 400, 64, 23, 10
IS_SPLIT, PR_K, DC_K = 150, 3, 5


def features(rng, shift):
    base = rng.standard_normal((N, D_POOL)) @ rng.standard_normal((D_POOL, D_POOL)) / 8
    pool = np.maximum(base + shift, 0).astype(np.float32)
    spatial = (rng.standard_normal((N, D_SPATIAL)) * (1 + shift)).astype(np.float32)
    logits = (rng.standard_normal((N, C)) * 3 + shift * np.arange(C)).astype(np.float32)
    return pool, spatial, logits


def frechet(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def inception_score(logits):
    x = logits.astype(np.float64)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    scores = []
    for i in range(0, len(p), IS_SPLIT):
        part = p[i : i + IS_SPLIT]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    return float(np.mean(scores))


def sqdist(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :], 0)


def adm_precision_recall(real, fake):
    r_real = np.partition(sqdist(real, real), PR_K, axis=1)[:, PR_K]
    r_fake = np.partition(sqdist(fake, fake), PR_K, axis=1)[:, PR_K]
    dist = sqdist(real, fake)
    precision = (dist <= r_real[:, None]).any(0).mean()
    recall = (dist <= r_fake[None, :]).any(1).mean()
    return float(precision), float(recall)


def kid_full(real, fake):
    x, y = fake.astype(np.float64), real.astype(np.float64)
    d, m = x.shape[1], x.shape[0]
    k = lambda a, b: (a @ b.T / d + 1) ** 3
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/golden/metrics_small.safetensors")
    args = ap.parse_args()
    rng = np.random.default_rng(20261126)
    a = features(rng, 0.3)  # "samples"
    b = features(rng, 0.0)  # "reference"
    dc = prdc.compute_prdc(real_features=b[0], fake_features=a[0], nearest_k=DC_K)
    p, r = adm_precision_recall(b[0], a[0])
    values = {
        "fid": frechet(a[0], b[0]),
        "sfid": frechet(a[1], b[1]),
        "inception_score": inception_score(a[2]),
        "precision": p,
        "recall": r,
        "density": float(dc["density"]),
        "coverage": float(dc["coverage"]),
        "kid_full": kid_full(b[0], a[0]),
    }
    tensors = {f"a.{k}": v for k, v in zip(("pool", "spatial", "logits"), a)}
    tensors.update({f"b.{k}": v for k, v in zip(("pool", "spatial", "logits"), b)})
    tensors.update({f"ref.{k}": np.array([v], dtype=np.float64) for k, v in values.items()})
    config = {"is_split_size": IS_SPLIT, "pr_k": PR_K, "dc_k": DC_K, "a": "samples", "b": "reference"}
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_metric_golden.py, numpy {np.__version__}, scipy {scipy.__version__}, prdc",
        "config": json.dumps(config, sort_keys=True),
    }
    save_file(tensors, args.out, metadata=meta)
    print(json.dumps(values, indent=1))


if __name__ == "__main__":
    main()
