//! The CPU reference backend: f32 math, f64 accumulation for normalisation statistics, threads
//! through rayon. Each op family lives in its own file, with a test of the same stem in tests/.

pub mod act;
pub mod attention;
pub mod conv;
pub mod elementwise;
pub mod embed;
pub mod gemm;
pub mod math;
pub mod norm;
pub mod pool;
pub mod tile;

use anyhow::{ensure, Result};

use super::{Activation, Backend, Cols, Nchw, Pool, Precision, Window};

/// The CPU backend. Buffers are plain `Vec<f32>`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

fn cols<'a>(c: &Cols<'a, Cpu>, d: usize) -> impl Fn(usize) -> &'a [f32] + Sync + 'a {
    let (buf, stride, offset) = (c.buf, c.stride, c.offset);
    move |b| &buf[b * stride + offset..][..d]
}

/// Checks the operands, then Y = X·Wᵀ + b with `act` applied to each stored run of a row.
fn linear_then(
    x: &[f32],
    w: &[f32],
    b: Option<&Vec<f32>>,
    (m, k, n): (usize, usize, usize),
    act: impl Fn(&mut [f32]) + Sync,
) -> Result<Vec<f32>> {
    check_linear(x, w, b, (m, k, n))?;
    Ok(gemm::linear_then(
        x,
        w,
        b.map(|b| b.as_slice()),
        m,
        k,
        n,
        act,
    ))
}

fn check_linear(
    x: &[f32],
    w: &[f32],
    b: Option<&Vec<f32>>,
    (m, k, n): (usize, usize, usize),
) -> Result<()> {
    ensure!(
        x.len() == m * k && w.len() == n * k,
        "linear: x {} / w {} elements for M={m} K={k} N={n}",
        x.len(),
        w.len()
    );
    ensure!(
        b.is_none_or(|b| b.len() == n),
        "linear: bias length differs from N={n}"
    );
    Ok(())
}

fn check_cols(c: &Cols<Cpu>, b: usize, d: usize, what: &str) -> Result<()> {
    c.check(c.buf.len(), b, d, what)
}

impl Backend for Cpu {
    type Buf = Vec<f32>;

    /// The CPU itself: both stages share its threads. Strict fp32 only.
    fn companion(&self, precision: Precision) -> Result<Self> {
        ensure!(
            precision == Precision::Fp32,
            "the CPU backend is strict fp32; {precision:?} needs a GPU"
        );
        Ok(Cpu)
    }

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn upload(&self, data: &[f32]) -> Result<Vec<f32>> {
        Ok(data.to_vec())
    }

    fn download(&self, buf: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(buf.clone())
    }

    fn linear(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        linear_then(x, w, b, (m, k, n), |_| {})
    }

    fn linear_gelu(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<Vec<f32>> {
        linear_then(x, w, b, (m, k, n), act::gelu_tanh_run)
    }

    fn linear_act(
        &self,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
        a: Activation,
    ) -> Result<Vec<f32>> {
        match a {
            Activation::GeluErf => linear_then(x, w, b, (m, k, n), act::gelu_erf_run),
            Activation::QuickGelu => linear_then(x, w, b, (m, k, n), act::quick_gelu_run),
        }
    }

    fn linear_residual(
        &self,
        y: &mut Vec<f32>,
        x: &Vec<f32>,
        w: &Vec<f32>,
        b: Option<&Vec<f32>>,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<()> {
        check_linear(x, w, b, (m, k, n))?;
        ensure!(
            y.len() == m * n,
            "linear_residual: {} elements in the residual for ({m}, {n})",
            y.len()
        );
        gemm::linear_residual(y, x, w, b.map(|b| b.as_slice()), m, k, n);
        Ok(())
    }

    fn layer_norm_modulate(
        &self,
        x: &Vec<f32>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Vec<f32>> {
        ensure!(
            x.len() == b * t * d,
            "layer_norm_modulate: {} elements for ({b}, {t}, {d})",
            x.len()
        );
        check_cols(&shift, b, d, "modulate shift")?;
        check_cols(&scale, b, d, "modulate scale")?;
        let mut x = x.clone();
        let (sh, sc) = (cols(&shift, d), cols(&scale, d));
        Ok(norm::gated_add_layer_norm_modulate(
            &mut x, None, sh, sc, t, d, eps,
        ))
    }

    fn gated_add_layer_norm_modulate(
        &self,
        x: &mut Vec<f32>,
        y: &Vec<f32>,
        gate: Cols<Self>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
        eps: f32,
    ) -> Result<Vec<f32>> {
        ensure!(
            x.len() == b * t * d && y.len() == x.len(),
            "gated_add_layer_norm_modulate: shapes differ from ({b}, {t}, {d})"
        );
        check_cols(&gate, b, d, "gated_add gate")?;
        check_cols(&shift, b, d, "modulate shift")?;
        check_cols(&scale, b, d, "modulate scale")?;
        let g = cols(&gate, d);
        let (sh, sc) = (cols(&shift, d), cols(&scale, d));
        Ok(norm::gated_add_layer_norm_modulate(
            x,
            Some((y, &g)),
            sh,
            sc,
            t,
            d,
            eps,
        ))
    }

    fn layer_norm(&self, x: &Vec<f32>, rows: usize, d: usize, eps: f32) -> Result<Vec<f32>> {
        ensure!(
            x.len() == rows * d,
            "layer_norm: {} elements for ({rows}, {d})",
            x.len()
        );
        Ok(norm::layer_norm(x, d, eps))
    }

    fn modulate(
        &self,
        x: &mut Vec<f32>,
        shift: Cols<Self>,
        scale: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()> {
        ensure!(
            x.len() == b * t * d,
            "modulate: {} elements for ({b}, {t}, {d})",
            x.len()
        );
        check_cols(&shift, b, d, "modulate shift")?;
        check_cols(&scale, b, d, "modulate scale")?;
        norm::modulate(x, cols(&shift, d), cols(&scale, d), t, d);
        Ok(())
    }

    fn gated_add(
        &self,
        x: &mut Vec<f32>,
        y: &Vec<f32>,
        gate: Cols<Self>,
        b: usize,
        t: usize,
        d: usize,
    ) -> Result<()> {
        ensure!(
            x.len() == b * t * d && y.len() == x.len(),
            "gated_add: shapes differ from ({b}, {t}, {d})"
        );
        check_cols(&gate, b, d, "gated_add gate")?;
        elementwise::gated_add(x, y, cols(&gate, d), t, d);
        Ok(())
    }

    fn add_row(&self, x: &mut Vec<f32>, row: &Vec<f32>, b: usize, r: usize) -> Result<()> {
        ensure!(
            x.len() == b * r && row.len() == r,
            "add_row: shapes differ from ({b}, {r})"
        );
        elementwise::add_row(x, row);
        Ok(())
    }

    fn add(&self, x: &mut Vec<f32>, y: &Vec<f32>) -> Result<()> {
        ensure!(
            x.len() == y.len(),
            "add: {} vs {} elements",
            x.len(),
            y.len()
        );
        elementwise::add(x, y);
        Ok(())
    }

    fn silu(&self, x: &Vec<f32>) -> Result<Vec<f32>> {
        Ok(act::silu(x))
    }

    fn gelu_tanh(&self, x: &mut Vec<f32>) -> Result<()> {
        act::gelu_tanh(x);
        Ok(())
    }

    fn gelu_erf(&self, x: &mut Vec<f32>) -> Result<()> {
        act::gelu_erf(x);
        Ok(())
    }

    fn relu(&self, x: &mut Vec<f32>) -> Result<()> {
        act::relu(x);
        Ok(())
    }

    fn quick_gelu(&self, x: &mut Vec<f32>) -> Result<()> {
        act::quick_gelu(x);
        Ok(())
    }

    fn layer_norm_affine(
        &self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        rows: usize,
        d: usize,
        eps: f32,
    ) -> Result<Vec<f32>> {
        ensure!(
            x.len() == rows * d && gamma.len() == d && beta.len() == d,
            "layer_norm_affine: {} elements, {} weights, {} biases for ({rows}, {d})",
            x.len(),
            gamma.len(),
            beta.len()
        );
        Ok(norm::layer_norm_affine(x, gamma, beta, eps))
    }

    fn attention(
        &self,
        qkv: &Vec<f32>,
        b: usize,
        t: usize,
        heads: usize,
        head_dim: usize,
    ) -> Result<Vec<f32>> {
        ensure!(
            qkv.len() == b * t * 3 * heads * head_dim,
            "attention: qkv has {} elements for ({b}, {t}, 3·{heads}·{head_dim})",
            qkv.len()
        );
        Ok(attention::attention(qkv, b, t, heads, head_dim))
    }

    fn patchify(
        &self,
        x: &Vec<f32>,
        b: usize,
        c: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Vec<f32>> {
        ensure!(
            x.len() == b * c * h * w,
            "patchify: {} elements for ({b}, {c}, {h}, {w})",
            x.len()
        );
        ensure!(
            p > 0 && h.is_multiple_of(p) && w.is_multiple_of(p),
            "patchify: {h}×{w} is not divisible by patch size {p}"
        );
        Ok(embed::patchify(x, b, c, h, w, p))
    }

    fn unpatchify(
        &self,
        o: &Vec<f32>,
        b: usize,
        c_out: usize,
        c_keep: usize,
        h: usize,
        w: usize,
        p: usize,
    ) -> Result<Vec<f32>> {
        ensure!(
            o.len() == b * h * w * c_out && c_keep <= c_out,
            "unpatchify: {} elements for ({b}, {c_out}, {h}, {w})",
            o.len()
        );
        ensure!(
            p > 0 && h.is_multiple_of(p) && w.is_multiple_of(p),
            "unpatchify: {h}×{w} is not divisible by patch size {p}"
        );
        Ok(embed::unpatchify(o, b, c_out, c_keep, h, w, p))
    }

    fn gather_rows(&self, table: &Vec<f32>, ids: &[usize], d: usize) -> Result<Vec<f32>> {
        // i < V, overflow-free for any id; with D = 0 every row is empty, so any id reads nothing.
        ensure!(
            d == 0 || ids.iter().all(|&i| i < table.len() / d),
            "gather_rows: id out of range"
        );
        Ok(embed::gather_rows(table, ids, d))
    }

    fn conv2d(
        &self,
        x: &Vec<f32>,
        d: Nchw,
        w: &Vec<f32>,
        b: &Vec<f32>,
        co: usize,
        win: Window,
        relu: bool,
    ) -> Result<Vec<f32>> {
        crate::backend::conv2d_output(d, x.len(), (w.len(), b.len()), co, win)?;
        Ok(conv::conv2d(x, d, w, b, co, win, relu))
    }

    fn pool2d(&self, x: &Vec<f32>, d: Nchw, win: Window, p: Pool) -> Result<Vec<f32>> {
        crate::backend::pool2d_output(d, x.len(), win)?;
        Ok(pool::pool2d(x, d, win, p))
    }

    fn concat_channels(
        &self,
        parts: &[(&Vec<f32>, usize)],
        n: usize,
        hw: usize,
    ) -> Result<Vec<f32>> {
        for (i, (p, c)) in parts.iter().enumerate() {
            ensure!(
                p.len() == n * c * hw,
                "concat_channels: part {i} has {} elements for ({n}, {c}, {hw})",
                p.len()
            );
        }
        let parts: Vec<(&[f32], usize)> = parts.iter().map(|(p, c)| (p.as_slice(), *c)).collect();
        Ok(pool::concat_channels(&parts, n, hw))
    }

    fn group_norm(
        &self,
        x: &Vec<f32>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Vec<f32>> {
        crate::backend::check_group_norm((x.len(), gamma.len(), beta.len()), (n, c, hw), groups)?;
        Ok(norm::group_norm(x, gamma, beta, c, hw, groups, eps, silu))
    }

    fn upsample_nearest2x(
        &self,
        x: &Vec<f32>,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
    ) -> Result<Vec<f32>> {
        ensure!(
            x.len() == n * c * h * w,
            "upsample: {} elements for ({n}, {c}, {h}, {w})",
            x.len()
        );
        Ok(conv::upsample_nearest2x(x, n * c, h, w))
    }

    fn transpose(&self, x: &Vec<f32>, b: usize, r: usize, c: usize) -> Result<Vec<f32>> {
        ensure!(
            x.len() == b * r * c,
            "transpose: {} elements for ({b}, {r}, {c})",
            x.len()
        );
        Ok(embed::transpose(x, b, r, c))
    }
}

/// Asks glibc to serve activation-sized buffers (up to 32 MiB, its maximum) from the heap and to
/// keep freed memory: otherwise every forward maps fresh pages for each activation and pays a
/// page fault per 4 KiB of it.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tuning parameters; called before heavy allocation.
        let ok = unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, i32::MAX) == 1
        };
        if !ok {
            log::debug!("mallopt refused the allocator tuning; continuing with the defaults");
        }
    }
}
