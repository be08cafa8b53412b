//! The toy study's procedural image set: 10 classes of 32×32 RGB shapes and textures, each image
//! a pure function of (seed, class, index) computed with integers only, so Rust and
//! `scripts/train_toy.py` (which trains the toy models on it) draw the same bytes everywhere.
//!
//! ```text
//! hash32(x): x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16  (mod 2³²)
//! key  = hash32(hash32(hash32(seed) ^ class) ^ index),   d(j) = hash32(key ^ hash32(j))
//! bg_c = 16 + d(c) % 48,   fg_c = clamp(BASE[class][c] + d(3 + c) % 81 − 40, 0, 255)
//! cx = 128 + d(6) % 257, cy = 128 + d(7) % 257, s = 64 + d(8) % 97          (1/16 px)
//! period = 16·(4 + d(9) % 5), phase_x = d(10) % period, phase_y = d(11) % period, orient = d(12) % 2
//! cov(x, y) = #{(i, j) ∈ 4×4 : (16x + 2 + 4i, 16y + 2 + 4j) inside the class's shape}
//! pixel_c = clamp((bg_c·(16 − cov) + fg_c·cov + 8) / 16 + d(64 + 32y + x) % 25 − 12, 0, 255)
//! ```

use anyhow::{ensure, Result};

pub const SIZE: usize = 32;
pub const NUM_CLASSES: usize = 10;
/// Bytes of one image, (32, 32, 3) uint8.
pub const IMAGE_BYTES: usize = SIZE * SIZE * 3;
/// The data seed the toy models were trained on, and the held-out one (classifier accuracy and
/// the study's reference set).
pub const TRAIN_SEED: u32 = 0;
pub const HELD_OUT_SEED: u32 = 1;

pub const CLASS_NAMES: [&str; NUM_CLASSES] = [
    "disk",
    "square",
    "triangle",
    "ring",
    "plus",
    "h-stripes",
    "v-stripes",
    "checker",
    "cross",
    "two-dots",
];

/// Each class's foreground colour before its ±40 jitter.
const BASE: [[i64; 3]; NUM_CLASSES] = [
    [220, 60, 60],
    [60, 200, 70],
    [70, 90, 230],
    [230, 210, 60],
    [210, 70, 200],
    [60, 200, 210],
    [240, 140, 40],
    [220, 220, 220],
    [140, 80, 230],
    [150, 110, 60],
];

/// A 32-bit integer hash (Wellons' lowbias32).
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// An image's drawn parameters, in 1/16 px where they are lengths.
struct Params {
    class: usize,
    cx: i64,
    cy: i64,
    s: i64,
    period: i64,
    phase_x: i64,
    phase_y: i64,
    orient: i64,
}

impl Params {
    /// Whether the point (X, Y), in 1/16 px, lies inside the class's shape.
    fn inside(&self, x: i64, y: i64) -> bool {
        let (dx, dy, s) = (x - self.cx, y - self.cy, self.s);
        let (a, b) = (dx.abs(), dy.abs());
        let half = self.period / 2;
        let in_box = 2 * a <= 3 * s && 2 * b <= 3 * s;
        match self.class {
            0 => dx * dx + dy * dy <= s * s,
            1 => 8 * a <= 7 * s && 8 * b <= 7 * s,
            2 => dy >= -s && dy <= s && 2 * a <= dy + s,
            3 => {
                let q = dx * dx + dy * dy;
                q <= s * s && 64 * q >= 25 * s * s
            }
            4 => {
                let t = s / 3;
                (a <= t && b <= s) || (b <= t && a <= s)
            }
            5 => in_box && ((y + self.phase_y) / half) % 2 == 0,
            6 => in_box && ((x + self.phase_x) / half) % 2 == 0,
            7 => in_box && ((x + self.phase_x) / half + (y + self.phase_y) / half) % 2 == 0,
            8 => a <= s && b <= s && 4 * (a - b).abs() <= s,
            _ => {
                let (o, r) = (3 * s / 4, s / 2);
                let (ox, oy) = if self.orient == 0 { (o, 0) } else { (0, o) };
                let d1 = (dx - ox).pow(2) + (dy - oy).pow(2);
                let d2 = (dx + ox).pow(2) + (dy + oy).pow(2);
                d1 <= r * r || d2 <= r * r
            }
        }
    }
}

/// Image `index` of class `class` under `seed`: (32, 32, 3) uint8, HWC.
pub fn image(seed: u32, class: usize, index: u32) -> Result<Vec<u8>> {
    ensure!(
        class < NUM_CLASSES,
        "toy data: class {class} is outside 0..{NUM_CLASSES}"
    );
    let key = hash32(hash32(hash32(seed) ^ class as u32) ^ index);
    let d = |j: u32| i64::from(hash32(key ^ hash32(j)));
    let bg: [i64; 3] = [16 + d(0) % 48, 16 + d(1) % 48, 16 + d(2) % 48];
    let fg: [i64; 3] =
        std::array::from_fn(|c| (BASE[class][c] + d(3 + c as u32) % 81 - 40).clamp(0, 255));
    let period = 16 * (4 + d(9) % 5);
    let p = Params {
        class,
        cx: 128 + d(6) % 257,
        cy: 128 + d(7) % 257,
        s: 64 + d(8) % 97,
        period,
        phase_x: d(10) % period,
        phase_y: d(11) % period,
        orient: d(12) % 2,
    };
    let mut out = vec![0u8; IMAGE_BYTES];
    for y in 0..SIZE as i64 {
        for x in 0..SIZE as i64 {
            let mut cov = 0i64;
            for j in 0..4 {
                for i in 0..4 {
                    cov += i64::from(p.inside(16 * x + 2 + 4 * i, 16 * y + 2 + 4 * j));
                }
            }
            let noise = d(64 + (32 * y + x) as u32) % 25 - 12;
            let px = ((y * SIZE as i64 + x) * 3) as usize;
            for c in 0..3 {
                let v = (bg[c] * (16 - cov) + fg[c] * cov + 8) / 16 + noise;
                out[px + c] = v.clamp(0, 255) as u8;
            }
        }
    }
    Ok(out)
}

/// `per_class` images of every class in class-major order, (10·per_class, 32, 32, 3), with
/// their labels.
pub fn dataset(seed: u32, per_class: usize) -> Result<(Vec<u8>, Vec<i64>)> {
    let mut images = Vec::with_capacity(NUM_CLASSES * per_class * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(NUM_CLASSES * per_class);
    for class in 0..NUM_CLASSES {
        for index in 0..per_class {
            let i = u32::try_from(index)?;
            images.extend(image(seed, class, i)?);
            labels.push(class as i64);
        }
    }
    Ok((images, labels))
}
