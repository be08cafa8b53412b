//! Networks: weights + backend. One struct per upstream module, loaded by its state_dict prefix.

pub mod clip;
pub mod dinov2;
pub mod dreamsim;
pub mod inception;
pub mod layers;
pub mod lpips;
pub mod preprocess;
pub mod resnet;
pub mod sit;
pub mod synthetic;
pub mod toy_classifier;
pub mod vae;
pub mod vit;
