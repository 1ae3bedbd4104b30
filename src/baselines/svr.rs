//! Epsilon-support-vector regression (Drucker et al. 1997) with an RBF kernel, one per label, fitted by
//! `smartcore`'s SMO solver with scikit-learn's defaults (C = 1, epsilon = 0.1 in standardised label
//! units, gamma = 1 / (features * variance of the training features)). Spectra of more than 64 pixels
//! are first projected onto their 64 leading principal components (fitted on the training stars,
//! `data::pca`), the usual practice for kernel methods on spectra; it also keeps smartcore's solver
//! within its limit of at least as many training stars as features (below it, smartcore 0.7 truncates
//! its support vectors, so specnn refuses that case with a clear error). specnn keeps the projection,
//! the support vectors, their weights and the bias, and predicts `b + sum_i w_i exp(-gamma |x - sv_i|^2)`
//! itself.

use super::{per_label, rows_f64, tensor};
use crate::data::pca::Pca;
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayD};
use rayon::prelude::*;
use serde_json::Value;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::svm::svr::{SVRParameters, SVR};
use smartcore::svm::Kernels;
use std::collections::BTreeMap;

/// One label's fitted SVR.
#[derive(Clone, Debug)]
pub struct SvrModel {
    /// `[support vectors, pixels]`.
    pub vectors: Array2<f32>,
    pub weights: Vec<f64>,
    pub bias: f64,
    pub gamma: f64,
}

/// One SVR per label, on the principal components of the spectra when they have more than
/// [`PCA_COMPONENTS`] pixels.
#[derive(Clone, Debug)]
pub struct Svr {
    pub pca: Option<Pca>,
    pub models: Vec<SvrModel>,
}

/// The number of principal components an SVR works on.
pub const PCA_COMPONENTS: usize = 64;

/// The rows `rows` of `x` projected onto `pca`, as f32 features.
fn project(pca: &Pca, x: &[Vec<f32>], rows: &[usize]) -> Result<Vec<Vec<f32>>> {
    let z = pca.transform_rows(x, rows)?;
    Ok(z.outer_iter().map(|r| r.iter().map(|&v| v as f32).collect()).collect())
}

impl SvrModel {
    fn predict_row(&self, x: &[f32]) -> f64 {
        let mut f = self.bias;
        for (sv, &w) in self.vectors.outer_iter().zip(&self.weights) {
            let d2: f64 = sv.iter().zip(x).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum();
            f += w * (-self.gamma * d2).exp();
        }
        f
    }
}

/// Fits one label; returns specnn's model and smartcore's own predictions of `test` (for the tests).
pub fn fit_one(x: &[Vec<f32>], y: &[f64], rows: &[usize], test: &[usize]) -> Result<(SvrModel, Vec<f64>)> {
    let err = |e: &dyn std::fmt::Display| Error::Data(format!("SVR: {e}"));
    let data = rows_f64(x, rows);
    if data.len() < data[0].len() {
        // smartcore 0.7's SVR copies only the first n values of each of its n training rows into its
        // support vectors (`Vec::from_iterator(row, n)` in svr.rs), so with fewer stars than pixels it
        // would silently fit on a truncated spectrum.
        return Err(Error::Data(format!(
            "SVR: {} training stars for {} pixels; smartcore's SVR needs at least as many stars as pixels (a lower \
                --resolution or a --window gives fewer pixels)",
            data.len(),
            data[0].len()
        )));
    }
    let xm = DenseMatrix::from_2d_vec(&data).map_err(|e| err(&e))?;
    let yv: Vec<f64> = rows.iter().map(|&r| y[r]).collect();
    let pixels = data[0].len();
    let all: Vec<f64> = data.iter().flatten().copied().collect();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / all.len() as f64;
    let gamma = 1.0 / (pixels as f64 * var.max(1e-12));
    let params = SVRParameters::default().with_c(1.0).with_eps(0.1).with_kernel(Kernels::rbf().with_gamma(gamma));
    let svr = SVR::fit(&xm, &yv, &params).map_err(|e| err(&e))?;
    let want = if test.is_empty() {
        Vec::new()
    } else {
        let xt = DenseMatrix::from_2d_vec(&rows_f64(x, test)).map_err(|e| err(&e))?;
        svr.predict(&xt).map_err(|e| err(&e))?
    };
    let v = serde_json::to_value(&svr).map_err(|e| err(&e))?;
    let bad = |what: &str| Error::Data(format!("SVR: unexpected smartcore model layout ({what})"));
    let inst = v.get("instances").and_then(Value::as_array).ok_or_else(|| bad("no instances"))?;
    let weights: Vec<f64> = v
        .get("w")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no weights"))?
        .iter()
        .map(|w| w.as_f64().unwrap_or(f64::NAN))
        .collect();
    let bias = v.get("b").and_then(Value::as_f64).ok_or_else(|| bad("no bias"))?;
    let mut vectors = Array2::<f32>::zeros((inst.len(), pixels));
    for (i, row) in inst.iter().enumerate() {
        let row = row.as_array().ok_or_else(|| bad("instance not an array"))?;
        if row.len() != pixels {
            return Err(bad(&format!("instance {i} has {} values for {pixels} pixels", row.len())));
        }
        for (j, val) in row.iter().enumerate() {
            vectors[[i, j]] = val.as_f64().unwrap_or(f64::NAN) as f32;
        }
    }
    if weights.len() != inst.len() || weights.iter().any(|w| !w.is_finite()) {
        return Err(bad("weights"));
    }
    Ok((SvrModel { vectors, weights, bias, gamma }, want))
}

impl Svr {
    /// Fits one SVR per label on the stars of `rows` that have it.
    pub fn fit(x: &[Vec<f32>], z: &Array2<f64>, rows: &[usize]) -> Result<Self> {
        let pixels = x[rows[0]].len();
        let (pca, projected);
        let x = if pixels > PCA_COMPONENTS && rows.len() > PCA_COMPONENTS {
            let p = Pca::fit_rows(x, rows, PCA_COMPONENTS, 0)?;
            let all: Vec<usize> = (0..x.len()).collect();
            projected = project(&p, x, &all)?;
            pca = Some(p);
            &projected[..]
        } else {
            pca = None;
            x
        };
        let models = per_label("SVR", z, rows, |_, y, known| fit_one(x, y, known, &[]).map(|(m, _)| m))?;
        Ok(Self { pca, models })
    }

    pub fn inputs(&self) -> usize {
        self.pca.as_ref().map(|p| p.mean.len()).unwrap_or_else(|| self.models[0].vectors.ncols())
    }

    /// Standardised labels of `x[rows]`.
    pub fn predict(&self, x: &[Vec<f32>], rows: &[usize]) -> Array2<f64> {
        let features: Vec<Vec<f32>> = match &self.pca {
            Some(p) => project(p, x, rows).expect("the pixel count was checked by Baseline::predict"),
            None => rows.iter().map(|&r| x[r].clone()).collect(),
        };
        let est: Vec<Vec<f64>> =
            features.par_iter().map(|f| self.models.iter().map(|m| m.predict_row(f)).collect()).collect();
        Array2::from_shape_fn((rows.len(), self.models.len()), |(i, j)| est[i][j])
    }

    pub fn to_tensors(&self) -> BTreeMap<String, ArrayD<f32>> {
        let mut t = BTreeMap::new();
        if let Some(p) = &self.pca {
            t.insert(
                "svr.pca.mean".into(),
                Array1::from(p.mean.iter().map(|&v| v as f32).collect::<Vec<_>>()).into_dyn(),
            );
            let comps = Array2::from_shape_fn((p.components.len(), p.mean.len()), |(i, j)| p.components[i][j] as f32);
            t.insert("svr.pca.components".into(), comps.into_dyn());
        }
        for (j, m) in self.models.iter().enumerate() {
            t.insert(format!("svr.{j}.vectors"), m.vectors.clone().into_dyn());
            // The weights and bias in f32 lose less than the SVR's own epsilon-insensitive tolerance.
            t.insert(
                format!("svr.{j}.weights"),
                Array1::from(m.weights.iter().map(|&w| w as f32).collect::<Vec<_>>()).into_dyn(),
            );
            t.insert(format!("svr.{j}.bias_gamma"), Array1::from(vec![m.bias as f32, m.gamma as f32]).into_dyn());
        }
        t
    }

    pub fn from_tensors(t: &BTreeMap<String, ArrayD<f32>>) -> Result<Self> {
        let mut models = Vec::new();
        while t.contains_key(&format!("svr.{}.vectors", models.len())) {
            let j = models.len();
            let v = tensor(t, &format!("svr.{j}.vectors"))?;
            let w = tensor(t, &format!("svr.{j}.weights"))?;
            let bg = tensor(t, &format!("svr.{j}.bias_gamma"))?;
            if v.ndim() != 2 || w.shape() != [v.shape()[0]] || bg.len() != 2 {
                return Err(Error::ModelTensor {
                    name: format!("svr.{j}"),
                    msg: "the support vectors, weights and bias do not fit together".into(),
                });
            }
            let bg: Vec<f32> = bg.iter().copied().collect();
            models.push(SvrModel {
                vectors: v.view().into_dimensionality().expect("2-d").to_owned(),
                weights: w.iter().map(|&x| x as f64).collect(),
                bias: bg[0] as f64,
                gamma: bg[1] as f64,
            });
        }
        if models.is_empty() || models.iter().any(|m| m.vectors.ncols() != models[0].vectors.ncols()) {
            return Err(Error::ModelTensor {
                name: "svr.0.vectors".into(),
                msg: "an SVR model file without (consistent) support vectors".into(),
            });
        }
        let pca = match (t.get("svr.pca.mean"), t.get("svr.pca.components")) {
            (Some(m), Some(c)) => {
                if c.ndim() != 2 || c.shape()[1] != m.len() || c.shape()[0] != models[0].vectors.ncols() {
                    return Err(Error::ModelTensor {
                        name: "svr.pca.components".into(),
                        msg: "the projection does not fit the mean or the support vectors".into(),
                    });
                }
                let comps = c.outer_iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect();
                Some(Pca { mean: m.iter().map(|&v| v as f64).collect(), components: comps, variance: vec![] })
            }
            (None, None) => None,
            _ => {
                return Err(Error::ModelTensor {
                    name: "svr.pca".into(),
                    msg: "a projection needs both its mean and its components".into(),
                })
            }
        };
        Ok(Self { pca, models })
    }
}
