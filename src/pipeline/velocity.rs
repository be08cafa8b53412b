//! The adapter that lets the samplers call a SiT (with fixed labels and guidance) as a
//! [`Velocity`].

use anyhow::{ensure, Result};

use crate::backend::Backend;
use crate::models::sit::SiT;
use crate::sampling::guidance::Guidance;
use crate::sampling::Velocity;

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
