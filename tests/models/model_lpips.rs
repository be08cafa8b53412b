//! LPIPS (AlexNet and VGG16 trunks, v0.1 heads) against the `lpips` package: pair distances from
//! one feature row per image equal `lpips.LPIPS(a, b)` (tests/golden/lpips_formula.io.safetensors,
//! made by `scripts/dump_golden.py lpips`; formula trunk weights, the packaged linear heads).

use crate::common::{formula_image, open};
use sitdiv::backend::cpu::Cpu;
use sitdiv::metrics::diversity::squared_l2_diversity;
use sitdiv::models::lpips::{Lpips, LpipsNet};
use sitdiv::models::synthetic;
use sitdiv::rng;
use sitdiv::weights::Expected;

const SIDE: usize = 64;

fn images() -> Vec<u8> {
    let crop = |name: &str| {
        let (img, _, w) = formula_image(name);
        (0..SIDE)
            .flat_map(move |y| img[y * w * 3..(y * w + SIDE) * 3].to_vec())
            .collect::<Vec<u8>>()
    };
    let noise = |i: u64| -> Vec<u8> {
        rng::uniform(11, i, 0, 0, SIDE * SIDE * 3)
            .iter()
            .map(|u| (256.0 * u).floor() as u8)
            .collect()
    };
    [crop("gradient"), crop("checker"), noise(0), noise(1)].concat()
}

fn weights(net: LpipsNet, tag: &str, seed: u64) -> sitdiv::weights::source::Synthetic {
    let g = open("lpips_formula.io.safetensors");
    let trunk: Vec<Expected> = net
        .expected_tensors()
        .into_iter()
        .filter(|e| e.name.starts_with("net."))
        .collect();
    let mut w = synthetic::formula_weights(trunk, seed).unwrap();
    for e in net
        .expected_tensors()
        .into_iter()
        .filter(|e| !e.name.starts_with("net."))
    {
        let data = g.f32(&format!("{tag}.{}", e.name)).unwrap();
        w.tensors.insert(e.name.clone(), (e.shape.clone(), data));
    }
    w
}

#[test]
fn lpips_pairs_match_the_package() {
    let g = open("lpips_formula.io.safetensors");
    let imgs = images();
    for (net, tag, seed) in [(LpipsNet::Alex, "alex", 2017), (LpipsNet::Vgg, "vgg", 2018)] {
        let model = Lpips::load(&Cpu, &weights(net, tag, seed), net).unwrap();
        let f = model.features(&Cpu, &imgs, (4, SIDE, SIDE, 3)).unwrap();
        let width = f.len() / 4;
        let want = g.f64(&format!("{tag}.pairs")).unwrap();
        let mut k = 0;
        let mut worst = 0f64;
        for i in 0..4 {
            for j in i + 1..4 {
                let d: f64 = f[i * width..(i + 1) * width]
                    .iter()
                    .zip(&f[j * width..(j + 1) * width])
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum();
                let rel = (d - want[k]).abs() / want[k];
                worst = worst.max(rel);
                assert!(rel < 1e-6, "{tag} pair ({i},{j}): {d} vs lpips {}", want[k]);
                k += 1;
            }
        }
        println!("{tag}: worst pair rel {worst:.1e}");
        // The diversity stage sums the same pairs.
        let div = squared_l2_diversity(&f, width, None).unwrap();
        let mean = want.iter().sum::<f64>() / want.len() as f64;
        assert!((div.mixed_mean.unwrap() - mean).abs() < 1e-6 * mean);
    }
}
