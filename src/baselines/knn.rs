//! PCA + k nearest neighbours: the spectra projected onto their leading 50 principal components
//! (fitted on the training stars), and each label estimated as the mean of the `k` = 3 nearest
//! training stars (Euclidean distance in the projection) that have that label. The simplest
//! data-driven estimator there is, and on small real libraries (MILES) a hard one to beat: it is
//! the bar a network must clear (issue 15).
//!
//! The model file keeps the projection and the projected training set with its standardised labels:
//! `knn.mean [pixels]`, `knn.components [c, pixels]`, `knn.train [stars, c]`, `knn.labels [stars,
//! labels]` (NaN = unknown) and `knn.k [1]`.

use super::tensor;
use crate::data::pca::Pca;
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayD, Axis};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Principal components kept (fewer when the training set is smaller).
pub const COMPONENTS: usize = 50;
/// Neighbours averaged.
pub const NEIGHBOURS: usize = 3;

/// A fitted PCA + kNN.
#[derive(Clone, Debug)]
pub struct Knn {
    /// The projection (mean and components as the model file stores them, in f32).
    pub pca: Pca,
    /// The training stars' projections, `[stars, c]`.
    pub train: Array2<f32>,
    /// Their standardised labels, `[stars, labels]`, NaN = unknown.
    pub labels: Array2<f64>,
    pub k: usize,
}

impl Knn {
    /// Fits on spectra `x[rows]` with standardised labels `z` (`[stars, labels]` over all of `x`).
    pub fn fit(x: &[Vec<f32>], z: &Array2<f64>, rows: &[usize], seed: u64) -> Result<Self> {
        let d = x[rows[0]].len();
        if rows.len() < NEIGHBOURS + 1 {
            return Err(Error::Data(format!(
                "kNN: {} training stars; at least {} are needed",
                rows.len(),
                NEIGHBOURS + 1
            )));
        }
        let c = COMPONENTS.min(rows.len() - 1).min(d);
        let pca = Pca::fit_rows(x, rows, c, seed)?.rounded_to_f32();
        let knn = Knn {
            train: pca.transform_rows(x, rows)?.mapv(|v| v as f32),
            pca,
            labels: z.select(Axis(0), rows),
            k: NEIGHBOURS,
        };
        for j in 0..z.ncols() {
            let known = knn.labels.column(j).iter().filter(|v| v.is_finite()).count();
            if known < knn.k {
                return Err(Error::Data(format!("kNN: label {} is known for only {known} training stars", j + 1)));
            }
        }
        Ok(knn)
    }

    pub fn inputs(&self) -> usize {
        self.pca.mean.len()
    }

    pub fn labels(&self) -> usize {
        self.labels.ncols()
    }

    /// Standardised estimates for `x[rows]` and the standard deviation of the neighbours' labels.
    pub fn predict_spread(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<(Array2<f64>, Array2<f64>)> {
        let l = self.labels();
        let proj = self.pca.transform_rows(x, rows)?;
        let per: Vec<(Vec<f64>, Vec<f64>)> = proj
            .outer_iter()
            .into_par_iter()
            .map(|p| {
                let mut dist: Vec<(f64, usize)> = self
                    .train
                    .outer_iter()
                    .enumerate()
                    .map(|(i, t)| (t.iter().zip(&p).map(|(a, b)| (*a as f64 - b).powi(2)).sum::<f64>(), i))
                    .collect();
                dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                let (mut mean, mut sd) = (vec![f64::NAN; l], vec![f64::NAN; l]);
                for j in 0..l {
                    let v: Vec<f64> =
                        dist.iter().map(|&(_, i)| self.labels[[i, j]]).filter(|v| v.is_finite()).take(self.k).collect();
                    let m = v.iter().sum::<f64>() / v.len() as f64;
                    mean[j] = m;
                    sd[j] = (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (v.len() as f64 - 1.0).max(1.0)).sqrt();
                }
                (mean, sd)
            })
            .collect();
        let mean = Array2::from_shape_fn((rows.len(), l), |(i, j)| per[i].0[j]);
        let sd = Array2::from_shape_fn((rows.len(), l), |(i, j)| per[i].1[j]);
        Ok((mean, sd))
    }

    pub fn to_tensors(&self) -> BTreeMap<String, ArrayD<f32>> {
        let mut t: BTreeMap<String, ArrayD<f32>> = self.pca.to_tensors("knn").into_iter().collect();
        t.insert("knn.train".into(), self.train.clone().into_dyn());
        t.insert("knn.labels".into(), self.labels.mapv(|v| v as f32).into_dyn());
        t.insert("knn.k".into(), Array1::from(vec![self.k as f32]).into_dyn());
        t
    }

    pub fn from_tensors(t: &BTreeMap<String, ArrayD<f32>>) -> Result<Self> {
        let two = |name: &str| -> Result<Array2<f32>> {
            tensor(t, name)?
                .clone()
                .into_dimensionality()
                .map_err(|_| Error::ModelTensor { name: name.into(), msg: "must be 2-D".into() })
        };
        let pca = Pca::from_tensors("knn", t, Vec::new())?;
        let (train, labels) = (two("knn.train")?, two("knn.labels")?);
        let k = tensor(t, "knn.k")?.iter().next().map(|&v| v as usize).unwrap_or(0);
        if train.ncols() != pca.components.len() || labels.nrows() != train.nrows() || k == 0 || k > train.nrows() {
            return Err(Error::ModelTensor {
                name: "knn".into(),
                msg: format!(
                    "{} components, train {:?}, labels {:?} and k {k} do not fit together",
                    pca.components.len(),
                    train.dim(),
                    labels.dim()
                ),
            });
        }
        Ok(Knn { pca, train, labels: labels.mapv(|v| v as f64), k })
    }
}
