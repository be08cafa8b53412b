//! Memory-mapped safetensors files: names, shapes, dtypes and bytes — nothing of models or devices.
//!
//! The header is parsed here rather than by `safetensors::SafeTensors`, because that parser rejects a
//! truncated file as a whole, while we want to name every tensor whose bytes are missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use safetensors::Dtype;
use serde::Deserialize;

pub mod source;

/// Where one tensor lives inside the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Absolute byte range in the file.
    pub start: usize,
    pub end: usize,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Deserialize)]
struct RawEntry {
    dtype: Dtype,
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// A safetensors file, memory-mapped. Tensors are read (and converted) on demand.
pub struct WeightFile {
    path: PathBuf,
    mmap: Mmap,
    tensors: BTreeMap<String, TensorInfo>,
    metadata: BTreeMap<String, String>,
}

/// One expected tensor of a model: its upstream name and shape.
#[derive(Debug, Clone)]
pub struct Expected {
    pub name: String,
    pub shape: Vec<usize>,
}

impl Expected {
    pub fn new(name: impl Into<String>, shape: &[usize]) -> Self {
        Expected {
            name: name.into(),
            shape: shape.to_vec(),
        }
    }
}

fn dtype_size(dtype: Dtype) -> Option<usize> {
    Some(match dtype {
        Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
        Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
        Dtype::U8 | Dtype::I8 | Dtype::BOOL => 1,
        _ => return None,
    })
}

impl WeightFile {
    /// Maps `path` and parses its header. Fails with the file name on anything that is not a
    /// well-formed safetensors header. Tensors whose bytes lie past the end of a truncated file
    /// are kept and reported by [`WeightFile::check`] / [`WeightFile::f32`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path)
            .with_context(|| format!("cannot open weights file {}", path.display()))?;
        // SAFETY: the file is opened read-only; we never hand out references that outlive `self`.
        let mmap = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot map {}", path.display()))?;
        let not_st = |why: &str| {
            anyhow::anyhow!(
                "{} is not a safetensors file: {why} (expected an 8-byte little-endian header length, then a JSON header)",
                path.display()
            )
        };
        if mmap.len() < 8 {
            return Err(not_st(&format!("only {} bytes", mmap.len())));
        }
        let n =
            u64::from_le_bytes(mmap[..8].try_into().map_err(|_| not_st("short header"))?) as usize;
        if n == 0 || n > 100_000_000 || 8 + n > mmap.len() {
            return Err(not_st(&format!(
                "header length {n} does not fit a file of {} bytes",
                mmap.len()
            )));
        }
        let header =
            std::str::from_utf8(&mmap[8..8 + n]).map_err(|_| not_st("header is not UTF-8"))?;
        let raw: BTreeMap<String, serde_json::Value> = serde_json::from_str(header)
            .map_err(|e| not_st(&format!("header is not a JSON object ({e})")))?;
        let base = 8 + n;
        let mut tensors = BTreeMap::new();
        let mut metadata = BTreeMap::new();
        for (name, value) in raw {
            if name == "__metadata__" {
                metadata = serde_json::from_value(value)
                    .map_err(|e| not_st(&format!("__metadata__ is not a string map ({e})")))?;
                continue;
            }
            let e: RawEntry = serde_json::from_value(value)
                .map_err(|e| not_st(&format!("entry {name:?} is malformed ({e})")))?;
            let Some(size) = dtype_size(e.dtype) else {
                bail!(
                    "{}: tensor {name} has unsupported dtype {:?}",
                    path.display(),
                    e.dtype
                );
            };
            let Some(bytes) = e.shape.iter().try_fold(size, |a, &d| a.checked_mul(d)) else {
                bail!(
                    "{}: tensor {name} has an overflowing shape {:?}",
                    path.display(),
                    e.shape
                );
            };
            let (s, t) = e.data_offsets;
            if t < s || t - s != bytes || base.checked_add(t).is_none() {
                bail!(
                    "{}: tensor {name} has data_offsets {s}..{t} ({} bytes) but shape {:?} × {:?} needs {} bytes",
                    path.display(),
                    t.saturating_sub(s),
                    e.shape,
                    e.dtype,
                    bytes
                );
            }
            tensors.insert(
                name,
                TensorInfo {
                    dtype: e.dtype,
                    shape: e.shape,
                    start: base + s,
                    end: base + t,
                },
            );
        }
        Ok(WeightFile {
            path,
            mmap,
            tensors,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// The shape of a tensor, or an error naming the file and the tensor.
    pub fn shape(&self, name: &str) -> Result<Vec<usize>> {
        Ok(self
            .info(name)
            .with_context(|| format!("{}: missing tensor {name}", self.path.display()))?
            .shape
            .clone())
    }

    /// A whole-number field of the `config` JSON in the metadata, when there is one.
    pub fn config_usize(&self, key: &str) -> Option<usize> {
        let c: serde_json::Value = serde_json::from_str(self.metadata.get("config")?).ok()?;
        c[key].as_u64().map(|v| v as usize)
    }

    /// The raw bytes of the whole file (for hashing).
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    fn truncated(&self, info: &TensorInfo) -> bool {
        info.end > self.mmap.len()
    }

    /// Checks every expected tensor (present, shape, float dtype, bytes inside the file) and that no
    /// other tensor is present (names in `ignored_prefixes` are allowed extras). Two kinds of
    /// extras that upstream state_dicts hold are accepted with a log line: BatchNorm's
    /// `num_batches_tracked` counters, and aliases that name an expected tensor a second time
    /// with equal bytes (the `lpips` package registers each head as `linN` and `lins.N`).
    /// Reports all problems at once.
    pub fn check(&self, expected: &[Expected], ignored_prefixes: &[&str]) -> Result<()> {
        let mut problems = Vec::new();
        for e in expected {
            match self.tensors.get(&e.name) {
                None => problems.push(format!(
                    "missing tensor {} (expected shape {:?})",
                    e.name, e.shape
                )),
                Some(info) => {
                    if info.shape != e.shape {
                        problems.push(format!(
                            "tensor {}: wrong shape, expected {:?}, found {:?}",
                            e.name, e.shape, info.shape
                        ));
                    }
                    if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                        problems.push(format!(
                            "tensor {}: wrong dtype, expected F32, F16 or BF16, found {:?}",
                            e.name, info.dtype
                        ));
                    }
                    if self.truncated(info) {
                        problems.push(format!(
                            "tensor {}: file truncated, its bytes end at {} but the file has {} bytes",
                            e.name,
                            info.end,
                            self.mmap.len()
                        ));
                    }
                }
            }
        }
        let known: std::collections::HashSet<&str> =
            expected.iter().map(|e| e.name.as_str()).collect();
        let (mut counters, mut aliases) = (0, Vec::new());
        for name in self.tensors.keys() {
            if known.contains(name.as_str()) || ignored_prefixes.iter().any(|p| name.starts_with(p))
            {
                continue;
            }
            if name.ends_with(".num_batches_tracked") && self.tensors[name].numel() == 1 {
                counters += 1;
            } else if let Some(of) = self.alias_of(name, expected) {
                aliases.push(format!("{name} = {of}"));
            } else {
                problems.push(format!(
                    "unexpected tensor {name} (shape {:?})",
                    self.tensors[name].shape
                ));
            }
        }
        if problems.is_empty() {
            if counters > 0 {
                log::info!(
                    "{}: ignoring {counters} BatchNorm num_batches_tracked counter(s)",
                    self.path.display()
                );
            }
            if !aliases.is_empty() {
                log::info!(
                    "{}: ignoring {} second name(s) of equal tensors: {}",
                    self.path.display(),
                    aliases.len(),
                    aliases.join(", ")
                );
            }
            return Ok(());
        }
        let mut msg = format!(
            "{}: {} problem(s) with the weights:",
            self.path.display(),
            problems.len()
        );
        for p in &problems {
            let _ = write!(msg, "\n  - {p}");
        }
        bail!(msg)
    }

    /// The expected tensor that `name` repeats: same dtype, shape and bytes.
    fn alias_of<'e>(&self, name: &str, expected: &'e [Expected]) -> Option<&'e str> {
        let info = &self.tensors[name];
        let bytes = self.mmap.get(info.start..info.end)?;
        expected.iter().map(|e| e.name.as_str()).find(|e| {
            self.tensors.get(*e).is_some_and(|o| {
                o.dtype == info.dtype
                    && o.shape == info.shape
                    && self.mmap.get(o.start..o.end) == Some(bytes)
            })
        })
    }

    fn get(&self, name: &str) -> Result<&TensorInfo> {
        let info = self
            .tensors
            .get(name)
            .with_context(|| format!("{}: missing tensor {name}", self.path.display()))?;
        if self.truncated(info) {
            bail!(
                "{}: tensor {name} lies past the end of the (truncated) file",
                self.path.display()
            );
        }
        Ok(info)
    }

    /// Reads a float tensor (F32, F16 or BF16 stored) as f32, in row-major order.
    pub fn f32(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.get(name)?;
        let bytes = &self.mmap[info.start..info.end];
        Ok(match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::F64 => bytes
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
            d => bail!(
                "{}: tensor {name} has dtype {d:?}, expected a float type",
                self.path.display()
            ),
        })
    }

    /// Reads an F64 tensor.
    pub fn f64(&self, name: &str) -> Result<Vec<f64>> {
        let info = self.get(name)?;
        if info.dtype != Dtype::F64 {
            bail!(
                "{}: tensor {name} has dtype {:?}, expected F64",
                self.path.display(),
                info.dtype
            );
        }
        let bytes = &self.mmap[info.start..info.end];
        Ok(bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// Reads an integer tensor (I64, I32 or U8) as i64.
    pub fn i64(&self, name: &str) -> Result<Vec<i64>> {
        let info = self.get(name)?;
        let bytes = &self.mmap[info.start..info.end];
        Ok(match info.dtype {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
                .collect(),
            Dtype::U8 => bytes.iter().map(|&b| b as i64).collect(),
            d => bail!(
                "{}: tensor {name} has dtype {d:?}, expected an integer type",
                self.path.display()
            ),
        })
    }
}

/// Writes named f32 tensors as a safetensors file (used for synthetic weights and test fixtures).
pub fn write_f32_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, d)| bytemuck::cast_slice(d).to_vec())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            Ok((name.clone(), TensorView::new(Dtype::F32, shape.clone(), b)?))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .context("building safetensors views")?;
    let out = safetensors::serialize(views, metadata).context("serialising safetensors")?;
    crate::io::write_atomic(path, &sorted_header(&out)?)
}

/// `file` with its JSON header's keys sorted (the `__metadata__` map's too), padded with spaces
/// to a multiple of 8 bytes as safetensors writes it: the serializer keeps a hash map's order,
/// and equal tensors must give equal bytes.
fn sorted_header(file: &[u8]) -> Result<Vec<u8>> {
    let n = u64::from_le_bytes(file[..8].try_into()?) as usize;
    // serde_json's maps are sorted by key.
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n])?;
    let mut text = serde_json::to_string(&header)?;
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(file.len() + 8);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&file[8 + n..]);
    Ok(out)
}
