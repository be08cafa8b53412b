//! Classifier-free guidance (`SiT.forward_with_cfg`) and guidance intervals: how the model's
//! conditional and unconditional halves combine at time t.

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
