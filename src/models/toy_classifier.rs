//! The toy study's classifier (`ToyClassifier` of scripts/train_toy.py): trained on the procedural
//! data set (src/toy.rs), its 64-d pooled features stand in for the FID Inception (FID,
//! precision/recall) and serve as a diversity embedding; its 10 logits give IS and class accuracy.
//!
//! x = u8 / 127.5 − 1 → conv3×3-ReLU-maxpool2 → conv3×3-ReLU-maxpool2 → conv3×3-ReLU →
//! global mean (features) → linear (logits).

use anyhow::{ensure, Context, Result};

use super::layers::Linear;
use super::preprocess::{to_chw, Normalize};
use crate::backend::{Backend, Nchw, Op, Pool, Window};
use crate::weights::source::TensorSource;
use crate::weights::Expected;

/// `nn.Conv2d(ci, co, 3, padding=1)` followed by ReLU.
struct ConvRelu<B: Backend> {
    w: B::Buf,
    b: B::Buf,
    co: usize,
}

pub struct ToyClassifier<B: Backend> {
    conv1: ConvRelu<B>,
    conv2: ConvRelu<B>,
    conv3: ConvRelu<B>,
    fc: Linear<B>,
    pub width: usize,
    pub features: usize,
    pub num_classes: usize,
}

/// Features and logits of a batch.
pub struct ToyOutput {
    /// (N, features)
    pub features: Vec<f32>,
    /// (N, num_classes)
    pub logits: Vec<f32>,
}

const CONV: Window = Window::square(3, 1, 1);

impl<B: Backend> ToyClassifier<B> {
    /// The backend ops its forward calls (tests/models/model_ops.rs checks the list).
    pub const OPS: &'static [Op] = &[Op::Conv2d, Op::Pool2d, Op::Linear, Op::ConcatChannels];

    pub fn load(be: &B, file: &dyn TensorSource) -> Result<Self> {
        crate::backend::require(be, "the toy classifier", Self::OPS)?;
        let shape = |name: &str| {
            file.tensor_shape(name).with_context(|| {
                format!(
                    "{}: no tensor {name}: not a toy classifier (scripts/train_toy.py writes toy_classifier.safetensors)",
                    file.origin()
                )
            })
        };
        let (width, features, num_classes) = (
            shape("conv1.weight")?[0],
            shape("conv3.weight")?[0],
            shape("fc.weight")?[0],
        );
        let expected = [
            ("conv1", 3, width),
            ("conv2", width, features),
            ("conv3", features, features),
        ]
        .iter()
        .flat_map(|&(k, ci, co)| {
            [
                Expected::new(format!("{k}.weight"), &[co, ci, 3, 3]),
                Expected::new(format!("{k}.bias"), &[co]),
            ]
        })
        .chain([
            Expected::new("fc.weight", &[num_classes, features]),
            Expected::new("fc.bias", &[num_classes]),
        ])
        .collect::<Vec<_>>();
        file.check(&expected)?;
        let conv = |k: &str, co: usize| -> Result<ConvRelu<B>> {
            Ok(ConvRelu {
                w: be.upload_weight(&file.f32(&format!("{k}.weight"))?)?,
                b: be.upload(&file.f32(&format!("{k}.bias"))?)?,
                co,
            })
        };
        Ok(ToyClassifier {
            conv1: conv("conv1", width)?,
            conv2: conv("conv2", features)?,
            conv3: conv("conv3", features)?,
            fc: Linear::load(be, file, "fc", features, num_classes)?,
            width,
            features,
            num_classes,
        })
    }

    /// uint8 images (N, H, W, 3) → features (N, F) and logits (N, classes).
    pub fn forward(
        &self,
        be: &B,
        images: &[u8],
        (n, h, w, c): (usize, usize, usize, usize),
    ) -> Result<ToyOutput> {
        ensure!(
            c == 3,
            "the toy classifier takes RGB images, got {c} channels"
        );
        ensure!(
            h > 0 && w > 0 && images.len() == n * h * w * c && h % 4 == 0 && w % 4 == 0,
            "toy classifier: {} bytes for ({n}, {h}, {w}, 3), sides a positive multiple of 4",
            images.len()
        );
        // NHWC uint8 → NCHW in [−1, 1], as `u8.permute(0, 3, 1, 2).float() / 127.5 - 1`.
        let x: Vec<f32> = images
            .chunks(h * w * 3)
            .flat_map(|img| to_chw(img, (h, w), Normalize::Signed))
            .collect();
        let mut d = Nchw { n, c: 3, h, w };
        let mut x = be.upload(&x)?;
        for (k, conv) in [&self.conv1, &self.conv2, &self.conv3]
            .into_iter()
            .enumerate()
        {
            x = be.conv2d(&x, d, &conv.w, &conv.b, conv.co, CONV, true)?;
            d.c = conv.co;
            if k < 2 {
                x = be.pool2d(&x, d, Window::square(2, 2, 0), Pool::Max)?;
                d.h /= 2;
                d.w /= 2;
            }
        }
        let whole = Window::rect(d.h, d.w, 0, 0);
        let f = be.pool2d(&x, d, whole, Pool::Avg)?; // (N, F, 1, 1)
        let logits = self.fc.forward(be, &f, n)?; // (N, classes)
                                                  // Both in one copy to the host.
        let (fd, classes) = (d.c, self.fc.out_f);
        let all = be.download(&be.concat_channels(&[(&f, fd), (&logits, classes)], n, 1)?)?;
        let rows = || all.chunks(fd + classes);
        Ok(ToyOutput {
            features: rows().flat_map(|r| &r[..fd]).copied().collect(),
            logits: rows().flat_map(|r| &r[fd..]).copied().collect(),
        })
    }
}
