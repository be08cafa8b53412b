//! The toy study, embedded in the binary so that `sitdiv demo` runs from any folder (and after
//! `cargo install`): its sweep file and the two small models it names (3.2 MB) are written under
//! the output folder's `inputs/` in the repository's layout, so the sweep file's relative paths
//! and its checksum are those of `sweeps/toy.toml`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::backend::Backend;
use crate::io::{npy, npz};
use crate::pipeline::valloss::{self, ValLossJob};
use crate::sampling::path::PathType;
use crate::sampling::Prediction;

/// The output folder of the embedded study without `--out` (its sweep's name is `toy`).
pub const DEFAULT_OUT: &str = "runs/toy";

/// The embedded files, by their path in the repository.
const FILES: &[(&str, &[u8])] = &[
    (
        "sweeps/toy.toml",
        include_bytes!("../../../sweeps/toy.toml"),
    ),
    (
        "assets/toy/toy_sit.safetensors",
        include_bytes!("../../../assets/toy/toy_sit.safetensors"),
    ),
    (
        "assets/toy/toy_classifier.safetensors",
        include_bytes!("../../../assets/toy/toy_classifier.safetensors"),
    ),
    (
        "assets/toy/toy_sit_guide.safetensors",
        include_bytes!("../../../assets/toy/toy_sit_guide.safetensors"),
    ),
];

/// Writes the embedded toy study under `dir` (a file already there with the same bytes is kept)
/// and returns its sweep file.
pub fn write_toy_study(dir: &Path) -> Result<PathBuf> {
    for (name, bytes) in FILES {
        let path = dir.join(name);
        if std::fs::read(&path).ok().as_deref() != Some(*bytes) {
            if let Some(parent) = path.parent() {
                crate::io::probe_folder(parent)?;
            }
            crate::io::write_atomic(&path, bytes)?;
        }
    }
    Ok(dir.join(FILES[0].0))
}

/// The study's validation-loss experiment in pixel space: the toy SiT's loss on the held-out
/// toy images of seed 1 (100 a class, their true labels) for N = 10 … 1 000, written under the
/// run folder's `valloss/` for the report.
pub fn toy_valloss<B: Backend>(be: &B, inputs: &Path, run: &Path) -> Result<()> {
    let (images, labels) = crate::toy::dataset(1, 100)?;
    let n = labels.len();
    let side = crate::toy::SIZE;
    let held_out = inputs.join("toy-heldout.npz");
    npz::write(
        &held_out,
        &[
            npz::Member {
                key: "arr_0".into(),
                npy: npy::encode_u8(&[n, side, side, 3], &images)?,
            },
            npz::Member {
                key: "arr_1".into(),
                npy: npy::encode_i64(&[n], &labels)?,
            },
        ],
    )?;
    let job = ValLossJob {
        weights: inputs.join("assets/toy/toy_sit.safetensors"),
        vae: None,
        images: held_out,
        labels: None,
        n: vec![10, 50, 200, 1000],
        segments: 4,
        seed: 0,
        t_jitter: false,
        sample_posterior: false,
        path: PathType::Linear,
        prediction: Prediction::Velocity,
        image_size: side,
        batch: 100,
        bootstrap: 200,
        out: run.join("valloss"),
        shard_index: 0,
        num_shards: 1,
    };
    valloss::run(be, &job)
}
