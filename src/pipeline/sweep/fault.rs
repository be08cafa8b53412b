//! Test-only fault injection for the resume tests, compiled in only with the `fault-injection`
//! feature (which only the tests enable): `SITDIV_FAULT_AFTER_UNITS=K` makes `sweep run` abort
//! while writing the unit after its K-th completed one, leaving half a temporary file.
//! `SITDIV_FAULT_SHARD=I` limits it to shard I; with `SITDIV_FAULT_MARKER=F` it fires only when F
//! does not exist and creates F, so a requeued task runs clean. Without the feature it does
//! nothing.

use std::path::Path;

use anyhow::Result;

#[cfg(feature = "fault-injection")]
pub struct FaultHook {
    after: Option<usize>,
    marker: Option<std::path::PathBuf>,
}

#[cfg(feature = "fault-injection")]
impl FaultHook {
    pub fn from_env(shard_index: usize) -> Self {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<usize>().ok());
        let on_shard = var("SITDIV_FAULT_SHARD").is_none_or(|s| s == shard_index);
        FaultHook {
            after: var("SITDIV_FAULT_AFTER_UNITS").filter(|_| on_shard),
            marker: std::env::var_os("SITDIV_FAULT_MARKER").map(std::path::PathBuf::from),
        }
    }

    /// Called before the `completed`-th unit's data goes to `data`: when the hook fires, half
    /// the bytes land in a temporary file and the process aborts.
    pub fn before_write(&self, completed: usize, data: &Path, bytes: &[u8]) -> Result<()> {
        let fires =
            self.after == Some(completed) && self.marker.as_ref().is_none_or(|m| !m.exists());
        if !fires {
            return Ok(());
        }
        let tmp = data.with_extension(format!("npz.tmp.{}", std::process::id()));
        std::fs::write(&tmp, &bytes[..bytes.len() / 2])?;
        if let Some(m) = &self.marker {
            std::fs::write(m, b"")?;
        }
        log::error!(
            "SITDIV_FAULT_AFTER_UNITS: aborting while writing {}",
            data.display()
        );
        std::process::abort();
    }
}

#[cfg(not(feature = "fault-injection"))]
pub struct FaultHook;

#[cfg(not(feature = "fault-injection"))]
impl FaultHook {
    pub fn from_env(_shard_index: usize) -> Self {
        FaultHook
    }

    pub fn before_write(&self, _completed: usize, _data: &Path, _bytes: &[u8]) -> Result<()> {
        Ok(())
    }
}
