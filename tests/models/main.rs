//! The networks against their upstream code (`model_*`, golden files in tests/golden), the ops
//! each declares, the weights file reader, and the toy models against PyTorch.

#[path = "../common/mod.rs"]
mod common;

mod model_batch;
mod model_clip336;
mod model_cuda;
mod model_dreamsim;
mod model_inception;
mod model_lpips;
mod model_ops;
mod model_preprocess;
mod model_resnet;
mod model_sit;
mod model_vae;
mod model_valloss;
mod model_vit;
mod toy_models;
mod weights_file;
