//! Layers shared by the networks: `nn.Linear`, `nn.LayerNorm`, and a convolution with its
//! BatchNorm folded in.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};

use crate::backend::{Activation, Backend, Nchw, Window};
use crate::weights::source::TensorSource;
use crate::weights::Expected;

/// Intermediate tensors by upstream module name (the golden files' `tap.*`), when asked for.
pub type Taps = BTreeMap<String, Vec<f32>>;

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
        Self::load_as(be, f, prefix, (in_f, out_f), false)
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

    /// `{prefix}.weight` and `{prefix}.bias` of a conditioning product, which a backend may keep
    /// nearer fp32 than its other products (`Backend::upload_precise_weight`).
    pub fn load_precise(
        be: &B,
        f: &dyn TensorSource,
        prefix: &str,
        in_f: usize,
        out_f: usize,
    ) -> Result<Self> {
        Self::load_as(be, f, prefix, (in_f, out_f), true)
    }

    fn load_as(
        be: &B,
        f: &dyn TensorSource,
        prefix: &str,
        (in_f, out_f): (usize, usize),
        precise: bool,
    ) -> Result<Self> {
        let w = f.f32(&format!("{prefix}.weight"))?;
        let b = f.f32(&format!("{prefix}.bias"))?;
        Self::from_host(be, &w, Some(&b), (in_f, out_f), precise)
    }

    /// From host values (fused or folded at load time).
    pub fn new(be: &B, w: &[f32], b: Option<&[f32]>, in_f: usize, out_f: usize) -> Result<Self> {
        Self::from_host(be, w, b, (in_f, out_f), false)
    }

    fn from_host(
        be: &B,
        w: &[f32],
        b: Option<&[f32]>,
        (in_f, out_f): (usize, usize),
        precise: bool,
    ) -> Result<Self> {
        ensure!(
            w.len() == in_f * out_f && b.is_none_or(|b| b.len() == out_f),
            "linear layer: {} weights / {:?} biases for ({out_f}, {in_f})",
            w.len(),
            b.map(<[f32]>::len)
        );
        Ok(Linear {
            w: if precise {
                be.upload_precise_weight(w, in_f)?
            } else {
                be.upload_weight(w)?
            },
            b: b.map(|b| be.upload(b)).transpose()?,
            in_f,
            out_f,
        })
    }

    /// (M, in) → (M, out)
    pub fn forward(&self, be: &B, x: &B::Buf, m: usize) -> Result<B::Buf> {
        be.linear(x, &self.w, self.b.as_ref(), m, self.in_f, self.out_f)
    }

    /// tanh-GELU of `forward`, whose result feeds only another product.
    pub fn forward_gelu(&self, be: &B, x: &B::Buf, m: usize) -> Result<B::Buf> {
        be.linear_gelu(x, &self.w, self.b.as_ref(), m, self.in_f, self.out_f)
    }

    /// `act(forward(x))`.
    pub fn forward_act(&self, be: &B, x: &B::Buf, m: usize, act: Activation) -> Result<B::Buf> {
        be.linear_act(x, &self.w, self.b.as_ref(), m, self.in_f, self.out_f, act)
    }

    /// `y += forward(x)`, y (M, out).
    pub fn forward_residual(&self, be: &B, y: &mut B::Buf, x: &B::Buf, m: usize) -> Result<()> {
        be.linear_residual(y, x, &self.w, self.b.as_ref(), m, self.in_f, self.out_f)
    }

    /// `forward` whose result feeds only `attention`.
    pub fn forward_operand(&self, be: &B, x: &B::Buf, m: usize) -> Result<B::Buf> {
        be.linear_operand(x, &self.w, self.b.as_ref(), m, self.in_f, self.out_f)
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

/// `nn.Conv2d(bias=False)` → `nn.BatchNorm2d` (eval) → optional ReLU, with the batch norm folded
/// into the convolution at load time in f64: w' = w·γ/√(σ²+ε), b' = β − μ·γ/√(σ²+ε).
pub struct ConvBn<B: Backend> {
    w: B::Buf,
    b: B::Buf,
    co: usize,
    win: Window,
    relu: bool,
}

impl<B: Backend> ConvBn<B> {
    /// The tensors of conv `{conv}.weight` and batch norm `{bn}.*`, with their shapes.
    pub fn expected(
        (conv, bn): (&str, &str),
        (ci, co): (usize, usize),
        win: Window,
    ) -> Vec<Expected> {
        let mut e = vec![Expected::new(
            format!("{conv}.weight"),
            &[co, ci, win.kh, win.kw],
        )];
        for t in ["weight", "bias", "running_mean", "running_var"] {
            e.push(Expected::new(format!("{bn}.{t}"), &[co]));
        }
        e
    }

    pub fn load(
        be: &B,
        src: &dyn TensorSource,
        (conv, bn): (&str, &str),
        (ci, co): (usize, usize),
        win: Window,
        eps: f64,
        relu: bool,
    ) -> Result<Self> {
        let w = src.f32(&format!("{conv}.weight"))?;
        let t = |name: &str| src.f32(&format!("{bn}.{name}"));
        let (gamma, beta, mean, var) = (
            t("weight")?,
            t("bias")?,
            t("running_mean")?,
            t("running_var")?,
        );
        let per_out = ci * win.kh * win.kw;
        ensure!(
            w.len() == co * per_out && [&gamma, &beta, &mean, &var].iter().all(|v| v.len() == co),
            "{conv}: tensor sizes differ from ({co}, {ci}, {}, {})",
            win.kh,
            win.kw
        );
        let mut wf = Vec::with_capacity(w.len());
        let mut bf = Vec::with_capacity(co);
        for o in 0..co {
            let scale = gamma[o] as f64 / (var[o] as f64 + eps).sqrt();
            wf.extend(
                w[o * per_out..(o + 1) * per_out]
                    .iter()
                    .map(|&v| (v as f64 * scale) as f32),
            );
            bf.push((beta[o] as f64 - mean[o] as f64 * scale) as f32);
        }
        Ok(ConvBn {
            w: be.upload_weight(&wf)?,
            b: be.upload(&bf)?,
            co,
            win,
            relu,
        })
    }

    /// A layer with empty buffers, for walking a network's structure without weights.
    pub fn shape_only(co: usize, win: Window, relu: bool) -> Self
    where
        B: Backend<Buf = Vec<f32>>,
    {
        ConvBn {
            w: Vec::new(),
            b: Vec::new(),
            co,
            win,
            relu,
        }
    }

    /// (N, Ci, H, W) → (N, Co, H', W')
    pub fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<(B::Buf, Nchw)> {
        let (h, w) = self
            .win
            .output(d.h, d.w)
            .ok_or_else(|| anyhow::anyhow!("window {:?} does not fit {d:?}", self.win))?;
        let y = be.conv2d(x, d, &self.w, &self.b, self.co, self.win, self.relu)?;
        Ok((
            y,
            Nchw {
                c: self.co,
                h,
                w,
                ..d
            },
        ))
    }
}
