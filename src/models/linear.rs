//! Logistic regression (L2, Newton's method) and linear/ridge regression (normal equations),
//! small and dependency-free: features are standardized on the training rows, missing
//! values are imputed with the training mean, and coefficients are reported on the original
//! scale so they can be read as "per unit of the feature".
//!
//! linfa-logistic/linfa-linear were not used: they would add ndarray, linfa and argmin to a
//! 2-core build for a problem this size (tens of features) that a Cholesky solve handles exactly.

use serde::{Deserialize, Serialize};

use super::{Matrix, ModelError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LinearParams {
    /// L2 penalty on the standardized coefficients (sklearn's `alpha`; `1/C` for logistic).
    /// `linear` defaults to 0, `ridge` and `logistic` to 1.
    pub alpha: Option<f64>,
    /// Newton iterations for `logistic`.
    pub max_iter: usize,
    /// Stop when no coefficient moves by more than this.
    pub tol: f64,
}

impl Default for LinearParams {
    fn default() -> Self {
        LinearParams {
            alpha: None,
            max_iter: 100,
            tol: 1e-8,
        }
    }
}

/// A fitted linear model: `raw = intercept + Σ coef[j] * x[j]` (original scale, missing values
/// replaced by `impute[j]`); logistic adds a sigmoid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    pub intercept: f64,
    pub coefficients: Vec<f64>,
    pub impute: Vec<f64>,
    /// Newton iterations run (logistic only).
    pub iterations: usize,
}

impl LinearModel {
    pub fn predict_raw(&self, x: &Matrix) -> Vec<f64> {
        let mut out = vec![self.intercept; x.rows];
        for (j, &c) in self.coefficients.iter().enumerate() {
            let fill = self.impute[j];
            for (o, &v) in out.iter_mut().zip(x.column(j)) {
                *o += c * if v.is_nan() { fill } else { v };
            }
        }
        out
    }
}

/// Standardized design: columns centred and scaled, missing values at 0 (the mean).
struct Standardized {
    mean: Vec<f64>,
    scale: Vec<f64>,
    cols: Vec<Vec<f64>>,
}

fn standardize(x: &Matrix) -> Standardized {
    let mut mean = Vec::new();
    let mut scale = Vec::new();
    let mut cols = Vec::new();
    for j in 0..x.cols {
        let col = x.column(j);
        let present: Vec<f64> = col.iter().copied().filter(|v| !v.is_nan()).collect();
        let m = if present.is_empty() {
            0.0
        } else {
            present.iter().sum::<f64>() / present.len() as f64
        };
        let var = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / present.len() as f64
        };
        // A constant column keeps scale 1 and contributes nothing (its centred values are 0).
        let s = if var > 0.0 { var.sqrt() } else { 1.0 };
        cols.push(
            col.iter()
                .map(|&v| if v.is_nan() { 0.0 } else { (v - m) / s })
                .collect(),
        );
        mean.push(m);
        scale.push(s);
    }
    Standardized { mean, scale, cols }
}

/// Solves `a x = b` for a symmetric positive definite `a` (row-major, n×n) by Cholesky.
fn cholesky_solve(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 1e-12 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Some(b)
}

/// Back to the original scale: `coef_j / scale_j`, intercept minus the centring.
fn unstandardize(z: &Standardized, w: &[f64], iterations: usize) -> LinearModel {
    let coefficients: Vec<f64> = w[1..].iter().zip(&z.scale).map(|(c, s)| c / s).collect();
    let intercept = w[0]
        - coefficients
            .iter()
            .zip(&z.mean)
            .map(|(c, m)| c * m)
            .sum::<f64>();
    LinearModel {
        intercept,
        coefficients,
        impute: z.mean.clone(),
        iterations,
    }
}

/// Weighted normal equations `(Zᵀ W Z + αI) Δ = rhs` with an unpenalized intercept; `w`
/// per-row weights, `r` per-row working residuals.
fn normal_equations(
    z: &Standardized,
    weights: &[f64],
    r: &[f64],
    alpha: f64,
) -> (Vec<f64>, Vec<f64>) {
    let n = z.cols.len() + 1;
    let col = |j: usize| -> Option<&Vec<f64>> { if j == 0 { None } else { Some(&z.cols[j - 1]) } };
    let mut a = vec![0.0; n * n];
    let mut b = vec![0.0; n];
    for i in 0..n {
        for j in i..n {
            let s: f64 = match (col(i), col(j)) {
                (None, None) => weights.iter().sum(),
                (None, Some(c)) | (Some(c), None) => {
                    c.iter().zip(weights).map(|(x, w)| x * w).sum()
                }
                (Some(ci), Some(cj)) => ci
                    .iter()
                    .zip(cj)
                    .zip(weights)
                    .map(|((x, y), w)| x * y * w)
                    .sum(),
            };
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
        b[i] = match col(i) {
            None => r.iter().zip(weights).map(|(r, w)| r * w).sum(),
            Some(c) => c
                .iter()
                .zip(r)
                .zip(weights)
                .map(|((x, r), w)| x * r * w)
                .sum(),
        };
        if i > 0 {
            a[i * n + i] += alpha;
        }
    }
    (a, b)
}

/// Least squares with an L2 penalty `alpha` on the standardized coefficients (sklearn's
/// Ridge on standardized features; `alpha = 0` is ordinary least squares).
pub fn train_ridge(x: &Matrix, y: &[f64], alpha: f64) -> Result<LinearModel, ModelError> {
    let z = standardize(x);
    let ones = vec![1.0; x.rows];
    let (mut a, b) = normal_equations(&z, &ones, y, alpha);
    let n = x.cols + 1;
    // Plain least squares with a constant (standardized to zero) column is singular: a tiny
    // ridge keeps its coefficient at 0 instead of failing.
    for i in 1..n {
        a[i * n + i] += 1e-9 * x.rows as f64;
    }
    let w = cholesky_solve(a, b, n)
        .ok_or_else(|| ModelError::Data("the normal equations are singular".into()))?;
    Ok(unstandardize(&z, &w, 1))
}

/// L2-penalized logistic regression by Newton's method (IRLS), objective
/// `Σ logloss + alpha/2 · |w|²` on standardized features.
/// `weights` (class weights) multiply each row's log-loss term.
pub fn train_logistic(
    x: &Matrix,
    y: &[f64],
    weights: Option<&[f64]>,
    params: &LinearParams,
) -> Result<LinearModel, ModelError> {
    let alpha = params.alpha.unwrap_or(1.0);
    let z = standardize(x);
    let n = x.cols + 1;
    let mut w = vec![0.0; n];
    let mut iterations = 0;
    for _ in 0..params.max_iter {
        iterations += 1;
        let mut eta = vec![w[0]; x.rows];
        for (j, col) in z.cols.iter().enumerate() {
            for (e, v) in eta.iter_mut().zip(col) {
                *e += w[j + 1] * v;
            }
        }
        let p: Vec<f64> = eta.iter().map(|&e| 1.0 / (1.0 + (-e).exp())).collect();
        let curvature: Vec<f64> = p.iter().map(|p| (p * (1.0 - p)).max(1e-12)).collect();
        // Newton step on the penalized log-likelihood: H Δ = gradient. With row weights s,
        // H = Zᵀ diag(s·p(1−p)) Z and the gradient Σ s (y − p) z: the same working
        // residual (y − p) / p(1−p) under weights s·p(1−p).
        let resid: Vec<f64> = p
            .iter()
            .zip(y)
            .zip(&curvature)
            .map(|((p, y), c)| (y - p) / c)
            .collect();
        let irls: Vec<f64> = match weights {
            Some(s) => curvature.iter().zip(s).map(|(c, s)| c * s).collect(),
            None => curvature,
        };
        let (a, mut b) = normal_equations(&z, &irls, &resid, alpha);
        for j in 1..n {
            b[j] -= alpha * w[j];
        }
        let step = cholesky_solve(a, b, n)
            .ok_or_else(|| ModelError::Data("the Hessian is singular".into()))?;
        let mut moved = 0.0f64;
        for (wj, s) in w.iter_mut().zip(&step) {
            *wj += s;
            moved = moved.max(s.abs());
        }
        if !moved.is_finite() {
            return Err(ModelError::Data("logistic regression diverged".into()));
        }
        if moved < params.tol {
            break;
        }
    }
    Ok(unstandardize(&z, &w, iterations))
}
