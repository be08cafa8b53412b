//! torchvision's ResNet-50 trunk (v1.5: the stride sits on the 3 × 3 convolution), eval mode,
//! without the classifier: the embedding is the global average pool (2048). Used for MoCo v3
//! (`r-50-1000ep.pth.tar`, `module.base_encoder.*` minus the projection head) and SimCLR v2
//! (`r50_1x_sk0` as ported to PyTorch), both converted to torchvision names by
//! `scripts/convert_weights.py`. Batch norms (eps 1e-5) are folded into the convolutions.

use anyhow::{ensure, Result};

use super::layers::ConvBn;
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Nchw, Op, Pool, Window};
use crate::weights::source::TensorSource;
use crate::weights::Expected;

const BN_EPS: f64 = 1e-5;
/// Bottlenecks per stage and their widths (ResNet-50).
const STAGES: [(usize, usize); 4] = [(3, 64), (4, 128), (6, 256), (3, 512)];
const EXPANSION: usize = 4;
pub const EMBED_DIM: usize = 512 * EXPANSION;

/// Builds one conv + BN from (conv name, BN name, Ci, Co, window, ReLU): loads it, or records it.
type MakeConvBn<'a, B> =
    dyn FnMut(&str, &str, (usize, usize), Window, bool) -> Result<ConvBn<B>> + 'a;

/// torchvision `Bottleneck`: 1×1 → 3×3 (stride) → 1×1 (×4), plus the identity or a strided 1×1
/// downsample; ReLU after the sum.
pub struct Bottleneck<B: Backend> {
    conv1: ConvBn<B>,
    conv2: ConvBn<B>,
    conv3: ConvBn<B>,
    downsample: Option<ConvBn<B>>,
}

impl<B: Backend> Bottleneck<B> {
    fn build(
        mk: &mut MakeConvBn<B>,
        key: &str,
        ci: usize,
        width: usize,
        stride: usize,
    ) -> Result<Self> {
        let co = width * EXPANSION;
        let mut c = |n: usize, io, win, relu| {
            mk(
                &format!("{key}.conv{n}"),
                &format!("{key}.bn{n}"),
                io,
                win,
                relu,
            )
        };
        Ok(Bottleneck {
            conv1: c(1, (ci, width), Window::square(1, 1, 0), true)?,
            conv2: c(2, (width, width), Window::square(3, stride, 1), true)?,
            conv3: c(3, (width, co), Window::square(1, 1, 0), false)?,
            downsample: if stride != 1 || ci != co {
                Some(mk(
                    &format!("{key}.downsample.0"),
                    &format!("{key}.downsample.1"),
                    (ci, co),
                    Window::square(1, stride, 0),
                    false,
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<(B::Buf, Nchw)> {
        let (h, dh) = self.conv1.forward(be, x, d)?;
        let (h, dh) = self.conv2.forward(be, &h, dh)?;
        let (mut y, dy) = self.conv3.forward(be, &h, dh)?;
        match &self.downsample {
            Some(ds) => be.add(&mut y, &ds.forward(be, x, d)?.0)?,
            None => be.add(&mut y, x)?,
        }
        be.relu(&mut y)?;
        Ok((y, dy))
    }
}

/// The trunk: conv1 7×7/2 → BN → ReLU → max pool 3×3/2 → four stages → global average.
pub struct ResNet50<B: Backend> {
    stem: ConvBn<B>,
    stages: Vec<Vec<Bottleneck<B>>>,
}

impl<B: Backend> ResNet50<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[Op::Add, Op::Conv2d, Op::Pool2d, Op::Relu];

    fn build(mk: &mut MakeConvBn<B>) -> Result<Self> {
        let stem = mk("conv1", "bn1", (3, 64), Window::square(7, 2, 3), true)?;
        let mut stages = Vec::new();
        let mut ci = 64;
        for (s, &(blocks, width)) in STAGES.iter().enumerate() {
            let mut stage = Vec::new();
            for i in 0..blocks {
                let stride = if i == 0 && s > 0 { 2 } else { 1 };
                stage.push(Bottleneck::build(
                    mk,
                    &format!("layer{}.{i}", s + 1),
                    ci,
                    width,
                    stride,
                )?);
                ci = width * EXPANSION;
            }
            stages.push(stage);
        }
        Ok(ResNet50 { stem, stages })
    }

    /// Every tensor the trunk reads (no `fc`, no `num_batches_tracked`).
    pub fn expected_tensors() -> Vec<Expected> {
        let mut out = Vec::new();
        let mut record = |conv: &str, bn: &str, io, win, relu| {
            out.extend(ConvBn::<Cpu>::expected((conv, bn), io, win));
            Ok(ConvBn::shape_only(io.1, win, relu))
        };
        // Building with empty buffers only walks the structure; it cannot fail.
        let _ = ResNet50::<Cpu>::build(&mut record);
        out
    }

    pub fn load(be: &B, src: &dyn TensorSource) -> Result<Self> {
        crate::backend::require(be, "ResNet-50", Self::OPS)?;
        src.check(&Self::expected_tensors())?;
        Self::build(&mut |conv, bn, io, win, relu| {
            ConvBn::load(be, src, (conv, bn), io, win, BN_EPS, relu)
        })
    }

    /// Pooled features (B, 2048) of preprocessed images x (B, 3, H, W).
    pub fn forward(&self, be: &B, x: &[f32], b: usize, (h, w): (usize, usize)) -> Result<Vec<f32>> {
        ensure!(
            x.len() == b * 3 * h * w,
            "ResNet-50: {} input values for ({b}, 3, {h}, {w})",
            x.len()
        );
        let d = Nchw { n: b, c: 3, h, w };
        let (x, d) = self.stem.forward(be, &be.upload(x)?, d)?; // (B, 64, H/2, W/2)
        let pool = Window::square(3, 2, 1);
        let (ph, pw) = pool
            .output(d.h, d.w)
            .ok_or_else(|| anyhow::anyhow!("ResNet-50: input {h}×{w} is too small"))?;
        let mut x = be.pool2d(&x, d, pool, Pool::Max)?;
        let mut d = Nchw { h: ph, w: pw, ..d }; // (B, 64, H/4, W/4)
        for stage in &self.stages {
            for block in stage {
                (x, d) = block.forward(be, &x, d)?;
            }
        } // (B, 2048, H/32, W/32)
        let global = Window {
            kh: d.h,
            kw: d.w,
            stride: 1,
            ph: 0,
            pw: 0,
        };
        be.download(&be.pool2d(&x, d, global, Pool::Avg)?)
    }
}
