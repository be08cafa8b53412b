//! The ground floor: files and their formats. `.npy` arrays (through `npyz`), `.npz` batches,
//! atomic writes, manifests beside data files, hashes and the host name. Nothing here knows
//! models, devices or jobs.

pub mod image;
pub mod npy;
pub mod npz;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The machine's host name (for manifests), or "" when it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A manifest: what every one records (the tool and its version, the device, the host and the
/// time) and the writer's own `fields`, one JSON object.
pub fn manifest(tool: &str, device: &str, fields: serde_json::Value) -> serde_json::Value {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut m = serde_json::json!({
        "tool": tool,
        "version": env!("CARGO_PKG_VERSION"),
        "device": device,
        "host": hostname(),
        "unix_time": unix_time,
    });
    if let (Some(m), serde_json::Value::Object(f)) = (m.as_object_mut(), fields) {
        m.extend(f);
    }
    m
}
