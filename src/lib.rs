//! sitdiv: how sampling settings of a Scalable Interpolant Transformer change the quality and the
//! diversity of what it generates. See README.md for the commands and DESIGN notes.

pub mod backend;
pub mod bench;
pub mod io;
pub mod metrics;
pub mod models;
#[macro_use]
pub mod names;
pub mod pipeline;
pub mod report;
pub mod rng;
pub mod sampling;
pub mod toy;
pub mod weights;
