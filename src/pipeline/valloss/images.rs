//! Held-out images for the validation loss: a folder of JPEG or PNG files in sorted name order
//! or an ADM-style npz, and their labels matched by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use crate::io::{npy, npz};

/// Held-out images: names in order and where each one's pixels come from.
pub(super) struct Images {
    pub names: Vec<String>,
    source: Source,
}

enum Source {
    Files(Vec<PathBuf>),
    /// (N, H, W, 3) uint8.
    Batch(npy::Array<u8>),
}

impl Images {
    pub(super) fn open(path: &Path) -> Result<(Self, Option<Vec<i64>>)> {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            let names = files
                .iter()
                .map(|f| {
                    f.file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            return Ok((
                Images {
                    names,
                    source: Source::Files(files),
                },
                None,
            ));
        }
        let members = npz::read(path)?;
        let get = |k: &str| members.iter().find(|m| m.key == k);
        let arr = get("arr_0").with_context(|| format!("{}: no `arr_0` images", path.display()))?;
        let images = npy::decode_u8(path, &arr.npy)?;
        ensure!(
            images.shape.len() == 4 && images.shape[3] == 3,
            "{}: `arr_0` is {:?}, expected uint8 RGB images (N, H, W, 3)",
            path.display(),
            images.shape
        );
        let labels = get("arr_1")
            .map(|m| npy::decode_i64(path, &m.npy))
            .transpose()?;
        let names = (0..images.shape[0]).map(|i| i.to_string()).collect();
        Ok((
            Images {
                names,
                source: Source::Batch(images),
            },
            labels.map(|l| l.data),
        ))
    }

    /// Image `i` as (H, W, 3) uint8.
    pub(super) fn pixels(&self, i: usize) -> Result<(Vec<u8>, (usize, usize))> {
        match &self.source {
            Source::Batch(a) => {
                let (h, w) = (a.shape[1], a.shape[2]);
                Ok((a.data[i * h * w * 3..(i + 1) * h * w * 3].to_vec(), (h, w)))
            }
            Source::Files(files) => {
                let img = crate::io::image::read_rgb(&files[i])?;
                Ok((img.data, (img.height, img.width)))
            }
        }
    }
}

/// The class of each image, matched by name: a missing, unknown or repeated name is an error
/// naming it.
pub(super) fn match_labels(names: &[String], file: &Path) -> Result<Vec<i64>> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut by_name: BTreeMap<&str, i64> = BTreeMap::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty());
        let (Some(name), Some(class), None) = (f.next(), f.next(), f.next()) else {
            bail!(
                "{} line {}: expected `name class`, got {line:?}",
                file.display(),
                k + 1
            );
        };
        let class: i64 = class.parse().with_context(|| {
            format!(
                "{} line {}: class {class:?} is not an integer",
                file.display(),
                k + 1
            )
        })?;
        ensure!(
            by_name.insert(name, class).is_none(),
            "{} line {}: image {name} has a second label",
            file.display(),
            k + 1
        );
    }
    let known: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    if let Some(extra) = by_name.keys().find(|n| !known.contains(*n)) {
        bail!(
            "{}: a label for {extra}, which is not among the images",
            file.display()
        );
    }
    names
        .iter()
        .map(|n| {
            by_name
                .get(n.as_str())
                .copied()
                .with_context(|| format!("{}: no label for image {n}", file.display()))
        })
        .collect()
}
