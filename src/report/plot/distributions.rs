//! Distribution panels: one box plot per group (quartiles, median, whiskers at min and max) with
//! every value drawn over it, the groups named below the x axis.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{color, range, Chart, DrawResult, FONT};

/// Draws each group `(name, values)` at x = 0, 1, …; a group without values leaves its slot empty.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<f64>)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (y0, y1) = range(groups.iter().flat_map(|g| g.1.iter().copied()));
    let n = groups.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 18))
        .margin(8)
        .x_label_area_size(120)
        .y_label_area_size(62)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)?;
    let names: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let fmt = |v: &f64| group_tick(&names, *v);
    chart
        .configure_mesh()
        .y_desc(y_label)
        .x_labels(2 * n + 1)
        .x_label_formatter(&fmt)
        .x_label_style((FONT, 10).into_font().transform(FontTransform::Rotate90))
        .label_style((FONT, 12))
        .disable_x_mesh()
        .draw()?;
    for (i, (_, vals)) in groups.iter().enumerate() {
        if !vals.is_empty() {
            draw_box(&mut chart, i as f64, vals)?;
        }
    }
    Ok(())
}

/// The x tick text: a group's name at its integer position, blank between groups.
fn group_tick(names: &[String], v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 && v >= 0.0 {
        names.get(v.round() as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The box plot of the non-empty `vals` at `x`, then each value as a point.
fn draw_box<DB: DrawingBackend>(chart: &mut Chart<DB>, x: f64, vals: &[f64]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut v = vals.to_vec();
    v.sort_by(f64::total_cmp);
    let q = |p: f64| crate::metrics::bootstrap::quantile(&v, p);
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
    Ok(())
}
