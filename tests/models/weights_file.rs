//! The safetensors reader: stored dtypes, metadata, and what the checks report.

use crate::common::golden_dir;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sitdiv::weights::{Expected, WeightFile};

fn write(path: &std::path::Path, tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)>) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn half_precision_tensors_read_as_f32() {
    let dir = std::env::temp_dir().join(format!("sitdiv-weights-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let vals = [0.5f32, -1.25, 3.0, 1e-3];
    let f16: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = vals
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let ints: Vec<u8> = [1i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let p = dir.join("mixed.safetensors");
    write(
        &p,
        vec![
            ("a", Dtype::F16, vec![2, 2], f16),
            ("b", Dtype::BF16, vec![4], bf16),
            ("c", Dtype::I64, vec![2], ints),
        ],
    );
    let f = WeightFile::open(&p).unwrap();
    let want16: Vec<f32> = vals
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    let want_bf: Vec<f32> = vals
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    assert_eq!(f.f32("a").unwrap(), want16);
    assert_eq!(f.f32("b").unwrap(), want_bf);
    // A float model tensor stored as integers is reported with both dtypes.
    let err = f
        .check(
            &[
                Expected::new("a", &[2, 2]),
                Expected::new("b", &[4]),
                Expected::new("c", &[2]),
            ],
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tensor c: wrong dtype, expected F32, F16 or BF16, found I64"),
        "{err}"
    );
    assert!(f.f32("c").is_err());
}

#[test]
fn all_problems_are_reported_at_once() {
    let f = WeightFile::open(golden_dir().join("sit_tiny.weights.safetensors")).unwrap();
    assert!(f.metadata()["config"].contains("\"hidden_size\": 64"));
    let expected = vec![
        Expected::new("pos_embed", &[1, 16, 64]),
        Expected::new("x_embedder.proj.bias", &[65]),
        Expected::new("nope", &[1]),
    ];
    let err = f
        .check(
            &expected,
            &["blocks.", "t_embedder.", "y_embedder.", "final_layer."],
        )
        .unwrap_err()
        .to_string();
    for needle in [
        "tensor x_embedder.proj.bias: wrong shape, expected [65], found [64]",
        "missing tensor nope",
        "unexpected tensor x_embedder.proj.weight",
        "3 problem(s)",
    ] {
        assert!(err.contains(needle), "{needle:?} not in:\n{err}");
    }
}
