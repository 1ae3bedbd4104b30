//! Prediction: a trained model file applied to spectrum files, one catalog row per file. A file that
//! cannot be read or is refused by the preprocessing gets a row with its reason instead of stopping
//! the run. Files are processed in chunks, so memory stays flat however many there are.

use crate::catalog::{Catalog, ColumnData};
use crate::data::dataset::{load_timed, LoadTimes};
use crate::gpu::GpuNet;
use crate::data::labels::label_unit;
use crate::data::{PrepConfig, ReadOptions};
use crate::error::{Error, Result};
use crate::baselines::{Baseline, BaselineKind, BASELINE_KEY};
use crate::io::read_safetensors;
use crate::nn::{load_model, Model};
use crate::gpu::Device;
use crate::train::{predict_rows, predict_rows_with, History, Scaling, HISTORY_KEY, PREP_KEY, SCALING_KEY, SYNTHETIC_KEY, TARGETS_KEY};
use std::path::{Path, PathBuf};

/// What estimates the labels: a network, or one of the seed's baselines.
#[derive(Clone, Debug)]
pub enum Estimator {
    Net(Model<f32>),
    Baseline(Baseline),
}

impl Estimator {
    /// The number of labels it estimates.
    pub fn outputs(&self) -> usize {
        match self {
            Estimator::Net(m) => m.arch().outputs(),
            Estimator::Baseline(b) => b.outputs(),
        }
    }

    /// One line for reports: the architecture's JSON, or the baseline's name.
    pub fn describe(&self) -> String {
        match self {
            Estimator::Net(m) => m.arch().to_json(),
            Estimator::Baseline(b) => format!("{{\"kind\":\"{}\",\"inputs\":{}}}", b.kind().name(), b.inputs()),
        }
    }

    /// The estimator made ready to run on `device`: a network's weights are uploaded to a GPU once
    /// here; baselines run on the CPU.
    pub fn runner(&self, device: &Device) -> Result<Runner<'_>> {
        Ok(match (self, device.gpu()) {
            (Estimator::Net(m), Some(g)) => Runner::Gpu(m, GpuNet::new(g.clone(), m.clone())?),
            _ => Runner::Cpu(self),
        })
    }

    /// Label estimates (in label units) for `x[rows]`; networks run in batches of `batch` on `device`.
    pub fn predict_rows(&self, x: &[Vec<f32>], rows: &[usize], s: &Scaling, batch: usize, device: &Device) -> Result<ndarray::Array2<f64>> {
        self.runner(device)?.predict_rows(x, rows, s, batch)
    }
}

/// An [`Estimator`] ready to run many batches on its device.
pub enum Runner<'e> {
    Cpu(&'e Estimator),
    Gpu(&'e Model<f32>, GpuNet),
}

impl Runner<'_> {
    /// Label estimates (in label units) for `x[rows]`, networks in batches of `batch`.
    pub fn predict_rows(&self, x: &[Vec<f32>], rows: &[usize], s: &Scaling, batch: usize) -> Result<ndarray::Array2<f64>> {
        match self {
            Runner::Gpu(m, net) => predict_rows_with(m.arch(), x, rows, s, batch, |b| net.predict(b)),
            Runner::Cpu(Estimator::Net(m)) => predict_rows(m, x, rows, s, batch),
            Runner::Cpu(Estimator::Baseline(b)) => {
                let mut z = b.predict(x, rows)?;
                for mut row in z.rows_mut() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = s.to_label(j, *v);
                    }
                }
                Ok(z)
            }
        }
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
}

/// Loads a model file written by `specnn train`.
pub fn load_trained(path: &Path) -> Result<Trained> {
    let (model, meta) = {
        let (tensors, meta) = read_safetensors::<f32>(path)?;
        match meta.get(BASELINE_KEY) {
            Some(kind) => {
                let kind: BaselineKind = serde_json::from_str(kind).map_err(|e| Error::file(path, format!("metadata `{BASELINE_KEY}` is malformed: {e}")))?;
                let b = Baseline::from_tensors(kind, &tensors).map_err(|e| Error::file(path, e.to_string()))?;
                (Estimator::Baseline(b), meta)
            }
            None => {
                let (m, meta) = load_model::<f32>(path)?;
                (Estimator::Net(m), meta)
            }
        }
    };
    let get = |k: &str| meta.get(k).ok_or_else(|| Error::file(path, format!("no `{k}` metadata: not a model written by `specnn train`")));
    let bad = |k: &str, e: serde_json::Error| Error::file(path, format!("metadata `{k}` is malformed: {e}"));
    let targets: Vec<String> = get(TARGETS_KEY)?.split(',').map(String::from).collect();
    let scaling: Scaling = serde_json::from_str(get(SCALING_KEY)?).map_err(|e| bad(SCALING_KEY, e))?;
    let prep: PrepConfig = serde_json::from_str(get(PREP_KEY)?).map_err(|e| bad(PREP_KEY, e))?;
    let history: History = meta.get(HISTORY_KEY).map(|h| serde_json::from_str(h)).transpose().map_err(|e| bad(HISTORY_KEY, e))?.unwrap_or_default();
    if targets.len() != model.outputs() || scaling.mean.len() != targets.len() {
        return Err(Error::file(path, format!("{} targets for a model of {} outputs", targets.len(), model.outputs())));
    }
    Ok(Trained { path: path.into(), model, targets, scaling, prep, history, synthetic: meta.get(SYNTHETIC_KEY).is_some_and(|v| v == "true") })
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
pub fn predict_files(t: &Trained, paths: &[PathBuf], opts: &ReadOptions, chunk: usize, device: &Device, progress: impl Fn(usize)) -> Result<(Vec<Row>, Throughput)> {
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
        for (mut ok, refused) in rx {
            let x: Vec<Vec<f32>> = ok.iter_mut().map(|p| std::mem::take(&mut p.values)).collect();
            let all: Vec<usize> = (0..x.len()).collect();
            let t0 = std::time::Instant::now();
            let pred = runner.predict_rows(&x, &all, &t.scaling, 128)?;
            model_s += t0.elapsed().as_secs_f64();
            part_rows_into(t, ok, refused, &pred, &mut rows);
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

/// Appends one chunk's rows (predicted and refused) to `rows`, in input order.
fn part_rows_into(t: &Trained, ok: Vec<crate::data::dataset::Prepared>, refused: Vec<crate::data::dataset::Refused>, pred: &ndarray::Array2<f64>, rows: &mut Vec<Row>) {
    let mut part_rows: Vec<(PathBuf, Row)> = ok
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let m = &p.meta;
            (p.path.clone(), Row { file: p.file.clone(), obsid: m.obsid, ra: m.ra, dec: m.dec, snr: m.snr_catalog(), synthetic: m.synthetic, values: pred.row(i).iter().map(|v| Some(*v)).collect(), reason: String::new() })
        })
        .collect();
    part_rows.extend(refused.into_iter().map(|r| {
        (r.path.clone(), Row { file: r.file, obsid: None, ra: None, dec: None, snr: None, synthetic: false, values: vec![None; t.targets.len()], reason: r.reason })
    }));
    // Keep the input order.
    part_rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.extend(part_rows.into_iter().map(|(_, r)| r));
}

/// The catalog of predictions: file, obsid, ra, dec, snr, one column per target, the VMP flag when
/// [Fe/H] is estimated, the CEMP flag when [C/Fe] is too, and the reason a row is empty.
pub fn catalog(t: &Trained, rows: &[Row], th: &Thresholds) -> Catalog {
    let mut c = Catalog::default();
    c.push("file", "", ColumnData::Str(rows.iter().map(|r| r.file.clone()).collect()));
    c.push("obsid", "", ColumnData::I64(rows.iter().map(|r| r.obsid).collect()));
    c.push("ra", "deg", ColumnData::F64(rows.iter().map(|r| r.ra).collect()));
    c.push("dec", "deg", ColumnData::F64(rows.iter().map(|r| r.dec).collect()));
    c.push("snr", "", ColumnData::F64(rows.iter().map(|r| r.snr).collect()));
    for (j, name) in t.targets.iter().enumerate() {
        c.push(name, label_unit(name), ColumnData::F64(rows.iter().map(|r| r.values[j]).collect()));
    }
    let col = |n: &str| t.targets.iter().position(|x| x == n);
    if let Some(f) = col("feh") {
        let vmp: Vec<Option<bool>> = rows.iter().map(|r| r.values[f].map(|v| v < th.vmp_feh)).collect();
        if let Some(cf) = col("cfe") {
            let cemp = rows.iter().zip(&vmp).map(|(r, v)| match (v, r.values[cf]) {
                (Some(v), Some(c)) => Some(*v && c > th.cemp_cfe),
                _ => None,
            });
            let cemp: Vec<Option<bool>> = cemp.collect();
            c.push("vmp", "", ColumnData::Flag(vmp));
            c.push("cemp", "", ColumnData::Flag(cemp));
        } else {
            c.push("vmp", "", ColumnData::Flag(vmp));
        }
    }
    c.push("reason", "", ColumnData::Str(rows.iter().map(|r| r.reason.clone()).collect()));
    c.cards.push(("MODEL".into(), t.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), "specnn model file".into()));
    c.cards.push(("VMPFEH".into(), format!("{}", th.vmp_feh), "VMP flag: [Fe/H] below this".into()));
    c.cards.push(("CEMPCFE".into(), format!("{}", th.cemp_cfe), "CEMP flag: VMP and [C/Fe] above this".into()));
    if t.synthetic || rows.iter().any(|r| r.synthetic) {
        c.cards.push(("SYNTHETI".into(), "T".into(), "synthetic spectra or a model trained on them".into()));
    }
    c
}
