//! The FID Inception-v3: TensorFlow's 2015 graph (`inception-2015-12-05`) as pytorch-fid ports it
//! (torchvision's `Inception3` with the `FIDInceptionA/C/E` blocks), under the key names of
//! `pt_inception-2015-12-05-6726825d.pth`, fed as the ADM evaluator feeds the graph: uint8 → TF1
//! bilinear resize to 299 → (x − 128)/128.
//!
//! Outputs, as the ADM evaluator reads them:
//! - `pool` (N, 2048): `pool_3`, the global average of Mixed_7c;
//! - `spatial` (N, 2023): `mixed_6/conv` = Mixed_6d.branch1x1 after its ReLU, channels 0..7,
//!   flattened in (h, w, c) order (17·17·7), for sFID;
//! - `logits` (N, 1008): `pool · fc.weightᵀ` without the bias (`softmax/logits/MatMul`), for IS.
//!
//! Batch norms (eps 1e-3) are folded into their convolutions at load time, in f64.

use anyhow::{ensure, Context, Result};

use super::layers::ConvBn;
use super::preprocess::tf1_bilinear_nchw;
use crate::backend::cpu::Cpu;
use crate::backend::{Backend, Nchw, Op, Pool, Window};
use crate::weights::source::TensorSource;
use crate::weights::Expected;

pub const INPUT_SIZE: usize = 299;
pub const POOL_DIM: usize = 2048;
/// 17 × 17 positions × the first 7 channels of `mixed_6/conv`.
pub const SPATIAL_DIM: usize = 17 * 17 * SPATIAL_CHANNELS;
pub const LOGITS_DIM: usize = 1008;
const SPATIAL_CHANNELS: usize = 7;
const BN_EPS: f64 = 1e-3;

/// The three feature sets of a batch, row-major (N, width).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InceptionFeatures {
    pub pool: Vec<f32>,
    pub spatial: Vec<f32>,
    pub logits: Vec<f32>,
}

/// An activation and its dimensions.
type Act<B> = (<B as Backend>::Buf, Nchw);

/// Builds one `BasicConv2d` from (state_dict prefix, Ci, Co, window): loads it, or only records
/// its tensors' names.
type MakeConv<'a, B> = dyn FnMut(&str, usize, usize, Window) -> Result<BasicConv2d<B>> + 'a;

/// torchvision's `BasicConv2d`: conv (no bias) → BatchNorm2d(eps=1e-3) → ReLU, BN folded in;
/// tensors `{key}.conv.weight` and `{key}.bn.*`.
type BasicConv2d<B> = ConvBn<B>;

fn basic_conv<B: Backend>(
    be: &B,
    src: &dyn TensorSource,
    key: &str,
    (ci, co): (usize, usize),
    win: Window,
) -> Result<BasicConv2d<B>> {
    let names = (format!("{key}.conv"), format!("{key}.bn"));
    ConvBn::load(be, src, (&names.0, &names.1), (ci, co), win, BN_EPS, true)
}

/// Applies convs in sequence.
fn chain<B: Backend>(be: &B, convs: &[&BasicConv2d<B>], x: &B::Buf, d: Nchw) -> Result<Act<B>> {
    let (mut y, mut dy) = convs[0].forward(be, x, d)?;
    for c in &convs[1..] {
        (y, dy) = c.forward(be, &y, dy)?;
    }
    Ok((y, dy))
}

fn pool<B: Backend>(be: &B, x: &B::Buf, d: Nchw, win: Window, p: Pool) -> Result<Act<B>> {
    let (h, w) = win
        .output(d.h, d.w)
        .ok_or_else(|| anyhow::anyhow!("pool window {win:?} does not fit {d:?}"))?;
    Ok((be.pool2d(x, d, win, p)?, Nchw { h, w, ..d }))
}

/// Concatenates branch outputs of one spatial size along channels.
fn concat<B: Backend>(be: &B, parts: &[Act<B>]) -> Result<Act<B>> {
    let d = parts[0].1;
    let refs: Vec<(&B::Buf, usize)> = parts.iter().map(|(b, d)| (b, d.c)).collect();
    let c = refs.iter().map(|p| p.1).sum();
    Ok((be.concat_channels(&refs, d.n, d.h * d.w)?, Nchw { c, ..d }))
}

const K1: Window = Window::square(1, 1, 0);
const K3: Window = Window::square(3, 1, 0);
const K3P: Window = Window::square(3, 1, 1);
const K3S2: Window = Window::square(3, 2, 0);
const K5P: Window = Window::square(5, 1, 2);
const K1X7: Window = Window::rect(1, 7, 0, 3);
const K7X1: Window = Window::rect(7, 1, 3, 0);
const K1X3: Window = Window::rect(1, 3, 0, 1);
const K3X1: Window = Window::rect(3, 1, 1, 0);

/// `FIDInceptionA` (Mixed_5b/c/d): 1×1, 5×5, double 3×3, and average pool (excluding padding)
/// → 1×1 branches.
pub struct InceptionA<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch5x5_1: BasicConv2d<B>,
    branch5x5_2: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
}

impl<B: Backend> InceptionA<B> {
    fn build(mk: &mut MakeConv<B>, key: &str, ci: usize, pool_features: usize) -> Result<Self> {
        let mut c = |name: &str, ci, co, win| mk(&format!("{key}.{name}"), ci, co, win);
        Ok(InceptionA {
            branch1x1: c("branch1x1", ci, 64, K1)?,
            branch5x5_1: c("branch5x5_1", ci, 48, K1)?,
            branch5x5_2: c("branch5x5_2", 48, 64, K5P)?,
            branch3x3dbl_1: c("branch3x3dbl_1", ci, 64, K1)?,
            branch3x3dbl_2: c("branch3x3dbl_2", 64, 96, K3P)?,
            branch3x3dbl_3: c("branch3x3dbl_3", 96, 96, K3P)?,
            branch_pool: c("branch_pool", ci, pool_features, K1)?,
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<Act<B>> {
        let (p, dp) = pool(be, x, d, K3P, Pool::Avg)?;
        concat(
            be,
            &[
                self.branch1x1.forward(be, x, d)?,
                chain(be, &[&self.branch5x5_1, &self.branch5x5_2], x, d)?,
                chain(
                    be,
                    &[
                        &self.branch3x3dbl_1,
                        &self.branch3x3dbl_2,
                        &self.branch3x3dbl_3,
                    ],
                    x,
                    d,
                )?,
                self.branch_pool.forward(be, &p, dp)?,
            ],
        )
    }
}

/// torchvision's `InceptionB` (Mixed_6a): grid reduction 35 → 17.
pub struct InceptionB<B: Backend> {
    branch3x3: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3: BasicConv2d<B>,
}

impl<B: Backend> InceptionB<B> {
    fn build(mk: &mut MakeConv<B>, key: &str, ci: usize) -> Result<Self> {
        let mut c = |name: &str, ci, co, win| mk(&format!("{key}.{name}"), ci, co, win);
        Ok(InceptionB {
            branch3x3: c("branch3x3", ci, 384, K3S2)?,
            branch3x3dbl_1: c("branch3x3dbl_1", ci, 64, K1)?,
            branch3x3dbl_2: c("branch3x3dbl_2", 64, 96, K3P)?,
            branch3x3dbl_3: c("branch3x3dbl_3", 96, 96, K3S2)?,
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<Act<B>> {
        concat(
            be,
            &[
                self.branch3x3.forward(be, x, d)?,
                chain(
                    be,
                    &[
                        &self.branch3x3dbl_1,
                        &self.branch3x3dbl_2,
                        &self.branch3x3dbl_3,
                    ],
                    x,
                    d,
                )?,
                pool(be, x, d, K3S2, Pool::Max)?,
            ],
        )
    }
}

/// `FIDInceptionC` (Mixed_6b–e): factorised 7×7 branches at 17 × 17.
pub struct InceptionC<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch7x7_1: BasicConv2d<B>,
    branch7x7_2: BasicConv2d<B>,
    branch7x7_3: BasicConv2d<B>,
    branch7x7dbl_1: BasicConv2d<B>,
    branch7x7dbl_2: BasicConv2d<B>,
    branch7x7dbl_3: BasicConv2d<B>,
    branch7x7dbl_4: BasicConv2d<B>,
    branch7x7dbl_5: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
}

impl<B: Backend> InceptionC<B> {
    fn build(mk: &mut MakeConv<B>, key: &str, ci: usize, c7: usize) -> Result<Self> {
        let mut c = |name: &str, ci, co, win| mk(&format!("{key}.{name}"), ci, co, win);
        Ok(InceptionC {
            branch1x1: c("branch1x1", ci, 192, K1)?,
            branch7x7_1: c("branch7x7_1", ci, c7, K1)?,
            branch7x7_2: c("branch7x7_2", c7, c7, K1X7)?,
            branch7x7_3: c("branch7x7_3", c7, 192, K7X1)?,
            branch7x7dbl_1: c("branch7x7dbl_1", ci, c7, K1)?,
            branch7x7dbl_2: c("branch7x7dbl_2", c7, c7, K7X1)?,
            branch7x7dbl_3: c("branch7x7dbl_3", c7, c7, K1X7)?,
            branch7x7dbl_4: c("branch7x7dbl_4", c7, c7, K7X1)?,
            branch7x7dbl_5: c("branch7x7dbl_5", c7, 192, K1X7)?,
            branch_pool: c("branch_pool", ci, 192, K1)?,
        })
    }

    /// The block's output and, for the sFID tap, its branch1x1 output (N, 192, 17, 17).
    fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<(Act<B>, B::Buf)> {
        let b1 = self.branch1x1.forward(be, x, d)?;
        let b7 = chain(
            be,
            &[&self.branch7x7_1, &self.branch7x7_2, &self.branch7x7_3],
            x,
            d,
        )?;
        let b7d = chain(
            be,
            &[
                &self.branch7x7dbl_1,
                &self.branch7x7dbl_2,
                &self.branch7x7dbl_3,
                &self.branch7x7dbl_4,
                &self.branch7x7dbl_5,
            ],
            x,
            d,
        )?;
        let (p, dp) = pool(be, x, d, K3P, Pool::Avg)?;
        let bp = self.branch_pool.forward(be, &p, dp)?;
        let parts = [b1, b7, b7d, bp];
        let y = concat(be, &parts)?;
        let [(tap, _), ..] = parts;
        Ok((y, tap))
    }
}

/// torchvision's `InceptionD` (Mixed_7a): grid reduction 17 → 8.
pub struct InceptionD<B: Backend> {
    branch3x3_1: BasicConv2d<B>,
    branch3x3_2: BasicConv2d<B>,
    branch7x7x3_1: BasicConv2d<B>,
    branch7x7x3_2: BasicConv2d<B>,
    branch7x7x3_3: BasicConv2d<B>,
    branch7x7x3_4: BasicConv2d<B>,
}

impl<B: Backend> InceptionD<B> {
    fn build(mk: &mut MakeConv<B>, key: &str, ci: usize) -> Result<Self> {
        let mut c = |name: &str, ci, co, win| mk(&format!("{key}.{name}"), ci, co, win);
        Ok(InceptionD {
            branch3x3_1: c("branch3x3_1", ci, 192, K1)?,
            branch3x3_2: c("branch3x3_2", 192, 320, K3S2)?,
            branch7x7x3_1: c("branch7x7x3_1", ci, 192, K1)?,
            branch7x7x3_2: c("branch7x7x3_2", 192, 192, K1X7)?,
            branch7x7x3_3: c("branch7x7x3_3", 192, 192, K7X1)?,
            branch7x7x3_4: c("branch7x7x3_4", 192, 192, K3S2)?,
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<Act<B>> {
        concat(
            be,
            &[
                chain(be, &[&self.branch3x3_1, &self.branch3x3_2], x, d)?,
                chain(
                    be,
                    &[
                        &self.branch7x7x3_1,
                        &self.branch7x7x3_2,
                        &self.branch7x7x3_3,
                        &self.branch7x7x3_4,
                    ],
                    x,
                    d,
                )?,
                pool(be, x, d, K3S2, Pool::Max)?,
            ],
        )
    }
}

/// `FIDInceptionE_1` (Mixed_7b, average pool excluding padding) and `FIDInceptionE_2`
/// (Mixed_7c, max pool: the TF graph's quirk) at 8 × 8.
pub struct InceptionE<B: Backend> {
    branch1x1: BasicConv2d<B>,
    branch3x3_1: BasicConv2d<B>,
    branch3x3_2a: BasicConv2d<B>,
    branch3x3_2b: BasicConv2d<B>,
    branch3x3dbl_1: BasicConv2d<B>,
    branch3x3dbl_2: BasicConv2d<B>,
    branch3x3dbl_3a: BasicConv2d<B>,
    branch3x3dbl_3b: BasicConv2d<B>,
    branch_pool: BasicConv2d<B>,
    pool: Pool,
}

impl<B: Backend> InceptionE<B> {
    fn build(mk: &mut MakeConv<B>, key: &str, ci: usize, pool: Pool) -> Result<Self> {
        let mut c = |name: &str, ci, co, win| mk(&format!("{key}.{name}"), ci, co, win);
        Ok(InceptionE {
            branch1x1: c("branch1x1", ci, 320, K1)?,
            branch3x3_1: c("branch3x3_1", ci, 384, K1)?,
            branch3x3_2a: c("branch3x3_2a", 384, 384, K1X3)?,
            branch3x3_2b: c("branch3x3_2b", 384, 384, K3X1)?,
            branch3x3dbl_1: c("branch3x3dbl_1", ci, 448, K1)?,
            branch3x3dbl_2: c("branch3x3dbl_2", 448, 384, K3P)?,
            branch3x3dbl_3a: c("branch3x3dbl_3a", 384, 384, K1X3)?,
            branch3x3dbl_3b: c("branch3x3dbl_3b", 384, 384, K3X1)?,
            branch_pool: c("branch_pool", ci, 192, K1)?,
            pool,
        })
    }

    fn forward(&self, be: &B, x: &B::Buf, d: Nchw) -> Result<Act<B>> {
        let (t, dt) = self.branch3x3_1.forward(be, x, d)?;
        let (u, du) = chain(be, &[&self.branch3x3dbl_1, &self.branch3x3dbl_2], x, d)?;
        let (p, dp) = pool(be, x, d, K3P, self.pool)?;
        concat(
            be,
            &[
                self.branch1x1.forward(be, x, d)?,
                self.branch3x3_2a.forward(be, &t, dt)?,
                self.branch3x3_2b.forward(be, &t, dt)?,
                self.branch3x3dbl_3a.forward(be, &u, du)?,
                self.branch3x3dbl_3b.forward(be, &u, du)?,
                self.branch_pool.forward(be, &p, dp)?,
            ],
        )
    }
}

/// The whole network, eval mode, without the auxiliary head.
pub struct InceptionV3<B: Backend> {
    conv2d_1a_3x3: BasicConv2d<B>,
    conv2d_2a_3x3: BasicConv2d<B>,
    conv2d_2b_3x3: BasicConv2d<B>,
    conv2d_3b_1x1: BasicConv2d<B>,
    conv2d_4a_3x3: BasicConv2d<B>,
    mixed_5: [InceptionA<B>; 3],
    mixed_6a: InceptionB<B>,
    mixed_6: [InceptionC<B>; 4],
    mixed_7a: InceptionD<B>,
    mixed_7b: InceptionE<B>,
    mixed_7c: InceptionE<B>,
    /// fc.weight (1008, 2048); the bias is not used (ADM's logits).
    fc_w: B::Buf,
    /// Zeros (1008): the logits run as a 1×1 convolution, see `forward`.
    fc_zero_bias: B::Buf,
}

impl<B: Backend> InceptionV3<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[Op::ConcatChannels, Op::Conv2d, Op::Pool2d];

    fn build(be: &B, mk: &mut MakeConv<B>, fc_w: &[f32]) -> Result<Self> {
        Ok(InceptionV3 {
            conv2d_1a_3x3: mk("Conv2d_1a_3x3", 3, 32, K3S2)?,
            conv2d_2a_3x3: mk("Conv2d_2a_3x3", 32, 32, K3)?,
            conv2d_2b_3x3: mk("Conv2d_2b_3x3", 32, 64, K3P)?,
            conv2d_3b_1x1: mk("Conv2d_3b_1x1", 64, 80, K1)?,
            conv2d_4a_3x3: mk("Conv2d_4a_3x3", 80, 192, K3)?,
            mixed_5: [
                InceptionA::build(mk, "Mixed_5b", 192, 32)?,
                InceptionA::build(mk, "Mixed_5c", 256, 64)?,
                InceptionA::build(mk, "Mixed_5d", 288, 64)?,
            ],
            mixed_6a: InceptionB::build(mk, "Mixed_6a", 288)?,
            mixed_6: [
                InceptionC::build(mk, "Mixed_6b", 768, 128)?,
                InceptionC::build(mk, "Mixed_6c", 768, 160)?,
                InceptionC::build(mk, "Mixed_6d", 768, 160)?,
                InceptionC::build(mk, "Mixed_6e", 768, 192)?,
            ],
            mixed_7a: InceptionD::build(mk, "Mixed_7a", 768)?,
            mixed_7b: InceptionE::build(mk, "Mixed_7b", 1280, Pool::Avg)?,
            mixed_7c: InceptionE::build(mk, "Mixed_7c", 2048, Pool::Max)?,
            fc_w: be.upload_weight(fc_w)?,
            fc_zero_bias: be.upload(&[0.0; LOGITS_DIM])?,
        })
    }

    /// Every tensor the network reads (BN running statistics included; `num_batches_tracked`
    /// and the auxiliary head are not part of it), in construction order.
    pub fn expected_tensors() -> Vec<Expected> {
        let mut out = Vec::new();
        let mut record = |key: &str, ci: usize, co: usize, win: Window| {
            let names = (format!("{key}.conv"), format!("{key}.bn"));
            out.extend(ConvBn::<Cpu>::expected((&names.0, &names.1), (ci, co), win));
            Ok(ConvBn::shape_only(co, win, true))
        };
        // Building on the CPU with empty buffers only walks the structure.
        let _ = InceptionV3::<Cpu>::build(&Cpu, &mut record, &[]);
        out.push(Expected::new("fc.weight", &[LOGITS_DIM, POOL_DIM]));
        out.push(Expected::new("fc.bias", &[LOGITS_DIM]));
        out
    }

    /// Checks every tensor at once, then loads and folds the batch norms.
    pub fn load(be: &B, src: &dyn TensorSource) -> Result<Self> {
        crate::backend::require(be, "the FID Inception", Self::OPS)?;
        src.check(&Self::expected_tensors())?;
        let fc_w = src.f32("fc.weight")?;
        Self::build(
            be,
            &mut |key, ci, co, win| basic_conv(be, src, key, (ci, co), win),
            &fc_w,
        )
    }

    /// Features of uint8 images (N, H, W, 3), any size (resized to 299 by the TF1 rule).
    pub fn forward_images(
        &self,
        be: &B,
        images: &[u8],
        (n, h, w, c): (usize, usize, usize, usize),
    ) -> Result<InceptionFeatures> {
        ensure!(
            c == 3,
            "the Inception network takes RGB images, got {c} channels"
        );
        ensure!(
            n > 0 && h > 0 && w > 0 && images.len() == n * h * w * c,
            "image batch has {} bytes for ({n}, {h}, {w}, {c})",
            images.len()
        );
        let x = tf1_bilinear_nchw(images, (n, h, w, c), INPUT_SIZE);
        self.forward(be, &be.upload(&x)?, n)
    }

    /// Features of preprocessed input x (N, 3, 299, 299).
    pub fn forward(&self, be: &B, x: &B::Buf, n: usize) -> Result<InceptionFeatures> {
        let d = Nchw {
            n,
            c: 3,
            h: INPUT_SIZE,
            w: INPUT_SIZE,
        };
        let (x, d) = chain(
            be,
            &[
                &self.conv2d_1a_3x3,
                &self.conv2d_2a_3x3,
                &self.conv2d_2b_3x3,
            ],
            x,
            d,
        )?; // (N, 64, 147, 147)
        let (x, d) = pool(be, &x, d, K3S2, Pool::Max)?; // (N, 64, 73, 73)
        let (x, d) = chain(be, &[&self.conv2d_3b_1x1, &self.conv2d_4a_3x3], &x, d)?; // (N, 192, 71, 71)
        let (mut x, mut d) = pool(be, &x, d, K3S2, Pool::Max)?; // (N, 192, 35, 35)
        for block in &self.mixed_5 {
            (x, d) = block.forward(be, &x, d)?;
        } // (N, 288, 35, 35)
        (x, d) = self.mixed_6a.forward(be, &x, d)?; // (N, 768, 17, 17)
        let mut tap = None;
        for (i, block) in self.mixed_6.iter().enumerate() {
            let (y, branch1x1) = block.forward(be, &x, d)?;
            if i == 2 {
                tap = Some(branch1x1); // Mixed_6d.branch1x1: (N, 192, 17, 17)
            }
            (x, d) = y;
        }
        let tap = tap.context("Inception-v3 has four Mixed_6 blocks")?;
        (x, d) = self.mixed_7a.forward(be, &x, d)?; // (N, 1280, 8, 8)
        (x, d) = self.mixed_7b.forward(be, &x, d)?; // (N, 2048, 8, 8)
        (x, d) = self.mixed_7c.forward(be, &x, d)?; // (N, 2048, 8, 8)
        let global = Window::square(d.h, d.h, 0);
        // pool3 (N, 2048) · fc.weightᵀ as a 1×1 convolution over (N, 2048, 1, 1): one product per
        // image, so the logits do not depend on how many images share a batch (a batched GEMM's
        // kernel choice, and so its summation order, depends on N).
        let (pool3, _) = pool(be, &x, d, global, Pool::Avg)?;
        let d = Nchw {
            c: POOL_DIM,
            h: 1,
            w: 1,
            ..d
        };
        let logits = be.conv2d(
            &pool3,
            d,
            &self.fc_w,
            &self.fc_zero_bias,
            LOGITS_DIM,
            K1,
            false,
        )?; // (N, 1008)
            // One copy to the host for the three outputs.
        let tap_len = TAP_CHANNELS * 17 * 17;
        let all = be.download(&be.concat_channels(
            &[(&pool3, POOL_DIM), (&logits, LOGITS_DIM), (&tap, tap_len)],
            n,
            1,
        )?)?; // (N, 2048 + 1008 + 192·17·17)
        let row = POOL_DIM + LOGITS_DIM + tap_len;
        let part = |from: usize, len: usize| -> Vec<f32> {
            all.chunks(row)
                .flat_map(|r| &r[from..from + len])
                .copied()
                .collect()
        };
        Ok(InceptionFeatures {
            pool: part(0, POOL_DIM),
            spatial: spatial_features(&part(POOL_DIM + LOGITS_DIM, tap_len), n),
            logits: part(POOL_DIM, LOGITS_DIM),
        })
    }
}

/// Channels of the sFID tap (Mixed_6d.branch1x1).
const TAP_CHANNELS: usize = 192;

/// Channels 0..7 of (N, 192, 17, 17), flattened per sample in (h, w, c) order → (N, 2023).
fn spatial_features(tap: &[f32], n: usize) -> Vec<f32> {
    let (c, hw) = (tap.len() / (n * 17 * 17), 17 * 17);
    let mut out = Vec::with_capacity(n * SPATIAL_DIM);
    for s in 0..n {
        for p in 0..hw {
            out.extend((0..SPATIAL_CHANNELS).map(|ch| tap[(s * c + ch) * hw + p]));
        }
    }
    out
}
