//! `sitdiv inspect FILE`: what a weights file holds — tensors, dtypes, metadata, sha256.

use std::io::{BufWriter, ErrorKind, Write};
use std::path::Path;

use anyhow::Result;

use crate::weights::WeightFile;

/// Prints the file's sha256, metadata (long values shortened) and one line per tensor.
pub fn run(path: &Path) -> Result<()> {
    match print(path, &mut BufWriter::new(std::io::stdout().lock())) {
        // A closed pipe (`| head`) is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn print(path: &Path, out: &mut impl Write) -> Result<()> {
    let f = WeightFile::open(path)?;
    writeln!(out, "file    {}", path.display())?;
    writeln!(out, "bytes   {}", f.bytes().len())?;
    writeln!(out, "sha256  {}", crate::io::sha256_hex(f.bytes()))?;
    for (k, v) in f.metadata() {
        let short: String = v.chars().take(200).collect();
        let more = if v.chars().count() > 200 { " …" } else { "" };
        writeln!(out, "meta    {k} = {short}{more}")?;
    }
    let mut params = 0usize;
    let names: Vec<&str> = f.names().collect();
    for name in &names {
        if let Some(info) = f.info(name) {
            params += info.numel();
            let state = if info.end > f.bytes().len() {
                "  TRUNCATED"
            } else {
                ""
            };
            writeln!(
                out,
                "tensor  {name:<60} {:<5} {:?}{state}",
                format!("{:?}", info.dtype),
                info.shape
            )?;
        }
    }
    writeln!(out, "total   {} tensors, {params} values", names.len())?;
    out.flush()?;
    Ok(())
}
