//! Diversity of an embedding set: mean and spread of pairwise cosine distances within classes,
//! between classes and over all pairs, and the Vendi score.
//!
//! Distance d_ij = 1 − cos(x_i, x_j) over unordered pairs i < j, all in f64: unit rows, cosines
//! from f64 GEMM blocks (so 50 000 × 50 000 pairs run in bounded memory; f32 cosines would put
//! 1e-7 absolute errors into distances whose spread across classes is ~1e-2), sums of d and d²
//! reduced in a fixed order, so the bits do not depend on the thread count.
//!
//! - intra-class: per class c with at least 2 samples, the mean over its pairs; reported as the
//!   unweighted mean and the population std of those per-class means. Classes with one sample
//!   are listed and left out.
//! - inter-class: mean and population std over pairs with y_i ≠ y_j.
//! - mixed: mean and population std over all pairs (what a label-blind study reports).
//!
//! Vendi (Friedman & Dieng 2023, q = 1, cosine kernel): VS = exp(−Σ λ log λ) over the positive
//! eigenvalues λ of K/n, K = X̂X̂ᵀ; computed from the d × d dual X̂ᵀX̂/n when n > d (same nonzero
//! eigenvalues), in f64, as `vendi_score.score_X` does.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use rayon::prelude::*;
use serde::Serialize;

use super::fid::fixed_par;

/// Rows per block of the Gram matrix (a block is BLOCK × N f64).
const BLOCK: usize = 256;

/// Mean and population std of a set of values, from f64 sums.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    n: f64,
    s1: f64,
    s2: f64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.n += o.n;
        self.s1 += o.s1;
        self.s2 += o.s2;
    }
    fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| self.s1 / self.n)
    }
    fn std(&self) -> Option<f64> {
        let m = self.mean()?;
        Some((self.s2 / self.n - m * m).max(0.0).sqrt())
    }
}

/// Pairwise cosine-distance diversity. `None` where a value is undefined (no intra-class pair,
/// or a single class): never NaN.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diversity {
    pub intra_mean: Option<f64>,
    pub intra_std: Option<f64>,
    pub inter_mean: Option<f64>,
    pub inter_std: Option<f64>,
    pub mixed_mean: Option<f64>,
    pub mixed_std: Option<f64>,
    /// Classes that entered the intra-class values (at least 2 samples).
    pub classes_used: usize,
    /// Classes with a single sample, left out of the intra-class values.
    pub classes_excluded: Vec<i64>,
    pub num_samples: usize,
    pub num_pairs: u64,
}

fn check_rows(x: &[f32], d: usize) -> Result<usize> {
    ensure!(
        d > 0 && x.len().is_multiple_of(d),
        "embedding: {} values are not rows of width {d}",
        x.len()
    );
    ensure!(
        x.iter().all(|v| v.is_finite()),
        "embedding: contains NaN or infinite values"
    );
    let n = x.len() / d;
    for (i, r) in x.chunks(d).enumerate() {
        ensure!(
            r.iter().any(|&v| v != 0.0),
            "embedding: row {i} is all zeros, so its cosine distance is undefined"
        );
    }
    Ok(n)
}

/// Rows scaled to unit length, in f64.
fn normalised(x: &[f32], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|r| {
            let norm = r.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
            r.iter().map(move |&v| v as f64 / norm)
        })
        .collect()
}

/// Cosine-distance diversity of embeddings x (N, d) with optional class labels (N).
pub fn cosine_diversity(x: &[f32], d: usize, labels: Option<&[i64]>) -> Result<Diversity> {
    let n = check_rows(x, d)?;
    let xn = normalised(x, d);
    pair_diversity(n, labels, BLOCK, |r0, r1| {
        // (rows, m) = X̂[r0..r1] · X̂[r0..]ᵀ, single-threaded inside (blocks run in parallel).
        let m = n - r0;
        let a = MatRef::from_row_major_slice(&xn[r0 * d..r1 * d], r1 - r0, d);
        let b = MatRef::from_row_major_slice(&xn[r0 * d..], m, d);
        let mut dots = Mat::<f64>::zeros(r1 - r0, m);
        matmul(
            dots.as_mut(),
            Accum::Replace,
            a,
            b.transpose(),
            1.0,
            Par::Seq,
        );
        (0..r1 - r0)
            .flat_map(|i| (0..m).map(move |j| (i, j)))
            .map(|(i, j)| 1.0 - dots[(i, j)])
            .collect()
    })
}

/// Squared-Euclidean diversity of feature rows x (N, d): the LPIPS distance when the rows are
/// LPIPS's scaled, normalised feature maps (models/lpips.rs). Pairs in f64, rows in parallel.
pub fn squared_l2_diversity(x: &[f32], d: usize, labels: Option<&[i64]>) -> Result<Diversity> {
    ensure!(
        d > 0 && x.len().is_multiple_of(d),
        "features: {} values are not rows of width {d}",
        x.len()
    );
    ensure!(
        x.iter().all(|v| v.is_finite()),
        "features: contain NaN or infinite values"
    );
    let n = x.len() / d;
    pair_diversity(n, labels, 4, |r0, r1| {
        let m = n - r0;
        let rows: Vec<Vec<f64>> = (r0..r1)
            .into_par_iter()
            .map(|i| {
                let a = &x[i * d..(i + 1) * d];
                (r0..n)
                    .map(|j| {
                        let b = &x[j * d..(j + 1) * d];
                        a.iter()
                            .zip(b)
                            .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                            .sum::<f64>()
                    })
                    .collect()
            })
            .collect();
        let mut out = Vec::with_capacity((r1 - r0) * m);
        for r in rows {
            out.extend(r);
        }
        out
    })
}

/// The distinct labels, sorted, and the class index of each row (one class 0 without labels).
fn class_index(labels: Option<&[i64]>, n: usize) -> (Vec<i64>, Vec<usize>) {
    let classes: Vec<i64> = match labels {
        Some(l) => {
            let mut c = l.to_vec();
            c.sort_unstable();
            c.dedup();
            c
        }
        None => vec![0],
    };
    let index: BTreeMap<i64, usize> = classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let cls: Vec<usize> = match labels {
        Some(l) => l.iter().map(|v| index[v]).collect(),
        None => vec![0; n],
    };
    (classes, cls)
}

/// Sums over the pairs (i, j > i) of rows r0..r1, from their distances `dist` to rows r0..N
/// (row-major): over all pairs, and per class over same-class pairs.
fn block_sums(
    dist: &[f64],
    (r0, r1): (usize, usize),
    cls: &[usize],
    classes: usize,
) -> (Sums, Vec<Sums>) {
    let n = cls.len();
    let m = n - r0;
    let mut mixed = Sums::default();
    let mut per_class = vec![Sums::default(); classes];
    for i in r0..r1 {
        let ci = cls[i];
        let mut s = Sums::default();
        let mut sc = Sums::default();
        for j in i + 1..n {
            let v = dist[(i - r0) * m + j - r0];
            s.n += 1.0;
            s.s1 += v;
            s.s2 += v * v;
            if cls[j] == ci {
                sc.n += 1.0;
                sc.s1 += v;
                sc.s2 += v * v;
            }
        }
        mixed.add(&s);
        per_class[ci].add(&sc);
    }
    (mixed, per_class)
}

/// Intra-, inter-class and mixed statistics of a pair distance given in row blocks:
/// `block(r0, r1)` returns the distances of rows r0..r1 to rows r0..N, row-major. Blocks run in
/// parallel and are reduced in order.
fn pair_diversity(
    n: usize,
    labels: Option<&[i64]>,
    block_rows: usize,
    block: impl Fn(usize, usize) -> Vec<f64> + Sync,
) -> Result<Diversity> {
    ensure!(n >= 2, "diversity needs at least 2 samples, got {n}");
    if let Some(l) = labels {
        ensure!(l.len() == n, "{} labels for {n} embedding rows", l.len());
    }
    let (classes, cls) = class_index(labels, n);
    let blocks: Vec<(Sums, Vec<Sums>)> = (0..n.div_ceil(block_rows))
        .into_par_iter()
        .map(|b| {
            let (r0, r1) = (b * block_rows, ((b + 1) * block_rows).min(n));
            block_sums(&block(r0, r1), (r0, r1), &cls, classes.len())
        })
        .collect();
    let mut mixed = Sums::default();
    let mut per_class = vec![Sums::default(); classes.len()];
    for (m, pc) in &blocks {
        mixed.add(m);
        for (a, b) in per_class.iter_mut().zip(pc) {
            a.add(b);
        }
    }
    Ok(summarise(n, labels, &classes, mixed, &per_class))
}

/// The statistics of `n` rows from the pair sums over all pairs (`mixed`) and per class.
fn summarise(
    n: usize,
    labels: Option<&[i64]>,
    classes: &[i64],
    mixed: Sums,
    per_class: &[Sums],
) -> Diversity {
    let mut same = Sums::default();
    for s in per_class {
        same.add(s);
    }
    let inter = Sums {
        n: mixed.n - same.n,
        s1: mixed.s1 - same.s1,
        s2: mixed.s2 - same.s2,
    };
    let class_means: Vec<f64> = per_class.iter().filter_map(Sums::mean).collect();
    let mut over_classes = Sums::default();
    for m in &class_means {
        over_classes.add(&Sums {
            n: 1.0,
            s1: *m,
            s2: m * m,
        });
    }
    let excluded = classes
        .iter()
        .zip(per_class)
        .filter(|(_, s)| s.n == 0.0)
        .map(|(&c, _)| c)
        .collect();
    Diversity {
        intra_mean: labels.and(over_classes.mean()),
        intra_std: labels.and(over_classes.std()),
        inter_mean: labels.and(inter.mean()),
        inter_std: labels.and(inter.std()),
        mixed_mean: mixed.mean(),
        mixed_std: mixed.std(),
        classes_used: if labels.is_some() {
            class_means.len()
        } else {
            0
        },
        classes_excluded: if labels.is_some() {
            excluded
        } else {
            Vec::new()
        },
        num_samples: n,
        num_pairs: mixed.n as u64,
    }
}

/// The Vendi score (q = 1, cosine kernel) of embeddings x (N, d).
pub fn vendi(x: &[f32], d: usize) -> Result<f64> {
    let n = check_rows(x, d)?;
    ensure!(n >= 1, "the Vendi score needs at least 1 sample");
    let xn = normalised(x, d);
    let x = MatRef::from_row_major_slice(&xn, n, d);
    // The smaller of K/n = X̂X̂ᵀ/n and its dual X̂ᵀX̂/n, with a fixed split of the work (see fid.rs).
    let m = n.min(d);
    let mut s = Mat::<f64>::zeros(m, m);
    let (a, b) = if n > d {
        (x.transpose(), x)
    } else {
        (x, x.transpose())
    };
    matmul(
        s.as_mut(),
        Accum::Replace,
        a,
        b,
        1.0 / n as f64,
        fixed_par(),
    );
    faer::set_global_parallelism(fixed_par());
    let eig = match s.self_adjoint_eigenvalues(Side::Lower) {
        Ok(e) => e,
        Err(e) => bail!("Vendi score: eigendecomposition failed ({e:?})"),
    };
    let entropy: f64 = eig.iter().filter(|&&l| l > 0.0).map(|&l| -l * l.ln()).sum();
    Ok(entropy.exp())
}

/// Vendi over all samples and the unweighted mean over classes with at least 2 samples.
pub fn vendi_by_class(x: &[f32], d: usize, labels: &[i64]) -> Result<(f64, Option<f64>)> {
    let n = check_rows(x, d)?;
    ensure!(
        labels.len() == n,
        "{} labels for {n} embedding rows",
        labels.len()
    );
    let mixed = vendi(x, d)?;
    let mut rows: BTreeMap<i64, Vec<f32>> = BTreeMap::new();
    for (r, &c) in x.chunks(d).zip(labels) {
        rows.entry(c).or_default().extend_from_slice(r);
    }
    let per_class = rows
        .values()
        .filter(|v| v.len() >= 2 * d)
        .map(|v| vendi(v, d))
        .collect::<Result<Vec<f64>>>()?;
    let mean =
        (!per_class.is_empty()).then(|| per_class.iter().sum::<f64>() / per_class.len() as f64);
    Ok((mixed, mean))
}
