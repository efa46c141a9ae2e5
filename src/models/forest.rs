//! Decision trees and random forests (CART on histograms): the same binned, leaf-wise tree
//! grower as the GBT (`gbt.rs`), fitted to the target itself instead of to gradients. With
//! gradient `-w·y` and hessian `w`, a leaf's value `-G/H` is the leaf's (weighted) mean of y,
//! the probability of class 1 for a classifier, and a split's gain is the weighted variance
//! reduction, which for a 0/1 target is the Gini impurity reduction (Gini = 2·variance).
//! So missing values route by a learned default direction here too.
//!
//! A forest grows `n_trees` trees, each on a bootstrap sample of the rows (or a subsample
//! without replacement), and each split searches `max_features` features drawn for that
//! split (Breiman's random forest; sklearn's defaults: √p features for a classifier, all for
//! a regressor). Its prediction is the trees' mean, summed over leaves pre-scaled by
//! `1/n_trees`. Every draw comes from one seeded `ChaCha8Rng`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::gbt::{self, GbtParams, Tree, TreeInput};
use super::{Matrix, ModelError, Objective};

/// How many features each split may search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MaxFeatures {
    /// `sqrt` (√p, rounded down, at least 1), `log2`, or `all`.
    Rule(FeatureRule),
    /// A number of features, as scikit-learn reads an integer: `1` is one feature, not all of
    /// them (at most all of them). Tried before `Share`, so only a written fraction is a share.
    Count(usize),
    /// A share of the features in (0, 1] (rounded up), written with a decimal point (`1.0`).
    Share(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureRule {
    Sqrt,
    Log2,
    All,
}

impl MaxFeatures {
    fn of(self, cols: usize) -> usize {
        let k = match self {
            MaxFeatures::Rule(FeatureRule::Sqrt) => (cols as f64).sqrt().floor() as usize,
            MaxFeatures::Rule(FeatureRule::Log2) => (cols as f64).log2().floor() as usize,
            MaxFeatures::Rule(FeatureRule::All) => cols,
            MaxFeatures::Count(k) => k,
            MaxFeatures::Share(s) => (cols as f64 * s).ceil() as usize,
        };
        k.clamp(1, cols.max(1))
    }
}

/// `random_forest_*` parameters (sklearn's names where they exist; `num_leaves` and
/// `min_data_in_leaf` as for the GBT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForestParams {
    pub n_trees: usize,
    /// Maximum depth; 0 = unlimited (then `num_leaves` alone bounds a tree).
    pub max_depth: usize,
    /// Maximum leaves per tree.
    pub num_leaves: usize,
    /// Minimum rows in a leaf.
    pub min_data_in_leaf: usize,
    /// Minimum (weighted variance) gain for a split.
    pub min_gain_to_split: f64,
    /// Features searched per split (default: `sqrt` for a classifier, `all` for a regressor).
    pub max_features: Option<MaxFeatures>,
    /// Draw each tree's rows with replacement (true) or without (false).
    pub bootstrap: bool,
    /// Rows per tree as a share of the training rows (sklearn's `max_samples`).
    pub row_subsample: f64,
    /// Value bins per feature (at most 255; missing values get their own).
    pub max_bins: usize,
    /// Training threads (0 = one per core); the model does not depend on it.
    pub threads: usize,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_trees: 100,
            max_depth: 0,
            num_leaves: 1024,
            min_data_in_leaf: 5,
            min_gain_to_split: 0.0,
            max_features: None,
            bootstrap: true,
            row_subsample: 1.0,
            max_bins: 255,
            threads: 0,
        }
    }
}

/// `decision_tree_*` parameters: one tree on every training row and feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TreeParams {
    /// Maximum depth; 0 = unlimited (then `num_leaves` alone bounds the tree).
    pub max_depth: usize,
    pub num_leaves: usize,
    pub min_data_in_leaf: usize,
    pub min_gain_to_split: f64,
    pub max_bins: usize,
    pub threads: usize,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            max_depth: 8,
            num_leaves: 255,
            min_data_in_leaf: 20,
            min_gain_to_split: 0.0,
            max_bins: 255,
            threads: 0,
        }
    }
}

impl TreeParams {
    /// The forest of one tree this is: every row once, every feature at every split.
    pub fn as_forest(&self) -> ForestParams {
        ForestParams {
            n_trees: 1,
            max_depth: self.max_depth,
            num_leaves: self.num_leaves,
            min_data_in_leaf: self.min_data_in_leaf,
            min_gain_to_split: self.min_gain_to_split,
            max_features: Some(MaxFeatures::Rule(FeatureRule::All)),
            bootstrap: false,
            row_subsample: 1.0,
            max_bins: self.max_bins,
            threads: self.threads,
        }
    }
}

impl ForestParams {
    /// Fills the objective's default `max_features`, then checks every knob.
    pub fn resolve(mut self, objective: Objective) -> Result<ForestParams, String> {
        self.max_features
            .get_or_insert(MaxFeatures::Rule(match objective {
                Objective::Binary => FeatureRule::Sqrt,
                Objective::Regression => FeatureRule::All,
            }));
        if self.n_trees == 0 {
            return Err("`n_trees` must be at least 1".into());
        }
        if self.num_leaves < 2 {
            return Err("`num_leaves` must be at least 2".into());
        }
        if self.min_data_in_leaf == 0 {
            return Err("`min_data_in_leaf` must be at least 1".into());
        }
        if !(self.min_gain_to_split >= 0.0 && self.min_gain_to_split.is_finite()) {
            return Err("`min_gain_to_split` must be >= 0".into());
        }
        if !(self.row_subsample > 0.0 && self.row_subsample <= 1.0) {
            return Err("`row_subsample` must be in (0, 1]".into());
        }
        let bad_share =
            matches!(self.max_features, Some(MaxFeatures::Share(s)) if !(s > 0.0 && s <= 1.0));
        if bad_share || self.max_features == Some(MaxFeatures::Count(0)) {
            return Err(
                "`max_features` must be sqrt, log2, all, a number of features (>= 1) or a share in (0, 1] such as 0.5"
                    .into(),
            );
        }
        if !(2..=255).contains(&self.max_bins) {
            return Err("`max_bins` must be between 2 and 255".into());
        }
        Ok(self)
    }

    /// The grower's knobs: leaf values scaled by `1/n_trees` (so the sum of the trees is
    /// their mean), no L2, no hessian floor.
    fn grower(&self) -> GbtParams {
        GbtParams {
            n_trees: self.n_trees,
            learning_rate: 1.0 / self.n_trees as f64,
            num_leaves: self.num_leaves,
            max_depth: self.max_depth,
            min_data_in_leaf: self.min_data_in_leaf,
            min_sum_hessian_in_leaf: 0.0,
            l2: 0.0,
            min_gain_to_split: self.min_gain_to_split,
            max_bins: self.max_bins,
            threads: self.threads,
            ..GbtParams::default()
        }
    }
}

/// A fitted tree or forest: the prediction is the sum of the trees (leaves pre-scaled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForestModel {
    pub objective: Objective,
    pub trees: Vec<Tree>,
    /// Total split gain (weighted variance reduction) per feature.
    pub gain_importance: Vec<f64>,
}

impl ForestModel {
    /// Probabilities of class 1 (classifiers) or values (regressors).
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let threads = gbt::resolve_threads(0);
        let mut out = gbt::sum_trees(&self.trees, 0.0, x, threads);
        if self.objective == Objective::Binary {
            // The mean of leaf means lies in [0, 1]; rounding in the sum may not.
            for p in &mut out {
                *p = p.clamp(0.0, 1.0);
            }
        }
        out
    }
}

/// Fits `params.n_trees` trees on `x` (NaN = missing) and `y`, rows weighted by `weights`.
pub fn train(
    x: &Matrix,
    y: &[f64],
    weights: Option<&[f64]>,
    objective: Objective,
    params: &ForestParams,
    seed: u64,
) -> Result<ForestModel, ModelError> {
    let params = params
        .clone()
        .resolve(objective)
        .map_err(ModelError::Params)?;
    if x.rows == 0 {
        return Err(ModelError::Data("no training rows".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let all: Vec<u32> = (0..x.rows as u32).collect();
    let prepared = gbt::prepare(x, &all, params.max_bins, &mut rng);
    let w = |r: usize| weights.map_or(1.0, |w| w[r]);
    let grad: Vec<f64> = (0..x.rows).map(|r| -w(r) * y[r]).collect();
    let hess: Vec<f64> = (0..x.rows).map(w).collect();
    let grower = params.grower();
    let threads = gbt::resolve_threads(params.threads);
    let k = params.max_features.expect("resolved above").of(x.cols);
    let n_rows = ((x.rows as f64 * params.row_subsample).ceil() as usize).clamp(1, x.rows);
    let mut importance = vec![0.0; x.cols];
    let mut trees = Vec::with_capacity(params.n_trees);
    for _ in 0..params.n_trees {
        let rows = if params.bootstrap {
            let mut rows: Vec<u32> = (0..n_rows)
                .map(|_| rng.random_range(0..x.rows as u32))
                .collect();
            rows.sort_unstable();
            rows
        } else if n_rows < x.rows {
            let mut rows = rand::seq::index::sample(&mut rng, x.rows, n_rows)
                .into_iter()
                .map(|r| r as u32)
                .collect::<Vec<u32>>();
            rows.sort_unstable();
            rows
        } else {
            all.clone()
        };
        let draw_seed: u64 = rng.random();
        let input = TreeInput {
            rows,
            grad: &grad,
            hess: &hess,
            features: (0..x.cols).collect(),
            split_draw: (k < x.cols).then_some((k, draw_seed)),
            threads,
        };
        let (tree, _) = gbt::grow_tree(&prepared, &grower, input, &mut importance);
        trees.push(tree);
    }
    Ok(ForestModel {
        objective,
        trees,
        gain_importance: importance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_integer_max_features_counts_features_and_a_decimal_is_a_share() {
        let read = |v: serde_json::Value| serde_json::from_value::<MaxFeatures>(v).expect("parses");
        // scikit-learn's reading: the integer 1 is one feature, 1.0 all of them.
        assert_eq!(read(serde_json::json!(1)), MaxFeatures::Count(1));
        assert_eq!(read(serde_json::json!(1)).of(10), 1);
        assert_eq!(read(serde_json::json!(3)).of(10), 3);
        assert_eq!(read(serde_json::json!(30)).of(10), 10);
        assert_eq!(read(serde_json::json!(1.0)), MaxFeatures::Share(1.0));
        assert_eq!(read(serde_json::json!(1.0)).of(10), 10);
        assert_eq!(read(serde_json::json!(0.25)).of(10), 3);
        assert_eq!(read(serde_json::json!("sqrt")).of(10), 3);
        let resolve = |m| {
            ForestParams {
                max_features: Some(m),
                ..Default::default()
            }
            .resolve(Objective::Binary)
        };
        assert!(
            resolve(MaxFeatures::Count(0))
                .unwrap_err()
                .contains("number of features")
        );
        assert!(resolve(MaxFeatures::Share(1.5)).is_err());
        assert!(resolve(MaxFeatures::Count(2)).is_ok());
    }

    /// y = 1 exactly when x0 > 0.5 or x1 is missing; x2 is noise.
    fn rule(n: usize) -> (Matrix, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (mut a, mut b, mut c, mut y) = (vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            // Ten distinct values: each gets its own bin, so a split can sit exactly at 0.5.
            let x0 = f64::from(rng.random_range(0..10u8)) / 10.0;
            let x1: f64 = if rng.random_bool(0.2) {
                f64::NAN
            } else {
                rng.random_range(0.0..1.0)
            };
            y.push(f64::from(u8::from(x0 > 0.5 || x1.is_nan())));
            a.push(x0);
            b.push(x1);
            c.push(rng.random_range(0.0..1.0));
        }
        (Matrix::from_columns(vec![a, b, c]), y)
    }

    #[test]
    fn a_decision_tree_learns_a_rule_with_a_missing_branch_and_leaf_means() {
        let (x, y) = rule(2000);
        let params = TreeParams {
            max_depth: 3,
            min_data_in_leaf: 1,
            ..Default::default()
        };
        let model = train(&x, &y, None, Objective::Binary, &params.as_forest(), 1).unwrap();
        assert_eq!(model.trees.len(), 1);
        let p = model.predict(&x);
        // The rule is exact in two splits: every row is classified right.
        let wrong = p
            .iter()
            .zip(&y)
            .filter(|(p, y)| (**p > 0.5) != (**y == 1.0))
            .count();
        assert_eq!(wrong, 0);
        // Leaves are means of 0/1 labels: pure leaves give exactly 0 or 1.
        assert!(p.iter().all(|&v| v == 0.0 || v == 1.0), "{:?}", &p[..10]);
        // The noise feature gains (almost) nothing next to the two real ones.
        let g = &model.gain_importance;
        assert!(g[0] > 10.0 * g[2] && g[1] > 10.0 * g[2], "{g:?}");
    }

    #[test]
    fn class_weights_move_a_leaf_mean() {
        // One leaf (no split possible): its value is the weighted share of class 1.
        let x = Matrix::from_columns(vec![vec![1.0; 4]]);
        let y = [1.0, 0.0, 0.0, 0.0];
        let params = TreeParams::default().as_forest();
        let plain = train(&x, &y, None, Objective::Binary, &params, 1).unwrap();
        assert_eq!(plain.predict(&x)[0], 0.25);
        let weighted = train(
            &x,
            &y,
            Some(&[3.0, 1.0, 1.0, 1.0]),
            Objective::Binary,
            &params,
            1,
        )
        .unwrap();
        assert_eq!(weighted.predict(&x)[0], 0.5);
    }

    #[test]
    fn a_forest_averages_its_trees_and_depends_on_the_seed_only() {
        let (x, y) = rule(3000);
        let params = ForestParams {
            n_trees: 20,
            ..Default::default()
        }
        .resolve(Objective::Binary)
        .unwrap();
        assert_eq!(
            params.max_features,
            Some(MaxFeatures::Rule(FeatureRule::Sqrt))
        );
        let a = train(&x, &y, None, Objective::Binary, &params, 9).unwrap();
        let b = train(&x, &y, None, Objective::Binary, &params, 9).unwrap();
        let c = train(&x, &y, None, Objective::Binary, &params, 10).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Each split saw one of three features, so the trees differ from one another.
        assert_ne!(a.trees[0], a.trees[1]);
        let p = a.predict(&x);
        let mean_of_trees: Vec<f64> = (0..x.rows)
            .map(|r| {
                a.trees
                    .iter()
                    .map(|t| gbt::sum_trees(std::slice::from_ref(t), 0.0, &x.take(&[r]), 1)[0])
                    .sum::<f64>()
            })
            .collect();
        for (p, m) in p.iter().zip(&mean_of_trees) {
            assert!((p - m.clamp(0.0, 1.0)).abs() < 1e-12);
        }
        let accuracy = p
            .iter()
            .zip(&y)
            .filter(|(p, y)| (**p > 0.5) == (**y == 1.0))
            .count() as f64
            / y.len() as f64;
        assert!(accuracy > 0.97, "{accuracy}");
    }

    #[test]
    fn a_regression_forest_tracks_a_step() {
        let (x, _) = rule(2000);
        let y: Vec<f64> = (0..x.rows)
            .map(|r| if x.get(r, 0) > 0.5 { 10.0 } else { 2.0 })
            .collect();
        let params = ForestParams {
            n_trees: 10,
            ..Default::default()
        };
        let model = train(&x, &y, None, Objective::Regression, &params, 4).unwrap();
        let p = model.predict(&x);
        let rmse = (p
            .iter()
            .zip(&y)
            .map(|(p, y)| (p - y) * (p - y))
            .sum::<f64>()
            / y.len() as f64)
            .sqrt();
        assert!(rmse < 0.5, "{rmse}");
    }
}
