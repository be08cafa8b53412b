//! The reference sets a sweep's metrics compare with: the quality network's features of an ADM
//! reference batch, a features file or the toy data, and the embeddings of FD-DINOv2 and CMMD.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::quality::QualityNet;
use super::spec::Reference;
use super::units::Plan;
use crate::backend::Backend;
use crate::io::{npy, npz};
use crate::pipeline::embed::{embedding_members, Embedder, Subset};
use crate::pipeline::evaluate::{FeatureSet, MetricSettings};
use crate::pipeline::features::inception_features;
use crate::toy;

/// Reference features for the quality metrics: a features file or ADM statistics as they are,
/// else the quality network run on its images (or on the toy data it names).
pub(super) fn quality_reference<B: Backend>(
    be: &B,
    plan: &Plan,
    settings: &MetricSettings,
) -> Result<Option<FeatureSet>> {
    let Some(reference) = &plan.sweep.reference else {
        return Ok(None);
    };
    if !settings.metrics.iter().any(|m| m.needs_reference()) {
        return Ok(None);
    }
    let source = plan
        .sweep
        .inception
        .as_ref()
        .context("the reference's features need the quality network")?;
    let r = match reference {
        Reference::ToyData { seed, per_class } => {
            let (images, labels) = toy::dataset(*seed, *per_class)?;
            log::info!(
                "quality features of the reference, {}",
                reference.describe()
            );
            let net = QualityNet::load(be, source)?;
            let mut m = net.members(be, &images, (labels.len(), toy::SIZE, toy::SIZE, 3))?;
            m.push(i64_member("labels", &labels)?);
            return toy_reference(reference, m).map(Some);
        }
        Reference::File(r) => r,
    };
    let keys = npz::keys(r)?;
    let mut set = if keys.iter().any(|k| k == "pool") {
        FeatureSet::open(r)?
    } else {
        FeatureSet::from_members(r, npz::read_only(r, &["mu", "sigma", "mu_s", "sigma_s"])?)
    };
    if settings.needs_reference_features(&set) {
        ensure!(
            keys.iter().any(|k| k == "arr_0"),
            "{}: the metrics need reference images (`arr_0`) or features (`pool`…); it has: {}",
            r.display(),
            keys.join(", ")
        );
        let QualityNet::Inception(net) = QualityNet::load(be, source)? else {
            bail!(
                "{}: a toy classifier's reference is a features file or {{ toy_data_seed = …, per_class = … }}",
                r.display()
            );
        };
        log::info!("Inception features of the reference {}", r.display());
        let (m, _) = inception_features(be, &net, std::slice::from_ref(r), 16)?;
        set.extend(m);
    }
    set.cache_gaussians()?;
    Ok(Some(set))
}

/// A reference computed from the toy data: its feature members, named by the reference's
/// description, with their Gaussians ready.
fn toy_reference(reference: &Reference, members: Vec<npz::Member>) -> Result<FeatureSet> {
    let mut set = FeatureSet::from_members(Path::new(&reference.describe()), members);
    set.cache_gaussians()?;
    Ok(set)
}

/// The reference of FD-DINOv2 and CMMD: its `embedding`, or its images through the backbone.
pub(super) fn embedding_reference<B: Backend>(
    be: &B,
    plan: &Plan,
    backbone: usize,
) -> Result<FeatureSet> {
    let spec = &plan.sweep.backbones[backbone];
    let reference = plan
        .sweep
        .reference
        .as_ref()
        .context("fd_dinov2 and cmmd need [evaluation] reference")?;
    let r = match reference {
        Reference::ToyData { seed, per_class } => {
            let (images, labels) = toy::dataset(*seed, *per_class)?;
            let (emb, _) = Embedder::load(be, spec.backbone, &spec.weights)?;
            let rows = emb.embed(be, &images, (labels.len(), toy::SIZE, toy::SIZE, 3))?;
            let m = vec![npz::Member {
                key: "embedding".into(),
                npy: npy::encode_f32(&[labels.len(), rows.len() / labels.len().max(1)], &rows)?,
            }];
            return toy_reference(reference, m);
        }
        Reference::File(r) => r,
    };
    let keys = npz::keys(r)?;
    if keys.iter().any(|k| k == "embedding") {
        let mut set = FeatureSet::open(r)?;
        set.cache_gaussians()?;
        return Ok(set);
    }
    ensure!(
        keys.iter().any(|k| k == "arr_0"),
        "{}: fd_dinov2 and cmmd need reference images (`arr_0`) or an `embedding`; it has: {}",
        r.display(),
        keys.join(", ")
    );
    let (emb, _) = Embedder::load(be, spec.backbone, &spec.weights)?;
    let (m, _) = embedding_members(be, &emb, std::slice::from_ref(r), &Subset::default(), 16)?;
    let mut set = FeatureSet::from_members(r, m);
    set.cache_gaussians()?;
    Ok(set)
}

pub(super) fn i64_member(key: &str, v: &[i64]) -> Result<npz::Member> {
    Ok(npz::Member {
        key: key.into(),
        npy: npy::encode_i64(&[v.len()], v)?,
    })
}
