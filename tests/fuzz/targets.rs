//! The fuzz targets: each parser of outside bytes, its seeds (golden files) and its mutator.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::Result;
use sitdiv::io::{npy, npz};
use sitdiv::pipeline::evaluate::FeatureSet;
use sitdiv::pipeline::sweep::spec::Sweep;
use sitdiv::pipeline::sweep::units::{Plan, UnitState};
use sitdiv::weights::WeightFile;

use crate::{golden, mutate, repo, Target};

/// Every target, with seeds written under `scratch` where they need files beside them.
pub fn all(scratch: &Path) -> Vec<Target> {
    vec![
        Target {
            name: "safetensors",
            seeds: ["sit_tiny", "clip_tiny", "vae_tiny"]
                .iter()
                .map(|n| std::fs::read(golden(&format!("{n}.weights.safetensors"))).unwrap())
                .collect(),
            mutate: mutate::safetensors,
            run: safetensors,
            execs: 12_000,
            file: "w.safetensors",
        },
        Target {
            name: "npy",
            seeds: npy_seeds(),
            mutate: mutate::npy,
            run: npy_file,
            execs: 40_000,
            file: "a.npy",
        },
        Target {
            name: "npz",
            seeds: vec![
                std::fs::read(repo().join("sweeps/tiny-reference.npz")).unwrap(),
                features_npz(),
            ],
            mutate: mutate::npz,
            run: npz_file,
            execs: 25_000,
            file: "b.npz",
        },
        Target {
            name: "image",
            seeds: image_seeds(),
            mutate: mutate::bytes,
            run: image_file,
            execs: 3_000,
            file: "i.img",
        },
        Target {
            name: "sweep",
            seeds: vec![sweep_text().into_bytes()],
            mutate: mutate::toml,
            run: sweep_file,
            execs: 6_000,
            file: "s.toml",
        },
        Target {
            name: "manifest",
            seeds: vec![manifest_seed(scratch)],
            mutate: mutate::json,
            run: manifest,
            execs: 20_000,
            file: "m.json",
        },
    ]
}

/// Opens the file, reads every tensor, and checks it against its own names and shapes.
fn safetensors(path: &Path, _: &[u8]) -> Result<()> {
    let f = WeightFile::open(path)?;
    let mut expected = Vec::new();
    for name in f.names() {
        let info = f.info(name).unwrap();
        expected.push(sitdiv::weights::Expected::new(name, &info.shape));
        let _ = f.f32(name);
        let _ = f.i64(name);
    }
    let _ = f.config_usize("hidden_size");
    f.check(&expected, &[])
}

fn npy_seeds() -> Vec<Vec<u8>> {
    let g = WeightFile::open(golden("sit_tiny.io.safetensors")).unwrap();
    let name = g
        .names()
        .find(|n| g.info(n).unwrap().numel() > 16)
        .unwrap()
        .to_string();
    let info = g.info(&name).unwrap();
    let images: Vec<u8> = (0..2 * 8 * 8 * 3).map(|i| (i * 7) as u8).collect();
    vec![
        npy::encode_f32(&info.shape, &g.f32(&name).unwrap()).unwrap(),
        npy::encode_u8(&[2, 8, 8, 3], &images).unwrap(),
        npy::encode_i64(&[4], &[0, 1, 2, 999]).unwrap(),
        npy::encode_f64(&[3, 2], &[0.5, -1.0, 2.0, 1e300, 0.0, -0.0]).unwrap(),
    ]
}

/// Every reader of `.npy` bytes and files.
fn npy_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = npy::decode_u8(path, bytes);
    let _ = npy::decode_i64(path, bytes);
    let _ = npy::decode_f64(path, bytes);
    let _ = npy::read_i64(path);
    let _ = npy::read_header(path, &mut &bytes[..]);
    npy::read_f32(path).map(|_| ())
}

/// A features file: Inception-like pool rows and labels.
fn features_npz() -> Vec<u8> {
    let pool: Vec<f32> = (0..4 * 16).map(|i| (i as f32 * 0.37).sin()).collect();
    let members = [
        npz::Member {
            key: "pool".into(),
            npy: npy::encode_f32(&[4, 16], &pool).unwrap(),
        },
        npz::Member {
            key: "arr_1".into(),
            npy: npy::encode_i64(&[4], &[0, 0, 1, 1]).unwrap(),
        },
    ];
    npz::to_bytes(Path::new("features.npz"), &members).unwrap()
}

/// An ADM batch or features file, as every reader of npz files sees it.
fn npz_file(path: &Path, _: &[u8]) -> Result<()> {
    let _ = npz::keys(path);
    let _ = npz::read_only(path, &["arr_1", "pool"]);
    let _ = npz::image_count(path, "arr_0");
    let _ = npz::stream_images(path, "arr_0", 4, |_, _, _| Ok(()));
    let _ = FeatureSet::open(path).map(|f| f.has("pool"));
    npz::read(path).map(|_| ())
}

/// The small test sweep, its files under `@REPO@` (the checkout, substituted when run), so
/// that kept inputs work in any clone.
fn sweep_text() -> String {
    r#"name = "fuzz"
[model]
weights = "@REPO@/tests/golden/sit_tiny.weights.safetensors"
vae = "@REPO@/tests/golden/vae_tiny.weights.safetensors"
[evaluation]
inception = "formula"
reference = "@REPO@/sweeps/tiny-reference.npz"
metrics = ["fid", "is"]
bootstrap = 10
backbones = [{ backbone = "dinov2-b14", weights = "@REPO@/tests/golden/dinov2_tiny.weights.safetensors", metrics = ["diversity", "vendi"], per_class = 2 }]
[run]
unit_size = 2
[defaults]
steps = [4]
classes = [0, 1]
samples_per_class = [2]
[[grid]]
cfg = [1.0, 2.0]
sampler = ["ode-euler", "sde-euler"]
diffusion_form = ["sigma"]
"#
    .to_string()
}

/// `text` with `@REPO@` replaced by the checkout.
fn in_repo(text: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(text)
        .replace("@REPO@", &repo().display().to_string())
        .into_bytes()
}

/// A sweep file through its parser and the plan it expands to.
fn sweep_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, in_repo(bytes))?;
    let sweep = Sweep::load(path)?;
    let out = path.with_extension("out");
    Plan::new(sweep, &out).map(|_| ())
}

static PLAN: OnceLock<Plan> = OnceLock::new();

/// The first unit's manifest of the small sweep, whose data file exists.
fn manifest_seed(scratch: &Path) -> Vec<u8> {
    let p = scratch.join("plan.toml");
    std::fs::write(&p, in_repo(sweep_text().as_bytes())).unwrap();
    let plan =
        PLAN.get_or_init(|| Plan::new(Sweep::load(&p).unwrap(), &scratch.join("plan")).unwrap());
    let u = &plan.units[0];
    let data = plan.unit_file(u);
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, b"unit data").unwrap();
    serde_json::to_vec_pretty(&serde_json::json!({
        "tool": "sitdiv sweep run",
        "data_sha256": sitdiv::io::sha256_hex(b"unit data"),
        "unit": plan.identity(u),
        "contents": plan.required_keys(),
        "precision": "fp32",
        "eval_precision": "tf32",
    }))
    .unwrap()
}

/// A unit manifest, as `sweep status|run|merge` read it.
fn manifest(_: &Path, bytes: &[u8]) -> Result<()> {
    let plan = PLAN.get().expect("the manifest target's plan");
    let u = &plan.units[0];
    let m: PathBuf = sitdiv::io::manifest_path(&plan.unit_file(u));
    std::fs::write(&m, bytes)?;
    let _ = plan.eval_precision();
    match plan.state(u) {
        UnitState::Done => Ok(()),
        other => anyhow::bail!("{other:?}"),
    }
}

/// The golden's JPEG files (Pillow's encoder) and a PNG.
fn image_seeds() -> Vec<Vec<u8>> {
    let io = WeightFile::open(golden("adm_crop.io.safetensors")).unwrap();
    let mut seeds: Vec<Vec<u8>> = ["q90_420", "q95_444", "q75_420_odd"]
        .iter()
        .map(|c| {
            let b = io.i64(&format!("jpeg_{c}.bytes")).unwrap();
            b.into_iter().map(|v| v as u8).collect()
        })
        .collect();
    let px: Vec<u8> = (0..24 * 20 * 3).map(|i| (i * 7 % 256) as u8).collect();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &px,
        24,
        20,
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    seeds.push(png);
    seeds
}

/// An image file as `valloss` reads it.
fn image_file(path: &Path, _: &[u8]) -> Result<()> {
    sitdiv::io::image::read_rgb(path).map(|_| ())
}
