//! Transport samplers (willisma/SiT `transport/`, torchdiffeq): paths, time grids, ODE and SDE
//! integrators and the counter-based noise. The model is seen only through [`Velocity`]; all state
//! arithmetic runs on the host in f32 with the reference's operation order, so every backend
//! feeds the same bits into the network.

pub mod cads;
pub mod grid;
pub mod guidance;
pub mod loss;
pub mod ode;
pub mod path;
pub mod repa;
pub mod sde;

use anyhow::Result;

/// The network as the samplers see it: model output for a batch of states at one time.
pub trait Velocity {
    /// x (B, C, H, W) flattened, every sample at time `t` → model output of the same shape.
    fn eval(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>>;

    /// The solver starts its step `step` (from 0; dopri5 counts accepted steps). Guidance that
    /// depends on the step (CFG-Zero*'s zeroed first steps) reads it; the default ignores it.
    fn begin_step(&mut self, _step: usize) {}
}

impl<F: FnMut(&[f32], f32) -> Result<Vec<f32>>> Velocity for F {
    fn eval(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        self(x, t)
    }
}

/// Counts and logs model calls around a [`Velocity`].
pub struct Counted<'a> {
    pub inner: &'a mut dyn Velocity,
    /// Time of every call, in call order.
    pub eval_t: Vec<f32>,
}

impl<'a> Counted<'a> {
    pub fn new(inner: &'a mut dyn Velocity) -> Self {
        Counted {
            inner,
            eval_t: Vec::new(),
        }
    }
    pub fn begin_step(&mut self, step: usize) {
        self.inner.begin_step(step);
    }
    pub fn call(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        self.eval_t.push(t);
        self.inner.eval(x, t)
    }
}

crate::named! {
    /// What the network predicts (`--prediction`).
    pub enum Prediction {
        Velocity = "velocity",
        Score = "score",
        Noise = "noise",
    }
}
