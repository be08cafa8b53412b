//! Guidance as a sampling run sets it: the scale, the interval, the method and its parameters
//! (part of [`super::settings::SampleJob`]).

use anyhow::{ensure, Result};
use serde::Serialize;

use super::origin::{py_float, Origin};
use crate::sampling::cads::CadsParams;
use crate::sampling::guidance::{ApgParams, Guidance, GuidanceMethod, IntervalMode, Rule};

/// Guidance as set; [`GuidanceSettings::guidance`] is what the sampler applies.
#[derive(Debug, Clone)]
pub struct GuidanceSettings {
    /// Guidance scale; 1 disables guidance.
    pub cfg: f64,
    /// Guide only for t in [lo, hi] (SiT time: 0 noise, 1 data).
    pub cfg_interval: Option<(f64, f64)>,
    pub cfg_interval_mode: IntervalMode,
    /// Guide every latent channel instead of upstream's first three.
    pub cfg_all_channels: bool,
    /// The guidance method (`--guidance`).
    pub method: GuidanceMethod,
    /// Every method's parameters; only the chosen method's are used and recorded.
    pub params: MethodParams,
}

/// The guidance methods' parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MethodParams {
    pub apg: ApgParams,
    /// CFG-Zero*'s zeroed first solver steps.
    pub zero_init_steps: usize,
    pub cads: CadsParams,
}

impl Default for MethodParams {
    /// APG: the paper's η = 0 and β = −0.5, diffusers' r = 15; CFG-Zero*: diffusers' one
    /// zeroed step; CADS: the paper's class-conditional τ₁ = 0.6, τ₂ = 0.9, s = 0.25, ψ = 1.
    fn default() -> Self {
        MethodParams {
            apg: ApgParams {
                eta: 0.0,
                norm_threshold: 15.0,
                momentum: -0.5,
            },
            zero_init_steps: 1,
            cads: CadsParams {
                tau1: 0.6,
                tau2: 0.9,
                noise_scale: 0.25,
                psi: 1.0,
            },
        }
    }
}

impl Default for GuidanceSettings {
    fn default() -> Self {
        GuidanceSettings {
            cfg: 1.0,
            cfg_interval: None,
            cfg_interval_mode: IntervalMode::Published,
            cfg_all_channels: false,
            method: GuidanceMethod::Cfg,
            params: MethodParams::default(),
        }
    }
}

/// The settings and the chosen method's parameters (under the method's name).
impl Serialize for GuidanceSettings {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("cfg", &self.cfg)?;
        m.serialize_entry("cfg_interval", &self.cfg_interval)?;
        m.serialize_entry("cfg_interval_mode", &self.cfg_interval_mode)?;
        m.serialize_entry("cfg_all_channels", &self.cfg_all_channels)?;
        m.serialize_entry("guidance", &self.method)?;
        let p = &self.params;
        match self.method {
            GuidanceMethod::Apg => m.serialize_entry("apg", &p.apg)?,
            GuidanceMethod::CfgZeroStar => m.serialize_entry(
                "cfg_zero_star",
                &serde_json::json!({ "zero_init_steps": p.zero_init_steps }),
            )?,
            GuidanceMethod::Cads => m.serialize_entry("cads", &p.cads)?,
            GuidanceMethod::Cfg | GuidanceMethod::Autoguidance => {}
        }
        m.end()
    }
}

impl GuidanceSettings {
    pub fn check(&self, o: Origin) -> Result<()> {
        ensure!(
            self.cfg >= 1.0 && self.cfg.is_finite(),
            "{}: the guidance scale must be ≥ 1 (1 disables guidance)",
            o.setting("cfg", self.cfg)
        );
        if let Some((lo, hi)) = self.cfg_interval {
            let key = o.key("cfg-interval");
            ensure!(
                lo <= hi && lo.is_finite() && hi.is_finite(),
                "{key} {lo},{hi}: LO must not exceed HI"
            );
            ensure!(self.cfg > 1.0, "{key} needs {} above 1", o.key("cfg"));
        }
        let m = self.method;
        if !matches!(m, GuidanceMethod::Cfg | GuidanceMethod::Cads) {
            ensure!(
                self.cfg > 1.0,
                "{} needs {} above 1 (its guidance scale)",
                o.setting("guidance", m),
                o.key("cfg")
            );
        }
        self.check_params(o)
    }

    /// The chosen method's parameters in their ranges.
    fn check_params(&self, o: Origin) -> Result<()> {
        let p = &self.params;
        match self.method {
            GuidanceMethod::Apg => {
                let a = p.apg;
                ensure!(
                    a.eta.is_finite(),
                    "{}: expected a finite value",
                    o.setting("apg-eta", a.eta)
                );
                ensure!(
                    a.norm_threshold.is_finite() && a.norm_threshold >= 0.0,
                    "{}: expected a finite value ≥ 0 (0 disables the cap)",
                    o.setting("apg-norm-threshold", a.norm_threshold)
                );
                ensure!(
                    a.momentum.is_finite() && a.momentum.abs() < 1.0,
                    "{}: expected a value in (−1, 1) (0 disables the running average)",
                    o.setting("apg-momentum", a.momentum)
                );
            }
            GuidanceMethod::Cads => {
                let c = p.cads;
                ensure!(
                    (0.0..=1.0).contains(&c.tau1)
                        && (0.0..=1.0).contains(&c.tau2)
                        && c.tau1 <= c.tau2,
                    "{} {}: expected 0 ≤ τ₁ ≤ τ₂ ≤ 1 (the paper's time, 1 = noise)",
                    o.setting("cads-tau1", c.tau1),
                    o.setting("cads-tau2", c.tau2)
                );
                ensure!(
                    c.noise_scale.is_finite() && c.noise_scale >= 0.0,
                    "{}: expected a finite value ≥ 0",
                    o.setting("cads-noise-scale", c.noise_scale)
                );
                ensure!(
                    (0.0..=1.0).contains(&c.psi),
                    "{}: expected a value in [0, 1] (0 skips the rescaling)",
                    o.setting("cads-psi", c.psi)
                );
            }
            GuidanceMethod::Cfg | GuidanceMethod::CfgZeroStar | GuidanceMethod::Autoguidance => {}
        }
        Ok(())
    }

    /// The guidance the sampler applies; `None` at scale 1.
    pub fn guidance(&self) -> Option<Guidance> {
        let rule = match self.method {
            GuidanceMethod::Apg => Rule::Apg(self.params.apg),
            GuidanceMethod::CfgZeroStar => Rule::CfgZeroStar {
                zero_init_steps: self.params.zero_init_steps,
            },
            GuidanceMethod::Cfg | GuidanceMethod::Cads | GuidanceMethod::Autoguidance => Rule::Cfg,
        };
        (self.cfg > 1.0).then(|| Guidance {
            scale: self.cfg as f32,
            interval: self.cfg_interval.map(|(lo, hi)| (lo as f32, hi as f32)),
            mode: self.cfg_interval_mode,
            // Autoguidance's formula is on the whole prediction.
            all_channels: self.cfg_all_channels || self.method == GuidanceMethod::Autoguidance,
            rule,
        })
    }

    /// CADS's parameters when it is the method.
    pub fn cads(&self) -> Option<CadsParams> {
        (self.method == GuidanceMethod::Cads).then_some(self.params.cads)
    }

    /// The batch-name part of the method and its parameters (empty for CFG).
    pub(super) fn name_part(&self, guide: Option<&std::path::Path>) -> String {
        let params = self.params.spell(self.method, py_float);
        match self.method {
            GuidanceMethod::Cfg => String::new(),
            GuidanceMethod::Autoguidance => format!(
                "-autoguidance-{}",
                guide
                    .and_then(|g| g.file_stem())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            m => format!("-{m}-{params}"),
        }
    }
}

impl MethodParams {
    /// The parameters of method `m` in names (`eta0-r15-beta-0.5`), floats spelt by `f`; empty
    /// for CFG and autoguidance.
    pub fn spell(&self, m: GuidanceMethod, f: fn(f64) -> String) -> String {
        let f32s = |v: f32| f(v as f64);
        match m {
            GuidanceMethod::Apg => format!(
                "eta{}-r{}-beta{}",
                f32s(self.apg.eta),
                f32s(self.apg.norm_threshold),
                f32s(self.apg.momentum)
            ),
            GuidanceMethod::CfgZeroStar => format!("zero{}", self.zero_init_steps),
            GuidanceMethod::Cads => format!(
                "tau{}-{}-s{}-psi{}",
                f(self.cads.tau1),
                f(self.cads.tau2),
                f(self.cads.noise_scale),
                f(self.cads.psi)
            ),
            GuidanceMethod::Cfg | GuidanceMethod::Autoguidance => String::new(),
        }
    }
}
