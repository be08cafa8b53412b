//! Streaming mean and covariance of feature vectors in f64, mergeable across shards
//! (Chan, Golub & LeVeque's pairwise update), so statistics of many shards equal one pass.

use anyhow::{ensure, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, Par};

/// n, mean and the centred scatter matrix Σ (x − μ)(x − μ)ᵀ of the features seen so far.
#[derive(Debug, Clone)]
pub struct FeatureStats {
    pub n: usize,
    pub mean: Vec<f64>,
    /// (d, d), row-major.
    pub scatter: Mat<f64>,
}

/// The mean of finite rows x (m, d) in f64: rows summed in order, then one division. Checks the
/// width and refuses NaN and infinities.
pub fn row_mean(x: &[f32], d: usize) -> Result<Vec<f64>> {
    ensure!(
        d > 0 && x.len().is_multiple_of(d),
        "features: {} values are not rows of width {d}",
        x.len()
    );
    ensure!(
        x.iter().all(|v| v.is_finite()),
        "features contain NaN or infinite values"
    );
    let m = x.len() / d;
    let mut mean = vec![0f64; d];
    for row in x.chunks(d) {
        for (a, &v) in mean.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    mean.iter_mut().for_each(|a| *a /= m.max(1) as f64);
    Ok(mean)
}

impl FeatureStats {
    pub fn new(d: usize) -> Self {
        FeatureStats {
            n: 0,
            mean: vec![0.0; d],
            scatter: Mat::zeros(d, d),
        }
    }

    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Statistics of a batch of rows x (m, d), f32 features accumulated in f64.
    pub fn from_batch(x: &[f32], d: usize) -> Result<Self> {
        let mean = row_mean(x, d)?;
        let m = x.len() / d;
        let centred = Mat::<f64>::from_fn(m, d, |i, j| x[i * d + j] as f64 - mean[j]);
        let mut scatter = Mat::<f64>::zeros(d, d);
        matmul(
            scatter.as_mut(),
            Accum::Replace,
            centred.transpose(),
            centred.as_ref(),
            1.0,
            Par::Seq,
        );
        Ok(FeatureStats {
            n: m,
            mean,
            scatter,
        })
    }

    /// Adds a batch of rows.
    pub fn update(&mut self, x: &[f32]) -> Result<()> {
        let b = Self::from_batch(x, self.dim())?;
        self.merge(&b)
    }

    /// Merges another shard's statistics into these.
    pub fn merge(&mut self, o: &FeatureStats) -> Result<()> {
        ensure!(
            o.dim() == self.dim(),
            "merging statistics of width {} into width {}",
            o.dim(),
            self.dim()
        );
        if o.n == 0 {
            return Ok(());
        }
        if self.n == 0 {
            *self = o.clone();
            return Ok(());
        }
        let (na, nb) = (self.n as f64, o.n as f64);
        let n = na + nb;
        let delta: Vec<f64> = o.mean.iter().zip(&self.mean).map(|(b, a)| b - a).collect();
        let w = na * nb / n;
        let d = self.dim();
        for i in 0..d {
            for j in 0..d {
                self.scatter[(i, j)] += o.scatter[(i, j)] + delta[i] * delta[j] * w;
            }
        }
        for (m, dl) in self.mean.iter_mut().zip(&delta) {
            *m += dl * nb / n;
        }
        self.n += o.n;
        Ok(())
    }

    /// The unbiased covariance (`np.cov(x, rowvar=False)`, ddof 1).
    pub fn covariance(&self) -> Result<Mat<f64>> {
        ensure!(
            self.n >= 2,
            "a covariance needs at least 2 samples, got {}",
            self.n
        );
        let s = 1.0 / (self.n - 1) as f64;
        Ok(Mat::from_fn(self.dim(), self.dim(), |i, j| {
            self.scatter[(i, j)] * s
        }))
    }
}
