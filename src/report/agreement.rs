//! Figure 6, the agreement of the metrics across run configs: Spearman, Kendall tau-b and
//! Pearson between every pair of metrics that all runs have, as heatmaps and as `agreement.csv`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::data::{label, Key, Row};
use super::figures::Figure;
use super::plot::{figure, Panel};
use crate::metrics::correlation::{kendall_tau_b, pearson, spearman};

/// A correlation coefficient of two columns; None where it is undefined.
type Coefficient = fn(&[f64], &[f64]) -> Option<f64>;

/// The coefficients, in the order of the panels and of the CSV.
const COEFFICIENTS: [(&str, Coefficient); 3] = [
    ("Spearman", spearman),
    ("Kendall tau-b", kendall_tau_b),
    ("Pearson", pearson),
];

const CSV_HEADER: &str = "coefficient,metric_a,metric_b,value\n";

/// The heatmaps (given at least 3 runs and 2 metrics that all of them have) and the CSV text
/// (its header alone otherwise).
pub(super) fn agreement(
    rows: &[Row],
    keys: &[Key],
    plots: &Path,
) -> Result<(Option<Figure>, String)> {
    let mut csv = String::from(CSV_HEADER);
    let cols = complete_columns(rows, keys);
    if rows.len() < 3 || cols.len() < 2 {
        return Ok((None, csv));
    }
    let data: Vec<Vec<f64>> = cols
        .iter()
        .map(|k| rows.iter().map(|r| r.get(k).unwrap_or(f64::NAN)).collect())
        .collect();
    let labels: Vec<String> = cols.iter().map(label).collect();
    let mut panels = Vec::new();
    for (name, coef) in COEFFICIENTS {
        let values = matrix(&data, coef);
        append_csv(&mut csv, name, &labels, &values);
        panels.push(Panel::Heatmap {
            title: format!("{name} across {} run configs", rows.len()),
            labels: labels.clone(),
            values,
        });
    }
    let side = (170 + 40 * cols.len() as u32 + 40).max(420);
    figure(&plots.join("agreement"), &panels, 3, (side, side))?;
    let fig = Figure {
        stem: "agreement".into(),
        caption: "Agreement of the metrics across run configs (intra, inter and mixed apart)"
            .into(),
    };
    Ok((Some(fig), csv))
}

/// The metrics every run has a value of (the coefficients need complete columns).
fn complete_columns(rows: &[Row], keys: &[Key]) -> Vec<Key> {
    keys.iter()
        .filter(|k| rows.iter().filter(|r| r.get(k).is_some()).count() == rows.len())
        .cloned()
        .collect()
}

/// `coef` between every pair of columns of `data`.
fn matrix(data: &[Vec<f64>], coef: Coefficient) -> Vec<Vec<Option<f64>>> {
    data.iter()
        .map(|a| data.iter().map(|b| coef(a, b)).collect())
        .collect()
}

/// One CSV line per cell of `values` (an undefined coefficient as an empty value).
fn append_csv(csv: &mut String, name: &str, labels: &[String], values: &[Vec<Option<f64>>]) {
    for (i, row) in values.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            let _ = writeln!(
                csv,
                "{name},{},{},{}",
                labels[i],
                labels[j],
                v.map(|v| v.to_string()).unwrap_or_default()
            );
        }
    }
}
