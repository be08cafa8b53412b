//! LPIPS v0.1 (Zhang et al. 2018, the `lpips` package): a torchvision AlexNet or VGG16 trunk,
//! five ReLU taps, each normalised over channels at every location, weighted by the v0.1 linear
//! heads and averaged over space.
//!
//! Instead of a distance per pair, each image gets one feature row: every tap's
//! f̂ / (‖f̂‖ + 1e-10) scaled by √(w_c / HW), flattened. Then LPIPS(a, b) = ‖g(a) − g(b)‖², so N
//! images cost N forwards rather than N² (metrics/diversity.rs sums the pairs in f64).
//!
//! Names are the `lpips.LPIPS` state_dict's: `net.slice{k}.{i}.{weight,bias}`,
//! `lin{k}.model.1.weight` (1, C, 1, 1), `scaling_layer.{shift,scale}` (1, 3, 1, 1).

use anyhow::{ensure, Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::backend::{Backend, Nchw, Op, Pool, Window};
use crate::weights::source::TensorSource;
use crate::weights::Expected;

/// The trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LpipsNet {
    Alex,
    Vgg,
}

/// One step of a trunk.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `net.slice{slice}.{index}`: Conv2d(ci → co) with bias, then ReLU.
    Conv {
        slice: usize,
        index: usize,
        ci: usize,
        co: usize,
        win: Window,
    },
    MaxPool(Window),
    /// The output so far is a tap.
    Tap,
}

impl LpipsNet {
    fn steps(self) -> Vec<Step> {
        let conv = |slice, index, ci, co, win| Step::Conv {
            slice,
            index,
            ci,
            co,
            win,
        };
        match self {
            // torchvision alexnet.features[0..12], taps after relu1..relu5.
            LpipsNet::Alex => vec![
                conv(1, 0, 3, 64, Window::square(11, 4, 2)),
                Step::Tap,
                Step::MaxPool(Window::square(3, 2, 0)),
                conv(2, 3, 64, 192, Window::square(5, 1, 2)),
                Step::Tap,
                Step::MaxPool(Window::square(3, 2, 0)),
                conv(3, 6, 192, 384, Window::square(3, 1, 1)),
                Step::Tap,
                conv(4, 8, 384, 256, Window::square(3, 1, 1)),
                Step::Tap,
                conv(5, 10, 256, 256, Window::square(3, 1, 1)),
                Step::Tap,
            ],
            // torchvision vgg16.features[0..30], taps after relu1_2, 2_2, 3_3, 4_3, 5_3.
            LpipsNet::Vgg => {
                let mut v = Vec::new();
                let stages: [(usize, &[usize], usize, usize); 5] = [
                    (1, &[0, 2], 3, 64),
                    (2, &[5, 7], 64, 128),
                    (3, &[10, 12, 14], 128, 256),
                    (4, &[17, 19, 21], 256, 512),
                    (5, &[24, 26, 28], 512, 512),
                ];
                for (slice, idx, ci, co) in stages {
                    if slice > 1 {
                        v.push(Step::MaxPool(Window::square(2, 2, 0)));
                    }
                    for (k, &index) in idx.iter().enumerate() {
                        let cin = if k == 0 { ci } else { co };
                        v.push(conv(slice, index, cin, co, Window::square(3, 1, 1)));
                    }
                    v.push(Step::Tap);
                }
                v
            }
        }
    }

    /// Channels of the five taps.
    fn tap_channels(self) -> [usize; 5] {
        match self {
            LpipsNet::Alex => [64, 192, 384, 256, 256],
            LpipsNet::Vgg => [64, 128, 256, 512, 512],
        }
    }

    pub fn expected_tensors(self) -> Vec<Expected> {
        let mut out = Vec::new();
        for s in self.steps() {
            if let Step::Conv {
                slice,
                index,
                ci,
                co,
                win,
            } = s
            {
                let k = format!("net.slice{slice}.{index}");
                out.push(Expected::new(
                    format!("{k}.weight"),
                    &[co, ci, win.kh, win.kw],
                ));
                out.push(Expected::new(format!("{k}.bias"), &[co]));
            }
        }
        for (k, c) in self.tap_channels().iter().enumerate() {
            out.push(Expected::new(
                format!("lin{k}.model.1.weight"),
                &[1, *c, 1, 1],
            ));
        }
        for b in ["shift", "scale"] {
            out.push(Expected::new(format!("scaling_layer.{b}"), &[1, 3, 1, 1]));
        }
        out
    }
}

enum Layer<B: Backend> {
    Conv {
        w: B::Buf,
        b: B::Buf,
        co: usize,
        win: Window,
    },
    MaxPool(Window),
    Tap,
}

pub struct Lpips<B: Backend> {
    layers: Vec<Layer<B>>,
    /// √w of each tap's linear head (non-negative weights).
    lin_sqrt: Vec<Vec<f32>>,
    shift: [f32; 3],
    scale: [f32; 3],
    pub net: LpipsNet,
}

impl<B: Backend> Lpips<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[Op::Conv2d, Op::Pool2d, Op::ConcatChannels];

    pub fn load(be: &B, src: &dyn TensorSource, net: LpipsNet) -> Result<Self> {
        crate::backend::require(be, "LPIPS", Self::OPS)?;
        src.check(&net.expected_tensors())?;
        let mut layers = Vec::new();
        for s in net.steps() {
            layers.push(match s {
                Step::Conv {
                    slice,
                    index,
                    co,
                    win,
                    ..
                } => {
                    let k = format!("net.slice{slice}.{index}");
                    Layer::Conv {
                        w: be.upload_weight(&src.f32(&format!("{k}.weight"))?)?,
                        b: be.upload(&src.f32(&format!("{k}.bias"))?)?,
                        co,
                        win,
                    }
                }
                Step::MaxPool(w) => Layer::MaxPool(w),
                Step::Tap => Layer::Tap,
            });
        }
        let mut lin_sqrt = Vec::new();
        for k in 0..5 {
            let name = format!("lin{k}.model.1.weight");
            let w = src.f32(&name)?;
            ensure!(
                w.iter().all(|&v| v >= 0.0),
                "{name}: LPIPS's linear heads are non-negative; this one is not, so the feature-row form does not apply"
            );
            lin_sqrt.push(w.iter().map(|&v| (v as f64).sqrt() as f32).collect());
        }
        let three = |n: &str| -> Result<[f32; 3]> {
            let v = src.f32(n)?;
            Ok([v[0], v[1], v[2]])
        };
        Ok(Lpips {
            layers,
            lin_sqrt,
            shift: three("scaling_layer.shift")?,
            scale: three("scaling_layer.scale")?,
            net,
        })
    }

    /// Feature rows (N, F) of uint8 images (N, H, W, 3) at their own size: LPIPS(a, b) is the
    /// squared distance of two rows.
    pub fn features(
        &self,
        be: &B,
        images: &[u8],
        (n, h, w, c): (usize, usize, usize, usize),
    ) -> Result<Vec<f32>> {
        ensure!(c == 3, "LPIPS takes RGB images, got {c} channels");
        ensure!(
            images.len() == n * h * w * c,
            "image batch has {} bytes for ({n}, {h}, {w}, {c})",
            images.len()
        );
        // lpips.im2tensor (x / 127.5 − 1, in f64, to f32), then the scaling layer in f32.
        let mut x = vec![0f32; n * 3 * h * w];
        for s in 0..n {
            for p in 0..h * w {
                for ch in 0..3 {
                    let v = (images[(s * h * w + p) * 3 + ch] as f64 / 127.5 - 1.0) as f32;
                    x[(s * 3 + ch) * h * w + p] = (v - self.shift[ch]) / self.scale[ch];
                }
            }
        }
        let mut d = Nchw { n, c: 3, h, w };
        // The activation: `cur`, or the last tap once it has been taken there.
        let mut cur = Some(be.upload(&x)?);
        let mut taps: Vec<(B::Buf, Nchw)> = Vec::new();
        for layer in &self.layers {
            let input = match &cur {
                Some(b) => b,
                None => &taps.last().context("LPIPS: a trunk starts with a layer")?.0,
            };
            match layer {
                Layer::Conv {
                    w: weight,
                    b,
                    co,
                    win,
                } => {
                    let (oh, ow) = win.output(d.h, d.w).ok_or_else(|| {
                        anyhow::anyhow!("LPIPS: image {h}×{w} too small for the trunk")
                    })?;
                    cur = Some(be.conv2d(input, d, weight, b, *co, *win, true)?);
                    d = Nchw {
                        c: *co,
                        h: oh,
                        w: ow,
                        ..d
                    };
                }
                Layer::MaxPool(win) => {
                    let (oh, ow) = win.output(d.h, d.w).ok_or_else(|| {
                        anyhow::anyhow!("LPIPS: image {h}×{w} too small for the trunk")
                    })?;
                    cur = Some(be.pool2d(input, d, *win, Pool::Max)?);
                    d = Nchw { h: oh, w: ow, ..d };
                }
                Layer::Tap => {
                    if let Some(b) = cur.take() {
                        taps.push((b, d));
                    }
                }
            }
        }
        let width: usize = taps.iter().map(|(_, t)| t.c * t.h * t.w).sum();
        // Every tap in one copy to the host: (N, width).
        let parts: Vec<(&B::Buf, usize)> = taps.iter().map(|(b, t)| (b, t.c * t.h * t.w)).collect();
        let all = be.download(&be.concat_channels(&parts, n, 1)?)?;
        let mut out = vec![0f32; n * width];
        // Per sample (in parallel), per tap, channel-major passes over contiguous maps; each
        // value computed as `lpips.normalize_tensor` and the lin weighting define it.
        out.par_chunks_mut(width.max(1))
            .zip(all.par_chunks(width.max(1)))
            .for_each(|(row, fs)| {
                let mut at = 0;
                for ((_, t), lin) in taps.iter().zip(&self.lin_sqrt) {
                    let hw = t.h * t.w;
                    let inv_hw = 1.0 / (hw as f64);
                    let (f, r) = (&fs[at..at + t.c * hw], &mut row[at..at + t.c * hw]);
                    // lpips.normalize_tensor in f32: f / (√Σ_c f² + 1e-10), Σ over c in order.
                    let mut norm = vec![0f32; hw];
                    for fc in f.chunks(hw) {
                        for (s, &v) in norm.iter_mut().zip(fc) {
                            *s += v * v;
                        }
                    }
                    norm.iter_mut().for_each(|s| *s = s.sqrt() + 1e-10);
                    for ((rc, fc), &l) in r.chunks_mut(hw).zip(f.chunks(hw)).zip(lin.iter()) {
                        for ((o, &v), &nrm) in rc.iter_mut().zip(fc).zip(&norm) {
                            *o = ((v / nrm) as f64 * l as f64 * inv_hw.sqrt()) as f32;
                        }
                    }
                    at += t.c * hw;
                }
            });
        Ok(out)
    }
}
