//! Heatmap panels: a labelled square matrix of values in [-1, 1] (the metrics' agreement), drawn
//! cell by cell straight onto the area.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::{DrawResult, FONT};

/// Room for the row labels on the left (and the rotated column labels below).
const MARGIN: i32 = 170;
/// Height of the title line above the matrix.
const TITLE_H: i32 = 30;
/// Cells at least this wide show their value.
const MIN_CELL_FOR_TEXT: i32 = 26;

/// Draws the title, the matrix `values` (None blank) and the `labels` of its rows and columns.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    values: &[Vec<Option<f64>>],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = labels.len();
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        title.to_string(),
        (10, 6),
        (FONT, 18).into_font(),
    ))?;
    let cell =
        (((w as i32 - MARGIN - 10).min(h as i32 - MARGIN - TITLE_H)) / n.max(1) as i32).max(4);
    let (ox, oy) = (MARGIN, TITLE_H);
    for (i, row) in values.iter().enumerate() {
        let y = oy + i as i32 * cell;
        for (j, v) in row.iter().enumerate() {
            draw_cell(area, (ox + j as i32 * cell, y), cell, *v)?;
        }
        area.draw(&Text::new(
            labels[i].clone(),
            (4, y + cell / 2 - 5),
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
    Ok(())
}

/// One `cell`-wide square at `(x, y)`, filled by its value and showing it when there is room.
fn draw_cell<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    cell: i32,
    v: Option<f64>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.draw(&Rectangle::new(
        [(x, y), (x + cell, y + cell)],
        fill(v).filled(),
    ))?;
    if let (Some(v), true) = (v, cell >= MIN_CELL_FOR_TEXT) {
        area.draw(&Text::new(
            format!("{v:.2}"),
            (x + 3, y + cell / 2 - 5),
            (FONT, 10).into_font(),
        ))?;
    }
    Ok(())
}

/// A value's colour: blue (−1) → white (0) → red (+1); light grey when there is none.
fn fill(v: Option<f64>) -> RGBColor {
    match v {
        Some(v) => {
            let t = v.clamp(-1.0, 1.0);
            let (r, g, b) = if t >= 0.0 {
                (255.0, 255.0 * (1.0 - t), 255.0 * (1.0 - t))
            } else {
                (255.0 * (1.0 + t), 255.0 * (1.0 + t), 255.0)
            };
            RGBColor(r as u8, g as u8, b as u8)
        }
        None => RGBColor(235, 235, 235),
    }
}
