//! REPA's samplers (sihyun-yu/REPA `samplers.py`): `euler_sampler` (with its Heun option) and
//! `euler_maruyama_sampler`, in REPA's own time convention — t = 1 is noise, t = 0 data,
//! x_t = (1 − t)·x + t·ε — with its f64 state and time grid, the model called in f32, and
//! classifier-free guidance on every channel for t in [`low`, `high`] (REPA's
//! `--guidance-low/--guidance-high`, its time). Outside the interval the batch is not doubled:
//! the model sees the conditional rows alone, as REPA's loop does.

use anyhow::{bail, Result};

use super::grid::linspace_f64;
use super::sde::NoiseSource;

/// The network as REPA's samplers call it: rows x at time t with labels y → model output.
pub trait ClassModel {
    fn eval(&mut self, x: &[f32], t: f32, y: &[i64]) -> Result<Vec<f32>>;
}

impl<F: FnMut(&[f32], f32, &[i64]) -> Result<Vec<f32>>> ClassModel for F {
    fn eval(&mut self, x: &[f32], t: f32, y: &[i64]) -> Result<Vec<f32>> {
        self(x, t, y)
    }
}

crate::named! {
    /// `--method` for `--mode repa-ode` / `repa-sde`.
    pub enum RepaMethod {
        /// `euler_sampler`.
        Euler = "euler",
        /// `euler_sampler(heun=True)`.
        Heun = "heun",
        /// `euler_maruyama_sampler` (`--mode repa-sde`).
        EulerMaruyama = "euler-maruyama",
    }
}

crate::named! {
    /// REPA's `--path-type`: the interpolant the SDE's score conversion assumes.
    pub enum RepaPath {
        Linear = "linear",
        Cosine = "cosine",
    }
}

/// Everything that selects a REPA sampler run.
#[derive(Debug, Clone, Copy)]
pub struct RepaSettings {
    pub method: RepaMethod,
    /// REPA's `--num-steps`.
    pub steps: usize,
    /// Guidance scale (1: none) and its interval [low, high] in REPA time.
    pub cfg: f64,
    pub low: f64,
    pub high: f64,
    pub path: RepaPath,
    /// The null class id (REPA: 1000).
    pub null_class: i64,
}

/// A finished run: the samples (n, C, H, W) and the times of the model calls.
pub struct RepaResult {
    pub sample: Vec<f32>,
    pub eval_t: Vec<f32>,
}

/// REPA's time grid: ODE `linspace(1, 0, N + 1)`; SDE `linspace(1, 0.04, N)` then 0.
pub fn time_grid(method: RepaMethod, steps: usize) -> Vec<f64> {
    match method {
        RepaMethod::Euler | RepaMethod::Heun => linspace_f64(1.0, 0.0, steps + 1),
        RepaMethod::EulerMaruyama => {
            let mut t = linspace_f64(1.0, 0.04, steps);
            t.push(0.0);
            t
        }
    }
}

/// What the sampler makes of the model output v for the input x at time t before guidance:
/// the velocity itself (ODE) or the SDE's drift.
type Post = dyn Fn(&[f64], &[f64], f64) -> Vec<f64>;

/// The sampler's view of the model: doubles the batch and guides inside the interval.
struct Guided<'a> {
    model: &'a mut dyn ClassModel,
    s: RepaSettings,
    y: &'a [i64],
    eval_t: Vec<f32>,
}

impl Guided<'_> {
    fn guided(&self, t: f64) -> bool {
        self.s.cfg > 1.0 && t <= self.s.high && t >= self.s.low
    }

    /// The model output for the state `x` (n rows, f64) at time `t`, mapped by `post` (the
    /// SDE's drift) before guidance combines the halves; `t_guide` decides the interval.
    fn eval(&mut self, x: &[f64], t: f64, t_guide: f64, post: &Post) -> Result<Vec<f64>> {
        let n = self.y.len();
        let guided = self.guided(t_guide);
        let mut input: Vec<f64> = x.to_vec();
        let mut y = self.y.to_vec();
        if guided {
            input.extend_from_slice(x);
            y.extend(std::iter::repeat_n(self.s.null_class, n));
        }
        let x32: Vec<f32> = input.iter().map(|&v| v as f32).collect();
        self.eval_t.push(t as f32);
        let out = self.model.eval(&x32, t as f32, &y)?;
        if out.len() != input.len() {
            bail!(
                "REPA sampler: the model returned {} floats for {}",
                out.len(),
                input.len()
            );
        }
        let v: Vec<f64> = out.iter().map(|&v| v as f64).collect();
        // The model sees t in f32; the score conversion uses the f64 time.
        let d = post(&v, &input, t);
        if !guided {
            return Ok(d);
        }
        let (c, u) = d.split_at(d.len() / 2);
        let s = self.s.cfg;
        Ok(c.iter().zip(u).map(|(&c, &u)| u + s * (c - u)).collect())
    }
}

/// The velocity itself (the ODE's drift).
fn velocity(v: &[f64], _x: &[f64], _t: f64) -> Vec<f64> {
    v.to_vec()
}

/// Runs REPA's sampler from `latents` (n, C, H, W) with labels `y`; the SDE draws its noise
/// (n rows per step) from `noise`.
pub fn sample(
    model: &mut dyn ClassModel,
    s: RepaSettings,
    latents: &[f32],
    y: &[i64],
    noise: &mut dyn NoiseSource,
) -> Result<RepaResult> {
    if s.steps < 1 {
        bail!("REPA's samplers need at least 1 step");
    }
    let t = time_grid(s.method, s.steps);
    let mut g = Guided {
        model,
        s,
        y,
        eval_t: Vec::new(),
    };
    let x: Vec<f64> = latents.iter().map(|&v| v as f64).collect();
    let x = match s.method {
        RepaMethod::Euler | RepaMethod::Heun => ode(&mut g, x, &t)?,
        RepaMethod::EulerMaruyama => sde(&mut g, x, &t, noise)?,
    };
    Ok(RepaResult {
        sample: x.iter().map(|&v| v as f32).collect(),
        eval_t: g.eval_t,
    })
}

/// `euler_sampler`: Euler steps; with Heun, a corrector at t_next on every step but the last,
/// guided when t_cur is in the interval.
fn ode(g: &mut Guided, mut x: Vec<f64>, t: &[f64]) -> Result<Vec<f64>> {
    let heun = g.s.method == RepaMethod::Heun;
    let last = t.len() - 2;
    for (i, w) in t.windows(2).enumerate() {
        let (t_cur, t_next) = (w[0], w[1]);
        let d = g.eval(&x, t_cur, t_cur, &velocity)?;
        let mut next: Vec<f64> = x
            .iter()
            .zip(&d)
            .map(|(&x, &d)| x + (t_next - t_cur) * d)
            .collect();
        if heun && i < last {
            let d2 = g.eval(&next, t_next, t_cur, &velocity)?;
            next = x
                .iter()
                .zip(d.iter().zip(&d2))
                .map(|(&x, (&a, &b))| x + (t_next - t_cur) * (0.5 * a + 0.5 * b))
                .collect();
        }
        x = next;
    }
    Ok(x)
}

/// `get_score_from_velocity` then the drift v − ½·g(t)·score with g(t) = 2t.
fn sde_drift(path: RepaPath) -> impl Fn(&[f64], &[f64], f64) -> Vec<f64> {
    move |v: &[f64], x: &[f64], t: f64| {
        let (alpha, d_alpha, sigma, d_sigma) = match path {
            RepaPath::Linear => (1.0 - t, -1.0, t, 1.0),
            RepaPath::Cosine => {
                let (pi, a) = (std::f64::consts::PI, t * std::f64::consts::PI / 2.0);
                (a.cos(), -pi / 2.0 * a.sin(), a.sin(), pi / 2.0 * a.cos())
            }
        };
        let ratio = alpha / d_alpha;
        let var = sigma * sigma - ratio * d_sigma * sigma;
        let diffusion = 2.0 * t;
        v.iter()
            .zip(x)
            .map(|(&v, &x)| {
                let score = (ratio * v - x) / var;
                v - 0.5 * diffusion * score
            })
            .collect()
    }
}

/// `euler_maruyama_sampler`: Euler–Maruyama on t[..N], then the mean of a last step to t = 0.
fn sde(
    g: &mut Guided,
    mut x: Vec<f64>,
    t: &[f64],
    noise: &mut dyn NoiseSource,
) -> Result<Vec<f64>> {
    let drift = sde_drift(g.s.path);
    let n = t.len();
    for (step, w) in t[..n - 1].windows(2).enumerate() {
        let (t_cur, t_next) = (w[0], w[1]);
        let dt = t_next - t_cur;
        let diffusion = 2.0 * t_cur;
        let eps = noise.draw(step)?;
        if eps.len() != x.len() {
            bail!(
                "REPA noise draw {step} has {} values for a state of {}",
                eps.len(),
                x.len()
            );
        }
        let d = g.eval(&x, t_cur, t_cur, &drift)?;
        let (sq_dt, sq_diff) = (dt.abs().sqrt(), diffusion.sqrt());
        for ((x, &d), &e) in x.iter_mut().zip(&d).zip(&eps) {
            let deps = e as f64 * sq_dt;
            *x = *x + d * dt + sq_diff * deps;
        }
    }
    let (t_cur, t_next) = (t[n - 2], t[n - 1]);
    let d = g.eval(&x, t_cur, t_cur, &drift)?;
    let dt = t_next - t_cur;
    Ok(x.iter().zip(&d).map(|(&x, &d)| x + dt * d).collect())
}
