//! `sitdiv demo` (the toy study) is deterministic, and pixel-space models work without a VAE.

use crate::common;

use std::path::Path;

/// A path in the repository, as a command-line argument.
fn repo(p: &str) -> String {
    common::repo().join(p).display().to_string()
}

/// Every file under `dir` but manifests (hosts and times), by relative path, with the folder's
/// own path masked in the report's text.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with(".manifest.json")
                && !p.ends_with("completed.log")
            {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                let mut bytes = std::fs::read(&p).unwrap();
                // The report names the run folder it was made from.
                if rel.ends_with(".md") || rel.ends_with(".html") {
                    let text = String::from_utf8(bytes).unwrap();
                    bytes = text.replace(&dir.display().to_string(), "RUN").into_bytes();
                }
                out.push((rel, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn demo_twice_gives_the_same_bytes() {
    let t = common::tmp("toy-demo");
    let sweep = repo("tests/sweeps/toy_small.toml");
    // The report labels runs by folder name: the same name in two places.
    let (a, b) = (t.join("1/toy"), t.join("2/toy"));
    for out in [&a, &b] {
        let stdout = common::succeeds(&["demo", "--sweep", &sweep, "--out", out.to_str().unwrap()]);
        assert!(stdout.contains("index.html"), "{stdout}");
    }
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(
        ta.iter().map(|f| &f.0).collect::<Vec<_>>(),
        tb.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        assert!(x == y, "{name} differs between two demo runs");
    }
    let csv = String::from_utf8(std::fs::read(a.join("results.csv")).unwrap()).unwrap();
    for metric in [
        ",fid,",
        ",accuracy,",
        ",precision,",
        ",inception_score,",
        "toy,diversity,intra",
    ] {
        assert!(csv.contains(metric), "results.csv lacks {metric}");
    }
    assert!(a.join("report/index.html").exists());
    // The guidance methods' grid gives their fronts.
    assert!(csv.contains(",apg,") && csv.contains(",cads,") && csv.contains(",autoguidance,"));
    assert!(a.join("report/plots/methods.png").exists());
    println!("{} files identical across two runs", ta.len());
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn pixel_space_model_samples_images_without_a_vae() {
    let t = common::tmp("toy-pixels");
    let weights = repo("assets/toy/toy_sit.safetensors");
    let out = t.join("images");
    common::succeeds(&[
        "sample",
        "--weights",
        &weights,
        "--classes",
        "2,5",
        "--samples-per-class",
        "2",
        "--steps",
        "4",
        "--cfg",
        "2.0",
        "--out",
        out.to_str().unwrap(),
    ]);
    let npz = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "npz"))
        .expect("an image batch");
    let members = sitdiv::io::npz::read(&npz).unwrap();
    let arr = members.iter().find(|m| m.key == "arr_0").expect("arr_0");
    let images = sitdiv::io::npy::decode_u8(&npz, &arr.npy).unwrap();
    assert_eq!(images.shape, [4, 32, 32, 3]);
    let distinct: std::collections::BTreeSet<u8> = images.data.iter().copied().collect();
    assert!(
        distinct.len() > 32,
        "images are not flat: {} distinct values",
        distinct.len()
    );

    // A latent model still needs its VAE.
    let tiny = common::golden_dir().join("sit_tiny.weights.safetensors");
    let bad = t.join("bad");
    common::fails(
        &[
            "sample",
            "--weights",
            tiny.to_str().unwrap(),
            "--steps",
            "2",
            "--out",
            bad.to_str().unwrap(),
        ],
        "give the VAE that decodes them",
        &bad,
    );
    let _ = std::fs::remove_dir_all(&t);
}

#[test]
fn bad_toy_sweeps_are_refused_naming_the_setting() {
    let t = common::tmp("toy-bad");
    let good = std::fs::read_to_string(repo("sweeps/toy.toml"))
        .unwrap()
        .replace("\"../assets/", &format!("\"{}/", repo("assets")));
    for (from, to, needle) in [
        (
            "reference = { toy_data_seed = 1, per_class = 100 }",
            "reference = { seed = 1 }",
            "[evaluation] reference: expected \"REF.npz\" or { toy_data_seed = 1, per_class = 100 } (unknown field `seed`",
        ),
        (
            "metrics = [\"fid\", ",
            "metrics = [\"sfid\", \"fid\", ",
            "sfid needs the Inception's spatial features; the toy classifier has none",
        ),
        (
            "classifier = ",
            "inception = \"formula\"\nclassifier = ",
            "sets both inception and classifier",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        let file = t.join("bad.toml");
        std::fs::write(&file, good.replace(from, to)).unwrap();
        let out = t.join("out");
        common::fails(
            &["sweep", "plan", file.to_str().unwrap(), "--out", out.to_str().unwrap()],
            needle,
            &out,
        );
    }
    let _ = std::fs::remove_dir_all(&t);
}
