//! Models: one `Model` type over several algorithms (histogram gradient-boosted trees,
//! decision trees and random forests on the same tree grower, logistic, linear and ridge
//! regression), their training, prediction, importance and
//! deterministic serialization, and the holdout metrics (`metrics`). Pure: no IO, no Arrow;
//! the `train` and `score` tasks move rows in and out.
//!
//! The artefact is JSON written from structs (fields in declaration order, floats printed by
//! serde_json's shortest round-trip formatting), so the same rows and seed give the same bytes.

pub mod card;
pub mod forest;
pub mod gbt;
pub mod linear;
pub mod metrics;
pub mod promotion;

use serde::{Deserialize, Serialize};

/// Why training failed; the task names itself and the column around it.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid parameters: {0}")]
    Params(String),
    #[error("{0}")]
    Data(String),
    #[error("cannot read the model artefact: {0}")]
    Artefact(String),
}

/// A dense feature matrix, column-major; NaN marks a missing value.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    data: Vec<f64>,
}

impl Matrix {
    /// From columns of equal length.
    pub fn from_columns(columns: Vec<Vec<f64>>) -> Matrix {
        let rows = columns.first().map_or(0, Vec::len);
        let cols = columns.len();
        let mut data = Vec::with_capacity(rows * cols);
        for c in columns {
            assert_eq!(c.len(), rows, "columns of one matrix have equal lengths");
            data.extend(c);
        }
        Matrix { rows, cols, data }
    }

    pub fn column(&self, j: usize) -> &[f64] {
        &self.data[j * self.rows..(j + 1) * self.rows]
    }

    pub fn get(&self, row: usize, col: usize) -> f64 {
        self.data[col * self.rows + row]
    }

    /// The given rows, in the given order.
    pub fn take(&self, rows: &[usize]) -> Matrix {
        let columns = (0..self.cols)
            .map(|j| {
                let col = self.column(j);
                rows.iter().map(|&r| col[r]).collect()
            })
            .collect();
        let mut m = Matrix::from_columns(columns);
        m.rows = rows.len();
        m
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Binary log-loss; predictions are probabilities of class 1.
    Binary,
    /// Squared error; predictions are values.
    Regression,
}

/// The algorithms a `train` task can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Histogram gradient-boosted trees, binary log-loss.
    GbtClassifier,
    /// Histogram gradient-boosted trees, squared error.
    GbtRegressor,
    /// L2-penalized logistic regression (propensity; coefficients reported).
    Logistic,
    /// Ordinary least squares.
    Linear,
    /// Least squares with an L2 penalty.
    Ridge,
    /// One CART tree on histograms (Gini / variance reduction); leaves are class-1 shares.
    DecisionTreeClassifier,
    /// One CART tree on histograms (variance reduction); leaves are means.
    DecisionTreeRegressor,
    /// Bootstrap-aggregated trees with a feature draw per split; the trees' mean probability.
    RandomForestClassifier,
    /// Bootstrap-aggregated trees with a feature draw per split; the trees' mean.
    RandomForestRegressor,
}

impl Algorithm {
    pub fn objective(self) -> Objective {
        match self {
            Algorithm::GbtClassifier
            | Algorithm::Logistic
            | Algorithm::DecisionTreeClassifier
            | Algorithm::RandomForestClassifier => Objective::Binary,
            Algorithm::GbtRegressor
            | Algorithm::Linear
            | Algorithm::Ridge
            | Algorithm::DecisionTreeRegressor
            | Algorithm::RandomForestRegressor => Objective::Regression,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::GbtClassifier => "gbt_classifier",
            Algorithm::GbtRegressor => "gbt_regressor",
            Algorithm::Logistic => "logistic",
            Algorithm::Linear => "linear",
            Algorithm::Ridge => "ridge",
            Algorithm::DecisionTreeClassifier => "decision_tree_classifier",
            Algorithm::DecisionTreeRegressor => "decision_tree_regressor",
            Algorithm::RandomForestClassifier => "random_forest_classifier",
            Algorithm::RandomForestRegressor => "random_forest_regressor",
        }
    }

    /// Parses the `params:` of a train task for this algorithm (unknown keys are errors).
    pub fn params(self, value: serde_json::Value) -> Result<Params, String> {
        let params = match self {
            Algorithm::GbtClassifier | Algorithm::GbtRegressor => {
                let p: gbt::GbtParams = serde_json::from_value(value).map_err(|e| e.to_string())?;
                p.check()?;
                Params::Gbt(p)
            }
            Algorithm::DecisionTreeClassifier | Algorithm::DecisionTreeRegressor => {
                let p: forest::TreeParams =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                p.as_forest().resolve(self.objective())?;
                Params::Tree(p)
            }
            Algorithm::RandomForestClassifier | Algorithm::RandomForestRegressor => {
                let p: forest::ForestParams =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                // Record the feature draw actually used, not "the default".
                Params::Forest(p.resolve(self.objective())?)
            }
            Algorithm::Logistic | Algorithm::Linear | Algorithm::Ridge => {
                let mut p: linear::LinearParams =
                    serde_json::from_value(value).map_err(|e| e.to_string())?;
                // Record the penalty actually used, not "the default".
                p.alpha =
                    Some(
                        p.alpha
                            .unwrap_or(if self == Algorithm::Linear { 0.0 } else { 1.0 }),
                    );
                if p.alpha.is_some_and(|a| !(a >= 0.0 && a.is_finite())) {
                    return Err("`alpha` must be >= 0".into());
                }
                if self == Algorithm::Logistic && p.alpha == Some(0.0) {
                    return Err("`alpha` must be > 0 for logistic (separable data has no unpenalized optimum)".into());
                }
                Params::Linear(p)
            }
        };
        Ok(params)
    }
}

/// Hyperparameters, resolved with their defaults (what metadata records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Params {
    Gbt(gbt::GbtParams),
    Tree(forest::TreeParams),
    Forest(forest::ForestParams),
    Linear(linear::LinearParams),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    Gbt(gbt::GbtModel),
    /// A decision tree (one tree) or a random forest; predicts probabilities or values.
    Forest(forest::ForestModel),
    Linear(linear::LinearModel),
}

/// A trained model: what the artefact holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Artefact format version.
    pub format: u32,
    pub algorithm: Algorithm,
    pub objective: Objective,
    /// Feature names in the order the model reads them.
    pub features: Vec<String>,
    pub body: Body,
}

/// One feature's importance: total split gain for trees, |coefficient| × the feature's
/// standard deviation for linear models (the coefficient itself is kept too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub feature: String,
    pub importance: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coefficient: Option<f64>,
}

pub const FORMAT: u32 = 1;

/// Trains `algorithm` on `x` (features named `features`) and targets `y`; a classifier's
/// rows may carry `weights` (class weights: each row counts that many times in the loss).
pub fn train(
    algorithm: Algorithm,
    params: &Params,
    features: Vec<String>,
    x: &Matrix,
    y: &[f64],
    weights: Option<&[f64]>,
    seed: u64,
) -> Result<Model, ModelError> {
    let objective = algorithm.objective();
    if weights.is_some() && objective != Objective::Binary {
        return Err(ModelError::Params(format!(
            "class weights apply to classifiers, not `{}`",
            algorithm.name()
        )));
    }
    if let Some(w) = weights
        && (w.len() != y.len() || w.iter().any(|w| !(*w > 0.0 && w.is_finite())))
    {
        return Err(ModelError::Params(
            "row weights must be positive and finite, one per row".into(),
        ));
    }
    let body = match (algorithm, params) {
        (Algorithm::GbtClassifier | Algorithm::GbtRegressor, Params::Gbt(p)) => {
            Body::Gbt(gbt::train(x, y, weights, objective, p, seed)?)
        }
        (Algorithm::DecisionTreeClassifier | Algorithm::DecisionTreeRegressor, Params::Tree(p)) => {
            Body::Forest(forest::train(
                x,
                y,
                weights,
                objective,
                &p.as_forest(),
                seed,
            )?)
        }
        (
            Algorithm::RandomForestClassifier | Algorithm::RandomForestRegressor,
            Params::Forest(p),
        ) => Body::Forest(forest::train(x, y, weights, objective, p, seed)?),
        (Algorithm::Logistic, Params::Linear(p)) => {
            Body::Linear(linear::train_logistic(x, y, weights, p)?)
        }
        (Algorithm::Linear, Params::Linear(p)) => {
            Body::Linear(linear::train_ridge(x, y, p.alpha.unwrap_or(0.0))?)
        }
        (Algorithm::Ridge, Params::Linear(p)) => {
            Body::Linear(linear::train_ridge(x, y, p.alpha.unwrap_or(1.0))?)
        }
        _ => {
            return Err(ModelError::Params(format!(
                "parameters do not fit `{}` (this is a bug)",
                algorithm.name()
            )));
        }
    };
    Ok(Model {
        format: FORMAT,
        algorithm,
        objective,
        features,
        body,
    })
}

impl Model {
    /// Probabilities of class 1 (classifiers) or values (regressors); `x` has the model's
    /// features in its order.
    pub fn predict(&self, x: &Matrix) -> Vec<f64> {
        let raw = match &self.body {
            Body::Gbt(m) => m.predict_raw(x),
            Body::Linear(m) => m.predict_raw(x),
            // Already probabilities (leaf means of 0/1) or values: no link.
            Body::Forest(m) => return m.predict(x),
        };
        match self.objective {
            Objective::Binary => raw.into_iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect(),
            Objective::Regression => raw,
        }
    }

    /// Importance per feature, largest first (ties by name).
    pub fn importance(&self, x: &Matrix) -> Vec<Importance> {
        let mut out: Vec<Importance> = match &self.body {
            Body::Gbt(gbt::GbtModel {
                gain_importance, ..
            })
            | Body::Forest(forest::ForestModel {
                gain_importance, ..
            }) => self
                .features
                .iter()
                .zip(gain_importance)
                .map(|(f, &g)| Importance {
                    feature: f.clone(),
                    importance: g,
                    coefficient: None,
                })
                .collect(),
            Body::Linear(m) => self
                .features
                .iter()
                .enumerate()
                .map(|(j, f)| {
                    let col: Vec<f64> = x
                        .column(j)
                        .iter()
                        .copied()
                        .filter(|v| !v.is_nan())
                        .collect();
                    let n = col.len().max(1) as f64;
                    let mean = col.iter().sum::<f64>() / n;
                    let sd = (col.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
                    Importance {
                        feature: f.clone(),
                        importance: m.coefficients[j].abs() * sd,
                        coefficient: Some(m.coefficients[j]),
                    }
                })
                .collect(),
        };
        out.sort_by(|a, b| {
            b.importance
                .total_cmp(&a.importance)
                .then_with(|| a.feature.cmp(&b.feature))
        });
        out
    }

    /// The artefact bytes (pretty JSON, so a diff of two versions is readable).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        // JSON has no NaN or infinity (serde_json would write null and fail to read it back).
        let value = serde_json::to_value(self).map_err(|e| ModelError::Artefact(e.to_string()))?;
        if has_null_number(&value) {
            return Err(ModelError::Data(
                "training produced a non-finite number (check the features' scales)".into(),
            ));
        }
        let mut bytes =
            serde_json::to_vec_pretty(self).map_err(|e| ModelError::Artefact(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let model: Model =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Artefact(e.to_string()))?;
        if model.format != FORMAT {
            return Err(ModelError::Artefact(format!(
                "artefact format {} is not supported (this nightjar reads format {FORMAT})",
                model.format
            )));
        }
        Ok(model)
    }
}

fn has_null_number(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.iter().any(has_null_number),
        serde_json::Value::Object(o) => o.values().any(has_null_number),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Rows with a known signal: y depends on x0 (strongly), x1 (weakly, through missingness)
    /// and not on x2.
    fn planted(n: usize, seed: u64) -> (Matrix, Vec<f64>, Vec<f64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let (mut x0, mut x1, mut x2, mut yb, mut yr) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let a: f64 = rng.random_range(-2.0..2.0);
            let b: f64 = if rng.random_bool(0.2) {
                f64::NAN
            } else {
                rng.random_range(0.0..1.0)
            };
            let c: f64 = rng.random_range(0.0..1.0);
            let z = 2.0 * a + if b.is_nan() { 1.0 } else { -0.5 };
            yb.push(f64::from(rng.random_bool(1.0 / (1.0 + (-z).exp()))));
            yr.push(3.0 * a + if b.is_nan() { 2.0 } else { b } + rng.random_range(-0.5..0.5));
            x0.push(a);
            x1.push(b);
            x2.push(c);
        }
        (Matrix::from_columns(vec![x0, x1, x2]), yb, yr)
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into(), "c".into()]
    }

    #[test]
    fn gbt_classifier_learns_the_planted_signal_and_routes_missing_values() {
        let (x, y, _) = planted(3000, 1);
        let (xt, yt, _) = planted(2000, 2);
        let params = Params::Gbt(gbt::GbtParams {
            n_trees: 60,
            learning_rate: 0.1,
            num_leaves: 8,
            ..Default::default()
        });
        let model = train(Algorithm::GbtClassifier, &params, names(), &x, &y, None, 7).unwrap();
        let p = model.predict(&xt);
        let auc = metrics::roc_auc(&yt, &p).unwrap();
        // The Bayes-optimal AUC for this design is about 0.87.
        assert!(auc > 0.84, "auc {auc}");
        let importance = model.importance(&x);
        assert_eq!(importance[0].feature, "a");
        assert_eq!(importance[1].feature, "b");
        // Some split on `b` sends missing values the learned way (they raise the odds).
        let Body::Gbt(g) = &model.body else {
            panic!("gbt body")
        };
        assert!(
            g.trees
                .iter()
                .flat_map(|t| &t.nodes)
                .any(|n| n.left != 0 && n.feature == 1)
        );
        let mut missing = xt.take(&[0]);
        let mut present = xt.take(&[0]);
        missing.data[1] = f64::NAN;
        present.data[1] = 0.5;
        assert!(model.predict(&missing)[0] > model.predict(&present)[0]);
    }

    #[test]
    fn same_data_and_seed_give_byte_identical_artefacts() {
        let (x, y, _) = planted(1500, 3);
        let params = Params::Gbt(gbt::GbtParams {
            n_trees: 20,
            row_subsample: 0.7,
            feature_subsample: 0.67,
            early_stopping_rounds: 5,
            ..Default::default()
        });
        let a = train(Algorithm::GbtClassifier, &params, names(), &x, &y, None, 11).unwrap();
        let b = train(Algorithm::GbtClassifier, &params, names(), &x, &y, None, 11).unwrap();
        let c = train(Algorithm::GbtClassifier, &params, names(), &x, &y, None, 12).unwrap();
        let (ba, bb, bc) = (
            a.to_bytes().unwrap(),
            b.to_bytes().unwrap(),
            c.to_bytes().unwrap(),
        );
        assert_eq!(ba, bb);
        assert_ne!(ba, bc, "another seed draws other rows");
        // The artefact reads back to the same model. serde_json parses floats to within one
        // ulp (exact parsing is its `float_roundtrip` feature, a rebuild of every dependent),
        // so predictions agree to 1e-12; the train task scores its holdout with the model
        // read back from the artefact, so holdout and batch scores are the same numbers.
        let back = Model::from_bytes(&ba).unwrap();
        assert_eq!(back.features, a.features);
        for (p, q) in back.predict(&x).iter().zip(a.predict(&x)) {
            assert!((p - q).abs() < 1e-12);
        }
    }

    #[test]
    fn histogram_threads_do_not_change_the_model() {
        // Big enough that root histograms, gradients and row partitions go on several threads.
        let (x, y, _) = planted(30_000, 8);
        let fit = |threads| {
            let params = Params::Gbt(gbt::GbtParams {
                n_trees: 3,
                threads,
                // Unsampled features leave empty histograms that no thread may touch.
                feature_subsample: 0.67,
                ..Default::default()
            });
            train(Algorithm::GbtClassifier, &params, names(), &x, &y, None, 5)
                .unwrap()
                .to_bytes()
                .unwrap()
        };
        // Two and three threads cut the rows, gradients and partitions differently.
        let one = fit(1);
        assert_eq!(one, fit(2));
        assert_eq!(one, fit(3));
    }

    #[test]
    fn early_stopping_keeps_the_best_round() {
        let (x, y, _) = planted(1500, 4);
        let params = Params::Gbt(gbt::GbtParams {
            n_trees: 400,
            learning_rate: 0.3,
            num_leaves: 31,
            min_data_in_leaf: 5,
            early_stopping_rounds: 10,
            ..Default::default()
        });
        let model = train(Algorithm::GbtClassifier, &params, names(), &x, &y, None, 1).unwrap();
        let Body::Gbt(g) = &model.body else {
            panic!("gbt body")
        };
        assert!(g.trees.len() < 100, "stopped at {}", g.trees.len());
        assert_eq!(g.trees.len(), g.best_round);
        assert_eq!(g.validation_loss.len(), g.best_round + 10);
        let best = g.validation_loss[g.best_round - 1];
        assert!(g.validation_loss.iter().all(|&l| l >= best));
    }

    #[test]
    fn regressors_fit_the_planted_line() {
        let (x, _, y) = planted(3000, 5);
        let (xt, _, yt) = planted(1000, 6);
        let gbt = train(
            Algorithm::GbtRegressor,
            &Params::Gbt(gbt::GbtParams {
                n_trees: 100,
                ..Default::default()
            }),
            names(),
            &x,
            &y,
            None,
            1,
        )
        .unwrap();
        let r = metrics::regression(&yt, &gbt.predict(&xt));
        assert!(r.r2 > 0.95, "gbt r2 {}", r.r2);
        let ridge = train(
            Algorithm::Linear,
            &Algorithm::Linear.params(serde_json::json!({})).unwrap(),
            names(),
            &x,
            &y,
            None,
            1,
        )
        .unwrap();
        let Body::Linear(l) = &ridge.body else {
            panic!("linear body")
        };
        // y = 3a + b (+ noise), b's missing values imputed with its mean.
        assert!(
            (l.coefficients[0] - 3.0).abs() < 0.05,
            "{:?}",
            l.coefficients
        );
        assert!(l.coefficients[2].abs() < 0.1, "{:?}", l.coefficients);
    }

    #[test]
    fn logistic_recovers_coefficients_like_sklearn() {
        // Noise-free logits with a large sample: the MLE approaches the true coefficients.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let n = 20_000;
        let (mut a, mut b, mut y) = (vec![], vec![], vec![]);
        for _ in 0..n {
            let xa: f64 = rng.random_range(-2.0..2.0);
            let xb: f64 = rng.random_range(0.0..10.0);
            let z = -1.0 + 1.5 * xa - 0.2 * xb;
            y.push(f64::from(rng.random_bool(1.0 / (1.0 + (-z).exp()))));
            a.push(xa);
            b.push(xb);
        }
        let x = Matrix::from_columns(vec![a, b]);
        let params = Algorithm::Logistic
            .params(serde_json::json!({"alpha": 1e-6}))
            .unwrap();
        let model = train(
            Algorithm::Logistic,
            &params,
            vec!["a".into(), "b".into()],
            &x,
            &y,
            None,
            0,
        )
        .unwrap();
        let Body::Linear(l) = &model.body else {
            panic!("linear body")
        };
        assert!(
            (l.coefficients[0] - 1.5).abs() < 0.08,
            "{:?}",
            l.coefficients
        );
        assert!(
            (l.coefficients[1] + 0.2).abs() < 0.03,
            "{:?}",
            l.coefficients
        );
        assert!((l.intercept + 1.0).abs() < 0.15, "{}", l.intercept);
        let importance = model.importance(&x);
        assert_eq!(importance[0].feature, "a");
        assert_eq!(importance[0].coefficient, Some(l.coefficients[0]));
    }

    #[test]
    fn params_are_checked_per_algorithm() {
        let err = Algorithm::GbtClassifier
            .params(serde_json::json!({"n_trees": 10, "alpha": 1}))
            .unwrap_err();
        assert!(err.contains("unknown field `alpha`"), "{err}");
        let err = Algorithm::GbtRegressor
            .params(serde_json::json!({"row_subsample": 1.5}))
            .unwrap_err();
        assert!(err.contains("row_subsample"), "{err}");
        assert!(
            Algorithm::Logistic
                .params(serde_json::json!({"alpha": 0.0}))
                .is_err()
        );
    }

    #[test]
    fn class_weights_count_a_row_that_many_times() {
        let (full, y, _) = planted(2000, 21);
        // Without x1 (its missing values are imputed with a mean the duplicates would move)
        // and with a negligible penalty (on standardized coefficients, whose scale the
        // duplicates also move), weights and duplicates have the same optimum.
        let x = Matrix::from_columns(vec![full.column(0).to_vec(), full.column(2).to_vec()]);
        let names = || vec!["x0".to_string(), "x2".to_string()];
        let params = Algorithm::Logistic
            .params(serde_json::json!({"alpha": 1e-9}))
            .unwrap();
        // Weight 2 on every class-1 row = every class-1 row twice (logistic's loss is a sum).
        let weights: Vec<f64> = y
            .iter()
            .map(|&v| if v == 1.0 { 2.0 } else { 1.0 })
            .collect();
        let weighted = train(
            Algorithm::Logistic,
            &params,
            names(),
            &x,
            &y,
            Some(&weights),
            0,
        )
        .unwrap();
        let twice: Vec<usize> = (0..x.rows)
            .flat_map(|r| std::iter::repeat_n(r, if y[r] == 1.0 { 2 } else { 1 }))
            .collect();
        let y_twice: Vec<f64> = twice.iter().map(|&r| y[r]).collect();
        let duplicated = train(
            Algorithm::Logistic,
            &params,
            names(),
            &x.take(&twice),
            &y_twice,
            None,
            0,
        )
        .unwrap();
        let (Body::Linear(a), Body::Linear(b)) = (&weighted.body, &duplicated.body) else {
            panic!("linear bodies")
        };
        for (p, q) in a.coefficients.iter().zip(&b.coefficients) {
            assert!(
                (p - q).abs() < 1e-6,
                "{:?} vs {:?}",
                a.coefficients,
                b.coefficients
            );
        }
        // Trees: heavier class-1 rows raise every predicted probability's mean.
        let gbt = Params::Gbt(gbt::GbtParams {
            n_trees: 20,
            ..Default::default()
        });
        let mean = |w: Option<&[f64]>| {
            let m = train(Algorithm::GbtClassifier, &gbt, names(), &x, &y, w, 1).unwrap();
            let p = m.predict(&x);
            p.iter().sum::<f64>() / p.len() as f64
        };
        let heavy: Vec<f64> = y
            .iter()
            .map(|&v| if v == 1.0 { 4.0 } else { 1.0 })
            .collect();
        let (plain, weighted) = (mean(None), mean(Some(&heavy)));
        assert!(weighted > plain + 0.1, "{plain} -> {weighted}");
        // Regressors have no classes.
        let err = train(Algorithm::Ridge, &params, names(), &x, &y, Some(&heavy), 0).unwrap_err();
        assert!(
            err.to_string()
                .contains("class weights apply to classifiers")
        );
    }
}
