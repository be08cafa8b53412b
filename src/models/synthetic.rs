//! Seeded synthetic weights: for benchmarks and for runs that must work without downloads.
//! They are random, not trained; samples from them are structured noise, not images.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::sit::SiTConfig;
use crate::sampling::rng;
use crate::weights::{Expected, WeightFile};

/// Where a model gets its tensors: a weights file, or synthetic ones in memory.
pub trait TensorSource {
    /// Checks names, shapes and dtypes against `expected`, all problems at once.
    fn check(&self, expected: &[Expected]) -> Result<()>;
    fn f32(&self, name: &str) -> Result<Vec<f32>>;
}

impl TensorSource for WeightFile {
    fn check(&self, expected: &[Expected]) -> Result<()> {
        WeightFile::check(self, expected, &[])
    }
    fn f32(&self, name: &str) -> Result<Vec<f32>> {
        WeightFile::f32(self, name)
    }
}

/// Tensors held in memory.
pub struct Synthetic {
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl TensorSource for Synthetic {
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

/// MAE's fixed 2-D sin-cos embedding (G², D), computed in f64 and rounded: per token (i, j),
/// `[sin(j·ω), cos(j·ω), sin(i·ω), cos(i·ω)]` with ω_k = 10000^(−k/(D/4)).
pub fn sincos_pos_embed(d: usize, grid: usize) -> Vec<f32> {
    let q = d / 4;
    let omega: Vec<f64> = (0..q)
        .map(|k| 1.0 / 10000f64.powf(k as f64 / (d as f64 / 4.0)))
        .collect();
    let mut out = Vec::with_capacity(grid * grid * d);
    for i in 0..grid {
        for j in 0..grid {
            for pos in [j as f64, i as f64] {
                out.extend(omega.iter().map(|w| (pos * w).sin() as f32));
                out.extend(omega.iter().map(|w| (pos * w).cos() as f32));
            }
        }
    }
    out
}

/// Every SiT tensor drawn from N(0, std²) with a fan-in scaled std (biases N(0, 0.02²)), the
/// positional embedding as upstream computes it. A pure function of (config, seed).
pub fn sit(config: &SiTConfig, seed: u64) -> Synthetic {
    let mut tensors = BTreeMap::new();
    for (k, e) in config.expected_tensors().into_iter().enumerate() {
        let numel: usize = e.shape.iter().product();
        let data = if e.name == "pos_embed" {
            sincos_pos_embed(config.hidden_size, config.grid())
        } else {
            let std = if e.shape.len() == 1 {
                0.02
            } else {
                let fan_in: usize = e.shape[1..].iter().product();
                let gain = if e.name.starts_with("final_layer.linear") {
                    0.5
                } else {
                    1.0
                };
                (gain / (fan_in as f32).sqrt()).clamp(0.01, 0.2)
            };
            rng::gaussian(seed, k as u64, 0, rng::STREAM_WEIGHTS, numel)
                .into_iter()
                .map(|v| v * std)
                .collect()
        };
        tensors.insert(e.name, (e.shape, data));
    }
    Synthetic { tensors }
}

/// Seeded synthetic SD-VAE decoder tensors (diffusers names) for `config`: convolutions and
/// projections N(0, 1/fan_in), norms at identity, biases 0. For benchmarks and offline demos.
pub fn vae(config: &super::vae::VaeConfig, seed: u64) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    config
        .expected_tensors()
        .into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let numel: usize = shape.iter().product();
            let data = if shape.len() == 1 {
                let norm_weight = name.ends_with(".weight");
                vec![if norm_weight { 1.0 } else { 0.0 }; numel]
            } else {
                let fan_in: usize = shape[1..].iter().product();
                let std = 1.0 / (fan_in as f32).sqrt();
                rng::gaussian(seed, k as u64, 1, rng::STREAM_WEIGHTS, numel)
                    .into_iter()
                    .map(|v| v * std)
                    .collect()
            };
            (name, shape, data)
        })
        .collect()
}
