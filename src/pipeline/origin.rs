//! Where settings came from, and how names and file names spell their values.

/// Where settings came from, so that an error names a setting as its user wrote it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Origin {
    /// `sitdiv sample` flags: `--cfg-interval-mode`.
    #[default]
    CommandLine,
    /// A sweep file's keys: `interval_mode`.
    SweepFile,
}

impl Origin {
    /// The setting with command-line name `flag`, as this origin spells it.
    pub fn key(self, flag: &str) -> String {
        match self {
            Origin::CommandLine => format!("--{flag}"),
            Origin::SweepFile => match flag {
                "mode" | "method" => "sampler".into(),
                "cfg-interval-mode" => "interval_mode".into(),
                "unit-size" => "[run] unit_size".into(),
                "weights" => "[model] weights".into(),
                "guide-weights" => "[model] guide_weights".into(),
                "vae" => "[model] vae".into(),
                f => f.replace('-', "_"),
            },
        }
    }

    /// A setting and its value: `--steps 1` or `steps = 1`.
    pub fn setting(self, flag: &str, value: impl std::fmt::Display) -> String {
        match self {
            Origin::CommandLine => format!("--{flag} {value}"),
            Origin::SweepFile => format!("{} = {value}", self.key(flag)),
        }
    }
}

/// A float as Python prints it (`1.0`, `1.5`, `0.04`), as the reference's folder names do.
pub fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}
