//! Patch (un)embedding rearrangements and embedding lookups.

/// (B, C, H, W) → (B, (H/p)(W/p), C·p·p), features ordered (c, a, b).
pub fn patchify(x: &[f32], b: usize, c: usize, h: usize, w: usize, p: usize) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
    let f = c * p * p;
    let mut out = vec![0f32; b * gh * gw * f];
    for n in 0..b {
        for i in 0..gh {
            for j in 0..gw {
                let tok = &mut out[((n * gh + i) * gw + j) * f..][..f];
                for ch in 0..c {
                    for a in 0..p {
                        let src = &x[((n * c + ch) * h + p * i + a) * w + p * j..][..p];
                        tok[(ch * p + a) * p..][..p].copy_from_slice(src);
                    }
                }
            }
        }
    }
    out
}

/// (B, T, p·p·c_out) → (B, c_keep, H, W): `out[n, ch, p·i+a, p·j+b] = o[n, i·G+j, (a·p+b)·c_out + ch]`.
#[allow(clippy::too_many_arguments)]
pub fn unpatchify(
    o: &[f32],
    b: usize,
    c_out: usize,
    c_keep: usize,
    h: usize,
    w: usize,
    p: usize,
) -> Vec<f32> {
    let (gh, gw) = (h / p, w / p);
    let f = p * p * c_out;
    let mut out = vec![0f32; b * c_keep * h * w];
    for n in 0..b {
        for i in 0..gh {
            for j in 0..gw {
                let tok = &o[((n * gh + i) * gw + j) * f..][..f];
                for a in 0..p {
                    for bb in 0..p {
                        for ch in 0..c_keep {
                            out[((n * c_keep + ch) * h + p * i + a) * w + p * j + bb] =
                                tok[(a * p + bb) * c_out + ch];
                        }
                    }
                }
            }
        }
    }
    out
}

/// Rows `ids` of a (V, D) table.
pub fn gather_rows(table: &[f32], ids: &[usize], d: usize) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| table[i * d..(i + 1) * d].iter().copied())
        .collect()
}

/// Batched 2-D transpose: (B, R, C) → (B, C, R) (the VAE attention's CHW ↔ token layout).
pub fn transpose(x: &[f32], b: usize, r: usize, c: usize) -> Vec<f32> {
    let mut y = vec![0f32; b * r * c];
    for n in 0..b {
        let (xs, ys) = (&x[n * r * c..][..r * c], &mut y[n * r * c..][..r * c]);
        for i in 0..r {
            for j in 0..c {
                ys[j * r + i] = xs[i * c + j];
            }
        }
    }
    y
}
