//! Matrix products through the `gemm` crate (runtime-dispatched SIMD kernels, f32 accumulation).

use gemm::Parallelism;
/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;
/// Tile sizes of [`linear`]: rows when M is at least this tall, else columns.
const ROW_TILE: usize = 512;
const COL_TILE: usize = 512;
fn parallelism(macs: usize) -> Parallelism {
    if macs >= PARALLEL_MIN_MACS {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    }
}

/// A strided matrix view for [`matmul`]: element (i, j) is at `ptr[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// `dst (M, N, row-major, contiguous) = alpha·dst + beta·(lhs (M, K) · rhs (K, N))`.
///
/// Panics if a view does not cover the elements its strides address (a caller bug, not bad input).
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dst: &mut [f32],
    read_dst: bool,
    lhs: View,
    rhs: View,
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
    threaded: bool,
) {
    assert!(dst.len() >= m * n, "matmul: dst too small");
    let last = |v: &View, r: usize, c: usize| {
        if r == 0 || c == 0 {
            0
        } else {
            (r - 1) * v.rs + (c - 1) * v.cs + 1
        }
    };
    assert!(
        lhs.data.len() >= last(&lhs, m, k),
        "matmul: lhs view out of bounds"
    );
    assert!(
        rhs.data.len() >= last(&rhs, k, n),
        "matmul: rhs view out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let par = if threaded {
        parallelism(m * n * k)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above bound every address the strides reach; dst does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            read_dst,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            par,
        );
    }
}

/// Base pointer of an output shared by threads that write disjoint elements of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each thread writes a disjoint block of the output (see `linear`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `F.linear(x, w, b)`: x (M, K), w (N, K), b (N) → (M, N).
///
/// The output is cut into fixed tiles (rows, or columns when M is small), each a single-threaded
/// product followed by its bias, and rayon spreads the tiles over the threads: this scales better
/// than the crate's own threading at our shapes. The tiles depend on the shape alone, never on
/// the thread count, because the crate's summation path can change with a product's width.
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    assert!(
        x.len() >= m * k && w.len() >= n * k && b.is_none_or(|b| b.len() == n),
        "linear: operand sizes"
    );
    if k == 0 || m == 0 || n == 0 {
        return match b {
            Some(b) => b.iter().copied().cycle().take(m * n).collect(),
            None => vec![0.0; m * n],
        };
    }
    let mut y: Vec<f32> = Vec::with_capacity(m * n);
    let out = OutPtr(y.as_mut_ptr());
    let (by_rows, block) = if m * n * k < PARALLEL_MIN_MACS {
        (true, m)
    } else if m >= ROW_TILE {
        (true, ROW_TILE)
    } else {
        (false, COL_TILE)
    };
    let extent = if by_rows { m } else { n };
    (0..extent.div_ceil(block)).into_par_iter().for_each(|blk| {
        // Capture the whole wrapper (Send), not its raw-pointer field.
        #[allow(clippy::redundant_locals)]
        let out = out;
        let lo = blk * block;
        let hi = (lo + block).min(extent);
        let (r0, r1, c0, c1) = if by_rows {
            (lo, hi, 0, n)
        } else {
            (0, m, lo, hi)
        };
        // SAFETY: rows r0..r1 × columns c0..c1 of the (M, N) output belong to this block alone;
        // the capacity covers M·N elements; the lhs/rhs views stay inside x and w (asserted above).
        unsafe {
            let dst = out.0.add(r0 * n + c0);
            gemm::gemm(
                r1 - r0,
                c1 - c0,
                k,
                dst,
                1,
                n as isize,
                false,
                x.as_ptr().add(r0 * k),
                1,
                k as isize,
                w.as_ptr().add(c0 * k),
                k as isize,
                1, // wᵀ: element (kk, j) = w[j, kk]
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
            if let Some(b) = b {
                for r in r0..r1 {
                    let row = std::slice::from_raw_parts_mut(dst.add((r - r0) * n), c1 - c0);
                    for (v, &bb) in row.iter_mut().zip(&b[c0..c1]) {
                        *v += bb;
                    }
                }
            }
        }
    });
    // SAFETY: the blocks above wrote all M·N elements.
    unsafe { y.set_len(m * n) };
    y
}
