//! `sitdiv report` on the merged `sweeps/tiny.toml`: every plot kind written as a readable,
//! non-blank PNG (and its SVG), sample grids, tables, and an index.html that shows them all;
//! the same inputs give the same bytes.

use std::path::{Path, PathBuf};

use crate::common::{repo, succeeds, tmp};

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn the_tiny_sweep_report_has_every_plot_and_links_them() {
    let dir = tmp("report");
    let sweep = repo().join("sweeps/tiny.toml");
    let (run, out) = (dir.join("tiny"), dir.join("report"));
    let (s, r, o) = (
        sweep.to_str().unwrap(),
        run.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    succeeds(&["sweep", "run", s, "--out", r]);
    succeeds(&["sweep", "merge", s, "--out", r]);
    succeeds(&["report", r, "--out", o]);

    let pngs = files(&out.join("plots"), "png");
    let stems: Vec<String> = pngs
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    println!("plots: {stems:?}");
    for kind in [
        "cfg",
        "sde",
        "interval",
        "samples",
        "pareto",
        "agreement",
        "per_class_dinov2-b14",
    ] {
        assert!(stems.iter().any(|s| s == kind), "no {kind} plot");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    let grids = files(&out.join("grids"), "png");
    assert_eq!(grids.len(), 12, "one sample grid per run config");
    for p in pngs.iter().chain(&grids) {
        let img = image::open(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .to_rgb8();
        let (w, h) = img.dimensions();
        let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
        colours.sort_unstable();
        colours.dedup();
        println!(
            "{}: {w}×{h}, {} colours",
            p.file_name().unwrap().to_string_lossy(),
            colours.len()
        );
        assert!(
            w >= 40 && h >= 40 && colours.len() > 8,
            "{} is blank or tiny",
            p.display()
        );
        let rel = p.strip_prefix(&out).unwrap().to_string_lossy().into_owned();
        assert!(
            html.contains(&format!("src=\"{rel}\"")),
            "index.html does not show {rel}"
        );
        assert!(
            p.with_extension("svg").exists() || rel.starts_with("grids"),
            "{rel}: no SVG"
        );
    }
    for f in ["results.csv", "agreement.csv", "summary.md"] {
        assert!(
            html.contains(&format!("href=\"{f}\"")),
            "index.html does not link {f}"
        );
        assert!(
            std::fs::metadata(out.join(f)).unwrap().len() > 100,
            "{f} is empty"
        );
    }
    // The same merged sweep gives the same report bytes.
    let again = dir.join("again");
    succeeds(&["report", r, "--out", again.to_str().unwrap()]);
    for f in [
        "index.html",
        "results.csv",
        "agreement.csv",
        "summary.md",
        "plots/cfg.svg",
        "plots/agreement.png",
    ] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(again.join(f)).unwrap(),
            "{f} differs"
        );
    }
}
