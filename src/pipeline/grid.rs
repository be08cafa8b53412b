//! Sample grids: the first images of a batch tiled into one PNG.

use std::path::Path;

use anyhow::{Context, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};

use crate::io::write_atomic;

/// Images per grid row, and the most a grid shows.
const COLUMNS: usize = 8;
const MAX_IMAGES: usize = 64;
const GAP: usize = 2;

/// Writes up to 64 uint8 NHWC images (RGB) as a grid with 2-pixel white gaps.
pub fn write_png_grid(
    path: &Path,
    images: &[u8],
    n: usize,
    h: usize,
    w: usize,
    c: usize,
) -> Result<()> {
    let shown = n.min(MAX_IMAGES);
    let cols = shown.clamp(1, COLUMNS);
    let rows = shown.div_ceil(cols).max(1);
    let (gw, gh) = (cols * (w + GAP) + GAP, rows * (h + GAP) + GAP);
    let mut canvas = vec![255u8; gw * gh * 3];
    for i in 0..shown {
        let (r, q) = (i / cols, i % cols);
        for y in 0..h {
            for x in 0..w {
                let src = ((i * h + y) * w + x) * c;
                let dst = (((r * (h + GAP) + GAP + y) * gw) + q * (w + GAP) + GAP + x) * 3;
                for k in 0..3 {
                    canvas[dst + k] = images[src + k.min(c - 1)];
                }
            }
        }
    }
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(&canvas, gw as u32, gh as u32, ExtendedColorType::Rgb8)
        .with_context(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &png)
}
