//! Where a model gets its tensors: a memory-mapped weights file, or tensors held in memory
//! (seeded synthetic weights). Models load from `&dyn TensorSource` and never see which.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::{Expected, WeightFile};

/// Where a model gets its tensors.
pub trait TensorSource {
    /// How errors name the source: the file's path, or "synthetic weights".
    fn origin(&self) -> String;
    /// Every tensor name, sorted.
    fn tensor_names(&self) -> Vec<&str>;
    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>>;
    /// An entry of the safetensors `__metadata__` (e.g. `config`).
    fn metadata_entry(&self, key: &str) -> Option<&str>;
    /// Checks names, shapes and dtypes against `expected`, all problems at once.
    fn check(&self, expected: &[Expected]) -> Result<()>;
    /// `check`, passing over the tensors whose names start with one of `ignored` (parts of a
    /// checkpoint that inference does not use, such as REPA's projectors).
    fn check_ignoring(&self, expected: &[Expected], ignored: &[&str]) -> Result<()> {
        let _ = ignored;
        self.check(expected)
    }
    fn f32(&self, name: &str) -> Result<Vec<f32>>;
}

impl TensorSource for WeightFile {
    fn origin(&self) -> String {
        self.path().display().to_string()
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.names().collect()
    }
    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.info(name).map(|i| i.shape.clone())
    }
    fn metadata_entry(&self, key: &str) -> Option<&str> {
        self.metadata().get(key).map(String::as_str)
    }
    fn check(&self, expected: &[Expected]) -> Result<()> {
        WeightFile::check(self, expected, &[])
    }
    fn check_ignoring(&self, expected: &[Expected], ignored: &[&str]) -> Result<()> {
        WeightFile::check(self, expected, ignored)
    }
    fn f32(&self, name: &str) -> Result<Vec<f32>> {
        WeightFile::f32(self, name)
    }
}

/// Tensors held in memory.
pub struct Synthetic {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl FromIterator<(String, Vec<usize>, Vec<f32>)> for Synthetic {
    fn from_iter<I: IntoIterator<Item = (String, Vec<usize>, Vec<f32>)>>(it: I) -> Self {
        Synthetic {
            tensors: it.into_iter().map(|(n, s, d)| (n, (s, d))).collect(),
        }
    }
}

impl TensorSource for Synthetic {
    fn origin(&self) -> String {
        "synthetic weights".into()
    }
    fn tensor_names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }
    fn tensor_shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|(s, _)| s.clone())
    }
    fn metadata_entry(&self, _key: &str) -> Option<&str> {
        None
    }
    fn check(&self, expected: &[Expected]) -> Result<()> {
        for e in expected {
            match self.tensors.get(&e.name) {
                Some((shape, _)) if *shape == e.shape => {}
                _ => bail!("synthetic weights lack {} {:?}", e.name, e.shape),
            }
        }
        Ok(())
    }
    fn f32(&self, name: &str) -> Result<Vec<f32>> {
        match self.tensors.get(name) {
            Some((_, d)) => Ok(d.clone()),
            None => bail!("synthetic weights lack {name}"),
        }
    }
}
