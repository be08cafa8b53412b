//! Latents to images: `sitdiv decode` and `sitdiv sample --vae --out`, the ADM-style .npz they
//! write, shard invariance through decoding, and bad input.

use std::path::{Path, PathBuf};

use crate::common::{golden_dir, open, sitdiv, tmp};
use sitdiv::io::{npy, npz};
use sitdiv::rng;

fn g(name: &str) -> String {
    golden_dir().join(name).display().to_string()
}

struct Batch {
    images: npy::Array<u8>,
    labels: Vec<i64>,
    indices: Vec<i64>,
}

fn read_batch(p: &Path) -> Batch {
    let m = npz::read(p).unwrap();
    let get = |k: &str| {
        &m.iter()
            .find(|x| x.key == k)
            .unwrap_or_else(|| panic!("{k} missing"))
            .npy
    };
    Batch {
        images: npy::decode_u8(p, get("arr_0")).unwrap(),
        labels: npy::decode_i64(p, get("arr_1")).unwrap().data,
        indices: npy::decode_i64(p, get("indices")).unwrap().data,
    }
}

/// The single .npz in `dir`.
fn npz_in(dir: &Path) -> PathBuf {
    let v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "npz"))
        .collect();
    assert_eq!(v.len(), 1, "{v:?}");
    v[0].clone()
}

#[test]
fn decode_reproduces_the_reference_uint8_images() {
    let dir = tmp("decode");
    let io = open("vae_tiny.io.safetensors");
    let z = dir.join("z.npy");
    npy::write_f32(&z, &[2, 4, 8, 8], &io.f32("z").unwrap()).unwrap();
    let out = dir.join("batch.npz");
    let r = sitdiv(&[
        "decode",
        "--vae",
        &g("vae_tiny.weights.safetensors"),
        "--latents",
        z.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch",
        "1",
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let m = npz::read(&out).unwrap();
    assert_eq!(m.len(), 1);
    let a = npy::decode_u8(&out, &m[0].npy).unwrap();
    assert_eq!(
        (m[0].key.as_str(), a.shape.as_slice()),
        ("arr_0", &[2usize, 16, 16, 3][..])
    );
    let want = io.i64("image_uint8_nhwc").unwrap();
    let off = a
        .data
        .iter()
        .zip(&want)
        .filter(|(&x, &y)| x as i64 != y)
        .count();
    assert!(
        a.data
            .iter()
            .zip(&want)
            .all(|(&x, &y)| (x as i64 - y).abs() <= 1)
            && off * 500 <= want.len(),
        "{off} values differ"
    );
}

fn sample_images(dir: &Path, extra: &[&str]) -> Batch {
    let w = g("sit_tiny.weights.safetensors");
    let v = g("vae_tiny.weights.safetensors");
    let o = dir.display().to_string();
    let mut a = vec![
        "sample",
        "--weights",
        &w,
        "--vae",
        &v,
        "--out",
        &o,
        "--num-samples",
        "4",
        "--unit-size",
        "2",
        "--steps",
        "4",
        "--seed",
        "3",
        "--cfg",
        "2.0",
    ];
    a.extend(extra);
    let r = sitdiv(&a);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    read_batch(&npz_in(dir))
}

#[test]
fn sample_writes_an_adm_batch_with_labels_and_indices() {
    let dir = tmp("batch");
    let grid = dir.join("grid.png");
    let b = sample_images(&dir, &["--png-grid", grid.to_str().unwrap()]);
    assert_eq!(b.images.shape, [4, 16, 16, 3]);
    assert_eq!(b.indices, [0, 1, 2, 3]);
    let want: Vec<i64> = (0..4).map(|i| rng::label(3, i, 10)).collect();
    assert_eq!(b.labels, want);
    let name = npz_in(&dir)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        name,
        "SiT-XL-2-sit_tiny.weights-cfg-2.0-2-ODE-4-euler-seed3.npz"
    );
    assert!(dir.join(format!("{name}.manifest.json")).exists());
    assert!(std::fs::read(&grid).unwrap().starts_with(b"\x89PNG"));
    // Identical runs give identical bytes.
    let again = tmp("batch-again");
    sample_images(&again, &[]);
    assert_eq!(
        std::fs::read(npz_in(&dir)).unwrap(),
        std::fs::read(npz_in(&again)).unwrap()
    );
}

#[test]
fn shards_merged_equal_one_run_through_decoding() {
    let one = sample_images(&tmp("one"), &[]);
    let s0 = sample_images(&tmp("s0"), &["--shard-index", "0", "--num-shards", "2"]);
    let s1 = sample_images(&tmp("s1"), &["--shard-index", "1", "--num-shards", "2"]);
    let mut images = s0.images.data.clone();
    images.extend(&s1.images.data);
    assert_eq!(images, one.images.data, "images");
    assert_eq!([s0.labels, s1.labels].concat(), one.labels);
    assert_eq!([s0.indices, s1.indices].concat(), one.indices);
}

fn fails(name: &str, args: &[&str], needle: &str, dir: &Path) {
    let r = sitdiv(args);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success(), "{name}: expected failure");
    assert!(err.contains(needle), "{name}: {needle:?} not in {err}");
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "z.npy")
        .collect();
    assert!(left.is_empty(), "{name}: left {left:?}");
    println!("{name}: {}", err.trim());
}

#[test]
fn bad_vae_inputs_fail_without_output() {
    let dir = tmp("bad");
    let d = dir.display().to_string();
    let out = dir.join("b.npz").display().to_string();
    let z = dir.join("z.npy");
    npy::write_f32(&z, &[1, 3, 8, 8], &[0.0; 192]).unwrap();
    let zs = z.display().to_string();
    let sit = g("sit_tiny.weights.safetensors");
    let vae = g("vae_tiny.weights.safetensors");
    fails(
        "SiT file as VAE",
        &["decode", "--vae", &sit, "--latents", &zs, "--out", &out],
        "has no SD-VAE decoder",
        &dir,
    );
    fails(
        "latent channels",
        &["decode", "--vae", &vae, "--latents", &zs, "--out", &out],
        "expected (N, 4, h, w)",
        &dir,
    );
    fails(
        "SiT file as VAE in sample",
        &[
            "sample",
            "--weights",
            &sit,
            "--vae",
            &sit,
            "--out",
            &d,
            "--num-samples",
            "1",
            "--steps",
            "2",
        ],
        "has no SD-VAE decoder",
        &dir,
    );
    // An output folder that cannot be created: a path below a regular file.
    let blocked = format!("{zs}/sub");
    let r = sitdiv(&[
        "sample",
        "--weights",
        &sit,
        "--vae",
        &vae,
        "--out",
        &blocked,
        "--num-samples",
        "1",
        "--steps",
        "2",
    ]);
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("cannot create folder"), "{err}");
    assert!(!z.with_extension("").exists());
}

#[test]
fn class_selection_is_class_major_and_shard_invariant() {
    let w = g("sit_tiny.weights.safetensors");
    let v = g("vae_tiny.weights.safetensors");
    let run = |dir: &Path, shard: &[&str]| {
        let o = dir.display().to_string();
        let mut a = vec![
            "sample",
            "--weights",
            &w,
            "--vae",
            &v,
            "--out",
            &o,
            "--classes",
            "2,5-6",
            "--samples-per-class",
            "2",
            "--unit-size",
            "2",
            "--steps",
            "2",
        ];
        a.extend(shard);
        let r = sitdiv(&a);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        read_batch(&npz_in(dir))
    };
    let all = run(&tmp("classes"), &[]);
    assert_eq!(all.labels, [2, 2, 5, 5, 6, 6]);
    let parts: Vec<Batch> = (0..3)
        .map(|i| {
            run(
                &tmp(&format!("classes-{i}")),
                &["--shard-index", &i.to_string(), "--num-shards", "3"],
            )
        })
        .collect();
    assert_eq!(
        parts
            .iter()
            .flat_map(|b| b.labels.clone())
            .collect::<Vec<_>>(),
        all.labels
    );
    assert_eq!(
        parts
            .iter()
            .flat_map(|b| b.images.data.clone())
            .collect::<Vec<_>>(),
        all.images.data
    );
    let dir = tmp("classes-bad");
    let o = dir.display().to_string();
    fails(
        "class out of range",
        &[
            "sample",
            "--weights",
            &w,
            "--vae",
            &v,
            "--out",
            &o,
            "--classes",
            "0-20",
            "--samples-per-class",
            "1",
        ],
        "class 10 is outside 0..10",
        &dir,
    );
}

/// A copy of the tiny VAE with its metadata config replaced.
fn vae_with_config(dir: &Path, config: &str) -> String {
    let f = open("vae_tiny.weights.safetensors");
    let t: Vec<(String, Vec<usize>, Vec<f32>)> = f
        .names()
        .map(|n| {
            (
                n.to_string(),
                f.info(n).unwrap().shape.clone(),
                f.f32(n).unwrap(),
            )
        })
        .collect();
    let p = dir.join("vae.safetensors");
    sitdiv::weights::write_f32_safetensors(
        &p,
        &t,
        Some([("config".to_string(), config.to_string())].into()),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn inconsistent_vae_inputs_fail_before_any_output() {
    let dir = tmp("mismatch");
    let w = g("sit_tiny.weights.safetensors");
    // A VAE for 8-channel latents with a 4-channel model: refused before sampling.
    let cfg8 = sitdiv::models::vae::VaeConfig {
        latent_channels: 8,
        block_out_channels: vec![32, 64],
        layers_per_block: 1,
        ..sitdiv::models::vae::VaeConfig::sd()
    };
    let p8 = dir.join("vae8.safetensors");
    let meta = [("config".to_string(), serde_json::to_string(&cfg8).unwrap())].into();
    sitdiv::weights::write_f32_safetensors(
        &p8,
        &sitdiv::models::synthetic::vae(&cfg8, 0),
        Some(meta),
    )
    .unwrap();
    let out = dir.join("out");
    let r = sitdiv(&[
        "sample",
        "--weights",
        &w,
        "--vae",
        p8.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--num-samples",
        "1",
        "--steps",
        "2",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("decodes 8 latent channels, but the model samples 4"),
        "{err}"
    );
    assert!(!out.exists(), "output folder created despite the error");
    // A config that leaves decoder tensors unused.
    let cfgdir = tmp("mismatch-cfg");
    let bad = vae_with_config(
        &cfgdir,
        r#"{"block_out_channels": [32, 64], "layers_per_block": 1, "mid_block_add_attention": false}"#,
    );
    let z = cfgdir.join("z.npy");
    npy::write_f32(&z, &[1, 4, 8, 8], &[0.0; 256]).unwrap();
    let o = cfgdir.join("b.npz");
    let r = sitdiv(&[
        "decode",
        "--vae",
        &bad,
        "--latents",
        z.to_str().unwrap(),
        "--out",
        o.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("does not use"), "{err}");
    // An output path that is a folder: no manifest is left behind.
    let folder = cfgdir.join("taken.npz");
    std::fs::create_dir_all(&folder).unwrap();
    let r = sitdiv(&[
        "decode",
        "--vae",
        &g("vae_tiny.weights.safetensors"),
        "--latents",
        z.to_str().unwrap(),
        "--out",
        folder.to_str().unwrap(),
    ]);
    assert!(!r.status.success());
    assert!(
        !cfgdir.join("taken.npz.manifest.json").exists(),
        "manifest left behind"
    );
}

#[test]
fn compressed_npz_members_are_read() {
    use std::io::Write;
    let dir = tmp("deflate");
    let p = dir.join("c.npz");
    let mut zw = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zw.start_file("pool.npy", opts).unwrap();
    zw.write_all(&npy::encode_f32(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap())
        .unwrap();
    zw.finish().unwrap();
    let m = npz::read(&p).unwrap();
    assert_eq!(
        npy::decode_f32(&p, &m[0].npy).unwrap().data,
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    );
}
