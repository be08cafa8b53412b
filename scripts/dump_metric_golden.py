#!/usr/bin/env python3
"""Writes tests/golden/metrics_small.safetensors: two small feature sets and every metric on them,
computed with the reference tools (scipy's sqrtm route for FID/sFID as the ADM evaluator does, prdc
for density/coverage) and with numpy transcriptions of the ADM evaluator's IS and precision/recall
formulas and of the unbiased polynomial-kernel MMD (KID) over the full sets.

    python scripts/dump_metric_golden.py [--out tests/golden/metrics_small.safetensors]
    python scripts/dump_metric_golden.py --diversity tests/golden/diversity_small.safetensors

--diversity: a labelled embedding set and its cosine-distance diversity by a direct double loop in
f64 (intra-class: per-class pair means, their mean and population std over classes with >= 2
samples; inter-class and mixed: mean and population std over pairs), and Vendi scores from
`vendi_score.vendi.score_X` (q = 1), over all rows, per class, and for a set with fewer rows than
dimensions. Needs vendi_score.

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
    ap.add_argument("--large", default=None, help="also write the 5000 × 2048 case here")
    ap.add_argument("--diversity", default=None, help="write the diversity/Vendi case here (only)")
    ap.add_argument("--correlation", default=None, help="write the metric-agreement case here (only)")
    args = ap.parse_args()
    if args.correlation:
        correlation_case(args.correlation)
        return
    if args.large:
        large_case(args.large)
    if args.diversity:
        diversity_case(args.diversity)
        return
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


# ---- the large case: 5000 × 2048 features from a counter-based formula, so only the reference
# numbers are committed. Both this script and tests/numerics/metric_golden.rs generate the features:
#   u(seed, i, e) = (philox4x32_10(ctr=(e // 4, 0, i, 0), key=(seed, 0))[e % 4] + 0.5) · 2⁻³²
#   samples   a[i, e] = fl32(u · (0.8 + 0.2 · u)), u = u(1, i, e)   (i < 5000, e < 2048; f64 ops)
#   reference b[i, e] = fl32(u(2, i, e))
from dump_golden import philox4x32_10  # noqa: E402  (scripts/ is on sys.path when run as a script)


def uniforms(seed, n, d):
    i = np.arange(n, dtype=np.uint64)[:, None]
    e = np.arange(d, dtype=np.uint64)[None, :]
    block = (e // np.uint64(4)) + np.zeros_like(i)
    lanes = philox4x32_10([block, np.zeros_like(block), i + np.zeros_like(e), np.zeros_like(block)], seed, 0)
    x = np.choose((e % np.uint64(4)).astype(np.int64) + np.zeros((n, 1), dtype=np.int64), lanes)
    return (x.astype(np.float64) + 0.5) * 2.0**-32


def large_case(out):
    n, d = 5000, 2048
    u = uniforms(1, n, d)
    a = (u * (0.8 + 0.2 * u)).astype(np.float32)
    b = uniforms(2, n, d).astype(np.float32)
    dc = prdc.compute_prdc(real_features=b, fake_features=a, nearest_k=DC_K)
    p, r = adm_precision_recall(b, a)
    values = {"fid": frechet(a, b), "precision": p, "recall": r, "density": float(dc["density"]), "coverage": float(dc["coverage"])}
    tensors = {f"ref.{k}": np.array([v], dtype=np.float64) for k, v in values.items()}
    tensors["check.a_first_row"] = a[0, :16].copy()
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_metric_golden.py --large, numpy {np.__version__}, scipy {scipy.__version__}, prdc",
        "config": json.dumps({"n": n, "d": d, "pr_k": PR_K, "dc_k": DC_K, "a": "fl32(u*(0.8+0.2*u)), u=u(1,i,e)", "b": "fl32(u(2,i,e))"}),
    }
    save_file(tensors, out, metadata=meta)
    print(json.dumps(values, indent=1))


def pair_stats(d):
    d = np.asarray(d, dtype=np.float64)
    return float(d.mean()), float(d.std())


def diversity_case(out):
    from vendi_score import vendi

    rng = np.random.default_rng(7)
    d = 24
    # Six classes of unequal size around their own centres, plus a one-sample class (9).
    counts = {0: 12, 1: 2, 2: 9, 3: 15, 4: 7, 5: 15, 9: 1}
    labels = np.concatenate([np.full(c, k, dtype=np.int64) for k, c in counts.items()])
    rng.shuffle(labels)
    centres = {k: rng.standard_normal(d) * 2 for k in counts}
    emb = np.stack([centres[k] + rng.standard_normal(d) for k in labels]).astype(np.float32)
    x = emb.astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    n = len(x)
    mixed, inter, per_class = [], [], {}
    for i in range(n):
        for j in range(i + 1, n):
            dist = 1.0 - float(x[i] @ x[j])
            mixed.append(dist)
            if labels[i] == labels[j]:
                per_class.setdefault(int(labels[i]), []).append(dist)
            else:
                inter.append(dist)
    class_means = np.array([np.mean(v) for _, v in sorted(per_class.items())])
    v_class = [vendi.score_X(emb[labels == k].astype(np.float64), q=1) for k in sorted(counts) if counts[k] >= 2]
    small = emb[:8]  # fewer rows than dimensions: the kernel side
    values = {
        "intra_mean": float(class_means.mean()),
        "intra_std": float(class_means.std()),
        "inter_mean": pair_stats(inter)[0],
        "inter_std": pair_stats(inter)[1],
        "mixed_mean": pair_stats(mixed)[0],
        "mixed_std": pair_stats(mixed)[1],
        "vendi_mixed": float(vendi.score_X(emb.astype(np.float64), q=1)),
        "vendi_intra_mean": float(np.mean(v_class)),
        "vendi_small": float(vendi.score_X(small.astype(np.float64), q=1)),
    }
    tensors = {"embedding": emb, "labels": labels}
    tensors.update({f"ref.{k}": np.array([v], dtype=np.float64) for k, v in values.items()})
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_metric_golden.py --diversity, numpy {np.__version__}, vendi_score",
        "config": json.dumps({"n": int(n), "d": d, "class_counts": {str(k): v for k, v in counts.items()}, "vendi_small_rows": 8}),
    }
    save_file(tensors, out, metadata=meta)
    print(json.dumps(values, indent=1))


def correlation_case(out):
    """A table of 8 "metrics" over 14 run configs with ties (rounded columns, a repeated row
    value, a reversed column) and every pair's scipy pearsonr, spearmanr and kendalltau (tau-b)."""
    from scipy import stats

    rng = np.random.default_rng(11)
    n = 14
    base = rng.standard_normal(n)
    cols = [
        base,
        base + 0.3 * rng.standard_normal(n),
        np.round(base * 2) / 2,                      # ties
        -base ** 3,                                  # monotone decreasing
        rng.standard_normal(n),                      # unrelated
        np.round(rng.standard_normal(n)),            # many ties
        np.exp(base),                                # monotone, nonlinear
        np.where(base > 0, 1.0, 0.0) + 0.1 * np.round(base),  # ties in both
    ]
    table = np.stack(cols, axis=1).astype(np.float64)  # (n, m)
    m = table.shape[1]
    out_t = {"table": table}
    for name, fn in [("pearson", lambda a, b: stats.pearsonr(a, b)[0]),
                     ("spearman", lambda a, b: stats.spearmanr(a, b)[0]),
                     ("kendall", lambda a, b: stats.kendalltau(a, b)[0])]:
        mat = np.array([[float(fn(table[:, i], table[:, j])) for j in range(m)] for i in range(m)])
        out_t[name] = mat
    meta = {
        "format": "sitdiv-golden",
        "version": "1",
        "producer": f"scripts/dump_metric_golden.py --correlation, numpy {np.__version__}, scipy {scipy.__version__}",
        "config": json.dumps({"rows": n, "columns": m, "kendall": "tau-b (scipy default)"}),
    }
    save_file(out_t, out, metadata=meta)
    print({k: v.shape for k, v in out_t.items()})


if __name__ == "__main__":
    main()
