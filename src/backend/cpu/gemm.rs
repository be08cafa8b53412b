//! Matrix products through the `gemm` crate (runtime-dispatched SIMD kernels, f32 accumulation).

use gemm::Parallelism;

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 20;

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
pub fn matmul(dst: &mut [f32], read_dst: bool, lhs: View, rhs: View, m: usize, n: usize, k: usize, beta: f32, threaded: bool) {
    assert!(dst.len() >= m * n, "matmul: dst too small");
    let last = |v: &View, r: usize, c: usize| if r == 0 || c == 0 { 0 } else { (r - 1) * v.rs + (c - 1) * v.cs + 1 };
    assert!(lhs.data.len() >= last(&lhs, m, k), "matmul: lhs view out of bounds");
    assert!(rhs.data.len() >= last(&rhs, k, n), "matmul: rhs view out of bounds");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !read_dst {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    let par = if threaded { parallelism(m * n * k) } else { Parallelism::None };
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

/// `F.linear(x, w, b)`: x (M, K), w (N, K), b (N) → (M, N).
pub fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    if let Some(b) = b {
        for row in y.chunks_mut(n) {
            row.copy_from_slice(b);
        }
    }
    let lhs = View { data: x, rs: k, cs: 1 };
    let rhs = View { data: w, rs: 1, cs: k }; // wᵀ: element (kk, j) = w[j, kk]
    matmul(&mut y, b.is_some(), lhs, rhs, m, n, k, 1.0, true);
    y
}
