//! sitdiv: how sampling settings of a Scalable Interpolant Transformer change the quality and the
//! diversity of what it generates. See README.md for the commands and DESIGN notes.

pub mod backend;
pub mod bench;
pub mod metrics;
pub mod models;
pub mod pipeline;
pub mod report;
pub mod sampling;
pub mod toy;
pub mod weights;
