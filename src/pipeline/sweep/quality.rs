//! The network of a sweep's quality metrics: the FID Inception (from a file or the formula
//! weights) or the toy study's classifier, and the feature members it adds to a unit file.

use anyhow::{Context, Result};

use super::spec::InceptionSource;
use crate::backend::Backend;
use crate::io::{npy, npz};
use crate::models::inception::{InceptionV3, LOGITS_DIM, POOL_DIM, SPATIAL_DIM};
use crate::models::synthetic;
use crate::models::toy_classifier::ToyClassifier;
use crate::weights::WeightFile;

/// The network of the quality metrics.
pub(crate) enum QualityNet<B: Backend> {
    Inception(Box<InceptionV3<B>>),
    Toy(ToyClassifier<B>),
}

impl<B: Backend> QualityNet<B> {
    pub(crate) fn load(be: &B, source: &InceptionSource) -> Result<Self> {
        Ok(match source {
            InceptionSource::File(p) => {
                let f = WeightFile::open(p)?;
                QualityNet::Inception(Box::new(
                    InceptionV3::load(be, &f).with_context(|| {
                        format!("{}: not the FID Inception weights", p.display())
                    })?,
                ))
            }
            InceptionSource::Formula => QualityNet::Inception(Box::new(InceptionV3::load(
                be,
                &synthetic::inception(2015)?,
            )?)),
            InceptionSource::ToyClassifier(p) => {
                let f = WeightFile::open(p)?;
                QualityNet::Toy(
                    ToyClassifier::load(be, &f)
                        .with_context(|| format!("[evaluation] classifier {}", p.display()))?,
                )
            }
        })
    }

    /// `pool`, `spatial` (Inception only) and `logits` of uint8 images (N, H, W, 3), in one
    /// forward: the bits do not depend on the batch (backend/cpu/gemm.rs).
    pub(crate) fn members(
        &self,
        be: &B,
        images: &[u8],
        dims: (usize, usize, usize, usize),
    ) -> Result<Vec<npz::Member>> {
        let n = dims.0;
        let member = |key: &str, w: usize, v: &[f32]| -> Result<npz::Member> {
            Ok(npz::Member {
                key: key.into(),
                npy: npy::encode_f32(&[n, w], v)?,
            })
        };
        Ok(match self {
            QualityNet::Inception(net) => {
                let f = net.forward_images(be, images, dims)?;
                vec![
                    member("pool", POOL_DIM, &f.pool)?,
                    member("spatial", SPATIAL_DIM, &f.spatial)?,
                    member("logits", LOGITS_DIM, &f.logits)?,
                ]
            }
            QualityNet::Toy(net) => {
                let o = net.forward(be, images, dims)?;
                vec![
                    member("pool", net.features, &o.features)?,
                    member("logits", net.num_classes, &o.logits)?,
                ]
            }
        })
    }
}
