//! Training: label standardisation, a seeded split, the masked MAE loss (unknown labels are skipped),
//! Adam, early stopping on the validation MAE, a checkpoint after every epoch (written atomically) and
//! resumption from it.
//!
//! Everything random is seeded (`seed`, and the epoch number for each epoch's shuffle), and the CPU
//! path is deterministic, so a resumed run reaches the same weights as an uninterrupted one.

use crate::autograd::{DeferredDense, ParamGrads, Tape};
use crate::data::dataset::to_input;
use crate::data::store::RowSource;
use crate::data::PrepConfig;
use crate::error::{Error, Result};
use crate::baselines::{Baseline, BaselineKind, BASELINE_KEY};
use crate::gpu::{Device, GpuTrainer};
use crate::predict::Estimator;
use crate::io::{read_safetensors, write_safetensors};
use crate::nn::{save_model, Arch, Model};
use crate::optim::{Adam, AdamConfig};
use crate::ops::loss;
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn, Slice};
use rayon::prelude::*;
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Metadata keys of a trained model file.
pub const TARGETS_KEY: &str = "specnn-targets";
pub const SCALING_KEY: &str = "specnn-scaling";
pub const PREP_KEY: &str = "specnn-prep";
pub const HISTORY_KEY: &str = "specnn-history";
pub const SYNTHETIC_KEY: &str = "specnn-trained-on-synthetic";

/// How to train.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    pub targets: Vec<String>,
    pub prep: PrepConfig,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Fraction of stars for training; the rest validate (the seed's 7:3).
    pub split: f64,
    pub seed: u64,
    /// Epochs without improvement of the validation MAE before stopping.
    pub patience: usize,
    /// The validation stars (row indices) when given (`--validation LIST`) instead of the seeded split.
    #[serde(default)]
    pub validation: Option<Vec<usize>>,
}

/// The (train, validation) rows: the given validation rows, or the seeded split.
pub fn rows_for(n: usize, frac: f64, seed: u64, validation: Option<&[usize]>) -> Result<(Vec<usize>, Vec<usize>)> {
    let Some(v) = validation else { return Ok(split(n, frac, seed)) };
    let mut is_val = vec![false; n];
    for &r in v {
        if r >= n {
            return Err(Error::invalid("train", format!("validation row {r} is past the {n} labelled spectra")));
        }
        is_val[r] = true;
    }
    let val: Vec<usize> = (0..n).filter(|&i| is_val[i]).collect();
    let train: Vec<usize> = (0..n).filter(|&i| !is_val[i]).collect();
    if val.is_empty() || train.len() < 2 {
        return Err(Error::invalid("train", format!("the validation list leaves {} stars to validate and {} to train on", val.len(), train.len())));
    }
    Ok((train, val))
}

/// Label standardisation, stored in the model file: `z = (y - mean) / sd`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Scaling {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
}

impl Scaling {
    /// Label `j`'s value (in its units) of the standardised `z`.
    pub fn to_label(&self, j: usize, z: f64) -> f64 {
        z * self.sd[j] + self.mean[j]
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochStats {
    pub epoch: usize,
    /// Mean training loss (standardised MAE).
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
}

/// The seeded split: (train, validation) row indices.
pub fn split(n: usize, frac: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5_917);
    for i in (1..n).rev() {
        idx.swap(i, rng.random_range(0..=i));
    }
    let k = ((n as f64) * frac).round() as usize;
    let (a, b) = idx.split_at(k.clamp(1, n.saturating_sub(1).max(1)));
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    (a, b)
}

fn scaling(y: &Array2<f64>, rows: &[usize]) -> Result<Scaling> {
    let k = y.ncols();
    let (mut mean, mut sd) = (vec![0.0; k], vec![1.0; k]);
    for j in 0..k {
        let v: Vec<f64> = rows.iter().map(|&r| y[[r, j]]).filter(|v| v.is_finite()).collect();
        if v.len() < 2 {
            return Err(Error::Data(format!("target {j} is known for {} training stars; at least 2 are needed", v.len())));
        }
        mean[j] = v.iter().sum::<f64>() / v.len() as f64;
        sd[j] = (v.iter().map(|x| (x - mean[j]).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt().max(1e-12);
    }
    Ok(Scaling { mean, sd })
}

fn batch<X: RowSource + ?Sized>(x: &X, y: &Array2<f64>, rows: &[usize], arch: &Arch, s: &Scaling) -> Result<(ArrayD<f32>, ArrayD<f32>, ArrayD<f32>)> {
    let input = x.with_rows(rows, |refs| to_input(arch, refs))?;
    let k = y.ncols();
    let mut t = vec![0f32; rows.len() * k];
    let mut m = vec![0f32; rows.len() * k];
    for (i, &r) in rows.iter().enumerate() {
        for j in 0..k {
            let v = y[[r, j]];
            if v.is_finite() {
                t[i * k + j] = ((v - s.mean[j]) / s.sd[j]) as f32;
                m[i * k + j] = 1.0;
            }
        }
    }
    Ok((input, ArrayD::from_shape_vec(IxDyn(&[rows.len(), k]), t).expect("shape"), ArrayD::from_shape_vec(IxDyn(&[rows.len(), k]), m).expect("shape")))
}

/// Rows per piece of a training batch on the CPU (see `cpu_step`).
pub const STEP_PIECE_ROWS: usize = 64;

/// One training step on the CPU: forward, masked MAE loss, backward and Adam (`piece_gradients_with`
/// leaving dense weight gradients to `Adam::step_deferred`, which forms them block by block and
/// updates each block while it is in cache). Returns the batch's loss.
pub fn cpu_step<T: Float>(model: &mut Model<T>, adam: &mut Adam<T>, x: ArrayViewD<'_, T>, y: ArrayViewD<'_, T>, mask: ArrayViewD<'_, T>) -> Result<f64> {
    let (loss, grads, dense) = piece_gradients_with(model, x, y, mask, true)?;
    adam.step_deferred(model.params_mut(), grads, dense)?;
    Ok(loss)
}

/// The masked MAE loss of a batch and its parameter gradients, as one list per piece of the batch:
/// the batch's gradient is their sum in list order.
///
/// A batch of more than `STEP_PIECE_ROWS` rows is cut into pieces of at most that many rows, run
/// forward and backward side by side on rayon's threads, each with its own tape. No sample depends on
/// another (none of the models has a batch-level layer) and each piece's loss gradient is scaled by
/// the whole batch's count of labels, so the pieces' gradients add up to the batch's. Each thread
/// then runs a pass of its own, elementwise work included, instead of all threads waking for every
/// matrix product and one of them running the work in between (products still offer half their work
/// to an idle thread, which keeps both busy when one piece finishes first). The cut depends only on
/// the batch size, never on the number of threads, so a run gives the same weights on any number of
/// cores.
pub fn piece_gradients<T: Float>(model: &Model<T>, x: ArrayViewD<'_, T>, y: ArrayViewD<'_, T>, mask: ArrayViewD<'_, T>) -> Result<(f64, Vec<ParamGrads<T>>)> {
    piece_gradients_with(model, x, y, mask, false).map(|(loss, grads, _)| (loss, grads))
}

/// `piece_gradients`; with `defer`, each piece's dense weight gradients are left as the layers'
/// inputs and output gradients (`autograd::Tape::defer_dense_weight_grads`, for
/// `optim::Adam::step_deferred`), one list per piece.
#[allow(clippy::type_complexity)]
pub fn piece_gradients_with<T: Float>(
    model: &Model<T>,
    x: ArrayViewD<'_, T>,
    y: ArrayViewD<'_, T>,
    mask: ArrayViewD<'_, T>,
    defer: bool,
) -> Result<(f64, Vec<ParamGrads<T>>, Vec<Vec<DeferredDense<T>>>)> {
    let n = x.shape().first().copied().unwrap_or(0);
    if y.shape().first() != Some(&n) || mask.shape() != y.shape() {
        return Err(Error::shape("training step", "inputs, targets and mask must have one row per sample", &[x.shape(), y.shape(), mask.shape()]));
    }
    let count = mask.sum();
    if !(count > T::zero()) {
        return Err(Error::invalid("masked_mae_loss", "every target is masked: no label to learn from"));
    }
    let k = T::one() / count;
    let pieces = n.div_ceil(STEP_PIECE_ROWS).max(1);
    let piece = |i: usize| -> Result<(T, ParamGrads<T>, Vec<DeferredDense<T>>)> {
        let rows = Slice::from(i * n / pieces..(i + 1) * n / pieces);
        let (xs, ys, ms) = (x.slice_axis(Axis(0), rows), y.slice_axis(Axis(0), rows), mask.slice_axis(Axis(0), rows));
        let mut tape = if defer { Tape::defer_dense_weight_grads() } else { Tape::new() };
        let xv = tape.input_view(xs, false);
        let pred = model.forward(&mut tape, xv)?;
        let sum = loss::masked_abs_sum(&tape.value(pred), &ys, &ms)?;
        let grad = loss::masked_mae_grad(&tape.value(pred), &ys, &ms, k);
        tape.backward_with(pred, grad)?;
        let (grads, dense) = tape.into_param_grads_deferred();
        Ok((sum, grads, dense))
    };
    let results: Vec<Result<_>> = if pieces == 1 { vec![piece(0)] } else { (0..pieces).into_par_iter().map(piece).collect() };
    let (mut sum, mut grads, mut dense) = (T::zero(), Vec::with_capacity(pieces), Vec::with_capacity(pieces));
    for r in results {
        let (s, g, d) = r?;
        sum += s;
        grads.push(g);
        dense.push(d);
    }
    Ok(((sum * k).f64(), grads, dense))
}

/// Predictions in label units for `rows`, in batches of `batch`, on the CPU (on any device:
/// `predict::Estimator::runner`).
pub fn predict_rows<X: RowSource + ?Sized>(model: &Model<f32>, x: &X, rows: &[usize], s: &Scaling, batch: usize) -> Result<Array2<f64>> {
    predict_rows_with(model.arch(), x, rows, s, batch, |b| model.predict(b))
}

/// Predictions in label units for `rows`, in batches of `batch`, each batch run by `run`.
pub(crate) fn predict_rows_with<X: RowSource + ?Sized>(arch: &Arch, x: &X, rows: &[usize], s: &Scaling, batch: usize, run: impl Fn(&ArrayD<f32>) -> Result<ArrayD<f32>>) -> Result<Array2<f64>> {
    let k = s.mean.len();
    let batch = batch.max(1);
    let mut out = Array2::<f64>::zeros((rows.len(), k));
    for (c, chunk) in rows.chunks(batch).enumerate() {
        let pred = run(&x.with_rows(chunk, |refs| to_input(arch, refs))?)?;
        for (i, row) in pred.outer_iter().enumerate() {
            for j in 0..k {
                out[[c * batch + i, j]] = s.to_label(j, row[j] as f64);
            }
        }
    }
    Ok(out)
}

fn checkpoint_path(model_out: &Path) -> PathBuf {
    let mut p = model_out.as_os_str().to_owned();
    p.push(".ckpt");
    PathBuf::from(p)
}

struct State {
    model: Model<f32>,
    adam: Adam<f32>,
    history: History,
    bad_epochs: usize,
}

fn save_checkpoint(path: &Path, cfg: &TrainConfig, scale: &Scaling, st: &State) -> Result<()> {
    let mut tensors: Vec<(String, &ArrayD<f32>)> = st.model.params().into_iter().map(|(n, p)| (format!("model.{n}"), p)).collect();
    tensors.extend(st.adam.state().into_iter().map(|(n, p)| (format!("adam.{n}"), p)));
    let mut meta = HashMap::new();
    meta.insert("specnn-train-config".into(), serde_json::to_string(cfg).expect("serialisable"));
    meta.insert(SCALING_KEY.into(), serde_json::to_string(scale).expect("serialisable"));
    meta.insert(HISTORY_KEY.into(), serde_json::to_string(&st.history).expect("serialisable"));
    meta.insert("specnn-adam-step".into(), st.adam.step.to_string());
    meta.insert("specnn-bad-epochs".into(), st.bad_epochs.to_string());
    write_safetensors(path, &tensors, meta)
}

fn load_checkpoint(path: &Path, cfg: &TrainConfig) -> Result<State> {
    let (mut tensors, meta) = read_safetensors::<f32>(path)?;
    let get = |k: &str| meta.get(k).ok_or_else(|| Error::file(path, format!("checkpoint lacks `{k}`")));
    let saved: TrainConfig = serde_json::from_str(get("specnn-train-config")?).map_err(|e| Error::file(path, e.to_string()))?;
    // The number of epochs may grow (resume an interrupted run, or train longer); nothing else may change.
    if (TrainConfig { epochs: cfg.epochs, ..saved }) != *cfg {
        return Err(Error::file(path, "the checkpoint was written by a run with other settings (architecture, targets, preprocessing, batch, lr, split, validation list, seed or patience); rerun without --resume or with the same settings"));
    }
    let model_t: BTreeMap<String, ArrayD<f32>> = tensors.iter().filter_map(|(k, v)| k.strip_prefix("model.").map(|n| (n.to_string(), v.clone()))).collect();
    let model = Model::from_tensors(&cfg.arch, model_t).map_err(|e| Error::file(path, e.to_string()))?;
    let adam_t: Vec<(String, ArrayD<f32>)> = std::mem::take(&mut tensors).into_iter().filter_map(|(k, v)| k.strip_prefix("adam.").map(|n| (n.to_string(), v))).collect();
    let mut adam = Adam::new(AdamConfig { lr: cfg.lr, ..AdamConfig::default() });
    adam.restore(get("specnn-adam-step")?.parse().map_err(|_| Error::file(path, "bad adam step"))?, adam_t)?;
    let history: History = serde_json::from_str(get(HISTORY_KEY)?).map_err(|e| Error::file(path, e.to_string()))?;
    let bad_epochs = get("specnn-bad-epochs")?.parse().map_err(|_| Error::file(path, "bad epoch count"))?;
    Ok(State { model, adam, history, bad_epochs })
}

/// Writes the trained model: weights, architecture, targets, scaling, preprocessing and history.
pub fn save_trained(path: &Path, model: &Model<f32>, cfg: &TrainConfig, scale: &Scaling, history: &History, synthetic: bool) -> Result<()> {
    save_model(path, model, trained_meta(&cfg.targets, scale, &cfg.prep, history, synthetic))
}

/// The metadata `predict` needs from any trained model file, network or baseline.
fn trained_meta(targets: &[String], scale: &Scaling, prep: &PrepConfig, history: &History, synthetic: bool) -> HashMap<String, String> {
    let mut meta = HashMap::new();
    meta.insert(TARGETS_KEY.into(), targets.join(","));
    meta.insert(SCALING_KEY.into(), serde_json::to_string(scale).expect("serialisable"));
    meta.insert(PREP_KEY.into(), serde_json::to_string(prep).expect("serialisable"));
    meta.insert(HISTORY_KEY.into(), serde_json::to_string(history).expect("serialisable"));
    meta.insert(SYNTHETIC_KEY.into(), synthetic.to_string());
    meta
}

/// The MAE of label `j` (in its units) of the estimates `pred` (row `i` for star `rows[i]`) over the
/// stars whose label is known; None when none is.
pub(crate) fn label_mae(y: &Array2<f64>, rows: &[usize], pred: &Array2<f64>, j: usize) -> Option<f64> {
    let errs: Vec<f64> = rows.iter().enumerate().filter(|(_, &r)| y[[r, j]].is_finite()).map(|(i, &r)| (y[[r, j]] - pred[[i, j]]).abs()).collect();
    (!errs.is_empty()).then(|| errs.iter().sum::<f64>() / errs.len() as f64)
}

/// The mean over labels of each MAE in standard deviations (labels without an MAE count 0): what early
/// stopping watches.
fn standardised_score(maes: &[f64], scale: &Scaling) -> f64 {
    maes.iter().zip(&scale.sd).map(|(&m, &sd)| if m.is_finite() { m / sd } else { 0.0 }).sum::<f64>() / maes.len() as f64
}

/// What a training run returns.
pub struct Outcome {
    pub model: Estimator,
    pub scaling: Scaling,
    pub history: History,
}

/// Trains on rows `x` (preprocessed spectra) with targets `y` (`[stars, targets]`, NaN = unknown),
/// writing the best model to `model_out` and a checkpoint beside it after every epoch. With `resume`,
/// continues from that checkpoint. `on_epoch` sees each epoch's figures; `on_batch` each batch's loss.
/// On a GPU `device` the parameters and Adam's moments stay on the device for the whole run; each
/// epoch ends by copying them back for validation and the checkpoint, so `--resume` works across
/// devices.
#[allow(clippy::too_many_arguments)]
pub fn train<X: RowSource + ?Sized>(
    x: &X,
    y: &Array2<f64>,
    cfg: &TrainConfig,
    model_out: &Path,
    resume: bool,
    synthetic: bool,
    device: &Device,
    mut on_epoch: impl FnMut(&EpochStats),
    on_batch: impl Fn(usize, f64),
) -> Result<Outcome> {
    if x.len() != y.nrows() || y.ncols() != cfg.targets.len() || cfg.targets.len() != cfg.arch.outputs() {
        return Err(Error::invalid("train", format!("{} spectra, {} label rows, {} targets, {} network outputs", x.len(), y.nrows(), cfg.targets.len(), cfg.arch.outputs())));
    }
    if x.len() < 4 {
        return Err(Error::Data(format!("{} labelled spectra: too few to train and validate", x.len())));
    }
    let (train_rows, val_rows) = rows_for(x.len(), cfg.split, cfg.seed, cfg.validation.as_deref())?;
    let scale = scaling(y, &train_rows)?;
    let ckpt = checkpoint_path(model_out);
    let mut st = if resume && ckpt.exists() {
        load_checkpoint(&ckpt, cfg)?
    } else {
        if resume {
            return Err(Error::file(&ckpt, "--resume given but there is no checkpoint to resume from"));
        }
        State {
            model: Model::new(&cfg.arch, cfg.seed)?,
            adam: Adam::new(AdamConfig { lr: cfg.lr, ..AdamConfig::default() }),
            history: History { validation: val_rows.clone(), ..History::default() },
            bad_epochs: 0,
        }
    };
    let mut best = st.model.clone();
    if resume && model_out.exists() {
        if let Ok((m, _)) = crate::nn::load_model::<f32>(model_out) {
            best = m;
        }
    }
    let first_epoch = st.history.epochs.len();
    let mut on_gpu = match device.gpu() {
        Some(g) => Some(GpuTrainer::new(g.clone(), st.model.clone(), &st.adam)?),
        None => None,
    };
    for epoch in first_epoch..cfg.epochs {
        if st.history.stopped_early {
            break;
        }
        let t0 = Instant::now();
        let mut order = train_rows.clone();
        let mut rng = StdRng::seed_from_u64(cfg.seed.wrapping_add(1 + epoch as u64).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for rows in order.chunks(cfg.batch.max(1)) {
            let (input, target, mask) = batch(x, y, rows, &cfg.arch, &scale)?;
            if mask.sum() == 0.0 {
                continue;
            }
            let loss = match on_gpu.as_mut() {
                Some(gt) => gt.step(&input, &target, &mask, true)?.unwrap_or(f32::NAN) as f64,
                // On a pool thread: the step's ops fork from there instead of waking the pool each time.
                None => crate::cpu::on_pool(|| cpu_step(&mut st.model, &mut st.adam, input.view(), target.view(), mask.view()))?,
            };
            if !loss.is_finite() {
                return Err(Error::Data(format!("the training loss became {loss} in epoch {}; lower the learning rate", epoch + 1)));
            }
            loss_sum += loss;
            batches += 1;
            on_batch(rows.len(), loss);
        }
        let secs = t0.elapsed().as_secs_f64();
        let pred = match on_gpu.as_mut() {
            Some(gt) => {
                let (m, adam) = gt.sync()?;
                st.model = m.clone();
                st.adam = adam;
                predict_rows_with(&cfg.arch, x, &val_rows, &scale, 256, |b| gt.net().predict(b))?
            }
            None => predict_rows(&st.model, x, &val_rows, &scale, 256)?,
        };
        let val_mae: Vec<f64> = (0..cfg.targets.len()).map(|j| label_mae(y, &val_rows, &pred, j).unwrap_or(f64::NAN)).collect();
        let score = standardised_score(&val_mae, &scale);
        let stats = EpochStats { epoch: epoch + 1, train_loss: loss_sum / batches.max(1) as f64, val_mae, val_score: score, samples_per_s: train_rows.len() as f64 / secs };
        if st.history.best_score.is_none_or(|b| score < b) {
            st.history.best_score = Some(score);
            st.history.best_epoch = epoch + 1;
            st.bad_epochs = 0;
            best = st.model.clone();
            st.history.epochs.push(stats.clone());
            save_trained(model_out, &best, cfg, &scale, &st.history, synthetic)?;
        } else {
            st.bad_epochs += 1;
            st.history.epochs.push(stats.clone());
            if st.bad_epochs >= cfg.patience {
                st.history.stopped_early = true;
            }
        }
        save_checkpoint(&ckpt, cfg, &scale, &st)?;
        on_epoch(&stats);
    }
    // The final file holds the best weights with the whole history.
    save_trained(model_out, &best, cfg, &scale, &st.history, synthetic)?;
    Ok(Outcome { model: Estimator::Net(best), scaling: scale, history: st.history })
}

/// Fits a baseline (The Cannon, random forest, SVR) with the networks' split and label standardisation:
/// fitted on the training stars, scored on the validation stars (one "epoch" in the history), and
/// written to `model_out` with the same metadata as a network, so `predict` and `evaluate` take it.
#[allow(clippy::too_many_arguments)]
pub fn train_baseline(x: &[Vec<f32>], y: &Array2<f64>, kind: BaselineKind, targets: &[String], prep: &crate::data::PrepConfig, (split_frac, validation): (f64, Option<&[usize]>), seed: u64, model_out: &Path, synthetic: bool) -> Result<Outcome> {
    if x.len() != y.nrows() || y.ncols() != targets.len() {
        return Err(Error::invalid("train", format!("{} spectra, {} label rows, {} targets", x.len(), y.nrows(), targets.len())));
    }
    if x.len() < 4 {
        return Err(Error::Data(format!("{} labelled spectra: too few to train and validate", x.len())));
    }
    let t0 = Instant::now();
    let (train_rows, val_rows) = rows_for(x.len(), split_frac, seed, validation)?;
    let scale = scaling(y, &train_rows)?;
    let z = Array2::from_shape_fn(y.dim(), |(i, j)| (y[[i, j]] - scale.mean[j]) / scale.sd[j]);
    let b = Baseline::fit(kind, x, &z, &train_rows, seed)?;
    let secs = t0.elapsed().as_secs_f64();
    let est = Estimator::Baseline(b);
    let dev = Device::Cpu;
    // The fit's own error on (at most 500 of) its training stars: The Cannon's test step is not cheap.
    let fit_rows: Vec<usize> = train_rows.iter().copied().step_by(train_rows.len().div_ceil(500).max(1)).collect();
    let fit_pred = est.predict_rows(x, &fit_rows, &scale, 256, &dev)?;
    let val_pred = est.predict_rows(x, &val_rows, &scale, 256, &dev)?;
    let maes = |rows: &[usize], pred: &Array2<f64>| -> Vec<f64> { (0..targets.len()).map(|j| label_mae(y, rows, pred, j).unwrap_or(f64::NAN)).collect() };
    let val_mae = maes(&val_rows, &val_pred);
    let score = standardised_score(&val_mae, &scale);
    let train_loss = standardised_score(&maes(&fit_rows, &fit_pred), &scale);
    let history = History {
        epochs: vec![EpochStats { epoch: 1, train_loss, val_mae, val_score: score, samples_per_s: train_rows.len() as f64 / secs.max(1e-9) }],
        best_epoch: 1,
        best_score: Some(score),
        stopped_early: false,
        validation: val_rows,
    };
    let Estimator::Baseline(b) = &est else { unreachable!("built above") };
    let mut meta = trained_meta(targets, &scale, prep, &history, synthetic);
    meta.insert(BASELINE_KEY.into(), serde_json::to_string(&kind).expect("serialisable"));
    let tensors = b.to_tensors();
    let list: Vec<(String, &ArrayD<f32>)> = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    write_safetensors(model_out, &list, meta)?;
    Ok(Outcome { model: est, scaling: scale, history })
}
