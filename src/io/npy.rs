//! `.npy` arrays through the `npyz` crate: float32, float64, int64, int32 and uint8, C order,
//! little-endian. Readers name the file in every error and say what was expected.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use npyz::{Deserialize, NpyFile, Order, WriterBuilder};

/// An array read from a `.npy` file.
#[derive(Debug, Clone)]
pub struct Array<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// The preamble and header dictionary of an `.npy` stream (magic, version, length, text),
/// read ahead of npyz, whose parser multiplies the declared shape without checking for overflow.
/// Returns the bytes read and the number of values the shape declares.
fn preamble(source: &Path, r: &mut impl Read) -> Result<(Vec<u8>, u64)> {
    let bad =
        |why: &str| anyhow::anyhow!("{} is not a readable .npy file: {why}", source.display());
    let mut head = vec![0u8; 10];
    r.read_exact(&mut head)
        .map_err(|_| bad("shorter than its preamble"))?;
    if &head[..6] != b"\x93NUMPY" {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let len = match head[6] {
        1 => u16::from_le_bytes([head[8], head[9]]) as usize,
        2 | 3 => {
            let mut more = [0u8; 2];
            r.read_exact(&mut more)
                .map_err(|_| bad("shorter than its preamble"))?;
            head.extend_from_slice(&more);
            u32::from_le_bytes([head[8], head[9], more[0], more[1]]) as usize
        }
        v => return Err(bad(&format!("format version {v}"))),
    };
    if len > 1 << 20 {
        return Err(bad(&format!("a header of {len} bytes")));
    }
    let start = head.len();
    head.resize(start + len, 0);
    r.read_exact(&mut head[start..])
        .map_err(|_| bad("truncated header"))?;
    let text = String::from_utf8_lossy(&head[start..]);
    let shape = text
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(dims, _)| dims)
        .ok_or_else(|| bad("no 'shape' tuple in the header"))?;
    let mut values = 1u64;
    for d in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = d
            .trim_end_matches('L')
            .parse()
            .map_err(|_| bad(&format!("shape entry {d:?}")))?;
        values = values
            .checked_mul(d)
            .ok_or_else(|| bad(&format!("shape ({shape}) overflows")))?;
    }
    Ok((head, values))
}

/// The header of `bytes` (from `source`), checked for C order and for a shape its bytes can hold.
fn open<'a>(source: &Path, bytes: &'a [u8]) -> Result<NpyFile<&'a [u8]>> {
    let (head, values) = preamble(source, &mut &bytes[..])?;
    let data = (bytes.len() - head.len()) as u64;
    if values > data {
        bail!(
            "{}: the header declares {values} values but only {data} data bytes follow",
            source.display()
        );
    }
    let f = NpyFile::new(bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a readable .npy file: {e}", source.display()))?;
    if f.order() == Order::Fortran {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            source.display()
        );
    }
    Ok(f)
}

fn descr<R: Read>(f: &NpyFile<R>) -> String {
    f.dtype().descr().trim_matches('\'').to_string()
}

fn shape<R: Read>(f: &NpyFile<R>) -> Vec<usize> {
    f.shape().iter().map(|&d| d as usize).collect()
}

/// The data of `f` as `T`, whose dtype the caller checked.
fn values<T: Deserialize, R: Read>(source: &Path, f: NpyFile<R>) -> Result<Array<T>> {
    let shape = shape(&f);
    let data = f.into_vec::<T>().with_context(|| {
        format!(
            "{}: truncated or unreadable data for shape {shape:?}",
            source.display()
        )
    })?;
    Ok(Array { shape, data })
}

fn wrong(source: &Path, descr: &str, expected: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: dtype {descr} where {expected} was expected",
        source.display()
    )
}

fn widen<T, U>(a: Array<T>, f: impl Fn(T) -> U) -> Array<U> {
    Array {
        shape: a.shape,
        data: a.data.into_iter().map(f).collect(),
    }
}

/// A float32 array from `.npy` bytes; float64 is rounded to float32 when `widen_f64`.
fn floats32(source: &Path, bytes: &[u8], accept_f64: bool) -> Result<Array<f32>> {
    let f = open(source, bytes)?;
    match descr(&f).as_str() {
        "<f4" => values(source, f),
        "<f8" if accept_f64 => Ok(widen(values::<f64, _>(source, f)?, |v| v as f32)),
        d => Err(wrong(source, d, "float32 ('<f4')")),
    }
}

/// Reads a float32 array (float64 is accepted and rounded).
pub fn read_f32(path: &Path) -> Result<Array<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    floats32(path, &bytes, true)
}

/// Reads an integer array (int64, int32 or uint8) as i64.
pub fn read_i64(path: &Path) -> Result<Array<i64>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let f = open(path, &bytes)?;
    match descr(&f).as_str() {
        "<i8" => values(path, f),
        "<i4" => Ok(widen(values::<i32, _>(path, f)?, i64::from)),
        "|u1" => Ok(widen(values::<u8, _>(path, f)?, i64::from)),
        d => Err(wrong(path, d, "int64 ('<i8')")),
    }
}

/// A uint8 array from `.npy` bytes (`source` names them in errors).
pub fn decode_u8(source: &Path, bytes: &[u8]) -> Result<Array<u8>> {
    let f = open(source, bytes)?;
    match descr(&f).as_str() {
        "|u1" => values(source, f),
        d => Err(wrong(source, d, "uint8 ('|u1')")),
    }
}

/// An int64 array from `.npy` bytes.
pub fn decode_i64(source: &Path, bytes: &[u8]) -> Result<Array<i64>> {
    let f = open(source, bytes)?;
    match descr(&f).as_str() {
        "<i8" => values(source, f),
        d => Err(wrong(source, d, "int64 ('<i8')")),
    }
}

/// A float array (float64, or float32 widened) from `.npy` bytes.
pub fn decode_f64(source: &Path, bytes: &[u8]) -> Result<Array<f64>> {
    let f = open(source, bytes)?;
    match descr(&f).as_str() {
        "<f8" => values(source, f),
        "<f4" => Ok(widen(values::<f32, _>(source, f)?, f64::from)),
        d => Err(wrong(source, d, "a float array")),
    }
}

/// A float32 array from `.npy` bytes.
pub fn decode_f32(source: &Path, bytes: &[u8]) -> Result<Array<f32>> {
    floats32(source, bytes, false)
}

/// Reads just the header of a `.npy` stream, leaving `r` at the first data byte: (descr, shape).
pub fn read_header(source: &Path, r: &mut impl Read) -> Result<(String, Vec<usize>)> {
    let (head, _) = preamble(source, r)?;
    let h = npyz::NpyHeader::from_reader(&mut &head[..])
        .map_err(|e| anyhow::anyhow!("{}: cannot read the .npy header: {e}", source.display()))?;
    if h.order() == Order::Fortran {
        bail!(
            "{}: Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
            source.display()
        );
    }
    Ok((
        h.dtype().descr().trim_matches('\'').to_string(),
        h.shape().iter().map(|&d| d as usize).collect(),
    ))
}

/// `.npy` bytes of an array of `T` (its default dtype) in C order; the shape must hold exactly
/// the data's values.
fn encode<T: npyz::AutoSerialize + Copy>(shape: &[usize], data: &[T]) -> Result<Vec<u8>> {
    let elements: usize = shape.iter().product();
    anyhow::ensure!(
        elements == data.len(),
        "an .npy array of shape {shape:?} given {} values",
        data.len()
    );
    let mut out = Vec::new();
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&dims)
        .writer(&mut out)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(out)
}

/// `.npy` bytes of a float32 array.
pub fn encode_f32(shape: &[usize], data: &[f32]) -> Result<Vec<u8>> {
    encode(shape, data)
}

/// `.npy` bytes of a float64 array.
pub fn encode_f64(shape: &[usize], data: &[f64]) -> Result<Vec<u8>> {
    encode(shape, data)
}

/// `.npy` bytes of an int64 array.
pub fn encode_i64(shape: &[usize], data: &[i64]) -> Result<Vec<u8>> {
    encode(shape, data)
}

/// `.npy` bytes of a uint8 array.
pub fn encode_u8(shape: &[usize], data: &[u8]) -> Result<Vec<u8>> {
    encode(shape, data)
}

/// Writes a float32 array atomically.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    super::write_atomic(
        path,
        &encode_f32(shape, data).with_context(|| path.display().to_string())?,
    )
}

/// Writes an int64 array atomically.
pub fn write_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    super::write_atomic(
        path,
        &encode_i64(shape, data).with_context(|| path.display().to_string())?,
    )
}
