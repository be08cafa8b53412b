//! The quality–diversity panel: every run config as a labelled point, the non-dominated ones in
//! red and joined by a dashed front.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{cartesian, range, Chart, DrawResult, Labels, FONT};

const RED: RGBColor = RGBColor(214, 39, 40);
const BLUE: RGBColor = RGBColor(31, 119, 180);

/// Draws the points `(name, x, y)`, the front through the indices `front`, and the legend.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    labels: &Labels,
    points: &[(String, f64, f64)],
    front: &[usize],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let xr = range(points.iter().map(|p| p.1));
    let yr = range(points.iter().map(|p| p.2));
    let mut chart = cartesian(area, labels.title, xr, yr)?;
    chart
        .configure_mesh()
        .x_desc(labels.x)
        .y_desc(labels.y)
        .label_style((FONT, 12))
        .draw()?;
    draw_front(&mut chart, points, front)?;
    for (i, (name, x, y)) in points.iter().enumerate() {
        let c = if front.contains(&i) { RED } else { BLUE };
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
    Ok(())
}

/// The dashed line through the front's points in x order, with its legend entry.
fn draw_front<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    points: &[(String, f64, f64)],
    front: &[usize],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut f: Vec<(f64, f64)> = front.iter().map(|&i| (points[i].1, points[i].2)).collect();
    f.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(DashedLineSeries::new(f, 6, 4, RED.stroke_width(2)))?
        .label("Pareto front")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
    Ok(())
}
