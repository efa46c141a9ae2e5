//! The benchmark's generated rows, shared by `gbt-bench` and `gbt-peers`: a counter-based
//! hash that `lightgbm_bench.py` reproduces bit for bit in numpy, so every library trains on
//! identical data without a 450 MB file.

pub const FEATURES: usize = 28;

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from stream `k` of row `i`.
fn uniform(i: u64, k: u64) -> f64 {
    (splitmix64(i * 64 + k) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Row `i`: 28 features in [-1, 1) (feature 5 missing for 10% of rows) and a label from a
/// nonlinear score plus noise (only + − × and comparisons, so numpy gets the same bits).
pub fn data(start: u64, n: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut cols = vec![Vec::with_capacity(n); FEATURES];
    let mut y = Vec::with_capacity(n);
    for i in start..start + n as u64 {
        let x: Vec<f64> = (0..FEATURES as u64)
            .map(|k| uniform(i, k) * 2.0 - 1.0)
            .collect();
        let missing = uniform(i, 40) < 0.1;
        let x5 = if missing { 0.7 } else { x[5] };
        let z = 1.5 * x[0] - 2.0 * x[1] * x[2]
            + (if x[3] > 0.2 { 1.0 } else { -0.5 })
            + x[4] * x[4] * 2.0
            - 1.0 * x5
            + 0.8 * x[6] * x[7]
            + 0.5 * x[8]
            - 0.5 * x[9]
            + 0.3 * x[10] * x[11] * x[12]
            - 0.6;
        let noise = (uniform(i, 41) + uniform(i, 42) + uniform(i, 43) + uniform(i, 44) - 2.0) * 1.5;
        y.push(if z + noise > 0.0 { 1.0 } else { 0.0 });
        for k in 0..FEATURES {
            cols[k].push(if k == 5 && missing { f64::NAN } else { x[k] });
        }
    }
    (cols, y)
}
