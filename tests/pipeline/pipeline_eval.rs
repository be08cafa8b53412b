//! `sitdiv features` and `sitdiv eval` end to end on formula Inception weights: features equal the
//! pytorch-fid golden, do not depend on the batch size, and `eval` equals `features` + `metrics`;
//! run folders and bad input.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::common::{fails, open, succeeds, tmp, uniform_images, Report};
use sitdiv::io::{npy, npz};
use sitdiv::models::synthetic;
use sitdiv::weights::write_f32_safetensors;

/// The formula Inception weights as a file (92 MB), written once under Cargo's test scratch
/// folder and reused by later runs.
fn weights() -> &'static str {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("inception_formula_2015.safetensors");
        if !p.exists() {
            let t: Vec<_> = synthetic::inception(2015)
                .unwrap()
                .tensors
                .into_iter()
                .map(|(k, (shape, data))| (k, shape, data))
                .collect();
            // Written under a private name, then renamed: concurrent test binaries never read a
            // partial file.
            let part = p.with_extension(format!("part{}", std::process::id()));
            write_f32_safetensors(&part, &t, None).unwrap();
            std::fs::rename(&part, &p).unwrap();
        }
        p
    })
    .to_str()
    .unwrap()
}

/// An ADM-style batch: `arr_0` images, plus `indices` when given.
fn batch(path: &Path, imgs: &[u8], n: usize, side: usize, indices: Option<Vec<i64>>) -> String {
    let mut m = vec![npz::Member {
        key: "arr_0".into(),
        npy: npy::encode_u8(&[n, side, side, 3], imgs).unwrap(),
    }];
    if let Some(i) = indices {
        m.push(npz::Member {
            key: "indices".into(),
            npy: npy::encode_i64(&[n], &i).unwrap(),
        });
    }
    npz::write(path, &m).unwrap();
    path.display().to_string()
}

fn read_features(path: &str) -> Vec<(String, Vec<f32>)> {
    npz::read(Path::new(path))
        .unwrap()
        .into_iter()
        .map(|m| {
            let a = npy::decode_f32(Path::new(path), &m.npy).unwrap();
            (m.key, a.data)
        })
        .collect()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn features_command_matches_the_golden_at_any_batch_size() {
    let dir = tmp("features");
    let imgs = batch(
        &dir.join("b.npz"),
        &uniform_images(256, 2, 256),
        2,
        256,
        None,
    );
    let (f1, f2) = (dir.join("f1.npz"), dir.join("f2.npz"));
    for (out, b) in [(&f1, "1"), (&f2, "2")] {
        let out = out.to_str().unwrap();
        succeeds(&[
            "features",
            "--backbone",
            "inception",
            "--weights",
            weights(),
            "--images",
            &imgs,
            "--out",
            out,
            "--batch",
            b,
        ]);
    }
    let (a, b) = (
        read_features(f1.to_str().unwrap()),
        read_features(f2.to_str().unwrap()),
    );
    assert_eq!(a, b, "features depend on --batch");
    let io = open("inception_fid.io.safetensors");
    let mut r = Report::new("sitdiv features vs pytorch-fid");
    for (key, data) in &a {
        r.check(key, data, &io.f32(&format!("b2_256.{key}")).unwrap(), 1e-4);
    }
    r.finish();
    assert!(sitdiv::io::manifest_path(&f1).exists());
}

#[test]
fn eval_equals_features_then_metrics_and_reads_run_folders() {
    let dir = tmp("eval");
    let side = 16;
    let s = uniform_images(1, 4, side);
    let samples = batch(&dir.join("samples.npz"), &s, 4, side, None);
    let reference = batch(
        &dir.join("ref.npz"),
        &uniform_images(2, 4, side),
        4,
        side,
        None,
    );
    let settings = [
        "--metrics",
        "fid,sfid,is,pr,dc,kid",
        "--pr-k",
        "2",
        "--dc-k",
        "2",
        "--is-split-size",
        "2",
        "--kid-subsets",
        "3",
        "--kid-subset-size",
        "3",
    ];
    let eval = |samples: &str, out: &Path, settings: &[&str], extra: &[&str]| {
        let o = out.to_str().unwrap();
        let mut args = vec![
            "eval",
            "--samples",
            samples,
            "--ref",
            &reference,
            "--inception",
            weights(),
            "--json",
            o,
        ];
        args.extend_from_slice(settings);
        args.extend_from_slice(extra);
        succeeds(&args);
        json(out)
    };
    let fo = dir.join("samples_features.npz");
    let e = eval(
        &samples,
        &dir.join("eval.json"),
        &settings,
        &["--features-out", fo.to_str().unwrap()],
    );
    // The same through features + metrics.
    let rf = dir.join("ref_features.npz");
    succeeds(&[
        "features",
        "--weights",
        weights(),
        "--images",
        &reference,
        "--out",
        rf.to_str().unwrap(),
    ]);
    let mj = dir.join("metrics.json");
    let mut args = vec![
        "metrics",
        "--features",
        fo.to_str().unwrap(),
        "--ref-features",
        rf.to_str().unwrap(),
        "--json",
        mj.to_str().unwrap(),
    ];
    // FID and sFID take seconds each at d = 2048 in a debug build; the others show that eval
    // and metrics see the same features.
    let cheap = [&settings[2..], &["--metrics", "is,pr,dc,kid"]].concat();
    args.extend_from_slice(&cheap);
    succeeds(&args);
    let m = json(&mj);
    for key in ["fid", "sfid"] {
        assert!(
            e[key].as_f64().is_some_and(|v| v > 0.0),
            "eval lacks {key}: {e}"
        );
    }
    for key in [
        "inception_score",
        "precision",
        "recall",
        "density",
        "coverage",
        "kid_mean",
        "kid_std",
    ] {
        assert_eq!(
            e[key], m[key],
            "{key}: eval {} vs metrics {}",
            e[key], m[key]
        );
    }
    println!(
        "eval: fid {} sfid {} is {} p {} r {}",
        e["fid"], e["sfid"], e["inception_score"], e["precision"], e["recall"]
    );
    // A features file works as --ref too: no reference images needed.
    let ef = dir.join("eval_ref_features.json");
    succeeds(&[
        "eval",
        "--samples",
        &samples,
        "--ref",
        rf.to_str().unwrap(),
        "--inception",
        weights(),
        "--metrics",
        "pr",
        "--pr-k",
        "2",
        "--json",
        ef.to_str().unwrap(),
    ]);
    let g = json(&ef);
    assert_eq!(
        (&g["precision"], &g["recall"]),
        (&e["precision"], &e["recall"])
    );
    // A run folder of two shards (written out of order) gives the same numbers, in order.
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    let half = 2 * side * side * 3;
    batch(
        &run.join("SiT-x-seed0-shard1of2.npz"),
        &s[half..],
        2,
        side,
        Some(vec![2, 3]),
    );
    batch(
        &run.join("SiT-x-seed0-shard0of2.npz"),
        &s[..half],
        2,
        side,
        Some(vec![0, 1]),
    );
    std::fs::write(run.join("notes.txt"), "not a batch").unwrap();
    // (FID and sFID cost seconds each at these widths and do not depend on the order.)
    let order_sensitive = ["--metrics", "is,pr", "--pr-k", "2", "--is-split-size", "2"];
    let f = eval(
        run.to_str().unwrap(),
        &dir.join("eval_run.json"),
        &order_sensitive,
        &[],
    );
    for key in ["inception_score", "precision", "recall"] {
        assert_eq!(
            e[key], f[key],
            "{key}: file {} vs folder {}",
            e[key], f[key]
        );
    }
}

#[test]
fn bad_eval_inputs_fail_clearly() {
    let dir = tmp("eval-bad");
    let side = 8;
    let samples = batch(
        &dir.join("s.npz"),
        &uniform_images(1, 1, side),
        1,
        side,
        None,
    );
    let out = dir.join("e.json");
    let o = out.to_str().unwrap();
    // A reference with statistics only cannot give precision/recall.
    let stats_only = dir.join("stats.npz");
    npz::write(
        &stats_only,
        &[
            npz::Member {
                key: "mu".into(),
                npy: npy::encode_f32(&[2048], &[0.0; 2048]).unwrap(),
            },
            npz::Member {
                key: "sigma".into(),
                npy: npy::encode_f32(&[1, 1], &[1.0]).unwrap(),
            },
        ],
    )
    .unwrap();
    let sref = stats_only.to_str().unwrap();
    fails(
        &[
            "eval",
            "--samples",
            &samples,
            "--ref",
            sref,
            "--inception",
            weights(),
            "--metrics",
            "pr",
            "--json",
            o,
        ],
        "need reference images (`arr_0`)",
        &out,
    );
    // RGBA images.
    let rgba = dir.join("rgba.npz");
    npz::write(
        &rgba,
        &[npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_u8(&[1, 2, 2, 4], &[0; 16]).unwrap(),
        }],
    )
    .unwrap();
    let f = dir.join("f.npz");
    fails(
        &[
            "features",
            "--weights",
            weights(),
            "--images",
            rgba.to_str().unwrap(),
            "--out",
            f.to_str().unwrap(),
        ],
        "RGB images, got 4 channels",
        &f,
    );
    // Float "images".
    let floats = dir.join("floats.npz");
    npz::write(
        &floats,
        &[npz::Member {
            key: "arr_0".into(),
            npy: npy::encode_f32(&[1, 1, 1, 3], &[0.0; 3]).unwrap(),
        }],
    )
    .unwrap();
    fails(
        &[
            "features",
            "--weights",
            weights(),
            "--images",
            floats.to_str().unwrap(),
            "--out",
            f.to_str().unwrap(),
        ],
        "expected uint8 images",
        &f,
    );
    // The backbones' arithmetic is --eval-precision; the CPU runs fp32 only.
    for (flags, msg) in [
        (
            ["--precision", "tf32"],
            "this command runs metric backbones only: use --eval-precision",
        ),
        (
            ["--eval-precision", "bf16"],
            "--eval-precision Bf16 needs a GPU (--device cuda)",
        ),
    ] {
        let mut args = vec![
            "features",
            "--weights",
            weights(),
            "--images",
            &samples,
            "--out",
            f.to_str().unwrap(),
        ];
        args.extend(flags);
        fails(&args, msg, &f);
    }
    // Not the Inception weights.
    let sit = common::golden_dir().join("sit_tiny.weights.safetensors");
    fails(
        &[
            "features",
            "--weights",
            sit.to_str().unwrap(),
            "--images",
            &samples,
            "--out",
            f.to_str().unwrap(),
        ],
        "missing tensor Conv2d_1a_3x3.conv.weight",
        &f,
    );
    // A folder holding two runs.
    let mixed = dir.join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    batch(
        &mixed.join("runA-seed0.npz"),
        &uniform_images(1, 1, side),
        1,
        side,
        None,
    );
    batch(
        &mixed.join("runB-seed0.npz"),
        &uniform_images(1, 1, side),
        1,
        side,
        None,
    );
    fails(
        &[
            "features",
            "--weights",
            weights(),
            "--images",
            mixed.to_str().unwrap(),
            "--out",
            f.to_str().unwrap(),
        ],
        "more than one run",
        &f,
    );
    // Overlapping shards of one run.
    let dup = dir.join("dup");
    std::fs::create_dir_all(&dup).unwrap();
    batch(
        &dup.join("run-shard0of2.npz"),
        &uniform_images(1, 1, side),
        1,
        side,
        Some(vec![0]),
    );
    batch(
        &dup.join("run-shard0of4.npz"),
        &uniform_images(1, 1, side),
        1,
        side,
        Some(vec![0]),
    );
    fails(
        &[
            "features",
            "--weights",
            weights(),
            "--images",
            dup.to_str().unwrap(),
            "--out",
            f.to_str().unwrap(),
        ],
        "appears in more than one batch",
        &f,
    );
}

/// `src` rewritten as its package's state_dict holds it: every tensor, plus `extra(name)`'s
/// second names of equal tensors, plus an int64 `num_batches_tracked` counter beside each
/// BatchNorm (`counters`).
fn package_form(src: &Path, dst: &Path, alias: impl Fn(&str) -> Option<String>, counters: bool) {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let f = sitdiv::weights::WeightFile::open(src).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in f.names() {
        let shape = f.shape(name).unwrap();
        let bytes: Vec<u8> = bytemuck::cast_slice(&f.f32(name).unwrap()).to_vec();
        if let Some(second) = alias(name) {
            owned.push((second, Dtype::F32, shape.clone(), bytes.clone()));
        }
        if counters {
            if let Some(bn) = name.strip_suffix(".running_var") {
                let n = format!("{bn}.num_batches_tracked");
                owned.push((n, Dtype::I64, vec![], 123_i64.to_le_bytes().to_vec()));
            }
        }
        owned.push((name.to_string(), Dtype::F32, shape, bytes));
    }
    let views: Vec<_> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(dst, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// The FID Inception and LPIPS as their packages' state_dicts name them (pytorch-fid's BatchNorm
/// counters; the lpips package's `lins.N` second names of its heads) load without conversion,
/// and give the converted file's features to the bit.
#[test]
fn package_named_weights_load_as_the_converted_files() {
    let dir = tmp("package-named");
    let imgs = batch(&dir.join("b.npz"), &uniform_images(64, 2, 64), 2, 64, None);
    let lpips = common::lpips_alex_weights(&dir);
    let cases = [
        (
            "inception",
            PathBuf::from(weights()),
            "inception-package.safetensors",
        ),
        ("lpips-alex", lpips, "lpips-package.safetensors"),
    ];
    for (backbone, converted, package) in cases {
        let package = dir.join(package);
        let lins = |n: &str| {
            let i = n
                .strip_prefix("lin")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()?;
            Some(format!("lins.{i}.{}", n.split_once('.')?.1))
        };
        package_form(&converted, &package, lins, backbone == "inception");
        let features = |w: &Path, out: &str| {
            let out = dir.join(out);
            let o = common::sitdiv(&[
                "features",
                "--backbone",
                backbone,
                "--weights",
                w.to_str().unwrap(),
                "--images",
                &imgs,
                "--out",
                out.to_str().unwrap(),
            ]);
            let log = String::from_utf8_lossy(&o.stderr).to_string();
            assert!(o.status.success(), "{backbone} {}: {log}", w.display());
            let members: Vec<(String, Vec<u8>)> = npz::read(&out)
                .unwrap()
                .into_iter()
                .map(|m| (m.key, m.npy))
                .collect();
            (members, log)
        };
        let (want, _) = features(&converted, &format!("{backbone}-converted.npz"));
        let (got, log) = features(&package, &format!("{backbone}-package.npz"));
        assert!(!want.is_empty());
        assert_eq!(
            got, want,
            "{backbone}: the package-named file gives other features"
        );
        println!(
            "{backbone}: {} feature arrays equal to the byte {}",
            want.len(),
            log.trim()
        );
    }
    // A second name whose bytes differ is no alias: refused, named.
    let lpips = dir.join("lpips-alex.safetensors");
    let bad = dir.join("lpips-bad.safetensors");
    let f = sitdiv::weights::WeightFile::open(&lpips).unwrap();
    let mut t: Vec<_> = f
        .names()
        .map(|n| (n.to_string(), f.shape(n).unwrap(), f.f32(n).unwrap()))
        .collect();
    let mut other = t
        .iter()
        .find(|(n, ..)| n == "lin0.model.1.weight")
        .unwrap()
        .clone();
    other.0 = "lins.0.model.1.weight".into();
    other.2[0] += 1.0;
    t.push(other);
    write_f32_safetensors(&bad, &t, None).unwrap();
    let out = dir.join("bad.npz");
    fails(
        &[
            "features",
            "--backbone",
            "lpips-alex",
            "--weights",
            bad.to_str().unwrap(),
            "--images",
            &imgs,
            "--out",
            out.to_str().unwrap(),
        ],
        "unexpected tensor lins.0.model.1.weight",
        &out,
    );
}
