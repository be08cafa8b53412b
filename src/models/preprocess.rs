//! Image preprocessing shared by the metric backbones: uint8 NHWC batches in, float32 NCHW out.

use rayon::prelude::*;
use serde::Serialize;

/// One axis of TF1's legacy `ResizeBilinear` (align_corners=False, half_pixel_centers=False):
/// for output index i, the source indices (lo, hi) and the weight of hi. All in f32 as TF
/// computes it: scale = in/out, src = i·scale, lo = ⌊src⌋, hi = min(lo + 1, in − 1).
fn tf1_axis(len_in: usize, len_out: usize) -> Vec<(usize, usize, f32)> {
    let scale = len_in as f32 / len_out as f32;
    (0..len_out)
        .map(|i| {
            let src = i as f32 * scale;
            let lo = src as usize; // src ≥ 0: truncation is the floor
            (
                lo.min(len_in - 1),
                (lo + 1).min(len_in - 1),
                src - lo as f32,
            )
        })
        .collect()
}

/// The ADM evaluator's Inception input: uint8 (N, H, W, C) → TF1 bilinear resize to size × size
/// → (x − 128)/128, as float32 (N, C, size, size). Interpolates along x first, then y, in f32
/// (`top + (bottom − top)·dy`), which is the TF kernel's order, so the result is bit-exact.
pub fn tf1_bilinear_nchw(
    images: &[u8],
    (n, h, w, c): (usize, usize, usize, usize),
    size: usize,
) -> Vec<f32> {
    let (ys, xs) = (tf1_axis(h, size), tf1_axis(w, size));
    let mut out = vec![0f32; n * c * size * size];
    let px =
        |s: usize, y: usize, x: usize, ch: usize| images[((s * h + y) * w + x) * c + ch] as f32;
    out.par_chunks_mut(size * size)
        .enumerate()
        .for_each(|(plane_id, plane)| {
            let (s, ch) = (plane_id / c, plane_id % c);
            for (oy, &(y0, y1, dy)) in ys.iter().enumerate() {
                for (ox, &(x0, x1, dx)) in xs.iter().enumerate() {
                    let (a, b) = (px(s, y0, x0, ch), px(s, y0, x1, ch));
                    let (cc, d) = (px(s, y1, x0, ch), px(s, y1, x1, ch));
                    let top = a + (b - a) * dx;
                    let bottom = cc + (d - cc) * dx;
                    plane[oy * size + ox] = (top + (bottom - top) * dy - 128.0) / 128.0;
                }
            }
        });
    out
}

/// PIL's resampling filters (`Image.resize`), as used by the HF image processors and torchvision
/// transforms on PIL images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PilFilter {
    /// `Image.BOX`: each output the mean of the inputs it covers, support 1/2.
    Box,
    /// `Image.BILINEAR`: triangle, support 1.
    Bilinear,
    /// `Image.BICUBIC`: Keys cubic with a = −0.5, support 2.
    Bicubic,
}

impl PilFilter {
    fn support(self) -> f64 {
        match self {
            PilFilter::Box => 0.5,
            PilFilter::Bilinear => 1.0,
            PilFilter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        // Pillow's box takes (−1/2, 1/2]: asymmetric, so before the absolute value.
        if self == PilFilter::Box {
            return if x > -0.5 && x <= 0.5 { 1.0 } else { 0.0 };
        }
        let x = x.abs();
        match self {
            PilFilter::Box => 0.0,
            PilFilter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            PilFilter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

/// PIL's fixed-point coefficients carry 22 fractional bits (32 − 8 − 2).
const PIL_PRECISION_BITS: u32 = 22;

/// One axis of PIL's resampling: for each output index, the first input index and the
/// fixed-point weights. The filter widens by the scale when downsampling (antialiasing); weights
/// are normalised in f64, then rounded half away from zero to 22-bit fixed point.
fn pil_axis(len_in: usize, len_out: usize, filter: PilFilter) -> Vec<(usize, Vec<i32>)> {
    let scale = len_in as f64 / len_out as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ss = 1.0 / filterscale;
    (0..len_out)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            // C's (int) truncation toward zero, then clamping.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(len_in as i64) as usize;
            let w: Vec<f64> = (lo..hi)
                .map(|x| filter.weight((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let v = k * (1u32 << PIL_PRECISION_BITS) as f64;
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (lo, fixed)
        })
        .collect()
}

/// A fixed-point sum back to uint8: round, shift, clamp to 0..=255 (PIL's `clip8`).
fn pil_clip8(acc: i32) -> u8 {
    (acc >> PIL_PRECISION_BITS).clamp(0, 255) as u8
}

/// `Image.resize((out_w, out_h), filter)` of an 8-bit image (H, W, C): a horizontal pass into an
/// 8-bit intermediate, then a vertical pass, each in 32-bit fixed point, skipping an axis whose
/// size does not change. Bit-exact with Pillow.
pub fn pil_resize(
    img: &[u8],
    (h, w, c): (usize, usize, usize),
    (out_h, out_w): (usize, usize),
    filter: PilFilter,
) -> Vec<u8> {
    let half = 1i32 << (PIL_PRECISION_BITS - 1);
    let mut cur = img.to_vec();
    let mut cur_w = w;
    if out_w != w {
        let axis = pil_axis(w, out_w, filter);
        let mut next = vec![0u8; h * out_w * c];
        next.par_chunks_mut(out_w * c)
            .zip(cur.par_chunks(w * c))
            .for_each(|(dst, src)| {
                for (ox, (lo, k)) in axis.iter().enumerate() {
                    for ch in 0..c {
                        let acc = k
                            .iter()
                            .enumerate()
                            .fold(half, |s, (i, &kv)| s + src[(lo + i) * c + ch] as i32 * kv);
                        dst[ox * c + ch] = pil_clip8(acc);
                    }
                }
            });
        cur = next;
        cur_w = out_w;
    }
    if out_h != h {
        let axis = pil_axis(h, out_h, filter);
        let row = cur_w * c;
        let mut next = vec![0u8; out_h * row];
        next.par_chunks_mut(row)
            .zip(axis.par_iter())
            .for_each(|(dst, (lo, k))| {
                for (j, v) in dst.iter_mut().enumerate() {
                    let acc = k
                        .iter()
                        .enumerate()
                        .fold(half, |s, (i, &kv)| s + cur[(lo + i) * row + j] as i32 * kv);
                    *v = pil_clip8(acc);
                }
            });
        cur = next;
    }
    cur
}

/// How a centre crop places an odd margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CropRounding {
    /// HF image processors: offset ⌊(in − out)/2⌋.
    Floor,
    /// torchvision `CenterCrop`: offset round((in − out)/2), half to even.
    RoundHalfEven,
}

/// A centre crop of an (H, W, C) image to (out_h, out_w) (both at most the input's).
pub fn center_crop(
    img: &[u8],
    (h, w, c): (usize, usize, usize),
    (out_h, out_w): (usize, usize),
    rounding: CropRounding,
) -> Vec<u8> {
    let offset = |len: usize, out: usize| match rounding {
        CropRounding::Floor => (len - out) / 2,
        CropRounding::RoundHalfEven => ((len - out) as f64 / 2.0).round_ties_even() as usize,
    };
    let (top, left) = (offset(h, out_h), offset(w, out_w));
    let mut out = Vec::with_capacity(out_h * out_w * c);
    for y in top..top + out_h {
        out.extend_from_slice(&img[(y * w + left) * c..(y * w + left + out_w) * c]);
    }
    out
}

/// ADM's `center_crop_arr`, as SiT's training prepares ImageNet: halve with Pillow's BOX filter
/// while the shorter side is at least 2 × `size`, resize bicubic so the shorter side is `size`
/// (the other side `round(side · scale)`, half to even as Python rounds), then crop the centre
/// (offset ⌊(side − size)/2⌋). An (H, W, 3) uint8 image → (size, size, 3).
pub fn adm_center_crop(img: &[u8], (h, w): (usize, usize), size: usize) -> Vec<u8> {
    let (mut cur, mut h, mut w) = (img.to_vec(), h, w);
    while h.min(w) >= 2 * size {
        cur = pil_resize(&cur, (h, w, 3), (h / 2, w / 2), PilFilter::Box);
        (h, w) = (h / 2, w / 2);
    }
    let scale = size as f64 / h.min(w) as f64;
    let (rh, rw) = (
        (h as f64 * scale).round_ties_even() as usize,
        (w as f64 * scale).round_ties_even() as usize,
    );
    let r = pil_resize(&cur, (h, w, 3), (rh, rw), PilFilter::Bicubic);
    center_crop(&r, (rh, rw, 3), (size, size), CropRounding::Floor)
}

/// The output size of "resize the shorter side to `size`" (HF `shortest_edge`, torchvision
/// `Resize(int)`): the longer side becomes ⌊size · long / short⌋.
pub fn shorter_side_to(h: usize, w: usize, size: usize) -> (usize, usize) {
    if h <= w {
        (size, size * w / h)
    } else {
        (size * h / w, size)
    }
}

/// How 8-bit values become the network's floats.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Normalize {
    /// HF `rescale` then `normalize`: ((f32)(x · (1/255) in f64) − mean) / std, in f32.
    HfRescale { mean: [f32; 3], std: [f32; 3] },
    /// torchvision `ToTensor` then `Normalize`: (x / 255 − mean) / std, in f32.
    ToTensor { mean: [f32; 3], std: [f32; 3] },
    /// torchvision `ToTensor` alone: x / 255 in f32.
    Unit,
    /// [−1, 1] as `u8.float() / 127.5 - 1`, in f32.
    Signed,
}

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// An 8-bit RGB image (H, W, 3) as normalised float32 (3, H, W).
pub fn to_chw(img: &[u8], (h, w): (usize, usize), norm: Normalize) -> Vec<f32> {
    let mut out = vec![0f32; 3 * h * w];
    for (p, px) in img.chunks(3).enumerate() {
        for ch in 0..3 {
            let x = px[ch];
            out[ch * h * w + p] = match norm {
                Normalize::HfRescale { mean, std } => {
                    ((x as f64 * (1.0 / 255.0)) as f32 - mean[ch]) / std[ch]
                }
                Normalize::ToTensor { mean, std } => (x as f32 / 255.0 - mean[ch]) / std[ch],
                Normalize::Unit => x as f32 / 255.0,
                Normalize::Signed => x as f32 / 127.5 - 1.0,
            };
        }
    }
    out
}

/// The preprocessing of each diversity backbone, from an 8-bit RGB image to its (3, S, S) float
/// input, S = [`Pipeline::size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pipeline {
    /// HF `CLIPImageProcessor` (PIL): shorter side 224 bicubic, centre crop 224, CLIP mean/std.
    ClipHf,
    /// HF `BitImageProcessor` as facebook/dinov2-base (PIL): shorter side 256 bicubic, centre
    /// crop 224, ImageNet mean/std.
    Dinov2Hf,
    /// dgm-eval's DINOv2 (FD-DINOv2): Resize((224, 224)) bicubic without a crop (the aspect ratio
    /// is not kept), ToTensor, ImageNet mean/std.
    Dinov2Dgm,
    /// DreamSim (the `dreamsim` package's preprocess): Resize((224, 224)) bicubic without a crop,
    /// ToTensor; each tower normalises the result with its own mean/std.
    DreamSim,
    /// MoCo v3 evaluation (torchvision): Resize(256) bilinear, CenterCrop(224), ImageNet mean/std.
    Mocov3,
    /// SimCLR evaluation: centre crop of 0.875 × the shorter side, Resize((224, 224)) bicubic,
    /// values in [0, 1] without mean/std.
    Simclr,
    /// CMMD's CLIP ViT-L/14-336 input (google-research `cmmd/io_util.py`, `embedding.py`):
    /// centre square crop (side min(H, W), offsets floored), PIL bicubic to 336 × 336 on the
    /// 8-bit image, x / 255 in f32, CLIP mean/std.
    ClipCmmd,
}

/// The input size of every pipeline but CMMD's.
pub const PIPELINE_SIZE: usize = 224;
/// The input size of CMMD's CLIP ViT-L/14-336.
pub const CMMD_SIZE: usize = 336;

impl Pipeline {
    /// The side S of the (3, S, S) input.
    pub fn size(self) -> usize {
        match self {
            Pipeline::ClipCmmd => CMMD_SIZE,
            _ => PIPELINE_SIZE,
        }
    }

    /// (3, S, S) float input of an (H, W, 3) image, S = [`Pipeline::size`].
    pub fn prepare(self, img: &[u8], (h, w): (usize, usize)) -> Vec<f32> {
        let s = self.size();
        let resize = |img: &[u8], (h, w), (oh, ow), f| {
            if (oh, ow) == (h, w) {
                img.to_vec() // PIL returns a copy when the size does not change
            } else {
                pil_resize(img, (h, w, 3), (oh, ow), f)
            }
        };
        match self {
            Pipeline::ClipHf | Pipeline::Dinov2Hf | Pipeline::Mocov3 => {
                let (short, filter, rounding, norm) = match self {
                    Pipeline::ClipHf => (
                        224,
                        PilFilter::Bicubic,
                        CropRounding::Floor,
                        Normalize::HfRescale {
                            mean: CLIP_MEAN,
                            std: CLIP_STD,
                        },
                    ),
                    Pipeline::Dinov2Hf => (
                        256,
                        PilFilter::Bicubic,
                        CropRounding::Floor,
                        Normalize::HfRescale {
                            mean: IMAGENET_MEAN,
                            std: IMAGENET_STD,
                        },
                    ),
                    _ => (
                        256,
                        PilFilter::Bilinear,
                        CropRounding::RoundHalfEven,
                        Normalize::ToTensor {
                            mean: IMAGENET_MEAN,
                            std: IMAGENET_STD,
                        },
                    ),
                };
                let size = shorter_side_to(h, w, short);
                let r = resize(img, (h, w), size, filter);
                to_chw(
                    &center_crop(&r, (size.0, size.1, 3), (s, s), rounding),
                    (s, s),
                    norm,
                )
            }
            Pipeline::Dinov2Dgm | Pipeline::DreamSim => {
                let r = resize(img, (h, w), (s, s), PilFilter::Bicubic);
                let norm = match self {
                    Pipeline::DreamSim => Normalize::Unit,
                    _ => Normalize::ToTensor {
                        mean: IMAGENET_MEAN,
                        std: IMAGENET_STD,
                    },
                };
                to_chw(&r, (s, s), norm)
            }
            Pipeline::Simclr => {
                let side = (0.875 * h.min(w) as f64).round_ties_even() as usize;
                let c = center_crop(img, (h, w, 3), (side, side), CropRounding::RoundHalfEven);
                let r = resize(&c, (side, side), (s, s), PilFilter::Bicubic);
                to_chw(&r, (s, s), Normalize::Unit)
            }
            Pipeline::ClipCmmd => {
                let side = h.min(w);
                let c = center_crop(img, (h, w, 3), (side, side), CropRounding::Floor);
                let r = resize(&c, (side, side), (s, s), PilFilter::Bicubic);
                let norm = Normalize::ToTensor {
                    mean: CLIP_MEAN,
                    std: CLIP_STD,
                };
                to_chw(&r, (s, s), norm)
            }
        }
    }
}
