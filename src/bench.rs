//! `sitdiv bench`: throughput of the networks on synthetic weights, printed as a table.

use std::time::Instant;

use anyhow::Result;

use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::models::clip::{ClipVision, ClipVisionConfig};
use crate::models::dinov2::{Dinov2, Dinov2Config, Dinov2Names};
use crate::models::dreamsim::{DreamSim, DreamSimConfig};
use crate::models::lpips::{Lpips, LpipsNet};
use crate::models::preprocess::{Pipeline, PIPELINE_SIZE};
use crate::models::resnet::ResNet50;
use crate::models::sit::{SiT, SiTConfig};
use crate::models::synthetic;
use crate::rng;

pub struct SitBench {
    pub model: String,
    pub image_size: usize,
    pub batch: usize,
    pub warmup: usize,
    pub iters: usize,
    pub precision: crate::backend::Precision,
}

/// Dense peak TFLOP/s of a card for a precision (vendor data sheets, SXM parts), when known.
fn peak_tflops(device: &str, precision: crate::backend::Precision) -> Option<f64> {
    use crate::backend::Precision::*;
    let (fp32, tf32, bf16) = if device.contains("H100") || device.contains("H200") {
        (66.9, 494.7, 989.4)
    } else if device.contains("A100") {
        (19.5, 156.0, 312.0)
    } else if device.contains("L40S") {
        (91.6, 183.0, 362.0)
    } else {
        return None;
    };
    Some(match precision {
        Fp32 => fp32,
        Tf32 => tf32,
        Bf16 => bf16,
    })
}

/// `after − before` for every number of a counters object (recursively).
fn delta(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (before, after) {
        (Value::Number(a), Value::Number(b)) => {
            serde_json::json!(b.as_f64().unwrap_or(0.0) - a.as_f64().unwrap_or(0.0))
        }
        (Value::Object(a), Value::Object(b)) => Value::Object(
            b.iter()
                .map(|(k, v)| (k.clone(), delta(a.get(k).unwrap_or(&Value::Null), v)))
                .collect(),
        ),
        (Value::Null, Value::Number(b)) => Value::Number(b.clone()),
        (Value::Null, Value::Object(_)) => delta(&serde_json::json!({}), after),
        (_, b) => b.clone(),
    }
}

/// Times `iters` forwards of a SiT on `be` after `warmup` untimed ones and prints one table row,
/// then what one forward after the warm-up asked of the device, when the backend counts it.
pub fn sit<B: Backend>(be: &B, b: &SitBench) -> Result<()> {
    let cfg = SiTConfig::preset(&b.model, b.image_size)?;
    let model = SiT::load(be, &synthetic::sit(&cfg, 0), cfg.clone())?;
    let n = b.batch;
    let x = rng::gaussian(1, 0, 0, 0, n * cfg.sample_len());
    let t: Vec<f32> = (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect();
    let y: Vec<i64> = (0..n as i64).map(|i| i % cfg.num_classes as i64).collect();
    for _ in 0..b.warmup.max(1) {
        model.forward(be, &x, &t, &y)?;
    }
    let before = be.counters();
    model.forward(be, &x, &t, &y)?;
    let per_forward = before.zip(be.counters()).map(|(a, b)| delta(&a, &b));
    let mut times = Vec::with_capacity(b.iters);
    for _ in 0..b.iters.max(1) {
        let s = Instant::now();
        model.forward(be, &x, &t, &y)?;
        times.push(s.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let best = times[0];
    let gmacs = cfg.macs_per_image() / 1e9;
    let tflops = 2.0 * gmacs * n as f64 / median / 1e3;
    let peak = peak_tflops(&be.name(), b.precision)
        .map_or("-".to_string(), |p| format!("{:.1} %", 100.0 * tflops / p));
    println!("| model | px | batch | device | precision | median s/forward | img/s (median) | img/s (best) | TFLOP/s (median) | % of peak |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {} | {} | {} | {:?} | {:.4} | {:.2} | {:.2} | {:.2} | {} |",
        b.model,
        b.image_size,
        n,
        be.name(),
        b.precision,
        median,
        n as f64 / median,
        n as f64 / best,
        tflops,
        peak
    );
    if let Some(c) = per_forward {
        let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0) as u64;
        println!();
        println!("| per forward after warm-up | launches | graph launches | GEMMs by compute type | allocations | host syncs |");
        println!("|---|---|---|---|---|---|");
        println!(
            "| counted by sitdiv | {} | {} | {} | {} | {} |",
            num(&c["launches"]),
            num(&c["graph_launches"]),
            c["gemms"],
            num(&c["allocations"]),
            num(&c["host_syncs"])
        );
        let s = &c["standin"];
        if s.is_object() {
            println!(
                "| seen by the emulated device's driver | {} | {} | {} | {} | {} |",
                num(&s["launches"]),
                num(&s["graph_launches"]),
                s["gemms_by_compute"],
                num(&s["allocations"]),
                num(&s["host_syncs"])
            );
        }
    }
    Ok(())
}

pub struct VaeBench {
    pub image_size: usize,
    pub batch: usize,
    pub warmup: usize,
    pub iters: usize,
}

/// Times the SD-VAE decoder (synthetic weights of the real architecture) on `be`.
pub fn vae<B: Backend>(be: &B, b: &VaeBench) -> Result<()> {
    use crate::models::vae::{AutoencoderKL, VaeConfig};
    let cfg = VaeConfig::sd();
    let weights: crate::weights::source::Synthetic = synthetic::vae(&cfg, 0).into_iter().collect();
    let vae = AutoencoderKL::load(be, &weights)?;
    let l = b.image_size / 8;
    let z = rng::gaussian(2, 0, 0, 0, b.batch * 4 * l * l);
    for _ in 0..b.warmup {
        vae.decode(be, &z, b.batch, l, l, None)?;
    }
    let mut times = Vec::new();
    for _ in 0..b.iters.max(1) {
        let s = Instant::now();
        vae.decode(be, &z, b.batch, l, l, None)?;
        times.push(s.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let (median, best) = (times[times.len() / 2], times[0]);
    println!("| network | px | batch | device | median s/decode | img/s (median) | img/s (best) |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| SD-VAE decoder | {} | {} | {} | {:.3} | {:.3} | {:.3} |",
        b.image_size,
        b.batch,
        be.name(),
        median,
        b.batch as f64 / median,
        b.batch as f64 / best
    );
    Ok(())
}

/// Times the Fréchet distance of two random full-rank d×d covariances.
pub fn fid(d: usize) -> Result<()> {
    use crate::metrics::fid::frechet_distance;
    use faer::Mat;
    let spd = |seed: u64| {
        let a = rng::gaussian(seed, 0, 0, 0, d * d);
        let a = Mat::<f64>::from_fn(d, d, |i, j| a[i * d + j] as f64);
        let mut s = Mat::<f64>::zeros(d, d);
        faer::linalg::matmul::matmul(
            s.as_mut(),
            faer::Accum::Replace,
            a.as_ref(),
            a.transpose(),
            1.0 / d as f64,
            faer::Par::rayon(0),
        );
        s
    };
    let (s1, s2) = (spd(11), spd(12));
    let mu1: Vec<f64> = rng::gaussian(13, 0, 0, 0, d)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let mu2: Vec<f64> = rng::gaussian(14, 0, 0, 0, d)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let t = Instant::now();
    let v = frechet_distance(&mu1, s1.as_ref(), &mu2, s2.as_ref())?;
    let secs = t.elapsed().as_secs_f64();
    println!("| metric | dim | threads | seconds | value |");
    println!("|---|---|---|---|---|");
    println!(
        "| Fréchet distance (eigendecomposition route) | {d} | {} | {secs:.2} | {v:.6} |",
        rayon::current_num_threads()
    );
    Ok(())
}

/// The diversity backbones at full size on formula weights, on the CPU.
struct Backbones {
    dino: Dinov2<Cpu>,
    clip: ClipVision<Cpu>,
    resnet: ResNet50<Cpu>,
    dreamsim: DreamSim<Cpu>,
    lpips: Lpips<Cpu>,
}

/// One forward of a backbone on a prepared image.
type Run<'a> = Box<dyn Fn(&[f32]) -> Result<Vec<f32>> + 'a>;

impl Backbones {
    /// DINOv2-B/14 and CLIP-B/32 at their released sizes, MoCo v3's ResNet-50, DreamSim and
    /// LPIPS-Alex.
    fn load() -> Result<Self> {
        let dcfg = Dinov2Config {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            mlp_hidden: 3072,
            patch_size: 14,
            position_grid: 37,
            prefix: String::new(),
            names: Dinov2Names::Hub,
        };
        let ccfg = ClipVisionConfig {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            patch_size: 32,
            image_size: 224,
            projection_dim: 512,
        };
        let dino = Dinov2::load(
            &Cpu,
            &synthetic::formula_weights(dcfg.expected_tensors(), 0)?,
            dcfg,
        )?;
        let clip = ClipVision::load(
            &Cpu,
            &synthetic::formula_weights(ccfg.expected_tensors(), 0)?,
            ccfg,
        )?;
        let resnet = ResNet50::load(&Cpu, &synthetic::resnet50(0)?)?;
        let scfg = DreamSimConfig::released();
        let dreamsim = DreamSim::load(
            &Cpu,
            &synthetic::formula_weights(scfg.expected_tensors(), 0)?,
            scfg,
        )?;
        let mut lw = synthetic::formula_weights(LpipsNet::Alex.expected_tensors(), 0)?;
        for (name, (_, data)) in lw.tensors.iter_mut() {
            // The heads must be non-negative (and the scaling layer positive): take magnitudes.
            if name.starts_with("lin") || name.starts_with("scaling_layer") {
                data.iter_mut().for_each(|v| *v = v.abs() + 0.01);
            }
        }
        let lpips = Lpips::load(&Cpu, &lw, LpipsNet::Alex)?;
        Ok(Backbones {
            dino,
            clip,
            resnet,
            dreamsim,
            lpips,
        })
    }

    /// The embedding backbones: name, preprocessing, one forward of one image.
    fn rows(&self) -> Vec<(&'static str, Pipeline, Run<'_>)> {
        let s = PIPELINE_SIZE;
        vec![
            (
                "dinov2-b14 (ViT-B/14)",
                Pipeline::Dinov2Hf,
                Box::new(move |x| self.dino.forward(&Cpu, x, 1, (s, s))),
            ),
            (
                "clip-b32 (ViT-B/32)",
                Pipeline::ClipHf,
                Box::new(move |x| self.clip.forward(&Cpu, x, 1)),
            ),
            (
                "dreamsim (3 × ViT-B/16)",
                Pipeline::DreamSim,
                Box::new(move |x| self.dreamsim.embed(&Cpu, x, 1)),
            ),
            (
                "mocov3-r50 (ResNet-50)",
                Pipeline::Mocov3,
                Box::new(move |x| self.resnet.forward(&Cpu, x, 1, (s, s))),
            ),
        ]
    }
}

/// The diversity backbones at full size on formula weights: `images` random 256 × 256 images,
/// preprocessing included, one image per forward (as `sitdiv features` runs them), on the CPU.
fn diversity_backbones(images: usize) -> Result<()> {
    let side = 256;
    let imgs: Vec<Vec<u8>> = (0..images)
        .map(|i| {
            rng::uniform(4, i as u64, 0, 0, side * side * 3)
                .iter()
                .map(|u| (u * 256.0) as u8)
                .collect()
        })
        .collect();
    let nets = Backbones::load()?;
    println!("| backbone | px | images | threads | seconds | img/s |");
    println!("|---|---|---|---|---|---|");
    let t = Instant::now();
    for img in &imgs {
        nets.lpips.features(&Cpu, img, (1, side, side, 3))?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "| lpips-alex (AlexNet taps, feature rows) | {side} | {images} | {} | {secs:.2} | {:.2} |",
        rayon::current_num_threads(),
        images as f64 / secs
    );
    for (name, pipeline, run) in nets.rows() {
        run(&pipeline.prepare(&imgs[0], (side, side)))?; // warm-up
        let t = Instant::now();
        for img in &imgs {
            run(&pipeline.prepare(img, (side, side)))?;
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| {name} | {side} | {images} | {} | {secs:.2} | {:.2} |",
            rayon::current_num_threads(),
            images as f64 / secs
        );
    }
    Ok(())
}

/// The distance stage of the diversity metrics on random labelled embeddings: all pairs of `n`
/// rows of width `dim` (cosine diversity, intra/inter/mixed) and the Vendi score; then the
/// backbones on `images` images (0 skips them).
pub fn diversity(n: usize, dim: usize, classes: usize, images: usize) -> Result<()> {
    use crate::metrics::diversity::{cosine_diversity, vendi_by_class};
    anyhow::ensure!(
        n >= 2 && dim >= 1 && classes >= 1,
        "bench diversity: n ≥ 2, dim ≥ 1, classes ≥ 1"
    );
    let x = rng::gaussian(21, 0, 0, 0, n * dim);
    let labels: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let pairs = (n * (n - 1) / 2) as f64;
    let t = Instant::now();
    let d = cosine_diversity(&x, dim, Some(&labels))?;
    let secs_div = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (v, _) = vendi_by_class(&x, dim, &labels)?;
    let secs_vendi = t.elapsed().as_secs_f64();
    println!("| stage | n | dim | classes | threads | seconds | pairs/s | value |");
    println!("|---|---|---|---|---|---|---|---|");
    let threads = rayon::current_num_threads();
    println!(
        "| cosine diversity (intra/inter/mixed, f64) | {n} | {dim} | {classes} | {threads} | {secs_div:.3} | {:.3e} | mixed {:.6} |",
        pairs / secs_div,
        d.mixed_mean.unwrap_or(f64::NAN)
    );
    println!(
        "| Vendi (all + per class, f64) | {n} | {dim} | {classes} | {threads} | {secs_vendi:.3} | – | {v:.4} |"
    );
    if images > 0 {
        println!();
        diversity_backbones(images)?;
    }
    Ok(())
}

/// The FID Inception on formula weights: `batch` random 256 × 256 images per forward, the TF1
/// resize included.
pub fn inception<B: Backend>(be: &B, batch: usize, warmup: usize, iters: usize) -> Result<()> {
    use crate::models::inception::InceptionV3;
    anyhow::ensure!(batch >= 1, "bench inception: --batch must be at least 1");
    let net = InceptionV3::load(be, &synthetic::inception(0)?)?;
    let side = 256;
    let images: Vec<u8> = rng::uniform(3, 0, 0, 0, batch * side * side * 3)
        .iter()
        .map(|u| (u * 256.0) as u8)
        .collect();
    let run = || net.forward_images(be, &images, (batch, side, side, 3));
    for _ in 0..warmup {
        run()?;
    }
    let mut times = Vec::with_capacity(iters.max(1));
    for _ in 0..iters.max(1) {
        let s = Instant::now();
        run()?;
        times.push(s.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let (median, best) = (times[times.len() / 2], times[0]);
    println!(
        "| network | px | batch | device | median s/forward | img/s (median) | img/s (best) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| FID Inception | {side} | {batch} | {} | {median:.3} | {:.3} | {:.3} |",
        be.name(),
        batch as f64 / median,
        batch as f64 / best
    );
    Ok(())
}
