//! `sitdiv report RUN_DIR… --out DIR`: the study's questions answered from merged sweeps, without
//! Python: plots (PNG and SVG) of each metric against guidance, SDE form × norm, guidance
//! intervals and sample count (with the merge's bootstrap intervals), the quality–diversity
//! Pareto front, the agreement of the metrics across run configs, per-class diversity; sample
//! grids; `results.csv`, `summary.md` and an offline `index.html` that shows them all.

pub mod data;
pub mod plot;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use self::data::{key, label, load_rows, per_class_diversity, sample_grid, Key, Row};
use self::plot::{figure, Panel, Series};
use crate::metrics::correlation::{kendall_tau_b, pearson, spearman};
use crate::pipeline::write_atomic;

/// The reported means and single values (not stds), in a stable order: quality first.
fn headline_keys(rows: &[Row]) -> Vec<Key> {
    let mut keys: Vec<Key> = rows
        .iter()
        .flat_map(|r| r.values.keys().cloned())
        .filter(|k| k.3 != "std" && k.1 != "kid")
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Everything of a config but one setting: rows that differ only in it form a series.
fn series_key(r: &Row, without: &[&str]) -> String {
    let mut parts = Vec::new();
    for k in [
        "mode",
        "method",
        "steps",
        "cfg",
        "cfg_interval",
        "interval_mode",
        "diffusion_form",
        "diffusion_norm",
        "last_step",
        "last_step_size",
        "samples_per_class",
        "seed",
    ] {
        if !without.contains(&k) {
            let v = r.s(k);
            if !v.is_empty() {
                parts.push(format!("{k}={v}"));
            }
        }
    }
    parts.join(" ")
}

/// Short series names: the settings that differ between the series shown together.
fn short_names(keys: &[String]) -> Vec<String> {
    let parse = |k: &String| -> BTreeMap<String, String> {
        k.split(' ')
            .filter_map(|p| p.split_once('='))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let maps: Vec<BTreeMap<String, String>> = keys.iter().map(parse).collect();
    let mut fields: Vec<String> = maps.iter().flat_map(|m| m.keys().cloned()).collect();
    fields.sort();
    fields.dedup();
    let varying: Vec<&String> = fields
        .iter()
        .filter(|f| maps.iter().any(|m| m.get(*f) != maps[0].get(*f)))
        .collect();
    maps.iter()
        .map(|m| {
            let mut parts = Vec::new();
            for f in [
                "mode",
                "method",
                "steps",
                "diffusion_form",
                "diffusion_norm",
                "last_step",
                "cfg",
                "cfg_interval",
                "interval_mode",
                "samples_per_class",
                "seed",
            ] {
                if !varying.iter().any(|v| v.as_str() == f) {
                    continue;
                }
                if let Some(v) = m.get(f) {
                    parts.push(match f {
                        "mode" => v.to_uppercase(),
                        "steps" => format!("{v} steps"),
                        "diffusion_form" => format!("{v} diffusion"),
                        "diffusion_norm" => format!("norm {v}"),
                        "last_step" => format!("last step {v}"),
                        "cfg" => format!("cfg {v}"),
                        "samples_per_class" => format!("{v}/class"),
                        "seed" => format!("seed {v}"),
                        _ => v.clone(),
                    });
                }
            }
            if parts.is_empty() {
                "all".into()
            } else {
                parts.join(", ")
            }
        })
        .collect()
}

/// One panel per metric of `rows` against the numeric config field `x` (series = the rest).
fn panels_against(
    rows: &[&Row],
    x: &str,
    x_label: &str,
    metrics: &[Key],
    band: bool,
    min_points: usize,
) -> Vec<Panel> {
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        if r.f(x).is_some() {
            // The sample count follows from samples_per_class: both vary together.
            let without: &[&str] = if x == "num_samples" {
                &[x, "samples_per_class"]
            } else {
                &[x]
            };
            groups.entry(series_key(r, without)).or_default().push(r);
        }
    }
    groups.retain(|_, g| g.len() >= min_points);
    let names = short_names(&groups.keys().cloned().collect::<Vec<_>>());
    metrics
        .iter()
        .map(|m| Panel::Lines {
            title: label(m),
            x_label: x_label.into(),
            y_label: m.1.clone(),
            band,
            x_names: None,
            baseline: None,
            series: groups
                .values()
                .zip(&names)
                .map(|(g, name)| Series {
                    name: name.clone(),
                    points: g
                        .iter()
                        .filter_map(|r| Some((r.f(x)?, r.get(m)?, r.interval(m))))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect(),
        })
        .filter(|p| matches!(p, Panel::Lines { series, .. } if !series.is_empty()))
        .collect()
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

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `sitdiv report`.
pub fn run(runs: &[PathBuf], out: &Path) -> Result<()> {
    ensure!(!runs.is_empty(), "give at least one sweep output folder");
    let rows = load_rows(runs)?;
    let plots = out.join("plots");
    let grids = out.join("grids");
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("cannot create {}", plots.display()))?;
    std::fs::create_dir_all(&grids)
        .with_context(|| format!("cannot create {}", grids.display()))?;
    let keys = headline_keys(&rows);
    let mut figures: Vec<(String, String)> = Vec::new(); // (file stem, caption)

    // 1. Each metric against guidance, one line per sampler (no interval).
    let plain: Vec<&Row> = rows
        .iter()
        .filter(|r| r.s("cfg_interval").is_empty())
        .collect();
    let p = panels_against(&plain, "cfg", "guidance scale", &keys, false, 2);
    if !p.is_empty() {
        figure(&plots.join("cfg"), &p, 3, (460, 340))?;
        figures.push((
            "cfg".into(),
            "Each metric against the guidance scale, per sampler (bars: bootstrap intervals)"
                .into(),
        ));
    }
    // 2. SDE diffusion form × norm.
    let sde: Vec<&Row> = rows.iter().filter(|r| r.s("mode") == "sde").collect();
    let p = panels_against(&sde, "diffusion_norm", "diffusion norm", &keys, false, 2);
    if !p.is_empty() {
        figure(&plots.join("sde"), &p, 3, (460, 340))?;
        figures.push((
            "sde".into(),
            "SDE: each metric against the diffusion norm, per diffusion form".into(),
        ));
    }
    // 3. Guidance intervals: categorical x, one line per (cfg, semantics); cfg 1 as baseline.
    let with_iv: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.s("cfg_interval").is_empty())
        .collect();
    if !with_iv.is_empty() {
        let mut ivs: Vec<String> = with_iv.iter().map(|r| r.s("cfg_interval")).collect();
        ivs.sort();
        ivs.dedup();
        let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for r in &with_iv {
            groups
                .entry(format!("cfg {} {}", r.s("cfg"), r.s("interval_mode")))
                .or_default()
                .push(r);
        }
        let base_of = |m: &Key| {
            rows.iter()
                .find(|r| {
                    r.f("cfg") == Some(1.0)
                        && r.s("mode") == "ode"
                        && r.s("cfg_interval").is_empty()
                })
                .and_then(|r| r.get(m))
        };
        let panels: Vec<Panel> = keys
            .iter()
            .map(|m| Panel::Lines {
                title: label(m),
                x_label: "guidance interval".into(),
                y_label: m.1.clone(),
                band: false,
                x_names: Some(ivs.clone()),
                baseline: base_of(m).map(|b| ("cfg 1.0".to_string(), b)),
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
            .collect();
        figure(&plots.join("interval"), &panels, 3, (460, 340))?;
        figures.push((
            "interval".into(),
            "Guidance intervals (SiT time, 0 noise → 1 data), both semantics; dashed: cfg 1.0"
                .into(),
        ));
    }
    // 4. Sample count, with bootstrap bands.
    let p = panels_against(&plain, "num_samples", "samples", &keys, true, 2);
    if !p.is_empty() {
        figure(&plots.join("samples"), &p, 3, (460, 340))?;
        figures.push((
            "samples".into(),
            "Each metric against the number of samples (bands: bootstrap intervals)".into(),
        ));
    }
    // 5. Quality–diversity Pareto front: the first diversity mean against FID.
    let fid = key("", "fid", "all", "value");
    let div = keys
        .iter()
        .find(|k| k.1 == "diversity" && k.2 == "mixed" && k.3 == "mean");
    if let Some(div) = div {
        let pts: Vec<(String, f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r.id.clone(), r.get(div)?, r.get(&fid)?)))
            .collect();
        if pts.len() >= 2 {
            let front = pareto_front(&pts);
            let panel = Panel::Pareto {
                title: format!("Quality–diversity: {} vs FID", label(div)),
                x_label: label(div),
                y_label: "FID (lower is better)".into(),
                points: pts,
                front,
            };
            figure(&plots.join("pareto"), &[panel], 1, (900, 600))?;
            figures.push((
                "pareto".into(),
                "Quality–diversity Pareto front (red: not dominated)".into(),
            ));
        }
    }
    // 6. Agreement of the metrics across run configs.
    let cols: Vec<Key> = keys
        .iter()
        .filter(|k| rows.iter().filter(|r| r.get(k).is_some()).count() == rows.len())
        .cloned()
        .collect();
    let mut agreement = String::from("coefficient,metric_a,metric_b,value\n");
    if rows.len() >= 3 && cols.len() >= 2 {
        let col = |k: &Key| {
            rows.iter()
                .map(|r| r.get(k).unwrap_or(f64::NAN))
                .collect::<Vec<f64>>()
        };
        let data: Vec<Vec<f64>> = cols.iter().map(col).collect();
        let labels: Vec<String> = cols.iter().map(label).collect();
        let mut panels = Vec::new();
        for (name, coef) in [
            ("Spearman", spearman as fn(&[f64], &[f64]) -> Option<f64>),
            ("Kendall tau-b", kendall_tau_b),
            ("Pearson", pearson),
        ] {
            let values: Vec<Vec<Option<f64>>> = data
                .iter()
                .map(|a| data.iter().map(|b| coef(a, b)).collect())
                .collect();
            for (i, row) in values.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let _ = writeln!(
                        agreement,
                        "{name},{},{},{}",
                        labels[i],
                        labels[j],
                        v.map(|v| v.to_string()).unwrap_or_default()
                    );
                }
            }
            panels.push(Panel::Heatmap {
                title: format!("{name} across {} run configs", rows.len()),
                labels: labels.clone(),
                values,
            });
        }
        let side = (170 + 40 * cols.len() as u32 + 40).max(420);
        figure(&plots.join("agreement"), &panels, 3, (side, side))?;
        figures.push((
            "agreement".into(),
            "Agreement of the metrics across run configs (intra, inter and mixed apart)".into(),
        ));
    }
    write_atomic(&out.join("agreement.csv"), agreement.as_bytes())?;
    // 7. Per-class diversity distributions, per backbone.
    let mut backbones: Vec<String> = keys
        .iter()
        .filter(|k| k.1 == "diversity")
        .map(|k| k.0.clone())
        .collect();
    backbones.dedup();
    for b in &backbones {
        let groups: Vec<(String, Vec<f64>)> = rows
            .iter()
            .map(|r| Ok((r.id.clone(), per_class_diversity(&r.run, &r.id, b)?)))
            .collect::<Result<_>>()?;
        if groups.iter().any(|g| !g.1.is_empty()) {
            let stem = format!("per_class_{b}");
            let panel = Panel::Distributions {
                title: format!("{b}: intra-class diversity per class"),
                y_label: "mean 1 − cos within a class".into(),
                groups,
            };
            figure(
                &plots.join(&stem),
                &[panel],
                1,
                (60 * rows.len() as u32 + 200, 560),
            )?;
            figures.push((
                stem,
                format!("{b}: distribution over classes of the intra-class diversity"),
            ));
        }
    }
    // Sample grids.
    let mut grid_files = Vec::new();
    for r in &rows {
        let f = grids.join(format!("{}.png", r.id));
        if sample_grid(&r.run, &r.id, &f)? {
            grid_files.push((r.id.clone(), f));
        }
    }
    // results.csv: the merges' tables, concatenated.
    let mut csv = String::new();
    for run in runs {
        let text = std::fs::read_to_string(run.join("results.csv"))
            .with_context(|| format!("{}: no results.csv", run.display()))?;
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        if csv.is_empty() {
            csv = format!("sweep,{header}\n");
        }
        let name = run
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for l in lines {
            let _ = writeln!(csv, "{name},{l}");
        }
    }
    write_atomic(&out.join("results.csv"), csv.as_bytes())?;
    // summary.md and index.html.
    let head: Vec<Key> = keys
        .iter()
        .filter(|k| k.2 == "all" || (k.2 == "mixed" && k.1 != "vendi") || k.2 == "intra")
        .cloned()
        .collect();
    let cell = |r: &Row, k: &Key| match (r.get(k), r.interval(k)) {
        (Some(v), Some((lo, hi))) => format!("{} [{}, {}]", fmt_num(v), fmt_num(lo), fmt_num(hi)),
        (Some(v), None) => fmt_num(v),
        _ => "–".into(),
    };
    let mut md = format!(
        "# sitdiv report\n\n{} run configs from {}. Values with their bootstrap intervals [lo, hi].\n\n",
        rows.len(),
        runs.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    if let Some(best) = rows
        .iter()
        .filter_map(|r| Some((r, r.get(&fid)?)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
    {
        let _ = writeln!(
            md,
            "- Lowest FID: **{}** at {}.",
            fmt_num(best.1),
            best.0.id
        );
    }
    if let Some(div) = div {
        if let Some(best) = rows
            .iter()
            .filter_map(|r| Some((r, r.get(div)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
        {
            let _ = writeln!(
                md,
                "- Highest {}: **{}** at {}.",
                label(div),
                fmt_num(best.1),
                best.0.id
            );
        }
    }
    let _ = writeln!(
        md,
        "\n| config | {} |",
        head.iter().map(label).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(head.len()));
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} |",
            r.id,
            head.iter()
                .map(|k| cell(r, k))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    write_atomic(&out.join("summary.md"), md.as_bytes())?;

    let mut html = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>sitdiv report</title>\n<style>body{font-family:sans-serif;margin:24px;max-width:1500px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd}figure{margin:18px 0}.grids{display:flex;flex-wrap:wrap;gap:12px}.grids figure{margin:0}</style></head>\n<body>\n<h1>sitdiv report</h1>\n",
    );
    let _ = writeln!(
        html,
        "<p>{} run configs. Values with their bootstrap intervals [lo, hi]. Data: <a href=\"results.csv\">results.csv</a>, <a href=\"agreement.csv\">agreement.csv</a>, <a href=\"summary.md\">summary.md</a>.</p>",
        rows.len()
    );
    let _ = writeln!(
        html,
        "<table><tr><th>config</th>{}</tr>",
        head.iter()
            .map(|k| format!("<th>{}</th>", html_escape(&label(k))))
            .collect::<String>()
    );
    for r in &rows {
        let _ = writeln!(
            html,
            "<tr><td>{}</td>{}</tr>",
            html_escape(&r.id),
            head.iter()
                .map(|k| format!("<td>{}</td>", cell(r, k)))
                .collect::<String>()
        );
    }
    html.push_str("</table>\n");
    for (stem, caption) in &figures {
        let _ = writeln!(
            html,
            "<figure><img src=\"plots/{stem}.png\" alt=\"{0}\"><figcaption>{0} (<a href=\"plots/{stem}.svg\">SVG</a>)</figcaption></figure>",
            html_escape(caption)
        );
    }
    if !grid_files.is_empty() {
        html.push_str("<h2>Samples (rows: classes)</h2>\n<div class=\"grids\">\n");
        for (id, _) in &grid_files {
            let _ = writeln!(html, "<figure><img src=\"grids/{0}.png\" alt=\"{0}\"><figcaption>{0}</figcaption></figure>", html_escape(id));
        }
        html.push_str("</div>\n");
    }
    // For headless checks: how many images loaded.
    html.push_str("<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;});</script>\n</body></html>\n");
    write_atomic(&out.join("index.html"), html.as_bytes())?;
    if figures.is_empty() {
        bail!("no plot could be drawn from {} run configs", rows.len());
    }
    println!(
        "report: {} run configs, {} figures, {} sample grids → {}",
        rows.len(),
        figures.len(),
        grid_files.len(),
        out.join("index.html").display()
    );
    Ok(())
}
