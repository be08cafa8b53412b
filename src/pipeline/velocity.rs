//! The adapter that lets the samplers call a SiT (with fixed labels and guidance) as a
//! [`Velocity`].

use anyhow::{ensure, Result};

use crate::backend::Backend;
use crate::models::sit::SiT;
use crate::sampling::cads::CadsParams;
use crate::sampling::guidance::Guider;
use crate::sampling::Velocity;

/// CADS's condition for the conditional rows of a solver batch.
pub struct CadsCondition {
    pub params: CadsParams,
    /// The run's seed and each conditional row's global sample index: the noise's keys.
    pub seed: u64,
    pub indices: Vec<u64>,
    /// The rows' clean class embeddings (n, D).
    pub clean: Vec<f32>,
    /// The null class's embedding (D), for the unconditional rows of a guided batch (empty
    /// without guidance).
    pub null: Vec<f32>,
}

impl CadsCondition {
    /// The embeddings of the solver batch at time t: the annealed conditional rows, then (when
    /// `guided`) one null row for each.
    fn embeddings(&self, t: f32, guided: bool) -> Vec<f32> {
        let d = self.clean.len() / self.indices.len().max(1);
        let noise: Vec<f32> = self
            .indices
            .iter()
            .flat_map(|&i| CadsParams::noise(self.seed, i, t, d))
            .collect();
        let mut e = self.params.anneal(&self.clean, &noise, d, t);
        if guided {
            for _ in &self.indices {
                e.extend_from_slice(&self.null);
            }
        }
        e
    }
}

/// A SiT with fixed labels (and guidance) as the samplers' velocity function.
pub struct SiTVelocity<'a, B: Backend> {
    pub be: &'a B,
    pub model: &'a SiT<B>,
    /// Labels of the whole solver batch: `[y; null·n]` with guidance.
    pub y: Vec<i64>,
    pub guider: Option<Guider>,
    /// Autoguidance's guide: the weaker model whose conditional prediction takes the place of
    /// the unconditional one.
    pub guide: Option<&'a SiT<B>>,
    /// CADS: the conditional rows see annealed class embeddings.
    pub cads: Option<CadsCondition>,
}

impl<'a, B: Backend> SiTVelocity<'a, B> {
    /// Plain conditional sampling of the solver batch's labels `y`.
    pub fn new(be: &'a B, model: &'a SiT<B>, y: Vec<i64>) -> Self {
        SiTVelocity {
            be,
            model,
            y,
            guider: None,
            guide: None,
            cads: None,
        }
    }

    /// The model's prediction for the rows of `x` with labels `y` (CADS: annealed embeddings).
    fn predict(&self, x: &[f32], y: &[i64], t: f32, guided: bool) -> Result<Vec<f32>> {
        let tv = vec![t; y.len()];
        match &self.cads {
            Some(c) => {
                let e = c.embeddings(t, guided);
                self.model.forward_embedded(self.be, x, &tv, &e)
            }
            None => self.model.forward(self.be, x, &tv, y),
        }
    }
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
        if self.guider.is_none() {
            return self.predict(x, &self.y, t, false);
        }
        // forward_with_cfg ignores the second half of the state: the model sees [x[:n]; x[:n]].
        let n = b / 2;
        let cond = &x[..n * len];
        let mut o = match self.guide {
            Some(guide) => {
                let y = &self.y[..n];
                let tv = vec![t; n];
                let mut o = self.model.forward(self.be, cond, &tv, y)?;
                o.extend(guide.forward(self.be, cond, &tv, y)?);
                o
            }
            None => {
                let mut xin = Vec::with_capacity(b * len);
                xin.extend_from_slice(cond);
                xin.extend_from_slice(cond);
                self.predict(&xin, &self.y, t, true)?
            }
        };
        if let Some(g) = &mut self.guider {
            g.combine(&mut o, n, self.model.config.in_channels, t);
        }
        Ok(o)
    }

    fn begin_step(&mut self, step: usize) {
        if let Some(g) = &mut self.guider {
            g.begin_step(step);
        }
    }
}
