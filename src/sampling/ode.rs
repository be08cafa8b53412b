//! Probability-flow ODE: torchdiffeq's fixed-grid `euler` and `heun2`, and `dopri5` with its
//! adaptive step control, reproduced operation for operation (f64 time and error control, f32
//! state and stage arithmetic, torch's summation order for stage sums).

use anyhow::{bail, Result};

use super::path::PathType;
use super::{Counted, Prediction, Velocity};

/// `--method` for `--mode ode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OdeMethod {
    Euler,
    /// torchdiffeq `heun2`.
    Heun,
    Dopri5,
}

/// Tolerances of dopri5 (ignored by the fixed-grid methods).
#[derive(Debug, Clone, Copy)]
pub struct Tolerances {
    pub atol: f64,
    pub rtol: f64,
}

/// One attempted dopri5 step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepLog {
    pub t_start: f64,
    pub dt: f64,
    pub accepted: bool,
    pub error_ratio: f64,
    pub next_dt: f64,
}

#[derive(Debug, Clone, Default)]
pub struct OdeResult {
    /// State at the last grid time.
    pub sample: Vec<f32>,
    /// States at every grid time (the first is the initial state), when asked for.
    pub trajectory: Vec<Vec<f32>>,
    /// Time of every model call.
    pub eval_t: Vec<f32>,
    pub initial_step: Option<f64>,
    pub steps: Vec<StepLog>,
}

impl OdeResult {
    pub fn nfe(&self) -> usize {
        self.eval_t.len()
    }
}

/// The ODE drift from the model output (`Transport.get_drift`).
struct Drift<'a, 'b> {
    model: &'b mut Counted<'a>,
    path: PathType,
    prediction: Prediction,
}

impl Drift<'_, '_> {
    fn eval(&mut self, x: &[f32], t: f32) -> Result<Vec<f32>> {
        let out = self.model.call(x, t)?;
        Ok(match self.prediction {
            Prediction::Velocity => out,
            Prediction::Score | Prediction::Noise => {
                let (a, var) = self.path.drift(t);
                let sigma = self.path.sigma(t).0;
                x.iter()
                    .zip(out)
                    .map(|(&x, m)| {
                        let score = if self.prediction == Prediction::Noise {
                            m / -sigma
                        } else {
                            m
                        };
                        a * x + var * score
                    })
                    .collect()
            }
        })
    }
}

/// Everything that selects the ODE sampler.
#[derive(Debug, Clone, Copy)]
pub struct OdeSettings {
    pub method: OdeMethod,
    pub path: PathType,
    pub prediction: Prediction,
    pub tol: Tolerances,
}

/// Integrates from `grid[0]` through every grid time; `keep_trajectory` keeps each state.
pub fn sample(
    model: &mut dyn Velocity,
    s: OdeSettings,
    x0: Vec<f32>,
    grid: &[f32],
    keep_trajectory: bool,
) -> Result<OdeResult> {
    let OdeSettings {
        method,
        path,
        prediction,
        tol,
    } = s;
    if grid.len() < 2 {
        bail!(
            "the ODE needs at least 2 grid points (--steps), got {}",
            grid.len()
        );
    }
    let mut counted = Counted::new(model);
    let mut drift = Drift {
        model: &mut counted,
        path,
        prediction,
    };
    let mut res = OdeResult::default();
    if keep_trajectory {
        res.trajectory.push(x0.clone());
    }
    let y = match method {
        OdeMethod::Euler | OdeMethod::Heun => fixed_grid(&mut drift, method, x0, grid, &mut res)?,
        OdeMethod::Dopri5 => dopri5(&mut drift, x0, grid, tol, keep_trajectory, &mut res)?,
    };
    res.sample = y;
    res.eval_t = counted.eval_t;
    Ok(res)
}

fn fixed_grid(
    f: &mut Drift,
    method: OdeMethod,
    mut y: Vec<f32>,
    grid: &[f32],
    res: &mut OdeResult,
) -> Result<Vec<f32>> {
    let keep = !res.trajectory.is_empty();
    for (step, w) in grid.windows(2).enumerate() {
        let (t0, t1) = (w[0], w[1]);
        let dt = t1 - t0;
        f.model.begin_step(step);
        let k1 = f.eval(&y, t0)?;
        match method {
            OdeMethod::Euler => {
                for (y, k) in y.iter_mut().zip(&k1) {
                    *y += dt * k;
                }
            }
            _ => {
                // heun2 tableau: c2 = 1, a21 = 1, b = (1/2, 1/2).
                let y_pred: Vec<f32> = y.iter().zip(&k1).map(|(&y, &k)| y + dt * k * 1.0).collect();
                let k2 = f.eval(&y_pred, t0 + dt * 1.0)?;
                for ((y, &a), &b) in y.iter_mut().zip(&k1).zip(&k2) {
                    *y += dt * (a * 0.5 + b * 0.5);
                }
            }
        }
        if keep {
            res.trajectory.push(y.clone());
        }
    }
    Ok(y)
}

// Dormand–Prince tableau, defined in f64 as torchdiffeq does and rounded to f32.
const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const E: [f64; 7] = [
    35.0 / 384.0 - 1951.0 / 21600.0,
    0.0,
    500.0 / 1113.0 - 22642.0 / 50085.0,
    125.0 / 192.0 - 451.0 / 720.0,
    -2187.0 / 6784.0 - -12231.0 / 42400.0,
    11.0 / 84.0 - 649.0 / 6300.0,
    -1.0 / 60.0,
];
const MID: [f64; 7] = [
    6025192743.0 / 30085553152.0 / 2.0,
    0.0,
    51252292925.0 / 65400821598.0 / 2.0,
    -2691868925.0 / 45128329728.0 / 2.0,
    187940372067.0 / 1594534317056.0 / 2.0,
    -1776094331.0 / 19743644256.0 / 2.0,
    11237099.0 / 235043384.0 / 2.0,
];
const SAFETY: f64 = 0.9;
const IFACTOR: f64 = 10.0;
const DFACTOR: f64 = 0.2;
const ORDER: f64 = 5.0;

/// `torch.sum(v, dim=-1)` over a short contiguous row on CPU: four interleaved partial sums
/// (elements i ≡ k mod 4), the tail added to the first, then the partials folded left to right.
/// For fewer than 4 terms that is a plain left-to-right sum.
pub fn torch_row_sum(v: &[f32]) -> f32 {
    assert!(v.len() < 8, "torch_row_sum models rows of at most 7 terms");
    if v.len() < 4 {
        return v.iter().fold(0.0, |a, &x| a + x);
    }
    let mut p = [v[0], v[1], v[2], v[3]];
    for &x in &v[4..] {
        p[0] += x;
    }
    ((p[0] + p[1]) + p[2]) + p[3]
}

/// `y + Σ_j k_j·(w_j)` per element, the sum in torch's order.
fn stage_sum(y: &[f32], k: &[Vec<f32>], w: &[f32]) -> Vec<f32> {
    let mut terms = [0f32; 7];
    (0..y.len())
        .map(|e| {
            for (j, (kj, &wj)) in k.iter().zip(w).enumerate() {
                terms[j] = kj[e] * wj;
            }
            y[e] + torch_row_sum(&terms[..w.len()])
        })
        .collect()
}

fn rms(v: impl Iterator<Item = f64>, n: usize) -> f64 {
    (v.map(|x| x * x).sum::<f64>() / n as f64).sqrt()
}

/// The quartic dense-output polynomial of one accepted step, coefficients [e, d, c, b, a].
struct Interp {
    t0: f64,
    t1: f64,
    coeffs: [Vec<f32>; 5],
}

impl Interp {
    fn fit(y0: &[f32], y1: &[f32], k: &[Vec<f32>], dt: f32, t0: f64, t1: f64) -> Interp {
        let w: Vec<f32> = MID.iter().map(|&m| dt * m as f32).collect();
        let y_mid = stage_sum(y0, k, &w);
        let (f0, f1) = (&k[0], &k[6]);
        let n = y0.len();
        let (mut a, mut b, mut c, mut d) =
            (vec![0f32; n], vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        for i in 0..n {
            let (y0, y1, ym, f0, f1) = (y0[i], y1[i], y_mid[i], f0[i], f1[i]);
            a[i] = (2.0 * dt) * (f1 - f0) - 8.0 * (y1 + y0) + 16.0 * ym;
            b[i] = dt * (5.0 * f0 - 3.0 * f1) + 18.0 * y0 + 14.0 * y1 - 32.0 * ym;
            c[i] = dt * (f1 - 4.0 * f0) - 11.0 * y0 - 5.0 * y1 + 16.0 * ym;
            d[i] = dt * f0;
        }
        Interp {
            t0,
            t1,
            coeffs: [y0.to_vec(), d, c, b, a],
        }
    }

    fn eval(&self, t: f64) -> Vec<f32> {
        let x = ((t - self.t0) / (self.t1 - self.t0)) as f32;
        let [e, d, c, b, a] = &self.coeffs;
        (0..e.len())
            .map(|i| {
                let mut total = e[i] + x * d[i];
                let mut xp = x;
                for coef in [c, b, a] {
                    xp *= x;
                    total += xp * coef[i];
                }
                total
            })
            .collect()
    }
}

/// The tableau rounded to f32, as the stage arithmetic uses it.
struct Tableau32 {
    c: Vec<f32>,
    a: Vec<Vec<f32>>,
    e: Vec<f32>,
}

impl Tableau32 {
    fn new() -> Self {
        Tableau32 {
            c: C.iter().map(|&c| c as f32).collect(),
            a: A.iter()
                .map(|row| row.iter().map(|&a| a as f32).collect())
                .collect(),
            e: E.iter().map(|&e| e as f32).collect(),
        }
    }
}

/// The first step size (Hairer, Nørsett & Wanner II.4), as torchdiffeq's _select_initial_step;
/// `f0` is the drift at (t_start, y0). Evaluates the drift once more.
fn initial_step(
    f: &mut Drift,
    y0: &[f32],
    f0: &[f32],
    t_start: f64,
    tol: Tolerances,
) -> Result<f64> {
    let Tolerances { atol, rtol } = tol;
    let n = y0.len();
    let scale: Vec<f64> = y0.iter().map(|&y| atol + (y.abs() as f64) * rtol).collect();
    let d0 = rms(y0.iter().zip(&scale).map(|(&y, &s)| y as f64 / s), n);
    let d1 = rms(f0.iter().zip(&scale).map(|(&v, &s)| v as f64 / s), n);
    // The fallback h0 is a float32 tensor upstream; the quotient is float64.
    let small = d0 < 1e-5 || d1 < 1e-5;
    let h0 = if small {
        1e-6f32 as f64
    } else {
        0.01 * d0 / d1
    };
    let h0f = h0 as f32;
    let y1: Vec<f32> = y0.iter().zip(f0).map(|(&y, &v)| y + h0f * v).collect();
    let f1 = f.eval(&y1, (t_start + h0) as f32)?;
    let d2 = rms(
        f1.iter()
            .zip(f0)
            .zip(&scale)
            .map(|((&a, &b), &s)| (a - b) as f64 / s),
        n,
    ) / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        f64::max(1e-6f32 as f64, h0 * 1e-3)
    } else {
        // `0.01 / tensor` is `tensor.reciprocal() * 0.01`; the exponent is 1 / (order − 1 + 1).
        ((1.0 / d1.max(d2)) * 0.01).powf(1.0 / ORDER)
    };
    let h100 = if small {
        (100.0 * h0f) as f64
    } else {
        100.0 * h0
    };
    Ok(h100.min(h1))
}

/// The seven stage derivatives of a step from (t0, y) to t1 = t0 + dt (the first is `fy`, the
/// drift at y), and the 5th-order solution (FSAL: the last stage's input).
fn stages(
    f: &mut Drift,
    tab: &Tableau32,
    y: &[f32],
    fy: &[f32],
    (t0, t1, dt): (f64, f64, f64),
) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    let (t0f, dtf, t1f) = (t0 as f32, dt as f32, t1 as f32);
    let mut k: Vec<Vec<f32>> = Vec::with_capacity(7);
    k.push(fy.to_vec());
    let mut yi = Vec::new();
    for i in 0..6 {
        // Stages at c = 1 are evaluated one f32 ulp below the step end (Perturb.PREV).
        let ti = if tab.c[i] == 1.0 {
            next_below(t1f)
        } else {
            t0f + tab.c[i] * dtf
        };
        let w: Vec<f32> = tab.a[i].iter().map(|&a| a * dtf).collect();
        yi = stage_sum(y, &k, &w);
        k.push(f.eval(&yi, ti)?);
    }
    Ok((k, yi))
}

/// RMS of the embedded error estimate over the mixed tolerance of y and y_new.
fn error_ratio(
    tab: &Tableau32,
    k: &[Vec<f32>],
    y: &[f32],
    y_new: &[f32],
    dtf: f32,
    tol: Tolerances,
) -> f64 {
    let Tolerances { atol, rtol } = tol;
    let n = y.len();
    let w: Vec<f32> = tab.e.iter().map(|&e| dtf * e).collect();
    let zeros = vec![0f32; n];
    let err = stage_sum(&zeros, k, &w);
    rms(
        (0..n).map(|i| {
            let tol_i = atol + rtol * (y[i].abs().max(y_new[i].abs()) as f64);
            err[i] as f64 / tol_i
        }),
        n,
    )
}

/// The factor of the next step size after an error ratio (torchdiffeq's _optimal_step_size).
fn step_factor(ratio: f64) -> f64 {
    if ratio == 0.0 {
        IFACTOR
    } else {
        let dfactor = if ratio < 1.0 { 1.0 } else { DFACTOR };
        IFACTOR.min((SAFETY / ratio.powf(1.0 / ORDER)).max(dfactor))
    }
}

fn dopri5(
    f: &mut Drift,
    y0: Vec<f32>,
    grid: &[f32],
    tol: Tolerances,
    keep: bool,
    res: &mut OdeResult,
) -> Result<Vec<f32>> {
    let Tolerances { atol, rtol } = tol;
    if !(atol > 0.0 && rtol > 0.0) {
        bail!("dopri5 needs positive --atol and --rtol (got {atol}, {rtol})");
    }
    let t_start = grid[0] as f64;
    let f0 = f.eval(&y0, t_start as f32)?;
    let mut dt = initial_step(f, &y0, &f0, t_start, tol)?;
    res.initial_step = Some(dt);
    let tab = Tableau32::new();

    let (mut y, mut fy) = (y0, f0);
    let (mut t_lo, mut t_hi) = (t_start, t_start);
    let mut interp: Option<Interp> = None;
    let mut out = y.clone();
    for &tau in &grid[1..] {
        let tau = tau as f64;
        while tau > t_hi {
            // One adaptive step from t_hi.
            let t0 = t_hi;
            let t1 = t0 + dt;
            if t1 <= t0 || !y.iter().all(|v| v.is_finite()) {
                bail!("dopri5: step size underflow or non-finite state at t = {t0}");
            }
            f.model
                .begin_step(res.steps.iter().filter(|s| s.accepted).count());
            let (mut k, y_new) = stages(f, &tab, &y, &fy, (t0, t1, dt))?;
            let ratio = error_ratio(&tab, &k, &y, &y_new, dt as f32, tol);
            if !ratio.is_finite() {
                bail!("dopri5: the error estimate is not finite in the step from t = {t0} (the model returned NaN or inf)");
            }
            let accepted = ratio <= 1.0;
            let next_dt = (dt * step_factor(ratio)).max(0.0);
            res.steps.push(StepLog {
                t_start: t0,
                dt,
                accepted,
                error_ratio: ratio,
                next_dt,
            });
            if accepted {
                interp = Some(Interp::fit(&y, &y_new, &k, dt as f32, t0, t1));
                y = y_new;
                fy = k.pop().unwrap_or_default();
                t_lo = t0;
                t_hi = t1;
            } else {
                t_lo = t0;
                t_hi = t0;
            }
            dt = next_dt;
        }
        let Some(p) = interp.as_ref() else {
            bail!("dopri5: no accepted step before t = {tau}")
        };
        debug_assert!(p.t0 == t_lo && p.t1 == t_hi);
        out = p.eval(tau);
        if keep {
            res.trajectory.push(out.clone());
        }
    }
    Ok(out)
}

/// The largest f32 below `x` (`nextafter(x, −∞)`).
fn next_below(x: f32) -> f32 {
    if x.is_nan() || x == f32::NEG_INFINITY {
        return x;
    }
    if x == 0.0 {
        return -f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b - 1 } else { b + 1 })
}
