//! Rows into series: run configs that differ only in the setting on the x axis form one line,
//! named by the settings that tell it apart from the other lines of its panel.

use std::collections::BTreeMap;

use super::data::{label, Key, Row};
use super::plot::{Panel, Series};

/// The config fields of a series key, in key order.
const KEY_FIELDS: [&str; 14] = [
    "mode",
    "method",
    "steps",
    "cfg",
    "cfg_interval",
    "interval_mode",
    "guidance",
    "guidance_params",
    "diffusion_form",
    "diffusion_norm",
    "last_step",
    "last_step_size",
    "samples_per_class",
    "seed",
];

/// The fields a short series name may show, in the order it shows them.
const NAME_FIELDS: [&str; 13] = [
    "mode",
    "method",
    "steps",
    "diffusion_form",
    "diffusion_norm",
    "last_step",
    "guidance",
    "guidance_params",
    "cfg",
    "cfg_interval",
    "interval_mode",
    "samples_per_class",
    "seed",
];

/// Everything of a config but one setting: rows that differ only in it form a series.
pub(super) fn series_key(r: &Row, without: &[&str]) -> String {
    let mut parts = Vec::new();
    for k in KEY_FIELDS {
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
pub(super) fn short_names(keys: &[String]) -> Vec<String> {
    let maps: Vec<BTreeMap<String, String>> = keys.iter().map(|k| parse_key(k)).collect();
    let varying = varying_fields(&maps);
    maps.iter().map(|m| short_name(m, &varying)).collect()
}

/// A series key's `field=value` pairs.
fn parse_key(k: &str) -> BTreeMap<String, String> {
    k.split(' ')
        .filter_map(|p| p.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The fields (sorted) whose value, or presence, is not the same in every series.
fn varying_fields(maps: &[BTreeMap<String, String>]) -> Vec<String> {
    let mut fields: Vec<String> = maps.iter().flat_map(|m| m.keys().cloned()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| maps.iter().any(|m| m.get(f) != maps[0].get(f)))
        .collect()
}

/// One series' name from its `varying` settings; "all" when nothing varies.
fn short_name(m: &BTreeMap<String, String>, varying: &[String]) -> String {
    let parts: Vec<String> = NAME_FIELDS
        .iter()
        .filter(|f| varying.iter().any(|v| v == *f))
        .filter_map(|f| Some(describe(f, m.get(*f)?)))
        .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(", ")
    }
}

/// A setting as a legend shows it: `ODE`, `20 steps`, `cfg 2.0`, `4/class`.
fn describe(field: &str, v: &str) -> String {
    match field {
        "mode" => v.to_uppercase(),
        "steps" => format!("{v} steps"),
        "diffusion_form" => format!("{v} diffusion"),
        "diffusion_norm" => format!("norm {v}"),
        "last_step" => format!("last step {v}"),
        "cfg" => format!("cfg {v}"),
        "samples_per_class" => format!("{v}/class"),
        "seed" => format!("seed {v}"),
        _ => v.to_string(),
    }
}

/// The rows with a numeric `x`, grouped by everything else; groups under `min_points` dropped.
fn group_by_series<'a>(
    rows: &[&'a Row],
    x: &str,
    min_points: usize,
) -> BTreeMap<String, Vec<&'a Row>> {
    // The sample count follows from samples_per_class: both vary together.
    let without: &[&str] = if x == "num_samples" {
        &[x, "samples_per_class"]
    } else {
        &[x]
    };
    let mut groups: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        if r.f(x).is_some() {
            groups.entry(series_key(r, without)).or_default().push(r);
        }
    }
    groups.retain(|_, g| g.len() >= min_points);
    groups
}

/// One panel per metric of `rows` against the numeric config field `x` (series = the rest).
pub(super) fn panels_against(
    rows: &[&Row],
    x: &str,
    x_label: &str,
    metrics: &[Key],
    band: bool,
    min_points: usize,
) -> Vec<Panel> {
    let groups = group_by_series(rows, x, min_points);
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
