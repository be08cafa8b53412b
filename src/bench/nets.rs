//! The networks of a study point besides SiT, on formula weights of their released sizes: the
//! SD-VAE decoder, the FID Inception and the diversity backbones, timed per batch on any backend,
//! each row with what one batch after the warm-up asked of the device.

use std::time::Instant;

use anyhow::{ensure, Result};
use serde_json::Value;

use crate::backend::cpu::Cpu;
use crate::backend::Backend;
use crate::models::clip::{ClipVision, ClipVisionConfig};
use crate::models::dinov2::{Dinov2, Dinov2Config};
use crate::models::dreamsim::{DreamSim, DreamSimConfig};
use crate::models::inception::InceptionV3;
use crate::models::lpips::{Lpips, LpipsNet};
use crate::models::preprocess::{Pipeline, PIPELINE_SIZE};
use crate::models::resnet::ResNet50;
use crate::models::synthetic;
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::rng;

/// Batch size, untimed warm-up batches (at least one) and timed batches.
pub struct NetBench {
    pub batch: usize,
    pub warmup: usize,
    pub iters: usize,
}

/// `after − before` for every number of a counters object (recursively).
pub(super) fn delta(before: &serde_json::Value, after: &serde_json::Value) -> serde_json::Value {
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

/// Seconds per batch (median and best), and the counters of one batch after the warm-up.
struct Timed {
    median: f64,
    best: f64,
    per_batch: Option<Value>,
}

fn time<B: Backend>(be: &B, b: &NetBench, mut f: impl FnMut() -> Result<()>) -> Result<Timed> {
    for _ in 0..b.warmup.max(1) {
        f()?;
    }
    let before = be.counters();
    f()?;
    let per_batch = before.zip(be.counters()).map(|(a, c)| delta(&a, &c));
    let mut times = Vec::with_capacity(b.iters.max(1));
    for _ in 0..b.iters.max(1) {
        let s = Instant::now();
        f()?;
        times.push(s.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok(Timed {
        median: times[times.len() / 2],
        best: times[0],
        per_batch,
    })
}

fn header() {
    println!("| network | px | batch | device | median s/batch | img/s (median) | img/s (best) | launches | GEMMs | allocations | host syncs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
}

/// One row; the last four columns per batch after the warm-up (– where the backend counts
/// nothing). Launches include graph launches.
fn row(name: &str, px: usize, batch: usize, device: &str, t: &Timed) {
    let count = |k: &str| -> String {
        let Some(c) = &t.per_batch else {
            return "–".into();
        };
        let n = |v: &Value| v.as_f64().unwrap_or(0.0) as u64;
        match k {
            "launches" => (n(&c["launches"]) + n(&c["graph_launches"])).to_string(),
            "gemms" => c["gemms"]
                .as_object()
                .map_or(0, |g| g.values().map(n).sum::<u64>())
                .to_string(),
            k => n(&c[k]).to_string(),
        }
    };
    println!(
        "| {name} | {px} | {batch} | {device} | {:.4} | {:.1} | {:.1} | {} | {} | {} | {} |",
        t.median,
        batch as f64 / t.median,
        batch as f64 / t.best,
        count("launches"),
        count("gemms"),
        count("allocations"),
        count("host_syncs")
    );
}

pub(super) fn random_images(seed: u64, n: usize, side: usize) -> Vec<u8> {
    rng::uniform(seed, 0, 0, 0, n * side * side * 3)
        .iter()
        .map(|u| (u * 256.0) as u8)
        .collect()
}

/// The SD-VAE decoder (synthetic weights of the released architecture) decoding `batch` latents
/// of `image_size / 8` px.
pub fn vae<B: Backend>(be: &B, image_size: usize, b: &NetBench) -> Result<()> {
    ensure!(
        b.batch >= 1 && image_size >= 8 && image_size.is_multiple_of(8),
        "bench vae: --batch ≥ 1 and an --image-size that is a multiple of 8"
    );
    let weights: crate::weights::source::Synthetic =
        synthetic::vae(&VaeConfig::sd(), 0).into_iter().collect();
    let vae = AutoencoderKL::load(be, &weights)?;
    let l = image_size / 8;
    let z = rng::gaussian(2, 0, 0, 0, b.batch * 4 * l * l);
    let t = time(be, b, || vae.decode(be, &z, b.batch, l, l, None).map(drop))?;
    header();
    row("SD-VAE decoder", image_size, b.batch, &be.name(), &t);
    Ok(())
}

/// The FID Inception on formula weights: `batch` random 256 × 256 images per forward, the TF1
/// resize (on the host) included.
pub fn inception<B: Backend>(be: &B, b: &NetBench) -> Result<()> {
    ensure!(b.batch >= 1, "bench inception: --batch must be at least 1");
    let net = InceptionV3::load(be, &synthetic::inception(0)?)?;
    let side = 256;
    let images = random_images(3, b.batch, side);
    let t = time(be, b, || {
        net.forward_images(be, &images, (b.batch, side, side, 3))
            .map(drop)
    })?;
    header();
    row("FID Inception-v3", side, b.batch, &be.name(), &t);
    Ok(())
}

/// A forward of `n` prepared images (N, 3, 224, 224).
type Forward<'a> = Box<dyn Fn(&[f32], usize) -> Result<()> + 'a>;

/// The diversity backbones at their released sizes on formula weights.
struct Backbones<B: Backend> {
    dino: Dinov2<B>,
    clip: ClipVision<B>,
    resnet: ResNet50<B>,
    dreamsim: DreamSim<B>,
    lpips: Lpips<B>,
}

pub(super) fn dinov2<B: Backend>(be: &B, large: bool) -> Result<Dinov2<B>> {
    let cfg = Dinov2Config::released(large);
    Dinov2::load(
        be,
        &synthetic::formula_weights(cfg.expected_tensors(), 0)?,
        cfg,
    )
}

pub(super) fn lpips<B: Backend>(be: &B, net: LpipsNet) -> Result<Lpips<B>> {
    let mut w = synthetic::formula_weights(net.expected_tensors(), 0)?;
    for (name, (_, data)) in w.tensors.iter_mut() {
        // The heads must be non-negative (and the scaling layer positive): take magnitudes.
        if name.starts_with("lin") || name.starts_with("scaling_layer") {
            data.iter_mut().for_each(|v| *v = v.abs() + 0.01);
        }
    }
    Lpips::load(be, &w, net)
}

pub(super) fn clip<B: Backend>(be: &B) -> Result<ClipVision<B>> {
    let cfg = ClipVisionConfig::b32();
    ClipVision::load(
        be,
        &synthetic::formula_weights(cfg.expected_tensors(), 0)?,
        cfg,
    )
}

pub(super) fn dreamsim<B: Backend>(be: &B) -> Result<DreamSim<B>> {
    let cfg = DreamSimConfig::released();
    DreamSim::load(
        be,
        &synthetic::formula_weights(cfg.expected_tensors(), 0)?,
        cfg,
    )
}

pub(super) fn resnet<B: Backend>(be: &B) -> Result<ResNet50<B>> {
    ResNet50::load(be, &synthetic::resnet50(0)?)
}

impl<B: Backend> Backbones<B> {
    /// DINOv2-B/14, CLIP-B/32, MoCo v3's ResNet-50, DreamSim and LPIPS-Alex.
    fn load(be: &B) -> Result<Self> {
        Ok(Backbones {
            dino: dinov2(be, false)?,
            clip: clip(be)?,
            resnet: resnet(be)?,
            dreamsim: dreamsim(be)?,
            lpips: lpips(be, LpipsNet::Alex)?,
        })
    }

    /// The embedding backbones: name, preprocessing, a forward of `n` prepared images.
    fn rows<'a>(&'a self, be: &'a B) -> Vec<(&'static str, Pipeline, Forward<'a>)> {
        let s = PIPELINE_SIZE;
        vec![
            (
                "dinov2-b14 (ViT-B/14)",
                Pipeline::Dinov2Hf,
                Box::new(move |x, n| self.dino.forward(be, x, n, (s, s)).map(drop)),
            ),
            (
                "clip-b32 (ViT-B/32)",
                Pipeline::ClipHf,
                Box::new(move |x, n| self.clip.forward(be, x, n).map(drop)),
            ),
            (
                "dreamsim (3 × ViT-B/16)",
                Pipeline::DreamSim,
                Box::new(move |x, n| self.dreamsim.embed(be, x, n).map(drop)),
            ),
            (
                "mocov3-r50 (ResNet-50)",
                Pipeline::Mocov3,
                Box::new(move |x, n| self.resnet.forward(be, x, n, (s, s)).map(drop)),
            ),
        ]
    }
}

/// Every diversity backbone and DINOv2-L/14 (FD-DINOv2) on `be`, `batch` images per forward: the
/// ViTs and the ResNet on random prepared 224 px inputs (the preprocessing is the host's), LPIPS
/// (AlexNet and VGG16 trunks) on random 256 px images.
pub fn backbones<B: Backend>(be: &B, b: &NetBench) -> Result<()> {
    ensure!(b.batch >= 1, "bench backbones: --batch must be at least 1");
    let nets = Backbones::load(be)?;
    let s = PIPELINE_SIZE;
    let x = rng::gaussian(4, 0, 0, 0, b.batch * 3 * s * s);
    header();
    let device = be.name();
    for (name, _, run) in nets.rows(be) {
        let t = time(be, b, || run(&x, b.batch))?;
        row(name, s, b.batch, &device, &t);
    }
    let large = dinov2(be, true)?;
    let t = time(be, b, || large.forward(be, &x, b.batch, (s, s)).map(drop))?;
    row("dinov2-l14 (ViT-L/14)", s, b.batch, &device, &t);
    drop(large);
    let side = 256;
    let images = random_images(5, b.batch, side);
    let t = time(be, b, || {
        nets.lpips
            .features(be, &images, (b.batch, side, side, 3))
            .map(drop)
    })?;
    row("lpips-alex (AlexNet taps)", side, b.batch, &device, &t);
    let vgg = lpips(be, LpipsNet::Vgg)?;
    let t = time(be, b, || {
        vgg.features(be, &images, (b.batch, side, side, 3))
            .map(drop)
    })?;
    row("lpips-vgg (VGG16 taps)", side, b.batch, &device, &t);
    Ok(())
}

/// The backbones on the CPU at `sitdiv features`' pace: `images` random 256 × 256 images in one
/// forward, preprocessing included.
pub(super) fn diversity_backbones(images: usize) -> Result<()> {
    let side = 256;
    let imgs = random_images(4, images, side);
    let nets = Backbones::load(&Cpu)?;
    println!("| backbone | px | images | threads | seconds | img/s |");
    println!("|---|---|---|---|---|---|");
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    nets.lpips.features(&Cpu, &imgs, (images, side, side, 3))?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "| lpips-alex (AlexNet taps, feature rows) | {side} | {images} | {threads} | {secs:.2} | {:.2} |",
        images as f64 / secs
    );
    let one = side * side * 3;
    for (name, pipeline, run) in nets.rows(&Cpu) {
        let prepare = || -> Vec<f32> {
            imgs.chunks(one)
                .flat_map(|img| pipeline.prepare(img, (side, side)))
                .collect()
        };
        run(&pipeline.prepare(&imgs[..one], (side, side)), 1)?; // warm-up
        let t = Instant::now();
        run(&prepare(), images)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| {name} | {side} | {images} | {threads} | {secs:.2} | {:.2} |",
            images as f64 / secs
        );
    }
    Ok(())
}

/// The validation loss's work per batch of images: the SD-VAE encoder (synthetic weights of the
/// released architecture) on `batch` random images, then per time segment the path's x_t, a SiT
/// forward and the loss, as `sitdiv valloss` does (its image decoding and crop aside).
pub fn valloss<B: Backend>(be: &B, model: &str, segments: usize, b: &NetBench) -> Result<()> {
    use crate::models::sit::{SiT, SiTConfig};
    use crate::models::vae::{Encoder, Posterior};
    use crate::sampling::{loss, path::PathType, Prediction};
    ensure!(
        b.batch >= 1 && segments >= 1,
        "bench valloss: --batch and --segments ≥ 1"
    );
    let cfg = SiTConfig::preset(model, 256)?;
    let sit = SiT::load(be, &synthetic::sit(&cfg, 0), cfg.clone())?;
    let vcfg = VaeConfig::sd();
    let enc = Encoder::load(be, &synthetic::vae_encoder(&vcfg, 0)?, Some(vcfg))?;
    let n = b.batch;
    let x: Vec<f32> = rng::uniform(4, 0, 0, 0, n * 3 * 256 * 256)
        .into_iter()
        .map(|u| (2.0 * u - 1.0) as f32)
        .collect();
    let y: Vec<i64> = (0..n as i64).collect();
    let t = time(be, b, || {
        let m = enc.moments(be, &x, n, (256, 256), None)?;
        let x1 = Posterior::new(&m, n, 4)?.mean;
        for s in 0..segments {
            let ts = vec![(s as f32 + 0.5) / segments as f32; n];
            let x0 = rng::gaussian(5, s as u64, 0, 0, x1.len());
            let (xt, ut) = loss::plan(PathType::Linear, &ts, &x0, &x1)?;
            let out = sit.forward(be, &xt, &ts, &y)?;
            loss::loss(PathType::Linear, Prediction::Velocity, &ts, &x0, &ut, &out)?;
        }
        Ok(())
    })?;
    header();
    row(
        &format!("valloss: SD-VAE encoder + {segments} × {model}"),
        256,
        n,
        &be.name(),
        &t,
    );
    Ok(())
}
