//! Chart layout choices of src/report/plot.rs.

use plotters::prelude::SeriesLabelPosition;
use sitdiv::report::plot::legend_corner;

fn corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
    legend_corner(points.iter().copied(), (0.0, 10.0), (0.0, 1.0), (0.5, 0.3))
}

#[test]
fn the_legend_goes_where_the_data_is_not() {
    // A curve rising to the right fills the upper-right corner: the legend moves upper left.
    let rising: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, i as f64 / 10.0)).collect();
    assert!(matches!(corner(&rising), SeriesLabelPosition::UpperLeft));
    // A falling curve leaves the upper right free.
    let falling: Vec<(f64, f64)> = (0..=10)
        .map(|i| (i as f64, 1.0 - i as f64 / 10.0))
        .collect();
    assert!(matches!(corner(&falling), SeriesLabelPosition::UpperRight));
    // Points across the whole top: a lower corner.
    let top: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 0.95)).collect();
    assert!(matches!(corner(&top), SeriesLabelPosition::LowerRight));
    // No points: the usual upper right.
    assert!(matches!(corner(&[]), SeriesLabelPosition::UpperRight));
}
