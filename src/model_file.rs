//! The trained-model file: what `train` writes and `predict`, `evaluate` and the Python package read.
//! Its metadata keys, the label scaling, the training history, the estimator a file holds (a network,
//! an ensemble or a baseline) with its uncertainty calibration and domain, `load_trained`, and running
//! an estimator on preprocessed rows. `train` and `predict` both build on this module; neither
//! imports the other.

use crate::baselines::{Baseline, BaselineKind, BASELINE_KEY};
use crate::data::dataset::to_input;
use crate::data::store::RowSource;
use crate::data::PrepConfig;
use crate::error::{Error, Result};
use crate::gpu::{Device, GpuNet};
use crate::io::parse_safetensors;
use crate::nn::{members_from, Arch, Model};
use crate::ops::loss;
use crate::trust::{Calibration, Domain, CALIBRATION_KEY, DOMAIN_KEY};
use ndarray::{Array2, ArrayD};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Metadata keys of a trained model file.
pub const TARGETS_KEY: &str = "specnn-targets";
pub const SCALING_KEY: &str = "specnn-scaling";
pub const PREP_KEY: &str = "specnn-prep";
pub const HISTORY_KEY: &str = "specnn-history";
pub const SYNTHETIC_KEY: &str = "specnn-trained-on-synthetic";
/// The training loss (`mae` or `nll`); absent in files written before `--loss` existed (`mae`). A
/// network trained with `nll` has twice the outputs: the means, then the log-variances (in the label
/// standardisation's units).
pub const LOSS_KEY: &str = "specnn-loss";

/// The training loss (`--loss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// The masked mean absolute error of standardised labels (the seed's loss).
    #[default]
    Mae,
    /// The Gaussian negative log-likelihood of a heteroscedastic head: the network predicts a mean
    /// and a log-variance per label (twice the outputs), and the variance becomes part of each
    /// star's uncertainty.
    Nll,
}

impl Loss {
    /// The name in model files, on the command line and in Python (`mae`, `nll`).
    pub fn name(self) -> &'static str {
        match self {
            Loss::Mae => "mae",
            Loss::Nll => "nll",
        }
    }

    /// The loss of a name (`name`'s inverse).
    pub fn parse(name: &str) -> Option<Loss> {
        [Loss::Mae, Loss::Nll].into_iter().find(|l| l.name() == name)
    }

    /// Network outputs per label: a mean, and for `nll` a log-variance.
    pub fn outputs_per_label(self) -> usize {
        match self {
            Loss::Mae => 1,
            Loss::Nll => 2,
        }
    }
}

/// Label standardisation, stored in the model file: `z = (y - mean) / sd`, or
/// `z = (log10 y - mean) / sd` for the labels marked in `log10`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaling {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Which labels are standardised as log10 (absent in older files: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log10: Vec<bool>,
}

impl Scaling {
    /// Whether label `j` is learnt as its log10.
    pub fn is_log(&self, j: usize) -> bool {
        self.log10.get(j).copied().unwrap_or(false)
    }

    /// Label `j`'s value (in its units) of the standardised `z`.
    pub fn to_label(&self, j: usize, z: f64) -> f64 {
        let v = z * self.sd[j] + self.mean[j];
        if self.is_log(j) {
            10f64.powf(v)
        } else {
            v
        }
    }

    /// The standardised value of label `j`'s value `y` (NaN for a log label that is not positive).
    pub fn to_z(&self, j: usize, y: f64) -> f64 {
        let v = if self.is_log(j) {
            if y > 0.0 {
                y.log10()
            } else {
                f64::NAN
            }
        } else {
            y
        };
        (v - self.mean[j]) / self.sd[j]
    }

    /// A spread in label units of a spread `dz` in standardised units around the estimate `z`.
    pub fn spread_to_label(&self, j: usize, z: f64, dz: f64) -> f64 {
        if self.is_log(j) {
            self.to_label(j, z) * std::f64::consts::LN_10 * self.sd[j] * dz
        } else {
            self.sd[j] * dz
        }
    }

    /// The error `truth - estimate` of label `j` in the units of a standardised sigma: the inverse of
    /// [`Scaling::spread_to_label`] at the estimate, so `|error_z| < sigma_z` exactly when
    /// `|truth - estimate|` is below the sigma stated in label units. For a log label that is the
    /// error linearised at the estimate, `(truth - est) / (est ln 10 sd)`, not the log10 difference
    /// (which differs from it for large errors, and would calibrate a different interval than the
    /// catalog states).
    pub fn error_z(&self, j: usize, truth: f64, est: f64) -> f64 {
        let per_unit = self.spread_to_label(j, self.to_z(j, est), 1.0);
        (truth - est) / per_unit
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss (standardised MAE, or the Gaussian NLL for `--loss nll`).
    pub train_loss: f64,
    /// Validation MAE per target, in the label's units.
    pub val_mae: Vec<f64>,
    /// Mean standardised validation MAE (what early stopping watches).
    pub val_score: f64,
    pub samples_per_s: f64,
}

/// The whole run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {
    pub epochs: Vec<EpochStats>,
    pub best_epoch: usize,
    pub best_score: Option<f64>,
    pub stopped_early: bool,
    /// Row indices of the validation stars.
    pub validation: Vec<usize>,
    /// What the training loss is (files from before `--loss`: the MAE).
    #[serde(default)]
    pub loss: Loss,
}

/// Predictions in label units for `rows` and a variance head's variances (`estimate_rows_with`), on
/// the CPU.
#[allow(clippy::type_complexity)]
pub fn estimate_rows<X: RowSource + ?Sized>(
    model: &Model<f32>,
    x: &X,
    rows: &[usize],
    s: &Scaling,
    batch: usize,
) -> Result<(Array2<f64>, Option<Array2<f64>>)> {
    estimate_rows_with(model.arch(), x, rows, s, batch, |b| model.predict(b))
}

/// Predictions in label units for `rows`, in batches of `batch`, on the CPU (on any device:
/// `predict::Estimator::runner`).
pub fn predict_rows<X: RowSource + ?Sized>(
    model: &Model<f32>,
    x: &X,
    rows: &[usize],
    s: &Scaling,
    batch: usize,
) -> Result<Array2<f64>> {
    predict_rows_with(model.arch(), x, rows, s, batch, |b| model.predict(b))
}

/// Predictions in label units for `rows`, in batches of `batch`, each batch run by `run`.
pub(crate) fn predict_rows_with<X: RowSource + ?Sized>(
    arch: &Arch,
    x: &X,
    rows: &[usize],
    s: &Scaling,
    batch: usize,
    run: impl Fn(&ArrayD<f32>) -> Result<ArrayD<f32>>,
) -> Result<Array2<f64>> {
    Ok(estimate_rows_with(arch, x, rows, s, batch, run)?.0)
}

/// Whether a network of `arch` estimating `labels` labels has a variance head (`--loss nll`): twice
/// the outputs, the means then the log-variances.
pub fn has_variance_head(arch: &Arch, labels: usize) -> bool {
    arch.outputs() == 2 * labels
}

/// Predictions in label units for `rows` and, for a network with a variance head, each estimate's
/// predicted variance in standardised units (`exp` of the clamped log-variance output).
#[allow(clippy::type_complexity)]
pub(crate) fn estimate_rows_with<X: RowSource + ?Sized>(
    arch: &Arch,
    x: &X,
    rows: &[usize],
    s: &Scaling,
    batch: usize,
    run: impl Fn(&ArrayD<f32>) -> Result<ArrayD<f32>>,
) -> Result<(Array2<f64>, Option<Array2<f64>>)> {
    let k = s.mean.len();
    let batch = batch.max(1);
    let head = has_variance_head(arch, k);
    let mut out = Array2::<f64>::zeros((rows.len(), k));
    let mut var = head.then(|| Array2::<f64>::zeros((rows.len(), k)));
    for (c, chunk) in rows.chunks(batch).enumerate() {
        let pred = run(&x.with_rows(chunk, |refs| to_input(arch, refs))?)?;
        for (i, row) in pred.outer_iter().enumerate() {
            for j in 0..k {
                out[[c * batch + i, j]] = s.to_label(j, row[j] as f64);
                if let Some(v) = var.as_mut() {
                    v[[c * batch + i, j]] = (row[k + j] as f64).clamp(-loss::LOG_VAR_LIMIT, loss::LOG_VAR_LIMIT).exp();
                }
            }
        }
    }
    Ok((out, var))
}

/// The metadata `predict` needs from any trained model file, network or baseline.
pub(crate) fn trained_meta(
    targets: &[String],
    scale: &Scaling,
    prep: &PrepConfig,
    history: &History,
    synthetic: bool,
) -> HashMap<String, String> {
    let mut meta = HashMap::new();
    meta.insert(TARGETS_KEY.into(), targets.join(","));
    meta.insert(SCALING_KEY.into(), serde_json::to_string(scale).expect("serialisable"));
    meta.insert(PREP_KEY.into(), serde_json::to_string(prep).expect("serialisable"));
    meta.insert(HISTORY_KEY.into(), serde_json::to_string(history).expect("serialisable"));
    meta.insert(SYNTHETIC_KEY.into(), synthetic.to_string());
    meta
}

/// What estimates the labels: a network, or one of the seed's baselines.
#[derive(Clone, Debug)]
pub enum Estimator {
    Net(Model<f32>),
    /// Networks of one architecture from different seeds: their standardised estimates are averaged.
    Ensemble(Vec<Model<f32>>),
    Baseline(Baseline),
}

impl Estimator {
    /// The number of labels it estimates.
    pub fn outputs(&self) -> usize {
        match self {
            Estimator::Net(m) => m.arch().outputs(),
            Estimator::Ensemble(ms) => ms[0].arch().outputs(),
            Estimator::Baseline(b) => b.outputs(),
        }
    }

    /// One line for reports: the architecture's JSON, or the baseline's name.
    pub fn describe(&self) -> String {
        match self {
            Estimator::Net(m) => m.arch().to_json(),
            Estimator::Ensemble(ms) => format!("{} x{}", ms[0].arch().to_json(), ms.len()),
            Estimator::Baseline(b) => format!("{{\"kind\":\"{}\",\"inputs\":{}}}", b.kind().name(), b.inputs()),
        }
    }

    /// The estimator made ready to run on `device`: a network's weights are uploaded to a GPU once
    /// here; baselines run on the CPU.
    pub fn runner(&self, device: &Device) -> Result<Runner<'_>> {
        Ok(match (self, device.gpu()) {
            (Estimator::Net(m), Some(g)) => Runner::Gpu(m, GpuNet::new(g.clone(), m.clone())?),
            (Estimator::Ensemble(ms), Some(g)) => Runner::GpuEnsemble(
                ms.iter().map(|m| Ok((m, GpuNet::new(g.clone(), m.clone())?))).collect::<Result<_>>()?,
            ),
            _ => Runner::Cpu(self),
        })
    }

    /// The number of networks averaged (1 for a network or a baseline).
    pub fn members(&self) -> usize {
        match self {
            Estimator::Ensemble(ms) => ms.len(),
            _ => 1,
        }
    }

    /// Label estimates (in label units) for `x[rows]`; networks run in batches of `batch` on `device`.
    pub fn predict_rows(
        &self,
        x: &[Vec<f32>],
        rows: &[usize],
        s: &Scaling,
        batch: usize,
        device: &Device,
    ) -> Result<ndarray::Array2<f64>> {
        self.runner(device)?.predict_rows(x, rows, s, batch)
    }
}

/// An [`Estimator`] ready to run many batches on its device.
pub enum Runner<'e> {
    Cpu(&'e Estimator),
    Gpu(&'e Model<f32>, GpuNet),
    GpuEnsemble(Vec<(&'e Model<f32>, GpuNet)>),
}

/// Estimates with their raw spread: `mean` in label units; `spread_z` in standardised units (log10
/// units for a log label): an ensemble's member spread, a forest's trees', the kNN's neighbours';
/// NaN where the estimator has none. `members_z` is an ensemble's member spread alone (the standard
/// deviation of its members' estimates, standardised units; NaN for a single estimator): the part of
/// `spread_z` that is the model's own doubt, without the variance heads' predicted noise.
pub struct Estimates {
    pub mean: ndarray::Array2<f64>,
    pub spread_z: ndarray::Array2<f64>,
    pub members_z: ndarray::Array2<f64>,
}

impl Runner<'_> {
    /// Label estimates (in label units) for `x[rows]`, networks in batches of `batch`.
    pub fn predict_rows(
        &self,
        x: &[Vec<f32>],
        rows: &[usize],
        s: &Scaling,
        batch: usize,
    ) -> Result<ndarray::Array2<f64>> {
        Ok(self.estimate_rows(x, rows, s, batch)?.mean)
    }

    /// Label estimates and their spread for `x[rows]`. A network's spread is its variance head's
    /// predicted sigma (`--loss nll`); an ensemble's is its members' spread, combined with their mean
    /// predicted variance where they have a head (`sqrt(var of the means + mean of the variances)`,
    /// Lakshminarayanan et al. 2017).
    pub fn estimate_rows(&self, x: &[Vec<f32>], rows: &[usize], s: &Scaling, batch: usize) -> Result<Estimates> {
        type Each = (ndarray::Array2<f64>, Option<ndarray::Array2<f64>>);
        let single = |(mean, var): Each| Estimates {
            spread_z: var.map_or_else(|| ndarray::Array2::from_elem(mean.dim(), f64::NAN), |v| v.mapv(f64::sqrt)),
            members_z: ndarray::Array2::from_elem(mean.dim(), f64::NAN),
            mean,
        };
        // Members' estimates are averaged in standardised units (for a log label: in log10).
        let combine = |each: Vec<Each>| -> Estimates {
            let (n, k) = each[0].0.dim();
            let m = each.len() as f64;
            let mut mean = ndarray::Array2::zeros((n, k));
            let mut spread_z = ndarray::Array2::zeros((n, k));
            let mut members_z = ndarray::Array2::zeros((n, k));
            for i in 0..n {
                for j in 0..k {
                    let z: Vec<f64> = each.iter().map(|e| s.to_z(j, e.0[[i, j]])).collect();
                    let zm = z.iter().sum::<f64>() / m;
                    mean[[i, j]] = s.to_label(j, zm);
                    let aleatoric = each.iter().map(|e| e.1.as_ref().map_or(0.0, |v| v[[i, j]])).sum::<f64>() / m;
                    let epistemic = z.iter().map(|v| (v - zm).powi(2)).sum::<f64>() / (m - 1.0).max(1.0);
                    spread_z[[i, j]] = (epistemic + aleatoric).sqrt();
                    members_z[[i, j]] = epistemic.sqrt();
                }
            }
            Estimates { mean, spread_z, members_z }
        };
        Ok(match self {
            Runner::Gpu(m, net) => single(estimate_rows_with(m.arch(), x, rows, s, batch, |b| net.predict(b))?),
            Runner::GpuEnsemble(nets) => combine(
                nets.iter()
                    .map(|(m, net)| estimate_rows_with(m.arch(), x, rows, s, batch, |b| net.predict(b)))
                    .collect::<Result<_>>()?,
            ),
            Runner::Cpu(Estimator::Ensemble(ms)) => {
                combine(ms.iter().map(|m| estimate_rows(m, x, rows, s, batch)).collect::<Result<_>>()?)
            }
            Runner::Cpu(Estimator::Net(m)) => single(estimate_rows(m, x, rows, s, batch)?),
            Runner::Cpu(Estimator::Baseline(b)) => {
                let (mut z, spread_z) = b.predict_spread(x, rows)?;
                for mut row in z.rows_mut() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = s.to_label(j, *v);
                    }
                }
                let members_z = ndarray::Array2::from_elem(z.dim(), f64::NAN);
                Estimates { mean: z, spread_z, members_z }
            }
        })
    }
}

/// A trained model with everything `predict` needs to repeat training's preprocessing.
pub struct Trained {
    pub path: PathBuf,
    pub model: Estimator,
    pub targets: Vec<String>,
    pub scaling: Scaling,
    pub prep: PrepConfig,
    pub history: History,
    /// Whether it was trained on synthetic spectra.
    pub synthetic: bool,
    /// Spreads to 1-sigma uncertainties (absent in files written before it existed).
    pub calibration: Option<Calibration>,
    /// The training set's domain, for the out-of-domain flags (likewise).
    pub domain: Option<Domain>,
    /// SHA-256 of the model file (hex), written into catalogs so a row can be traced to its model.
    pub sha256: String,
}

impl Trained {
    /// The 1-sigma uncertainties (label units) of estimates `e`, NaN where the model has no
    /// calibration.
    pub fn sigmas(&self, e: &Estimates) -> ndarray::Array2<f64> {
        sigmas(&self.scaling, self.calibration.as_ref(), e)
    }
}

/// Loads a model file written by `specnn train`.
pub fn load_trained(path: &Path) -> Result<Trained> {
    let sha256;
    let (model, meta, domain) = {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        sha256 = sha256_hex(&bytes);
        let (mut tensors, meta) = parse_safetensors::<f32>(path, &bytes)?;
        let domain = match meta.get(DOMAIN_KEY) {
            Some(m) => Some(Domain::take(m, &mut tensors).map_err(|e| Error::file(path, e.to_string()))?),
            None => None,
        };
        let (model, meta) = match meta.get(BASELINE_KEY) {
            Some(kind) => {
                let kind: BaselineKind = serde_json::from_str(kind)
                    .map_err(|e| Error::file(path, format!("metadata `{BASELINE_KEY}` is malformed: {e}")))?;
                let b = Baseline::from_tensors(kind, &tensors).map_err(|e| Error::file(path, e.to_string()))?;
                (Estimator::Baseline(b), meta)
            }
            None => {
                let mut ms = members_from::<f32>(path, tensors, &meta)?;
                (if ms.len() == 1 { Estimator::Net(ms.remove(0)) } else { Estimator::Ensemble(ms) }, meta)
            }
        };
        (model, meta, domain)
    };
    let get = |k: &str| {
        meta.get(k)
            .ok_or_else(|| Error::file(path, format!("no `{k}` metadata: not a model written by `specnn train`")))
    };
    let bad = |k: &str, e: serde_json::Error| Error::file(path, format!("metadata `{k}` is malformed: {e}"));
    let targets: Vec<String> = get(TARGETS_KEY)?.split(',').map(String::from).collect();
    let scaling: Scaling = serde_json::from_str(get(SCALING_KEY)?).map_err(|e| bad(SCALING_KEY, e))?;
    let prep: PrepConfig = serde_json::from_str(get(PREP_KEY)?).map_err(|e| bad(PREP_KEY, e))?;
    let history: History = meta
        .get(HISTORY_KEY)
        .map(|h| serde_json::from_str(h))
        .transpose()
        .map_err(|e| bad(HISTORY_KEY, e))?
        .unwrap_or_default();
    let loss: Loss = match meta.get(LOSS_KEY) {
        Some(l) => Loss::parse(l).ok_or_else(|| {
            Error::file(path, format!("metadata `{LOSS_KEY}` is malformed: `{l}` is not a loss (mae, nll)"))
        })?,
        None => Loss::Mae,
    };
    let per_label = if matches!(model, Estimator::Baseline(_)) { 1 } else { loss.outputs_per_label() };
    if targets.len() * per_label != model.outputs() || scaling.mean.len() != targets.len() {
        let head = if per_label == 2 { " (a mean and a log-variance each, `--loss nll`)" } else { "" };
        return Err(Error::file(
            path,
            format!("{} targets{head} for a model of {} outputs", targets.len(), model.outputs()),
        ));
    }
    let calibration: Option<Calibration> =
        meta.get(CALIBRATION_KEY).map(|c| serde_json::from_str(c)).transpose().map_err(|e| bad(CALIBRATION_KEY, e))?;
    if calibration.as_ref().is_some_and(|c| c.scale.len() != targets.len() || c.floor.len() != targets.len()) {
        return Err(Error::file(path, format!("metadata `{CALIBRATION_KEY}` is not for {} targets", targets.len())));
    }
    Ok(Trained {
        path: path.into(),
        model,
        targets,
        scaling,
        prep,
        history,
        synthetic: meta.get(SYNTHETIC_KEY).is_some_and(|v| v == "true"),
        calibration,
        domain,
        sha256,
    })
}

/// The SHA-256 digest of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The 1-sigma uncertainties (label units) of estimates `e` under `calibration` (NaN without one).
pub fn sigmas(scaling: &Scaling, calibration: Option<&Calibration>, e: &Estimates) -> ndarray::Array2<f64> {
    ndarray::Array2::from_shape_fn(e.mean.dim(), |(i, j)| match calibration {
        Some(c) => sigma_of(scaling, c, j, e.mean[[i, j]], e.spread_z[[i, j]]),
        None => f64::NAN,
    })
}

/// The 1-sigma uncertainty (label units) of label `j`'s estimate `est` with raw spread `spread_z`.
pub fn sigma_of(scaling: &Scaling, c: &Calibration, j: usize, est: f64, spread_z: f64) -> f64 {
    scaling.spread_to_label(j, scaling.to_z(j, est), c.sigma_z(j, spread_z))
}

#[cfg(test)]
mod tests {
    use super::{Loss, Scaling};
    use clap::ValueEnum;

    /// `error_z` is the error in the units of the stated sigma: below a standardised sigma exactly
    /// when the error in label units is below that sigma in label units, for log and linear labels;
    /// for a small error of a log label it is the log10 difference, for a large one it is not.
    #[test]
    fn error_z_measures_errors_as_the_stated_sigma_does() {
        let s = Scaling { mean: vec![3.7, 0.0], sd: vec![0.2, 0.5], log10: vec![true, false] };
        for (j, est, truth) in [(0, 5000.0, 5100.0), (0, 11_000.0, 23_000.0), (0, 9000.0, 6000.0), (1, -0.5, -1.4)] {
            let z = s.to_z(j, est);
            let e = s.error_z(j, truth, est);
            for sigma_z in [0.01, 0.1, 0.5, 1.0, 3.0] {
                let in_label = (truth - est).abs() < s.spread_to_label(j, z, sigma_z);
                assert_eq!(e.abs() < sigma_z, in_label, "label {j}, {est} -> {truth}, sigma_z {sigma_z}");
            }
        }
        let small = s.error_z(0, 5010.0, 5000.0);
        let log_diff = s.to_z(0, 5010.0) - s.to_z(0, 5000.0);
        assert!((small - log_diff).abs() < 2e-3 * log_diff.abs(), "{small} {log_diff}");
        let big = s.error_z(0, 23_000.0, 11_000.0);
        let log_big = s.to_z(0, 23_000.0) - s.to_z(0, 11_000.0);
        assert!(big > 1.3 * log_big, "{big} {log_big}");
    }

    /// The name in model files is the one serde and clap use, so files written before `Loss::name`
    /// (through serde) and the `--loss` values read the same.
    #[test]
    fn loss_names_round_trip_and_match_serde_and_clap() {
        for l in Loss::value_variants() {
            assert_eq!(Loss::parse(l.name()), Some(*l));
            assert_eq!(serde_json::to_value(l).unwrap(), serde_json::Value::String(l.name().into()));
            assert_eq!(l.to_possible_value().unwrap().get_name(), l.name());
        }
        assert_eq!(Loss::parse("mse"), None);
    }
}
