//! Principal components of a set of spectra, fitted on a training set and applied to others (the
//! seed adds them to the residual ANN's inputs to stabilise it).
//!
//! The leading `k` components come from subspace iteration on the centred data matrix (no `d x d`
//! covariance is formed, so 4096-pixel spectra are cheap), finished by a Rayleigh-Ritz step whose
//! small `k x k` symmetric eigenproblem is solved by Jacobi rotations. Deterministic for a seed.

use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{rngs::StdRng, Rng, SeedableRng};

/// A fitted PCA: mean spectrum and `k` orthonormal components (rows), by decreasing variance.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Pca {
    pub mean: Vec<f64>,
    pub components: Vec<Vec<f64>>,
    /// Variance along each component.
    pub variance: Vec<f64>,
}

fn orthonormalise(q: &mut Array2<f64>) {
    // Modified Gram-Schmidt on columns.
    for j in 0..q.ncols() {
        for i in 0..j {
            let d = q.column(i).dot(&q.column(j));
            let ci = q.column(i).to_owned();
            q.column_mut(j).scaled_add(-d, &ci);
        }
        let norm = q.column(j).dot(&q.column(j)).sqrt();
        if norm > 0.0 {
            q.column_mut(j).mapv_inplace(|v| v / norm);
        }
    }
}

/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations: (values, vectors as columns).
fn jacobi(mut a: Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    let mut v = Array2::<f64>::eye(n);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[[i, j]].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[[p, q]].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[[q, q]] - a[[p, p]]) / (2.0 * a[[p, q]]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let (c, s) = (1.0 / (t * t + 1.0).sqrt(), t / (t * t + 1.0).sqrt());
                for k in 0..n {
                    let (akp, akq) = (a[[k, p]], a[[k, q]]);
                    a[[k, p]] = c * akp - s * akq;
                    a[[k, q]] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[[p, k]], a[[q, k]]);
                    a[[p, k]] = c * apk - s * aqk;
                    a[[q, k]] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[[k, p]], v[[k, q]]);
                    v[[k, p]] = c * vkp - s * vkq;
                    v[[k, q]] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[[i, i]]).collect(), v)
}

impl Pca {
    /// Fits `k` components to the rows of `x` (`[samples, pixels]`).
    pub fn fit(x: ArrayView2<f64>, k: usize, seed: u64) -> Result<Self> {
        let (n, d) = x.dim();
        if k == 0 || k > d.min(n) {
            return Err(Error::Data(format!("PCA: cannot fit {k} components to {n} spectra of {d} pixels")));
        }
        let mean: Array1<f64> = x.mean_axis(Axis(0)).expect("non-empty");
        let xc = &x - &mean;
        let mut rng = StdRng::seed_from_u64(seed);
        let extra = (k + 5).min(d.min(n));
        let mut q = Array2::from_shape_fn((d, extra), |_| rng.random_range(-1.0..1.0));
        orthonormalise(&mut q);
        for _ in 0..30 {
            let z = xc.t().dot(&xc.dot(&q));
            q = z;
            orthonormalise(&mut q);
        }
        // Rayleigh-Ritz: B = Q^T C Q with C = Xc^T Xc / (n - 1).
        let xq = xc.dot(&q);
        let b = xq.t().dot(&xq) / (n.max(2) - 1) as f64;
        let (vals, vecs) = jacobi(b);
        let mut order: Vec<usize> = (0..vals.len()).collect();
        order.sort_by(|&a, &b| vals[b].total_cmp(&vals[a]));
        let basis = q.dot(&vecs);
        let components = order[..k].iter().map(|&i| basis.column(i).to_vec()).collect();
        Ok(Self { mean: mean.to_vec(), components, variance: order[..k].iter().map(|&i| vals[i]).collect() })
    }

    /// Projects the rows of `x` onto the components: `[samples, k]`.
    pub fn transform(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.mean.len() {
            return Err(Error::Data(format!(
                "PCA: spectra have {} pixels, the fit had {}",
                x.ncols(),
                self.mean.len()
            )));
        }
        let xc = &x - &Array1::from(self.mean.clone());
        Ok(xc.dot(&self.components_matrix().t()))
    }
}

impl Pca {
    /// Fits `k` components to the spectra `x[rows]`.
    pub fn fit_rows(x: &[Vec<f32>], rows: &[usize], k: usize, seed: u64) -> Result<Self> {
        let d = rows.first().map_or(0, |&r| x[r].len());
        let m = Array2::from_shape_fn((rows.len(), d), |(i, j)| x[rows[i]][j] as f64);
        Self::fit(m.view(), k, seed)
    }

    /// Projects the spectra `x[rows]`: `[rows, k]`.
    pub fn transform_rows(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<Array2<f64>> {
        Ok(self.centred_rows(x, rows)?.dot(&self.components_matrix().t()))
    }

    /// Projects the spectra `x[rows]` and gives each one's residual after the projection (the RMS per
    /// pixel of the spectrum minus its reconstruction from the components).
    pub fn transform_rows_with_residual(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<(Array2<f64>, Vec<f64>)> {
        let (xc, comps) = (self.centred_rows(x, rows)?, self.components_matrix());
        let proj = xc.dot(&comps.t());
        let rest = xc - proj.dot(&comps);
        let d = self.mean.len().max(1) as f64;
        Ok((proj, rest.outer_iter().map(|r| (r.dot(&r) / d).sqrt()).collect()))
    }

    /// `x[rows]` minus the mean, `[rows, pixels]`.
    fn centred_rows(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<Array2<f64>> {
        let d = self.mean.len();
        if let Some(&r) = rows.iter().find(|&&r| x[r].len() != d) {
            return Err(Error::Data(format!("PCA: a spectrum has {} pixels, the fit had {d}", x[r].len())));
        }
        Ok(Array2::from_shape_fn((rows.len(), d), |(i, j)| x[rows[i]][j] as f64 - self.mean[j]))
    }

    /// The components as a `[k, pixels]` matrix.
    fn components_matrix(&self) -> Array2<f64> {
        Array2::from_shape_vec((self.components.len(), self.mean.len()), self.components.concat())
            .expect("component shape")
    }

    /// The mean and components rounded to f32, as a model file stores them, so that a fitted model
    /// and the same model read back from its file give the same numbers.
    pub fn rounded_to_f32(mut self) -> Self {
        self.mean.iter_mut().for_each(|v| *v = *v as f32 as f64);
        self.components.iter_mut().flatten().for_each(|v| *v = *v as f32 as f64);
        self
    }

    /// The mean and components as model-file tensors `PREFIX.mean [pixels]`, `PREFIX.components
    /// [k, pixels]`.
    pub fn to_tensors(&self, prefix: &str) -> Vec<(String, ndarray::ArrayD<f32>)> {
        let comps =
            Array2::from_shape_fn((self.components.len(), self.mean.len()), |(i, j)| self.components[i][j] as f32);
        vec![
            (
                format!("{prefix}.mean"),
                Array1::from(self.mean.iter().map(|&v| v as f32).collect::<Vec<_>>()).into_dyn(),
            ),
            (format!("{prefix}.components"), comps.into_dyn()),
        ]
    }

    /// A projection from the tensors `to_tensors` wrote (with no variances, unless given).
    pub fn from_tensors(
        prefix: &str,
        t: &std::collections::BTreeMap<String, ndarray::ArrayD<f32>>,
        variance: Vec<f64>,
    ) -> Result<Self> {
        let get = |n: &str| {
            t.get(&format!("{prefix}.{n}"))
                .ok_or_else(|| Error::ModelTensor { name: format!("{prefix}.{n}"), msg: "missing".into() })
        };
        let (m, c) = (get("mean")?, get("components")?);
        if m.ndim() != 1
            || c.ndim() != 2
            || c.shape()[1] != m.len()
            || !(variance.is_empty() || variance.len() == c.shape()[0])
        {
            return Err(Error::ModelTensor {
                name: format!("{prefix}.components"),
                msg: format!(
                    "shape {:?} does not fit a mean of {} pixels and {} variances",
                    c.shape(),
                    m.len(),
                    variance.len()
                ),
            });
        }
        Ok(Pca {
            mean: m.iter().map(|&v| v as f64).collect(),
            components: c.outer_iter().map(|r| r.iter().map(|&v| v as f64).collect()).collect(),
            variance,
        })
    }
}
