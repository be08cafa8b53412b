//! The settings grid of a sweep file: `[defaults]` and `[[grid]]` tables of settings lists, and
//! their expansion into run configs. Each grid is the product of its lists (unset lists come
//! from `[defaults]`, then from the settings' own defaults, as `sitdiv sample` has them); the
//! sweep is the union of its grids in file order, with settings that cannot matter normalised
//! away (SDE settings of ODE runs, the interval of unguided runs) and duplicates dropped.

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::pipeline::guidance_settings::{GuidanceSettings, MethodParams};
use crate::pipeline::settings::{InputSettings, Method, Origin, SamplerSettings};
use crate::sampling::guidance::GuidanceMethod;
use crate::sampling::guidance::IntervalMode;
use crate::sampling::path::DiffusionForm;
use crate::sampling::sde::LastStep;

/// Settings lists of `[defaults]` or one `[[grid]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Axes {
    cfg: Option<Vec<f64>>,
    /// `ode-euler`, `ode-heun`, `ode-dopri5`, `sde-euler`, `sde-heun`; REPA's samplers
    /// `repa-ode-euler`, `repa-ode-heun`, `repa-sde-euler`.
    sampler: Option<Vec<String>>,
    steps: Option<Vec<usize>>,
    /// `[lo, hi]` pairs, or `[]` for none.
    cfg_interval: Option<Vec<Vec<f64>>>,
    interval_mode: Option<Vec<String>>,
    diffusion_form: Option<Vec<String>>,
    diffusion_norm: Option<Vec<f64>>,
    last_step: Option<Vec<String>>,
    last_step_size: Option<Vec<f64>>,
    seed: Option<Vec<u64>>,
    samples_per_class: Option<Vec<usize>>,
    /// `cfg`, `apg`, `cfg-zero-star`, `cads`, `autoguidance`; each method crosses only its own
    /// parameter lists below.
    guidance: Option<Vec<String>>,
    apg_eta: Option<Vec<f32>>,
    apg_norm_threshold: Option<Vec<f32>>,
    apg_momentum: Option<Vec<f32>>,
    zero_init_steps: Option<Vec<usize>>,
    cads_tau1: Option<Vec<f64>>,
    cads_tau2: Option<Vec<f64>>,
    cads_noise_scale: Option<Vec<f64>>,
    cads_psi: Option<Vec<f64>>,
    /// Defaults only: the classes sampled (default: all of the model's).
    pub(super) classes: Option<Vec<i64>>,
}

/// One point of the sweep: every setting of a sampling run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunConfig {
    pub id: String,
    /// Serialised as `mode` and `method`.
    #[serde(flatten)]
    pub method: Method,
    pub steps: usize,
    pub cfg: f64,
    pub cfg_interval: Option<(f64, f64)>,
    pub interval_mode: Option<IntervalMode>,
    pub diffusion_form: Option<DiffusionForm>,
    pub diffusion_norm: Option<f64>,
    pub last_step: Option<LastStep>,
    pub last_step_size: Option<f64>,
    pub seed: u64,
    pub samples_per_class: usize,
    pub num_samples: usize,
    pub guidance: GuidanceMethod,
    /// The method's parameters as the config id spells them (empty for CFG and autoguidance).
    pub guidance_params: String,
    #[serde(skip)]
    pub params: MethodParams,
}

pub(super) fn parse_enum<T: std::str::FromStr<Err = String>>(what: &str, s: &str) -> Result<T> {
    s.parse().map_err(|e| anyhow::anyhow!("{what} {e}"))
}

/// A setting's name in config ids and results.csv: its one spelling in lower case (`SBDM` is
/// `sbdm` there), so ids of existing sweeps stay what they were.
pub fn enum_name<T: std::fmt::Display>(v: &T) -> String {
    v.to_string().to_ascii_lowercase()
}

/// A float in a config id: `1.5`, `2`, `0.04`.
fn fmt_f(v: f64) -> String {
    format!("{v}")
}

/// Every grid's product, normalised and deduplicated, in file order (no grid: the defaults).
pub(super) fn expand(defaults: &Axes, grids: &[Axes]) -> Result<Vec<RunConfig>> {
    let only_defaults = [Axes::default()];
    let grids = if grids.is_empty() {
        &only_defaults[..]
    } else {
        grids
    };
    let mut out: Vec<RunConfig> = Vec::new();
    for (gi, g) in grids.iter().enumerate() {
        let lists = Lists::new(g, defaults).with_context(|| format!("grid {}", gi + 1))?;
        for c in lists.points().map(normalise) {
            if !out.iter().any(|o| o.id == c.id) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// One grid's lists, parsed; the product runs over them in this order, the last fastest.
struct Lists {
    seeds: Vec<u64>,
    ks: Vec<usize>,
    methods: Vec<Method>,
    steps: Vec<usize>,
    cfgs: Vec<f64>,
    intervals: Vec<Option<(f64, f64)>>,
    modes: Vec<IntervalMode>,
    forms: Vec<DiffusionForm>,
    norms: Vec<f64>,
    lasts: Vec<LastStep>,
    last_sizes: Vec<f64>,
    /// Each method with each combination of its own parameters.
    guidances: Vec<(GuidanceMethod, MethodParams)>,
}

/// The grid's list, else the defaults' list, else the one default value.
fn list<T: Clone>(grid: &Option<Vec<T>>, defaults: &Option<Vec<T>>, default: T) -> Vec<T> {
    grid.clone()
        .or_else(|| defaults.clone())
        .unwrap_or_else(|| vec![default])
}

/// Parses each name of a list with the sweep key in errors.
fn parse_all<T: std::str::FromStr<Err = String>>(key: &str, names: &[String]) -> Result<Vec<T>> {
    names.iter().map(|s| parse_enum(key, s)).collect()
}

fn parse_sampler(s: &str) -> Result<Method> {
    let (mode, method) = s.rsplit_once('-').with_context(|| {
        format!("sampler {s:?}: expected MODE-METHOD, e.g. ode-euler, sde-euler or repa-sde-euler")
    })?;
    Method::parse(mode, method, Origin::SweepFile)
}

fn parse_interval(iv: &[f64]) -> Result<Option<(f64, f64)>> {
    match iv {
        [] => Ok(None),
        [lo, hi] => Ok(Some((*lo, *hi))),
        _ => bail!("cfg_interval {iv:?}: expected [lo, hi] or []"),
    }
}

impl Lists {
    fn new(g: &Axes, d: &Axes) -> Result<Self> {
        let (sd, gd) = (SamplerSettings::default(), GuidanceSettings::default());
        let name = |s: &str| s.to_string();
        let ks = g
            .samples_per_class
            .clone()
            .or_else(|| d.samples_per_class.clone())
            .context("samples_per_class is not set (here or in [defaults])")?;
        let samplers = list(&g.sampler, &d.sampler, sd.method.to_string());
        let intervals = list(&g.cfg_interval, &d.cfg_interval, vec![]);
        let modes = list(
            &g.interval_mode,
            &d.interval_mode,
            name(gd.cfg_interval_mode.name()),
        );
        let forms = list(
            &g.diffusion_form,
            &d.diffusion_form,
            name(sd.diffusion_form.name()),
        );
        let lasts = list(&g.last_step, &d.last_step, name(sd.last_step.name()));
        let lists = Lists {
            seeds: list(&g.seed, &d.seed, InputSettings::default().seed),
            ks,
            methods: samplers
                .iter()
                .map(|s| parse_sampler(s))
                .collect::<Result<_>>()?,
            steps: list(&g.steps, &d.steps, sd.steps),
            cfgs: list(&g.cfg, &d.cfg, gd.cfg),
            intervals: intervals
                .iter()
                .map(|iv| parse_interval(iv))
                .collect::<Result<_>>()?,
            modes: parse_all("interval_mode", &modes)?,
            forms: parse_all("diffusion_form", &forms)?,
            norms: list(&g.diffusion_norm, &d.diffusion_norm, sd.diffusion_norm),
            lasts: parse_all("last_step", &lasts)?,
            last_sizes: list(&g.last_step_size, &d.last_step_size, sd.last_step_size),
            guidances: guidance_points(g, d)?,
        };
        ensure!(
            lists.lens().iter().all(|&n| n > 0),
            "an empty list selects nothing"
        );
        ensure!(
            lists.ks.iter().all(|&k| k >= 1),
            "samples_per_class must be at least 1"
        );
        Ok(lists)
    }

    fn lens(&self) -> [usize; 12] {
        [
            self.seeds.len(),
            self.ks.len(),
            self.methods.len(),
            self.steps.len(),
            self.cfgs.len(),
            self.intervals.len(),
            self.modes.len(),
            self.forms.len(),
            self.norms.len(),
            self.lasts.len(),
            self.last_sizes.len(),
            self.guidances.len(),
        ]
    }

    /// The product of the lists, first list outermost.
    fn points(&self) -> impl Iterator<Item = RawPoint> + '_ {
        let lens = self.lens();
        let total: usize = lens.iter().product();
        (0..total).map(move |n| {
            // Mixed-radix digits of n, the last list's digit changing fastest.
            let mut ix = [0usize; 12];
            let mut rest = n;
            for (i, &len) in lens.iter().enumerate().rev() {
                ix[i] = rest % len;
                rest /= len;
            }
            let [seed, k, method, steps, cfg, interval, imode, form, norm, last, last_size, guidance] =
                ix;
            RawPoint {
                method: self.methods[method],
                steps: self.steps[steps],
                cfg: self.cfgs[cfg],
                interval: self.intervals[interval],
                imode: self.modes[imode],
                form: self.forms[form],
                norm: self.norms[norm],
                last: self.lasts[last],
                last_size: self.last_sizes[last_size],
                seed: self.seeds[seed],
                k: self.ks[k],
                guidance: self.guidances[guidance],
            }
        })
    }
}

struct RawPoint {
    method: Method,
    steps: usize,
    cfg: f64,
    interval: Option<(f64, f64)>,
    imode: IntervalMode,
    form: DiffusionForm,
    norm: f64,
    last: LastStep,
    last_size: f64,
    seed: u64,
    k: usize,
    guidance: (GuidanceMethod, MethodParams),
}

/// Every method of the grid's `guidance` list crossed with its own parameter lists, in list
/// order, the parameters' last list fastest.
fn guidance_points(g: &Axes, d: &Axes) -> Result<Vec<(GuidanceMethod, MethodParams)>> {
    let p0 = MethodParams::default();
    let names = list(
        &g.guidance,
        &d.guidance,
        GuidanceMethod::Cfg.name().to_string(),
    );
    let mut out = Vec::new();
    for m in parse_all::<GuidanceMethod>("guidance", &names)? {
        let mut ps = vec![p0];
        let cross = |ps: Vec<MethodParams>, set: &dyn Fn(&mut MethodParams, usize), n: usize| {
            ps.iter()
                .flat_map(|p| {
                    (0..n).map(move |i| {
                        let mut q = *p;
                        set(&mut q, i);
                        q
                    })
                })
                .collect::<Vec<_>>()
        };
        match m {
            GuidanceMethod::Apg => {
                let eta = list(&g.apg_eta, &d.apg_eta, p0.apg.eta);
                let r = list(
                    &g.apg_norm_threshold,
                    &d.apg_norm_threshold,
                    p0.apg.norm_threshold,
                );
                let beta = list(&g.apg_momentum, &d.apg_momentum, p0.apg.momentum);
                ps = cross(ps, &|p, i| p.apg.eta = eta[i], eta.len());
                ps = cross(ps, &|p, i| p.apg.norm_threshold = r[i], r.len());
                ps = cross(ps, &|p, i| p.apg.momentum = beta[i], beta.len());
            }
            GuidanceMethod::CfgZeroStar => {
                let z = list(&g.zero_init_steps, &d.zero_init_steps, p0.zero_init_steps);
                ps = cross(ps, &|p, i| p.zero_init_steps = z[i], z.len());
            }
            GuidanceMethod::Cads => {
                let c = &p0.cads;
                let t1 = list(&g.cads_tau1, &d.cads_tau1, c.tau1);
                let t2 = list(&g.cads_tau2, &d.cads_tau2, c.tau2);
                let s = list(&g.cads_noise_scale, &d.cads_noise_scale, c.noise_scale);
                let psi = list(&g.cads_psi, &d.cads_psi, c.psi);
                ps = cross(ps, &|p, i| p.cads.tau1 = t1[i], t1.len());
                ps = cross(ps, &|p, i| p.cads.tau2 = t2[i], t2.len());
                ps = cross(ps, &|p, i| p.cads.noise_scale = s[i], s.len());
                ps = cross(ps, &|p, i| p.cads.psi = psi[i], psi.len());
            }
            GuidanceMethod::Cfg | GuidanceMethod::Autoguidance => {}
        }
        out.extend(ps.into_iter().map(|p| (m, p)));
    }
    Ok(out)
}

/// Drops what cannot change the samples and names the result.
fn normalise(p: RawPoint) -> RunConfig {
    // Unguided, every method but CADS is plain conditional sampling.
    let (guidance, params) = match p.guidance {
        (m, _) if p.cfg <= 1.0 && m != GuidanceMethod::Cads => {
            (GuidanceMethod::Cfg, MethodParams::default())
        }
        g => g,
    };
    let guidance_params = params.spell(guidance, fmt_f);
    let interval = if p.cfg > 1.0 { p.interval } else { None };
    let interval_mode = interval.map(|_| p.imode);
    let (form, norm, last, last_size) = if matches!(p.method, Method::Sde(_)) {
        let size = (p.last != LastStep::None).then_some(p.last_size);
        (Some(p.form), Some(p.norm), Some(p.last), size)
    } else {
        (None, None, None, None)
    };
    let mut id = format!("{}-{}", p.method, p.steps);
    if let (Some(f), Some(n), Some(l)) = (form, norm, last) {
        id += &format!("-{}-norm{}-{}", enum_name(&f), fmt_f(n), enum_name(&l));
        if let Some(s) = last_size {
            id += &fmt_f(s);
        }
    }
    id += &format!("-cfg{}", fmt_f(p.cfg));
    if let (Some((lo, hi)), Some(m)) = (interval, interval_mode) {
        id += &format!("-int{}-{}-{}", fmt_f(lo), fmt_f(hi), enum_name(&m));
    }
    if guidance != GuidanceMethod::Cfg {
        id += &format!("-{guidance}");
    }
    if !guidance_params.is_empty() {
        id += &format!("-{guidance_params}");
    }
    id += &format!("-k{}-seed{}", p.k, p.seed);
    RunConfig {
        id,
        method: p.method,
        steps: p.steps,
        cfg: p.cfg,
        cfg_interval: interval,
        interval_mode,
        diffusion_form: form,
        diffusion_norm: norm,
        last_step: last,
        last_step_size: last_size,
        seed: p.seed,
        samples_per_class: p.k,
        num_samples: 0,
        guidance,
        guidance_params,
        params,
    }
}
