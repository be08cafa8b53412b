//! `sitdiv synth-weights`: seeded random weights of a network's released architecture, written
//! as a safetensors file under the upstream names, so that every command (and a whole sweep)
//! can be tried, timed and profiled on a node without downloads. Never for results.

use std::path::Path;

use anyhow::{bail, Result};

use crate::models::clip::ClipVisionConfig;
use crate::models::dinov2::Dinov2Config;
use crate::models::sit::SiTConfig;
use crate::models::synthetic;
use crate::models::vae::VaeConfig;
use crate::weights::write_f32_safetensors;

/// The networks it writes, by the name `--net` takes.
pub const NETS: &[&str] = &[
    "SiT-{XL,L,B,S}/{2,4,8}",
    "sd-vae",
    "inception",
    "dinov2-b14",
    "clip-b32",
    "resnet50",
];

/// Writes `net`'s weights (`image_size` for a SiT) drawn from `seed` to `out`.
pub fn write(net: &str, image_size: usize, seed: u64, out: &Path) -> Result<()> {
    let mut metadata = std::collections::HashMap::new();
    metadata.insert("synthetic".to_string(), format!("{net}, seed {seed}"));
    let synth = match net {
        "sd-vae" => synthetic::vae(&VaeConfig::sd(), seed).into_iter().collect(),
        "inception" => synthetic::inception(seed)?,
        "resnet50" => synthetic::resnet50(seed)?,
        "dinov2-b14" => {
            synthetic::formula_weights(Dinov2Config::released(false).expected_tensors(), seed)?
        }
        "clip-b32" => synthetic::formula_weights(ClipVisionConfig::b32().expected_tensors(), seed)?,
        sit if sit.starts_with("SiT") => {
            let cfg = SiTConfig::preset(sit, image_size)?;
            metadata.insert("config".to_string(), serde_json::to_string(&cfg)?);
            synthetic::sit(&cfg, seed)
        }
        other => bail!("--net {other}: expected one of {}", NETS.join(", ")),
    };
    let tensors: Vec<_> = synth
        .tensors
        .into_iter()
        .map(|(name, (shape, data))| (name, shape, data))
        .collect();
    let params: usize = tensors.iter().map(|t| t.2.len()).sum();
    write_f32_safetensors(out, &tensors, Some(metadata))?;
    log::warn!(
        "{}: seeded random {net} weights ({params} parameters): for trying the pipeline out, never for results",
        out.display()
    );
    Ok(())
}
