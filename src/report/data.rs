//! What a report reads: the merged results of each run config (values and bootstrap intervals)
//! and, from the unit files, per-class embeddings and kept images.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::io::{npy, npz, write_atomic};
use crate::pipeline::sweep::merge::MergedResult;

/// (backbone or "", metric, scope, statistic): one reported number.
pub type Key = (String, String, String, String);

/// One run config's results as merge wrote them.
pub struct Row {
    pub run: PathBuf,
    pub config: Value,
    pub id: String,
    pub values: BTreeMap<Key, f64>,
    pub intervals: BTreeMap<Key, (f64, f64)>,
}

impl Row {
    pub fn s(&self, k: &str) -> String {
        match &self.config[k] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            v => v.to_string(),
        }
    }
    pub fn f(&self, k: &str) -> Option<f64> {
        self.config[k].as_f64()
    }
    pub fn get(&self, k: &Key) -> Option<f64> {
        self.values.get(k).copied()
    }
    pub fn interval(&self, k: &Key) -> Option<(f64, f64)> {
        self.intervals.get(k).copied()
    }
}

pub fn key(b: &str, m: &str, scope: &str, stat: &str) -> Key {
    (b.into(), m.into(), scope.into(), stat.into())
}

/// Short label of a reported number: `fid`, `dinov2-b14 diversity mixed`.
pub fn label(k: &Key) -> String {
    let mut s = if k.0.is_empty() {
        k.1.clone()
    } else {
        format!("{} {}", k.0, k.1)
    };
    if k.2 != "all" {
        s += &format!(" {}", k.2);
    }
    if k.3 == "std" {
        s += " std";
    }
    s
}

pub fn load_rows(runs: &[PathBuf]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for run in runs {
        let dir = run.join("results");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| {
                format!(
                    "{}: no results/ (run `sitdiv sweep merge` first)",
                    run.display()
                )
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.to_string_lossy();
                n.ends_with(".json") && !n.ends_with(".manifest.json")
            })
            .collect();
        files.sort();
        ensure!(!files.is_empty(), "{}: no result files", dir.display());
        for f in files {
            rows.push(read_result(run, &f)?);
        }
    }
    Ok(rows)
}

/// One run config's results file: its values (quality metrics under backbone "") and intervals.
fn read_result(run: &Path, f: &Path) -> Result<Row> {
    let text =
        std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
    let r: MergedResult<Value> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a results file of `sitdiv sweep merge`",
            f.display()
        )
    })?;
    let groups = r.quality.iter().map(|q| ("", q));
    let groups = groups.chain(r.backbones.iter().map(|(b, m)| (b.as_str(), m)));
    let mut values = BTreeMap::new();
    for (b, m) in groups {
        for ((metric, scope, stat), x) in m.rows() {
            if let Some(x) = x {
                values.insert((b.to_string(), metric, scope, stat), x);
            }
        }
    }
    let intervals = r
        .bootstrap
        .iter()
        .flat_map(|boot| &boot.intervals)
        .map(|i| {
            let k = key(&i.backbone, &i.metric, &i.scope, &i.statistic);
            (k, (i.lo, i.hi))
        })
        .collect();
    let id = r.config["id"].as_str().unwrap_or_default().to_string();
    ensure!(!id.is_empty(), "{}: no config id", f.display());
    Ok(Row {
        run: run.to_path_buf(),
        config: r.config,
        id,
        values,
        intervals,
    })
}

/// Per-class mean cosine distance of a config's embeddings (from its unit files).
pub fn per_class_diversity(run: &Path, id: &str, backbone: &str) -> Result<Vec<f64>> {
    let files = unit_files(run, id)?;
    let key = format!("{backbone}.embedding");
    let mut by_class: BTreeMap<i64, Vec<Vec<f64>>> = BTreeMap::new();
    for f in files {
        let m = npz::read_only(&f, &[key.as_str(), "arr_1"])?;
        let get = |k: &str| m.iter().find(|x| x.key == k).map(|x| &x.npy);
        let (Some(e), Some(l)) = (get(&key), get("arr_1")) else {
            continue;
        };
        let e = npy::decode_f32(&f, e)?;
        let l = npy::decode_i64(&f, l)?;
        let d = e.shape.get(1).copied().unwrap_or(0);
        for (row, &c) in e.data.chunks(d.max(1)).zip(&l.data) {
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            by_class
                .entry(c)
                .or_default()
                .push(row.iter().map(|&v| v as f64 / norm).collect());
        }
    }
    Ok(by_class
        .values()
        .filter(|v| v.len() >= 2)
        .map(|v| {
            let mut s = 0.0;
            let mut n = 0;
            for i in 0..v.len() {
                for j in i + 1..v.len() {
                    s += 1.0 - v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum::<f64>();
                    n += 1;
                }
            }
            s / n as f64
        })
        .collect())
}

/// A grid of up to 8 classes × 8 samples of a config's kept images, magnified to ≥ 48 px.
pub fn sample_grid(run: &Path, id: &str, path: &Path) -> Result<bool> {
    let files = unit_files(run, id)?;
    let mut by_class: BTreeMap<i64, Vec<Vec<u8>>> = BTreeMap::new();
    let mut dims = (0, 0);
    for f in files {
        let m = npz::read_only(&f, &["arr_0", "arr_1"])?;
        let get = |k: &str| m.iter().find(|x| x.key == k).map(|x| &x.npy);
        let (Some(a), Some(l)) = (get("arr_0"), get("arr_1")) else {
            return Ok(false); // images were not kept
        };
        let a = npy::decode_u8(&f, a)?;
        let l = npy::decode_i64(&f, l)?;
        ensure!(
            a.shape.len() == 4 && a.shape[3] == 3,
            "{}: arr_0 is not (N, H, W, 3)",
            f.display()
        );
        dims = (a.shape[1], a.shape[2]);
        for (img, &c) in a.data.chunks(dims.0 * dims.1 * 3).zip(&l.data) {
            let v = by_class.entry(c).or_default();
            if v.len() < 8 {
                v.push(img.to_vec());
            }
        }
    }
    let classes: Vec<&Vec<Vec<u8>>> = by_class.values().take(8).collect();
    if classes.is_empty() {
        return Ok(false);
    }
    let scale = (48 / dims.0.max(1)).max(1);
    let (h, w) = (dims.0 * scale, dims.1 * scale);
    let cols = classes.iter().map(|c| c.len()).max().unwrap_or(1);
    let gap = 2;
    let (gw, gh) = (cols * (w + gap) + gap, classes.len() * (h + gap) + gap);
    let mut canvas = vec![255u8; gw * gh * 3];
    for (r, imgs) in classes.iter().enumerate() {
        for (q, img) in imgs.iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    let src = ((y / scale) * dims.1 + x / scale) * 3;
                    let dst = ((r * (h + gap) + gap + y) * gw + q * (w + gap) + gap + x) * 3;
                    canvas[dst..dst + 3].copy_from_slice(&img[src..src + 3]);
                }
            }
        }
    }
    let mut png = Vec::new();
    use image::ImageEncoder;
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(
            &canvas,
            gw as u32,
            gh as u32,
            image::ExtendedColorType::Rgb8,
        )
        .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &png)?;
    Ok(true)
}

/// A run config's unit files in name order (class, then start index).
fn unit_files(run: &Path, id: &str) -> Result<Vec<PathBuf>> {
    let dir = run.join("units").join(id);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    files.sort();
    Ok(files)
}

/// The quality headline: FID.
pub fn fid_key() -> Key {
    key("", "fid", "all", "value")
}

/// The diversity headline: the first backbone's mean mixed diversity, if any backbone has one.
pub fn headline_diversity(keys: &[Key]) -> Option<&Key> {
    keys.iter()
        .find(|k| k.1 == "diversity" && k.2 == "mixed" && k.3 == "mean")
}
