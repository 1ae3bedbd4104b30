//! Prediction: a trained model file applied to spectrum files, one catalog row per file. A file that
//! cannot be read or is refused by the preprocessing gets a row with its reason instead of stopping
//! the run. Files are processed in chunks, so memory stays flat however many there are.

use crate::catalog::{Catalog, ColumnData};
use crate::data::dataset::{load_timed, LoadTimes, Prepared, Refused};
use crate::data::labels::{label_display, label_symbol, label_unit};
use crate::data::ReadOptions;
use crate::data::Spectrum;
use crate::error::Result;
use crate::gpu::Device;
pub use crate::model_file::{load_trained, sha256_hex, sigmas, Estimates, Estimator, Runner, Trained};
use std::path::PathBuf;

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
    if let Some(cal) = &t.calibration {
        let what = if cal.source == crate::trust::VALIDATION { "validation stars" } else { "out-of-fold stars" };
        c.card("ERRCAL", cal.source.clone(), &format!("*_err: 1-sigma, calibrated on {what}"));
    }
    if t.synthetic || rows.iter().any(|r| r.synthetic) {
        c.card("SYNTHETI", true, "synthetic spectra or a model trained on them");
    }
    c
}
