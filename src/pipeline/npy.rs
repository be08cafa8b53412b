//! A small `.npy` reader and writer (format version 1.0/2.0, little-endian, C order): float32 and
//! int64 arrays, plus int32/uint8/float64 on read.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// An array read from a `.npy` file.
#[derive(Debug, Clone)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

struct Header {
    descr: String,
    shape: Vec<usize>,
    data_start: usize,
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |why: &str| anyhow::anyhow!("{} is not a readable .npy file: {why}", path.display());
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("unsupported format version {v}"))),
    };
    if start + hlen > bytes.len() {
        return Err(bad("header runs past the end of the file"));
    }
    let h =
        std::str::from_utf8(&bytes[start..start + hlen]).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = h.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = h[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| bad("no 'descr' in header"))?
        .to_string();
    let fortran = field("fortran_order").ok_or_else(|| bad("no 'fortran_order' in header"))?;
    if fortran.starts_with("True") {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            path.display()
        );
    }
    let shape_txt = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no 'shape' in header"))?;
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| bad(&format!("bad shape entry {s:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Header {
        descr,
        shape,
        data_start: start + hlen,
    })
}

fn read_raw(path: &Path) -> Result<(Header, Vec<u8>)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let h = parse_header(path, &bytes)?;
    Ok((h, bytes))
}

fn payload<'a>(path: &Path, h: &Header, bytes: &'a [u8], size: usize) -> Result<&'a [u8]> {
    let need = h
        .shape
        .iter()
        .try_fold(size, |a, &d| a.checked_mul(d))
        .ok_or_else(|| anyhow::anyhow!("{}: shape {:?} overflows", path.display(), h.shape))?;
    let have = bytes.len() - h.data_start;
    if have < need {
        bail!(
            "{}: truncated, shape {:?} needs {need} data bytes, found {have}",
            path.display(),
            h.shape
        );
    }
    Ok(&bytes[h.data_start..h.data_start + need])
}

/// Reads a float32 array (float64 is accepted and rounded).
pub fn read_f32(path: &Path) -> Result<Array<f32>> {
    let (h, bytes) = read_raw(path)?;
    let data = match h.descr.as_str() {
        "<f4" => payload(path, &h, &bytes, 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "<f8" => payload(path, &h, &bytes, 8)?
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        d => bail!(
            "{}: dtype {d} where float32 ('<f4') was expected",
            path.display()
        ),
    };
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// Reads an integer array (int64, int32 or uint8) as i64.
pub fn read_i64(path: &Path) -> Result<Array<i64>> {
    let (h, bytes) = read_raw(path)?;
    let data = match h.descr.as_str() {
        "<i8" => payload(path, &h, &bytes, 8)?
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        "<i4" => payload(path, &h, &bytes, 4)?
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as i64)
            .collect(),
        "|u1" => payload(path, &h, &bytes, 1)?
            .iter()
            .map(|&b| b as i64)
            .collect(),
        d => bail!(
            "{}: dtype {d} where int64 ('<i8') was expected",
            path.display()
        ),
    };
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// `.npy` bytes of an array given its numpy `descr` and raw little-endian data.
pub fn encode_raw(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // Pad so the data starts on a 64-byte boundary, header ending in '\n'.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `.npy` bytes of a float32 array.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    encode_raw("<f4", shape, bytemuck::cast_slice(data))
}

/// `.npy` bytes of a float64 array.
pub fn encode_f64(shape: &[usize], data: &[f64]) -> Vec<u8> {
    encode_raw("<f8", shape, bytemuck::cast_slice(data))
}

/// `.npy` bytes of an int64 array.
pub fn encode_i64(shape: &[usize], data: &[i64]) -> Vec<u8> {
    encode_raw("<i8", shape, bytemuck::cast_slice(data))
}

/// Writes a float32 array atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    super::write_atomic(path, &encode_f32(shape, data))
}

/// Writes an int64 array atomically.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    super::write_atomic(path, &encode_i64(shape, data))
}

/// A uint8 array from `.npy` bytes (`source` names them in errors).
pub fn decode_u8(source: &Path, bytes: &[u8]) -> Result<Array<u8>> {
    let h = parse_header(source, bytes)?;
    if h.descr != "|u1" {
        bail!(
            "{}: dtype {} where uint8 ('|u1') was expected",
            source.display(),
            h.descr
        );
    }
    let data = payload(source, &h, bytes, 1)?.to_vec();
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// An int64 array from `.npy` bytes.
pub fn decode_i64(source: &Path, bytes: &[u8]) -> Result<Array<i64>> {
    let h = parse_header(source, bytes)?;
    if h.descr != "<i8" {
        bail!(
            "{}: dtype {} where int64 ('<i8') was expected",
            source.display(),
            h.descr
        );
    }
    let data = payload(source, &h, bytes, 8)?
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect();
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// A float array (float64, or float32 widened) from `.npy` bytes.
pub fn decode_f64(source: &Path, bytes: &[u8]) -> Result<Array<f64>> {
    let h = parse_header(source, bytes)?;
    let data = match h.descr.as_str() {
        "<f8" => payload(source, &h, bytes, 8)?
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .collect(),
        "<f4" => payload(source, &h, bytes, 4)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        d => bail!(
            "{}: dtype {d} where a float array was expected",
            source.display()
        ),
    };
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// A float32 array from `.npy` bytes.
pub fn decode_f32(source: &Path, bytes: &[u8]) -> Result<Array<f32>> {
    let h = parse_header(source, bytes)?;
    if h.descr != "<f4" {
        bail!(
            "{}: dtype {} where float32 ('<f4') was expected",
            source.display(),
            h.descr
        );
    }
    let data = payload(source, &h, bytes, 4)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(Array {
        shape: h.shape,
        data,
    })
}

/// Reads just the header of a `.npy` stream, leaving `r` at the first data byte: (descr, shape).
pub fn read_header(source: &Path, r: &mut impl std::io::Read) -> Result<(String, Vec<usize>)> {
    let mut prefix = vec![0u8; 12];
    r.read_exact(&mut prefix[..10])
        .with_context(|| format!("{}: cannot read the .npy header", source.display()))?;
    let hlen = match prefix[6] {
        1 => u16::from_le_bytes([prefix[8], prefix[9]]) as usize,
        _ => {
            r.read_exact(&mut prefix[10..12])
                .with_context(|| format!("{}: cannot read the .npy header", source.display()))?;
            u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize
        }
    };
    if prefix[6] == 1 {
        prefix.truncate(10);
    }
    let start = prefix.len();
    prefix.resize(start + hlen, 0);
    r.read_exact(&mut prefix[start..])
        .with_context(|| format!("{}: the .npy header is cut short", source.display()))?;
    let h = parse_header(source, &prefix)?;
    Ok((h.descr, h.shape))
}
