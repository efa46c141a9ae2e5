//! GBT training benchmark: 2M rows × 28 features (+ 500k holdout rows) generated from a
//! counter-based hash that `lightgbm_bench.py` reproduces bit for bit in numpy, so both
//! libraries train on identical data without a 450 MB file. Prints seconds and holdout AUC.
//!
//! Usage: gbt-bench [train_rows] [threads] [score_rows] (score_rows default train_rows / 4)

#[allow(dead_code)]
#[path = "../../src/models/mod.rs"]
mod models;

use models::{Algorithm, Matrix, Params, gbt::GbtParams, metrics};

mod data;

use data::{FEATURES, data};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(2_000_000, |a| a.parse().expect("rows"));
    let threads: usize = args.get(2).map_or(2, |a| a.parse().expect("threads"));
    let (x, y) = data(0, n);
    let x = Matrix::from_columns(x);
    let scored: usize = args
        .get(3)
        .map_or(n / 4, |a| a.parse().expect("score rows"));
    let (xt, yt) = data(1 << 40, scored);
    let xt = Matrix::from_columns(xt);
    let params = Params::Gbt(GbtParams {
        n_trees: 200,
        learning_rate: 0.1,
        num_leaves: 255,
        min_data_in_leaf: 20,
        max_bins: 255,
        threads,
        ..Default::default()
    });
    let names = (0..FEATURES).map(|k| format!("f{k}")).collect();
    let started = std::time::Instant::now();
    let model =
        models::train(Algorithm::GbtClassifier, &params, names, &x, &y, None, 1).expect("train");
    let seconds = started.elapsed().as_secs_f64();
    // GBT_PREDICT_REPEAT=N scores the rows N times and reports the median: prediction alone
    // is a second or two, where one slow moment of a shared machine shows.
    let repeat: usize = std::env::var("GBT_PREDICT_REPEAT")
        .ok()
        .map_or(1, |v| v.parse().expect("GBT_PREDICT_REPEAT"));
    let mut times = Vec::new();
    let mut p = Vec::new();
    for _ in 0..repeat.max(1) {
        let started = std::time::Instant::now();
        p = model.predict(&xt);
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let predict_seconds = times[times.len() / 2];
    let auc = metrics::roc_auc(&yt, &p).expect("two classes");
    let positives = y.iter().sum::<f64>() / n as f64;
    // FNV-1a over the predictions' bits: two builds gave the same model (on these rows) iff
    // the hashes match, a finer check than the AUC's five digits.
    let hash = p.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
        (h ^ v.to_bits()).wrapping_mul(0x0000_0100_0000_01b3)
    });
    println!(
        "nightjar rows={n} threads={threads} train_s={seconds:.2} auc={auc:.5} predict_rows_per_s={:.0} base_rate={positives:.4} predictions={hash:016x}",
        yt.len() as f64 / predict_seconds
    );
}
