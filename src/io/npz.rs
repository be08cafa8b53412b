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

/// Writes the members atomically as an uncompressed zip (zip64 when large).
pub fn write(path: &Path, members: &[Member]) -> Result<()> {
    write_atomic(path, &to_bytes(path, members)?)
}

/// The bytes of the npz file `write` would write (`path` names it in errors).
pub fn to_bytes(path: &Path, members: &[Member]) -> Result<Vec<u8>> {
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
    Ok(bytes)
}

/// Reads every member of an npz as raw `.npy` bytes, keyed by name without `.npy`.
pub fn read(path: &Path) -> Result<Vec<Member>> {
    let mut z = open_archive(path)?;
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
        let mut npy = Vec::with_capacity(capacity(&e));
        e.read_to_end(&mut npy)
            .with_context(|| format!("{}: reading {key}", path.display()))?;
        out.push(Member { key, npy });
    }
    Ok(out)
}

/// The bytes to reserve for a member: its declared size, unless that is more than its
/// compressed bytes can hold (a forged size field).
fn capacity<R: Read>(e: &zip::read::ZipFile<'_, R>) -> usize {
    e.size().min(e.compressed_size().saturating_mul(1032)) as usize
}

fn open_archive(path: &Path) -> Result<ZipArchive<std::fs::File>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    ZipArchive::new(f).with_context(|| format!("{} is not an .npz (zip) file", path.display()))
}

/// The array names of an npz, without reading any data.
pub fn keys(path: &Path) -> Result<Vec<String>> {
    names(path, &open_archive(path)?)
}

fn names(path: &Path, z: &ZipArchive<std::fs::File>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in z.file_names() {
        let n = n.with_context(|| format!("{}: an unreadable member name", path.display()))?;
        if let Some(k) = n.strip_suffix(".npy") {
            out.push(k.to_string());
        }
    }
    Ok(out)
}

/// Reads the named members that exist (others are skipped), leaving large ones such as an
/// image array unread.
pub fn read_only(path: &Path, wanted: &[&str]) -> Result<Vec<Member>> {
    let mut z = open_archive(path)?;
    let mut out = Vec::new();
    for key in wanted {
        let Ok(mut e) = z.by_name(&format!("{key}.npy")) else {
            continue;
        };
        let mut npy = Vec::with_capacity(capacity(&e));
        e.read_to_end(&mut npy)
            .with_context(|| format!("{}: reading {key}", path.display()))?;
        out.push(Member {
            key: key.to_string(),
            npy,
        });
    }
    Ok(out)
}

/// The member `{key}.npy`, or an error listing the arrays the file has.
fn member<'a>(
    path: &Path,
    z: &'a mut ZipArchive<std::fs::File>,
    key: &str,
) -> Result<zip::read::ZipFile<'a, std::fs::File>> {
    let names = names(path, z)?.join(", ");
    z.by_name(&format!("{key}.npy")).map_err(|_| {
        anyhow::anyhow!(
            "{}: no `{key}` image array (it has: {names})",
            path.display()
        )
    })
}

/// The number of rows of an array, from its header alone.
pub fn image_count(path: &Path, key: &str) -> Result<usize> {
    let mut z = open_archive(path)?;
    let mut e = member(path, &mut z, key)?;
    let (_, shape) = super::npy::read_header(path, &mut e)?;
    shape
        .first()
        .copied()
        .with_context(|| format!("{}: `{key}` is a scalar", path.display()))
}

/// Streams a uint8 (N, H, W, C) image array of an npz in chunks of up to `rows` images, without
/// holding the whole array: `f(chunk, first_row, (N, H, W, C))`. Returns the array's shape.
pub fn stream_images(
    path: &Path,
    key: &str,
    rows: usize,
    mut f: impl FnMut(&[u8], usize, (usize, usize, usize, usize)) -> Result<()>,
) -> Result<(usize, usize, usize, usize)> {
    let mut z = open_archive(path)?;
    let mut e = member(path, &mut z, key)?;
    let (descr, shape) = super::npy::read_header(path, &mut e)?;
    if descr != "|u1" || shape.len() != 4 {
        bail!(
            "{}: `{key}` is {descr} {shape:?}, expected uint8 images (N, H, W, C) as np.savez writes ADM batches",
            path.display()
        );
    }
    let dims = (shape[0], shape[1], shape[2], shape[3]);
    if dims.1 == 0 || dims.2 == 0 || dims.3 == 0 {
        bail!(
            "{}: `{key}` has shape {shape:?}; images need a height, width and channels of at least 1",
            path.display()
        );
    }
    // The member's own size bounds what its header may declare (a deflated member holds at
    // most ~1032 bytes per compressed byte), so a forged shape cannot ask for a huge buffer.
    let held = e.size().min(e.compressed_size().saturating_mul(1032)) as usize;
    let per = dims
        .1
        .checked_mul(dims.2)
        .and_then(|p| p.checked_mul(dims.3));
    let total = per.and_then(|p| p.checked_mul(dims.0));
    let (Some(per), Some(total)) = (per, total) else {
        bail!(
            "{}: `{key}` has shape {shape:?}, too large to address",
            path.display()
        );
    };
    if total > held {
        bail!(
            "{}: `{key}` declares shape {shape:?} ({total} bytes) but its member holds {held} bytes",
            path.display()
        );
    }
    let mut buf = vec![0u8; rows.max(1).min(dims.0.max(1)) * per];
    let mut start = 0;
    while start < dims.0 {
        let m = rows.max(1).min(dims.0 - start);
        e.read_exact(&mut buf[..m * per]).with_context(|| {
            format!(
                "{}: `{key}` ends before image {} of {}",
                path.display(),
                start + m,
                dims.0
            )
        })?;
        f(&buf[..m * per], start, dims)?;
        start += m;
    }
    Ok(dims)
}
