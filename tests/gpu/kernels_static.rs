//! Static gate for every kernel of `kernels/*.cu`, no GPU needed: the PTX the runtime loads
//! (embedded by nvcc for `cuda`, compiled by NVRTC for `cuda12`) must declare exactly the kernels and
//! parameter sizes of the launch table, and ptxas must fit each kernel for sm_80 and sm_90 without
//! spills, local memory or more registers than its largest block can hold.
//!
//! ptxas: `$PTXAS`, else the one next to `$NVCC`; without either the resource check is skipped
//! (loudly) unless `REQUIRE_PTXAS=1`. The `cuda12` flavour needs libnvrtc.so.12 on
//! `LD_LIBRARY_PATH` (`scripts/install-nvrtc12.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use sitdiv::backend::cuda::launch::{Sig, SIGNATURES};
use sitdiv::backend::cuda::KERNELS;

/// Architectures the gate compiles for: A100 and H100/H200.
const ARCHES: [u32; 2] = [80, 90];
/// Static shared memory a block may declare without the opt-in (48 KiB).
const STATIC_SMEM_LIMIT: u64 = 48 * 1024;
/// 32-bit registers per SM, which also bound one block (sm_80 and sm_90).
const REGISTERS_PER_BLOCK: u64 = 65_536;
/// Threads per block (sm_80 and sm_90).
const THREADS_PER_BLOCK: u32 = 1024;

/// The PTX of one kernel file as the runtime gets it for one architecture.
struct Unit {
    flavour: &'static str,
    stem: &'static str,
    /// The device ptxas compiles for.
    arch: u32,
    /// The PTX's own `.target` (one nvcc PTX serves both devices).
    ptx_arch: u32,
    ptx: String,
}

#[cfg(feature = "cuda")]
fn units() -> Vec<Unit> {
    // nvcc's PTX (compute_80 unless CUDA_COMPUTE_CAP said otherwise) is JIT-compiled for either
    // device.
    let mut v = Vec::new();
    for (stem, ptx) in KERNELS {
        let target = ptx_target(ptx).unwrap_or(0);
        for arch in ARCHES {
            if target > arch {
                println!(
                    "note: kernels/{stem}.cu was built for sm_{target}; not checked for sm_{arch}"
                );
                continue;
            }
            v.push(Unit {
                flavour: "cuda",
                stem,
                arch,
                ptx_arch: target,
                ptx: ptx.to_string(),
            });
        }
    }
    v
}

#[cfg(feature = "cuda12")]
fn units() -> Vec<Unit> {
    // SAFETY: only tries to dlopen NVRTC.
    let present = unsafe { cudarc::nvrtc::sys::is_culib_present() };
    assert!(
        present,
        "the cuda12 gate compiles the kernels with NVRTC 12, and libnvrtc.so.12 was not found: \
         run with LD_LIBRARY_PATH=$(scripts/install-nvrtc12.sh)"
    );
    let mut v = Vec::new();
    for (stem, code) in KERNELS {
        for arch in ARCHES {
            let ptx = sitdiv::backend::cuda::ptx_for(code, (arch / 10) as i32, (arch % 10) as i32)
                .unwrap_or_else(|e| panic!("kernels/{stem}.cu for compute_{arch}: {e:#}"));
            v.push(Unit {
                flavour: "cuda12",
                stem,
                arch,
                ptx_arch: arch,
                ptx: ptx.to_src(),
            });
        }
    }
    v
}

/// The `N` of `.target sm_N`.
#[cfg(feature = "cuda")]
fn ptx_target(ptx: &str) -> Option<u32> {
    let line = ptx
        .lines()
        .find(|l| l.trim_start().starts_with(".target"))?;
    let t = line.split_whitespace().nth(1)?.trim_end_matches(',');
    t.strip_prefix("sm_")?
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .ok()
}

/// Bytes of a PTX scalar type (`.u64`, `.f32`, `.b8`, ...).
fn type_size(t: &str) -> Option<usize> {
    let bits: usize = t.strip_prefix('.')?.get(1..)?.parse().ok()?;
    matches!(t.as_bytes()[1], b'u' | b's' | b'b' | b'f').then_some(bits / 8)
}

/// One `.param` declaration's size: `.param .u64 name`, `.param .u64 .ptr .global .align 1 name`,
/// `.param .align 8 .b8 name[16]`.
fn param_size(decl: &str) -> Result<usize, String> {
    let mut words = decl.split_whitespace().peekable();
    if words.peek() == Some(&".param") {
        words.next();
    }
    let (mut elem, mut count) = (None, 1usize);
    while let Some(w) = words.next() {
        match w {
            ".align" => {
                words.next();
            }
            ".ptr" | ".global" | ".const" | ".local" | ".shared" => {}
            _ if w.starts_with('.') => {
                elem = Some(type_size(w).ok_or_else(|| format!("unknown type {w} in `{decl}`"))?)
            }
            name => {
                if let Some((_, n)) = name.trim_end_matches(']').split_once('[') {
                    count = n.parse().map_err(|_| format!("array length in `{decl}`"))?;
                }
            }
        }
    }
    Ok(elem.ok_or_else(|| format!("no type in `{decl}`"))? * count)
}

/// Every `.entry NAME(...)` of the PTX with its parameter sizes in bytes.
fn entries(ptx: &str) -> Result<BTreeMap<String, Vec<usize>>, String> {
    let mut out = BTreeMap::new();
    let mut rest = ptx;
    while let Some(at) = rest.find(".entry") {
        rest = &rest[at + ".entry".len()..];
        let open = rest.find('(').ok_or("`.entry` without `(`")?;
        let name = rest[..open].trim().to_string();
        let close = rest[open..]
            .find(')')
            .ok_or_else(|| format!("`.entry {name}(` is not closed"))?
            + open;
        let sizes = rest[open + 1..close]
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(param_size)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{name}: {e}"))?;
        out.insert(name, sizes);
        rest = &rest[close..];
    }
    Ok(out)
}

#[test]
fn param_declarations_parse() {
    let ptx = ".visible .entry k(\n\t.param .u64 .ptr .global .align 1 k_param_0,\n\t.param .f32 k_param_1,\n\t\
               .param .align 8 .b8 k_param_2[24],\n\t.param .s64 k_param_3\n)\n{\n}\n.entry none()\n{\n}\n";
    let e = entries(ptx).unwrap();
    assert_eq!(e["k"], vec![8, 4, 24, 8]);
    assert_eq!(e["none"], Vec::<usize>::new());
}

fn rows_of(stem: &str) -> Vec<&'static Sig> {
    SIGNATURES.iter().filter(|s| s.file == stem).collect()
}

#[test]
fn ptx_entries_match_the_launch_table() {
    let mut errors = Vec::new();
    let units = units();
    let stems: BTreeSet<&str> = units.iter().map(|u| u.stem).collect();
    for sig in SIGNATURES {
        if !stems.contains(sig.file) {
            errors.push(format!(
                "kernel {}: its file kernels/{}.cu is not embedded",
                sig.name, sig.file
            ));
        }
        if !(1..=THREADS_PER_BLOCK).contains(&sig.max_threads) {
            errors.push(format!(
                "kernel {}: max_threads {} is not a block size (1 to {THREADS_PER_BLOCK})",
                sig.name, sig.max_threads
            ));
        }
    }
    // Each distinct PTX once.
    let mut seen = BTreeSet::new();
    for u in units.iter().filter(|u| seen.insert((u.stem, u.ptx_arch))) {
        let at = format!(
            "kernels/{}.cu ({}, compute_{})",
            u.stem, u.flavour, u.ptx_arch
        );
        let found = match entries(&u.ptx) {
            Ok(found) => found,
            Err(e) => {
                errors.push(format!("{at}: {e}"));
                continue;
            }
        };
        let rows = rows_of(u.stem);
        let listed: BTreeSet<&str> = rows.iter().map(|s| s.name).collect();
        let declared: BTreeSet<&str> = found.keys().map(String::as_str).collect();
        let missing: Vec<_> = listed.difference(&declared).collect();
        let extra: Vec<_> = declared.difference(&listed).collect();
        if !missing.is_empty() || !extra.is_empty() {
            errors.push(format!(
                "{at}: the PTX declares {declared:?}, the launch table lists {listed:?} \
                 (missing from the PTX: {missing:?}; not in the table: {extra:?})"
            ));
        }
        for sig in rows {
            let Some(have) = found.get(sig.name) else {
                continue;
            };
            let want: Vec<usize> = sig.params.iter().map(|p| p.size()).collect();
            if *have != want {
                errors.push(format!(
                    "kernel {} in {at}: the PTX has {} parameters {have:?} bytes, \
                     the launch table has {} {want:?} bytes ({:?})",
                    sig.name,
                    have.len(),
                    want.len(),
                    sig.params
                ));
            }
        }
    }
    assert!(
        errors.is_empty(),
        "PTX and launch table disagree:\n  {}",
        errors.join("\n  ")
    );
}

/// What ptxas `-v` reports for one function.
#[derive(Debug, Default, Clone)]
struct Usage {
    registers: u64,
    smem: u64,
    stack: u64,
    spill_stores: u64,
    spill_loads: u64,
}

/// The number just before `what` in `line` ("16 registers", "1024 bytes smem").
fn number_before(line: &str, what: &str) -> Option<u64> {
    let head = &line[..line.find(what)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rev()
        .find(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// The quoted name after `key` ("Compiling entry function 'add_f32' for 'sm_80'").
fn quoted_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix('\'')?;
    Some(&rest[..rest.find('\'')?])
}

/// Per function (entries and any non-inlined device functions): ptxas's `-v` report, e.g.
/// `Compiling entry function 'f' for 'sm_80'` / `Function properties for f` /
/// `0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads` /
/// `Used 16 registers, used 1 barriers, 1024 bytes smem`.
fn parse_report(report: &str) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in report.lines() {
        let named = quoted_after(line, "Compiling entry function")
            .or_else(|| line.split("Function properties for ").nth(1).map(str::trim));
        if let Some(f) = named {
            current = Some(f.to_string());
            out.entry(f.to_string()).or_default();
        }
        let Some(u) = current.as_ref().and_then(|f| out.get_mut(f)) else {
            continue;
        };
        if line.contains("bytes stack frame") {
            u.stack = number_before(line, "bytes stack frame").unwrap_or(0);
            u.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            u.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        }
        if line.contains("Used ") && line.contains(" registers") {
            u.registers = number_before(line, " registers").unwrap_or(0);
            u.smem = number_before(line, " bytes smem").unwrap_or(0);
        }
    }
    out
}

/// The parser on a report of ptxas 13.0 (attention forced to spill with `-maxrregcount=24`): a
/// spill must not read as zero when no kernel spills today.
#[test]
fn ptxas_report_parses_spills() {
    let report = "\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'attention_f32' for 'sm_80'
ptxas info    : Function properties for attention_f32
    32 bytes stack frame, 52 bytes spill stores, 80 bytes spill loads
ptxas info    : Used 24 registers, used 1 barriers, 32 bytes cumulative stack size, 384 bytes cmem[0]
ptxas info    : Compile time = 29.963 ms
ptxas info    : Compiling entry function 'layer_norm_f32' for 'sm_90'
ptxas info    : Function properties for layer_norm_f32
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 19 registers, used 1 barriers, 1024 bytes smem
ptxas error   : Local memory used for function 'attention_f32', size of stack frame: 32 bytes
ptxas error   : Registers are spilled to local memory in function 'attention_f32', 52 bytes spill stores, 80 bytes spill loads
";
    let u = parse_report(report);
    let a = &u["attention_f32"];
    assert_eq!(
        (a.registers, a.smem, a.stack, a.spill_stores, a.spill_loads),
        (24, 0, 32, 52, 80)
    );
    let n = &u["layer_norm_f32"];
    assert_eq!(
        (n.registers, n.smem, n.stack, n.spill_stores, n.spill_loads),
        (19, 1024, 0, 0, 0)
    );
}

fn find_ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PTXAS") {
        let p = PathBuf::from(p);
        return p.exists().then_some(p);
    }
    let nvcc = PathBuf::from(std::env::var_os("NVCC")?);
    let p = nvcc.parent()?.join("ptxas");
    p.exists().then_some(p)
}

/// Registers one block holds: the hardware allocates per warp, in units of 256 (8 per thread).
fn block_registers(registers: u64, threads: u64) -> u64 {
    registers.div_ceil(8) * 8 * threads.div_ceil(32) * 32
}

#[test]
fn ptxas_fits_every_kernel() {
    let require = std::env::var("REQUIRE_PTXAS").is_ok_and(|v| v == "1");
    let Some(ptxas) = find_ptxas() else {
        assert!(
            !require,
            "REQUIRE_PTXAS=1, and no ptxas in $PTXAS nor next to $NVCC"
        );
        println!(
            "\n******** SKIPPED: no ptxas ($PTXAS, or next to $NVCC): \
             kernel registers, spills and shared memory NOT checked ********\n"
        );
        return;
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kernels-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut errors = Vec::new();
    let mut table = Vec::new();
    let units = units();
    // Which PTX ISA the runtime would load (nvcc 13.0: 9.0, NVRTC 12.4: 8.4).
    let isas: BTreeSet<&str> = units
        .iter()
        .filter_map(|u| u.ptx.lines().find(|l| l.starts_with(".version")))
        .collect();
    for u in &units {
        let at = format!("kernels/{}.cu ({}, sm_{})", u.stem, u.flavour, u.arch);
        let file = dir.join(format!("{}-{}-sm{}.ptx", u.flavour, u.stem, u.arch));
        std::fs::write(&file, &u.ptx).expect("writing the PTX");
        let out = Command::new(&ptxas)
            .arg(format!("-arch=sm_{}", u.arch))
            .args([
                "-v",
                "--warn-on-spills",
                "--warn-on-local-memory-usage",
                "--warning-as-error",
            ])
            .args(["-o", "/dev/null"])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas.display()));
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            errors.push(format!("{at}: ptxas failed ({}):\n{report}", out.status));
        }
        let usage = parse_report(&report);
        for (f, r) in &usage {
            if r.stack != 0 || r.spill_stores != 0 || r.spill_loads != 0 {
                errors.push(format!(
                    "{f} in {at}: {} bytes stack frame (local memory), {} bytes spill stores, \
                     {} bytes spill loads; all must be 0",
                    r.stack, r.spill_stores, r.spill_loads
                ));
            }
        }
        for sig in rows_of(u.stem) {
            let Some(r) = usage.get(sig.name) else {
                errors.push(format!(
                    "kernel {} in {at}: not in ptxas's report",
                    sig.name
                ));
                continue;
            };
            if r.smem > STATIC_SMEM_LIMIT {
                errors.push(format!(
                    "kernel {} in {at}: {} bytes of static shared memory, more than {STATIC_SMEM_LIMIT}",
                    sig.name, r.smem
                ));
            }
            let need = block_registers(r.registers, sig.max_threads as u64);
            if need > REGISTERS_PER_BLOCK {
                errors.push(format!(
                    "kernel {} in {at}: {} registers × {} threads = {need} allocated, \
                     more than {REGISTERS_PER_BLOCK}",
                    sig.name, r.registers, sig.max_threads
                ));
            }
            table.push((sig.name, u.flavour, u.arch, r.clone(), sig.max_threads));
        }
    }
    table.sort_by_key(|t| (t.0, t.2));
    println!(
        "\n{:<24} {:<8} {:<6} {:>5} {:>10} {:>12} {:>12} {:>11}",
        "kernel", "flavour", "arch", "regs", "smem (B)", "spill (B)", "stack (B)", "max threads"
    );
    for (name, flavour, arch, r, threads) in &table {
        println!(
            "{name:<24} {flavour:<8} sm_{arch:<3} {:>5} {:>10} {:>12} {:>12} {threads:>11}",
            r.registers,
            r.smem,
            format!("{}/{}", r.spill_stores, r.spill_loads),
            r.stack
        );
    }
    println!(
        "(spill: stores/loads; PTX {isas:?}; ptxas {})\n",
        ptxas.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        errors.is_empty(),
        "ptxas gate failed:\n  {}",
        errors.join("\n  ")
    );
}
