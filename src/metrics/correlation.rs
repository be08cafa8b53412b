//! How far metrics agree across run configs: Pearson's r, Spearman's ρ (Pearson on average
//! ranks) and Kendall's τ-b, as scipy's `pearsonr`, `spearmanr` and `kendalltau` define them.
//! Each is `None` where it is undefined (fewer than 2 values, or a constant column).

/// Pearson's r of two equally long series, in f64 (centred first, as scipy does).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Ranks 1..n with ties given their average rank.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ: Pearson's r of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Kendall's τ-b: (concordant − discordant) / √((n₀ − n₁)(n₀ − n₂)), n₁ and n₂ the pairs tied
/// in x and in y. O(n²), which suits tables of run configs.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 || y.len() != n {
        return None;
    }
    let (mut concordant, mut discordant, mut tie_x, mut tie_y) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let dx = x[i].partial_cmp(&x[j]).map_or(0, |o| o as i64);
            let dy = y[i].partial_cmp(&y[j]).map_or(0, |o| o as i64);
            match (dx, dy) {
                (0, 0) => {
                    tie_x += 1;
                    tie_y += 1;
                }
                (0, _) => tie_x += 1,
                (_, 0) => tie_y += 1,
                _ if dx == dy => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let n0 = (n * (n - 1) / 2) as i64;
    let denom = ((n0 - tie_x) as f64) * ((n0 - tie_y) as f64);
    if denom <= 0.0 {
        return None;
    }
    Some(((concordant - discordant) as f64 / denom.sqrt()).clamp(-1.0, 1.0))
}
