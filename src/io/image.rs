//! Image files decoded to 8-bit RGB (H, W, 3): PNG through the `image` crate, JPEG through
//! libjpeg-turbo's code (the `mozjpeg` crate: islow IDCT, fancy upsampling), which gives
//! Pillow's bytes exactly (tests/models/model_preprocess.rs).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

/// An 8-bit RGB image, row-major (H, W, 3).
pub struct Rgb {
    pub data: Vec<u8>,
    pub height: usize,
    pub width: usize,
}

/// Decodes PNG or JPEG bytes; `source` names them in errors. Grey becomes RGB as Pillow's
/// `convert("RGB")` makes it; a PNG's alpha is dropped.
pub fn decode_rgb(source: &Path, bytes: &[u8]) -> Result<Rgb> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(source, bytes);
    }
    if !bytes.starts_with(b"\x89PNG") {
        bail!("{}: neither a PNG nor a JPEG file", source.display());
    }
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .with_context(|| format!("{}: unreadable PNG", source.display()))?
        .to_rgb8();
    Ok(Rgb {
        height: img.height() as usize,
        width: img.width() as usize,
        data: img.into_raw(),
    })
}

fn decode_jpeg(source: &Path, bytes: &[u8]) -> Result<Rgb> {
    // libjpeg reports a corrupt stream by unwinding out of its error handler.
    let decoded = std::panic::catch_unwind(|| -> std::io::Result<(usize, usize, Vec<u8>)> {
        let d = mozjpeg::Decompress::new_mem(bytes)?;
        // A forged frame header must not size the output: a JPEG holds at least ~1/512 byte
        // per pixel (an empty 8 × 8 block costs a few bits), and 16 M pixels are always allowed.
        let pixels = d.width().saturating_mul(d.height());
        if pixels > (512 * bytes.len()).max(1 << 24) {
            return Err(std::io::Error::other(format!(
                "declares {} × {} pixels, more than its {} bytes can hold",
                d.width(),
                d.height(),
                bytes.len()
            )));
        }
        let mut img = d.rgb()?;
        let (w, h) = (img.width(), img.height());
        let rows: Vec<[u8; 3]> = img.read_scanlines()?;
        img.finish()?;
        Ok((h, w, rows.into_iter().flatten().collect()))
    });
    let (height, width, data) = decoded
        .map_err(|_| anyhow!("{}: a corrupt or unsupported JPEG", source.display()))?
        .with_context(|| format!("{}: unreadable JPEG", source.display()))?;
    if data.len() != height * width * 3 {
        bail!(
            "{}: a truncated JPEG ({height} × {width})",
            source.display()
        );
    }
    Ok(Rgb {
        data,
        height,
        width,
    })
}

/// Reads and decodes an image file.
pub fn read_rgb(path: &Path) -> Result<Rgb> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_rgb(path, &bytes)
}
