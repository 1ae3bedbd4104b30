//! Prediction: a trained model file applied to spectrum files, one catalog row per file. A file that
//! cannot be read or is refused by the preprocessing gets a row with its reason instead of stopping
//! the run. Files are processed in chunks, so memory stays flat however many there are.

use crate::baselines::{Baseline, BaselineKind, BASELINE_KEY};
use crate::catalog::{Catalog, ColumnData};
use crate::data::dataset::{load_timed, LoadTimes, Prepared, Refused};
use crate::data::labels::{label_display, label_symbol, label_unit};
use crate::data::Spectrum;
use crate::data::{PrepConfig, ReadOptions};
use crate::error::{Error, Result};
use crate::gpu::Device;
use crate::gpu::GpuNet;
use crate::io::parse_safetensors;
use crate::nn::{members_from, Model};
use crate::train::{
    estimate_rows, estimate_rows_with, History, Loss, Scaling, HISTORY_KEY, LOSS_KEY, PREP_KEY, SCALING_KEY,
    SYNTHETIC_KEY, TARGETS_KEY,
};
use crate::trust::{Calibration, Domain, CALIBRATION_KEY, DOMAIN_KEY};
use std::path::{Path, PathBuf};

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
/// NaN where the estimator has none.
pub struct Estimates {
    pub mean: ndarray::Array2<f64>,
    pub spread_z: ndarray::Array2<f64>,
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
            mean,
        };
        // Members' estimates are averaged in standardised units (for a log label: in log10).
        let combine = |each: Vec<Each>| -> Estimates {
            let (n, k) = each[0].0.dim();
            let m = each.len() as f64;
            let mut mean = ndarray::Array2::zeros((n, k));
            let mut spread_z = ndarray::Array2::zeros((n, k));
            for i in 0..n {
                for j in 0..k {
                    let z: Vec<f64> = each.iter().map(|e| s.to_z(j, e.0[[i, j]])).collect();
                    let zm = z.iter().sum::<f64>() / m;
                    mean[[i, j]] = s.to_label(j, zm);
                    let aleatoric = each.iter().map(|e| e.1.as_ref().map_or(0.0, |v| v[[i, j]])).sum::<f64>() / m;
                    spread_z[[i, j]] =
                        (z.iter().map(|v| (v - zm).powi(2)).sum::<f64>() / (m - 1.0).max(1.0) + aleatoric).sqrt();
                }
            }
            Estimates { mean, spread_z }
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
                Estimates { mean: z, spread_z }
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
        Some(l) => serde_json::from_value(serde_json::Value::String(l.clone())).map_err(|e| bad(LOSS_KEY, e))?,
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
        Some(c) => {
            let z = scaling.to_z(j, e.mean[[i, j]]);
            scaling.spread_to_label(j, z, c.sigma_z(j, e.spread_z[[i, j]]))
        }
        None => f64::NAN,
    })
}

/// Flag thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// VMP: estimated [Fe/H] below this.
    pub vmp_feh: f64,
    /// CEMP: VMP and estimated [C/Fe] above this.
    pub cemp_cfe: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { vmp_feh: -2.0, cemp_cfe: 1.0 }
    }
}

/// One predicted (or refused) spectrum.
#[derive(Clone, Debug)]
pub struct Row {
    pub file: String,
    pub obsid: Option<i64>,
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub snr: Option<f64>,
    pub synthetic: bool,
    /// One value per target (None when refused).
    pub values: Vec<Option<f64>>,
    /// One calibrated 1-sigma uncertainty per target (None when refused or not calibrated).
    pub errors: Vec<Option<f64>>,
    /// The out-of-domain bitmask (`trust::FLAG_*`; None when refused).
    pub flags: Option<u32>,
    pub reason: String,
}

/// Where the time of a `predict` run went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Throughput {
    /// CPU seconds reading files, summed over threads.
    pub read_s: f64,
    /// CPU seconds preprocessing, summed over threads.
    pub prep_s: f64,
    /// Wall seconds in the estimator (the network or baseline).
    pub model_s: f64,
    /// Wall seconds of the whole run.
    pub wall_s: f64,
    pub spectra: usize,
}

/// Predicts every file of `paths`, `chunk` files at a time; `progress` gets the number done.
/// Reading and preprocessing of the next chunk (on its own thread, over rayon's pool) overlaps the
/// estimator's work on the current one; at most two chunks are in memory at once, so memory stays flat
/// however many files there are. A network on a GPU gets its weights uploaded once.
pub fn predict_files(
    t: &Trained,
    paths: &[PathBuf],
    opts: &ReadOptions,
    chunk: usize,
    device: &Device,
    progress: impl Fn(usize),
) -> Result<(Vec<Row>, Throughput)> {
    let wall = std::time::Instant::now();
    let times = LoadTimes::default();
    let runner = t.model.runner(device)?;
    let mut model_s = 0.0;
    let mut rows = Vec::with_capacity(paths.len());
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::scope(|scope| -> Result<()> {
        let times = &times;
        scope.spawn(move || {
            for part in paths.chunks(chunk.max(1)) {
                if tx.send(load_timed(part, &t.prep, opts, times)).is_err() {
                    break; // the consumer stopped on an error
                }
            }
        });
        for (ok, refused) in rx {
            model_s += chunk_rows_into(t, &runner, ok, refused, &mut rows)?;
            progress(rows.len());
        }
        Ok(())
    })?;
    use std::sync::atomic::Ordering::Relaxed;
    let tp = Throughput {
        read_s: times.read_ns.load(Relaxed) as f64 * 1e-9,
        prep_s: times.prep_ns.load(Relaxed) as f64 * 1e-9,
        model_s,
        wall_s: wall.elapsed().as_secs_f64(),
        spectra: rows.len(),
    };
    Ok((rows, tp))
}

/// Predicts spectra already in memory (the Python package's `Model.predict`): the same rows, in the
/// same order, as `predict_files` gives for files holding them.
pub fn predict_spectra(t: &Trained, spectra: Vec<Spectrum>, device: &Device) -> Result<Vec<Row>> {
    let runner = t.model.runner(device)?;
    let mut rows = Vec::with_capacity(spectra.len());
    let mut spectra = spectra.into_iter().peekable();
    while spectra.peek().is_some() {
        let part: Vec<Spectrum> = spectra.by_ref().take(PREDICT_CHUNK).collect();
        let (ok, refused) = crate::data::dataset::prepare_spectra(part, &t.prep);
        chunk_rows_into(t, &runner, ok, refused, &mut rows)?;
    }
    Ok(rows)
}

/// Spectra preprocessed and estimated at a time by `predict_spectra`.
const PREDICT_CHUNK: usize = 1024;

/// Estimates one chunk of prepared spectra `ok` and appends its rows (and those of the `refused`
/// ones) to `rows`, in input order; returns the wall seconds spent in the estimator.
fn chunk_rows_into(
    t: &Trained,
    runner: &Runner,
    mut ok: Vec<Prepared>,
    refused: Vec<Refused>,
    rows: &mut Vec<Row>,
) -> Result<f64> {
    let x: Vec<Vec<f32>> = ok.iter_mut().map(|p| std::mem::take(&mut p.values)).collect();
    let all: Vec<usize> = (0..x.len()).collect();
    let t0 = std::time::Instant::now();
    let est = runner.estimate_rows(&x, &all, &t.scaling, 128)?;
    let model_s = t0.elapsed().as_secs_f64();
    let sig = t.sigmas(&est);
    let flags = chunk_flags(t, &ok, &x, &est.mean)?;
    part_rows_into(t, ok, refused, &est.mean, &sig, &flags, rows);
    Ok(model_s)
}

/// The out-of-domain flags of one chunk of prepared spectra `ok` (`x`: their network inputs) with
/// estimates `est` (label units, one row each).
pub fn chunk_flags(
    t: &Trained,
    ok: &[crate::data::dataset::Prepared],
    x: &[Vec<f32>],
    est: &ndarray::Array2<f64>,
) -> Result<Vec<u32>> {
    use crate::trust::*;
    let all: Vec<usize> = (0..x.len()).collect();
    let mut flags = match &t.domain {
        Some(d) => d.flags_rows(x, &all, est)?,
        None => vec![0; x.len()],
    };
    for (f, p) in flags.iter_mut().zip(ok) {
        if p.meta.snr_catalog().is_some_and(|s| s < LOW_SNR) {
            *f |= FLAG_LOW_SNR;
        }
        if p.bad_fraction > MASKED_FRACTION {
            *f |= FLAG_MASKED;
        }
        if t.synthetic && !p.meta.synthetic {
            *f |= FLAG_SYNTHETIC_MODEL;
        }
    }
    Ok(flags)
}

/// Appends one chunk's rows (predicted and refused) to `rows`, in input order.
#[allow(clippy::too_many_arguments)]
fn part_rows_into(
    t: &Trained,
    ok: Vec<Prepared>,
    refused: Vec<Refused>,
    pred: &ndarray::Array2<f64>,
    sig: &ndarray::Array2<f64>,
    flags: &[u32],
    rows: &mut Vec<Row>,
) {
    let mut part_rows: Vec<(usize, Row)> = ok
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = &p.meta;
            let errors = sig.row(i).iter().map(|v| v.is_finite().then_some(*v)).collect();
            (
                p.index,
                Row {
                    file: p.file.clone(),
                    obsid: m.obsid,
                    ra: m.ra,
                    dec: m.dec,
                    snr: m.snr_catalog(),
                    synthetic: m.synthetic,
                    values: pred.row(i).iter().map(|v| Some(*v)).collect(),
                    errors,
                    flags: Some(flags[i]),
                    reason: String::new(),
                },
            )
        })
        .collect();
    part_rows.extend(refused.into_iter().map(|r| {
        (
            r.index,
            Row {
                file: r.file,
                obsid: None,
                ra: None,
                dec: None,
                snr: None,
                synthetic: false,
                values: vec![None; t.targets.len()],
                errors: vec![None; t.targets.len()],
                flags: None,
                reason: r.reason,
            },
        )
    }));
    // Keep the input order.
    part_rows.sort_by_key(|r| r.0);
    rows.extend(part_rows.into_iter().map(|(_, r)| r));
}

/// The catalog of predictions: file, obsid, ra, dec, snr, one column per target, the VMP flag when
/// [Fe/H] is estimated, the CEMP flag when [C/Fe] is too, and the reason a row is empty.
pub fn catalog(t: &Trained, rows: &[Row], th: &Thresholds) -> Catalog {
    let mut c = Catalog::default();
    c.push("file", "", ColumnData::Str(rows.iter().map(|r| r.file.clone()).collect()));
    c.describe("spectrum file name", "");
    c.push("obsid", "", ColumnData::I64(rows.iter().map(|r| r.obsid).collect()));
    c.describe("survey observation id (OBSID card)", "");
    c.push("ra", "deg", ColumnData::F64(rows.iter().map(|r| r.ra).collect()));
    c.describe("right ascension from the header", "F11.6");
    c.push("dec", "deg", ColumnData::F64(rows.iter().map(|r| r.dec).collect()));
    c.describe("declination from the header", "F11.6");
    c.push("snr", "", ColumnData::F64(rows.iter().map(|r| r.snr).collect()));
    c.describe("S/N per pixel from the header: r band (SNRR), g (SNRG) where r is absent", "F8.2");
    let calibrated = t.calibration.is_some();
    for (j, name) in t.targets.iter().enumerate() {
        let (unit, display) = (label_unit(name), label_display(name));
        c.push(name, unit, ColumnData::F64(rows.iter().map(|r| r.values[j]).collect()));
        c.describe(&format!("{} estimate [{unit}]", label_symbol(name)), display);
        if calibrated {
            c.push(&format!("{name}_err"), unit, ColumnData::F64(rows.iter().map(|r| r.errors[j]).collect()));
            c.describe(&format!("{} 1-sigma uncertainty, calibrated [{unit}]", label_symbol(name)), display);
        }
    }
    c.push("flags", "", ColumnData::I64(rows.iter().map(|r| r.flags.map(i64::from)).collect()));
    c.describe("out-of-domain bitmask: see the FLAGn cards; NULL when refused", "I3");
    let col = |n: &str| t.targets.iter().position(|x| x == n);
    if let (Some(f), true) = (col("feh"), calibrated) {
        // The probability that [Fe/H] is below the VMP threshold, from the estimate and its sigma.
        let p: Vec<Option<f64>> = rows
            .iter()
            .map(|r| match (r.values[f], r.errors[f]) {
                (Some(v), Some(s)) if s > 0.0 => Some(crate::trust::normal_cdf((th.vmp_feh - v) / s)),
                _ => None,
            })
            .collect();
        c.push("p_vmp", "", ColumnData::F64(p.clone()));
        c.describe("probability that [Fe/H] < VMPFEH, from the estimate and its sigma", "F6.4");
        if let Some(cf) = col("cfe") {
            let pc: Vec<Option<f64>> = rows
                .iter()
                .zip(&p)
                .map(|(r, pv)| match (pv, r.values[cf], r.errors[cf]) {
                    (Some(pv), Some(v), Some(s)) if s > 0.0 => {
                        Some(pv * crate::trust::normal_cdf((v - th.cemp_cfe) / s))
                    }
                    _ => None,
                })
                .collect();
            c.push("p_cemp", "", ColumnData::F64(pc));
            c.describe("probability of VMP and [C/Fe] > CEMPCFE", "F6.4");
        }
    }
    if let Some(f) = col("feh") {
        let vmp: Vec<Option<bool>> = rows.iter().map(|r| r.values[f].map(|v| v < th.vmp_feh)).collect();
        c.push("vmp", "", ColumnData::Flag(vmp.clone()));
        c.describe("very metal-poor: estimated [Fe/H] < VMPFEH", "I1");
        if let Some(cf) = col("cfe") {
            let cemp = rows.iter().zip(&vmp).map(|(r, v)| match (v, r.values[cf]) {
                (Some(v), Some(c)) => Some(*v && c > th.cemp_cfe),
                _ => None,
            });
            c.push("cemp", "", ColumnData::Flag(cemp.collect()));
            c.describe("carbon-enhanced VMP: vmp and estimated [C/Fe] > CEMPCFE", "I1");
        }
    }
    c.push("reason", "", ColumnData::Str(rows.iter().map(|r| r.reason.clone()).collect()));
    c.describe("why the row has no estimate (empty when it has one)", "");
    c.card(
        "MODEL",
        t.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        "specnn model file",
    );
    c.card("MODELSHA", t.sha256.clone(), "SHA-256 of the model file");
    c.card("SNRBAND", "r (g where SNRR is absent)", "band of the snr column");
    if col("feh").is_some() {
        c.card("VMPFEH", th.vmp_feh, "VMP flag: [Fe/H] below this [dex]");
        if col("cfe").is_some() {
            c.card("CEMPCFE", th.cemp_cfe, "CEMP flag: VMP and [C/Fe] above this [dex]");
        }
    }
    for (bit, what) in crate::trust::FLAG_DOCS {
        c.card(&format!("FLAG{bit}"), what, &format!("flags bit value {bit}"));
    }
    if calibrated {
        c.card("ERRCAL", "validation", "*_err: 1-sigma, calibrated on validation stars");
    }
    if t.synthetic || rows.iter().any(|r| r.synthetic) {
        c.card("SYNTHETI", true, "synthetic spectra or a model trained on them");
    }
    c
}
