//! The report's tables: `results.csv` (the merges' tables, concatenated) and `summary.md` (the
//! headline results and a table of every run config); index.html shows the same table.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::data::{fid_key, headline_diversity, label, Key, Row};

/// A number at a precision that suits its size.
pub(super) fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// The metrics the tables show: quality, the mixed diversity metrics (but Vendi) and the
/// intra-class ones.
pub(super) fn table_keys(keys: &[Key]) -> Vec<Key> {
    keys.iter()
        .filter(|k| k.2 == "all" || (k.2 == "mixed" && k.1 != "vendi") || k.2 == "intra")
        .cloned()
        .collect()
}

/// A table cell: the value with its bootstrap interval, the value alone, or a dash.
pub(super) fn cell(r: &Row, k: &Key) -> String {
    match (r.get(k), r.interval(k)) {
        (Some(v), Some((lo, hi))) => format!("{} [{}, {}]", fmt_num(v), fmt_num(lo), fmt_num(hi)),
        (Some(v), None) => fmt_num(v),
        _ => "–".into(),
    }
}

/// The runs' `results.csv` files as one, with a first column naming the sweep folder (the
/// header is the first file's).
pub(super) fn results_csv(runs: &[PathBuf]) -> Result<String> {
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
    Ok(csv)
}

/// `summary.md`: where the results come from, the best FID and diversity, and the table of
/// `columns` for every run config.
pub(super) fn summary_md(runs: &[PathBuf], rows: &[Row], keys: &[Key], columns: &[Key]) -> String {
    let mut md = format!(
        "# sitdiv report\n\n{} run configs from {}. Values with their bootstrap intervals [lo, hi].\n\n",
        rows.len(),
        runs.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    );
    write_highlights(&mut md, rows, keys);
    write_table(&mut md, rows, columns);
    md
}

/// The lowest FID and the highest headline diversity, each with its run config.
fn write_highlights(md: &mut String, rows: &[Row], keys: &[Key]) {
    let fid = fid_key();
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
    let Some(div) = headline_diversity(keys) else {
        return;
    };
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

/// The Markdown table: a row per run config, a column per metric of `columns`.
fn write_table(md: &mut String, rows: &[Row], columns: &[Key]) {
    let _ = writeln!(
        md,
        "\n| config | {} |",
        columns.iter().map(label).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(md, "|---|{}", "---|".repeat(columns.len()));
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {} |",
            r.id,
            columns
                .iter()
                .map(|k| cell(r, k))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}
