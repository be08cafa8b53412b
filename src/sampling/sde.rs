//! Reverse-time SDE sampler of the reference (`transport/integrators.py::sde` and
//! `Sampler.sample_sde`): Euler–Maruyama or Heun on `linspace(t0, t1, N)` with the constant step
//! dt = t[1] − t[0], then a last step to t = 1.
//!
//! The reference evaluates the model twice per SDE drift (once for the drift, once inside the
//! score) on identical inputs. Both calls return the same tensor, so the drift here reuses one
//! forward; [`SdeResult::reference_nfe`] still counts the reference's calls.

use anyhow::{bail, Result};

use super::path::{DiffusionForm, PathType};
use super::{Counted, Prediction, Velocity};

/// `--method` for `--mode sde` (the reference's `Euler` / `Heun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SdeMethod {
    Euler,
    Heun,
}

crate::named! {
    /// `--last-step`
    pub enum LastStep {
        None = "none",
        Mean = "mean",
        Tweedie = "tweedie",
        Euler = "euler",
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SdeSettings {
    pub method: SdeMethod,
    pub path: PathType,
    pub prediction: Prediction,
    pub form: DiffusionForm,
    pub norm: f64,
    pub last_step: LastStep,
    /// ℓ; the caller passes 0 with `LastStep::None`, as the reference forces.
    pub last_step_size: f64,
}

/// Gaussian draws of the sampler, one full-batch tensor per loop step, in call order.
pub trait NoiseSource {
    fn draw(&mut self, step: usize) -> Result<Vec<f32>>;
}

#[derive(Debug, Clone, Default)]
pub struct SdeResult {
    pub sample: Vec<f32>,
    /// State after every loop step, then the last-step result (when asked for).
    pub states: Vec<Vec<f32>>,
    /// Time of every network forward actually run.
    pub eval_t: Vec<f32>,
    /// Model calls the reference makes for the same trajectory.
    pub reference_nfe: usize,
}

struct SdeFns<'a, 'b> {
    model: &'b mut Counted<'a>,
    s: SdeSettings,
    reference_nfe: usize,
}

impl SdeFns<'_, '_> {
    fn score_of(&self, m: f32, x: f32, t: f32) -> f32 {
        match self.s.prediction {
            Prediction::Velocity => {
                let (r, var) = self.s.path.score_from_velocity_coeffs(t);
                (r * m - x) / var
            }
            Prediction::Score => m,
            Prediction::Noise => m / -self.s.path.sigma(t).0,
        }
    }

    fn drift_of(&self, m: f32, x: f32, t: f32) -> f32 {
        match self.s.prediction {
            Prediction::Velocity => m,
            _ => {
                let (a, var) = self.s.path.drift(t);
                a * x + var * self.score_of(m, x, t)
            }
        }
    }

    /// `drift(x, t) + w(t) · score(x, t)`.
    fn sde_drift(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        let m = self.model.call(x, t)?;
        self.reference_nfe += 2;
        let w = self.diffusion(t);
        Ok(x.iter()
            .zip(m)
            .map(|(&x, m)| self.drift_of(m, x, t) + w * self.score_of(m, x, t))
            .collect())
    }

    fn diffusion(&self, t: f32) -> f32 {
        self.s.path.diffusion(self.s.form, self.s.norm as f32, t)
    }

    /// One loop step from t with the noise draw `xi`: Euler–Maruyama, or Heun's drift on the
    /// noised state.
    fn step(&mut self, mut x: Vec<f32>, t: f32, dt: f32, xi: &[f32]) -> Result<Vec<f32>> {
        let sqrt_dt = dt.sqrt();
        let g = (2.0 * self.diffusion(t)).sqrt();
        match self.s.method {
            SdeMethod::Euler => {
                let drift = self.sde_drift(&x, t)?;
                for ((x, &d), &z) in x.iter_mut().zip(&drift).zip(xi) {
                    let mean = *x + d * dt;
                    *x = mean + g * (z * sqrt_dt);
                }
            }
            SdeMethod::Heun => {
                let xhat: Vec<f32> = x
                    .iter()
                    .zip(xi)
                    .map(|(&x, &z)| x + g * (z * sqrt_dt))
                    .collect();
                let k1 = self.sde_drift(&xhat, t)?;
                let xp: Vec<f32> = xhat.iter().zip(&k1).map(|(&x, &k)| x + dt * k).collect();
                let k2 = self.sde_drift(&xp, t + dt)?;
                let half_dt = 0.5 * dt;
                x = xhat
                    .iter()
                    .zip(k1.iter().zip(&k2))
                    .map(|(&xh, (&a, &b))| xh + half_dt * (a + b))
                    .collect();
            }
        }
        Ok(x)
    }

    /// The step to t1 = 1 after the loop (`--last-step`, of size ℓ).
    fn last_step(&mut self, x: Vec<f32>, t1: f32) -> Result<Vec<f32>> {
        let ell = self.s.last_step_size as f32;
        Ok(match self.s.last_step {
            LastStep::None => x,
            LastStep::Mean => {
                let d = self.sde_drift(&x, t1)?;
                x.iter().zip(d).map(|(&x, d)| x + d * ell).collect()
            }
            LastStep::Euler => {
                let m = self.model.call(&x, t1)?;
                self.reference_nfe += 1;
                x.iter()
                    .zip(m)
                    .map(|(&x, m)| x + self.drift_of(m, x, t1) * ell)
                    .collect()
            }
            LastStep::Tweedie => {
                let m = self.model.call(&x, t1)?;
                self.reference_nfe += 1;
                // α and σ of batch element 0, as upstream (`alpha(t)[0][0]`).
                let path = self.s.path;
                let (a, sg) = (path.alpha(t1).0, path.sigma(t1).0);
                let coef = (sg * sg) / a;
                x.iter()
                    .zip(m)
                    .map(|(&x, m)| x / a + coef * self.score_of(m, x, t1))
                    .collect()
            }
        })
    }
}

/// Runs the SDE from `x0` on `grid` (= linspace(t0, t1, N)), drawing noise from `noise`.
pub fn sample(
    model: &mut dyn Velocity,
    s: SdeSettings,
    mut x: Vec<f32>,
    grid: &[f32],
    noise: &mut dyn NoiseSource,
    keep_states: bool,
) -> Result<SdeResult> {
    if grid.len() < 2 {
        bail!(
            "the SDE needs at least 2 grid points (--steps), got {}",
            grid.len()
        );
    }
    let mut counted = Counted::new(model);
    let mut f = SdeFns {
        model: &mut counted,
        s,
        reference_nfe: 0,
    };
    let dt = grid[1] - grid[0];
    let mut states = Vec::new();
    for (step, &t) in grid[..grid.len() - 1].iter().enumerate() {
        let xi = noise.draw(step)?;
        if xi.len() != x.len() {
            bail!(
                "noise draw {step} has {} values for a state of {}",
                xi.len(),
                x.len()
            );
        }
        f.model.begin_step(step);
        x = f.step(x, t, dt, &xi)?;
        if keep_states {
            states.push(x.clone());
        }
    }
    let t1 = *grid.last().unwrap_or(&1.0);
    f.model.begin_step(grid.len() - 1);
    let last = f.last_step(x, t1)?;
    if keep_states {
        states.push(last.clone());
    }
    let reference_nfe = f.reference_nfe;
    Ok(SdeResult {
        sample: last,
        states,
        eval_t: counted.eval_t,
        reference_nfe,
    })
}
