//! What every panel kind draws with: the font name, colours, point and series types, ranges,
//! the legend's placement and the cartesian chart with its caption.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

pub const FONT: &str = "sans-serif";

/// A point of a line: (x, y, optional interval (lo, hi)).
pub type Point = (f64, f64, Option<(f64, f64)>);

/// A line with an optional interval per point.
pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
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

pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// What drawing with plotters returns: its errors differ per backend, so they are boxed.
pub type DrawResult<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A chart over numeric x and y, as every cartesian panel draws on.
pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A padded range that is never empty.
pub fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
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

/// Axis and title texts of a cartesian panel.
pub struct Labels<'a> {
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
}

/// The cartesian chart of a line or Pareto panel over `x` × `y`, with its caption (no mesh yet).
pub fn cartesian<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> DrawResult<Chart<'a, DB>>
where
    DB::ErrorType: 'static,
{
    Ok(ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(8)
        .x_label_area_size(38)
        .y_label_area_size(62)
        .build_cartesian_2d(x0..x1, y0..y1)?)
}
