//! 2-D convolution (any kernel size, stride and zero padding) as a product of the weights with
//! an implicit im2col, with an optional fused ReLU; nearest upsampling.
//!
//! The columns of the product are the output pixels of every sample in a row, (N·H'·W'); each job
//! builds the im2col of one panel of them (see gemm.rs) and runs every output channel over it, so
//! no im2col larger than a panel is ever materialised and small late maps of several samples
//! still fill whole panels. The product's arithmetic makes the bits independent of the batch.

use rayon::prelude::*;

use super::gemm::{rows_times_panel, Aligned, OutPtr, Store, View, MR, NR};
use crate::backend::{Nchw, Window};

/// The output (N, Co, H'·W') of a product whose columns are (N·H'·W'): bias, ReLU, scatter.
struct ConvOut<'a> {
    ptr: OutPtr,
    b: &'a [f32],
    co: usize,
    hw: usize,
    relu: bool,
}

impl Store for ConvOut<'_> {
    fn store(&self, i0: usize, j0: usize, acc: &mut [[f32; NR]], w: usize) {
        for (r, row) in acc.iter_mut().enumerate() {
            let o = i0 + r;
            let vals = &mut row[..w];
            let bias = self.b[o];
            for v in vals.iter_mut() {
                *v += bias;
                // `v < 0` keeps NaN, as torch.relu does.
                if self.relu && *v < 0.0 {
                    *v = 0.0;
                }
            }
            let mut j = j0;
            for seg in split_samples(j0, w, self.hw) {
                let (s, p) = (j / self.hw, j % self.hw);
                // SAFETY: sample s, channel o, pixels p.. belong to this call alone (the product
                // hands out each element once); the buffer holds N·Co·HW.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        vals[j - j0..].as_ptr(),
                        self.ptr.0.add((s * self.co + o) * self.hw + p),
                        seg,
                    )
                };
                j += seg;
            }
        }
    }
}

/// Lengths of the runs of columns `j0 .. j0 + n` that stay inside one sample of `hw` columns.
fn split_samples(j0: usize, n: usize, hw: usize) -> impl Iterator<Item = usize> {
    let mut j = j0;
    std::iter::from_fn(move || {
        (j < j0 + n).then(|| {
            let seg = (hw - j % hw).min(j0 + n - j);
            j += seg;
            seg
        })
    })
}

/// `F.conv2d(x, w, b, stride, padding)` (+ ReLU): x (N, Ci, H, W), w (Co, Ci, kh, kw), b (Co) →
/// (N, Co, H', W'). The caller has checked that the window fits (`Window::output`).
pub fn conv2d(
    x: &[f32],
    d: Nchw,
    w: &[f32],
    b: &[f32],
    co: usize,
    win: Window,
    relu: bool,
) -> Vec<f32> {
    let Some((ho, wo)) = win.output(d.h, d.w) else {
        return Vec::new();
    };
    let (kk, hw) = (d.c * win.kh * win.kw, ho * wo);
    let cols = d.n * hw;
    if cols * co == 0 {
        return Vec::new();
    }
    let mut y = vec![0f32; d.n * co * hw];
    let out = ConvOut {
        ptr: OutPtr(y.as_mut_ptr()),
        b,
        co,
        hw,
        relu,
    };
    let weights = View {
        data: w,
        rs: kk,
        cs: 1,
    };
    // Jobs: panels × groups of output channels, the channels split only when there are too few
    // panels to keep every thread busy (each group builds the panel again).
    let panels = cols.div_ceil(NR);
    let want = 4 * rayon::current_num_threads();
    let blocks = co.div_ceil(MR);
    let groups = want.div_ceil(panels).min(blocks).max(1);
    let per_group = blocks.div_ceil(groups);
    let groups = blocks.div_ceil(per_group);
    (0..panels * groups).into_par_iter().for_each_init(
        || Aligned::zeroed(kk * NR),
        |buf, job| {
            let panel = &mut buf.as_mut_slice()[..kk * NR];
            let (p, g) = (job / groups, job % groups);
            let (j0, n) = (p * NR, NR.min(cols - p * NR));
            im2col_panel(x, d, win, (hw, wo), (j0, n), panel);
            let rows = g * per_group * MR..((g + 1) * per_group * MR).min(co);
            rows_times_panel(weights, rows, panel, kk, (j0, n), &out);
        },
    );
    y
}

/// The im2col panel (Ci·kh·kw, NR) of output columns `j0 .. j0 + n` of (N·H'·W'), rows ordered
/// (c, ky, kx) like the weight, zeros where the window reads padding and past column n.
fn im2col_panel(
    x: &[f32],
    d: Nchw,
    win: Window,
    (hw, wo): (usize, usize),
    (j0, n): (usize, usize),
    panel: &mut [f32],
) {
    let (kh, kw, st) = (win.kh, win.kw, win.stride);
    if interior_row(d, win, wo, j0, n) {
        return im2col_interior(x, d, win, (hw, wo), j0, panel);
    }
    if win == Window::square(1, 1, 0) {
        return im2col_pointwise(x, d, hw, (j0, n), panel);
    }
    panel.fill(0.0);
    let mut j = j0;
    while j < j0 + n {
        let (s, pix) = (j / hw, j % hw);
        let (oy, ox0) = (pix / wo, pix % wo);
        // One output row of one sample.
        let span = (wo - ox0).min(j0 + n - j);
        let at = j - j0;
        let xs = &x[s * d.c * d.h * d.w..][..d.c * d.h * d.w];
        for c in 0..d.c {
            for ky in 0..kh {
                let iy = (oy * st + ky) as isize - win.ph as isize;
                if iy < 0 || iy as usize >= d.h {
                    continue;
                }
                let src_row = &xs[(c * d.h + iy as usize) * d.w..][..d.w];
                for kx in 0..kw {
                    let dst = &mut panel[((c * kh + ky) * kw + kx) * NR + at..][..span];
                    if st == 1 {
                        // ix = ox + kx − pw must lie in 0..W: one contiguous copy.
                        let lo = win.pw.saturating_sub(ox0 + kx).min(span);
                        let hi = (d.w + win.pw).saturating_sub(ox0 + kx).min(span).max(lo);
                        // A span entirely in the padding (narrow maps) copies nothing.
                        if hi > lo {
                            let ix0 = ox0 + lo + kx - win.pw;
                            let src = &src_row[ix0..ix0 + (hi - lo)];
                            // A whole panel row (the common case on maps ≥ 32 wide): a copy of
                            // constant length, inlined, instead of a call per row.
                            match (
                                <&mut [f32; NR]>::try_from(&mut dst[lo..hi]),
                                <&[f32; NR]>::try_from(src),
                            ) {
                                (Ok(d), Ok(s)) => *d = *s,
                                _ => dst[lo..hi].copy_from_slice(src),
                            }
                        }
                    } else {
                        for (jj, v) in dst.iter_mut().enumerate() {
                            let ix = ((ox0 + jj) * st + kx) as isize - win.pw as isize;
                            if ix >= 0 && (ix as usize) < d.w {
                                *v = src_row[ix as usize];
                            }
                        }
                    }
                }
            }
        }
        j += span;
    }
}

/// Whether a stride-1 panel of NR columns lies in one output row and every window column of it
/// reads inside the map, so that each im2col row is one copy of NR input values.
fn interior_row(d: Nchw, win: Window, wo: usize, j0: usize, n: usize) -> bool {
    let ox0 = j0 % (wo.max(1));
    win.stride == 1
        && n == NR
        && ox0 + NR <= wo
        && ox0 >= win.pw
        && ox0 + NR + win.kw <= d.w + win.pw + 1
}

/// [`im2col_panel`] for an [`interior_row`] panel: only the rows of the window that fall in the
/// top or bottom padding stay zero.
fn im2col_interior(
    x: &[f32],
    d: Nchw,
    win: Window,
    (hw, wo): (usize, usize),
    j0: usize,
    panel: &mut [f32],
) {
    let (kh, kw) = (win.kh, win.kw);
    let (s, pix) = (j0 / hw, j0 % hw);
    let (oy, ox0) = (pix / wo, pix % wo);
    let xs = &x[s * d.c * d.h * d.w..][..d.c * d.h * d.w];
    let x0 = ox0 - win.pw;
    for c in 0..d.c {
        for ky in 0..kh {
            let rows = &mut panel[(c * kh + ky) * kw * NR..][..kw * NR];
            let iy = (oy + ky) as isize - win.ph as isize;
            if iy < 0 || iy as usize >= d.h {
                rows.fill(0.0);
                continue;
            }
            let src = &xs[(c * d.h + iy as usize) * d.w + x0..][..NR + kw - 1];
            for (kx, row) in rows.chunks_exact_mut(NR).enumerate() {
                if let (Ok(dst), Ok(s)) = (
                    <&mut [f32; NR]>::try_from(row),
                    <&[f32; NR]>::try_from(&src[kx..kx + NR]),
                ) {
                    *dst = *s;
                }
            }
        }
    }
}

/// [`im2col_panel`] of a 1×1 stride-1 unpadded convolution: each row is the input channel's
/// pixels, contiguous within a sample.
fn im2col_pointwise(x: &[f32], d: Nchw, hw: usize, (j0, n): (usize, usize), panel: &mut [f32]) {
    if n < NR {
        panel.fill(0.0);
    }
    let mut j = j0;
    for seg in split_samples(j0, n, hw) {
        let (s, p, at) = (j / hw, j % hw, j - j0);
        let xs = &x[s * d.c * hw..][..d.c * hw];
        for (c, row) in panel.chunks_exact_mut(NR).enumerate() {
            let src = &xs[c * hw + p..][..seg];
            match (
                <&mut [f32; NR]>::try_from(&mut row[..]),
                <&[f32; NR]>::try_from(src),
            ) {
                (Ok(d), Ok(s)) => *d = *s,
                _ => row[at..at + seg].copy_from_slice(src),
            }
        }
        j += seg;
    }
}

/// `F.interpolate(x, scale_factor=2, mode='nearest')`: (N, C, H, W) → (N, C, 2H, 2W).
pub fn upsample_nearest2x(x: &[f32], nc: usize, h: usize, w: usize) -> Vec<f32> {
    // H = 0 or W = 0: maps of nothing (and rayon refuses chunks of 0).
    if nc * h * w == 0 {
        return Vec::new();
    }
    let mut y = vec![0f32; nc * 4 * h * w];
    y.par_chunks_mut(4 * h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(yo, xi)| {
            for oy in 0..2 * h {
                let src = &xi[(oy / 2) * w..][..w];
                let dst = &mut yo[oy * 2 * w..][..2 * w];
                for (ox, v) in dst.iter_mut().enumerate() {
                    *v = src[ox / 2];
                }
            }
        });
    y
}
