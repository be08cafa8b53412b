//! Vision-transformer pieces shared by the DINOv2 and CLIP backbones: the pre-norm encoder layer
//! (q, k, v fused into one projection at load time, layer scale folded into the projections
//! it scales), the class-token prepend and PyTorch's bicubic resize of a position grid.

use anyhow::{ensure, Result};

use super::layers::{LayerNorm, Linear};
use crate::backend::Backend;
use crate::weights::source::TensorSource;

pub use crate::backend::Activation;

/// The state_dict names of one encoder layer (full prefixes, without `.weight`/`.bias`).
pub struct LayerNames {
    pub norm1: String,
    /// A fused (3D, D) projection, when the file has one; else `q`, `k`, `v` are stacked.
    pub qkv: Option<String>,
    pub q: String,
    pub k: String,
    pub v: String,
    pub out: String,
    /// `lambda1` / `gamma` of a layer scale after the attention, if the model has one.
    pub ls1: Option<String>,
    pub norm2: String,
    pub fc1: String,
    pub fc2: String,
    pub ls2: Option<String>,
}

/// Sizes of an encoder layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerDims {
    pub d: usize,
    pub hidden: usize,
    pub heads: usize,
    pub eps: f32,
    pub act: Activation,
}

/// A pre-norm transformer layer: x += Attn(LN₁(x)); x += MLP(LN₂(x)) (each scaled by its layer
/// scale when there is one).
pub struct VitLayer<B: Backend> {
    norm1: LayerNorm<B>,
    /// q, k, v stacked: (3D, D).
    qkv: Linear<B>,
    out: Linear<B>,
    norm2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
    dims: LayerDims,
}

/// w (out, in) and b (out) of a Linear with an elementwise scale γ (out) folded in, in f64:
/// γ ⊙ (Wx + b) = (γ ⊙ W)x + γ ⊙ b.
fn fold_scale(
    src: &dyn TensorSource,
    prefix: &str,
    scale: Option<&str>,
    in_f: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let mut w = src.f32(&format!("{prefix}.weight"))?;
    let mut b = src.f32(&format!("{prefix}.bias"))?;
    if let Some(s) = scale {
        let g = src.f32(s)?;
        ensure!(
            g.len() == b.len() && w.len() == b.len() * in_f,
            "{s}: {} values for a layer of {} outputs",
            g.len(),
            b.len()
        );
        for (o, &gv) in g.iter().enumerate() {
            for v in &mut w[o * in_f..(o + 1) * in_f] {
                *v = (*v as f64 * gv as f64) as f32;
            }
            b[o] = (b[o] as f64 * gv as f64) as f32;
        }
    }
    Ok((w, b))
}

impl<B: Backend> VitLayer<B> {
    pub fn load(be: &B, src: &dyn TensorSource, n: &LayerNames, dims: LayerDims) -> Result<Self> {
        let d = dims.d;
        let mut w = Vec::with_capacity(3 * d * d);
        let mut b = Vec::with_capacity(3 * d);
        let parts = match &n.qkv {
            Some(f) => vec![f],
            None => vec![&n.q, &n.k, &n.v],
        };
        for p in parts {
            w.extend(src.f32(&format!("{p}.weight"))?);
            b.extend(src.f32(&format!("{p}.bias"))?);
        }
        let (ow, ob) = fold_scale(src, &n.out, n.ls1.as_deref(), d)?;
        let (fw, fb) = fold_scale(src, &n.fc2, n.ls2.as_deref(), dims.hidden)?;
        Ok(VitLayer {
            norm1: LayerNorm::load(be, src, &n.norm1, d, dims.eps)?,
            qkv: Linear::new(be, &w, Some(&b), d, 3 * d)?,
            out: Linear::new(be, &ow, Some(&ob), d, d)?,
            norm2: LayerNorm::load(be, src, &n.norm2, d, dims.eps)?,
            fc1: Linear::load(be, src, &n.fc1, d, dims.hidden)?,
            fc2: Linear::new(be, &fw, Some(&fb), dims.hidden, d)?,
            dims,
        })
    }

    /// x (B, T, D), in place.
    pub fn forward(&self, be: &B, x: &mut B::Buf, b: usize, t: usize) -> Result<()> {
        let (d, rows) = (self.dims.d, b * t);
        let h = self.norm1.forward(be, x, rows)?;
        let qkv = self.qkv.forward(be, &h, rows)?; // (B, T, 3D)
        let a = be.attention(&qkv, b, t, self.dims.heads, d / self.dims.heads)?; // (B, T, D)
        self.out.forward_residual(be, x, &a, rows)?;
        let h = self.norm2.forward(be, x, rows)?;
        let f = self.fc1.forward_act(be, &h, rows, self.dims.act)?; // (B, T, hidden)
        self.fc2.forward_residual(be, x, &f, rows)
    }
}

/// Prepends the class token to each sample's patch tokens: (B, T, D) → (B, 1 + T, D).
pub fn prepend_cls<B: Backend>(
    be: &B,
    patches: &B::Buf,
    cls: &[f32],
    b: usize,
    t: usize,
) -> Result<B::Buf> {
    let d = cls.len();
    let rep: Vec<f32> = (0..b).flat_map(|_| cls.iter().copied()).collect();
    be.concat_channels(&[(&be.upload(&rep)?, 1), (patches, t)], b, d)
}

/// The class-token rows (B, D) of tokens (B, T, D).
pub fn cls_rows<B: Backend>(be: &B, x: &B::Buf, b: usize, t: usize, d: usize) -> Result<B::Buf> {
    let ids: Vec<usize> = (0..b).map(|i| i * t).collect();
    be.gather_rows(x, &ids, d)
}

/// `F.interpolate(x, size=(oh, ow), mode='bicubic', align_corners=False)` of x (C, H, W) on the
/// host, in f32 with PyTorch's CPU arithmetic: source index (i + 0.5)·s − 0.5 with s = in/out, or
/// s = 1/scale_factor when `scale_factor` (per axis, as `F.interpolate(scale_factor=…)` takes it)
/// is given; Keys cubic with A = −0.75, edge indices clamped, rows weighted after the columns.
pub fn bicubic_resize(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    scale_factor: Option<(f64, f64)>,
) -> Vec<f32> {
    const A: f32 = -0.75;
    let axis = |len_in: usize, len_out: usize, sf: Option<f64>| -> Vec<([usize; 4], [f32; 4])> {
        let scale = match sf {
            Some(f) => (1.0 / f) as f32,
            None => len_in as f32 / len_out as f32,
        };
        (0..len_out)
            .map(|i| {
                let real = scale * (i as f32 + 0.5) - 0.5;
                let lo = real.floor();
                let t = real - lo;
                let cc1 = |x: f32| ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
                let cc2 = |x: f32| ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A;
                let wts = [cc2(t + 1.0), cc1(t), cc1(1.0 - t), cc2(2.0 - t)];
                let idx = std::array::from_fn(|k| {
                    (lo as i64 - 1 + k as i64).clamp(0, len_in as i64 - 1) as usize
                });
                (idx, wts)
            })
            .collect()
    };
    let (ys, xs) = (
        axis(h, oh, scale_factor.map(|s| s.0)),
        axis(w, ow, scale_factor.map(|s| s.1)),
    );
    let mut out = Vec::with_capacity(c * oh * ow);
    for ch in 0..c {
        let plane = &x[ch * h * w..(ch + 1) * h * w];
        for (yi, yw) in &ys {
            for (xi, xw) in &xs {
                let row = |r: usize| {
                    let src = &plane[r * w..(r + 1) * w];
                    let mut s = src[xi[0]] * xw[0];
                    for k in 1..4 {
                        s += src[xi[k]] * xw[k];
                    }
                    s
                };
                let mut v = row(yi[0]) * yw[0];
                for k in 1..4 {
                    v += row(yi[k]) * yw[k];
                }
                out.push(v);
            }
        }
    }
    out
}
