//! The procedural toy data set: the Rust generator draws the same bytes as
//! `scripts/train_toy.py` (golden `toy_data.safetensors`, written by its `fixture` command).

use crate::common;

use sitdiv::toy;

#[test]
fn rust_generator_equals_python_bit_for_bit() {
    let f = common::open("toy_data.safetensors");
    let cases = f.i64("cases").unwrap();
    let images = f.i64("images").unwrap();
    assert_eq!(f.shape("images").unwrap(), [cases.len() / 3, 32, 32, 3]);
    let mut classes = std::collections::BTreeSet::new();
    for (k, case) in cases.chunks(3).enumerate() {
        let (seed, class, index) = (case[0] as u32, case[1] as usize, case[2] as u32);
        let rust = toy::image(seed, class, index).unwrap();
        let python = &images[k * toy::IMAGE_BYTES..(k + 1) * toy::IMAGE_BYTES];
        let differing = rust
            .iter()
            .zip(python)
            .filter(|(a, b)| i64::from(**a) != **b)
            .count();
        assert_eq!(
            differing, 0,
            "seed {seed} class {class} index {index}: {differing} bytes differ"
        );
        classes.insert(class);
    }
    assert_eq!(
        classes.len(),
        toy::NUM_CLASSES,
        "the fixture covers every class"
    );
    println!("{} images equal bit for bit", cases.len() / 3);
}

#[test]
fn images_vary_within_a_class_and_repeat_exactly() {
    let a = toy::image(3, 4, 10).unwrap();
    assert_eq!(a, toy::image(3, 4, 10).unwrap());
    assert_ne!(a, toy::image(3, 4, 11).unwrap());
    assert_ne!(a, toy::image(4, 4, 10).unwrap());
    let (images, labels) = toy::dataset(0, 3).unwrap();
    assert_eq!(images.len(), 30 * toy::IMAGE_BYTES);
    assert_eq!(&labels[..4], &[0, 0, 0, 1]);
}

#[test]
fn a_class_outside_the_set_is_refused() {
    let e = toy::image(0, 10, 0).unwrap_err().to_string();
    assert!(e.contains("class 10 is outside 0..10"), "{e}");
}
