//! Guidance: how the two predictions of a guided evaluation combine at time t, and guidance
//! intervals. Classifier-free guidance is `SiT.forward_with_cfg`; APG and CFG-Zero* are
//! `diffusers.guiders` (`AdaptiveProjectedGuidance`, `ClassifierFreeZeroStarGuidance`);
//! autoguidance (Karras et al. 2024) is the CFG formula with a weaker model's conditional
//! prediction in the place of the unconditional one. CADS anneals the condition instead and then
//! guides as CFG does (`cads.rs`).
//!
//! Every rule acts on the model output the samplers integrate: SiT's velocity for velocity
//! models, as diffusers applies its guiders to the output of its flow-matching transformers.

use serde::Serialize;

crate::named! {
    /// What guidance does outside `--cfg-interval`.
    pub enum IntervalMode {
        /// Kynkäänniemi et al. 2024: the conditional prediction itself.
        Published = "published",
        /// The diversity study's fork: the unconditional (autoguidance: the guide's) prediction.
        Fork = "fork",
    }
}

crate::named! {
    /// `--guidance`: the guidance method.
    pub enum GuidanceMethod {
        /// Classifier-free guidance.
        Cfg = "cfg",
        /// Adaptive projected guidance (Sadat et al. 2024).
        Apg = "apg",
        /// CFG-Zero* (Fan et al. 2025): optimised unconditional scale, zeroed first steps.
        CfgZeroStar = "cfg-zero-star",
        /// Condition-annealed sampling (Sadat et al. 2024), guided by CFG.
        Cads = "cads",
        /// Guidance by a weaker model of the same family (Karras et al. 2024).
        Autoguidance = "autoguidance",
    }
}

/// APG's parameters (`AdaptiveProjectedGuidance`): η weighs the update's part parallel to the
/// conditional prediction, r caps the update's norm, β is the momentum of its running average.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ApgParams {
    pub eta: f32,
    /// r; 0 disables the cap.
    pub norm_threshold: f32,
    /// β; 0 disables the running average.
    pub momentum: f32,
}

/// How a guided evaluation's two predictions, `cond` and `other` (unconditional, or the guide
/// model's), combine into one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Rule {
    /// other + s·(cond − other).
    Cfg,
    Apg(ApgParams),
    /// Zero for the first `zero_init_steps` solver steps, then CFG against α·other with
    /// α = ⟨cond, other⟩ / (‖other‖² + 1e-8) per sample.
    CfgZeroStar {
        zero_init_steps: usize,
    },
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Guidance {
    pub scale: f32,
    /// Inclusive bounds in SiT time (t = 0 noise); `None` guides everywhere.
    pub interval: Option<(f32, f32)>,
    pub mode: IntervalMode,
    /// Guide every channel instead of upstream's first three (CFG; the other rules always
    /// guide every channel, as their definitions act on the whole prediction).
    pub all_channels: bool,
    pub rule: Rule,
}

impl Guidance {
    /// Classifier-free guidance at scale `s` everywhere, upstream's channels.
    pub fn cfg(scale: f32) -> Self {
        Guidance {
            scale,
            interval: None,
            mode: IntervalMode::Published,
            all_channels: false,
            rule: Rule::Cfg,
        }
    }

    /// Whether guidance is on at time t (dopri5 evaluates past t = 1: there the interval counts
    /// as left).
    pub fn on(&self, t: f32) -> bool {
        self.interval
            .is_none_or(|(lo, hi)| t >= lo && t <= hi && t <= 1.0)
    }

    /// Combines `o` (2n, C, H, W) = [cond; other] in place with the stateless CFG rule (see
    /// [`Guider::combine`]).
    pub fn combine(&self, o: &mut [f32], n: usize, channels: usize, t: f32) {
        Guider::new(*self).combine(o, n, channels, t);
    }
}

/// A [`Guidance`] with the state its rule keeps over one sampling run: APG's running average
/// and the solver step CFG-Zero* counts.
#[derive(Debug, Clone)]
pub struct Guider {
    pub guidance: Guidance,
    /// APG's running average of the update, (n, C, H, W); empty before the first guided call.
    momentum: Vec<f32>,
    step: usize,
}

impl Guider {
    pub fn new(guidance: Guidance) -> Self {
        Guider {
            guidance,
            momentum: Vec::new(),
            step: 0,
        }
    }

    /// The solver starts step `step` (counted from 0).
    pub fn begin_step(&mut self, step: usize) {
        self.step = step;
    }

    /// Combines the model output `o` (2n, C, H, W) = [cond; other] in place: the guided
    /// channels get the rule's prediction in both halves; the others (CFG on upstream's first
    /// three channels only) keep cond (rows < n) and other (rows ≥ n). Outside the interval
    /// the guided channels get cond (published) or other (fork), and APG's average rests.
    pub fn combine(&mut self, o: &mut [f32], n: usize, channels: usize, t: f32) {
        let g = self.guidance;
        if let Rule::CfgZeroStar { zero_init_steps } = g.rule {
            // diffusers zeroes these steps before it looks at the guidance range.
            if self.step < zero_init_steps {
                o.fill(0.0);
                return;
            }
        }
        let len = o.len() / (2 * n); // C·H·W
        let plane = len / channels;
        let guided = if g.all_channels || g.rule != Rule::Cfg {
            len
        } else {
            channels.min(3) * plane
        };
        let (cond_half, other_half) = o.split_at_mut(n * len);
        let on = g.on(t);
        if on && matches!(g.rule, Rule::Apg(_)) && self.momentum.is_empty() {
            self.momentum = vec![0.0; n * len];
        }
        for i in 0..n {
            let c = &mut cond_half[i * len..i * len + guided];
            let u = &mut other_half[i * len..i * len + guided];
            if !on {
                match g.mode {
                    IntervalMode::Published => u.copy_from_slice(c),
                    IntervalMode::Fork => c.copy_from_slice(u),
                }
                continue;
            }
            match g.rule {
                Rule::Cfg => cfg(c, u, g.scale),
                Rule::Apg(p) => {
                    let m = &mut self.momentum[i * len..i * len + guided];
                    apg(c, u, m, g.scale, p);
                }
                Rule::CfgZeroStar { .. } => cfg_zero_star(c, u, g.scale),
            }
            u.copy_from_slice(c);
        }
    }
}

/// c ← u + s·(c − u).
fn cfg(c: &mut [f32], u: &[f32], s: f32) {
    for (c, &u) in c.iter_mut().zip(u) {
        *c = u + s * (*c - u);
    }
}

/// Σ a·b in f64.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// `cfg_zero_star_scale` then CFG against the scaled unconditional prediction: c ← u' + s·(c − u'),
/// u' = α·u. α is torch's f32 quotient of f32 sums; the sums here run in f64.
fn cfg_zero_star(c: &mut [f32], u: &[f32], s: f32) {
    let num = dot(c, u) as f32;
    let den = dot(u, u) as f32 + 1e-8;
    let alpha = num / den;
    for (c, &u) in c.iter_mut().zip(u) {
        let u = u * alpha;
        *c = u + s * (*c - u);
    }
}

/// `normalized_guidance`: the difference, through the running average and the norm cap, split
/// into its parts parallel and orthogonal to cond (in f64, as diffusers does), recombined with
/// η and applied to u: c ← u + s·(orth + η·par).
fn apg(c: &mut [f32], u: &[f32], m: &mut [f32], s: f32, p: ApgParams) {
    let mut diff: Vec<f32> = c.iter().zip(u).map(|(&c, &u)| c - u).collect();
    if p.momentum != 0.0 {
        for (m, d) in m.iter_mut().zip(diff.iter_mut()) {
            *m = *d + p.momentum * *m;
            *d = *m;
        }
    }
    if p.norm_threshold > 0.0 {
        let norm = dot(&diff, &diff).sqrt() as f32;
        let k = (p.norm_threshold / norm).min(1.0);
        diff.iter_mut().for_each(|d| *d *= k);
    }
    // F.normalize: v / max(‖v‖, 1e-12).
    let cn = dot(c, c).sqrt().max(1e-12);
    let along: f64 = diff
        .iter()
        .zip(c.iter())
        .map(|(&d, &c)| d as f64 * (c as f64 / cn))
        .sum();
    for ((c, &u), &d) in c.iter_mut().zip(u).zip(&diff) {
        let par = along * (*c as f64 / cn);
        let orth = d as f64 - par;
        let update = orth as f32 + p.eta * par as f32;
        *c = u + s * update;
    }
}
