//! Line panels: each series over a numeric (or categorical) x, with its intervals as bands or
//! error bars, an optional dashed baseline and a legend placed where it hides the least data.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{
    cartesian, color, legend_corner, range, Chart, DrawResult, Labels, Series, FONT,
};

/// How a line panel shows its data beyond the series themselves.
pub(super) struct Style<'a> {
    /// Intervals as shaded bands (else error bars).
    pub band: bool,
    /// Category names for integer x positions 0, 1, ….
    pub x_names: Option<&'a [String]>,
    /// A dashed reference level and its legend name.
    pub baseline: Option<&'a (String, f64)>,
}

/// Draws a line panel: axes, baseline, every series, then the legend.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &Labels,
    series: &[Series],
    style: &Style,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (xr, yr) = ranges(series, style.baseline);
    let mut chart = cartesian(area, labels.title, xr, yr)?;
    draw_mesh(&mut chart, labels, style.x_names)?;
    if let Some(baseline) = style.baseline {
        draw_baseline(&mut chart, baseline, xr)?;
    }
    for (i, s) in series.iter().enumerate() {
        draw_series(&mut chart, s, color(i), style.band)?;
    }
    draw_legend(&mut chart, series, style.baseline.is_some(), xr, yr)
}

/// The x and y ranges: every point, its interval ends and the baseline level are in view.
fn ranges(series: &[Series], baseline: Option<&(String, f64)>) -> ((f64, f64), (f64, f64)) {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| {
        s.points.iter().flat_map(|&(_, y, iv)| {
            [Some(y), iv.map(|i| i.0), iv.map(|i| i.1)]
                .into_iter()
                .flatten()
        })
    });
    (range(xs), range(ys.chain(baseline.iter().map(|b| b.1))))
}

/// The x tick text: the category name at integer positions when there are categories (blank
/// between them), else the value with trailing zeros dropped.
fn x_tick(names: Option<&[String]>, v: f64) -> String {
    match names {
        Some(n) if (v - v.round()).abs() < 1e-9 && v >= 0.0 => {
            n.get(v.round() as usize).cloned().unwrap_or_default()
        }
        Some(_) => String::new(),
        None => format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
    }
}

/// Axes, grid and tick labels; with categories, a tick at each one and half-way between.
fn draw_mesh<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    labels: &Labels,
    x_names: Option<&[String]>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let fmt_x = |v: &f64| x_tick(x_names, *v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(labels.x)
        .y_desc(labels.y)
        .label_style((FONT, 12))
        .x_label_formatter(&fmt_x);
    if let Some(n) = x_names {
        mesh.x_labels(n.len() * 2 + 1);
    }
    mesh.draw()?;
    Ok(())
}

/// The dashed reference level across the whole x range, with its legend entry.
fn draw_baseline<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    (name, level): &(String, f64),
    (x0, x1): (f64, f64),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
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
    Ok(())
}

/// One series in colour `c`: its intervals, the line (with a legend entry) and the points.
fn draw_series<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    s: &Series,
    c: RGBColor,
    band: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut pts = s.points.clone();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    draw_intervals(chart, &pts, c, band)?;
    chart
        .draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            c.stroke_width(2),
        ))?
        .label(s.name.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
    chart.draw_series(pts.iter().map(|p| Circle::new((p.0, p.1), 3, c.filled())))?;
    Ok(())
}

/// The intervals of x-sorted points: a shaded band through them when `band` and at least two
/// have one (a band needs two ends), else an error bar at each.
fn draw_intervals<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    pts: &[super::chart::Point],
    c: RGBColor,
    band: bool,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let bands: Vec<(f64, f64, f64, f64)> = pts
        .iter()
        .filter_map(|&(x, y, iv)| iv.map(|(lo, hi)| (x, y, lo, hi)))
        .collect();
    if band && bands.len() >= 2 {
        let mut poly: Vec<(f64, f64)> = bands.iter().map(|b| (b.0, b.3)).collect();
        poly.extend(bands.iter().rev().map(|b| (b.0, b.2)));
        chart.draw_series(std::iter::once(Polygon::new(poly, c.mix(0.18).filled())))?;
    } else {
        chart.draw_series(
            bands
                .iter()
                .map(|&(x, y, lo, hi)| ErrorBar::new_vertical(x, lo, y, hi, c.stroke_width(1), 6)),
        )?;
    }
    Ok(())
}

/// The legend, in the corner where a box of its size covers the fewest points and interval ends.
fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    series: &[Series],
    has_baseline: bool,
    xr: (f64, f64),
    yr: (f64, f64),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
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
    let rows = series.len() + has_baseline as usize;
    let share = (
        (longest.unwrap_or(0) as f64 * 6.0 + 40.0) / pw.max(1) as f64,
        (rows as f64 * 16.0 + 12.0) / ph.max(1) as f64,
    );
    chart
        .configure_series_labels()
        .position(legend_corner(drawn, xr, yr, share))
        .label_font((FONT, 11))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
