//! The report's charts with plotters, each written as PNG and SVG. Text uses the DejaVu Sans font
//! embedded in the binary, so no system fonts are needed.

use std::path::Path;

use anyhow::{anyhow, Result};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::io::write_atomic;

mod chart;
mod distributions;
mod heatmap;
mod lines;
mod pareto;

pub use chart::{legend_corner, Point, Series};
use chart::{DrawResult, Labels, FONT};

static DEJAVU: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Registers the embedded font (once per process).
pub fn init_font() -> Result<()> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, DEJAVU).is_ok()
            && plotters::style::register_font(FONT, FontStyle::Bold, DEJAVU).is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| anyhow!("the embedded DejaVu Sans font did not load"))
}

/// One panel of a figure.
pub enum Panel {
    /// Lines over a numeric x; intervals drawn as bands (`band`) or error bars.
    Lines {
        title: String,
        x_label: String,
        y_label: String,
        series: Vec<Series>,
        band: bool,
        /// Category names for integer x positions 0, 1, … (e.g. guidance intervals).
        x_names: Option<Vec<String>>,
        /// A dashed reference level (e.g. the cfg 1.0 baseline).
        baseline: Option<(String, f64)>,
    },
    /// Points with the non-dominated ones joined (x maximised, y minimised).
    Pareto {
        title: String,
        x_label: String,
        y_label: String,
        points: Vec<(String, f64, f64)>,
        front: Vec<usize>,
    },
    /// A labelled square matrix of values in [-1, 1]; None shown as blank.
    Heatmap {
        title: String,
        labels: Vec<String>,
        values: Vec<Vec<Option<f64>>>,
    },
    /// A distribution per group: box (quartiles, whiskers at min/max) and the points.
    Distributions {
        title: String,
        y_label: String,
        groups: Vec<(String, Vec<f64>)>,
    },
}

/// Draws one panel into its area, by kind.
fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult
where
    DB::ErrorType: 'static,
{
    match panel {
        Panel::Lines {
            title,
            x_label,
            y_label,
            series,
            band,
            x_names,
            baseline,
        } => {
            let labels = Labels {
                title,
                x: x_label,
                y: y_label,
            };
            let style = lines::Style {
                band: *band,
                x_names: x_names.as_deref(),
                baseline: baseline.as_ref(),
            };
            lines::draw(area, &labels, series, &style)
        }
        Panel::Pareto {
            title,
            x_label,
            y_label,
            points,
            front,
        } => {
            let labels = Labels {
                title,
                x: x_label,
                y: y_label,
            };
            pareto::draw(area, &labels, points, front)
        }
        Panel::Heatmap {
            title,
            labels,
            values,
        } => heatmap::draw(area, title, labels, values),
        Panel::Distributions {
            title,
            y_label,
            groups,
        } => distributions::draw(area, title, y_label, groups),
    }
}

/// Draws `panels` in a grid of `cols` columns into `<stem>.png` and `<stem>.svg`.
pub fn figure(stem: &Path, panels: &[Panel], cols: usize, panel_size: (u32, u32)) -> Result<()> {
    init_font()?;
    let cols = cols.clamp(1, panels.len().max(1));
    let rows = panels.len().div_ceil(cols).max(1);
    let size = (panel_size.0 * cols as u32, panel_size.1 * rows as u32);
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
            render(&root, panels, rows, cols).map_err(|e| anyhow!("{}: {e}", png.display()))?;
            root.present()
                .map_err(|e| anyhow!("{}: {e}", png.display()))?;
        }
        let mut bytes = Vec::new();
        image::codecs::png::PngEncoder::new(&mut bytes)
            .write_image(&buf, size.0, size.1, image::ExtendedColorType::Rgb8)
            .map_err(|e| anyhow!("{}: {e}", png.display()))?;
        write_atomic(&png, &bytes)?;
    }
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        render(&root, panels, rows, cols).map_err(|e| anyhow!("{}: {e}", svg.display()))?;
        root.present()
            .map_err(|e| anyhow!("{}: {e}", svg.display()))?;
    }
    write_atomic(&svg, text.as_bytes())
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    rows: usize,
    cols: usize,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let areas = root.split_evenly((rows, cols));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    Ok(())
}
