//! The one route from a work unit to its files: latents (sampled by the SiT, or rows of a latents
//! file) → a finiteness check → uint8 images → the members of an ADM-style image batch.
//! `sitdiv sample`, `decode` and `sweep run` all go through [`UnitRoute::run`] and
//! [`UnitOutput::batch_members`].

use anyhow::{bail, Result};

use super::decoder::Decoder;
use super::inputs::{Inputs, UnitNoise};
use super::settings::{Method, SampleJob, Schedule};
use super::velocity::{CadsCondition, SiTVelocity};
use super::Unit;
use crate::backend::Backend;
use crate::io::{npy, npz};
use crate::models::sit::SiT;
use crate::rng;
use crate::sampling::guidance::Guider;
use crate::sampling::ode::{self, OdeSettings, Tolerances};
use crate::sampling::repa::{self, RepaMethod, RepaSettings};
use crate::sampling::sde::{self, SdeSettings};

/// Samples work units of one job: everything a unit needs besides its index range.
pub struct UnitSampler<'a, B: Backend> {
    pub be: &'a B,
    pub model: &'a SiT<B>,
    /// Autoguidance's guide model.
    pub guide: Option<&'a SiT<B>>,
    pub job: &'a SampleJob,
    pub inputs: &'a Inputs,
    pub schedule: &'a Schedule,
}

/// What sampling one unit produced.
pub struct UnitSamples {
    /// (n, C, h, w), the conditional half.
    pub latents: Vec<f32>,
    pub labels: Vec<i64>,
    pub network_forwards: usize,
}

impl<B: Backend> UnitSampler<'_, B> {
    /// The samples of `unit`: their noise and labels are functions of (seed, global index), so a
    /// unit gives the same bits whichever process runs it.
    pub fn sample(&self, unit: Unit) -> Result<UnitSamples> {
        let (job, model) = (self.job, self.model);
        let guidance = job.guidance.guidance();
        let n = unit.len();
        let (mut z, mut y) = self.start(unit);
        let labels = y.clone();
        if guidance.is_some() {
            z.extend_from_within(..);
            y.extend(std::iter::repeat_n(model.null_class() as i64, n));
        }
        let cads = match job.guidance.cads() {
            Some(params) => Some(CadsCondition {
                params,
                seed: job.inputs.seed,
                indices: (unit.start..unit.end).map(|i| i as u64).collect(),
                clean: model.class_embeddings(self.be, &labels)?,
                null: match guidance {
                    Some(_) => model.class_embeddings(self.be, &[model.null_class() as i64])?,
                    None => Vec::new(),
                },
            }),
            None => None,
        };
        let mut vel = SiTVelocity {
            be: self.be,
            model,
            y,
            guider: guidance.map(Guider::new),
            guide: self.guide,
            cads,
        };
        let s = &job.sampler;
        let grid = &self.schedule.grid;
        let (mut latents, network_forwards) = match s.method {
            Method::Ode(m) => {
                let settings = OdeSettings {
                    method: m,
                    path: s.path,
                    prediction: s.prediction,
                    tol: Tolerances {
                        atol: s.atol,
                        rtol: s.rtol,
                    },
                };
                let r = ode::sample(&mut vel, settings, z, grid, false)?;
                let nfe = r.nfe();
                (r.sample, nfe)
            }
            Method::Sde(m) => {
                let settings = SdeSettings {
                    method: m,
                    path: s.path,
                    prediction: s.prediction,
                    form: s.diffusion_form,
                    norm: s.diffusion_norm,
                    last_step: s.last_step,
                    last_step_size: self.schedule.last_step_size,
                };
                let mut noise = UnitNoise {
                    replay: self.inputs.replay.as_ref(),
                    seed: job.inputs.seed,
                    unit,
                    guided: guidance.is_some(),
                    num_samples: self.inputs.num_samples,
                    len: model.config.sample_len(),
                };
                let r = sde::sample(&mut vel, settings, z, grid, &mut noise, false)?;
                (r.sample, r.eval_t.len())
            }
            // REPA's samplers keep their own state layout (no doubled batch).
            Method::Repa(m) => return self.sample_repa(unit, m),
        };
        // Keep the conditional half (`samples.chunk(2)[0]`).
        latents.truncate(n * model.config.sample_len());
        Ok(UnitSamples {
            latents,
            labels,
            network_forwards,
        })
    }

    /// The unit through REPA's own sampler: its noise (n rows a step) is the SDE's conditional
    /// stream, so a REPA SDE run and the reference's start from the same draws.
    fn sample_repa(&self, unit: Unit, method: RepaMethod) -> Result<UnitSamples> {
        let (job, model) = (self.job, self.model);
        let (z, labels) = self.start(unit);
        let (lo, hi) = job.guidance.cfg_interval.unwrap_or((0.0, 1.0));
        let settings = RepaSettings {
            method,
            steps: job.sampler.steps,
            cfg: job.guidance.cfg,
            low: lo,
            high: hi,
            path: job.sampler.repa_path(job.origin)?,
            null_class: model.null_class() as i64,
        };
        let mut noise = UnitNoise {
            replay: self.inputs.replay.as_ref(),
            seed: job.inputs.seed,
            unit,
            guided: false,
            num_samples: self.inputs.num_samples,
            len: model.config.sample_len(),
        };
        let mut net =
            |x: &[f32], t: f32, y: &[i64]| model.forward(self.be, x, &vec![t; y.len()], y);
        let r = repa::sample(&mut net, settings, &z, &labels, &mut noise)?;
        Ok(UnitSamples {
            latents: r.sample,
            labels,
            network_forwards: r.eval_t.len(),
        })
    }

    /// The unit's initial noise (n, C, h, w) and labels (n,): given rows, or drawn.
    fn start(&self, unit: Unit) -> (Vec<f32>, Vec<i64>) {
        let cfg = &self.model.config;
        let len = cfg.sample_len();
        let mut z = Vec::with_capacity(unit.len() * len);
        let mut y = Vec::with_capacity(unit.len());
        for i in unit.start..unit.end {
            match &self.inputs.z {
                Some(a) => z.extend_from_slice(&a.data[i * len..(i + 1) * len]),
                None => z.extend(rng::gaussian(
                    self.job.inputs.seed,
                    i as u64,
                    0,
                    rng::STREAM_COND,
                    len,
                )),
            }
            y.push(match &self.inputs.y {
                Some(l) => l[i],
                None => self.job.inputs.label_of(i, cfg.num_classes),
            });
        }
        (z, y)
    }
}

/// Where a unit's latents come from.
pub enum LatentSource<'a, B: Backend> {
    /// Sampled by the SiT.
    Model(UnitSampler<'a, B>),
    /// Rows of a latents file (N, C, h, w) (`sitdiv decode`).
    Given(&'a npy::Array<f32>),
}

/// uint8 images (n, height, width, channels), NHWC.
pub struct Images {
    pub data: Vec<u8>,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

/// What one unit produced.
pub struct UnitOutput {
    pub unit: Unit,
    /// (n, C, h, w): the conditional half of the samples, or the given rows.
    pub latents: Vec<f32>,
    /// The class of every sample; `None` for given latents.
    pub labels: Option<Vec<i64>>,
    /// The decoded images, when the route has a decoder.
    pub images: Option<Images>,
    pub network_forwards: usize,
    /// (h, w) of the latents.
    pub latent_hw: (usize, usize),
}

/// One unit's way from latents to images.
pub struct UnitRoute<'a, B: Backend> {
    pub be: &'a B,
    pub latents: LatentSource<'a, B>,
    /// `None`: latents only (`sitdiv sample --latents-out` without `--out`).
    pub decoder: Option<&'a Decoder<B>>,
}

impl<B: Backend> UnitRoute<'_, B> {
    /// The unit's latents, checked, then its images when the route has a decoder.
    pub fn run(&self, unit: Unit) -> Result<UnitOutput> {
        let n = unit.len();
        let (latents, labels, network_forwards, hw) = match &self.latents {
            LatentSource::Model(s) => {
                let out = s.sample(unit)?;
                let side = s.model.config.input_size;
                (
                    out.latents,
                    Some(out.labels),
                    out.network_forwards,
                    (side, side),
                )
            }
            LatentSource::Given(a) => {
                let per: usize = a.shape[1..].iter().product();
                let rows = a.data[unit.start * per..unit.end * per].to_vec();
                (rows, None, 0, (a.shape[2], a.shape[3]))
            }
        };
        if let Some(bad) = latents.iter().position(|v| !v.is_finite()) {
            let what = match self.latents {
                LatentSource::Model(_) => "sampling produced",
                LatentSource::Given(_) => "the latents hold",
            };
            let per = latents.len() / n.max(1);
            bail!(
                "{what} a non-finite value (sample {}); nothing was written",
                unit.start + bad / per.max(1)
            );
        }
        let out = UnitOutput {
            unit,
            latents,
            labels,
            images: None,
            network_forwards,
            latent_hw: hw,
        };
        match self.decoder {
            Some(d) => out.decoded(self.be, d),
            None => Ok(out),
        }
    }
}

impl UnitOutput {
    /// The unit with its latents decoded to uint8 images on `be` (which may be another backend
    /// than the one that sampled them: the sweep decodes on a stage of its own).
    pub fn decoded<B: Backend>(mut self, be: &B, d: &Decoder<B>) -> Result<Self> {
        let hw = self.latent_hw;
        self.images = Some(Images {
            data: d.images(be, &self.latents, self.unit.len(), hw)?,
            height: d.side(hw.0),
            width: d.side(hw.1),
            channels: d.out_channels(),
        });
        Ok(self)
    }

    /// The global indices of its samples.
    pub fn indices(&self) -> Vec<i64> {
        (self.unit.start as i64..self.unit.end as i64).collect()
    }

    /// The unit's arrays as an ADM-style image batch: `arr_0` the uint8 images (when
    /// `with_images` and decoded), `arr_1` the labels (when known) and `indices`.
    pub fn batch_members(&self, with_images: bool) -> Result<Vec<npz::Member>> {
        let n = self.unit.len();
        let mut m = Vec::new();
        if let (true, Some(im)) = (with_images, &self.images) {
            m.push(npz::Member {
                key: "arr_0".into(),
                npy: npy::encode_u8(&[n, im.height, im.width, im.channels], &im.data)?,
            });
        }
        if let Some(labels) = &self.labels {
            m.push(npz::Member {
                key: "arr_1".into(),
                npy: npy::encode_i64(&[n], labels)?,
            });
        }
        m.push(npz::Member {
            key: "indices".into(),
            npy: npy::encode_i64(&[n], &self.indices())?,
        });
        Ok(m)
    }
}

/// The units' outputs concatenated in order, as one batch.
pub fn concat(outputs: Vec<UnitOutput>) -> Option<UnitOutput> {
    let mut it = outputs.into_iter();
    let mut all = it.next()?;
    for o in it {
        all.unit.end = o.unit.end;
        all.latents.extend(o.latents);
        if let (Some(a), Some(b)) = (&mut all.labels, o.labels) {
            a.extend(b);
        }
        if let (Some(a), Some(b)) = (&mut all.images, o.images) {
            a.data.extend(b.data);
        }
        all.network_forwards += o.network_forwards;
    }
    Some(all)
}
