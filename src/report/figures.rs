//! The study's figures, one function per question: each draws its PNG and SVG under `plots/`
//! and returns what index.html shows of it, or nothing when the runs cannot answer it.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use super::data::{fid_key, headline_diversity, key, label, per_class_diversity, Key, Row};
use super::plot::{figure, Panel, Series};
use super::series::panels_against;

/// Size of one metric panel; figures of metric panels lay them out 3 to a row.
const PANEL: (u32, u32) = (460, 340);

/// A drawn figure: `plots/<stem>.png` (and `.svg`) and its caption.
pub(super) struct Figure {
    pub stem: String,
    pub caption: String,
}

/// Draws `panels` 3 to a row as `<plots>/<stem>`.
fn metric_figure(plots: &Path, stem: &str, panels: &[Panel], caption: &str) -> Result<Figure> {
    figure(&plots.join(stem), panels, 3, PANEL)?;
    Ok(Figure {
        stem: stem.into(),
        caption: caption.into(),
    })
}

/// As [`metric_figure`], but nothing is drawn when there is no panel.
fn metric_figure_if_any(
    plots: &Path,
    stem: &str,
    panels: &[Panel],
    caption: &str,
) -> Result<Option<Figure>> {
    if panels.is_empty() {
        return Ok(None);
    }
    metric_figure(plots, stem, panels, caption).map(Some)
}

/// The runs without a guidance interval (guidance over the whole trajectory).
fn plain(rows: &[Row]) -> Vec<&Row> {
    rows.iter()
        .filter(|r| r.s("cfg_interval").is_empty())
        .collect()
}

/// 1. Each metric against guidance, one line per sampler (no interval).
pub(super) fn guidance(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Option<Figure>> {
    let panels = panels_against(&plain(rows), "cfg", "guidance scale", keys, false, 2);
    metric_figure_if_any(
        plots,
        "cfg",
        &panels,
        "Each metric against the guidance scale, per sampler (bars: bootstrap intervals)",
    )
}

/// 2. SDE diffusion form × norm.
pub(super) fn sde(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Option<Figure>> {
    let sde: Vec<&Row> = rows.iter().filter(|r| r.s("mode") == "sde").collect();
    let panels = panels_against(&sde, "diffusion_norm", "diffusion norm", keys, false, 2);
    metric_figure_if_any(
        plots,
        "sde",
        &panels,
        "SDE: each metric against the diffusion norm, per diffusion form",
    )
}

/// 3. Guidance intervals: categorical x, one line per (cfg, semantics); cfg 1 as baseline.
///
/// Drawn whenever a run has an interval.
pub(super) fn intervals(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Option<Figure>> {
    let with_iv: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.s("cfg_interval").is_empty())
        .collect();
    if with_iv.is_empty() {
        return Ok(None);
    }
    let panels = interval_panels(rows, &with_iv, keys);
    metric_figure(
        plots,
        "interval",
        &panels,
        "Guidance intervals (SiT time, 0 noise → 1 data), both semantics; dashed: cfg 1.0",
    )
    .map(Some)
}

/// One panel per metric of the runs `with_iv`: x = the interval (in name order), a line per
/// guidance scale and semantics, and the unguided ODE run of `rows` as the dashed baseline.
fn interval_panels(rows: &[Row], with_iv: &[&Row], keys: &[Key]) -> Vec<Panel> {
    let mut ivs: Vec<String> = with_iv.iter().map(|r| r.s("cfg_interval")).collect();
    ivs.sort();
    ivs.dedup();
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in with_iv {
        groups
            .entry(format!("cfg {} {}", r.s("cfg"), r.s("interval_mode")))
            .or_default()
            .push(r);
    }
    let unguided = rows.iter().find(|r| {
        r.f("cfg") == Some(1.0) && r.s("mode") == "ode" && r.s("cfg_interval").is_empty()
    });
    keys.iter()
        .map(|m| Panel::Lines {
            title: label(m),
            x_label: "guidance interval".into(),
            y_label: m.1.clone(),
            band: false,
            x_names: Some(ivs.clone()),
            baseline: unguided
                .and_then(|r| r.get(m))
                .map(|b| ("cfg 1.0".to_string(), b)),
            series: groups
                .iter()
                .map(|(name, g)| Series {
                    name: name.clone(),
                    points: g
                        .iter()
                        .filter_map(|r| {
                            let x = ivs.iter().position(|v| *v == r.s("cfg_interval"))? as f64;
                            Some((x, r.get(m)?, r.interval(m)))
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// 4. Sample count, with bootstrap bands.
pub(super) fn sample_count(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Option<Figure>> {
    let panels = panels_against(&plain(rows), "num_samples", "samples", keys, true, 2);
    metric_figure_if_any(
        plots,
        "samples",
        &panels,
        "Each metric against the number of samples (bands: bootstrap intervals)",
    )
}

/// 5. Quality–diversity Pareto front: the headline diversity mean against FID.
///
/// Drawn given two runs with both.
pub(super) fn pareto(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Option<Figure>> {
    let Some(div) = headline_diversity(keys) else {
        return Ok(None);
    };
    let fid = fid_key();
    let pts: Vec<(String, f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.id.clone(), r.get(div)?, r.get(&fid)?)))
        .collect();
    if pts.len() < 2 {
        return Ok(None);
    }
    let front = pareto_front(&pts);
    let panel = Panel::Pareto {
        title: format!("Quality–diversity: {} vs FID", label(div)),
        x_label: label(div),
        y_label: "FID (lower is better)".into(),
        points: pts,
        front,
    };
    figure(&plots.join("pareto"), &[panel], 1, (900, 600))?;
    Ok(Some(Figure {
        stem: "pareto".into(),
        caption: "Quality–diversity Pareto front (red: not dominated)".into(),
    }))
}

/// 6. Quality–diversity fronts per guidance method.
///
/// Class accuracy (else FID, lower better) against the first backbone's mean intra-class
/// diversity; for each method and sampler the line through its non-dominated run configs, each
/// starting from the unguided run. Drawn given two methods or more.
pub(super) fn method_fronts(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Option<Figure>> {
    let Some(div) = keys
        .iter()
        .find(|k| k.1 == "diversity" && k.2 == "intra" && k.3 == "mean")
    else {
        return Ok(None);
    };
    let acc = key("", "accuracy", "all", "value");
    let (quality, better_low) = if rows.iter().any(|r| r.get(&acc).is_some()) {
        (acc, false)
    } else {
        (fid_key(), true)
    };
    let methods: std::collections::BTreeSet<String> =
        rows.iter().map(|r| r.s("guidance")).collect();
    if methods.len() < 2 {
        return Ok(None);
    }
    // (method, sampler) → its guided rows, then the sampler's unguided run in each group.
    let sampler = |r: &Row| format!("{}-{}", r.s("mode"), r.s("method"));
    let unguided = |r: &Row| r.f("cfg") == Some(1.0) && r.s("guidance") == "cfg";
    let mut groups: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for r in plain(rows).into_iter().filter(|r| !unguided(r)) {
        groups
            .entry((r.s("guidance"), sampler(r)))
            .or_default()
            .push(r);
    }
    for r in plain(rows).into_iter().filter(|r| unguided(r)) {
        for ((_, s), g) in groups.iter_mut() {
            if *s == sampler(r) {
                g.push(r);
            }
        }
    }
    let series: Vec<Series> = groups
        .iter()
        .filter_map(|((m, sampler), rs)| {
            let cands: Vec<(&Row, (String, f64, f64))> = rs
                .iter()
                .filter_map(|r| {
                    let q = r.get(&quality)?;
                    let x = if better_low { -q } else { q };
                    Some((*r, (r.id.clone(), x, -r.get(div)?)))
                })
                .collect();
            let pts: Vec<(String, f64, f64)> = cands.iter().map(|c| c.1.clone()).collect();
            let front: Vec<&Row> = pareto_front(&pts).iter().map(|&i| cands[i].0).collect();
            let mut points: Vec<_> = front
                .iter()
                .filter_map(|r| Some((r.get(&quality)?, r.get(div)?, r.interval(div))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!points.is_empty()).then(|| Series {
                name: format!("{m} {sampler}"),
                points,
            })
        })
        .collect();
    if series.is_empty() {
        return Ok(None);
    }
    let panel = Panel::Lines {
        title: format!(
            "{} against {} per guidance method",
            label(div),
            label(&quality)
        ),
        x_label: format!(
            "{}{}",
            label(&quality),
            if better_low { " (lower is better)" } else { "" }
        ),
        y_label: label(div),
        series,
        band: false,
        x_names: None,
        baseline: None,
    };
    figure(&plots.join("methods"), &[panel], 1, (900, 600))?;
    Ok(Some(Figure {
        stem: "methods".into(),
        caption: "Quality–diversity front of each guidance method: its non-dominated run configs, from the unguided run (bars: bootstrap intervals)".into(),
    }))
}

/// Non-dominated points: maximise x, minimise y.
fn pareto_front(points: &[(String, f64, f64)]) -> Vec<usize> {
    (0..points.len())
        .filter(|&i| {
            !points.iter().enumerate().any(|(j, q)| {
                j != i
                    && q.1 >= points[i].1
                    && q.2 <= points[i].2
                    && (q.1 > points[i].1 || q.2 < points[i].2)
            })
        })
        .collect()
}

/// 7. Per-class diversity distributions, one figure per backbone with a diversity metric.
pub(super) fn per_class(rows: &[Row], keys: &[Key], plots: &Path) -> Result<Vec<Figure>> {
    let mut backbones: Vec<String> = keys
        .iter()
        .filter(|k| k.1 == "diversity")
        .map(|k| k.0.clone())
        .collect();
    backbones.dedup();
    let mut figures = Vec::new();
    for b in &backbones {
        figures.extend(per_class_of(rows, b, plots)?);
    }
    Ok(figures)
}

/// The intra-class diversity of each class, per run, for `backbone`: nothing when no run kept
/// the embeddings.
fn per_class_of(rows: &[Row], backbone: &str, plots: &Path) -> Result<Option<Figure>> {
    let groups: Vec<(String, Vec<f64>)> = rows
        .iter()
        .map(|r| Ok((r.id.clone(), per_class_diversity(&r.run, &r.id, backbone)?)))
        .collect::<Result<_>>()?;
    if groups.iter().all(|g| g.1.is_empty()) {
        return Ok(None);
    }
    let stem = format!("per_class_{backbone}");
    let panel = Panel::Distributions {
        title: format!("{backbone}: intra-class diversity per class"),
        y_label: "mean 1 − cos within a class".into(),
        groups,
    };
    figure(
        &plots.join(&stem),
        &[panel],
        1,
        (60 * rows.len() as u32 + 200, 560),
    )?;
    Ok(Some(Figure {
        stem,
        caption: format!("{backbone}: distribution over classes of the intra-class diversity"),
    }))
}

/// 7. The validation loss against the number of held-out images.
///
/// From `<run>/valloss/valloss.json` (`sitdiv valloss`, or the toy demo): the mean over all
/// segments with its bootstrap band, and each time segment's mean; one figure per run with it.
pub(super) fn valloss(runs: &[std::path::PathBuf], plots: &Path) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for (k, run) in runs.iter().enumerate() {
        let path = run.join("valloss").join("valloss.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not JSON ({e})", path.display()))?;
        let rows = doc["summaries"].as_array().cloned().unwrap_or_default();
        let num = |v: &serde_json::Value| {
            v.as_f64()
                .ok_or_else(|| anyhow::anyhow!("{}: a summary lacks a number", path.display()))
        };
        let mut all = Vec::new();
        let mut segments: Vec<Vec<super::plot::Point>> = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let m = &r["mean"];
            let band = Some((num(&m["lo"])?, num(&m["hi"])?));
            all.push((i as f64, num(&m["estimate"])?, band));
            for (s, v) in r["segments"].as_array().into_iter().flatten().enumerate() {
                if segments.len() <= s {
                    segments.push(Vec::new());
                }
                segments[s].push((i as f64, num(v)?, None));
            }
        }
        if all.len() < 2 {
            continue;
        }
        let s = segments.len() as f64;
        let mut series = vec![Series {
            name: "all segments (95 % bootstrap)".into(),
            points: all,
        }];
        series.extend(segments.into_iter().enumerate().map(|(i, points)| Series {
            name: format!("t ∈ [{:.2}, {:.2})", i as f64 / s, (i + 1) as f64 / s),
            points,
        }));
        let names = rows.iter().map(|r| r["n"].to_string()).collect();
        let panel = Panel::Lines {
            title: "Validation loss against held-out images".into(),
            x_label: "images N (nested subsets)".into(),
            y_label: "flow-matching loss".into(),
            series,
            band: true,
            x_names: Some(names),
            baseline: None,
        };
        let stem = format!("valloss-{k}");
        figure(&plots.join(&stem), &[panel], 1, (900, 560))?;
        out.push(Figure {
            stem,
            caption: format!(
                "Validation loss per time segment against the number of held-out images ({})",
                run.display()
            ),
        });
    }
    Ok(out)
}
