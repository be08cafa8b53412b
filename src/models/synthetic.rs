//! Seeded synthetic weights: for benchmarks and for runs that must work without downloads.
//! They are random, not trained; samples from them are structured noise, not images.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::sit::SiTConfig;
use crate::rng;
use crate::weights::source::Synthetic;
use crate::weights::Expected;

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

/// Tensors from the counter-based formula that `scripts/dump_golden.py` documents and evaluates
/// too. With u = `rng::uniform(seed, t, 0, STREAM_WEIGHTS, numel)` and t the rank of the name
/// among all names sorted bytewise, in f64, then rounded to f32: 4-D (conv) weights
/// (2u − 1)·√(6/fan_in); 2-D and 3-D weights (linear, tokens, positions) (2u − 1)·√(3/fan_in);
/// 1-D `weight`, `running_var` and layer-scale `lambda1` 0.5 + u, except a bottleneck's last BN
/// weight (`bn3.weight`) 0.2u, which keeps residual sums bounded; other 1-D tensors (biases,
/// running_mean, class embeddings) 0.2u − 0.1.
pub fn formula_weights(mut expected: Vec<Expected>, seed: u64) -> Result<Synthetic> {
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let mut tensors = BTreeMap::new();
    for (t, e) in expected.into_iter().enumerate() {
        let numel: usize = e.shape.iter().product();
        let u = rng::uniform(seed, t as u64, 0, rng::STREAM_WEIGHTS, numel);
        let name = e.name.as_str();
        let fan_in = e.shape[1..].iter().product::<usize>() as f64;
        let f: Box<dyn Fn(f64) -> f64> = match (e.shape.len(), name) {
            (4, _) => {
                let a = (6.0 / fan_in).sqrt();
                Box::new(move |u| (2.0 * u - 1.0) * a)
            }
            (2 | 3, _) => {
                let a = (3.0 / fan_in).sqrt();
                Box::new(move |u| (2.0 * u - 1.0) * a)
            }
            (1, n) if n.ends_with("bn3.weight") => Box::new(|u| 0.2 * u),
            (1, n)
                if n.ends_with(".weight")
                    || n.ends_with(".running_var")
                    || n.ends_with(".lambda1") =>
            {
                Box::new(|u| 0.5 + u)
            }
            (1, _) => Box::new(|u| 0.2 * u - 0.1),
            _ => bail!("no synthetic formula for tensor {name} {:?}", e.shape),
        };
        let data = u.into_iter().map(|u| f(u) as f32).collect();
        tensors.insert(e.name, (e.shape, data));
    }
    Ok(Synthetic { tensors })
}

/// SD-VAE encoder tensors (`encoder.*`, `quant_conv.*`, diffusers names) from
/// [`formula_weights`].
pub fn vae_encoder(config: &super::vae::VaeConfig, seed: u64) -> Result<Synthetic> {
    let expected = config
        .expected_encoder_tensors()
        .into_iter()
        .map(|(k, s)| Expected::new(k, &s))
        .collect();
    formula_weights(expected, seed)
}

/// FID Inception tensors from [`formula_weights`].
pub fn inception(seed: u64) -> Result<Synthetic> {
    formula_weights(
        super::inception::InceptionV3::<crate::backend::cpu::Cpu>::expected_tensors(),
        seed,
    )
}

/// ResNet-50 trunk tensors from [`formula_weights`].
pub fn resnet50(seed: u64) -> Result<Synthetic> {
    formula_weights(
        super::resnet::ResNet50::<crate::backend::cpu::Cpu>::expected_tensors(),
        seed,
    )
}
