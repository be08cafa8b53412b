//! The backend's ops: every op on the CPU and, built with `--features cuda`, on the CUDA backend
//! against it, table-driven (`backend_ops`); one module per op family, named after its kernel
//! file (`op_<family>`), against naive references, its CUDA tests named `cuda_*`.

#[path = "../common/mod.rs"]
mod common;

mod backend_ops;
mod op_act;
mod op_attention;
mod op_conv;
mod op_elementwise;
mod op_embed;
mod op_gemm;
mod op_math;
mod op_norm;
mod op_pool;
mod op_tile;
