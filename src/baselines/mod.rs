//! The seed's non-network baselines, fitted on preprocessed spectra and standardised labels like the
//! networks, stored in safetensors model files like them, and run by `train`, `predict`, `evaluate`
//! and `crossval` with `--arch cannon|rf|svr`:
//!
//! - [`cannon`]: The Cannon (Ness et al. 2015): per pixel, flux quadratic in the labels; labels of a new
//!   spectrum found by Levenberg-Marquardt. Written here (it is a few linear solves).
//! - [`forest`]: random-forest regression, one forest per label, fitted by `smartcore`;
//! - [`svr`]: epsilon-SVR with an RBF kernel, one per label, fitted by `smartcore`;
//! - [`knn`]: PCA (50 components) + the mean of the 3 nearest training stars, written here.
//!
//! For the two `smartcore` models specnn keeps the fitted trees and support vectors as tensors and
//! predicts with its own few lines (a tree walk; a kernel sum), checked equal to `smartcore`'s own
//! predictions in the tests: the model file is then plain data anyone can read, like the networks'.

pub mod cannon;
pub mod forest;
pub mod knn;
pub mod svr;

use crate::error::{Error, Result};
use ndarray::{Array2, ArrayD};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The metadata key naming a baseline in a model file (networks have `specnn-arch` instead).
pub const BASELINE_KEY: &str = "specnn-baseline";

/// Which baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaselineKind {
    Cannon,
    Rf,
    Svr,
    Knn,
}

impl BaselineKind {
    pub fn name(self) -> &'static str {
        match self {
            BaselineKind::Cannon => "cannon",
            BaselineKind::Rf => "rf",
            BaselineKind::Svr => "svr",
            BaselineKind::Knn => "knn",
        }
    }
}

/// A fitted baseline.
#[derive(Clone, Debug)]
pub enum Baseline {
    Cannon(cannon::Cannon),
    Forest(forest::Forest),
    Svr(svr::Svr),
    Knn(knn::Knn),
}

/// The rows of `x` listed in `rows`, as f64 vectors.
pub(crate) fn rows_f64(x: &[Vec<f32>], rows: &[usize]) -> Vec<Vec<f64>> {
    rows.iter().map(|&r| x[r].iter().map(|&v| v as f64).collect()).collect()
}

impl Baseline {
    /// Fits `kind` on spectra `x[rows]` and standardised labels `z` (`[stars, labels]` over all of `x`,
    /// NaN = unknown: RF and SVR skip a star for the labels it lacks, The Cannon needs all of them).
    pub fn fit(kind: BaselineKind, x: &[Vec<f32>], z: &Array2<f64>, rows: &[usize], seed: u64) -> Result<Self> {
        if rows.is_empty() {
            return Err(Error::Data("no training stars".into()));
        }
        Ok(match kind {
            BaselineKind::Cannon => Baseline::Cannon(cannon::Cannon::fit(x, z, rows)?),
            BaselineKind::Rf => Baseline::Forest(forest::Forest::fit(x, z, rows, seed)?),
            BaselineKind::Svr => Baseline::Svr(svr::Svr::fit(x, z, rows)?),
            BaselineKind::Knn => Baseline::Knn(knn::Knn::fit(x, z, rows, seed)?),
        })
    }

    pub fn kind(&self) -> BaselineKind {
        match self {
            Baseline::Cannon(_) => BaselineKind::Cannon,
            Baseline::Forest(_) => BaselineKind::Rf,
            Baseline::Svr(_) => BaselineKind::Svr,
            Baseline::Knn(_) => BaselineKind::Knn,
        }
    }

    /// The number of input pixels it was fitted on.
    pub fn inputs(&self) -> usize {
        match self {
            Baseline::Cannon(c) => c.inputs(),
            Baseline::Forest(f) => f.inputs,
            Baseline::Svr(s) => s.inputs(),
            Baseline::Knn(k) => k.inputs(),
        }
    }

    /// The number of labels it estimates.
    pub fn outputs(&self) -> usize {
        match self {
            Baseline::Cannon(c) => c.labels(),
            Baseline::Forest(f) => f.trees.len(),
            Baseline::Svr(s) => s.models.len(),
            Baseline::Knn(k) => k.labels(),
        }
    }

    /// Standardised label estimates for `x[rows]`, `[rows, labels]`.
    pub fn predict(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<Array2<f64>> {
        self.check_inputs(x, rows)?;
        Ok(match self {
            Baseline::Cannon(c) => c.predict(x, rows),
            Baseline::Forest(f) => f.predict(x, rows),
            Baseline::Svr(s) => s.predict(x, rows),
            Baseline::Knn(k) => k.predict_spread(x, rows)?.0,
        })
    }

    /// Standardised estimates and their spread (the trees' of a forest, the neighbours' of the kNN;
    /// NaN for The Cannon and the SVR, which have none), each from one pass over the model.
    pub fn predict_spread(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<(Array2<f64>, Array2<f64>)> {
        self.check_inputs(x, rows)?;
        let none = |mean: Array2<f64>| {
            let spread = Array2::from_elem(mean.dim(), f64::NAN);
            (mean, spread)
        };
        Ok(match self {
            Baseline::Cannon(c) => none(c.predict(x, rows)),
            Baseline::Forest(f) => f.predict_spread(x, rows),
            Baseline::Svr(s) => none(s.predict(x, rows)),
            Baseline::Knn(k) => k.predict_spread(x, rows)?,
        })
    }

    fn check_inputs(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<()> {
        for &r in rows {
            if x[r].len() != self.inputs() {
                return Err(Error::shape(
                    "baseline",
                    format!("the {} baseline was fitted on {} pixels", self.kind().name(), self.inputs()),
                    &[&[x[r].len()]],
                ));
            }
        }
        Ok(())
    }

    /// Its tensors, for the model file.
    pub fn to_tensors(&self) -> BTreeMap<String, ArrayD<f32>> {
        match self {
            Baseline::Cannon(c) => c.to_tensors(),
            Baseline::Forest(f) => f.to_tensors(),
            Baseline::Svr(s) => s.to_tensors(),
            Baseline::Knn(k) => k.to_tensors(),
        }
    }

    /// Rebuilds a baseline from a model file's tensors.
    pub fn from_tensors(kind: BaselineKind, t: &BTreeMap<String, ArrayD<f32>>) -> Result<Self> {
        Ok(match kind {
            BaselineKind::Cannon => Baseline::Cannon(cannon::Cannon::from_tensors(t)?),
            BaselineKind::Rf => Baseline::Forest(forest::Forest::from_tensors(t)?),
            BaselineKind::Svr => Baseline::Svr(svr::Svr::from_tensors(t)?),
            BaselineKind::Knn => Baseline::Knn(knn::Knn::from_tensors(t)?),
        })
    }
}

/// Fits one model per label (in parallel): `fit(j, y, known)` gets label `j`'s column and the stars of
/// `rows` that have it (at least 10, else an error naming `what`).
pub(crate) fn per_label<M: Send>(
    what: &str,
    z: &Array2<f64>,
    rows: &[usize],
    fit: impl Fn(usize, &[f64], &[usize]) -> Result<M> + Sync,
) -> Result<Vec<M>> {
    use rayon::prelude::*;
    (0..z.ncols())
        .into_par_iter()
        .map(|j| {
            let y: Vec<f64> = z.column(j).to_vec();
            let known: Vec<usize> = rows.iter().copied().filter(|&r| y[r].is_finite()).collect();
            if known.len() < 10 {
                return Err(Error::Data(format!(
                    "{what}: label {} is known for only {} training stars",
                    j + 1,
                    known.len()
                )));
            }
            fit(j, &y, &known)
        })
        .collect()
}

/// A tensor of a baseline's model file, or an error naming it.
pub(crate) fn tensor<'t>(t: &'t BTreeMap<String, ArrayD<f32>>, name: &str) -> Result<&'t ArrayD<f32>> {
    t.get(name)
        .ok_or_else(|| Error::ModelTensor { name: name.into(), msg: "missing from the baseline's model file".into() })
}
