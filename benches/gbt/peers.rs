//! The two pure-Rust GBT crates the issue asked us to weigh against our own booster,
//! forust-ml and perpetual, on the same generated rows as `gbt-bench` (2M × 28, 2 threads).
//! Prints one line per library: training seconds, holdout AUC, trees and predict rows/s.
//!
//! Usage: gbt-peers [train_rows] [threads] [score_rows] [forust|perpetual|both] [min_leaf_weight]
//! Built only with `--features peers`, so the default bench build stays small.

mod data;
#[allow(dead_code)]
#[path = "../../src/models/mod.rs"]
mod models;

use data::{FEATURES, data};
use std::time::Instant;

/// Column-major values, the layout both crates' `Matrix::new` read.
fn column_major(cols: &[Vec<f64>]) -> Vec<f64> {
    cols.iter().flatten().copied().collect()
}

fn report(
    name: &str,
    rows: usize,
    threads: usize,
    train_s: f64,
    trees: usize,
    y: &[f64],
    p: &[f64],
    predict_s: f64,
) {
    let auc = models::metrics::roc_auc(y, p).expect("two classes");
    println!(
        "{name} rows={rows} threads={threads} train_s={train_s:.2} trees={trees} auc={auc:.5} predict_rows_per_s={:.0}",
        y.len() as f64 / predict_s
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(2_000_000, |a| a.parse().expect("rows"));
    let threads: usize = args.get(2).map_or(2, |a| a.parse().expect("threads"));
    let scored: usize = args
        .get(3)
        .map_or(n / 4, |a| a.parse().expect("score rows"));
    let which = args.get(4).map_or("both", String::as_str);
    // forust bounds a leaf by its hessian sum, not its row count; LightGBM's
    // min_sum_hessian_in_leaf default (1e-3) is the matched value.
    let min_leaf_weight: f32 = args
        .get(5)
        .map_or(1e-3, |a| a.parse().expect("min_leaf_weight"));
    let (x, y) = data(0, n);
    let x = column_major(&x);
    let (xt, yt) = data(1 << 40, scored);
    let xt = column_major(&xt);

    if which == "forust" || which == "both" {
        // LightGBM-matched: 200 trees, 255 leaves grown loss-guided (leaf-wise), no depth
        // limit in practice, 255 bins, no L2 (LightGBM's lambda_l2 default is 0).
        let mut booster = forust_ml::GradientBooster::default()
            .set_objective_type(forust_ml::objective::ObjectiveType::LogLoss)
            .set_iterations(200)
            .set_learning_rate(0.1)
            .set_max_leaves(255)
            .set_max_depth(64)
            .set_nbins(255)
            .set_l2(0.0)
            .set_min_leaf_weight(min_leaf_weight)
            .set_num_threads(Some(threads));
        booster.grow_policy = forust_ml::gradientbooster::GrowPolicy::LossGuide;
        let started = Instant::now();
        booster
            .fit_unweighted(&forust_ml::Matrix::new(&x, n, FEATURES), &y, None)
            .expect("forust fit");
        let train_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let p = booster.predict(&forust_ml::Matrix::new(&xt, scored, FEATURES), true);
        let predict_s = started.elapsed().as_secs_f64();
        report(
            "forust-ml-0.8.0",
            n,
            threads,
            train_s,
            booster.trees.len(),
            &yt,
            &p,
            predict_s,
        );
    }

    if which == "perpetual" || which == "both" {
        // perpetual has no tree count or leaf count: it grows until its `budget` says stop.
        // Budget 1.0 is its documented "more accurate" setting (the default is 0.5).
        let mut booster = perpetual::PerpetualBooster::default()
            .set_objective(perpetual::objective::Objective::LogLoss)
            .set_budget(1.0)
            .set_max_bin(255)
            .set_num_threads(Some(threads));
        let started = Instant::now();
        booster
            .fit(&perpetual::Matrix::new(&x, n, FEATURES), &y, None, None)
            .expect("perpetual fit");
        let train_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let p = booster.predict(&perpetual::Matrix::new(&xt, scored, FEATURES), true);
        let predict_s = started.elapsed().as_secs_f64();
        let trees = booster.get_prediction_trees().len();
        report(
            "perpetual-3.0.0-rc.2",
            n,
            threads,
            train_s,
            trees,
            &yt,
            &p,
            predict_s,
        );
    }
}
