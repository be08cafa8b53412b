//! Classifier-free guidance (`SiT.forward_with_cfg`) and guidance intervals, and the adapter that
//! lets the samplers call a SiT as a [`Velocity`].

use anyhow::{ensure, Result};

use super::sit::SiT;
use crate::backend::Backend;
use crate::sampling::Velocity;

crate::named! {
    /// What guidance does outside `--cfg-interval`.
    pub enum IntervalMode {
        /// Kynkäänniemi et al. 2024: the conditional prediction itself.
        Published = "published",
        /// The diversity study's fork: the unconditional prediction.
        Fork = "fork",
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Guidance {
    pub scale: f32,
    /// Inclusive bounds in SiT time (t = 0 noise); `None` guides everywhere.
    pub interval: Option<(f32, f32)>,
    pub mode: IntervalMode,
    /// Guide every channel (the standard form) instead of upstream's first three.
    pub all_channels: bool,
}

impl Guidance {
    /// Combines the model output `o` (2n, C, H, W) = [cond; uncond] in place, as upstream:
    /// guided channels get `uncond + s·(cond − uncond)` in both halves; the others keep
    /// cond (rows < n) and uncond (rows ≥ n).
    pub fn combine(&self, o: &mut [f32], n: usize, channels: usize, t: f32) {
        let plane = o.len() / (2 * n * channels); // dopri5 evaluates past t = 1; there the interval counts as left.
        let on = self
            .interval
            .is_none_or(|(lo, hi)| t >= lo && t <= hi && t <= 1.0);
        let guided = if self.all_channels {
            channels
        } else {
            channels.min(3)
        };
        let s = self.scale;
        for i in 0..n {
            for ch in 0..guided {
                let c0 = (i * channels + ch) * plane;
                let u0 = ((n + i) * channels + ch) * plane;
                for p in 0..plane {
                    let (cond, uncond) = (o[c0 + p], o[u0 + p]);
                    let g = if on {
                        uncond + s * (cond - uncond)
                    } else {
                        match self.mode {
                            IntervalMode::Published => cond,
                            IntervalMode::Fork => uncond,
                        }
                    };
                    o[c0 + p] = g;
                    o[u0 + p] = g;
                }
            }
        }
    }
}

/// A SiT with fixed labels (and guidance) as the samplers' velocity function.
pub struct SiTVelocity<'a, B: Backend> {
    pub be: &'a B,
    pub model: &'a SiT<B>,
    /// Labels of the whole solver batch: `[y; null·n]` with guidance.
    pub y: Vec<i64>,
    pub guidance: Option<Guidance>,
}

impl<B: Backend> Velocity for SiTVelocity<'_, B> {
    fn eval(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        let b = self.y.len();
        let len = self.model.config.sample_len();
        ensure!(
            x.len() == b * len,
            "velocity: state has {} floats for a batch of {b}",
            x.len()
        );
        let tv = vec![t; b];
        let Some(g) = self.guidance else {
            return self.model.forward(self.be, x, &tv, &self.y);
        };
        // forward_with_cfg ignores the second half of the state: the model sees [x[:n]; x[:n]].
        let n = b / 2;
        let mut xin = Vec::with_capacity(b * len);
        xin.extend_from_slice(&x[..n * len]);
        xin.extend_from_slice(&x[..n * len]);
        let mut o = self.model.forward(self.be, &xin, &tv, &self.y)?;
        g.combine(&mut o, n, self.model.config.in_channels, t);
        Ok(o)
    }
}
