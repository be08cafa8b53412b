//! `sitdiv report RUN_DIR… --out DIR`: the study's questions answered from merged sweeps, without
//! Python: plots (PNG and SVG) of each metric against guidance, SDE form × norm, guidance
//! intervals and sample count (with the merge's bootstrap intervals), the quality–diversity
//! Pareto front, the agreement of the metrics across run configs, per-class diversity, the
//! validation loss against the number of images when a run has it; sample
//! grids; `results.csv`, `summary.md` and an offline `index.html` that shows them all.

pub mod data;
pub mod plot;

mod agreement;
mod figures;
mod html;
mod series;
mod tables;

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

use self::data::{load_rows, sample_grid, Key, Row};
use self::figures::Figure;
use crate::io::write_atomic;

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

/// `sitdiv report`.
pub fn run(runs: &[PathBuf], out: &Path) -> Result<()> {
    ensure!(!runs.is_empty(), "give at least one sweep output folder");
    let rows = load_rows(runs)?;
    let plots = create_dir(out.join("plots"))?;
    let grids = create_dir(out.join("grids"))?;
    let keys = headline_keys(&rows);
    let mut figures = draw_figures(&rows, &keys, &plots, out)?;
    figures.extend(figures::valloss(runs, &plots)?);
    let grid_ids = sample_grids(&rows, &grids)?;
    write_atomic(
        &out.join("results.csv"),
        tables::results_csv(runs)?.as_bytes(),
    )?;
    let columns = tables::table_keys(&keys);
    let md = tables::summary_md(runs, &rows, &keys, &columns);
    write_atomic(&out.join("summary.md"), md.as_bytes())?;
    let html = html::index_html(&rows, &columns, &figures, &grid_ids);
    write_atomic(&out.join("index.html"), html.as_bytes())?;
    if figures.is_empty() {
        bail!("no plot could be drawn from {} run configs", rows.len());
    }
    println!(
        "report: {} run configs, {} figures, {} sample grids → {}",
        rows.len(),
        figures.len(),
        grid_ids.len(),
        out.join("index.html").display()
    );
    Ok(())
}

/// Creates `dir` (and its parents) and hands it back.
fn create_dir(dir: PathBuf) -> Result<PathBuf> {
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Every figure the runs can answer, in the order index.html shows them, under `plots`; the
/// agreement's table goes to `<out>/agreement.csv` (its header alone when there is no figure).
fn draw_figures(rows: &[Row], keys: &[Key], plots: &Path, out: &Path) -> Result<Vec<Figure>> {
    let mut all = Vec::new();
    all.extend(figures::guidance(rows, keys, plots)?);
    all.extend(figures::sde(rows, keys, plots)?);
    all.extend(figures::intervals(rows, keys, plots)?);
    all.extend(figures::sample_count(rows, keys, plots)?);
    all.extend(figures::pareto(rows, keys, plots)?);
    all.extend(figures::method_fronts(rows, keys, plots)?);
    let (agreement, csv) = agreement::agreement(rows, keys, plots)?;
    all.extend(agreement);
    write_atomic(&out.join("agreement.csv"), csv.as_bytes())?;
    all.extend(figures::per_class(rows, keys, plots)?);
    Ok(all)
}

/// A sample grid per run config that kept its images, as `<grids>/<id>.png`; their ids.
fn sample_grids(rows: &[Row], grids: &Path) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    for r in rows {
        if sample_grid(&r.run, &r.id, &grids.join(format!("{}.png", r.id)))? {
            ids.push(r.id.clone());
        }
    }
    Ok(ids)
}
