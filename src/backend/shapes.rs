//! The shapes of the convolutional ops: NCHW dimensions, windows, and the rules every backend
//! checks its arguments against, so that all of them refuse alike.

use anyhow::Result;

/// Dimensions of an (N, C, H, W) activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nchw {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Nchw {
    pub fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A convolution kernel or pooling window: size per axis, one stride, zero padding per axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub ph: usize,
    pub pw: usize,
}

impl Window {
    /// k × k, `stride`, padding `pad` on every side.
    pub const fn square(k: usize, stride: usize, pad: usize) -> Self {
        Window {
            kh: k,
            kw: k,
            stride,
            ph: pad,
            pw: pad,
        }
    }

    /// kh × kw at stride 1, padding (ph, pw): the factorised 1×n / n×1 kernels.
    pub const fn rect(kh: usize, kw: usize, ph: usize, pw: usize) -> Self {
        Window {
            kh,
            kw,
            stride: 1,
            ph,
            pw,
        }
    }

    /// Output size over an H × W input (PyTorch's floor rule), or `None` when the window does
    /// not fit the padded input or the stride is 0.
    pub fn output(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (hp, wp) = (h + 2 * self.ph, w + 2 * self.pw);
        if self.stride == 0 || self.kh == 0 || self.kw == 0 || hp < self.kh || wp < self.kw {
            return None;
        }
        Some((
            (hp - self.kh) / self.stride + 1,
            (wp - self.kw) / self.stride + 1,
        ))
    }
}

/// The shape rules of `Backend::conv2d`, shared by every backend so they refuse alike: x of
/// `x_len` values for `d`, w (Co, Ci, kh, kw) and b (Co) of `wb_len` values → (H', W').
pub fn conv2d_output(
    d: Nchw,
    x_len: usize,
    wb_len: (usize, usize),
    co: usize,
    win: Window,
) -> Result<(usize, usize)> {
    anyhow::ensure!(x_len == d.len(), "conv2d: x has {x_len} elements for {d:?}");
    anyhow::ensure!(
        wb_len == (co * d.c * win.kh * win.kw, co),
        "conv2d: weight/bias sizes differ from ({co}, {}, {}, {})",
        d.c,
        win.kh,
        win.kw
    );
    win.output(d.h, d.w).ok_or_else(|| {
        anyhow::anyhow!(
            "conv2d: window {win:?} does not fit the {}×{} input",
            d.h,
            d.w
        )
    })
}

/// The shape rules of `Backend::pool2d` → (H', W'): every output must see at least one input
/// (PyTorch requires pad ≤ kernel / 2 and a non-empty map: over an empty one, padding alone
/// would fill the windows).
pub fn pool2d_output(d: Nchw, x_len: usize, win: Window) -> Result<(usize, usize)> {
    anyhow::ensure!(x_len == d.len(), "pool2d: x has {x_len} elements for {d:?}");
    win.output(d.h, d.w)
        .filter(|_| d.h > 0 && d.w > 0 && 2 * win.ph <= win.kh && 2 * win.pw <= win.kw)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "pool2d: window {win:?} does not fit the {}×{} input",
                d.h,
                d.w
            )
        })
}

/// The shape rules of `Backend::group_norm`: x (N, C, HW), gamma and beta (C), C a multiple
/// of the groups; lengths given as (x, gamma, beta).
pub fn check_group_norm(
    lens: (usize, usize, usize),
    (n, c, hw): (usize, usize, usize),
    groups: usize,
) -> Result<()> {
    anyhow::ensure!(
        lens == (n * c * hw, c, c),
        "group_norm: sizes differ from ({n}, {c}, {hw})"
    );
    anyhow::ensure!(
        groups > 0 && c.is_multiple_of(groups),
        "group_norm: {c} channels are not divisible into {groups} groups"
    );
    Ok(())
}
