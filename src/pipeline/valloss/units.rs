//! The validation loss's work units: `--batch` consecutive images of the permutation each,
//! written as `units/u<k>.npz` with a manifest (the data's SHA-256 and what made it) through a
//! temporary name, so shards share the work, a rerun skips what is done, and the merged losses
//! are the bytes of one run.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::io::{npy, npz, read_checked, write_checked};

/// Unit `k`: positions `range` of the permutation.
pub(super) struct Unit {
    pub k: usize,
    pub range: std::ops::Range<usize>,
}

/// The units of `len` permuted images in `batch`es; shard `i` of `n` takes a contiguous block.
pub(super) fn shard(len: usize, batch: usize, i: usize, n: usize) -> Result<Vec<Unit>> {
    ensure!(
        n >= 1 && i < n,
        "--shard-index {i} of --num-shards {n}: expected 0 ≤ I < S"
    );
    let count = len.div_ceil(batch);
    let (lo, hi) = (count * i / n, count * (i + 1) / n);
    Ok((lo..hi)
        .map(|k| Unit {
            k,
            range: k * batch..((k + 1) * batch).min(len),
        })
        .collect())
}

pub(super) fn count(len: usize, batch: usize) -> usize {
    len.div_ceil(batch)
}

pub(super) fn file(out: &Path, k: usize) -> PathBuf {
    out.join("units").join(format!("u{k:05}.npz"))
}

/// Writes unit `k`'s losses (rows of `segments`) and image indices; `identity` says what made it.
pub(super) fn write(
    out: &Path,
    k: usize,
    losses: &[Vec<f64>],
    indices: &[usize],
    identity: &serde_json::Value,
) -> Result<()> {
    let s = losses.first().map_or(0, Vec::len);
    let flat: Vec<f64> = losses.iter().flatten().copied().collect();
    let idx: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    let path = file(out, k);
    let members = [
        npz::Member {
            key: "loss".into(),
            npy: npy::encode_f64(&[losses.len(), s], &flat)?,
        },
        npz::Member {
            key: "image_index".into(),
            npy: npy::encode_i64(&[idx.len()], &idx)?,
        },
    ];
    let bytes = npz::to_bytes(&path, &members)?;
    write_checked(
        &path,
        &bytes,
        serde_json::json!({ "unit": identity }),
        || Ok(()),
    )
}

/// Unit `k`'s losses when its file is there, matches its manifest's checksum and was made by
/// `identity`; `None` when it must be computed (again).
pub(super) fn read(out: &Path, k: usize, identity: &serde_json::Value) -> Option<Vec<Vec<f64>>> {
    let path = file(out, k);
    let check = || -> Result<Vec<Vec<f64>>> {
        let (_, m) = read_checked(&path)?;
        ensure!(&m["unit"] == identity, "made with other settings");
        let members = npz::read(&path)?;
        let loss = members
            .iter()
            .find(|m| m.key == "loss")
            .context("no `loss`")?;
        let a = npy::decode_f64(&path, &loss.npy)?;
        ensure!(
            a.shape.len() == 2 && a.shape[1] > 0,
            "loss shape {:?}",
            a.shape
        );
        Ok(a.data
            .chunks_exact(a.shape[1])
            .map(<[f64]>::to_vec)
            .collect())
    };
    match check() {
        Ok(l) => Some(l),
        Err(e) => {
            if path.exists() {
                log::warn!("{}: {e:#}; computing it again", path.display());
            }
            None
        }
    }
}
