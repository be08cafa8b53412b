//! The toy study, embedded in the binary so that `sitdiv demo` runs from any folder (and after
//! `cargo install`): its sweep file and the two small models it names (3.2 MB) are written under
//! the output folder's `inputs/` in the repository's layout, so the sweep file's relative paths
//! and its checksum are those of `sweeps/toy.toml`.

use std::path::{Path, PathBuf};

use anyhow::Result;

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
