//! Holdout metrics with scikit-learn's definitions: `roc_auc_score` (trapezoids over the ROC
//! curve, so tied scores count half), `average_precision_score` (the step sum
//! `Σ (Rₙ − Rₙ₋₁) Pₙ` over distinct thresholds, no interpolation), `log_loss` (probabilities
//! clipped to `[eps, 1 − eps]`, eps = f64 machine epsilon), `brier_score_loss`, and
//! `mean_squared_error`/`mean_absolute_error`/`r2_score`; plus expected calibration error
//! over 10 equal-width bins, precision/recall/F1 at a threshold, and lift and cumulative
//! gain by decile.

use serde::{Deserialize, Serialize};

/// The scalar fields of [`Classification`]: what a promotion gate may compare.
pub const CLASSIFICATION_SCALARS: &[&str] = &[
    "rows",
    "positives",
    "base_rate",
    "auc",
    "average_precision",
    "log_loss",
    "brier",
    "ece",
    "threshold",
    "precision",
    "recall",
    "f1",
];
/// The scalar fields of [`Regression`].
pub const REGRESSION_SCALARS: &[&str] = &["rows", "rmse", "mae", "r2", "mean_actual"];

/// Metrics of a binary classifier on its holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub rows: usize,
    pub positives: usize,
    pub base_rate: f64,
    pub auc: f64,
    pub average_precision: f64,
    pub log_loss: f64,
    pub brier: f64,
    pub ece: f64,
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub calibration: Vec<CalibrationBin>,
    pub deciles: Vec<LiftDecile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// `[lower, upper)`; the last bin includes 1.0.
    pub lower: f64,
    pub upper: f64,
    pub rows: usize,
    pub mean_predicted: Option<f64>,
    pub observed_rate: Option<f64>,
}

/// One tenth of the rows by descending score (sizes as `numpy.array_split`: the first
/// `rows % 10` deciles get one extra row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiftDecile {
    pub decile: usize,
    pub rows: usize,
    pub positives: usize,
    pub rate: f64,
    /// The decile's rate over the base rate.
    pub lift: f64,
    /// Share of all positives in deciles 1..=this one.
    pub cumulative_gain: f64,
}

/// Metrics of a regressor on its holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub rows: usize,
    pub rmse: f64,
    pub mae: f64,
    pub r2: f64,
    pub mean_actual: f64,
    pub deciles: Vec<RegressionDecile>,
}

/// One tenth of the rows by descending prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionDecile {
    pub decile: usize,
    pub rows: usize,
    pub mean_predicted: f64,
    pub mean_actual: f64,
}

/// sklearn's `roc_auc_score` for 0/1 labels. `None` with only one class.
pub fn roc_auc(y: &[f64], score: &[f64]) -> Option<f64> {
    let order = descending(score);
    let positives = y.iter().filter(|&&v| v == 1.0).count() as f64;
    let negatives = y.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Walk thresholds from high to low; each group of tied scores is one ROC point.
    let (mut tp, mut fp, mut area) = (0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let (prev_tp, prev_fp) = (tp, fp);
        let s = score[order[i]];
        while i < order.len() && score[order[i]] == s {
            if y[order[i]] == 1.0 {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        area += (fp - prev_fp) * (tp + prev_tp) / 2.0;
    }
    Some(area / (positives * negatives))
}

/// sklearn's `average_precision_score` for 0/1 labels. `None` without positives.
pub fn average_precision(y: &[f64], score: &[f64]) -> Option<f64> {
    let order = descending(score);
    let positives = y.iter().filter(|&&v| v == 1.0).count() as f64;
    if positives == 0.0 {
        return None;
    }
    let (mut tp, mut seen, mut ap, mut prev_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = score[order[i]];
        while i < order.len() && score[order[i]] == s {
            if y[order[i]] == 1.0 {
                tp += 1.0
            }
            seen += 1.0;
            i += 1;
        }
        let recall = tp / positives;
        ap += (recall - prev_recall) * (tp / seen);
        prev_recall = recall;
    }
    Some(ap)
}

/// sklearn's `log_loss` (eps = f64 machine epsilon).
pub fn log_loss(y: &[f64], p: &[f64]) -> f64 {
    let eps = f64::EPSILON;
    let n = y.len().max(1) as f64;
    -y.iter()
        .zip(p)
        .map(|(&y, &p)| {
            let p = p.clamp(eps, 1.0 - eps);
            y * p.ln() + (1.0 - y) * (1.0 - p).ln()
        })
        .sum::<f64>()
        / n
}

pub fn brier(y: &[f64], p: &[f64]) -> f64 {
    y.iter().zip(p).map(|(y, p)| (p - y) * (p - y)).sum::<f64>() / y.len().max(1) as f64
}

/// Row indices by descending score (stable, so ties keep row order).
fn descending(score: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    order
}

/// `numpy.array_split` sizes of `n` into 10.
fn decile_sizes(n: usize) -> Vec<usize> {
    (0..10).map(|i| n / 10 + usize::from(i < n % 10)).collect()
}

/// 10 equal-width bins of the predicted probability; ECE = Σ (n_b / n) |rate_b − mean_b|.
pub fn calibration(y: &[f64], p: &[f64]) -> (f64, Vec<CalibrationBin>) {
    let mut sums = [(0usize, 0.0f64, 0.0f64); 10];
    for (&y, &p) in y.iter().zip(p) {
        let b = ((p * 10.0).floor() as usize).min(9);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += y;
    }
    let n = y.len().max(1) as f64;
    let mut ece = 0.0;
    let bins = sums
        .iter()
        .enumerate()
        .map(|(b, &(rows, sp, sy))| {
            let (mean_predicted, observed_rate) = if rows > 0 {
                let (mp, rate) = (sp / rows as f64, sy / rows as f64);
                ece += rows as f64 / n * (rate - mp).abs();
                (Some(mp), Some(rate))
            } else {
                (None, None)
            };
            CalibrationBin {
                lower: b as f64 / 10.0,
                upper: (b + 1) as f64 / 10.0,
                rows,
                mean_predicted,
                observed_rate,
            }
        })
        .collect();
    (ece, bins)
}

/// Precision, recall and F1 of `p >= threshold` (0 where undefined, like sklearn's
/// `zero_division=0`).
pub fn precision_recall_f1(y: &[f64], p: &[f64], threshold: f64) -> (f64, f64, f64) {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (&y, &p) in y.iter().zip(p) {
        match (p >= threshold, y == 1.0) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fneg);
    let f1 = ratio(2.0 * precision * recall, precision + recall);
    (precision, recall, f1)
}

pub fn lift(y: &[f64], score: &[f64]) -> Vec<LiftDecile> {
    let order = descending(score);
    let total_pos = y.iter().filter(|&&v| v == 1.0).count();
    let base = total_pos as f64 / y.len().max(1) as f64;
    let mut start = 0;
    let mut cumulative = 0;
    decile_sizes(y.len())
        .into_iter()
        .enumerate()
        .map(|(d, rows)| {
            let positives = order[start..start + rows]
                .iter()
                .filter(|&&i| y[i] == 1.0)
                .count();
            start += rows;
            cumulative += positives;
            let rate = if rows > 0 {
                positives as f64 / rows as f64
            } else {
                0.0
            };
            LiftDecile {
                decile: d + 1,
                rows,
                positives,
                rate,
                lift: if base > 0.0 { rate / base } else { 0.0 },
                cumulative_gain: if total_pos > 0 {
                    cumulative as f64 / total_pos as f64
                } else {
                    0.0
                },
            }
        })
        .collect()
}

/// Every classification metric; `None` when the holdout has a single class.
pub fn classification(y: &[f64], p: &[f64], threshold: f64) -> Option<Classification> {
    let auc = roc_auc(y, p)?;
    let average_precision = average_precision(y, p)?;
    let (ece, calibration) = calibration(y, p);
    let (precision, recall, f1) = precision_recall_f1(y, p, threshold);
    let positives = y.iter().filter(|&&v| v == 1.0).count();
    Some(Classification {
        rows: y.len(),
        positives,
        base_rate: positives as f64 / y.len() as f64,
        auc,
        average_precision,
        log_loss: log_loss(y, p),
        brier: brier(y, p),
        ece,
        threshold,
        precision,
        recall,
        f1,
        calibration,
        deciles: lift(y, p),
    })
}

pub fn regression(y: &[f64], pred: &[f64]) -> Regression {
    let n = y.len().max(1) as f64;
    let mean = y.iter().sum::<f64>() / n;
    let ss_res: f64 = y.iter().zip(pred).map(|(y, p)| (y - p) * (y - p)).sum();
    let ss_tot: f64 = y.iter().map(|y| (y - mean) * (y - mean)).sum();
    // sklearn (force_finite): a constant target scores 1.0 if predicted exactly, else 0.0.
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else if ss_res == 0.0 {
        1.0
    } else {
        0.0
    };
    let order = descending(pred);
    let mut start = 0;
    let deciles = decile_sizes(y.len())
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| *rows > 0)
        .map(|(d, rows)| {
            let idx = &order[start..start + rows];
            start += rows;
            RegressionDecile {
                decile: d + 1,
                rows,
                mean_predicted: idx.iter().map(|&i| pred[i]).sum::<f64>() / rows as f64,
                mean_actual: idx.iter().map(|&i| y[i]).sum::<f64>() / rows as f64,
            }
        })
        .collect();
    Regression {
        rows: y.len(),
        rmse: (ss_res / n).sqrt(),
        mae: y.iter().zip(pred).map(|(y, p)| (y - p).abs()).sum::<f64>() / n,
        r2,
        mean_actual: mean,
        deciles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_metric_lists_are_the_scalar_fields() {
        let scalars = |v: serde_json::Value| -> Vec<String> {
            let mut keys: Vec<String> = v
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, _)| k.clone())
                .collect();
            keys.sort();
            keys
        };
        let sorted = |list: &[&str]| {
            let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let y = [0.0, 1.0, 0.0, 1.0];
        let p = [0.2, 0.7, 0.4, 0.9];
        let c = serde_json::to_value(classification(&y, &p, 0.5).unwrap()).unwrap();
        assert_eq!(scalars(c), sorted(CLASSIFICATION_SCALARS));
        let r = serde_json::to_value(regression(&y, &p)).unwrap();
        assert_eq!(scalars(r), sorted(REGRESSION_SCALARS));
    }

    // Values from scikit-learn's documentation and doctests.
    #[test]
    fn matches_sklearn_documented_examples() {
        // roc_auc_score docs: y = [0, 0, 1, 1], scores [0.1, 0.4, 0.35, 0.8] → 0.75.
        let y = [0.0, 0.0, 1.0, 1.0];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert_eq!(roc_auc(&y, &s), Some(0.75));
        // average_precision_score docs: the same inputs → 0.8333….
        let ap = average_precision(&y, &s).unwrap();
        assert!((ap - 0.833_333_333_333_333_4).abs() < 1e-12, "{ap}");
        // log_loss docs: ["spam","ham","ham","spam"] (spam = 1) with P(spam) .9, .1, .2, .65 → 0.21616….
        let y = [1.0, 0.0, 0.0, 1.0];
        let p = [0.9, 0.1, 0.2, 0.65];
        let ll = log_loss(&y, &p);
        assert!((ll - 0.21616).abs() < 5e-6, "{ll}");
        // brier_score_loss docs: y [0,1,1,0], p [.1,.9,.8,.3] → 0.0375.
        let b = brier(&[0.0, 1.0, 1.0, 0.0], &[0.1, 0.9, 0.8, 0.3]);
        assert!((b - 0.0375).abs() < 1e-15, "{b}");
        // r2_score docs: [3, -0.5, 2, 7] vs [2.5, 0.0, 2, 8] → 0.9486…; MSE 0.375, MAE 0.5.
        let r = regression(&[3.0, -0.5, 2.0, 7.0], &[2.5, 0.0, 2.0, 8.0]);
        assert!((r.r2 - 0.948_608_137_044_967_9).abs() < 1e-12, "{}", r.r2);
        assert!((r.rmse - 0.375f64.sqrt()).abs() < 1e-15);
        assert!((r.mae - 0.5).abs() < 1e-15);
    }

    #[test]
    fn tied_scores_count_half_in_auc_and_share_one_threshold_in_ap() {
        // All scores tied: AUC 0.5; AP = base rate (one threshold, precision = base rate).
        let y = [1.0, 0.0, 0.0, 1.0, 0.0];
        let s = [0.5; 5];
        assert_eq!(roc_auc(&y, &s), Some(0.5));
        assert!((average_precision(&y, &s).unwrap() - 0.4).abs() < 1e-15);
        // Only one class: undefined, like sklearn's ValueError.
        assert_eq!(roc_auc(&[1.0, 1.0], &[0.2, 0.3]), None);
    }

    /// An independent O(n²) AUC: P(score⁺ > score⁻) + ½ P(tie), and AP from its definition
    /// at every distinct threshold.
    fn pairwise_auc(y: &[f64], s: &[f64]) -> f64 {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for i in 0..y.len() {
            for j in 0..y.len() {
                if y[i] == 1.0 && y[j] == 0.0 {
                    pairs += 1.0;
                    if s[i] > s[j] {
                        wins += 1.0
                    } else if s[i] == s[j] {
                        wins += 0.5
                    }
                }
            }
        }
        wins / pairs
    }

    fn reference_ap(y: &[f64], s: &[f64]) -> f64 {
        let mut thresholds: Vec<f64> = s.to_vec();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
        let mut prev_recall = 0.0;
        let mut ap = 0.0;
        for t in thresholds {
            let tp = y
                .iter()
                .zip(s)
                .filter(|(y, s)| **y == 1.0 && **s >= t)
                .count() as f64;
            let predicted = s.iter().filter(|&&v| v >= t).count() as f64;
            let recall = tp / pos;
            ap += (recall - prev_recall) * tp / predicted;
            prev_recall = recall;
        }
        ap
    }

    #[test]
    fn auc_and_ap_agree_with_independent_implementations_on_random_ties() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for _ in 0..50 {
            let n = rng.random_range(2..60);
            // Coarse scores (many ties) correlated with the label.
            let y: Vec<f64> = (0..n).map(|_| f64::from(rng.random_bool(0.3))).collect();
            let s: Vec<f64> = y
                .iter()
                .map(|&y| ((y * 2.0 + rng.random_range(0.0..4.0)).floor()) / 6.0)
                .collect();
            if y.iter().all(|&v| v == y[0]) {
                continue;
            }
            let auc = roc_auc(&y, &s).unwrap();
            assert!((auc - pairwise_auc(&y, &s)).abs() < 1e-12);
            let ap = average_precision(&y, &s).unwrap();
            assert!((ap - reference_ap(&y, &s)).abs() < 1e-12);
        }
    }

    #[test]
    fn calibration_lift_and_thresholds() {
        let y = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        let p = [0.05, 0.15, 0.95, 0.85, 0.65, 0.45, 0.55, 0.35, 0.25, 0.75];
        let (ece, bins) = calibration(&y, &p);
        // One row per bin: |y - p| averaged = mean of those gaps.
        let expected = y.iter().zip(&p).map(|(y, p)| (y - p).abs()).sum::<f64>() / 10.0;
        assert!((ece - expected).abs() < 1e-12);
        assert_eq!(bins.iter().map(|b| b.rows).sum::<usize>(), 10);
        let (precision, recall, f1) = precision_recall_f1(&y, &p, 0.5);
        assert_eq!((precision, recall, f1), (1.0, 1.0, 1.0));
        let lift = lift(&y, &p);
        assert_eq!(lift[0].positives, 1);
        assert_eq!(lift[4].cumulative_gain, 1.0);
        assert_eq!(lift[0].lift, 2.0);
    }
}
