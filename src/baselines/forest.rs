//! Random-forest regression (Breiman 2001), one forest per label, fitted by `smartcore`'s
//! `RandomForestRegressor` (100 trees, leaves of at least 5 stars, a third of the pixels tried at each
//! split, seeded). specnn keeps each fitted tree as flat arrays (split pixel, threshold, children, leaf
//! value) and predicts by walking them, as `smartcore` does: `x[pixel] <= threshold` goes to the first
//! child. Thresholds are stored as the largest f32 not above smartcore's f64 threshold, which gives
//! exactly the same branch for every f32 input.

use super::{per_label, rows_f64, tensor};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayD};
use rayon::prelude::*;
use serde_json::Value;
use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;
use std::collections::BTreeMap;

/// The trees of one label's forest, flattened: node `i` splits on `feature[i]` at `threshold[i]`,
/// with children `left[i]` (taken when `x <= threshold`) and `right[i]`; a leaf has `left = -1`.
#[derive(Clone, Debug, Default)]
pub struct Trees {
    pub roots: Vec<usize>,
    pub feature: Vec<u32>,
    pub threshold: Vec<f32>,
    pub left: Vec<i64>,
    pub right: Vec<i64>,
    pub value: Vec<f64>,
}

/// One forest per label.
#[derive(Clone, Debug)]
pub struct Forest {
    pub inputs: usize,
    pub trees: Vec<Trees>,
}

/// The largest f32 that is not above `t`.
fn f32_at_most(t: f64) -> f32 {
    let f = t as f32;
    if (f as f64) > t {
        f32::from_bits(if f > 0.0 {
            f.to_bits() - 1
        } else if f == 0.0 {
            0x8000_0001
        } else {
            f.to_bits() + 1
        })
    } else {
        f
    }
}

/// Reads the fitted trees out of smartcore's serialised form.
fn flatten(model: &Value) -> Result<Trees> {
    let bad = |what: &str| Error::Data(format!("random forest: unexpected smartcore model layout ({what})"));
    let trees = model.pointer("/forest_regressor/trees").and_then(Value::as_array).ok_or_else(|| bad("no trees"))?;
    let mut out = Trees::default();
    for tree in trees {
        let nodes = tree.get("nodes").and_then(Value::as_array).ok_or_else(|| bad("no nodes"))?;
        let base = out.feature.len();
        out.roots.push(base);
        for n in nodes {
            let child = |k: &str| n.get(k).and_then(Value::as_u64).map(|c| (base + c as usize) as i64).unwrap_or(-1);
            out.feature.push(n.get("split_feature").and_then(Value::as_u64).unwrap_or(0) as u32);
            out.threshold.push(n.get("split_value").and_then(Value::as_f64).map(f32_at_most).unwrap_or(0.0));
            out.left.push(child("true_child"));
            out.right.push(child("false_child"));
            out.value.push(n.get("output").and_then(Value::as_f64).ok_or_else(|| bad("node without output"))?);
        }
    }
    Ok(out)
}

impl Trees {
    fn predict_row(&self, x: &[f32]) -> f64 {
        let mut sum = 0.0;
        for &root in &self.roots {
            sum += self.leaf(root, x);
        }
        sum / self.roots.len() as f64
    }

    fn leaf(&self, root: usize, x: &[f32]) -> f64 {
        let mut i = root;
        while self.left[i] >= 0 {
            i = if x[self.feature[i] as usize] <= self.threshold[i] {
                self.left[i] as usize
            } else {
                self.right[i] as usize
            };
        }
        self.value[i]
    }

    /// `predict_row` (the same sum, so the same bits) and the trees' standard deviation, from one walk
    /// of each tree.
    fn predict_row_spread(&self, x: &[f32]) -> (f64, f64) {
        let v: Vec<f64> = self.roots.iter().map(|&r| self.leaf(r, x)).collect();
        let m = v.iter().fold(0.0, |s, a| s + a) / v.len() as f64;
        (m, (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0)).sqrt())
    }
}

/// smartcore's own prediction, for the tests that check specnn's tree walk against it.
pub fn smartcore_fit_predict(
    x: &[Vec<f32>],
    y: &[f64],
    rows: &[usize],
    test: &[usize],
    seed: u64,
) -> Result<(Trees, Vec<f64>)> {
    let (model, _) = fit_one(x, y, rows, seed)?;
    let xt = DenseMatrix::from_2d_vec(&rows_f64(x, test)).map_err(|e| Error::Data(format!("random forest: {e}")))?;
    let want: Vec<f64> = model.predict(&xt).map_err(|e| Error::Data(format!("random forest: {e}")))?;
    let v = serde_json::to_value(&model).map_err(|e| Error::Data(format!("random forest: {e}")))?;
    Ok((flatten(&v)?, want))
}

type Rf = RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>;

fn fit_one(x: &[Vec<f32>], y: &[f64], rows: &[usize], seed: u64) -> Result<(Rf, usize)> {
    let xm = DenseMatrix::from_2d_vec(&rows_f64(x, rows)).map_err(|e| Error::Data(format!("random forest: {e}")))?;
    let yv: Vec<f64> = rows.iter().map(|&r| y[r]).collect();
    let features = x[rows[0]].len();
    let params = RandomForestRegressorParameters::default()
        .with_n_trees(100)
        .with_min_samples_leaf(5)
        .with_m((features / 3).max(1))
        .with_seed(seed);
    let m = RandomForestRegressor::fit(&xm, &yv, params).map_err(|e| Error::Data(format!("random forest: {e}")))?;
    Ok((m, features))
}

impl Forest {
    /// Fits one forest per label on the stars of `rows` that have it.
    pub fn fit(x: &[Vec<f32>], z: &Array2<f64>, rows: &[usize], seed: u64) -> Result<Self> {
        let inputs = x[rows[0]].len();
        let trees = per_label("random forest", z, rows, |j, y, known| {
            let (m, _) = fit_one(x, y, known, seed.wrapping_add(j as u64))?;
            let v = serde_json::to_value(&m).map_err(|e| Error::Data(format!("random forest: {e}")))?;
            flatten(&v)
        })?;
        Ok(Self { inputs, trees })
    }

    /// Standardised labels of `x[rows]`.
    pub fn predict(&self, x: &[Vec<f32>], rows: &[usize]) -> Array2<f64> {
        let est: Vec<Vec<f64>> =
            rows.par_iter().map(|&r| self.trees.iter().map(|t| t.predict_row(&x[r])).collect()).collect();
        Array2::from_shape_fn((rows.len(), self.trees.len()), |(i, j)| est[i][j])
    }

    /// Estimates for `x[rows]` and the trees' spread per label.
    pub fn predict_spread(&self, x: &[Vec<f32>], rows: &[usize]) -> (Array2<f64>, Array2<f64>) {
        let est: Vec<Vec<(f64, f64)>> =
            rows.par_iter().map(|&r| self.trees.iter().map(|t| t.predict_row_spread(&x[r])).collect()).collect();
        let dim = (rows.len(), self.trees.len());
        (Array2::from_shape_fn(dim, |(i, j)| est[i][j].0), Array2::from_shape_fn(dim, |(i, j)| est[i][j].1))
    }

    pub fn to_tensors(&self) -> BTreeMap<String, ArrayD<f32>> {
        let mut t = BTreeMap::new();
        let vec = |v: Vec<f32>| Array1::from(v).into_dyn();
        t.insert("rf.inputs".into(), vec(vec![self.inputs as f32]));
        for (j, tr) in self.trees.iter().enumerate() {
            // Indices below 2^24 are exact in f32; forests here have far fewer nodes.
            t.insert(format!("rf.{j}.roots"), vec(tr.roots.iter().map(|&v| v as f32).collect()));
            t.insert(format!("rf.{j}.feature"), vec(tr.feature.iter().map(|&v| v as f32).collect()));
            t.insert(format!("rf.{j}.threshold"), vec(tr.threshold.clone()));
            t.insert(format!("rf.{j}.left"), vec(tr.left.iter().map(|&v| v as f32).collect()));
            t.insert(format!("rf.{j}.right"), vec(tr.right.iter().map(|&v| v as f32).collect()));
            t.insert(format!("rf.{j}.value"), vec(tr.value.iter().map(|&v| v as f32).collect()));
        }
        t
    }

    pub fn from_tensors(t: &BTreeMap<String, ArrayD<f32>>) -> Result<Self> {
        let inputs = tensor(t, "rf.inputs")?.iter().next().copied().unwrap_or(0.0) as usize;
        let mut trees = Vec::new();
        while t.contains_key(&format!("rf.{}.roots", trees.len())) {
            let j = trees.len();
            let get = |k: &str| tensor(t, &format!("rf.{j}.{k}")).map(|a| a.iter().copied().collect::<Vec<f32>>());
            let tr = Trees {
                roots: get("roots")?.iter().map(|&v| v as usize).collect(),
                feature: get("feature")?.iter().map(|&v| v as u32).collect(),
                threshold: get("threshold")?,
                left: get("left")?.iter().map(|&v| v as i64).collect(),
                right: get("right")?.iter().map(|&v| v as i64).collect(),
                value: get("value")?.iter().map(|&v| v as f64).collect(),
            };
            let n = tr.feature.len();
            let ok = [tr.threshold.len(), tr.left.len(), tr.right.len(), tr.value.len()].iter().all(|&l| l == n)
                && tr.roots.iter().all(|&r| r < n)
                && tr.left.iter().chain(&tr.right).all(|&c| c < n as i64)
                && tr.feature.iter().zip(&tr.left).all(|(&f, &l)| l < 0 || (f as usize) < inputs);
            if !ok || tr.roots.is_empty() {
                return Err(Error::ModelTensor {
                    name: format!("rf.{j}"),
                    msg: "the trees' arrays do not fit together".into(),
                });
            }
            trees.push(tr);
        }
        if trees.is_empty() {
            return Err(Error::ModelTensor {
                name: "rf.0.roots".into(),
                msg: "a forest model file without trees".into(),
            });
        }
        Ok(Self { inputs, trees })
    }
}
