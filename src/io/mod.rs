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

/// Writes `bytes` as a checked file: its manifest (`manifest` with the data's `data_sha256`)
/// first, then the data, each through a temporary name, and `between` in between (the tests'
/// fault injection). A file counts as written only when [`read_checked`] accepts it, so a task
/// killed at any point leaves nothing that passes for done.
pub fn write_checked(
    path: &Path,
    bytes: &[u8],
    mut manifest: serde_json::Value,
    between: impl FnOnce() -> Result<()>,
) -> Result<()> {
    manifest["data_sha256"] = sha256_hex(bytes).into();
    write_atomic(
        &manifest_path(path),
        serde_json::to_string_pretty(&manifest)?.as_bytes(),
    )?;
    between()?;
    write_atomic(path, bytes)
}

/// A checked file's bytes and manifest, when the manifest's `data_sha256` is the data's.
pub fn read_checked(path: &Path) -> Result<(Vec<u8>, serde_json::Value)> {
    let mpath = manifest_path(path);
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&mpath)
            .with_context(|| format!("cannot read {}", mpath.display()))?,
    )
    .with_context(|| format!("{}: not JSON", mpath.display()))?;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(
        m["data_sha256"].as_str() == Some(sha256_hex(&bytes).as_str()),
        "checksum mismatch"
    );
    Ok((bytes, m))
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
