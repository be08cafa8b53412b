//! Counter-based Gaussian noise: Philox4x32-10 (Salmon et al. 2011) plus Box–Muller, generated on
//! the host so every backend sees the same bits.
//!
//! Layout. Key = (seed low 32 bits, seed high 32 bits). Counter = (block, draw, index, stream):
//! - `index`  the global sample index,
//! - `draw`   0 for the initial noise, k + 1 for the noise of SDE step k,
//! - `stream` [`STREAM_COND`] for a sample's own rows, [`STREAM_NULL`] for the rows of its
//!   unconditional copy when guidance doubles the batch, [`STREAM_LABEL`] for its class label,
//! - `block`  element e of the sample's C·H·W floats comes from block e / 4, lane e % 4.
//!
//! Gaussian transform: lanes (0, 1) and (2, 3) each give one Box–Muller pair, in f64:
//! u = (x + 0.5)·2⁻³², r = √(−2 ln u₀), θ = 2π u₁, z = (r cos θ, r sin θ), rounded to f32.
//! Labels: `(x₀ · num_classes) >> 32` of block 0, draw 0 of the label stream.
//!
//! A draw therefore depends only on (seed, global index, draw, stream): never on the unit size,
//! the shard or the device.

pub const STREAM_COND: u32 = 0;
pub const STREAM_NULL: u32 = 1;
pub const STREAM_LABEL: u32 = 2;
/// Synthetic weights: `index` is the tensor number in state_dict order.
pub const STREAM_WEIGHTS: u32 = 3;
/// Subset draws of the diversity metrics (`--subset-seed`): never the label or noise streams.
pub const STREAM_SUBSET: u32 = 4;
/// Bootstrap resamples of the reports (`--bootstrap-seed`).
pub const STREAM_BOOTSTRAP: u32 = 5;
/// CADS's condition noise: `draw` is the bit pattern of the f32 time it anneals at.
pub const STREAM_CADS: u32 = 6;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds.
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (ctr, key);
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

fn key(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

fn box_muller(a: u32, b: u32) -> (f32, f32) {
    const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;
    let u0 = (a as f64 + 0.5) * TWO_POW_M32;
    let u1 = (b as f64 + 0.5) * TWO_POW_M32;
    let r = (-2.0 * u0.ln()).sqrt();
    let th = std::f64::consts::TAU * u1;
    ((r * th.cos()) as f32, (r * th.sin()) as f32)
}

/// `len` standard normal floats for (seed, index, draw, stream).
pub fn gaussian(seed: u64, index: u64, draw: u32, stream: u32, len: usize) -> Vec<f32> {
    assert!(
        index <= u32::MAX as u64,
        "sample index {index} exceeds the 32-bit counter"
    );
    let k = key(seed);
    let mut out = Vec::with_capacity(len.div_ceil(4) * 4);
    for block in 0..len.div_ceil(4) {
        let x = philox4x32_10([block as u32, draw, index as u32, stream], k);
        let (a, b) = box_muller(x[0], x[1]);
        let (c, d) = box_muller(x[2], x[3]);
        out.extend_from_slice(&[a, b, c, d]);
    }
    out.truncate(len);
    out
}

/// `len` uniforms in (0, 1) for (seed, index, draw, stream): lane l of block e / 4 gives element
/// e as (x + 0.5)·2⁻³² in f64. Exact in any language with 64-bit floats (test fixtures use it).
pub fn uniform(seed: u64, index: u64, draw: u32, stream: u32, len: usize) -> Vec<f64> {
    const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;
    let k = key(seed);
    (0..len)
        .map(|e| {
            let x = philox4x32_10([(e / 4) as u32, draw, index as u32, stream], k);
            (x[e % 4] as f64 + 0.5) * TWO_POW_M32
        })
        .collect()
}

/// The class label of sample `index`, uniform in 0..num_classes.
pub fn label(seed: u64, index: u64, num_classes: usize) -> i64 {
    let x = philox4x32_10([0, 0, index as u32, STREAM_LABEL], key(seed));
    ((x[0] as u64 * num_classes as u64) >> 32) as i64
}

/// A uniform integer in 0..n for draw `counter` of `stream`: `(x₀ · n) >> 32` of the block whose
/// counter is (counter low 32 bits, counter high 32 bits, 0, stream), so 64-bit counters never
/// wrap onto each other.
pub fn below(seed: u64, counter: u64, stream: u32, n: usize) -> usize {
    let x = philox4x32_10(
        [counter as u32, (counter >> 32) as u32, 0, stream],
        key(seed),
    );
    ((x[0] as u64 * n as u64) >> 32) as usize
}
