//! The Cannon (Ness et al. 2015, ApJ 808, 16): a data-driven model in which the normalised flux of each
//! pixel is a quadratic function of the (standardised) labels,
//!
//! `f_p(l) = theta_p . v(l)`, `v(l) = [1, l_1..l_K, l_i l_j (i <= j)]`,
//!
//! fitted per pixel by least squares on the training stars (the training step), with an intrinsic
//! scatter `s_p^2` per pixel (the mean squared residual). The labels of a new spectrum minimise
//! `sum_p (f_p - theta_p . v(l))^2 / s_p^2` (the test step), found here by Levenberg-Marquardt from the
//! training mean (l = 0) with the analytic Jacobian. Fluxes carry no per-pixel errors after
//! preprocessing, so the weights are the scatter alone.

use super::tensor;
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayD};
use std::collections::BTreeMap;

/// A fitted Cannon model.
#[derive(Clone, Debug)]
pub struct Cannon {
    /// `[pixels, terms]`.
    theta: Array2<f64>,
    /// `theta^T W theta` (W = 1 / scatter^2), for the linear starting guess of the test step.
    normal: Array2<f64>,
    /// Per-pixel scatter squared, `[pixels]`.
    scatter2: Array1<f64>,
    labels: usize,
}

/// The quadratic design vector of labels `l`.
fn design(l: &[f64]) -> Vec<f64> {
    let mut v = Vec::with_capacity(1 + l.len() + l.len() * (l.len() + 1) / 2);
    v.push(1.0);
    v.extend_from_slice(l);
    for i in 0..l.len() {
        for j in i..l.len() {
            v.push(l[i] * l[j]);
        }
    }
    v
}

/// `d v / d l_k` for every k: `[K][terms]`.
fn design_jacobian(l: &[f64]) -> Vec<Vec<f64>> {
    let k = l.len();
    (0..k)
        .map(|a| {
            let mut d = vec![0.0; 1 + k + k * (k + 1) / 2];
            d[1 + a] = 1.0;
            let mut t = 1 + k;
            for i in 0..k {
                for j in i..k {
                    d[t] = if i == a && j == a {
                        2.0 * l[a]
                    } else if i == a {
                        l[j]
                    } else if j == a {
                        l[i]
                    } else {
                        0.0
                    };
                    t += 1;
                }
            }
            d
        })
        .collect()
}

/// Solves the symmetric positive-definite system `a x = b` (Cholesky), `b` with several columns.
fn solve_spd(mut a: Array2<f64>, mut b: Array2<f64>) -> Option<Array2<f64>> {
    let n = a.nrows();
    for j in 0..n {
        let mut d = a[[j, j]];
        for k in 0..j {
            d -= a[[j, k]] * a[[j, k]];
        }
        if !(d > 0.0) {
            return None;
        }
        let d = d.sqrt();
        a[[j, j]] = d;
        for i in j + 1..n {
            let mut s = a[[i, j]];
            for k in 0..j {
                s -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = s / d;
        }
    }
    for c in 0..b.ncols() {
        for i in 0..n {
            let mut s = b[[i, c]];
            for k in 0..i {
                s -= a[[i, k]] * b[[k, c]];
            }
            b[[i, c]] = s / a[[i, i]];
        }
        for i in (0..n).rev() {
            let mut s = b[[i, c]];
            for k in i + 1..n {
                s -= a[[k, i]] * b[[k, c]];
            }
            b[[i, c]] = s / a[[i, i]];
        }
    }
    Some(b)
}

impl Cannon {
    /// The training step on `x[rows]` with standardised labels `z` (stars lacking a label are left out).
    pub fn fit(x: &[Vec<f32>], z: &Array2<f64>, rows: &[usize]) -> Result<Self> {
        let k = z.ncols();
        let used: Vec<usize> = rows.iter().copied().filter(|&r| z.row(r).iter().all(|v| v.is_finite())).collect();
        let terms = 1 + k + k * (k + 1) / 2;
        if used.len() < 2 * terms {
            return Err(Error::Data(format!(
                "The Cannon with {k} labels needs at least {} stars with every label known; {} have them",
                2 * terms,
                used.len()
            )));
        }
        let p = x[used[0]].len();
        let v = Array2::from_shape_fn((used.len(), terms), |(i, t)| design(&z.row(used[i]).to_vec())[t]);
        let f = Array2::from_shape_fn((used.len(), p), |(i, j)| x[used[i]][j] as f64);
        // Normal equations, with a tiny ridge so that a label grid with collinear terms still solves.
        let mut vtv = v.t().dot(&v);
        let ridge = 1e-8 * (0..terms).map(|i| vtv[[i, i]]).fold(0.0, f64::max);
        for i in 0..terms {
            vtv[[i, i]] += ridge;
        }
        let vtf = v.t().dot(&f);
        let coef = solve_spd(vtv, vtf).ok_or_else(|| {
            Error::Data("The Cannon: the training labels do not constrain the quadratic model".into())
        })?;
        let theta = coef.t().to_owned();
        let resid = &f - &v.dot(&coef);
        let scatter2 =
            resid.map_axis(ndarray::Axis(0), |c| c.mapv(|e| e * e).mean().unwrap_or(0.0)).mapv(|s| s.max(1e-10));
        Ok(Self::new(theta, scatter2, k))
    }

    fn new(theta: Array2<f64>, scatter2: Array1<f64>, labels: usize) -> Self {
        let w = scatter2.mapv(|s| 1.0 / s);
        let wt = &theta * &w.view().insert_axis(ndarray::Axis(1));
        let mut normal = theta.t().dot(&wt);
        let ridge = 1e-9 * (0..normal.nrows()).map(|i| normal[[i, i]]).fold(0.0, f64::max);
        for i in 0..normal.nrows() {
            normal[[i, i]] += ridge;
        }
        Self { theta, normal, scatter2, labels }
    }

    pub fn inputs(&self) -> usize {
        self.theta.nrows()
    }

    pub fn labels(&self) -> usize {
        self.labels
    }

    /// The test step for one spectrum: Levenberg-Marquardt on the weighted squared residuals, from two
    /// starting points, the training mean and The Cannon's linear guess (the weighted least-squares
    /// solution for the whole design vector, whose linear terms are read as labels, clipped to +-3
    /// standard deviations); the better end point wins (the chi-square surface of a quadratic model over
    /// a wide label range has more than one minimum).
    fn labels_of(&self, f: &[f32]) -> Vec<f64> {
        let k = self.labels;
        let mut starts = vec![vec![0.0; k]];
        if let Some(v) = solve_spd(self.normal.clone(), {
            let mut b = Array2::<f64>::zeros((self.theta.ncols(), 1));
            for p in 0..f.len() {
                let w = f[p] as f64 / self.scatter2[p];
                for (t, th) in self.theta.row(p).iter().enumerate() {
                    b[[t, 0]] += w * th;
                }
            }
            b
        }) {
            starts.push((0..k).map(|i| v[[1 + i, 0]].clamp(-3.0, 3.0)).collect());
        }
        let mut best: Option<(f64, Vec<f64>)> = None;
        for s in starts {
            let (c, l) = self.descend(f, s);
            if best.as_ref().is_none_or(|(bc, _)| c < *bc) {
                best = Some((c, l));
            }
        }
        best.map(|(_, l)| l).unwrap_or_else(|| vec![0.0; k])
    }

    /// Levenberg-Marquardt from `l`; returns (chi-square, labels).
    fn descend(&self, f: &[f32], mut l: Vec<f64>) -> (f64, Vec<f64>) {
        let k = self.labels;
        let chi2 = |l: &[f64]| -> f64 {
            let v = design(l);
            (0..f.len())
                .map(|p| {
                    let m: f64 = self.theta.row(p).iter().zip(&v).map(|(a, b)| a * b).sum();
                    let r = f[p] as f64 - m;
                    r * r / self.scatter2[p]
                })
                .sum()
        };
        let mut cost = chi2(&l);
        let mut lambda = 1e-3;
        for _ in 0..100 {
            let v = design(&l);
            let dv = design_jacobian(&l);
            // J [P, K] and the residuals; accumulate J^T W J and J^T W r.
            let mut jtj = Array2::<f64>::zeros((k, k));
            let mut jtr = Array2::<f64>::zeros((k, 1));
            for p in 0..f.len() {
                let th = self.theta.row(p);
                let m: f64 = th.iter().zip(&v).map(|(a, b)| a * b).sum();
                let r = f[p] as f64 - m;
                let w = 1.0 / self.scatter2[p];
                let jp: Vec<f64> = dv.iter().map(|d| th.iter().zip(d).map(|(a, b)| a * b).sum()).collect();
                for a in 0..k {
                    jtr[[a, 0]] += w * jp[a] * r;
                    for b in 0..k {
                        jtj[[a, b]] += w * jp[a] * jp[b];
                    }
                }
            }
            let mut improved = false;
            for _ in 0..10 {
                let mut a = jtj.clone();
                for i in 0..k {
                    a[[i, i]] *= 1.0 + lambda;
                    a[[i, i]] += 1e-12;
                }
                let Some(step) = solve_spd(a, jtr.clone()) else { break };
                let trial: Vec<f64> = (0..k).map(|i| l[i] + step[[i, 0]]).collect();
                let c = chi2(&trial);
                if c < cost {
                    let small = (0..k).all(|i| step[[i, 0]].abs() < 1e-5) || cost - c < 1e-7 * cost;
                    l = trial;
                    cost = c;
                    lambda = (lambda / 10.0).max(1e-9);
                    improved = !small;
                    break;
                }
                lambda *= 10.0;
            }
            if !improved {
                break;
            }
        }
        (cost, l)
    }

    /// Standardised labels of `x[rows]`.
    pub fn predict(&self, x: &[Vec<f32>], rows: &[usize]) -> Array2<f64> {
        use rayon::prelude::*;
        let est: Vec<Vec<f64>> = rows.par_iter().map(|&r| self.labels_of(&x[r])).collect();
        Array2::from_shape_fn((rows.len(), self.labels), |(i, j)| est[i][j])
    }

    pub fn to_tensors(&self) -> BTreeMap<String, ArrayD<f32>> {
        let mut t = BTreeMap::new();
        t.insert("cannon.theta".into(), self.theta.mapv(|v| v as f32).into_dyn());
        t.insert("cannon.scatter2".into(), self.scatter2.mapv(|v| v as f32).into_dyn());
        t
    }

    pub fn from_tensors(t: &BTreeMap<String, ArrayD<f32>>) -> Result<Self> {
        let theta = tensor(t, "cannon.theta")?;
        let s = tensor(t, "cannon.scatter2")?;
        if theta.ndim() != 2 || s.shape() != [theta.shape()[0]] {
            return Err(Error::ModelTensor {
                name: "cannon.theta".into(),
                msg: format!("shapes {:?} and {:?} do not fit", theta.shape(), s.shape()),
            });
        }
        let terms = theta.shape()[1];
        let labels = (1..10).find(|k| 1 + k + k * (k + 1) / 2 == terms).ok_or_else(|| Error::ModelTensor {
            name: "cannon.theta".into(),
            msg: format!("{terms} terms is not a quadratic model of 1-9 labels"),
        })?;
        let theta = theta.view().into_dimensionality::<ndarray::Ix2>().expect("2-d").mapv(|v| v as f64);
        Ok(Self::new(theta, s.iter().map(|&v| v as f64).collect(), labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spectra that are exactly quadratic in their labels (plus a little noise): the training step
    /// recovers the model and the test step the labels.
    #[test]
    fn recovers_labels_of_a_quadratic_model() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(1);
        let (n, p, k) = (300, 40, 3);
        let terms = 1 + k + k * (k + 1) / 2;
        let theta: Vec<Vec<f64>> = (0..p).map(|_| (0..terms).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        let z = Array2::from_shape_fn((n, k), |_| rng.random_range(-1.5..1.5));
        let x: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                let v = design(&z.row(i).to_vec());
                (0..p)
                    .map(|j| {
                        (theta[j].iter().zip(&v).map(|(a, b)| a * b).sum::<f64>() + rng.random_range(-1e-3..1e-3))
                            as f32
                    })
                    .collect()
            })
            .collect();
        let rows: Vec<usize> = (0..200).collect();
        let c = Cannon::fit(&x, &z, &rows).unwrap();
        let test: Vec<usize> = (200..n).collect();
        let est = c.predict(&x, &test);
        let worst = test
            .iter()
            .enumerate()
            .flat_map(|(i, &r)| (0..k).map(move |j| (i, r, j)))
            .map(|(i, r, j)| (est[[i, j]] - z[[r, j]]).abs())
            .fold(0.0, f64::max);
        assert!(worst < 0.02, "worst label error {worst}");
    }
}
