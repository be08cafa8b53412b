//! Image preprocessing shared by the metric backbones: uint8 NHWC batches in, float32 NCHW out.

use rayon::prelude::*;

/// One axis of TF1's legacy `ResizeBilinear` (align_corners=False, half_pixel_centers=False):
/// for output index i, the source indices (lo, hi) and the weight of hi. All in f32 as TF
/// computes it: scale = in/out, src = i·scale, lo = ⌊src⌋, hi = min(lo + 1, in − 1).
fn tf1_axis(len_in: usize, len_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = len_in as f32 / len_out as f32;
    (0..len_out)
        .map(|i| {
            let src = i as f32 * scale;
            let lo = src as usize; // src ≥ 0: truncation is the floor
            (
                lo.min(len_in - 1),
                (lo + 1).min(len_in - 1),
                src - lo as f32,
            )
        })
        .collect()
}

/// The ADM evaluator's Inception input: uint8 (N, H, W, C) → TF1 bilinear resize to size × size
/// → (x − 128)/128, as float32 (N, C, size, size). Interpolates along x first, then y, in f32
/// (`top + (bottom − top)·dy`), which is the TF kernel's order, so the result is bit-exact.
pub fn tf1_bilinear_nchw(
    images: &[u8],
    (n, h, w, c): (usize, usize, usize, usize),
    size: usize,
) -> Vec<f32> {
    let (ys, xs) = (tf1_axis(h, size), tf1_axis(w, size));
    let mut out = vec![0f32; n * c * size * size];
    let px =
        |s: usize, y: usize, x: usize, ch: usize| images[((s * h + y) * w + x) * c + ch] as f32;
    out.par_chunks_mut(size * size)
        .enumerate()
        .for_each(|(plane_id, plane)| {
            let (s, ch) = (plane_id / c, plane_id % c);
            for (oy, &(y0, y1, dy)) in ys.iter().enumerate() {
                for (ox, &(x0, x1, dx)) in xs.iter().enumerate() {
                    let (a, b) = (px(s, y0, x0, ch), px(s, y0, x1, ch));
                    let (cc, d) = (px(s, y1, x0, ch), px(s, y1, x1, ch));
                    let top = a + (b - a) * dx;
                    let bottom = cc + (d - cc) * dx;
                    plane[oy * size + ox] = (top + (bottom - top) * dy - 128.0) / 128.0;
                }
            }
        });
    out
}
