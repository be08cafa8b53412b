//! The report's charts with plotters, each written as PNG and SVG. Text uses the DejaVu Sans font
//! embedded in the binary, so no system fonts are needed.

use std::path::Path;

use anyhow::{anyhow, Result};
use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::pipeline::write_atomic;

const FONT: &str = "sans-serif";
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

/// A point of a line: (x, y, optional interval (lo, hi)).
pub type Point = (f64, f64, Option<(f64, f64)>);

/// A line with an optional interval per point.
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
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

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// A padded range that is never empty.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        0.08 * (hi - lo)
    } else {
        lo.abs().max(1e-3) * 0.1
    };
    (lo - pad, hi + pad)
}

/// The corner of the plot area whose legend-sized box (`box_share`: width and height as shares of
/// the plot area) covers the fewest drawn points, so the legend hides as little data as it can
/// (ties: upper right, upper left, lower right, lower left).
pub fn legend_corner(
    points: impl Iterator<Item = (f64, f64)>,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    (w, h): (f64, f64),
) -> SeriesLabelPosition {
    let mut hits = [0usize; 4];
    for (x, y) in points {
        let (u, v) = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
        let (left, right, low, high) = (u <= w, u >= 1.0 - w, v <= h, v >= 1.0 - h);
        for (k, inside) in [high && right, high && left, low && right, low && left]
            .into_iter()
            .enumerate()
        {
            hits[k] += inside as usize;
        }
    }
    match (0..4).min_by_key(|&k| (hits[k], k)) {
        Some(1) => SeriesLabelPosition::UpperLeft,
        Some(2) => SeriesLabelPosition::LowerRight,
        Some(3) => SeriesLabelPosition::LowerLeft,
        _ => SeriesLabelPosition::UpperRight,
    }
}

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
            let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
            let (x0, x1) = range(xs);
            let ys = series.iter().flat_map(|s| {
                s.points.iter().flat_map(|&(_, y, iv)| {
                    [Some(y), iv.map(|i| i.0), iv.map(|i| i.1)]
                        .into_iter()
                        .flatten()
                })
            });
            let (y0, y1) = range(ys.chain(baseline.iter().map(|b| b.1)));
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 18))
                .margin(8)
                .x_label_area_size(38)
                .y_label_area_size(62)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            let names = x_names.clone();
            let fmt_x = move |v: &f64| match &names {
                Some(n) if (v - v.round()).abs() < 1e-9 && *v >= 0.0 => {
                    n.get(v.round() as usize).cloned().unwrap_or_default()
                }
                Some(_) => String::new(),
                None => format!("{v:.3}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string(),
            };
            let mut mesh = chart.configure_mesh();
            mesh.x_desc(x_label.as_str())
                .y_desc(y_label.as_str())
                .label_style((FONT, 12))
                .x_label_formatter(&fmt_x);
            if let Some(n) = x_names {
                mesh.x_labels(n.len() * 2 + 1);
            }
            mesh.draw()?;
            if let Some((name, level)) = baseline {
                let style = ShapeStyle::from(&BLACK.mix(0.6)).stroke_width(1);
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x0, *level), (x1, *level)],
                        6,
                        4,
                        style,
                    ))?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
            for (i, s) in series.iter().enumerate() {
                let c = color(i);
                let mut pts = s.points.clone();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let bands: Vec<(f64, f64, f64, f64)> = pts
                    .iter()
                    .filter_map(|&(x, y, iv)| iv.map(|(lo, hi)| (x, y, lo, hi)))
                    .collect();
                if *band && bands.len() >= 2 {
                    let mut poly: Vec<(f64, f64)> = bands.iter().map(|b| (b.0, b.3)).collect();
                    poly.extend(bands.iter().rev().map(|b| (b.0, b.2)));
                    chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))?;
                } else {
                    chart.draw_series(bands.iter().map(|&(x, y, lo, hi)| {
                        ErrorBar::new_vertical(x, lo, y, hi, c.stroke_width(1), 6)
                    }))?;
                }
                chart
                    .draw_series(LineSeries::new(
                        pts.iter().map(|p| (p.0, p.1)),
                        c.stroke_width(2),
                    ))?
                    .label(s.name.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2))
                    });
                chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled())))?;
            }
            let drawn = series.iter().flat_map(|s| {
                s.points.iter().flat_map(|&(x, y, iv)| {
                    let ends = iv.map(|(lo, hi)| [(x, lo), (x, hi)]);
                    std::iter::once((x, y)).chain(ends.into_iter().flatten())
                })
            });
            // The legend's size at an 11 px font: about 6 px a character plus the line sample,
            // 16 px a row.
            let (pw, ph) = chart.plotting_area().dim_in_pixel();
            let longest = series.iter().map(|s| s.name.chars().count()).max();
            let rows = series.len() + baseline.is_some() as usize;
            let share = (
                (longest.unwrap_or(0) as f64 * 6.0 + 40.0) / pw.max(1) as f64,
                (rows as f64 * 16.0 + 12.0) / ph.max(1) as f64,
            );
            chart
                .configure_series_labels()
                .position(legend_corner(drawn, (x0, x1), (y0, y1), share))
                .label_font((FONT, 11))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()?;
        }
        Panel::Pareto {
            title,
            x_label,
            y_label,
            points,
            front,
        } => {
            let (x0, x1) = range(points.iter().map(|p| p.1));
            let (y0, y1) = range(points.iter().map(|p| p.2));
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 18))
                .margin(8)
                .x_label_area_size(38)
                .y_label_area_size(62)
                .build_cartesian_2d(x0..x1, y0..y1)?;
            chart
                .configure_mesh()
                .x_desc(x_label.as_str())
                .y_desc(y_label.as_str())
                .label_style((FONT, 12))
                .draw()?;
            let mut f: Vec<(f64, f64)> =
                front.iter().map(|&i| (points[i].1, points[i].2)).collect();
            f.sort_by(|a, b| a.0.total_cmp(&b.0));
            let red = RGBColor(214, 39, 40);
            chart
                .draw_series(DashedLineSeries::new(f, 6, 4, red.stroke_width(2)))?
                .label("Pareto front")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(2))
                });
            for (i, (name, x, y)) in points.iter().enumerate() {
                let on = front.contains(&i);
                let c = if on { red } else { RGBColor(31, 119, 180) };
                chart.draw_series(std::iter::once(Circle::new((*x, *y), 4, c.filled())))?;
                chart.draw_series(std::iter::once(Text::new(
                    name.clone(),
                    (*x, *y),
                    (FONT, 10).into_font().color(&BLACK.mix(0.8)),
                )))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 11))
                .background_style(WHITE.mix(0.85))
                .draw()?;
        }
        Panel::Heatmap {
            title,
            labels,
            values,
        } => {
            let n = labels.len();
            let (w, h) = area.dim_in_pixel();
            let title_h = 30i32;
            let margin = 170i32;
            area.draw(&Text::new(title.clone(), (10, 6), (FONT, 18).into_font()))?;
            let cell = (((w as i32 - margin - 10).min(h as i32 - margin - title_h))
                / n.max(1) as i32)
                .max(4);
            let (ox, oy) = (margin, title_h);
            for (i, row) in values.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let (x, y) = (ox + j as i32 * cell, oy + i as i32 * cell);
                    let fill = match v {
                        Some(v) => {
                            let t = v.clamp(-1.0, 1.0);
                            // Blue (−1) → white (0) → red (+1).
                            let (r, g, b) = if t >= 0.0 {
                                (255.0, 255.0 * (1.0 - t), 255.0 * (1.0 - t))
                            } else {
                                (255.0 * (1.0 + t), 255.0 * (1.0 + t), 255.0)
                            };
                            RGBColor(r as u8, g as u8, b as u8)
                        }
                        None => RGBColor(235, 235, 235),
                    };
                    area.draw(&Rectangle::new(
                        [(x, y), (x + cell, y + cell)],
                        fill.filled(),
                    ))?;
                    if let (Some(v), true) = (v, cell >= 26) {
                        area.draw(&Text::new(
                            format!("{v:.2}"),
                            (x + 3, y + cell / 2 - 5),
                            (FONT, 10).into_font(),
                        ))?;
                    }
                }
                area.draw(&Text::new(
                    labels[i].clone(),
                    (4, oy + i as i32 * cell + cell / 2 - 5),
                    (FONT, 10).into_font(),
                ))?;
            }
            for (j, l) in labels.iter().enumerate() {
                area.draw(&Text::new(
                    l.clone(),
                    (
                        ox + j as i32 * cell + cell / 2 - 4,
                        oy + n as i32 * cell + 4,
                    ),
                    (FONT, 10).into_font().transform(FontTransform::Rotate90),
                ))?;
            }
        }
        Panel::Distributions {
            title,
            y_label,
            groups,
        } => {
            let (y0, y1) = range(groups.iter().flat_map(|g| g.1.iter().copied()));
            let n = groups.len().max(1);
            let mut chart = ChartBuilder::on(area)
                .caption(title, (FONT, 18))
                .margin(8)
                .x_label_area_size(120)
                .y_label_area_size(62)
                .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
            let names: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
            let fmt = move |v: &f64| {
                if (v - v.round()).abs() < 1e-9 && *v >= 0.0 {
                    names.get(v.round() as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .y_desc(y_label.as_str())
                .x_labels(2 * n + 1)
                .x_label_formatter(&fmt)
                .x_label_style((FONT, 10).into_font().transform(FontTransform::Rotate90))
                .label_style((FONT, 12))
                .disable_x_mesh()
                .draw()?;
            for (i, (_, vals)) in groups.iter().enumerate() {
                if vals.is_empty() {
                    continue;
                }
                let mut v = vals.clone();
                v.sort_by(f64::total_cmp);
                let q = |p: f64| crate::metrics::bootstrap::quantile(&v, p);
                let x = i as f64;
                let c = color(0);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(x - 0.25, q(0.25)), (x + 0.25, q(0.75))],
                    c.mix(0.25).filled(),
                )))?;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x - 0.25, q(0.5)), (x + 0.25, q(0.5))],
                    c.stroke_width(2),
                )))?;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(x, v[0]), (x, v[v.len() - 1])],
                    c.stroke_width(1),
                )))?;
                chart.draw_series(
                    v.iter()
                        .map(|&y| Circle::new((x, y), 2, BLACK.mix(0.6).filled())),
                )?;
            }
        }
    }
    Ok(())
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
