//! What the stand-in driver of the emulated device (kernels/emu/, scripts/emulated-gpu.sh)
//! tells besides the driver API: its counters and the detail of its last error. On a real
//! driver these symbols do not exist and every function here answers `None`.

/// Looks a stand-in symbol up in the loaded driver library.
fn symbol<T: Copy>(name: &[u8]) -> Option<T> {
    if !super::driver_present() {
        return None;
    }
    // SAFETY: `culib` is the driver cudarc loaded; the symbol's type is the stand-in's own.
    unsafe { cudarc::driver::sys::culib().get::<T>(name).ok().map(|s| *s) }
}

/// Whether the loaded driver is the stand-in.
pub fn active() -> bool {
    symbol::<unsafe extern "C" fn() -> *const std::ffi::c_char>(b"sitdiv_standin_counts_json\0")
        .is_some()
}

/// The counters (launches, allocations, copies, host syncs, GEMMs by compute type, ...) as JSON.
pub fn counts() -> Option<serde_json::Value> {
    let f = symbol::<unsafe extern "C" fn() -> *const std::ffi::c_char>(
        b"sitdiv_standin_counts_json\0",
    )?;
    // SAFETY: the stand-in returns a NUL-terminated string valid until its next call on this thread.
    let s = unsafe { std::ffi::CStr::from_ptr(f()) }
        .to_string_lossy()
        .into_owned();
    serde_json::from_str(&s).ok()
}

/// Sets every counter to zero.
pub fn reset_counts() {
    if let Some(f) = symbol::<unsafe extern "C" fn()>(b"sitdiv_standin_reset_counts\0") {
        // SAFETY: takes no arguments.
        unsafe { f() }
    }
}

/// The detailed message of the stand-in's last error.
pub fn last_error() -> Option<String> {
    let f = symbol::<unsafe extern "C" fn() -> *const std::ffi::c_char>(
        b"sitdiv_standin_last_error\0",
    )?;
    // SAFETY: as in `counts`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(f()) }
            .to_string_lossy()
            .into_owned(),
    )
}
