//! Layers shared by the networks: `nn.Linear` and `nn.LayerNorm`.

use anyhow::Result;

use super::synthetic::TensorSource;
use crate::backend::Backend;

/// `nn.Linear` weights: w (out, in), b (out) when the layer has a bias.
pub struct Linear<B: Backend> {
    w: B::Buf,
    b: Option<B::Buf>,
    pub in_f: usize,
    pub out_f: usize,
}

impl<B: Backend> Linear<B> {
    /// `{prefix}.weight` and `{prefix}.bias`.
    pub fn load(
        be: &B,
        f: &dyn TensorSource,
        prefix: &str,
        in_f: usize,
        out_f: usize,
    ) -> Result<Self> {
        let b = f.f32(&format!("{prefix}.bias"))?;
        Self::new(
            be,
            &f.f32(&format!("{prefix}.weight"))?,
            Some(&b),
            in_f,
            out_f,
        )
    }

    /// `{prefix}.weight` only (`bias=False`).
    pub fn load_no_bias(
        be: &B,
        f: &dyn TensorSource,
        prefix: &str,
        in_f: usize,
        out_f: usize,
    ) -> Result<Self> {
        Self::new(be, &f.f32(&format!("{prefix}.weight"))?, None, in_f, out_f)
    }

    /// From host values (fused or folded at load time).
    pub fn new(be: &B, w: &[f32], b: Option<&[f32]>, in_f: usize, out_f: usize) -> Result<Self> {
        anyhow::ensure!(
            w.len() == in_f * out_f && b.is_none_or(|b| b.len() == out_f),
            "linear layer: {} weights / {:?} biases for ({out_f}, {in_f})",
            w.len(),
            b.map(<[f32]>::len)
        );
        Ok(Linear {
            w: be.upload(w)?,
            b: b.map(|b| be.upload(b)).transpose()?,
            in_f,
            out_f,
        })
    }

    /// (M, in) → (M, out)
    pub fn forward(&self, be: &B, x: &B::Buf, m: usize) -> Result<B::Buf> {
        be.linear(x, &self.w, self.b.as_ref(), m, self.in_f, self.out_f)
    }
}

/// `nn.LayerNorm(d, eps)` with its affine weight and bias.
pub struct LayerNorm<B: Backend> {
    gamma: B::Buf,
    beta: B::Buf,
    d: usize,
    eps: f32,
}

impl<B: Backend> LayerNorm<B> {
    pub fn load(be: &B, f: &dyn TensorSource, prefix: &str, d: usize, eps: f32) -> Result<Self> {
        Ok(LayerNorm {
            gamma: be.upload(&f.f32(&format!("{prefix}.weight"))?)?,
            beta: be.upload(&f.f32(&format!("{prefix}.bias"))?)?,
            d,
            eps,
        })
    }

    /// (rows, d) → (rows, d)
    pub fn forward(&self, be: &B, x: &B::Buf, rows: usize) -> Result<B::Buf> {
        be.layer_norm_affine(x, &self.gamma, &self.beta, rows, self.d, self.eps)
    }
}
