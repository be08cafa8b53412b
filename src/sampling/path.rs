//! Interpolant paths (`transport/path.py`): α_t, σ_t, their derivatives, the drift of the
//! probability-flow ODE, the SDE diffusion forms and the score from a velocity. Every formula is
//! evaluated in f32 with the reference's operation order (Python scalars rounded to f32 first).

use std::f64::consts::PI;

crate::named! {
    /// `--path`
    pub enum PathType {
        /// ICPlan: α = t, σ = 1 − t.
        Linear = "linear",
        /// GVPCPlan: α = sin(πt/2), σ = cos(πt/2).
        Gvp = "gvp",
        /// VPCPlan with β_min 0.1, β_max 20.
        Vp = "vp",
    }
}

crate::named! {
    /// `--diffusion-form`: w(t) of the SDE.
    pub enum DiffusionForm {
        Constant = "constant",
        Sbdm = "SBDM",
        Sigma = "sigma",
        Linear = "linear",
        Decreasing = "decreasing",
        IncreasingDecreasing = "increasing-decreasing",
    }
}

const PI_F: f32 = PI as f32;
const VP_MIN: f64 = 0.1;
const VP_MAX: f64 = 20.0;
const VP_RANGE: f32 = (VP_MAX - VP_MIN) as f32;

impl PathType {
    /// (α_t, α'_t)
    pub fn alpha(self, t: f32) -> (f32, f32) {
        match self {
            PathType::Linear => (t, 1.0),
            PathType::Gvp => {
                let a = t * PI_F / 2.0;
                (a.sin(), (PI / 2.0) as f32 * a.cos())
            }
            PathType::Vp => {
                let alpha = vp_log_mean_coeff(t).exp();
                (alpha, alpha * vp_d_log_mean_coeff(t))
            }
        }
    }

    /// (σ_t, σ'_t)
    pub fn sigma(self, t: f32) -> (f32, f32) {
        match self {
            PathType::Linear => (1.0 - t, -1.0),
            PathType::Gvp => {
                let a = t * PI_F / 2.0;
                (a.cos(), (-PI / 2.0) as f32 * a.sin())
            }
            PathType::Vp => {
                let p = 2.0 * vp_log_mean_coeff(t);
                let sigma = (1.0 - p.exp()).sqrt();
                (
                    sigma,
                    p.exp() * (2.0 * vp_d_log_mean_coeff(t)) / (-2.0 * sigma),
                )
            }
        }
    }

    /// α'_t / α_t as coded upstream (`1 / t` is a reciprocal, `π / x` a reciprocal times π).
    pub fn d_alpha_alpha_ratio(self, t: f32) -> f32 {
        match self {
            PathType::Linear => 1.0 / t,
            PathType::Gvp => (1.0 / (2.0 * (t * PI_F / 2.0).tan())) * PI_F,
            PathType::Vp => vp_d_log_mean_coeff(t),
        }
    }

    /// `compute_drift`: returns (a, D) with drift_mean = −a·x and drift_var = D.
    pub fn drift(self, t: f32) -> (f32, f32) {
        match self {
            PathType::Vp => {
                let beta = VP_MIN as f32 + (1.0 - t) * VP_RANGE;
                (0.5 * beta, beta / 2.0)
            }
            _ => {
                let ratio = self.d_alpha_alpha_ratio(t);
                let (s, ds) = self.sigma(t);
                (ratio, ratio * (s * s) - s * ds)
            }
        }
    }

    /// w(t) = `compute_diffusion(x, t, form, norm)`.
    pub fn diffusion(self, form: DiffusionForm, norm: f32, t: f32) -> f32 {
        match form {
            DiffusionForm::Constant => norm,
            DiffusionForm::Sbdm => norm * self.drift(t).1,
            DiffusionForm::Sigma => norm * self.sigma(t).0,
            DiffusionForm::Linear => norm * (1.0 - t),
            DiffusionForm::Decreasing => {
                let a = norm * (PI_F * t).cos() + 1.0;
                0.25 * (a * a)
            }
            DiffusionForm::IncreasingDecreasing => {
                let s = (PI_F * t).sin();
                norm * (s * s)
            }
        }
    }

    /// Coefficients (r, var) of `get_score_from_velocity`: score = (r·v − x) / var, with
    /// r = α/α' and var = σ² − r·σ'·σ (unsimplified, as upstream).
    pub fn score_from_velocity_coeffs(self, t: f32) -> (f32, f32) {
        let (a, da) = self.alpha(t);
        let (s, ds) = self.sigma(t);
        let r = a / da;
        (r, s * s - r * ds * s)
    }
}

fn vp_log_mean_coeff(t: f32) -> f32 {
    let u = 1.0 - t;
    -0.25 * (u * u) * VP_RANGE - 0.5 * u * VP_MIN as f32
}

fn vp_d_log_mean_coeff(t: f32) -> f32 {
    0.5 * (1.0 - t) * VP_RANGE + (0.5 * VP_MIN) as f32
}

/// `Transport.check_interval` at sampling time, in f64 like the Python code.
/// `sample_eps` is the effective eps (the caller applies `create_transport`'s defaults).
pub fn sample_interval(
    path: PathType,
    prediction_is_velocity: bool,
    sde: Option<(DiffusionForm, f64)>,
    sample_eps: f64,
) -> (f64, f64) {
    let (mut t0, mut t1) = (0.0, 1.0);
    let (is_sde, form, last_step_size) = match sde {
        Some((f, l)) => (true, Some(f), l),
        None => (false, None, 0.0),
    };
    let end = if !is_sde || last_step_size == 0.0 {
        1.0 - sample_eps
    } else {
        1.0 - last_step_size
    };
    match path {
        PathType::Vp => t1 = end,
        PathType::Linear | PathType::Gvp if !prediction_is_velocity || is_sde => {
            t0 = if (form == Some(DiffusionForm::Sbdm) && is_sde) || !prediction_is_velocity {
                sample_eps
            } else {
                0.0
            };
            t1 = end;
        }
        _ => {}
    }
    (t0, t1)
}

/// `create_transport`'s sample_eps for a path and prediction when `--sample-eps` is not given.
pub fn default_sample_eps(path: PathType, prediction_is_velocity: bool) -> f64 {
    match path {
        PathType::Vp => 1e-3,
        _ if prediction_is_velocity => 0.0,
        _ => 1e-3,
    }
}
