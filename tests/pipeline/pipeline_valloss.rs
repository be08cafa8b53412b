//! `sitdiv valloss` end to end on the tiny SiT and the formula VAE encoder (16 px images): the
//! outputs, reruns byte-identical, another batch moving only the last bits, nested subsets, labels matched by name, and
//! refusals that name the image and write nothing.

use std::path::{Path, PathBuf};

use crate::common::{fails, golden, succeeds, tmp};
use sitdiv::io::{npy, npz};

/// The formula encoder of tests/golden/vae_encoder.io.safetensors as a file, its config in the
/// metadata (block_out_channels [32, 64]: 16 px images to the tiny SiT's 8 px latents).
fn encoder_file(dir: &Path) -> PathBuf {
    let (w, cfg) = crate::common::vae_encoder_weights();
    let config = serde_json::to_string(&cfg).unwrap();
    let t: Vec<_> = w.tensors.into_iter().map(|(k, (s, d))| (k, s, d)).collect();
    let p = dir.join("vae-encoder.safetensors");
    let meta = std::collections::HashMap::from([("config".to_string(), config)]);
    sitdiv::weights::write_f32_safetensors(&p, &t, Some(meta)).unwrap();
    p
}

/// `n` formula images of 20 × 24 (the crop takes 16 × 16 after a bicubic resize) with labels.
fn images(dir: &Path, n: usize) -> PathBuf {
    let (h, w) = (20, 24);
    let px: Vec<u8> = (0..n * h * w * 3).map(|i| ((i * 37) % 251) as u8).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 10).collect();
    let p = dir.join("held-out.npz");
    npz::write(
        &p,
        &[
            npz::Member {
                key: "arr_0".into(),
                npy: npy::encode_u8(&[n, h, w, 3], &px).unwrap(),
            },
            npz::Member {
                key: "arr_1".into(),
                npy: npy::encode_i64(&[n], &labels).unwrap(),
            },
        ],
    )
    .unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `sitdiv valloss` with the SiT `sit`, the encoder `vae` and 16 px crops, then `rest`.
fn valloss<'a>(sit: &'a str, vae: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "valloss",
        "--weights",
        sit,
        "--vae",
        s(vae),
        "--image-size",
        "16",
    ];
    a.extend_from_slice(rest);
    a
}

/// The `loss` array of `<dir>/losses.npz`.
fn losses(dir: &Path) -> npy::Array<f64> {
    let m = npz::read(&dir.join("losses.npz")).unwrap();
    npy::decode_f64(dir, &m.iter().find(|m| m.key == "loss").unwrap().npy).unwrap()
}

#[test]
fn valloss_reruns_to_the_byte_and_batches_move_only_last_bits() {
    let dir = tmp("valloss");
    let (vae, imgs) = (encoder_file(&dir), images(&dir, 12));
    let sit = golden("sit_tiny.weights.safetensors");
    let run = |out: &Path, batch: &str| {
        succeeds(&valloss(
            &sit,
            &vae,
            &[
                "--images",
                s(&imgs),
                "--n",
                "4,8,12",
                "--segments",
                "4",
                "--seed",
                "3",
                "--batch",
                batch,
                "--bootstrap",
                "200",
                "--out",
                s(out),
            ],
        ))
    };
    let (a, again, b) = (dir.join("a"), dir.join("again"), dir.join("b"));
    let printed = run(&a, "5");
    println!("{printed}");
    run(&again, "5");
    run(&b, "1");
    let bytes = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert!(
        bytes(&a, "losses.npz") == bytes(&again, "losses.npz"),
        "a rerun differs"
    );
    assert!(bytes(&a, "valloss.json") == bytes(&again, "valloss.json"));
    let loss = losses(&a);
    // Another batch moves the products' summation order (the kernel depends on the row count),
    // so only the last bits.
    let worst = loss
        .data
        .iter()
        .zip(&losses(&b).data)
        .map(|(x, y)| (x - y).abs() / x.abs())
        .fold(0.0, f64::max);
    println!("--batch 5 against --batch 1: worst relative difference {worst:.2e}");
    assert!(worst <= 1e-5, "{worst}");
    assert_eq!(loss.shape, [12, 4]);
    assert!(loss.data.iter().all(|v| v.is_finite() && *v > 0.0));
    let j: serde_json::Value = serde_json::from_slice(&bytes(&a, "valloss.json")).unwrap();
    let rows = j["summaries"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // Nested prefixes: N = 12's mean is the mean over all rows of the npz.
    let all = loss.data.iter().sum::<f64>() / loss.data.len() as f64;
    let got = rows[2]["mean"]["estimate"].as_f64().unwrap();
    assert!((got - all).abs() <= 1e-12 * all, "{got} vs {all}");
    for r in rows {
        let (lo, hi, e) = (
            r["mean"]["lo"].as_f64().unwrap(),
            r["mean"]["hi"].as_f64().unwrap(),
            r["mean"]["estimate"].as_f64().unwrap(),
        );
        assert!(lo <= e && e <= hi, "{r}");
    }
}

#[test]
fn valloss_labels_are_matched_by_name() {
    let dir = tmp("valloss-labels");
    let (vae, imgs) = (encoder_file(&dir), images(&dir, 4));
    let sit = golden("sit_tiny.weights.safetensors");
    let out = dir.join("out");
    let with_labels = |text: &str, needle: &str| {
        let l = dir.join("labels.txt");
        std::fs::write(&l, text).unwrap();
        fails(
            &valloss(
                &sit,
                &vae,
                &[
                    "--images",
                    s(&imgs),
                    "--labels",
                    s(&l),
                    "--n",
                    "2",
                    "--segments",
                    "2",
                    "--out",
                    s(&out),
                ],
            ),
            needle,
            &out,
        );
    };
    with_labels("0 1\n1 2\n2 3\n", "no label for image 3");
    with_labels(
        "0 1\n1 2\n2 3\n3 4\n7 1\n",
        "a label for 7, which is not among the images",
    );
    with_labels(
        "0 1\n1 2\n2 3\n3 4\n2 5\n",
        "line 5: image 2 has a second label",
    );
    with_labels("0 1\n1 x\n", "line 2: class \"x\" is not an integer");
    // A JPEG in a folder of images: refused, named.
    let folder = dir.join("folder");
    std::fs::create_dir_all(&folder).unwrap();
    for f in ["a.jpg", "b.jpg"] {
        std::fs::write(folder.join(f), b"\xff\xd8\xff\xe0 not really").unwrap();
    }
    let l = dir.join("l.txt");
    std::fs::write(&l, "a.jpg 0\nb.jpg 1\n").unwrap();
    fails(
        &valloss(
            &sit,
            &vae,
            &[
                "--images",
                s(&folder),
                "--labels",
                s(&l),
                "--n",
                "2",
                "--segments",
                "2",
                "--out",
                s(&out),
            ],
        ),
        "jpg: a corrupt or unsupported JPEG",
        &out.join("losses.npz"),
    );
    assert!(!out.join("valloss.json").exists());
}

/// Three shards (units of --batch images) give the bytes of one run: the shard that finds every
/// unit done writes the summary; a unit whose bytes were damaged is computed again.
#[test]
fn valloss_shards_equal_one_run_and_resume() {
    let dir = tmp("valloss-shards");
    let (vae, imgs) = (encoder_file(&dir), images(&dir, 12));
    let sit = golden("sit_tiny.weights.safetensors");
    let run = |out: &Path, shard: usize, shards: usize| {
        succeeds(&valloss(
            &sit,
            &vae,
            &[
                "--images",
                s(&imgs),
                "--n",
                "4,12",
                "--segments",
                "3",
                "--seed",
                "5",
                "--batch",
                "4",
                "--bootstrap",
                "100",
                "--out",
                s(out),
                "--shard-index",
                &shard.to_string(),
                "--num-shards",
                &shards.to_string(),
            ],
        ))
    };
    let (one, three) = (dir.join("one"), dir.join("three"));
    run(&one, 0, 1);
    for i in 0..3 {
        run(&three, i, 3);
        assert_eq!(three.join("losses.npz").exists(), i == 2, "after shard {i}");
    }
    let bytes = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
    for f in ["losses.npz", "valloss.json", "units/u00001.npz"] {
        assert!(
            bytes(&one, f) == bytes(&three, f),
            "{f}: 3 shards differ from 1"
        );
    }
    // A damaged unit is found and computed again; the summary comes out the same.
    let unit = three.join("units/u00001.npz");
    let mut b = std::fs::read(&unit).unwrap();
    let last = b.len() - 30;
    b[last] ^= 1;
    std::fs::write(&unit, &b).unwrap();
    std::fs::remove_file(three.join("losses.npz")).unwrap();
    run(&three, 1, 3);
    assert!(bytes(&one, "losses.npz") == bytes(&three, "losses.npz"));
    assert!(bytes(&one, "units/u00001.npz") == bytes(&three, "units/u00001.npz"));
}

/// A folder of JPEG files (the golden's, written by Pillow, of three sizes) runs through the ADM
/// crop and the encoder, labels matched by file name.
#[test]
fn valloss_reads_a_folder_of_jpeg_files() {
    let dir = tmp("valloss-jpeg");
    let (vae, sit) = (encoder_file(&dir), golden("sit_tiny.weights.safetensors"));
    let io = crate::common::open("adm_crop.io.safetensors");
    let folder = dir.join("val");
    std::fs::create_dir_all(&folder).unwrap();
    let mut labels = String::new();
    for (k, case) in ["q90_420", "q95_444", "q75_420_odd"].iter().enumerate() {
        let bytes: Vec<u8> = io
            .i64(&format!("jpeg_{case}.bytes"))
            .unwrap()
            .into_iter()
            .map(|b| b as u8)
            .collect();
        std::fs::write(folder.join(format!("{case}.JPEG")), bytes).unwrap();
        labels += &format!("{case}.JPEG {k}\n");
    }
    let l = dir.join("labels.txt");
    std::fs::write(&l, labels).unwrap();
    let out = dir.join("out");
    succeeds(&valloss(
        &sit,
        &vae,
        &[
            "--images",
            s(&folder),
            "--labels",
            s(&l),
            "--n",
            "2,3",
            "--segments",
            "2",
            "--bootstrap",
            "50",
            "--out",
            s(&out),
        ],
    ));
    let loss = losses(&out);
    assert_eq!(loss.shape, [3, 2]);
    assert!(loss.data.iter().all(|v| v.is_finite() && *v > 0.0));
}
