//! `.npz` batches as `np.savez` writes them (a zip of `.npy` members, stored uncompressed) and as
//! the ADM evaluator reads them. Entries carry a fixed 1980-01-01 timestamp, so identical data
//! gives identical bytes.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::write_atomic;

/// One member of an npz: its `.npy` bytes under a key (`arr_0` …).
pub struct Member {
    pub key: String,
    pub npy: Vec<u8>,
}

/// `.npy` bytes of a uint8 array.
pub fn encode_u8(shape: &[usize], data: &[u8]) -> Vec<u8> {
    super::npy::encode_raw("|u1", shape, data)
}

/// Writes the members atomically as an uncompressed zip (zip64 when large).
pub fn write(path: &Path, members: &[Member]) -> Result<()> {
    let mut zw = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default())
        .large_file(members.iter().any(|m| m.npy.len() >= u32::MAX as usize));
    for m in members {
        zw.start_file(format!("{}.npy", m.key), opts)
            .with_context(|| format!("{}: adding {}", path.display(), m.key))?;
        zw.write_all(&m.npy)
            .with_context(|| format!("{}: writing {}", path.display(), m.key))?;
    }
    let bytes = zw
        .finish()
        .with_context(|| format!("{}: finishing the zip", path.display()))?
        .into_inner();
    write_atomic(path, &bytes)
}

/// Reads every member of an npz as raw `.npy` bytes, keyed by name without `.npy`.
pub fn read(path: &Path) -> Result<Vec<Member>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut z = ZipArchive::new(f)
        .with_context(|| format!("{} is not an .npz (zip) file", path.display()))?;
    let mut out = Vec::new();
    for i in 0..z.len() {
        let mut e = z
            .by_index(i)
            .with_context(|| format!("{}: member {i}", path.display()))?;
        let name = e
            .name()
            .with_context(|| format!("{}: member {i} has an unreadable name", path.display()))?
            .to_string();
        let Some(key) = name.strip_suffix(".npy").map(str::to_string) else {
            bail!("{}: member {name} is not an .npy array", path.display());
        };
        let mut npy = Vec::with_capacity(e.size() as usize);
        e.read_to_end(&mut npy)
            .with_context(|| format!("{}: reading {key}", path.display()))?;
        out.push(Member { key, npy });
    }
    Ok(out)
}
