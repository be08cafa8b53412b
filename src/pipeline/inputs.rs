//! What a sampling run starts from: initial noise, labels and SDE noise, read from files or
//! derived from the seed, and cut per work unit.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::settings::{InputSettings, Method, Origin, SampleJob};
use super::Unit;
use crate::io::npy;
use crate::models::sit::SiTConfig;
use crate::rng;
use crate::sampling::repa::RepaMethod;
use crate::sampling::sde::NoiseSource;

/// Initial noise and labels of the whole run: given arrays, or derived from the seed.
pub struct Inputs {
    pub z: Option<npy::Array<f32>>,
    pub y: Option<Vec<i64>>,
    pub replay: Option<npy::Array<f32>>,
    pub num_samples: usize,
}

/// Reads and checks the job's input files against the model, and sets the sample count.
pub fn read_inputs(job: &SampleJob, cfg: &SiTConfig) -> Result<Inputs> {
    let guided = job.doubled_batch();
    let s = &job.inputs;
    let want = [cfg.in_channels, cfg.input_size, cfg.input_size];
    let z = s
        .init_noise
        .as_deref()
        .map(|p| read_init_noise(p, want))
        .transpose()?;
    check_classes(s, job.origin, cfg)?;
    let num_samples = sample_count(s, job.origin, cfg, z.as_ref().map(|a| a.shape[0]))?;
    let y = s
        .labels
        .as_deref()
        .map(|p| read_labels(p, num_samples, cfg))
        .transpose()?;
    let replay = match &s.replay_noise {
        Some(_)
            if matches!(
                job.sampler.method,
                Method::Ode(_) | Method::Repa(RepaMethod::Euler | RepaMethod::Heun)
            ) =>
        {
            bail!("--replay-noise replays SDE noise; the ODE draws none")
        }
        Some(p) => {
            let b = if guided { 2 * num_samples } else { num_samples };
            Some(read_replay(p, job.sampler.steps - 1, b, want)?)
        }
        None => None,
    };
    Ok(Inputs {
        z,
        y,
        replay,
        num_samples,
    })
}

/// Initial noise, float32 (N, C, H, W) with the model's sample shape `want`.
fn read_init_noise(p: &Path, want: [usize; 3]) -> Result<npy::Array<f32>> {
    let a = npy::read_f32(p)?;
    ensure!(
        a.shape.len() == 4 && a.shape[1..] == want,
        "{}: init noise has shape {:?}, expected (N, {}, {}, {}) float32",
        p.display(),
        a.shape,
        want[0],
        want[1],
        want[2]
    );
    Ok(a)
}

/// The selected classes exist in the model and do not meet given labels.
fn check_classes(s: &InputSettings, o: Origin, cfg: &SiTConfig) -> Result<()> {
    let Some(c) = &s.classes else {
        return Ok(());
    };
    let key = o.key("classes");
    ensure!(!c.is_empty(), "{key} selects no class");
    if let Some(bad) = c.iter().find(|&&l| l < 0 || l as usize >= cfg.num_classes) {
        bail!(
            "{key}: class {bad} is outside 0..{} (the model's classes)",
            cfg.num_classes
        );
    }
    ensure!(
        s.labels.is_none(),
        "--classes and --labels exclude each other"
    );
    Ok(())
}

/// The number of samples, from the count, the classes or the init noise's rows, which agree.
fn sample_count(
    s: &InputSettings,
    o: Origin,
    cfg: &SiTConfig,
    n_from_z: Option<usize>,
) -> Result<usize> {
    let n_from_classes = match s.samples_per_class {
        Some(k) => Some(
            k.checked_mul(s.classes.as_ref().map_or(cfg.num_classes, Vec::len))
                .with_context(|| {
                    format!("{}: too many samples", o.setting("samples-per-class", k))
                })?,
        ),
        None => None,
    };
    let num_samples = match (s.num_samples.or(n_from_classes), n_from_z) {
        (Some(n), Some(m)) if n != m => bail!("{n} samples requested but the init noise has {m} rows"),
        (Some(n), _) => n,
        (None, Some(m)) => m,
        (None, None) => bail!("give --num-samples N or --samples-per-class K (or --init-noise z.npy, whose rows set N)"),
    };
    if let (Some(n), Some(k)) = (s.num_samples, n_from_classes) {
        ensure!(
            n == k,
            "--num-samples {n} disagrees with --samples-per-class ({k} samples)"
        );
    }
    ensure!(num_samples > 0, "--num-samples must be at least 1");
    Ok(num_samples)
}

/// Labels, int64 (N,), each one of the model's classes.
fn read_labels(p: &Path, num_samples: usize, cfg: &SiTConfig) -> Result<Vec<i64>> {
    let a = npy::read_i64(p)?;
    ensure!(
        a.shape == [num_samples],
        "{}: labels have shape {:?}, expected ({num_samples},) int64",
        p.display(),
        a.shape
    );
    if let Some(bad) = a
        .data
        .iter()
        .find(|&&l| l < 0 || l as usize >= cfg.num_classes)
    {
        bail!(
            "{}: label {bad} is outside 0..{} (the model's classes)",
            p.display(),
            cfg.num_classes
        );
    }
    Ok(a.data)
}

/// Recorded SDE noise: one draw per SDE step `d` for the full solver batch `b`.
fn read_replay(p: &Path, d: usize, b: usize, want: [usize; 3]) -> Result<npy::Array<f32>> {
    let a = npy::read_f32(p)?;
    ensure!(
        a.shape.len() == 5 && a.shape[0] == d && a.shape[1] == b && a.shape[2..] == want,
        "{}: replay noise has shape {:?}, expected ({d}, {b}, {}, {}, {}): one draw per SDE step, the full solver batch",
        p.display(),
        a.shape,
        want[0],
        want[1],
        want[2]
    );
    Ok(a)
}

/// The SDE noise of one unit: replayed rows of a recorded stream, or counter-based draws.
pub struct UnitNoise<'a> {
    pub replay: Option<&'a npy::Array<f32>>,
    pub seed: u64,
    pub unit: Unit,
    pub guided: bool,
    pub num_samples: usize,
    pub len: usize,
}

impl NoiseSource for UnitNoise<'_> {
    fn draw(&mut self, step: usize) -> Result<Vec<f32>> {
        let halves: &[u32] = if self.guided {
            &[rng::STREAM_COND, rng::STREAM_NULL]
        } else {
            &[rng::STREAM_COND]
        };
        let mut out = Vec::with_capacity(halves.len() * self.unit.len() * self.len);
        for (h, &stream) in halves.iter().enumerate() {
            for i in self.unit.start..self.unit.end {
                match self.replay {
                    Some(a) => {
                        let rows = a.shape[1];
                        let row = h * self.num_samples + i;
                        out.extend_from_slice(
                            &a.data[(step * rows + row) * self.len..][..self.len],
                        );
                    }
                    None => out.extend(rng::gaussian(
                        self.seed,
                        i as u64,
                        step as u32 + 1,
                        stream,
                        self.len,
                    )),
                }
            }
        }
        Ok(out)
    }
}
