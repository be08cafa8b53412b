//! The CUDA device for op tests: skipped loudly without one, a failure when REQUIRE_CUDA=1; and
//! the lock of the tests that read the emulated device's process-wide state.
#![allow(dead_code)]

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use sitdiv::backend::cuda::Cuda;
use sitdiv::backend::{Backend, Precision};

/// The stand-in driver counts launches, GEMMs, allocations, … for the whole process and keeps
/// one last error: a test that reads them must have the device to itself, while the tests of the
/// same binary that only use the device may share it. Held for the test's whole body.
static DEVICE: RwLock<()> = RwLock::new(());

/// The device shared with the other tests that only use it.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    DEVICE.read().unwrap_or_else(PoisonError::into_inner)
}

/// The device alone: no other test of this process uses it until the guard is dropped.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    DEVICE.write().unwrap_or_else(PoisonError::into_inner)
}

pub fn device() -> Option<Cuda> {
    device_in(Precision::Fp32)
}

/// The device with its products in `precision`.
pub fn device_in(precision: Precision) -> Option<Cuda> {
    match Cuda::new(0, precision, true) {
        Ok(c) => Some(c),
        Err(e) => {
            if std::env::var("REQUIRE_CUDA").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_CUDA=1 but no CUDA device: {e:#}");
            }
            eprintln!("SKIPPED: CUDA test without a device ({e:#})");
            None
        }
    }
}

/// max|a − r| / max|r| between a GPU result and the CPU reference.
pub fn rel(gpu: &Cuda, a: &<Cuda as Backend>::Buf, r: &[f32]) -> f64 {
    let a = gpu.download(a).expect("download");
    assert_eq!(a.len(), r.len());
    let num = a
        .iter()
        .zip(r)
        .map(|(&a, &r)| (a as f64 - r as f64).abs())
        .fold(0.0, f64::max);
    let den = r
        .iter()
        .map(|&r| (r as f64).abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    num / den
}

/// Whether two results are the same bits.
pub fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}
