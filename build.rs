//! With `--features cuda`: compiles kernels/*.cu to PTX with nvcc and embeds it.
//! With `--features cuda12`: embeds the kernel sources for NVRTC at start-up (CUDA 12 drivers).
//! Without either: nothing (the CPU build needs no CUDA at all).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    let cuda = env::var_os("CARGO_FEATURE_CUDA").is_some();
    let cuda12 = env::var_os("CARGO_FEATURE_CUDA12").is_some();
    if cuda && cuda12 {
        fail("features `cuda` and `cuda12` exclude each other: pick the one matching the driver");
    }
    if !cuda && !cuda12 {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let kernels = kernel_files();
    let common = fs::read_to_string("kernels/common.cuh")
        .unwrap_or_else(|e| fail(&format!("kernels/common.cuh: {e}")));
    let mut table = String::from("/// (file stem, PTX or CUDA source) of every kernel file.\npub const KERNELS: &[(&str, &str)] = &[\n");
    if cuda {
        let nvcc = find_nvcc();
        let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "80".into());
        for k in &kernels {
            let stem = stem(k);
            let ptx = out.join(format!("{stem}.ptx"));
            let status = Command::new(&nvcc)
                .args([
                    "--ptx",
                    "-std=c++17",
                    "-O3",
                    &format!("-arch=compute_{cap}"),
                    "-Ikernels",
                    "-o",
                ])
                .arg(&ptx)
                .arg(k)
                .status()
                .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", nvcc.display())));
            if !status.success() {
                fail(&format!("nvcc failed on {}", k.display()));
            }
            table.push_str(&format!(
                "    ({stem:?}, include_str!({:?})),\n",
                ptx.display().to_string()
            ));
        }
    } else {
        // NVRTC has no include path: inline common.cuh into each source.
        for k in &kernels {
            let stem = stem(k);
            let src =
                fs::read_to_string(k).unwrap_or_else(|e| fail(&format!("{}: {e}", k.display())));
            let merged = src.replace(
                "#include \"common.cuh\"",
                &common.replace("#pragma once", ""),
            );
            let path = out.join(format!("{stem}.cu"));
            fs::write(&path, merged).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
            table.push_str(&format!(
                "    ({stem:?}, include_str!({:?})),\n",
                path.display().to_string()
            ));
        }
    }
    table.push_str("];\n");
    fs::write(out.join("kernels.rs"), table)
        .unwrap_or_else(|e| fail(&format!("writing kernels.rs: {e}")));
}

fn kernel_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir("kernels")
        .unwrap_or_else(|e| fail(&format!("kernels/: {e}")))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    v.sort();
    v
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn find_nvcc() -> PathBuf {
    if let Some(p) = env::var_os("NVCC") {
        return PathBuf::from(p);
    }
    if let Some(home) = env::var_os("CUDA_HOME") {
        let p = Path::new(&home).join("bin/nvcc");
        if p.exists() {
            return p;
        }
    }
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let p = dir.join("nvcc");
            if p.exists() {
                return p;
            }
        }
    }
    fail(
        "--features cuda needs nvcc to compile kernels/*.cu to PTX, and none was found in $NVCC, \
         $CUDA_HOME/bin or PATH. Install the pinned one with `export NVCC=$(scripts/install-nvcc.sh)` \
         (no GPU or system toolkit needed), or build `--features cuda12` to compile kernels at run time.",
    )
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}
