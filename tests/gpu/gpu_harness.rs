//! The emulated device must fail loudly. Each test runs deliberately broken code (the kernels of
//! tests/kernels/broken.cu, a transposed GEMM operand, a missing cuBLAS) and asserts that the
//! fault is caught with a message that names it, and prints that message.
//!
//! A device fault leaves the context's error sticky, as on a GPU, so every case runs in a child
//! process: the test re-runs its own binary for itself alone, with `CHILD` naming it; the child
//! does the faulting part and prints what it caught, and the parent checks the child's output.
//! On a real GPU these tests skip: compute-sanitizer covers the same faults there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, RwLockReadGuard};

use cudarc::cublas::{result::gemm_ex, sys as blas_sys, CudaBlas};
use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{
    CudaContext, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use sitdiv::backend::cuda::launch::{verify_params, Dims, Kernel, Launch, Sig, P};
use sitdiv::backend::cuda::standin;

use crate::common::cuda;
use crate::common::ops::signed_unit;

/// Names the test a child process runs the faulting part of.
const CHILD: &str = "SITDIV_HARNESS_CHILD";
/// The child's line with the message it caught.
const MARK: &str = "CAUGHT: ";

// Launch-table rows of the broken kernels, as the backend's table would hold them.
static RACY: Sig = Sig {
    file: "broken",
    name: "racy_block_sum",
    params: &[P::Ptr, P::Ptr],
    max_threads: 64,
};
static HALF_FILLED: Sig = Sig {
    file: "broken",
    name: "half_filled_tile",
    params: &[P::Ptr],
    max_threads: 64,
};
static PAST_END: Sig = Sig {
    file: "broken",
    name: "write_past_end",
    params: &[P::Ptr, P::I32],
    max_threads: 64,
};
// The kernel takes (y, x, n): this row forgot n.
static TWO_OF_THREE: Sig = Sig {
    file: "broken",
    name: "three_params",
    params: &[P::Ptr, P::Ptr],
    max_threads: 1024,
};

/// The device, shared with the other tests of this binary that only use it (while a test that
/// reads the stand-in's process-wide counters waits); None (after a loud SKIPPED) when the
/// stand-in is not the driver.
fn on_standin() -> Option<RwLockReadGuard<'static, ()>> {
    if standin::active() {
        return Some(cuda::shared());
    }
    eprintln!(
        "SKIPPED: gpu_harness needs the emulated device (run it under scripts/emulated-gpu.sh); \
         on a GPU node, compute-sanitizer covers this"
    );
    None
}

/// The name libtest gives this module's test `test`: its path without the binary's name.
fn test_path(test: &str) -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::{test}")
}

/// In the parent: runs `test` again in a child process and checks that the child caught a fault
/// whose message holds every one of `needles`. In the child: runs `case`, which returns that
/// message (or panics when nothing was caught), and prints it.
fn in_child(test: &str, case: impl FnOnce() -> String, needles: &[&str]) {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        let msg = case();
        println!("{MARK}{msg}");
        return;
    }
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            &test_path(test),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, test)
        .output()
        .expect("running the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test}: the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A child that ran no test would exit 0 too: the marker proves the case ran. (libtest may
    // print "test NAME ... " on the same line before it.)
    let msg = stdout
        .lines()
        .find_map(|l| l.split_once(MARK).map(|(_, m)| m))
        .unwrap_or_else(|| panic!("{test}: the child reported nothing:\n{stdout}\n{stderr}"));
    println!("[{test}] {msg}");
    for n in needles {
        assert!(msg.contains(n), "{test}: the message lacks {n:?}: {msg}");
    }
}

/// The emulated device's stream and the module of tests/kernels/broken.cu.
fn broken_module() -> (Arc<CudaStream>, Arc<CudaModule>) {
    test_module("broken")
}

/// The emulated device's stream and the module of tests/kernels/STEM.cu.
fn test_module(stem: &str) -> (Arc<CudaStream>, Arc<CudaModule>) {
    let dir = std::env::var("SITDIV_STANDIN")
        .expect("SITDIV_STANDIN (exported by scripts/emulated-gpu.sh)");
    let path = Path::new(&dir).join(format!("ptx/{stem}.ptx"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/emulated-gpu.sh compiles it)",
            path.display()
        )
    });
    let ctx = CudaContext::new(0).expect("the emulated device");
    let module = ctx
        .load_module(Ptx::from_src(text))
        .unwrap_or_else(|e| panic!("loading {stem}.ptx: {e}"));
    (ctx.default_stream(), module)
}

fn kernel(module: &Arc<CudaModule>, sig: &'static Sig) -> Kernel {
    Kernel {
        f: module.load_function(sig.name).expect(sig.name),
        sig,
    }
}

/// Deterministic values in [-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    signed_unit(seed, n).into_iter().map(|v| v as f32).collect()
}

#[test]
fn missing_syncthreads_is_a_shared_memory_race() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        let (stream, module) = broken_module();
        let k = kernel(&module, &RACY);
        let x = stream.clone_htod(&values(1, 64)).unwrap();
        let out = stream.alloc_zeros::<f32>(1).unwrap();
        let e = Launch::new(&stream, &k)
            .buf(&x)
            .buf(&out)
            .run(Dims {
                grid: (1, 1, 1),
                block: (64, 1, 1),
                smem: 0,
            })
            .expect_err("a block sum without its first __syncthreads() ran clean");
        format!("{e:#}")
    };
    in_child(
        "missing_syncthreads_is_a_shared_memory_race",
        case,
        &["racy_block_sum", "race on shared", "partial"],
    );
}

#[test]
fn reading_shared_memory_no_thread_wrote_is_caught() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        let (stream, module) = broken_module();
        let k = kernel(&module, &HALF_FILLED);
        let out = stream.alloc_zeros::<f32>(64).unwrap();
        let e = Launch::new(&stream, &k)
            .buf(&out)
            .run(Dims {
                grid: (1, 1, 1),
                block: (64, 1, 1),
                smem: 0,
            })
            .expect_err("reading a half-filled shared tile ran clean");
        format!("{e:#}")
    };
    in_child(
        "reading_shared_memory_no_thread_wrote_is_caught",
        case,
        &["half_filled_tile", "tile", "no thread of the block wrote"],
    );
}

/// `write_past_end` over `n` floats writes y[n].
fn write_past_end(n: usize) -> String {
    let (stream, module) = broken_module();
    let k = kernel(&module, &PAST_END);
    let y = stream.alloc_zeros::<f32>(n).unwrap();
    let e = Launch::new(&stream, &k)
        .buf(&y)
        .int(n, "n")
        .run(Dims {
            grid: ((n as u32 + 1).div_ceil(64), 1, 1),
            block: (64, 1, 1),
            smem: 0,
        })
        .expect_err("a write one element past the buffer ran clean");
    format!("{e:#}")
}

#[test]
fn write_past_the_end_into_the_slack_is_caught_after_the_launch() {
    let Some(_device) = on_standin() else {
        return;
    };
    // 10 floats: y[10] lands in the canary bytes that pad the allocation to 256 bytes.
    in_child(
        "write_past_the_end_into_the_slack_is_caught_after_the_launch",
        || write_past_end(10),
        &[
            "write_past_end",
            "past the end of allocation",
            "(40 bytes",
            "offsets 40 to 43",
            "parameter 0",
        ],
    );
}

#[test]
fn write_past_the_end_into_the_guard_page_is_caught_at_the_store() {
    let Some(_device) = on_standin() else {
        return;
    };
    // 64 floats fill the allocation's 256 bytes: y[64] is the first byte of the guard page.
    in_child(
        "write_past_the_end_into_the_guard_page_is_caught_at_the_store",
        || write_past_end(64),
        &[
            "write_past_end",
            "thread (0,0,0)",
            "block (1,0,0)",
            "past the end of allocation",
            "(256 bytes",
            "parameter 0",
        ],
    );
}

#[test]
fn wrong_param_count_is_refused_at_load() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        let (_stream, module) = broken_module();
        let f = module.load_function("three_params").unwrap();
        let e = verify_params(&f, &TWO_OF_THREE)
            .expect_err("a 3-parameter kernel passed a 2-parameter table row");
        format!("{e:#}")
    };
    in_child(
        "wrong_param_count_is_refused_at_load",
        case,
        &["three_params", "[8, 8, 4]", "[8, 8]"],
    );
}

/// Launches `reverse_via_smem` over `n` floats straight through the driver (not the launch
/// table), so that the limits under test are the device's.
fn reverse(
    stream: &Arc<CudaStream>,
    module: &Arc<CudaModule>,
    n: usize,
    cfg: LaunchConfig,
) -> Result<Vec<f32>, String> {
    let f = module.load_function("reverse_via_smem").unwrap();
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let gx = stream.clone_htod(&x).unwrap();
    let mut gy = stream.alloc_zeros::<f32>(n).unwrap();
    let n_arg = n as i32;
    let mut b = stream.launch_builder(&f);
    b.arg(&gx).arg(&mut gy).arg(&n_arg);
    // SAFETY: the arguments match the kernel's (const float*, float*, int).
    unsafe { b.launch(cfg) }.map_err(|e| format!("{e:#}"))?;
    Ok(stream.clone_dtoh(&gy).unwrap())
}

#[test]
fn block_of_2048_threads_is_refused() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        let (stream, module) = broken_module();
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (2048, 1, 1),
            shared_mem_bytes: 2048 * 4,
        };
        reverse(&stream, &module, 2048, cfg).expect_err("a block of 2048 threads launched")
    };
    in_child(
        "block_of_2048_threads_is_refused",
        case,
        &["reverse_via_smem", "2048 threads", "1024"],
    );
}

#[test]
fn dynamic_shared_memory_above_48k_needs_the_opt_in() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        let (stream, module) = broken_module();
        let n = 16384; // 64 KiB of floats
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 65536,
        };
        let e = reverse(&stream, &module, n, cfg)
            .expect_err("64 KiB of dynamic shared memory without the opt-in");
        let f = module.load_function("reverse_via_smem").unwrap();
        f.set_attribute(
            CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            65536,
        )
        .expect("opting in to 64 KiB");
        let y = reverse(&stream, &module, n, cfg)
            .unwrap_or_else(|e| panic!("with the opt-in the launch failed: {e}"));
        assert!(
            y.iter().enumerate().all(|(i, &v)| v == (n - 1 - i) as f32),
            "reverse_via_smem computed garbage"
        );
        format!("{e} -- and with the opt-in the same launch reversed {n} floats")
    };
    in_child(
        "dynamic_shared_memory_above_48k_needs_the_opt_in",
        case,
        &[
            "reverse_via_smem",
            "65536 bytes",
            "CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES",
            "reversed 16384",
        ],
    );
}

#[test]
fn gemm_honours_each_operands_transpose() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N as N, CUBLAS_OP_T as T};
        // Y (M, N) = X (M, K) · Wᵀ with W (N, K), row-major; all three sizes differ.
        let (m, k, n) = (5usize, 7usize, 3usize);
        let (x, w) = (values(2, m * k), values(3, n * k));
        let reference: Vec<f64> = (0..m * n)
            .map(|at| {
                (0..k)
                    .map(|l| x[at / n * k + l] as f64 * w[at % n * k + l] as f64)
                    .sum()
            })
            .collect();
        let (stream, _module) = broken_module();
        let blas = CudaBlas::new(stream.clone()).expect("cuBLAS handle");
        let (gx, gw) = (
            stream.clone_htod(&x).unwrap(),
            stream.clone_htod(&w).unwrap(),
        );
        let mut gy: CudaSlice<f32> = stream.alloc_zeros(m * n).unwrap();
        // Column-major Yᵀ (N, M) = op(W) · op(X): W is stored as a K×N column-major block, X as K×M.
        // A flipped flag keeps a leading dimension cuBLAS accepts and reads the same bytes wrongly.
        let mut gemm = |opw, ldw: usize, opx, ldx: usize| -> f64 {
            let (alpha, beta) = (1.0f32, 0.0f32);
            {
                let (wp, _sw) = gw.device_ptr(&stream);
                let (xp, _sx) = gx.device_ptr(&stream);
                let (yp, _sy) = gy.device_ptr_mut(&stream);
                // SAFETY: every operand's footprint lies inside its buffer (the stand-in checks it too).
                unsafe {
                    gemm_ex(
                        *blas.handle(),
                        opw,
                        opx,
                        n as i32,
                        m as i32,
                        k as i32,
                        &alpha as *const f32 as *const _,
                        wp as *const _,
                        blas_sys::cudaDataType::CUDA_R_32F,
                        ldw as i32,
                        xp as *const _,
                        blas_sys::cudaDataType::CUDA_R_32F,
                        ldx as i32,
                        &beta as *const f32 as *const _,
                        yp as *mut _,
                        blas_sys::cudaDataType::CUDA_R_32F,
                        n as i32,
                        blas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        blas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                    )
                }
                .expect("cuBLAS accepted the call");
            }
            let y = stream.clone_dtoh(&gy).unwrap();
            let scale = reference.iter().fold(0.0f64, |a, r| a.max(r.abs()));
            y.iter()
                .zip(&reference)
                .map(|(&y, r)| (y as f64 - r).abs())
                .fold(0.0, f64::max)
                / scale
        };
        let right = gemm(T, k, N, k);
        let w_flipped = gemm(N, n, N, k);
        let x_flipped = gemm(T, k, T, m);
        assert!(
            right < 1e-5,
            "Y = X·Wᵀ through cuBLAS is off by {right:e} (relative)"
        );
        for (operand, err) in [("A (W)", w_flipped), ("B (X)", x_flipped)] {
            assert!(
                err > 0.1,
                "operand {operand} with its transpose flag flipped still matches (error {err:e}): the GEMM ignores it"
            );
        }
        format!(
            "M={m} K={k} N={n}: correct call off by {right:.1e}; operand A (W) transpose flipped off by \
             {w_flipped:.2}, operand B (X) transpose flipped off by {x_flipped:.2} (relative)"
        )
    };
    in_child(
        "gemm_honours_each_operands_transpose",
        case,
        &["operand A (W)", "operand B (X)"],
    );
}

/// A folder that holds only the stand-in driver: a machine with a CUDA driver but no cuBLAS.
fn driver_only_dir() -> PathBuf {
    libraries_dir("driver-only", &["libcuda.so", "libcuda.so.1"])
}

/// A folder holding the stand-in under `names` only.
fn libraries_dir(tag: &str, names: &[&str]) -> PathBuf {
    let standin = PathBuf::from(std::env::var("SITDIV_STANDIN").expect("SITDIV_STANDIN"));
    let lib = standin
        .join("libsitdiv-standin.so")
        .canonicalize()
        .expect("the stand-in library");
    let dir = std::env::temp_dir().join(format!("sitdiv-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        std::os::unix::fs::symlink(&lib, dir.join(name)).unwrap();
    }
    dir
}

#[test]
fn missing_cublas_falls_back_on_auto_and_fails_on_cuda() {
    let Some(_device) = on_standin() else {
        return;
    };
    let dir = driver_only_dir();
    let sample = |device: &str| {
        let npy = dir.join(format!("latents-{device}.npy"));
        let out = Command::new(env!("CARGO_BIN_EXE_sitdiv"))
            .args([
                "sample",
                "--synthetic",
                "--model",
                "SiT-S/8",
                "--num-samples",
                "1",
                "--steps",
                "2",
            ])
            .arg("--latents-out")
            .arg(&npy)
            .args(["--device", device])
            .env("LD_LIBRARY_PATH", &dir)
            .env("RUST_LOG", "info")
            .output()
            .expect("running sitdiv");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            npy.exists(),
        )
    };

    let (ok, stderr, written) = sample("auto");
    let line = stderr
        .lines()
        .find(|l| l.contains("running on the CPU"))
        .unwrap_or("");
    println!("[--device auto] {line}");
    assert!(
        ok && written,
        "--device auto without cuBLAS did not finish on the CPU:\n{stderr}"
    );
    assert!(
        line.contains("cuBLAS"),
        "--device auto fell back without naming cuBLAS:\n{stderr}"
    );

    let (ok, stderr, written) = sample("cuda");
    let msg = stderr.lines().find(|l| l.contains("cuBLAS")).unwrap_or("");
    println!("[--device cuda] {msg}");
    assert!(!ok, "--device cuda without cuBLAS succeeded:\n{stderr}");
    assert!(
        !written,
        "--device cuda without cuBLAS still wrote its latents"
    );
    for n in ["cuBLAS (libcublas.so", "LD_LIBRARY_PATH"] {
        assert!(
            msg.contains(n),
            "--device cuda: the error lacks {n:?}:\n{stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `cuda` build embeds PTX ISA 9.0, which a CUDA 12 driver cannot load: the emulated 12.4
/// driver refuses it as a real one does, and the message points at the cuda12 build.
#[cfg(feature = "cuda")]
#[test]
fn ptx_newer_than_the_driver_is_refused() {
    let Some(_device) = on_standin() else {
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_sitdiv"))
        .args([
            "sample",
            "--synthetic",
            "--model",
            "SiT-S/8",
            "--num-samples",
            "1",
            "--steps",
            "2",
        ])
        .args(["--latents-out", "/dev/null", "--device", "cuda"])
        .env("SITDIV_STANDIN_DRIVER", "12040")
        .output()
        .expect("running sitdiv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg = stderr.lines().find(|l| l.contains("error")).unwrap_or("");
    println!("[driver 12.4] {msg}");
    assert!(
        !out.status.success(),
        "PTX 9.0 loaded on a CUDA 12.4 driver:\n{stderr}"
    );
    for n in [
        "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
        "PTX ISA 9.0",
        "driver 12.4",
        "cuda12",
    ] {
        assert!(stderr.contains(n), "the error lacks {n:?}:\n{stderr}");
    }
}

static HALVES: Sig = Sig {
    file: "formats",
    name: "round_to_halves",
    params: &[P::Ptr, P::Ptr, P::Ptr, P::I32],
    max_threads: 256,
};

/// `__nv_bfloat16` and `__half` come from CUDA's own headers on the emulated device too: their
/// conversions round to nearest even, as the `half` crate does, ties and specials included.
#[test]
fn bf16_and_half_conversions_round_to_nearest_even() {
    let Some(_device) = on_standin() else {
        return;
    };
    let (stream, module) = test_module("formats");
    let k = kernel(&module, &HALVES);
    let mut x = values(5, 1000);
    // Ties of both formats, their neighbours, specials, subnormals and overflow.
    let tie_bf16 = f32::from_bits(0x3f80_8000);
    let tie_half = 1.0 + f32::powi(2.0, -11);
    x.extend([
        tie_bf16,
        f32::from_bits(0x3f81_8000),
        tie_half,
        -tie_half,
        0.0,
        -0.0,
        1e-40,
        65520.0,
        1e6,
    ]);
    x.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MAX]);
    let n = x.len();
    let xd = stream.clone_htod(&x).unwrap();
    let y = stream.alloc_zeros::<f32>(n).unwrap();
    let z = stream.alloc_zeros::<f32>(n).unwrap();
    Launch::new(&stream, &k)
        .buf(&xd)
        .buf(&y)
        .buf(&z)
        .int(n, "n")
        .run(Dims {
            grid: (n.div_ceil(256) as u32, 1, 1),
            block: (256, 1, 1),
            smem: 0,
        })
        .unwrap();
    let (y, z) = (
        stream.clone_dtoh(&y).unwrap(),
        stream.clone_dtoh(&z).unwrap(),
    );
    for i in 0..n {
        let want_b = half::bf16::from_f32(x[i]).to_f32();
        let want_h = half::f16::from_f32(x[i]).to_f32();
        assert_eq!(
            y[i].to_bits(),
            want_b.to_bits(),
            "bf16 of {:e} ({:#010x})",
            x[i],
            x[i].to_bits()
        );
        assert_eq!(
            z[i].to_bits(),
            want_h.to_bits(),
            "half of {:e} ({:#010x})",
            x[i],
            x[i].to_bits()
        );
    }
    println!("bf16 and half: {n} values equal the half crate's, bit for bit");
}

/// The cuda12 build compiles its kernels with NVRTC at start-up: a node with the driver and
/// cuBLAS but no NVRTC falls back on `--device auto` and fails clearly on `--device cuda`.
#[cfg(feature = "cuda12")]
#[test]
fn missing_nvrtc_falls_back_on_auto_and_fails_on_cuda() {
    let Some(_device) = on_standin() else {
        return;
    };
    let dir = libraries_dir(
        "no-nvrtc",
        &[
            "libcuda.so",
            "libcuda.so.1",
            "libcublas.so",
            "libcublas.so.12",
            "libcublasLt.so",
            "libcublasLt.so.12",
        ],
    );
    let sample = |device: &str| {
        let npy = dir.join(format!("latents-{device}.npy"));
        let out = Command::new(env!("CARGO_BIN_EXE_sitdiv"))
            .args([
                "sample",
                "--synthetic",
                "--model",
                "SiT-S/8",
                "--num-samples",
                "1",
                "--steps",
                "2",
            ])
            .arg("--latents-out")
            .arg(&npy)
            .args(["--device", device])
            .env("LD_LIBRARY_PATH", &dir)
            .env("RUST_LOG", "info")
            .output()
            .expect("running sitdiv");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            npy.exists(),
        )
    };
    let (ok, stderr, written) = sample("auto");
    println!(
        "[--device auto] {}",
        stderr
            .lines()
            .find(|l| l.contains("running on the CPU"))
            .unwrap_or("")
    );
    assert!(
        ok && written && stderr.contains("NVRTC"),
        "--device auto without NVRTC:\n{stderr}"
    );
    let (ok, stderr, written) = sample("cuda");
    println!("[--device cuda] {}", stderr.trim());
    assert!(!ok && !written, "--device cuda without NVRTC:\n{stderr}");
    assert!(
        stderr.contains("NVRTC (libnvrtc.so.12)") && !stderr.contains("cuBLAS"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

static REVERSE: Sig = Sig {
    file: "broken",
    name: "reverse_via_smem",
    params: &[P::Ptr, P::Ptr, P::I32],
    max_threads: 1024,
};

/// The launch layer refuses what the driver could not see: a size beyond a 32-bit parameter, an
/// argument list that differs from the signature, a block above the table's `max_threads`.
#[test]
fn launches_that_differ_from_the_table_are_refused() {
    let Some(_device) = on_standin() else {
        return;
    };
    let (stream, module) = broken_module();
    let k = kernel(&module, &REVERSE);
    let (x, y) = (
        stream.alloc_zeros::<f32>(4).unwrap(),
        stream.alloc_zeros::<f32>(4).unwrap(),
    );
    let dims = |threads| Dims {
        grid: (1, 1, 1),
        block: (threads, 1, 1),
        smem: 0,
    };
    let cases = [
        (
            "wide int",
            Launch::new(&stream, &k)
                .buf(&x)
                .buf(&y)
                .int(1 << 31, "n")
                .run(dims(4)),
            "does not fit",
        ),
        (
            "long for int",
            Launch::new(&stream, &k)
                .buf(&x)
                .buf(&y)
                .long(4)
                .run(dims(4)),
            "its signature is",
        ),
        (
            "missing",
            Launch::new(&stream, &k).buf(&x).buf(&y).run(dims(4)),
            "its signature is",
        ),
    ];
    for (what, r, needle) in cases {
        let msg = format!("{:#}", r.expect_err(what));
        println!("[{what}] {msg}");
        assert!(
            msg.contains(needle) && msg.contains("reverse_via_smem"),
            "{what}: {msg}"
        );
    }
    let big = Sig {
        max_threads: 64,
        ..REVERSE
    };
    let small = Kernel {
        f: module.load_function("reverse_via_smem").unwrap(),
        sig: Box::leak(Box::new(big)),
    };
    let msg = format!(
        "{:#}",
        Launch::new(&stream, &small)
            .buf(&x)
            .buf(&y)
            .int(4, "n")
            .run(dims(128))
            .unwrap_err()
    );
    println!("[block] {msg}");
    assert!(msg.contains("more than the 64"), "{msg}");
}

static WARP_BUILTINS: Sig = Sig {
    file: "warps",
    name: "warp_builtins",
    params: &[P::Ptr, P::Ptr],
    max_threads: 1024,
};
static WARP_NEIGHBOURS: Sig = Sig {
    file: "warps",
    name: "warp_neighbours",
    params: &[P::Ptr, P::Ptr],
    max_threads: 1024,
};
static ATOMIC_TOTAL: Sig = Sig {
    file: "warps",
    name: "atomic_total",
    params: &[P::Ptr, P::Ptr, P::Ptr, P::I32],
    max_threads: 1024,
};
static DIVERGENT_SHUFFLE: Sig = Sig {
    file: "warps",
    name: "divergent_shuffle",
    params: &[P::Ptr, P::Ptr],
    max_threads: 1024,
};

/// Shuffles (all four kinds, segments of 8), butterfly and shuffle-down reductions, ballots,
/// `__syncwarp`-ordered shared memory and atomics give, lane by lane, what CUDA specifies.
#[test]
fn warp_builtins_and_atomics_behave_as_specified() {
    let Some(_device) = on_standin() else {
        return;
    };
    let (stream, module) = test_module("warps");
    let (blocks, threads) = (3usize, 64usize);
    let n = blocks * threads;
    let x: Vec<i32> = (0..n).map(|i| ((i * 37 + 11) % 101) as i32 - 50).collect();
    let xd = stream.clone_htod(&x).unwrap();
    let out = stream.alloc_zeros::<i32>(8 * n).unwrap();
    let dims = Dims {
        grid: (blocks as u32, 1, 1),
        block: (threads as u32, 1, 1),
        smem: 0,
    };
    Launch::new(&stream, &kernel(&module, &WARP_BUILTINS))
        .buf(&xd)
        .buf(&out)
        .run(dims)
        .unwrap();
    let got = stream.clone_dtoh(&out).unwrap();
    for t in 0..n {
        let (w, lane) = (t / 32 * 32, t % 32);
        let at = |l: usize| x[w + l];
        let seg = |l: usize| {
            if (l ^ 1) / 8 == l / 8 {
                at(l ^ 1)
            } else {
                at(l)
            }
        };
        let sum: i32 = (0..32).map(at).sum();
        let ballot = (0..32).filter(|&l| at(l) > 0).fold(0u32, |b, l| b | 1 << l) as i32;
        let want = [
            at(31 - lane),
            if lane < 31 { at(lane + 1) } else { at(lane) },
            if lane > 0 { at(lane - 1) } else { at(lane) },
            at(lane ^ 5),
            seg(lane),
            sum,
            ballot,
            if lane == 0 { sum } else { 0 },
        ];
        assert_eq!(got[8 * t..8 * t + 8], want, "thread {t} (lane {lane})");
    }

    let xf: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let xfd = stream.clone_htod(&xf).unwrap();
    let y = stream.alloc_zeros::<f32>(n).unwrap();
    Launch::new(&stream, &kernel(&module, &WARP_NEIGHBOURS))
        .buf(&xfd)
        .buf(&y)
        .run(dims)
        .unwrap();
    let y = stream.clone_dtoh(&y).unwrap();
    for t in 0..n {
        assert_eq!(
            y[t],
            xf[t / 32 * 32 + (t + 1) % 32],
            "neighbour of thread {t}"
        );
    }

    let total = stream.alloc_zeros::<f32>(1).unwrap();
    let count = stream.alloc_zeros::<i32>(1).unwrap();
    Launch::new(&stream, &kernel(&module, &ATOMIC_TOTAL))
        .buf(&xfd)
        .buf(&total)
        .buf(&count)
        .int(n, "n")
        .run(dims)
        .unwrap();
    assert_eq!(
        stream.clone_dtoh(&total).unwrap()[0],
        (n * (n - 1) / 2) as f32
    );
    assert_eq!(stream.clone_dtoh(&count).unwrap()[0], n as i32);
    println!("shuffles, ballots, __syncwarp and atomics: {n} threads as specified");
}

#[test]
fn shuffle_in_divergent_code_is_caught() {
    let Some(_device) = on_standin() else {
        return;
    };
    let case = || {
        let (stream, module) = test_module("warps");
        let x = stream.clone_htod(&[1i32; 32]).unwrap();
        let out = stream.alloc_zeros::<i32>(32).unwrap();
        let dims = Dims {
            grid: (1, 1, 1),
            block: (32, 1, 1),
            smem: 0,
        };
        let r = Launch::new(&stream, &kernel(&module, &DIVERGENT_SHUFFLE))
            .buf(&x)
            .buf(&out)
            .run(dims);
        format!(
            "{:#}",
            r.expect_err("a shuffle in divergent code must fail the launch")
        )
    };
    in_child(
        "shuffle_in_divergent_code_is_caught",
        case,
        &["has already exited"],
    );
}
