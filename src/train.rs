//! Training: label standardisation, a seeded split, the masked MAE loss (unknown labels are skipped),
//! Adam, early stopping on the validation MAE, a checkpoint after every epoch (written atomically) and
//! resumption from it.
//!
//! Everything random is seeded (`seed`, and the epoch number for each epoch's shuffle), and the CPU
//! path is deterministic, so a resumed run reaches the same weights as an uninterrupted one.

use crate::augment::{batch_rng, Augment};
use crate::autograd::{DeferredDense, ParamGrads, Tape};
use crate::baselines::{Baseline, BaselineKind, BASELINE_KEY};
use crate::cpu::Float;
use crate::data::dataset::to_input;
use crate::data::store::RowSource;
use crate::data::PrepConfig;
use crate::error::{Error, Result};
use crate::gpu::{Device, GpuTrainer};
use crate::io::{read_safetensors, write_safetensors};
pub use crate::model_file::{
    estimate_rows, has_variance_head, predict_rows, EpochStats, History, Loss, Scaling, HISTORY_KEY, LOSS_KEY,
    PREP_KEY, SCALING_KEY, SYNTHETIC_KEY, TARGETS_KEY,
};
use crate::model_file::{predict_rows_with, trained_meta, Estimator};
use crate::nn::{save_model, Arch, Model};
use crate::ops::loss;
pub use crate::ops::loss::Objective;
use crate::optim::{Adam, AdamConfig};
use crate::trust::{Calibration, Domain, CALIBRATION_KEY, DOMAIN_KEY};
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn, Slice};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How to train.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub arch: Arch,
    pub targets: Vec<String>,
    pub prep: PrepConfig,
    /// Epochs, batch, learning rate, split, seed and patience (flattened: the checkpoint's JSON has
    /// them at the top level, as before).
    #[serde(flatten)]
    pub schedule: Schedule,
    /// The validation stars (row indices) when given (`--validation LIST`) instead of the seeded split.
    #[serde(default)]
    pub validation: Option<Vec<usize>>,
    /// Label transforms, augmentation, ensemble size and starting weights.
    #[serde(default)]
    pub options: TrainOptions,
}

/// The training loop's settings as a run uses them (a recipe's defaults filled in), shared by the
/// request (`workflow::TrainRequest`) and the resolved configuration (`TrainConfig`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// Fraction of stars for training; the rest validate (the seed's 7:3).
    pub split: f64,
    pub seed: u64,
    /// Epochs without improvement of the validation MAE before stopping.
    pub patience: usize,
}

/// The training options beyond the seed's loop, for small real sets (`--recipe small-real` sets
/// several at once; README, "Training recipes").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TrainOptions {
    /// Targets learnt as log10 of the label (e.g. `teff`, whose range in a library is 2,800-36,000 K).
    pub log_targets: Vec<String>,
    /// Augmentation of every training batch.
    pub augment: Augment,
    /// Networks trained from different seeds on the same split, stored in one file, their
    /// predictions averaged (1: a single network).
    pub ensemble: usize,
    /// Bagging (`--bag`): each ensemble member after the first trains and stops on its own seeded
    /// split instead of the first member's, so the members differ in the stars they learnt from
    /// (the label scaling stays the first split's, shared by all).
    pub bag: bool,
    /// Start from this trained model's weights (the same architecture and targets) and its label
    /// scaling, instead of a random start: fine-tuning.
    pub init: Option<PathBuf>,
    /// Train dense networks (`ann`, `res_ann`) on inputs standardised pixel by pixel (the training
    /// stars' mean and standard deviation), folded into the first layer's weights and bias when the
    /// model is written: the file is a plain network of the same architecture on the pipeline's inputs.
    pub standardise_inputs: bool,
    /// What training minimises (`--loss`).
    pub loss: Loss,
    /// beta of beta-NLL (`--nll-beta`): each star's NLL term weighted by its predicted variance to
    /// the power beta (0: the plain Gaussian NLL).
    pub nll_beta: f64,
}

impl TrainOptions {
    /// The objective of `--loss` and `--nll-beta`.
    pub fn objective(&self) -> Objective {
        match self.loss {
            Loss::Mae => Objective::MaskedMae,
            Loss::Nll => Objective::GaussianNll { beta: self.nll_beta },
        }
    }
}

/// Named sets of training options (`--recipe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Recipe {
    /// A few hundred to ~2,000 real stars (MILES): Teff learnt as log10, a dense network's inputs
    /// standardised pixel by pixel, an ensemble of 5, a slow learning rate (5e-5) over up to 300
    /// epochs with a patience of 30. No augmentation: on MILES each kind tried made every label worse
    /// (EXPERIMENTS.md, "Training recipe on real stars").
    SmallReal,
}

/// The training loop's settings when the user gives none: the seed's loop, or a recipe's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoopDefaults {
    pub epochs: usize,
    pub lr: f64,
    pub patience: usize,
}

impl Default for LoopDefaults {
    fn default() -> Self {
        Self { epochs: 30, lr: 1e-3, patience: 5 }
    }
}

impl Recipe {
    /// The options this recipe sets for `targets` (`dense`: the network is an ann or res-ann).
    pub fn defaults(self, targets: &[String], dense: bool) -> TrainOptions {
        match self {
            Recipe::SmallReal => TrainOptions {
                log_targets: targets.iter().filter(|t| *t == "teff").cloned().collect(),
                augment: Augment::default(),
                ensemble: 5,
                bag: false,
                init: None,
                standardise_inputs: dense,
                loss: Loss::Mae,
                nll_beta: 0.0,
            },
        }
    }

    pub fn loop_defaults(self) -> LoopDefaults {
        match self {
            Recipe::SmallReal => LoopDefaults { epochs: 300, lr: 5e-5, patience: 30 },
        }
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            log_targets: Vec::new(),
            augment: Augment::default(),
            ensemble: 1,
            bag: false,
            init: None,
            standardise_inputs: false,
            loss: Loss::Mae,
            nll_beta: 0.0,
        }
    }
}

/// The split seed of ensemble member `member` (> 0) under `--bag`.
pub fn bag_seed(seed: u64, member: usize) -> u64 {
    seed.wrapping_add(7919u64.wrapping_mul(member as u64))
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
        return Err(Error::invalid(
            "train",
            format!("the validation list leaves {} stars to validate and {} to train on", val.len(), train.len()),
        ));
    }
    Ok((train, val))
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

/// The label standardisation fitted on the training stars `rows`; `log10[j]` learns label `j` as its
/// log10 (every known value must then be positive).
pub(crate) fn scaling(y: &Array2<f64>, rows: &[usize], log10: &[bool]) -> Result<Scaling> {
    let k = y.ncols();
    let (mut mean, mut sd) = (vec![0.0; k], vec![1.0; k]);
    for j in 0..k {
        let log = log10.get(j).copied().unwrap_or(false);
        if log {
            if let Some(&r) = rows.iter().find(|&&r| y[[r, j]].is_finite() && y[[r, j]] <= 0.0) {
                return Err(Error::Data(format!(
                    "target {} is learnt as its log10, but star {} has the value {}",
                    j + 1,
                    r + 1,
                    y[[r, j]]
                )));
            }
        }
        let v: Vec<f64> = rows
            .iter()
            .map(|&r| y[[r, j]])
            .filter(|v| v.is_finite())
            .map(|v| if log { v.log10() } else { v })
            .collect();
        if v.len() < 2 {
            return Err(Error::Data(format!(
                "target {j} is known for {} training stars; at least 2 are needed",
                v.len()
            )));
        }
        mean[j] = v.iter().sum::<f64>() / v.len() as f64;
        sd[j] = (v.iter().map(|x| (x - mean[j]).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt().max(1e-12);
    }
    Ok(Scaling { mean, sd, log10: if log10.iter().any(|&l| l) { log10.to_vec() } else { Vec::new() } })
}

/// Which of `targets` are named in `log_targets`.
pub fn log_flags(targets: &[String], log_targets: &[String]) -> Result<Vec<bool>> {
    if let Some(t) = log_targets.iter().find(|t| !targets.contains(t)) {
        return Err(Error::invalid("--log-targets", format!("`{t}` is not among the targets {}", targets.join(","))));
    }
    Ok(targets.iter().map(|t| log_targets.contains(t)).collect())
}

/// A training batch: inputs, standardised targets and their mask. With `aug` (the augmentation, the
/// grid's wavelengths and the batch's generator) every spectrum is augmented first.
fn batch<X: RowSource + ?Sized>(
    x: &X,
    y: &Array2<f64>,
    rows: &[usize],
    arch: &Arch,
    s: &Scaling,
    aug: Option<(&Augment, &[f64], &mut StdRng)>,
    inputs: Option<&InputScaling>,
) -> Result<(ArrayD<f32>, ArrayD<f32>, ArrayD<f32>)> {
    let mut input = match aug {
        Some((a, grid, rng)) => x.with_rows(rows, |refs| {
            let changed: Vec<Vec<f32>> = refs.iter().map(|r| a.apply(r, grid, rng)).collect();
            let refs: Vec<&[f32]> = changed.iter().map(Vec::as_slice).collect();
            to_input(arch, &refs)
        })?,
        None => x.with_rows(rows, |refs| to_input(arch, refs))?,
    };
    if let Some(sc) = inputs {
        sc.apply(&mut input);
    }
    let k = y.ncols();
    let mut t = vec![0f32; rows.len() * k];
    let mut m = vec![0f32; rows.len() * k];
    for (i, &r) in rows.iter().enumerate() {
        for j in 0..k {
            let v = y[[r, j]];
            let z = s.to_z(j, v);
            if z.is_finite() {
                t[i * k + j] = z as f32;
                m[i * k + j] = 1.0;
            }
        }
    }
    Ok((
        input,
        ArrayD::from_shape_vec(IxDyn(&[rows.len(), k]), t).expect("shape"),
        ArrayD::from_shape_vec(IxDyn(&[rows.len(), k]), m).expect("shape"),
    ))
}

/// Per-pixel standardisation of network inputs: `(x - mean) / sd`.
#[derive(Clone, Debug, PartialEq)]
pub struct InputScaling {
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
}

impl InputScaling {
    /// The training stars' per-pixel mean and standard deviation (1 where a pixel does not vary).
    pub fn fit<X: RowSource + ?Sized>(x: &X, rows: &[usize]) -> Result<Self> {
        let (mut sum, mut sq, mut n) = (Vec::<f64>::new(), Vec::<f64>::new(), 0f64);
        for chunk in rows.chunks(256) {
            x.with_rows(chunk, |refs| {
                for r in refs {
                    if sum.is_empty() {
                        sum = vec![0.0; r.len()];
                        sq = vec![0.0; r.len()];
                    }
                    for (i, &v) in r.iter().enumerate() {
                        sum[i] += v as f64;
                        sq[i] += (v as f64) * (v as f64);
                    }
                    n += 1.0;
                }
                Ok(())
            })?;
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n.max(1.0)).collect();
        let sd = sq
            .iter()
            .zip(&mean)
            .map(|(q, m)| ((q / n.max(1.0) - m * m).max(0.0)).sqrt())
            .map(|s| if s < 1e-6 { 1.0 } else { s })
            .collect();
        Ok(Self { mean, sd })
    }

    fn apply(&self, x: &mut ArrayD<f32>) {
        let d = self.mean.len();
        for row in x.as_slice_mut().expect("standard layout").chunks_mut(d) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.sd) {
                *v = ((*v as f64 - m) / s) as f32;
            }
        }
    }

    /// The first dense layer's parameter names of a dense architecture.
    fn first_layer(arch: &Arch) -> Result<&'static str> {
        match arch {
            Arch::Ann { .. } => Ok("fc1"),
            Arch::ResAnn { .. } => Ok("input"),
            _ => Err(Error::invalid(
                "train",
                "standardised inputs are for the dense networks (ann, res-ann): a \
                convolution cannot absorb a per-pixel scaling",
            )),
        }
    }

    /// `model` (trained on standardised inputs) as a network on the raw inputs: `W' = W / sd`,
    /// `b' = b - W' mean`. `inverse` undoes it.
    pub fn fold(&self, model: &Model<f32>, inverse: bool) -> Result<Model<f32>> {
        let first = Self::first_layer(model.arch())?;
        let mut m = model.clone();
        let mut params = m.params_mut();
        let w_at = params
            .iter()
            .position(|(n, _)| *n == format!("{first}.weight"))
            .ok_or_else(|| Error::invalid("fold", "no first-layer weight"))?;
        let b_at = params
            .iter()
            .position(|(n, _)| *n == format!("{first}.bias"))
            .ok_or_else(|| Error::invalid("fold", "no first-layer bias"))?;
        let w = params[w_at].1.clone();
        let (o, d) = (w.shape()[0], w.shape()[1]);
        if d != self.mean.len() {
            return Err(Error::invalid(
                "fold",
                format!("the first layer takes {d} inputs, the scaling has {}", self.mean.len()),
            ));
        }
        let mut w2 = w.clone();
        let mut shift = vec![0f64; o];
        for r in 0..o {
            for i in 0..d {
                let (wi, s, mu) = (w[[r, i]] as f64, self.sd[i], self.mean[i]);
                let folded = if inverse { wi * s } else { wi / s };
                // The raw-input weight times the mean: what the bias absorbs.
                shift[r] += if inverse { wi * mu } else { folded * mu };
                w2[[r, i]] = folded as f32;
            }
        }
        *params[w_at].1 = w2;
        let b = &mut *params[b_at].1;
        for r in 0..o {
            b[[r]] = (b[[r]] as f64 + if inverse { shift[r] } else { -shift[r] }) as f32;
        }
        drop(params);
        Ok(m)
    }
}

/// Rows per piece of a training batch on the CPU (see `cpu_step`).
pub const STEP_PIECE_ROWS: usize = 64;

/// One training step on the CPU: forward, masked MAE loss, backward and Adam (`piece_gradients_with`
/// leaving dense weight gradients to `Adam::step_deferred`, which forms them block by block and
/// updates each block while it is in cache). Returns the batch's loss.
pub fn cpu_step<T: Float>(
    model: &mut Model<T>,
    adam: &mut Adam<T>,
    x: ArrayViewD<'_, T>,
    y: ArrayViewD<'_, T>,
    mask: ArrayViewD<'_, T>,
) -> Result<f64> {
    cpu_step_with(model, adam, x, y, mask, Objective::MaskedMae)
}

/// `cpu_step` minimising `objective`.
pub fn cpu_step_with<T: Float>(
    model: &mut Model<T>,
    adam: &mut Adam<T>,
    x: ArrayViewD<'_, T>,
    y: ArrayViewD<'_, T>,
    mask: ArrayViewD<'_, T>,
    objective: Objective,
) -> Result<f64> {
    let (loss, grads, dense) = piece_gradients_with(model, x, y, mask, true, objective)?;
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
pub fn piece_gradients<T: Float>(
    model: &Model<T>,
    x: ArrayViewD<'_, T>,
    y: ArrayViewD<'_, T>,
    mask: ArrayViewD<'_, T>,
) -> Result<(f64, Vec<ParamGrads<T>>)> {
    piece_gradients_with(model, x, y, mask, false, Objective::MaskedMae).map(|(loss, grads, _)| (loss, grads))
}

/// `piece_gradients`; with `defer`, each piece's dense weight gradients are left as the layers'
/// inputs and output gradients (`autograd::Tape::defer_dense_weight_grads`, for
/// `optim::Adam::step_deferred`), one list per piece. The loss is `objective`'s, averaged over the
/// known labels of the whole batch.
#[allow(clippy::type_complexity)]
pub fn piece_gradients_with<T: Float>(
    model: &Model<T>,
    x: ArrayViewD<'_, T>,
    y: ArrayViewD<'_, T>,
    mask: ArrayViewD<'_, T>,
    defer: bool,
    objective: Objective,
) -> Result<(f64, Vec<ParamGrads<T>>, Vec<Vec<DeferredDense<T>>>)> {
    let n = x.shape().first().copied().unwrap_or(0);
    if y.shape().first() != Some(&n) || mask.shape() != y.shape() {
        return Err(Error::shape(
            "training step",
            "inputs, targets and mask must have one row per sample",
            &[x.shape(), y.shape(), mask.shape()],
        ));
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
        let (sum, grad) = match objective {
            Objective::MaskedMae => (
                loss::masked_abs_sum(&tape.value(pred), &ys, &ms)?,
                loss::masked_mae_grad(&tape.value(pred), &ys, &ms, k),
            ),
            Objective::GaussianNll { beta } => {
                let (p, b) = (tape.value(pred), T::of(beta));
                (loss::masked_gaussian_nll_sum(&p, &ys, &ms, b)?, loss::masked_gaussian_nll_grad(&p, &ys, &ms, b, k)?)
            }
        };
        tape.backward_with(pred, grad)?;
        let (grads, dense) = tape.into_param_grads_deferred();
        Ok((sum, grads, dense))
    };
    let results: Vec<Result<_>> =
        if pieces == 1 { vec![piece(0)] } else { (0..pieces).into_par_iter().map(piece).collect() };
    let (mut sum, mut grads, mut dense) = (T::zero(), Vec::with_capacity(pieces), Vec::with_capacity(pieces));
    for r in results {
        let (s, g, d) = r?;
        sum += s;
        grads.push(g);
        dense.push(d);
    }
    Ok(((sum * k).f64(), grads, dense))
}

fn checkpoint_path(model_out: &Path) -> PathBuf {
    suffixed(model_out, ".ckpt")
}

/// `path` with `suffix` added to its file name (`M.safetensors` -> `M.safetensors.ckpt`).
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

struct State {
    model: Model<f32>,
    adam: Adam<f32>,
    history: History,
    bad_epochs: usize,
}

fn save_checkpoint(path: &Path, cfg: &TrainConfig, scale: &Scaling, st: &State) -> Result<()> {
    let mut tensors: Vec<(String, &ArrayD<f32>)> =
        st.model.params().into_iter().map(|(n, p)| (format!("model.{n}"), p)).collect();
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
    let saved: TrainConfig =
        serde_json::from_str(get("specnn-train-config")?).map_err(|e| Error::file(path, e.to_string()))?;
    // The number of epochs may grow (resume an interrupted run, or train longer); nothing else may change.
    if (TrainConfig { schedule: Schedule { epochs: cfg.schedule.epochs, ..saved.schedule.clone() }, ..saved }) != *cfg {
        return Err(Error::file(
            path,
            "the checkpoint was written by a run with other settings (architecture, targets, preprocessing, batch, \
             lr, split, validation list, seed or patience); rerun without --resume or with the same settings",
        ));
    }
    let model_t: BTreeMap<String, ArrayD<f32>> =
        tensors.iter().filter_map(|(k, v)| k.strip_prefix("model.").map(|n| (n.to_string(), v.clone()))).collect();
    let model = Model::from_tensors(&cfg.arch, model_t).map_err(|e| Error::file(path, e.to_string()))?;
    let adam_t: Vec<(String, ArrayD<f32>)> = std::mem::take(&mut tensors)
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("adam.").map(|n| (n.to_string(), v)))
        .collect();
    let mut adam = Adam::new(AdamConfig { lr: cfg.schedule.lr, ..AdamConfig::default() });
    adam.restore(get("specnn-adam-step")?.parse().map_err(|_| Error::file(path, "bad adam step"))?, adam_t)?;
    let history: History = serde_json::from_str(get(HISTORY_KEY)?).map_err(|e| Error::file(path, e.to_string()))?;
    let bad_epochs = get("specnn-bad-epochs")?.parse().map_err(|_| Error::file(path, "bad epoch count"))?;
    Ok(State { model, adam, history, bad_epochs })
}

/// Writes the trained model: weights, architecture, targets, scaling, preprocessing and history.
pub fn save_trained(
    path: &Path,
    model: &Model<f32>,
    cfg: &TrainConfig,
    scale: &Scaling,
    history: &History,
    synthetic: bool,
) -> Result<()> {
    save_model(path, model, network_meta(cfg, scale, history, synthetic))
}

/// `trained_meta` for a network trained under `cfg` (with its loss).
fn network_meta(cfg: &TrainConfig, scale: &Scaling, history: &History, synthetic: bool) -> HashMap<String, String> {
    let mut meta = trained_meta(&cfg.targets, scale, &cfg.prep, history, synthetic);
    meta.insert(LOSS_KEY.into(), cfg.options.loss.name().into());
    meta
}

/// The MAE of label `j` (in its units) of the estimates `pred` (row `i` for star `rows[i]`) over the
/// stars whose label is known; None when none is.
pub(crate) fn label_mae(y: &Array2<f64>, rows: &[usize], pred: &Array2<f64>, j: usize) -> Option<f64> {
    let errs: Vec<f64> = rows
        .iter()
        .enumerate()
        .filter(|(_, &r)| y[[r, j]].is_finite())
        .map(|(i, &r)| (y[[r, j]] - pred[[i, j]]).abs())
        .collect();
    (!errs.is_empty()).then(|| errs.iter().sum::<f64>() / errs.len() as f64)
}

/// What a training run returns.
pub struct Outcome {
    pub model: Estimator,
    pub scaling: Scaling,
    pub history: History,
    /// The uncertainty calibration (fitted on the validation stars) and the training set's domain,
    /// both also in the model file.
    pub calibration: Calibration,
    pub domain: Domain,
}

/// At most this many stars fit the domain check and the calibration (evenly spread over the set).
const TRUST_ROWS: usize = 20_000;

/// Fits the uncertainty calibration on the validation stars `val_rows` and the domain on the training
/// stars `train_rows`, and adds both to the model file at `path` (rewritten atomically).
#[allow(clippy::too_many_arguments)]
fn attach_trust<X: RowSource + ?Sized>(
    path: &Path,
    est: &Estimator,
    scale: &Scaling,
    x: &X,
    y: &Array2<f64>,
    train_rows: &[usize],
    val_rows: &[usize],
    seed: u64,
    device: &Device,
) -> Result<(Calibration, Domain)> {
    let thin = |rows: &[usize]| -> Vec<usize> {
        rows.iter().copied().step_by(rows.len().div_ceil(TRUST_ROWS).max(1)).collect()
    };
    let (tr, va) = (thin(train_rows), thin(val_rows));
    let both: Vec<usize> = tr.iter().chain(&va).copied().collect();
    let mut xs: Vec<Vec<f32>> = x.with_rows(&both, |refs| Ok(refs.iter().map(|r| r.to_vec()).collect()))?;
    let ys = y.select(ndarray::Axis(0), &both);
    let (fit_rows, held): (Vec<usize>, Vec<usize>) = ((0..tr.len()).collect(), (tr.len()..both.len()).collect());
    let domain = Domain::fit(&xs, &ys, &fit_rows, &held, seed)?;
    let xv: Vec<Vec<f32>> = xs.split_off(tr.len());
    let vall: Vec<usize> = (0..va.len()).collect();
    let e = est.runner(device)?.estimate_rows(&xv, &vall, scale, 256)?;
    let k = scale.mean.len();
    let err: Vec<Vec<f64>> = (0..k)
        .map(|j| va.iter().enumerate().map(|(i, &r)| scale.error_z(j, y[[r, j]], e.mean[[i, j]])).collect())
        .collect();
    let spread: Vec<Vec<f64>> = (0..k).map(|j| e.spread_z.column(j).to_vec()).collect();
    let calibration = Calibration::fit(&err, &spread);
    let (mut tensors, mut meta) = read_safetensors::<f32>(path)?;
    for (n, t) in domain.tensors() {
        tensors.insert(n, t);
    }
    meta.insert(CALIBRATION_KEY.into(), serde_json::to_string(&calibration).expect("serialisable"));
    meta.insert(DOMAIN_KEY.into(), domain.meta());
    let list: Vec<(String, &ArrayD<f32>)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    write_safetensors(path, &list, meta)?;
    Ok((calibration, domain))
}

/// Replaces the uncertainty calibration stored in the model file at `path` (rewritten atomically).
pub fn replace_calibration(path: &Path, calibration: &Calibration) -> Result<()> {
    let (tensors, mut meta) = read_safetensors::<f32>(path)?;
    meta.insert(CALIBRATION_KEY.into(), serde_json::to_string(calibration).expect("serialisable"));
    let list: Vec<(String, &ArrayD<f32>)> = tensors.iter().map(|(n, t)| (n.clone(), t)).collect();
    write_safetensors(path, &list, meta)
}

/// Trains on rows `x` (preprocessed spectra) with targets `y` (`[stars, targets]`, NaN = unknown),
/// writing the best model to `model_out` and a checkpoint beside it after every epoch. With `resume`,
/// continues from that checkpoint. `on_epoch` sees each epoch's figures; `on_batch` each batch's loss.
/// On a GPU `device` the parameters and Adam's moments stay on the device for the whole run; each
/// epoch ends by copying them back for validation and the checkpoint, so `--resume` works across
/// devices.
///
/// With `cfg.options.ensemble` = K > 1, K networks are trained one after another on the same split,
/// from seeds `seed + 1000003 * m`, each to a member file `MODEL.memberM` (with its own checkpoint,
/// so `--resume` resumes the member that was interrupted); the K best networks are then written to
/// `model_out` as one file and the member files removed.
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
    if x.len() != y.nrows()
        || y.ncols() != cfg.targets.len()
        || cfg.targets.len() * cfg.options.loss.outputs_per_label() != cfg.arch.outputs()
    {
        return Err(Error::invalid(
            "train",
            format!(
                "{} spectra, {} label rows, {} targets, {} network outputs",
                x.len(),
                y.nrows(),
                cfg.targets.len(),
                cfg.arch.outputs()
            ),
        ));
    }
    if x.len() < 4 {
        return Err(Error::Data(format!("{} labelled spectra: too few to train and validate", x.len())));
    }
    let init = match &cfg.options.init {
        Some(p) => Some(init_from(p, cfg)?),
        None => None,
    };
    let k = cfg.options.ensemble.max(1);
    let (model, scale, history) = if k == 1 {
        let (best, scale, history) = train_member(
            x,
            y,
            cfg,
            0,
            init.as_ref().map(|(m, s)| (&m[0], s)),
            model_out,
            resume,
            synthetic,
            device,
            &mut on_epoch,
            &on_batch,
        )?;
        (Estimator::Net(best), scale, history)
    } else {
        let mut members = Vec::with_capacity(k);
        let mut first: Option<(Scaling, History)> = None;
        for m in 0..k {
            let path = suffixed(model_out, &format!(".member{m}"));
            let start = init.as_ref().map(|(ms, s)| (&ms[m % ms.len()], s));
            let resume_m = resume && checkpoint_path(&path).exists();
            let (best, scale, history) =
                train_member(x, y, cfg, m, start, &path, resume_m, synthetic, device, &mut on_epoch, &on_batch)?;
            members.push(best);
            first.get_or_insert((scale, history));
        }
        let (scale, history) = first.expect("k > 1 members");
        crate::nn::save_ensemble(model_out, &members, network_meta(cfg, &scale, &history, synthetic))?;
        for m in 0..k {
            let path = suffixed(model_out, &format!(".member{m}"));
            let _ = std::fs::remove_file(checkpoint_path(&path));
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(checkpoint_path(model_out));
        (Estimator::Ensemble(members), scale, history)
    };
    let (train_rows, val_rows) = rows_for(x.len(), cfg.schedule.split, cfg.schedule.seed, cfg.validation.as_deref())?;
    let (calibration, domain) =
        attach_trust(model_out, &model, &scale, x, y, &train_rows, &val_rows, cfg.schedule.seed, device)?;
    Ok(Outcome { model, scaling: scale, history, calibration, domain })
}

/// The starting networks and label scaling of `--init FILE`: its architecture, targets and log
/// targets must be this run's.
fn init_from(path: &Path, cfg: &TrainConfig) -> Result<(Vec<Model<f32>>, Scaling)> {
    let t = crate::model_file::load_trained(path)?;
    let nets = match t.model {
        Estimator::Net(m) => vec![m],
        Estimator::Ensemble(ms) => ms,
        Estimator::Baseline(_) => return Err(Error::file(path, "--init needs a network; this file holds a baseline")),
    };
    if nets[0].arch() != &cfg.arch {
        return Err(Error::file(
            path,
            format!("--init: its architecture {} is not this run's {}", nets[0].arch().to_json(), cfg.arch.to_json()),
        ));
    }
    if t.targets != cfg.targets {
        return Err(Error::file(
            path,
            format!(
                "--init: it estimates {} but this run's targets are {}",
                t.targets.join(","),
                cfg.targets.join(",")
            ),
        ));
    }
    let want = log_flags(&cfg.targets, &cfg.options.log_targets)?;
    if (0..want.len()).any(|j| t.scaling.is_log(j) != want[j]) {
        return Err(Error::file(path, "--init: it learnt other labels as log10 than --log-targets asks"));
    }
    Ok((nets, t.scaling))
}

/// What early stopping watches: the mean over labels of each validation MAE (`maes`, label units, of
/// estimates `pred` of `rows`) in standard deviations, in log10 units for log labels (labels without
/// an MAE count 0).
fn val_score(maes: &[f64], scale: &Scaling, y: &Array2<f64>, rows: &[usize], pred: &Array2<f64>) -> f64 {
    let per: Vec<f64> = (0..maes.len())
        .map(|j| {
            if !scale.is_log(j) {
                return if maes[j].is_finite() { maes[j] / scale.sd[j] } else { 0.0 };
            }
            let e: Vec<f64> = rows
                .iter()
                .enumerate()
                .filter(|(_, &r)| y[[r, j]].is_finite())
                .map(|(i, &r)| (scale.to_z(j, y[[r, j]]) - scale.to_z(j, pred[[i, j]])).abs())
                .collect();
            if e.is_empty() {
                0.0
            } else {
                e.iter().sum::<f64>() / e.len() as f64
            }
        })
        .collect();
    per.iter().sum::<f64>() / per.len() as f64
}

/// Trains one network (member `member` of an ensemble, 0 for a single network): the split from the
/// run's seed, the starting weights and shuffles from the member's. `start` is `--init`'s network
/// and scaling.
#[allow(clippy::too_many_arguments)]
fn train_member<X: RowSource + ?Sized>(
    x: &X,
    y: &Array2<f64>,
    cfg: &TrainConfig,
    member: usize,
    start: Option<(&Model<f32>, &Scaling)>,
    model_out: &Path,
    resume: bool,
    synthetic: bool,
    device: &Device,
    on_epoch: &mut impl FnMut(&EpochStats),
    on_batch: &impl Fn(usize, f64),
) -> Result<(Model<f32>, Scaling, History)> {
    let (train_rows, val_rows) = rows_for(x.len(), cfg.schedule.split, cfg.schedule.seed, cfg.validation.as_deref())?;
    let scale = match start {
        Some((_, s)) => s.clone(),
        None => scaling(y, &train_rows, &log_flags(&cfg.targets, &cfg.options.log_targets)?)?,
    };
    // Bagging: members after the first learn from (and stop on) their own split.
    let (train_rows, val_rows) = if cfg.options.bag && member > 0 {
        rows_for(x.len(), cfg.schedule.split, bag_seed(cfg.schedule.seed, member), None)?
    } else {
        (train_rows, val_rows)
    };
    let seed = cfg.schedule.seed.wrapping_add(1_000_003u64.wrapping_mul(member as u64));
    let inputs = if cfg.options.standardise_inputs {
        InputScaling::first_layer(&cfg.arch)?;
        Some(InputScaling::fit(x, &train_rows)?)
    } else {
        None
    };
    // Written files hold the network on raw inputs; training runs on standardised ones.
    let to_file =
        |m: &Model<f32>| -> Result<Model<f32>> { inputs.as_ref().map_or_else(|| Ok(m.clone()), |i| i.fold(m, false)) };
    let from_file =
        |m: &Model<f32>| -> Result<Model<f32>> { inputs.as_ref().map_or_else(|| Ok(m.clone()), |i| i.fold(m, true)) };
    let grid = cfg.prep.grid.wavelengths();
    let aug = cfg.options.augment.is_on().then_some(&cfg.options.augment);
    let ckpt = checkpoint_path(model_out);
    let mut st = if resume && ckpt.exists() {
        load_checkpoint(&ckpt, cfg)?
    } else {
        if resume {
            return Err(Error::file(&ckpt, "--resume given but there is no checkpoint to resume from"));
        }
        State {
            model: match start {
                Some((m, _)) => from_file(m)?,
                None => fresh_model(&cfg.arch, cfg.targets.len(), seed)?,
            },
            adam: Adam::new(AdamConfig { lr: cfg.schedule.lr, ..AdamConfig::default() }),
            history: History { validation: val_rows.clone(), loss: cfg.options.loss, ..History::default() },
            bad_epochs: 0,
        }
    };
    let mut best = st.model.clone();
    if resume && model_out.exists() {
        if let Ok((m, _)) = crate::nn::load_model::<f32>(model_out) {
            best = from_file(&m)?;
        }
    }
    let first_epoch = st.history.epochs.len();
    let mut on_gpu = match device.gpu() {
        Some(g) => {
            Some(GpuTrainer::new(g.clone(), st.model.clone(), &st.adam)?.with_objective(cfg.options.objective()))
        }
        None => None,
    };
    fn standardised<'b>(inputs: &Option<InputScaling>, b: &'b ArrayD<f32>) -> std::borrow::Cow<'b, ArrayD<f32>> {
        match inputs {
            Some(i) => {
                let mut c = b.clone();
                i.apply(&mut c);
                std::borrow::Cow::Owned(c)
            }
            None => std::borrow::Cow::Borrowed(b),
        }
    }
    for epoch in first_epoch..cfg.schedule.epochs {
        if st.history.stopped_early {
            break;
        }
        let t0 = Instant::now();
        let mut order = train_rows.clone();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1 + epoch as u64).wrapping_mul(0x9E37_79B9));
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let (mut loss_sum, mut batches) = (0.0, 0usize);
        for (b, rows) in order.chunks(cfg.schedule.batch.max(1)).enumerate() {
            let mut brng = batch_rng(seed, epoch, b);
            let (input, target, mask) =
                batch(x, y, rows, &cfg.arch, &scale, aug.map(|a| (a, grid.as_slice(), &mut brng)), inputs.as_ref())?;
            if mask.sum() == 0.0 {
                continue;
            }
            let loss = match on_gpu.as_mut() {
                Some(gt) => gt.step(&input, &target, &mask, true)?.unwrap_or(f32::NAN) as f64,
                // On a pool thread: the step's ops fork from there instead of waking the pool each time.
                None => crate::cpu::on_pool(|| {
                    cpu_step_with(
                        &mut st.model,
                        &mut st.adam,
                        input.view(),
                        target.view(),
                        mask.view(),
                        cfg.options.objective(),
                    )
                })?,
            };
            if !loss.is_finite() {
                return Err(Error::Data(format!(
                    "the training loss became {loss} in epoch {}; lower the learning rate",
                    epoch + 1
                )));
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
                predict_rows_with(&cfg.arch, x, &val_rows, &scale, 256, |b| {
                    gt.net().predict(&standardised(&inputs, b))
                })?
            }
            None => predict_rows_with(&cfg.arch, x, &val_rows, &scale, 256, |b| {
                st.model.predict(&standardised(&inputs, b))
            })?,
        };
        let val_mae: Vec<f64> =
            (0..cfg.targets.len()).map(|j| label_mae(y, &val_rows, &pred, j).unwrap_or(f64::NAN)).collect();
        let score = val_score(&val_mae, &scale, y, &val_rows, &pred);
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss: loss_sum / batches.max(1) as f64,
            val_mae,
            val_score: score,
            samples_per_s: train_rows.len() as f64 / secs,
        };
        if st.history.best_score.is_none_or(|b| score < b) {
            st.history.best_score = Some(score);
            st.history.best_epoch = epoch + 1;
            st.bad_epochs = 0;
            best = st.model.clone();
            st.history.epochs.push(stats.clone());
            save_trained(model_out, &to_file(&best)?, cfg, &scale, &st.history, synthetic)?;
        } else {
            st.bad_epochs += 1;
            st.history.epochs.push(stats.clone());
            if st.bad_epochs >= cfg.schedule.patience {
                st.history.stopped_early = true;
            }
        }
        save_checkpoint(&ckpt, cfg, &scale, &st)?;
        on_epoch(&stats);
    }
    // The final file holds the best weights with the whole history.
    let best = to_file(&best)?;
    save_trained(model_out, &best, cfg, &scale, &st.history, synthetic)?;
    Ok((best, scale, st.history))
}

/// A network of `arch` from `seed`'s random start, for `labels` labels; with a variance head, the
/// last layer's log-variance rows and biases start at 0, so that every star starts at a predicted
/// sigma of one label SD (a random start's log-variances of a few units make the first steps'
/// NLL, through e^-s, hundreds of times its settled value).
fn fresh_model(arch: &Arch, labels: usize, seed: u64) -> Result<Model<f32>> {
    let mut m = Model::new(arch, seed)?;
    if has_variance_head(arch, labels) {
        for (name, t) in m.params_mut() {
            if name == "out.weight" || name == "out.bias" {
                for mut row in t.outer_iter_mut().skip(labels) {
                    row.fill(0.0);
                }
            }
        }
    }
    Ok(m)
}

/// Fits a baseline (The Cannon, random forest, SVR) with the networks' split and label standardisation:
/// fitted on the training stars, scored on the validation stars (one "epoch" in the history), and
/// written to `model_out` with the same metadata as a network, so `predict` and `evaluate` take it.
#[allow(clippy::too_many_arguments)]
pub fn train_baseline(
    x: &[Vec<f32>],
    y: &Array2<f64>,
    kind: BaselineKind,
    targets: &[String],
    log_targets: &[String],
    prep: &crate::data::PrepConfig,
    (split_frac, validation): (f64, Option<&[usize]>),
    seed: u64,
    model_out: &Path,
    synthetic: bool,
) -> Result<Outcome> {
    if x.len() != y.nrows() || y.ncols() != targets.len() {
        return Err(Error::invalid(
            "train",
            format!("{} spectra, {} label rows, {} targets", x.len(), y.nrows(), targets.len()),
        ));
    }
    if x.len() < 4 {
        return Err(Error::Data(format!("{} labelled spectra: too few to train and validate", x.len())));
    }
    let t0 = Instant::now();
    let (train_rows, val_rows) = rows_for(x.len(), split_frac, seed, validation)?;
    let scale = scaling(y, &train_rows, &log_flags(targets, log_targets)?)?;
    let z = Array2::from_shape_fn(y.dim(), |(i, j)| scale.to_z(j, y[[i, j]]));
    let b = Baseline::fit(kind, x, &z, &train_rows, seed)?;
    let train_rows_kept = train_rows.clone();
    let secs = t0.elapsed().as_secs_f64();
    let est = Estimator::Baseline(b);
    let dev = Device::Cpu;
    // The fit's own error on (at most 500 of) its training stars: The Cannon's test step is not cheap.
    let fit_rows: Vec<usize> = train_rows.iter().copied().step_by(train_rows.len().div_ceil(500).max(1)).collect();
    let fit_pred = est.predict_rows(x, &fit_rows, &scale, 256, &dev)?;
    let val_pred = est.predict_rows(x, &val_rows, &scale, 256, &dev)?;
    let maes = |rows: &[usize], pred: &Array2<f64>| -> Vec<f64> {
        (0..targets.len()).map(|j| label_mae(y, rows, pred, j).unwrap_or(f64::NAN)).collect()
    };
    let val_mae = maes(&val_rows, &val_pred);
    let score = val_score(&val_mae, &scale, y, &val_rows, &val_pred);
    let train_loss = val_score(&maes(&fit_rows, &fit_pred), &scale, y, &fit_rows, &fit_pred);
    let history = History {
        epochs: vec![EpochStats {
            epoch: 1,
            train_loss,
            val_mae,
            val_score: score,
            samples_per_s: train_rows.len() as f64 / secs.max(1e-9),
        }],
        best_epoch: 1,
        best_score: Some(score),
        stopped_early: false,
        validation: val_rows,
        loss: Loss::Mae,
    };
    let Estimator::Baseline(b) = &est else { unreachable!("built above") };
    let mut meta = trained_meta(targets, &scale, prep, &history, synthetic);
    meta.insert(BASELINE_KEY.into(), serde_json::to_string(&kind).expect("serialisable"));
    let tensors = b.to_tensors();
    let list: Vec<(String, &ArrayD<f32>)> = tensors.iter().map(|(k, v)| (k.clone(), v)).collect();
    write_safetensors(model_out, &list, meta)?;
    let (train_rows, val_rows) = (train_rows_kept, history.validation.clone());
    let (calibration, domain) = attach_trust(model_out, &est, &scale, x, y, &train_rows, &val_rows, seed, &dev)?;
    Ok(Outcome { model: est, scaling: scale, history, calibration, domain })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Activation;

    #[test]
    fn log_scaling_round_trips_and_spreads_scale_with_the_value() {
        let y = Array2::from_shape_vec((4, 2), vec![3000.0, 1.0, 6000.0, 2.0, 12000.0, 3.0, 24000.0, 4.0]).unwrap();
        let s = scaling(&y, &[0, 1, 2, 3], &[true, false]).unwrap();
        assert!(s.is_log(0) && !s.is_log(1));
        for v in [3000.0, 7777.0, 30000.0] {
            assert!((s.to_label(0, s.to_z(0, v)) - v).abs() < 1e-6 * v);
        }
        assert!(s.to_z(0, -5.0).is_nan());
        // A spread of dz in log10 units is ln(10) * value * sd * dz kelvin: twice the value, twice the spread.
        let (a, b) = (s.spread_to_label(0, s.to_z(0, 5000.0), 0.1), s.spread_to_label(0, s.to_z(0, 10000.0), 0.1));
        assert!((b / a - 2.0).abs() < 1e-9);
        assert_eq!(s.spread_to_label(1, 0.3, 0.1), s.sd[1] * 0.1);
        assert!(scaling(&y.mapv(|v| v - 5000.0), &[0, 1, 2, 3], &[true, false]).is_err());
        // Old files (no log10 field) read as no log labels.
        let old: Scaling = serde_json::from_str(r#"{"mean":[1.0],"sd":[2.0]}"#).unwrap();
        assert!(!old.is_log(0));
    }

    #[test]
    fn a_variance_head_starts_at_one_label_sd() {
        let arch = Arch::Ann { inputs: 9, hidden: vec![6], activation: Activation::Selu, outputs: 4 };
        let m = fresh_model(&arch, 2, 7).unwrap();
        let x = ArrayD::from_shape_fn(IxDyn(&[3, 9]), |i| (i[0] * 9 + i[1]) as f32 * 0.3 - 2.0);
        let y = m.predict(&x).unwrap();
        for r in y.outer_iter() {
            assert!(r[0] != 0.0 && r[1] != 0.0 && r[2] == 0.0 && r[3] == 0.0, "{r:?}");
        }
        // Without a head (4 outputs for 4 labels) nothing is zeroed.
        assert_eq!(fresh_model(&arch, 4, 7).unwrap().params(), Model::<f32>::new(&arch, 7).unwrap().params());
    }

    #[test]
    fn standardised_inputs_fold_into_the_first_layer() {
        for arch in [
            Arch::Ann { inputs: 7, hidden: vec![5, 4], activation: Activation::Selu, outputs: 2 },
            Arch::ResAnn { inputs: 7, width: 6, blocks: 1, outputs: 2 },
        ] {
            let model = Model::<f32>::new(&arch, 3).unwrap();
            let rows: Vec<Vec<f32>> = (0..20)
                .map(|i| (0..7).map(|j| ((i * 7 + j) as f32 * 0.37).sin() * (1.0 + j as f32)).collect())
                .collect();
            let sc = InputScaling::fit(&rows, &(0..20).collect::<Vec<_>>()).unwrap();
            let x = ArrayD::from_shape_vec(IxDyn(&[20, 7]), rows.concat()).unwrap();
            let mut xs = x.clone();
            sc.apply(&mut xs);
            let want = model.predict(&xs).unwrap();
            let folded = sc.fold(&model, false).unwrap();
            let got = folded.predict(&x).unwrap();
            for (a, b) in got.iter().zip(want.iter()) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
            let back = sc.fold(&folded, true).unwrap();
            for ((_, a), (_, b)) in back.params().iter().zip(model.params().iter()) {
                for (u, v) in a.iter().zip(b.iter()) {
                    assert!((u - v).abs() < 1e-4 * (1.0 + v.abs()));
                }
            }
        }
        let cnn = Model::<f32>::new(&Arch::vmp_cnn(1), 1).unwrap();
        assert!(InputScaling { mean: vec![0.0; 4096], sd: vec![1.0; 4096] }.fold(&cnn, false).is_err());
    }
}
