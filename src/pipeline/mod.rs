//! Work units, sharding and atomic output files. The only module that writes outputs.

pub mod decode;
pub mod embed;
pub mod evaluate;
pub mod features;
pub mod grid;
pub mod inputs;
pub mod inspect;
pub mod npy;
pub mod npz;
pub mod progress;
pub mod sample;
pub mod sweep;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Writes `bytes` to `path` through a temporary sibling and a rename, so a reader (or a resumed
/// job) never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_name(path);
    let result = (|| -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create folder {}", dir.display()))?;
        }
        let mut f = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes a data file and its `<file>.manifest.json` sidecar: the manifest first, so a data file
/// always has one, and removed again if the data cannot be written, so nothing partial is left.
pub fn write_with_manifest(
    path: &Path,
    manifest: &serde_json::Value,
    write_data: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let mpath = manifest_path(path);
    write_atomic(&mpath, serde_json::to_string_pretty(manifest)?.as_bytes())?;
    if let Err(e) = write_data(path) {
        let _ = std::fs::remove_file(&mpath);
        return Err(e);
    }
    Ok(())
}

/// `<file>.manifest.json` beside a data file.
pub fn manifest_path(data: &Path) -> PathBuf {
    let mut p = data.as_os_str().to_owned();
    p.push(".manifest.json");
    PathBuf::from(p)
}

/// Fails early, before any compute, when `dir` cannot be created or written.
pub fn probe_folder(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let probe = dir.join(format!(".sitdiv-probe.{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("cannot write into folder {}", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

/// A fixed batch of consecutive global sample indices `[start, end)`. Everything that couples
/// samples (GEMM shapes, dopri5's batch-wide error norm, guidance's doubled batch) stays inside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Unit {
    pub index: usize,
    pub start: usize,
    pub end: usize,
}

impl Unit {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// All units of a run of `num_samples` samples cut into units of `unit_size`.
pub fn units(num_samples: usize, unit_size: usize) -> Vec<Unit> {
    (0..num_samples.div_ceil(unit_size))
        .map(|u| Unit {
            index: u,
            start: u * unit_size,
            end: ((u + 1) * unit_size).min(num_samples),
        })
        .collect()
}

/// The units of shard `shard_index` out of `num_shards`: a contiguous block of units, so the
/// shards' outputs concatenated in shard order are the run's samples in global order.
pub fn shard_units(
    num_samples: usize,
    unit_size: usize,
    shard_index: usize,
    num_shards: usize,
) -> Result<Vec<Unit>> {
    if unit_size == 0 {
        bail!("--unit-size must be at least 1");
    }
    if num_shards == 0 || shard_index >= num_shards {
        bail!("--shard-index {shard_index} must be below --num-shards {num_shards}");
    }
    let all = units(num_samples, unit_size);
    let k = all.len();
    let (lo, hi) = (
        k * shard_index / num_shards,
        k * (shard_index + 1) / num_shards,
    );
    Ok(all[lo..hi].to_vec())
}
