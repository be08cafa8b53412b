//! Features → statistics → numbers. Statistics are f64 and merge exactly across shards.

pub mod bootstrap;
pub mod cmmd;
pub mod correlation;
pub mod diversity;
pub mod fid;
pub mod inception_score;
pub mod kid;
pub mod prdc;
pub mod results;
pub mod stats;
