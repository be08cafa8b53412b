//! The CUDA build (`--features cuda` or `cuda12`; without either this binary is empty): the static
//! gate over every kernel (`kernels_static`), the emulated device's own checks (`gpu_harness`,
//! `standin_apis`), jobs and the SiT forward on the CUDA backend (`pipeline_gpu`), and a whole
//! sweep on it against the CPU (`sweep_gpu`).
//!
//! These tests share one process and the stand-in driver's counters and last error are
//! process-wide: a test that reads them takes `common::cuda::exclusive()`, every other test that
//! touches the device in this process `common::cuda::shared()`.

#[cfg(any(feature = "cuda", feature = "cuda12"))]
#[path = "../common/mod.rs"]
mod common;

#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod gpu_harness;
#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod kernels_static;
#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod pipeline_gpu;
#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod standin_apis;
#[cfg(any(feature = "cuda", feature = "cuda12"))]
mod sweep_gpu;
