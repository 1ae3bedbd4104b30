//! How far to trust an estimate: calibrated per-star uncertainties and out-of-domain flags.
//!
//! **Uncertainties.** A model's raw spread (an ensemble's member spread, the neighbours' spread of the
//! kNN, the trees' spread of a random forest; none for a single network) is turned into a 1-sigma
//! uncertainty per label by a calibration fitted on the validation stars after training:
//! `sigma_z = sqrt((scale * spread_z)^2 + floor^2)` in standardised units (log10 for log labels),
//! fitted to the errors `Scaling::error_z` gives: in those units, but linearised at the estimate for
//! log labels, so that the fit targets the interval the catalog states (estimate +- sigma in K).
//! `scale` and `floor` are chosen so that 68.3% of the validation stars have |error| < sigma and, as
//! near as the pair allows, 95.4% have |error| < 2 sigma. A model with no spread gets `scale = 0`: one
//! sigma per label, the validation errors' 68.3rd percentile. Stored in the model file under
//! `specnn-calibration`. With `train --calibrate-folds K` the pairs are every star's out-of-fold
//! estimate and spread from a K-fold cross-validation instead (more stars, none of them used to
//! choose the epoch): `source` says which.
//!
//! **Flags.** A bitmask per catalog row (`flags`, 0 = none), documented in the catalog header:
//! - [`FLAG_RANGE`] 1: an estimate lies outside the training labels' range;
//! - [`FLAG_FAR`] 2: the spectrum is far from the training set: projected on the training spectra's
//!   leading principal components, either its residual (what the components do not describe) or its
//!   Mahalanobis distance within them is above the 99th percentile of the validation stars' (stars
//!   the projection was not fitted on);
//! - [`FLAG_LOW_SNR`] 4: the header's S/N is below [`LOW_SNR`];
//! - [`FLAG_MASKED`] 8: more than [`MASKED_FRACTION`] of the spectrum's pixels are flagged bad;
//! - [`FLAG_SYNTHETIC_MODEL`] 16: a model trained on SYNTHETIC spectra applied to a real spectrum.
//!
//! The projection (`domain.mean`, `domain.components`) rides in the model file's tensors; the label
//! ranges and the residual threshold in the metadata key `specnn-domain`.

use crate::data::pca::Pca;
use crate::error::{Error, Result};
use ndarray::{Array2, ArrayD};
use std::collections::BTreeMap;

pub const FLAG_RANGE: u32 = 1;
pub const FLAG_FAR: u32 = 2;
pub const FLAG_LOW_SNR: u32 = 4;
pub const FLAG_MASKED: u32 = 8;
pub const FLAG_SYNTHETIC_MODEL: u32 = 16;
/// Below this header S/N a row gets [`FLAG_LOW_SNR`].
pub const LOW_SNR: f64 = 10.0;
/// Above this fraction of bad pixels a row gets [`FLAG_MASKED`].
pub const MASKED_FRACTION: f64 = 0.2;
/// Principal components of the domain check.
pub const DOMAIN_COMPONENTS: usize = 20;

/// The bits and their meaning, for catalog headers and reports.
pub const FLAG_DOCS: [(u32, &str); 5] = [
    (FLAG_RANGE, "estimate outside the training labels' range"),
    (FLAG_FAR, "spectrum far from the training set (PCA residual > 99th pct)"),
    (FLAG_LOW_SNR, "header S/N below 10"),
    (FLAG_MASKED, "more than 20% of pixels flagged bad"),
    (FLAG_SYNTHETIC_MODEL, "model trained on SYNTHETIC spectra, applied to a real one"),
];

/// Metadata keys.
pub const CALIBRATION_KEY: &str = "specnn-calibration";
pub const DOMAIN_KEY: &str = "specnn-domain";

/// One-sigma and two-sigma coverage of a normal distribution.
pub const ONE_SIGMA: f64 = 0.682_689_492;
pub const TWO_SIGMA: f64 = 0.954_499_736;

/// The per-label calibration of spreads into 1-sigma uncertainties, in standardised units.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    pub scale: Vec<f64>,
    pub floor: Vec<f64>,
    /// Stars each label's calibration was fitted on (validation or out-of-fold, as `source` says).
    pub n: Vec<usize>,
    /// What it was fitted on: [`VALIDATION`] (the run's validation stars, the default and what files
    /// without this field mean) or `crossval K` (every star's out-of-fold estimate in a K-fold
    /// cross-validation, `train --calibrate-folds K`).
    #[serde(default = "validation_source")]
    pub source: String,
}

/// The calibration source of a run's own validation stars.
pub const VALIDATION: &str = "validation";

fn validation_source() -> String {
    VALIDATION.into()
}

/// The fraction of `(err, sigma)` pairs with |err| < k sigma.
pub fn coverage(pairs: &[(f64, f64)], k: f64) -> f64 {
    if pairs.is_empty() {
        return f64::NAN;
    }
    pairs.iter().filter(|(e, s)| e.abs() < k * s).count() as f64 / pairs.len() as f64
}

/// The `q`-quantile (0..1) of `v` (sorted copy, linear interpolation); NaN when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let p = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (i, f) = (p.floor() as usize, p.fract());
    if i + 1 < s.len() {
        s[i] * (1.0 - f) + s[i + 1] * f
    } else {
        s[i]
    }
}

/// The coverage targets' tolerances (issue #16, DEVELOPERS.md's tolerance table): within 1 sigma
/// 0.683 +- 0.05, within 2 sigma 0.954 +- 0.03.
pub const ONE_SIGMA_TOL: f64 = 0.05;
pub const TWO_SIGMA_TOL: f64 = 0.03;

/// How far coverages `(c1, c2)` miss their targets, each in units of its tolerance: (the larger
/// miss, the sum), compared in that order.
fn coverage_miss(c1: f64, c2: f64) -> (f64, f64) {
    let (a, b) = ((c1 - ONE_SIGMA).abs() / ONE_SIGMA_TOL, (c2 - TWO_SIGMA).abs() / TWO_SIGMA_TOL);
    (a.max(b), a + b)
}

impl Calibration {
    /// Fits one label's `(scale, floor)` to validation errors `err` and spreads `spread` (standardised
    /// units; spread NaN where the model has none).
    ///
    /// Gaussian errors would be met by the scaling that puts 68.3% within 1 sigma, and 95.4% would
    /// follow. Real errors have heavier tails (on MILES, a 2-sigma coverage of 86-91% at 68.3% within
    /// 1 sigma), so no scaling meets both exactly. The fit takes the pair that misses the two targets
    /// least, each miss in units of its tolerance ([`ONE_SIGMA_TOL`], [`TWO_SIGMA_TOL`]): the larger
    /// miss, then their sum. It searches floors from 0 to the constant sigma in 20 steps and, for
    /// each, the scales that put 63% to 73% of the stars within 1 sigma (every 0.5%, and 68.3%). For
    /// Gaussian errors that is the usual 68.3% scaling.
    pub fn fit_label(err: &[f64], spread: &[f64]) -> (f64, f64) {
        let pairs: Vec<(f64, f64)> = err
            .iter()
            .zip(spread)
            .filter(|(e, _)| e.is_finite())
            .map(|(e, s)| (e.abs(), if s.is_finite() { *s } else { 0.0 }))
            .collect();
        if pairs.is_empty() {
            return (0.0, f64::NAN);
        }
        let abs: Vec<f64> = pairs.iter().map(|p| p.0).collect();
        let levels: Vec<f64> = std::iter::once(ONE_SIGMA).chain((0..=20).map(|i| 0.63 + 0.005 * i as f64)).collect();
        let covs = |sig: &dyn Fn(f64) -> f64| -> (f64, f64) {
            let with: Vec<(f64, f64)> = pairs.iter().map(|&(e, s)| (e, sig(s))).collect();
            (coverage(&with, 1.0), coverage(&with, 2.0))
        };
        if pairs.iter().all(|p| p.1 <= 0.0) {
            // One sigma for every star: the |error| quantile at the level that misses least.
            let mut best = (quantile(&abs, ONE_SIGMA).max(1e-9), (f64::INFINITY, f64::INFINITY));
            for &l in &levels {
                let sigma = quantile(&abs, l).max(1e-9);
                let (c1, c2) = covs(&|_| sigma);
                let miss = coverage_miss(c1, c2);
                if miss < best.1 {
                    best = (sigma, miss);
                }
            }
            return (0.0, best.0);
        }
        let const_sigma = quantile(&abs, ONE_SIGMA).max(1e-9);
        let mut best = (0.0, const_sigma, (f64::INFINITY, f64::INFINITY));
        for step in 0..=20 {
            let floor = const_sigma * step as f64 / 20.0;
            let cov1 = |a: f64| -> f64 { covs(&|s| ((a * s).powi(2) + floor * floor).sqrt()).0 };
            for &level in &levels {
                // Coverage grows with the scale: bisect for the smallest scale reaching `level`.
                if cov1(0.0) > level {
                    continue;
                }
                let (mut lo, mut hi) = (0.0, 1.0);
                while cov1(hi) < level && hi < 1e6 {
                    hi *= 2.0;
                }
                for _ in 0..50 {
                    let mid = 0.5 * (lo + hi);
                    if cov1(mid) < level {
                        lo = mid
                    } else {
                        hi = mid
                    }
                }
                let (c1, c2) = covs(&|s| ((hi * s).powi(2) + floor * floor).sqrt());
                let miss = coverage_miss(c1, c2);
                if miss < best.2 {
                    best = (hi, floor, miss);
                }
            }
        }
        (best.0, best.1)
    }

    /// Fits every label: `err[j]` and `spread[j]` over the validation stars.
    pub fn fit(err: &[Vec<f64>], spread: &[Vec<f64>]) -> Self {
        let (mut scale, mut floor, mut n) = (Vec::new(), Vec::new(), Vec::new());
        for (e, s) in err.iter().zip(spread) {
            let (a, b) = Self::fit_label(e, s);
            scale.push(a);
            floor.push(b);
            n.push(e.iter().filter(|v| v.is_finite()).count());
        }
        Self { scale, floor, n, source: VALIDATION.into() }
    }

    /// Label `j`'s 1-sigma uncertainty in standardised units for a spread `spread_z` (NaN: none).
    pub fn sigma_z(&self, j: usize, spread_z: f64) -> f64 {
        let s = if spread_z.is_finite() { spread_z } else { 0.0 };
        ((self.scale[j] * s).powi(2) + self.floor[j].powi(2)).sqrt()
    }
}

/// The training set's domain: label ranges and a principal-component subspace of its spectra.
#[derive(Clone, Debug)]
pub struct Domain {
    pub lo: Vec<f64>,
    pub hi: Vec<f64>,
    /// The training spectra's leading components (mean and components as the file stores them, in
    /// f32), with the training stars' variance along each.
    pub pca: Pca,
    /// The held-out stars' 99th percentile of the projection residual (RMS per pixel).
    pub residual_p99: f64,
    /// The held-out stars' 99th percentile of the Mahalanobis distance within the components.
    pub distance_p99: f64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DomainMeta {
    lo: Vec<f64>,
    hi: Vec<f64>,
    residual_p99: f64,
    variance: Vec<f64>,
    distance_p99: f64,
}

impl Domain {
    /// Fits on the training spectra `x[rows]` and their labels `y` (label units, NaN = unknown); the
    /// thresholds are the 99th percentiles over `held_out` (stars the projection was not fitted on,
    /// e.g. the validation stars, whose residuals are what a new star's look like), or over `rows`
    /// when that is empty.
    pub fn fit(x: &[Vec<f32>], y: &Array2<f64>, rows: &[usize], held_out: &[usize], seed: u64) -> Result<Self> {
        if rows.len() < 3 {
            return Err(Error::Data("domain: too few training stars".into()));
        }
        let d = x[rows[0]].len();
        let lo = (0..y.ncols())
            .map(|j| rows.iter().map(|&r| y[[r, j]]).filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min))
            .collect();
        let hi = (0..y.ncols())
            .map(|j| rows.iter().map(|&r| y[[r, j]]).filter(|v| v.is_finite()).fold(f64::NEG_INFINITY, f64::max))
            .collect();
        let k = DOMAIN_COMPONENTS.min(rows.len() - 1).min(d);
        let mut pca = Pca::fit_rows(x, rows, k, seed)?.rounded_to_f32();
        pca.variance.iter_mut().for_each(|v| *v = v.max(1e-12));
        let mut dom = Domain { lo, hi, pca, residual_p99: f64::INFINITY, distance_p99: f64::INFINITY };
        let (res, dist) = dom.measure_rows(x, if held_out.is_empty() { rows } else { held_out })?;
        dom.residual_p99 = quantile(&res, 0.99);
        dom.distance_p99 = quantile(&dist, 0.99);
        Ok(dom)
    }

    /// For each spectrum of `x[rows]`: the residual (RMS per pixel) after projection, and the
    /// Mahalanobis distance within the components.
    pub fn measure_rows(&self, x: &[Vec<f32>], rows: &[usize]) -> Result<(Vec<f64>, Vec<f64>)> {
        let (proj, residual) = self.pca.transform_rows_with_residual(x, rows)?;
        let dist = proj
            .outer_iter()
            .map(|p| p.iter().zip(&self.pca.variance).map(|(a, v)| a * a / v).sum::<f64>().sqrt())
            .collect();
        Ok((residual, dist))
    }

    /// The flags of the spectra `x[rows]` with estimates `est` (label units, one row each).
    pub fn flags_rows(&self, x: &[Vec<f32>], rows: &[usize], est: &Array2<f64>) -> Result<Vec<u32>> {
        let (res, dist) = self.measure_rows(x, rows)?;
        Ok((0..rows.len())
            .map(|i| {
                let mut f = 0;
                if est.row(i).iter().enumerate().any(|(j, v)| v.is_finite() && (*v < self.lo[j] || *v > self.hi[j])) {
                    f |= FLAG_RANGE;
                }
                if res[i] > self.residual_p99 || dist[i] > self.distance_p99 {
                    f |= FLAG_FAR;
                }
                f
            })
            .collect())
    }

    pub fn meta(&self) -> String {
        serde_json::to_string(&DomainMeta {
            lo: self.lo.clone(),
            hi: self.hi.clone(),
            residual_p99: self.residual_p99,
            variance: self.pca.variance.clone(),
            distance_p99: self.distance_p99,
        })
        .expect("serialisable")
    }

    pub fn tensors(&self) -> Vec<(String, ArrayD<f32>)> {
        self.pca.to_tensors("domain")
    }

    /// Rebuilds the domain from a model file's metadata and `domain.*` tensors (removed from `t`).
    pub fn take(meta: &str, t: &mut BTreeMap<String, ArrayD<f32>>) -> Result<Self> {
        let m: DomainMeta =
            serde_json::from_str(meta).map_err(|e| Error::invalid(DOMAIN_KEY, format!("malformed: {e}")))?;
        let pca = Pca::from_tensors("domain", t, m.variance)?;
        t.retain(|k, _| !k.starts_with(crate::nn::DOMAIN_PREFIX));
        Ok(Domain { lo: m.lo, hi: m.hi, pca, residual_p99: m.residual_p99, distance_p99: m.distance_p99 })
    }
}

/// The standard normal distribution function.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The complementary error function (Numerical Recipes' erfc, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn gauss(rng: &mut StdRng) -> f64 {
        let (u, v): (f64, f64) = (rng.random(), rng.random());
        (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    #[test]
    fn calibration_recovers_coverage_of_scaled_spreads() {
        // Errors drawn with sigma = 3 * spread: the fit must give 68% and 95% coverage on fresh draws.
        let mut rng = StdRng::seed_from_u64(4);
        let draw = |rng: &mut StdRng, n: usize| -> (Vec<f64>, Vec<f64>) {
            let s: Vec<f64> = (0..n).map(|_| rng.random_range(0.1..1.0)).collect();
            let e = s.iter().map(|s| 3.0 * s * gauss(rng)).collect();
            (e, s)
        };
        let (e, s) = draw(&mut rng, 2000);
        let (a, b) = Calibration::fit_label(&e, &s);
        assert!((a - 3.0).abs() < 0.4, "scale {a}, floor {b}");
        let (e2, s2) = draw(&mut rng, 4000);
        let pairs: Vec<(f64, f64)> = e2.iter().zip(&s2).map(|(e, s)| (*e, ((a * s).powi(2) + b * b).sqrt())).collect();
        assert!((coverage(&pairs, 1.0) - ONE_SIGMA).abs() < 0.03, "{}", coverage(&pairs, 1.0));
        assert!((coverage(&pairs, 2.0) - TWO_SIGMA).abs() < 0.02, "{}", coverage(&pairs, 2.0));
    }

    /// Errors heavier-tailed than a Gaussian (Student's t, 5 degrees of freedom, times the spread):
    /// the fit trades a little 1-sigma coverage for 2-sigma coverage, keeping both within their
    /// tolerances on fresh draws, where the 68.3% scaling alone leaves 2 sigma short.
    #[test]
    fn heavy_tails_are_met_within_both_tolerances() {
        let mut rng = StdRng::seed_from_u64(5);
        let draw = |rng: &mut StdRng, n: usize| -> (Vec<f64>, Vec<f64>) {
            let s: Vec<f64> = (0..n).map(|_| rng.random_range(0.1..1.0)).collect();
            let e = s
                .iter()
                .map(|s| {
                    let chi2: f64 = (0..5).map(|_| gauss(rng).powi(2)).sum();
                    s * gauss(rng) / (chi2 / 5.0).sqrt()
                })
                .collect();
            (e, s)
        };
        let (e, s) = draw(&mut rng, 3000);
        let (a, b) = Calibration::fit_label(&e, &s);
        let (e2, s2) = draw(&mut rng, 6000);
        let cov = |a: f64, b: f64, k: f64| {
            coverage(&e2.iter().zip(&s2).map(|(e, s)| (*e, ((a * s).powi(2) + b * b).sqrt())).collect::<Vec<_>>(), k)
        };
        let (c1, c2) = (cov(a, b, 1.0), cov(a, b, 2.0));
        assert!(
            (c1 - ONE_SIGMA).abs() < ONE_SIGMA_TOL && (c2 - TWO_SIGMA).abs() < TWO_SIGMA_TOL,
            "{c1} {c2} (scale {a}, floor {b})"
        );
        // The scaling that puts exactly 68.3% within 1 sigma (floor 0) leaves 2 sigma short.
        let mut z: Vec<f64> = e.iter().zip(&s).map(|(e, s)| (e / s).abs()).collect();
        z.sort_by(f64::total_cmp);
        let exact = z[(ONE_SIGMA * z.len() as f64) as usize];
        assert!(cov(exact, 0.0, 2.0) < c2 - 0.01, "{} vs {c2}", cov(exact, 0.0, 2.0));
    }

    #[test]
    fn no_spread_gives_one_constant_sigma() {
        let e: Vec<f64> = (0..1000).map(|i| (i as f64 - 500.0) / 100.0).collect();
        let (a, b) = Calibration::fit_label(&e, &vec![f64::NAN; e.len()]);
        assert_eq!(a, 0.0);
        let pairs: Vec<(f64, f64)> = e.iter().map(|e| (*e, b)).collect();
        assert!((coverage(&pairs, 1.0) - ONE_SIGMA).abs() < 0.01);
    }

    #[test]
    fn domain_flags_range_and_far_spectra() {
        let mut rng = StdRng::seed_from_u64(9);
        // Training spectra: two smooth shapes mixed; an outlier: a spiky spectrum.
        let x: Vec<Vec<f32>> = (0..200)
            .map(|_| {
                let a: f32 = rng.random();
                (0..100)
                    .map(|i| {
                        a * (i as f32 / 20.0).sin()
                            + (1.0 - a) * (i as f32 / 30.0).cos()
                            + 0.01 * gauss(&mut rng) as f32
                    })
                    .collect()
            })
            .collect();
        let y = Array2::from_shape_fn((200, 1), |(i, _)| 4000.0 + i as f64);
        let rows: Vec<usize> = (0..200).collect();
        let d = Domain::fit(&x, &y, &rows[..150], &rows[150..], 1).unwrap();
        // A noise-free mixture of the two shapes lies in the training subspace; a spiky spectrum does not.
        let clean: Vec<f32> = (0..100).map(|i| 0.5 * (i as f32 / 20.0).sin() + 0.5 * (i as f32 / 30.0).cos()).collect();
        let spiky: Vec<f32> = (0..100).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect();
        let probe = vec![clean.clone(), clean, spiky.clone(), spiky];
        let est = Array2::from_shape_vec((4, 1), vec![4100.0, 9000.0, 4100.0, 9000.0]).unwrap();
        assert_eq!(
            d.flags_rows(&probe, &[0, 1, 2, 3], &est).unwrap(),
            vec![0, FLAG_RANGE, FLAG_FAR, FLAG_RANGE | FLAG_FAR]
        );
        // Round trip through the file form.
        let mut t: BTreeMap<String, ArrayD<f32>> = d.tensors().into_iter().collect();
        let back = Domain::take(&d.meta(), &mut t).unwrap();
        assert!(t.is_empty());
        assert_eq!(
            back.flags_rows(&probe, &[0, 1, 2, 3], &est).unwrap(),
            vec![0, FLAG_RANGE, FLAG_FAR, FLAG_RANGE | FLAG_FAR]
        );
    }

    #[test]
    fn normal_cdf_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.0) - 0.841_344_746).abs() < 1e-6);
        assert!((normal_cdf(-2.0) - 0.022_750_132).abs() < 1e-6);
    }
}
