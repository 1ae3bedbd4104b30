//! Folders of spectra, read and preprocessed in parallel, shaped into network inputs.

use super::pipeline::{prepare, PrepConfig};
use super::prep::fold_s;
use super::read::{read_spectrum, ReadOptions};
use super::spectrum::{Meta, Spectrum};
use crate::error::{Error, Result};
use crate::nn::Arch;
use ndarray::{Array2, ArrayD, IxDyn};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// A spectrum ready for a network.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Its position in the list that was loaded.
    pub index: usize,
    pub path: PathBuf,
    pub file: String,
    pub meta: Meta,
    pub values: Vec<f32>,
    /// The fraction of the file's pixels flagged bad (mask bits, zero inverse variance, non-finite).
    pub bad_fraction: f64,
}

/// A spectrum that could not be used, and why.
#[derive(Clone, Debug)]
pub struct Refused {
    /// Its position in the list that was loaded.
    pub index: usize,
    pub path: PathBuf,
    pub file: String,
    pub reason: String,
}

/// The spectrum files of a folder: FITS (`.fits`, `.fit`, gzipped too) and CSV files, except CSV files
/// whose name contains `label` or `catalog`; sorted by name.
pub fn list_spectra(dir: &Path, recursive: bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(d) = folders.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for p in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            let n = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            if n.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                if recursive {
                    folders.push(p);
                }
                continue;
            }
            let fits = [".fits", ".fit", ".fits.gz", ".fit.gz", ".fits.fz"].iter().any(|e| n.ends_with(e));
            let csv = n.ends_with(".csv") && !n.contains("label") && !n.contains("catalog");
            if p.is_file() && (fits || csv) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        let hint = if recursive {
            "in this folder or its subfolders"
        } else {
            "in this folder (--recursive searches its subfolders too)"
        };
        return Err(Error::file(dir, format!("no spectrum files (.fits, .fits.gz, .csv) {hint}")));
    }
    Ok(out)
}

/// Whether `path` names a list of spectrum files (one per line) rather than a spectrum.
pub fn is_file_list(path: &Path) -> bool {
    let n = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    [".txt", ".lst", ".list"].iter().any(|e| n.ends_with(e))
}

/// The spectrum files a list names: one path per line, relative to the list's folder unless absolute;
/// blank lines and `#` comments skipped. A listed file that does not exist is an error naming it and
/// the line.
pub fn read_file_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let base = list.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = base.join(line);
        if !p.is_file() {
            return Err(Error::file(list, format!("line {}: `{line}` is not a file", i + 1)));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(Error::file(list, "the list names no spectrum file"));
    }
    Ok(out)
}

/// CPU time spent reading and preprocessing, summed over threads (nanoseconds).
#[derive(Debug, Default)]
pub struct LoadTimes {
    pub read_ns: std::sync::atomic::AtomicU64,
    pub prep_ns: std::sync::atomic::AtomicU64,
}

/// Reads and preprocesses `paths` in parallel (order kept); files that cannot be read or are refused
/// by the pipeline are returned with their reason instead of stopping the run.
pub fn load(paths: &[PathBuf], prep: &PrepConfig, opts: &ReadOptions) -> (Vec<Prepared>, Vec<Refused>) {
    load_timed(paths, prep, opts, &LoadTimes::default())
}

/// `load`, adding the time spent in reading and in preprocessing to `times`.
pub fn load_timed(
    paths: &[PathBuf],
    prep: &PrepConfig,
    opts: &ReadOptions,
    times: &LoadTimes,
) -> (Vec<Prepared>, Vec<Refused>) {
    use std::sync::atomic::Ordering::Relaxed;
    let results: Vec<std::result::Result<Prepared, Refused>> = paths
        .par_iter()
        .enumerate()
        .map(|(index, p)| {
            let file = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let refuse = |e: Error| Refused { index, path: p.clone(), file: file.clone(), reason: e.to_string() };
            let t0 = std::time::Instant::now();
            let s = read_spectrum(p, opts);
            let t1 = std::time::Instant::now();
            times.read_ns.fetch_add((t1 - t0).as_nanos() as u64, Relaxed);
            let s = s.map_err(refuse)?;
            let v = prepare(&s, prep, None);
            times.prep_ns.fetch_add(t1.elapsed().as_nanos() as u64, Relaxed);
            Ok(prepared(index, s, v.map_err(refuse)?))
        })
        .collect();
    partition(results)
}

/// Preprocesses spectra already in memory, in parallel (order kept), as `load` does files.
pub fn prepare_spectra(spectra: Vec<Spectrum>, prep: &PrepConfig) -> (Vec<Prepared>, Vec<Refused>) {
    let results: Vec<std::result::Result<Prepared, Refused>> = spectra
        .into_par_iter()
        .enumerate()
        .map(|(index, s)| match prepare(&s, prep, None) {
            Ok(v) => Ok(prepared(index, s, v)),
            Err(e) => Err(Refused { index, file: s.file_name(), path: s.path, reason: e.to_string() }),
        })
        .collect();
    partition(results)
}

/// A spectrum `s` and its pipeline output `values`, ready for a network.
fn prepared(index: usize, s: Spectrum, values: Vec<f64>) -> Prepared {
    let bad_fraction = s.bad.iter().filter(|b| **b).count() as f64 / s.bad.len().max(1) as f64;
    Prepared {
        index,
        file: s.file_name(),
        path: s.path,
        meta: s.meta,
        values: values.iter().map(|&x| x as f32).collect(),
        bad_fraction,
    }
}

fn partition(results: Vec<std::result::Result<Prepared, Refused>>) -> (Vec<Prepared>, Vec<Refused>) {
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(p) => ok.push(p),
            Err(r) => bad.push(r),
        }
    }
    (ok, bad)
}

/// Shapes preprocessed rows into the input of `arch`: `[N, 1, S, S]` (S-fold) for the VMP CNN,
/// `[N, L]` otherwise. A spectrum a little shorter than `S x S` (143 pixels at R=200 for a 12x12 fold)
/// is padded with zeros at its red end before folding.
pub fn to_input(arch: &Arch, rows: &[&[f32]]) -> Result<ArrayD<f32>> {
    let len = rows.first().map_or(0, |r| r.len());
    let flat = Array2::from_shape_vec((rows.len(), len), rows.iter().flat_map(|r| r.iter().copied()).collect())
        .map_err(|_| Error::Data("spectra of different lengths in one batch".into()))?;
    match arch {
        Arch::VmpCnn { in_side, .. } => {
            if len > in_side * in_side || len <= (in_side - 1) * (in_side - 1) {
                return Err(Error::Data(format!(
                    "the VMP CNN folds {} pixels into {in_side}x{in_side}; the preprocessing gives {len}",
                    in_side * in_side
                )));
            }
            if len == in_side * in_side {
                return Ok(fold_s(flat.view(), *in_side)?.into_dyn());
            }
            let mut padded = Array2::<f32>::zeros((rows.len(), in_side * in_side));
            padded.slice_mut(ndarray::s![.., ..len]).assign(&flat);
            Ok(fold_s(padded.view(), *in_side)?.into_dyn())
        }
        _ => {
            let want = arch.input_shape(1)[1];
            if len != want {
                return Err(Error::Data(format!(
                    "the network takes {want} inputs; the preprocessing gives {len} pixels"
                )));
            }
            Ok(flat.into_dyn().into_shape_with_order(IxDyn(&[rows.len(), len])).expect("same size"))
        }
    }
}
