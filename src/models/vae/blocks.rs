//! The autoencoder's building blocks, one struct per diffusers module, loaded through [`Names`].

use anyhow::Result;

use super::names::Names;
use crate::backend::{Backend, Nchw, Window};

const GN_EPS: f32 = 1e-6;

/// `nn.Conv2d` with bias: stride 1 and padding k / 2, or the encoder's downsampler.
pub struct Conv2d<B: Backend> {
    w: B::Buf,
    b: B::Buf,
    ci: usize,
    co: usize,
    win: Window,
}

impl<B: Backend> Conv2d<B> {
    pub(super) fn load(
        be: &B,
        names: &Names,
        key: &str,
        ci: usize,
        co: usize,
        k: usize,
    ) -> Result<Self> {
        Ok(Conv2d {
            w: be.upload_weight(&names.get(&format!("{key}.weight"), &[co, ci, k, k])?)?,
            b: be.upload(&names.get(&format!("{key}.bias"), &[co])?)?,
            ci,
            co,
            win: Window::square(k, 1, k / 2),
        })
    }

    /// `Downsample2D` of the encoder: `F.pad(x, (0, 1, 0, 1))` then a 3×3 stride-2 convolution.
    /// Padding one side only is the same sum as a 4×4 kernel, its first row and column zero,
    /// with padding 1 on every side: output i reads inputs 2i..2i+2 either way.
    pub(super) fn load_downsample(be: &B, names: &Names, key: &str, c: usize) -> Result<Self> {
        let w3 = names.get(&format!("{key}.weight"), &[c, c, 3, 3])?;
        let mut w4 = vec![0.0f32; c * c * 16];
        for (k, tap) in w3.chunks_exact(9).enumerate() {
            for (r, row) in tap.chunks_exact(3).enumerate() {
                let at = k * 16 + (r + 1) * 4 + 1;
                w4[at..at + 3].copy_from_slice(row);
            }
        }
        Ok(Conv2d {
            w: be.upload_weight(&w4)?,
            b: be.upload(&names.get(&format!("{key}.bias"), &[c])?)?,
            ci: c,
            co: c,
            win: Window::square(4, 2, 1),
        })
    }

    /// (N, Ci, H, W) → (N, Co, H, W), or (N, Co, H/2, W/2) for a downsampler
    pub(super) fn forward(
        &self,
        be: &B,
        x: &B::Buf,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<B::Buf> {
        let dims = Nchw {
            n,
            c: self.ci,
            h,
            w,
        };
        be.conv2d(x, dims, &self.w, &self.b, self.co, self.win, false)
    }
}

/// `nn.GroupNorm` (affine).
pub struct GroupNorm<B: Backend> {
    gamma: B::Buf,
    beta: B::Buf,
    c: usize,
    groups: usize,
}

impl<B: Backend> GroupNorm<B> {
    pub(super) fn load(be: &B, names: &Names, key: &str, c: usize, groups: usize) -> Result<Self> {
        Ok(GroupNorm {
            gamma: be.upload(&names.get(&format!("{key}.weight"), &[c])?)?,
            beta: be.upload(&names.get(&format!("{key}.bias"), &[c])?)?,
            c,
            groups,
        })
    }

    pub(super) fn forward(
        &self,
        be: &B,
        x: &B::Buf,
        n: usize,
        hw: usize,
        silu: bool,
    ) -> Result<B::Buf> {
        be.group_norm(
            x,
            &self.gamma,
            &self.beta,
            n,
            self.c,
            hw,
            self.groups,
            GN_EPS,
            silu,
        )
    }
}

/// `ResnetBlock2D` without time embedding: GN → SiLU → conv ×2, plus a 1×1 shortcut when Ci ≠ Co.
pub struct ResnetBlock2D<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    conv_shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> ResnetBlock2D<B> {
    pub(super) fn load(
        be: &B,
        names: &Names,
        key: &str,
        ci: usize,
        co: usize,
        groups: usize,
    ) -> Result<Self> {
        Ok(ResnetBlock2D {
            norm1: GroupNorm::load(be, names, &format!("{key}.norm1"), ci, groups)?,
            conv1: Conv2d::load(be, names, &format!("{key}.conv1"), ci, co, 3)?,
            norm2: GroupNorm::load(be, names, &format!("{key}.norm2"), co, groups)?,
            conv2: Conv2d::load(be, names, &format!("{key}.conv2"), co, co, 3)?,
            conv_shortcut: if ci != co {
                Some(Conv2d::load(
                    be,
                    names,
                    &format!("{key}.conv_shortcut"),
                    ci,
                    co,
                    1,
                )?)
            } else {
                None
            },
        })
    }

    pub(super) fn forward(
        &self,
        be: &B,
        x: &B::Buf,
        n: usize,
        h: usize,
        w: usize,
    ) -> Result<B::Buf> {
        let a = self.norm1.forward(be, x, n, h * w, true)?;
        let a = self.conv1.forward(be, &a, n, h, w)?;
        let a = self.norm2.forward(be, &a, n, h * w, true)?;
        let a = self.conv2.forward(be, &a, n, h, w)?;
        // (shortcut + h) / output_scale_factor (1); IEEE addition commutes, so h += shortcut.
        let mut out = a;
        match &self.conv_shortcut {
            Some(c) => be.add(&mut out, &c.forward(be, x, n, h, w)?)?,
            None => be.add(&mut out, x)?,
        }
        Ok(out)
    }
}

/// The mid block's single-head self-attention over the H·W positions, with a residual.
pub struct Attention<B: Backend> {
    group_norm: GroupNorm<B>,
    /// to_q, to_k, to_v stacked into one (3C, C) projection.
    qkv_w: B::Buf,
    qkv_b: B::Buf,
    out_w: B::Buf,
    out_b: B::Buf,
    c: usize,
}

impl<B: Backend> Attention<B> {
    pub(super) fn load(be: &B, names: &Names, key: &str, c: usize, groups: usize) -> Result<Self> {
        let mut w = Vec::with_capacity(3 * c * c);
        let mut b = Vec::with_capacity(3 * c);
        for p in ["to_q", "to_k", "to_v"] {
            w.extend(names.get(&format!("{key}.{p}.weight"), &[c, c])?);
            b.extend(names.get(&format!("{key}.{p}.bias"), &[c])?);
        }
        Ok(Attention {
            group_norm: GroupNorm::load(be, names, &format!("{key}.group_norm"), c, groups)?,
            qkv_w: be.upload_weight(&w)?,
            qkv_b: be.upload(&b)?,
            out_w: be.upload_weight(&names.get(&format!("{key}.to_out.0.weight"), &[c, c])?)?,
            out_b: be.upload(&names.get(&format!("{key}.to_out.0.bias"), &[c])?)?,
            c,
        })
    }

    /// x (N, C, H·W) → x + to_out(softmax(q kᵀ / √C) v)
    pub(super) fn forward(&self, be: &B, x: &B::Buf, n: usize, hw: usize) -> Result<B::Buf> {
        let c = self.c;
        let h = self.group_norm.forward(be, x, n, hw, false)?;
        let tokens = be.transpose(&h, n, c, hw)?; // (N, HW, C)
        let qkv = be.linear(&tokens, &self.qkv_w, Some(&self.qkv_b), n * hw, c, 3 * c)?; // (N, HW, 3C)
        let a = be.attention(&qkv, n, hw, 1, c)?; // (N, HW, C)
        let o = be.linear(&a, &self.out_w, Some(&self.out_b), n * hw, c, c)?;
        let mut out = be.transpose(&o, n, hw, c)?; // (N, C, HW)
        be.add(&mut out, x)?;
        Ok(out)
    }
}

/// `UpDecoderBlock2D`: resnets, then nearest ×2 and a 3×3 conv (all but the last block).
pub struct UpDecoderBlock2D<B: Backend> {
    resnets: Vec<ResnetBlock2D<B>>,
    upsampler: Option<Conv2d<B>>,
}

impl<B: Backend> UpDecoderBlock2D<B> {
    /// Up block `i` (diffusers order, widest first): `layers + 1` resnets Ci → Co, then an
    /// upsampler when `upsample` (every block but the last).
    pub(super) fn load(
        be: &B,
        names: &Names,
        i: usize,
        (ci, co): (usize, usize),
        upsample: bool,
        layers: usize,
        groups: usize,
    ) -> Result<Self> {
        let resnets = (0..=layers)
            .map(|j| {
                ResnetBlock2D::load(
                    be,
                    names,
                    &format!("decoder.up_blocks.{i}.resnets.{j}"),
                    if j == 0 { ci } else { co },
                    co,
                    groups,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let upsampler = if upsample {
            Some(Conv2d::load(
                be,
                names,
                &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                co,
                co,
                3,
            )?)
        } else {
            None
        };
        Ok(UpDecoderBlock2D { resnets, upsampler })
    }

    /// (N, Ci, H, W) → (N, Co, H, W), or (N, Co, 2H, 2W) with an upsampler; returns the new side.
    /// `tap(j, x)` sees the output of resnet j.
    pub(super) fn forward(
        &self,
        be: &B,
        mut x: B::Buf,
        n: usize,
        (h, w): (usize, usize),
        tap: &mut dyn FnMut(usize, &B::Buf) -> Result<()>,
    ) -> Result<(B::Buf, (usize, usize))> {
        for (j, r) in self.resnets.iter().enumerate() {
            x = r.forward(be, &x, n, h, w)?;
            tap(j, &x)?;
        }
        let Some(up) = &self.upsampler else {
            return Ok((x, (h, w)));
        };
        let c = up.ci;
        let x = be.upsample_nearest2x(&x, n, c, h, w)?;
        let (h, w) = (2 * h, 2 * w);
        let x = up.forward(be, &x, n, h, w)?;
        Ok((x, (h, w)))
    }
}

/// `DownEncoderBlock2D`: resnets, then a downsampler (all but the last block).
pub struct DownEncoderBlock2D<B: Backend> {
    resnets: Vec<ResnetBlock2D<B>>,
    downsampler: Option<Conv2d<B>>,
}

impl<B: Backend> DownEncoderBlock2D<B> {
    /// Down block `i`: `layers` resnets Ci → Co, then a downsampler when `downsample`.
    pub(super) fn load(
        be: &B,
        names: &Names,
        i: usize,
        (ci, co): (usize, usize),
        downsample: bool,
        layers: usize,
        groups: usize,
    ) -> Result<Self> {
        let resnets = (0..layers)
            .map(|j| {
                let key = format!("encoder.down_blocks.{i}.resnets.{j}");
                ResnetBlock2D::load(be, names, &key, if j == 0 { ci } else { co }, co, groups)
            })
            .collect::<Result<Vec<_>>>()?;
        let key = format!("encoder.down_blocks.{i}.downsamplers.0.conv");
        let downsampler = if downsample {
            Some(Conv2d::load_downsample(be, names, &key, co)?)
        } else {
            None
        };
        Ok(DownEncoderBlock2D {
            resnets,
            downsampler,
        })
    }

    /// (N, Ci, H, W) → (N, Co, H, W), or (N, Co, H/2, W/2) with a downsampler; returns the side.
    pub(super) fn forward(
        &self,
        be: &B,
        mut x: B::Buf,
        n: usize,
        (h, w): (usize, usize),
    ) -> Result<(B::Buf, (usize, usize))> {
        for r in &self.resnets {
            x = r.forward(be, &x, n, h, w)?;
        }
        match &self.downsampler {
            Some(d) => Ok((d.forward(be, &x, n, h, w)?, (h / 2, w / 2))),
            None => Ok((x, (h, w))),
        }
    }
}
