//! `specnn._specnn`: the pyo3 bindings under the Python package `specnn` (`python/specnn/__init__.py`
//! gives the documented signatures and turns one spectrum into a batch of one). Everything here is a
//! thin layer over the library: the readers, `predict::predict_spectra` / `predict_files` and
//! `predict::catalog` (so a row is the CLI catalog's row), `options::TrainSettings` (so `train` takes
//! the CLI's options with its defaults and messages), `workflow::train_labelled`, `golden::audit_on`.
//! Compute runs with the GIL released.

use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyFileNotFoundError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use specnn::catalog::{Catalog, ColumnData};
use specnn::data::{read_spectrum, Medium, Meta, ReadOptions, Spectrum};
use specnn::gpu::Device;
use specnn::options::TrainSettings;
use specnn::predict::{Row, Thresholds, Trained};
use std::path::PathBuf;

pyo3::create_exception!(
    _specnn,
    SpecnnError,
    PyValueError,
    "A bad input or a failed step; the message names the file (or spectrum) and the problem."
);

/// A library error as a Python exception: a file that does not exist is `FileNotFoundError`,
/// everything else `specnn.SpecnnError` (a `ValueError`), with the library's message.
fn py_err(e: specnn::Error) -> PyErr {
    match &e {
        specnn::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(e.to_string())
        }
        _ => SpecnnError::new_err(e.to_string()),
    }
}

fn medium_of(s: &str) -> PyResult<Medium> {
    <Medium as clap::ValueEnum>::from_str(s, true)
        .map_err(|_| SpecnnError::new_err(format!("medium `{s}`: use \"air\" or \"vacuum\"")))
}

fn device_of(s: &str) -> PyResult<Device> {
    Device::open(s).map_err(py_err)
}

/// FileNotFoundError for a path that is not there (`what`: "file", "file or folder").
fn must_exist(path: &std::path::Path, what: &str) -> PyResult<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(PyFileNotFoundError::new_err(format!("{}: no such {what}", path.display())))
    }
}

fn opt_f64(v: Option<f64>) -> f64 {
    v.unwrap_or(f64::NAN)
}

/// Reads one spectrum file (any layout specnn reads) into a dict of numpy arrays and header facts.
#[pyfunction]
#[pyo3(signature = (path, medium = None))]
fn read<'py>(py: Python<'py>, path: PathBuf, medium: Option<&str>) -> PyResult<Bound<'py, PyDict>> {
    let opts = ReadOptions { medium: medium.map(medium_of).transpose()?, recursive: false };
    must_exist(&path, "file")?;
    let s = py.detach(|| read_spectrum(&path, &opts)).map_err(py_err)?;
    let d = PyDict::new(py);
    d.set_item("path", s.path.display().to_string())?;
    d.set_item("layout", format!("{:?}", s.layout))?;
    d.set_item(
        "medium",
        match s.medium {
            Medium::Air => "air",
            Medium::Vacuum => "vacuum",
        },
    )?;
    d.set_item("wavelength", PyArray1::from_vec(py, s.wavelength))?;
    d.set_item("flux", PyArray1::from_vec(py, s.flux))?;
    d.set_item("ivar", PyArray1::from_vec(py, s.ivar))?;
    d.set_item("mask", PyArray1::from_vec(py, s.bad))?;
    let m = s.meta;
    d.set_item("obsid", m.obsid)?;
    d.set_item("ra", m.ra)?;
    d.set_item("dec", m.dec)?;
    d.set_item("z", m.z)?;
    let snr = PyDict::new(py);
    for (band, v) in &m.snr {
        snr.set_item(band, v)?;
    }
    d.set_item("snr", snr)?;
    d.set_item("class", m.class)?;
    d.set_item("synthetic", m.synthetic)?;
    Ok(d)
}

/// A catalog's columns as a dict of numpy arrays (float64 with NaN for NULL; int64 with -1 for
/// NULL; bool with False for NULL) and lists of str.
fn columns<'py>(py: Python<'py>, c: &Catalog) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for col in &c.columns {
        match &col.data {
            ColumnData::F64(v) => {
                d.set_item(&col.name, PyArray1::from_vec(py, v.iter().map(|x| opt_f64(*x)).collect()))?
            }
            ColumnData::I64(v) => {
                d.set_item(&col.name, PyArray1::from_vec(py, v.iter().map(|x| x.unwrap_or(-1)).collect()))?
            }
            ColumnData::Flag(v) => {
                d.set_item(&col.name, PyArray1::from_vec(py, v.iter().map(|x| x.unwrap_or(false)).collect()))?
            }
            ColumnData::Str(v) => d.set_item(&col.name, PyList::new(py, v)?)?,
        }
    }
    Ok(d)
}

/// One value per spectrum from a list of 1 (shared by all) or `n`.
fn each<'a, T>(v: &'a [T], what: &str, n: usize) -> PyResult<impl Fn(usize) -> &'a T> {
    if v.len() != 1 && v.len() != n {
        return Err(SpecnnError::new_err(format!(
            "{} {what} for {n} spectra (give one for all, or one per spectrum)",
            v.len()
        )));
    }
    Ok(move |i: usize| if v.len() == 1 { &v[0] } else { &v[i] })
}

/// Spectra from lists of 1-D arrays (one per spectrum; one `wave` or `medium` may serve all), each
/// checked as a file's would be. A spectrum that fails the checks is an `Err` with the reason, at its
/// position, so that the caller can refuse it as the CLI refuses a file.
#[allow(clippy::too_many_arguments)]
fn spectra_of(
    wave: &[PyReadonlyArray1<f64>],
    flux: &[PyReadonlyArray1<f64>],
    ivar: Option<&[PyReadonlyArray1<f64>]>,
    mask: Option<&[PyReadonlyArray1<bool>]>,
    names: Option<&[String]>,
    medium: &[String],
    z: Option<&[f64]>,
    snr: Option<&[f64]>,
) -> PyResult<Vec<(String, Result<Spectrum, String>)>> {
    let n = flux.len();
    let media: Vec<Medium> = medium.iter().map(|m| medium_of(m)).collect::<PyResult<_>>()?;
    let (wave_of, medium_of_star) = (each(wave, "wavelength arrays", n)?, each(&media, "media", n)?);
    let per_star = |what: &str, v: Option<&[f64]>| -> PyResult<()> {
        match v {
            Some(v) if v.len() != n => Err(SpecnnError::new_err(format!("{} {what} values for {n} spectra", v.len()))),
            _ => Ok(()),
        }
    };
    per_star("z", z)?;
    per_star("snr", snr)?;
    if let Some(v) = ivar {
        if v.len() != n {
            return Err(SpecnnError::new_err(format!("{} ivar arrays for {n} spectra", v.len())));
        }
    }
    if let Some(v) = mask {
        if v.len() != n {
            return Err(SpecnnError::new_err(format!("{} mask arrays for {n} spectra", v.len())));
        }
    }
    if let Some(names) = names {
        if names.len() != n {
            return Err(SpecnnError::new_err(format!("{} names for {n} spectra", names.len())));
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let name = names.map(|v| v[i].clone()).unwrap_or_else(|| format!("spectrum[{i}]"));
        let f = flux[i].as_array().to_vec();
        let m = f.len();
        let wl = wave_of(i).as_array().to_vec();
        let iv = ivar.map(|v| v[i].as_array().to_vec());
        let mk = mask.map(|v| v[i].as_array().to_vec());
        let shapes = |what: &str, len: usize| format!("{what} has {len} values, flux {m}");
        let mismatch = if wl.len() != m {
            Some(shapes("wavelength", wl.len()))
        } else if let Some(a) = iv.as_ref().filter(|a| a.len() != m) {
            Some(shapes("ivar", a.len()))
        } else {
            mk.as_ref().filter(|a| a.len() != m).map(|a| shapes("mask", a.len()))
        };
        if let Some(why) = mismatch {
            out.push((name.clone(), Err(format!("{name}: {why}"))));
            continue;
        }
        let mut meta = Meta { z: z.map(|v| v[i]).filter(|z| z.is_finite()), ..Meta::default() };
        if let Some(s) = snr.map(|v| v[i]).filter(|s| s.is_finite()) {
            meta.snr.insert("r".into(), s);
        }
        let s = Spectrum::from_arrays(&name, wl, f, iv, mk, *medium_of_star(i), meta);
        out.push((name, s.map_err(|e| e.to_string())));
    }
    Ok(out)
}

/// A trained model file, loaded once and used for any number of predictions.
#[pyclass(name = "_Model", module = "specnn._specnn", frozen)]
struct Model {
    t: Trained,
}

#[pymethods]
impl Model {
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        must_exist(&path, "file")?;
        let t = py.detach(|| specnn::predict::load_trained(&path)).map_err(py_err)?;
        Ok(Model { t })
    }

    #[getter]
    fn path(&self) -> String {
        self.t.path.display().to_string()
    }

    #[getter]
    fn targets(&self) -> Vec<String> {
        self.t.targets.clone()
    }

    /// Units per target, as in the catalogs.
    #[getter]
    fn units(&self) -> Vec<(String, String)> {
        self.t.targets.iter().map(|n| (n.clone(), specnn::data::labels::label_unit(n).to_string())).collect()
    }

    #[getter]
    fn describe(&self) -> String {
        self.t.model.describe()
    }

    #[getter]
    fn members(&self) -> usize {
        self.t.model.members()
    }

    #[getter]
    fn synthetic(&self) -> bool {
        self.t.synthetic
    }

    /// The training loss: "mae", or "nll" for a network with a variance head.
    #[getter]
    fn loss(&self) -> String {
        self.t.history.loss.name().to_string()
    }

    #[getter]
    fn calibrated(&self) -> bool {
        self.t.calibration.is_some()
    }

    /// What the uncertainties were calibrated on: "validation", "crossval K", or None.
    #[getter]
    fn calibration_source(&self) -> Option<String> {
        self.t.calibration.as_ref().map(|c| c.source.clone())
    }

    /// The wavelength grid (vacuum Angstrom) every spectrum is resampled onto.
    #[getter]
    fn grid<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.t.prep.grid.wavelengths())
    }

    /// The training history as JSON (`History`: epochs, best epoch).
    #[getter]
    fn history_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.t.history).map_err(|e| SpecnnError::new_err(e.to_string()))
    }

    /// Estimates for spectra given as lists of 1-D arrays; returns (columns, refused) where `refused` lists
    /// (index, name, reason) of the spectra without estimates.
    #[pyo3(signature = (wave, flux, ivar, mask, names, medium, z, snr, device, vmp_feh, cemp_cfe))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        wave: Vec<PyReadonlyArray1<f64>>,
        flux: Vec<PyReadonlyArray1<f64>>,
        ivar: Option<Vec<PyReadonlyArray1<f64>>>,
        mask: Option<Vec<PyReadonlyArray1<bool>>>,
        names: Option<Vec<String>>,
        medium: Vec<String>,
        z: Option<Vec<f64>>,
        snr: Option<Vec<f64>>,
        device: &str,
        vmp_feh: f64,
        cemp_cfe: f64,
    ) -> PyResult<(Bound<'py, PyDict>, Vec<(usize, String, String)>)> {
        let device = device_of(device)?;
        let checked = spectra_of(
            &wave,
            &flux,
            ivar.as_deref(),
            mask.as_deref(),
            names.as_deref(),
            &medium,
            z.as_deref(),
            snr.as_deref(),
        )?;
        let t = &self.t;
        let rows = py
            .detach(|| -> specnn::Result<Vec<Row>> {
                let k = t.targets.len();
                let mut good = Vec::new();
                let mut slots: Vec<Option<Row>> = Vec::with_capacity(checked.len());
                for (name, s) in checked {
                    match s {
                        Ok(s) => {
                            good.push(s);
                            slots.push(None);
                        }
                        Err(reason) => slots.push(Some(Row {
                            file: name,
                            obsid: None,
                            ra: None,
                            dec: None,
                            snr: None,
                            synthetic: false,
                            values: vec![None; k],
                            errors: vec![None; k],
                            flags: None,
                            reason,
                        })),
                    }
                }
                let mut estimated = specnn::predict::predict_spectra(t, good, &device)?.into_iter();
                Ok(slots
                    .into_iter()
                    .map(|s| s.unwrap_or_else(|| estimated.next().expect("one row per good spectrum")))
                    .collect())
            })
            .map_err(py_err)?;
        let refused = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.reason.is_empty())
            .map(|(i, r)| (i, r.file.clone(), r.reason.clone()))
            .collect();
        let cat = specnn::predict::catalog(t, &rows, &Thresholds { vmp_feh, cemp_cfe });
        Ok((columns(py, &cat)?, refused))
    }

    /// The CLI catalog's rows for files (folders are listed), as columns.
    #[pyo3(signature = (paths, medium, recursive, device, vmp_feh, cemp_cfe))]
    #[allow(clippy::too_many_arguments)]
    fn predict_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        medium: Option<&str>,
        recursive: bool,
        device: &str,
        vmp_feh: f64,
        cemp_cfe: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let opts = ReadOptions { medium: medium.map(medium_of).transpose()?, recursive };
        let device = device_of(device)?;
        let t = &self.t;
        let rows = py
            .detach(|| -> specnn::Result<Vec<Row>> {
                let files = specnn::workflow::input_list(&paths, recursive)?;
                Ok(specnn::predict::predict_files(t, &files, &opts, 256, &device, |_| {})?.0)
            })
            .map_err(py_err)?;
        columns(py, &specnn::predict::catalog(t, &rows, &Thresholds { vmp_feh, cemp_cfe }))
    }
}

/// `train`'s options parsed as the CLI parses them.
#[derive(clap::Parser)]
#[command(name = "specnn.train")]
struct TrainArgv {
    #[command(flatten)]
    settings: TrainSettings,
}

fn settings_of(argv: Vec<String>) -> PyResult<TrainSettings> {
    use clap::Parser;
    let args = std::iter::once("specnn.train".to_string()).chain(argv);
    match TrainArgv::try_parse_from(args) {
        Ok(a) => Ok(a.settings),
        Err(e) => {
            let text = e.to_string();
            let text = text.split("\n\nUsage").next().unwrap_or(&text);
            let text = text
                .split("\n\nFor more information")
                .next()
                .unwrap_or(text)
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            Err(SpecnnError::new_err(format!("train: {text}")))
        }
    }
}

/// The summary `train` returns: the history as JSON, the stars used and the refused ones.
fn summary(
    o: &specnn::train::Outcome,
    out: &std::path::Path,
    used: usize,
    refused: Vec<(String, String)>,
) -> PyResult<(String, String, usize, Vec<(String, String)>)> {
    let h = serde_json::to_string(&o.history).map_err(|e| SpecnnError::new_err(e.to_string()))?;
    Ok((out.display().to_string(), h, used, refused))
}

/// Runs `call` (a Python callback, with the GIL taken back) unless an earlier call failed; keeps the
/// first failure in `failed`, for the caller to raise once the Rust work is done.
fn call_back(failed: &std::sync::Mutex<Option<PyErr>>, call: impl FnOnce(Python<'_>) -> PyResult<()>) {
    if failed.lock().unwrap().is_some() {
        return;
    }
    if let Err(err) = Python::attach(call) {
        *failed.lock().unwrap() = Some(err);
    }
}

/// A Python callable `on_epoch(dict)` called after every epoch (with the GIL taken back).
fn epoch_callback(
    cb: Option<Py<PyAny>>,
    targets: Vec<String>,
    failed: &std::sync::Mutex<Option<PyErr>>,
) -> impl FnMut(&specnn::train::EpochStats) + '_ {
    move |e| {
        let Some(cb) = &cb else { return };
        call_back(failed, |py| {
            let d = PyDict::new(py);
            d.set_item("epoch", e.epoch)?;
            d.set_item("train_loss", e.train_loss)?;
            let mae = PyDict::new(py);
            for (t, v) in targets.iter().zip(&e.val_mae) {
                mae.set_item(t, v)?;
            }
            d.set_item("val_mae", mae)?;
            d.set_item("val_score", e.val_score)?;
            cb.call1(py, (d,))?;
            Ok(())
        });
    }
}

/// Trains from a folder of spectrum files and a label table, as `specnn train` does.
#[pyfunction]
#[pyo3(signature = (spectra, labels, out, argv, on_epoch = None))]
fn train_files(
    py: Python<'_>,
    spectra: PathBuf,
    labels: PathBuf,
    out: PathBuf,
    argv: Vec<String>,
    on_epoch: Option<Py<PyAny>>,
) -> PyResult<(String, String, usize, Vec<(String, String)>)> {
    let settings = settings_of(argv)?;
    let targets = settings.targets.clone();
    let failed = std::sync::Mutex::new(None);
    let (o, used, refused) = py
        .detach(|| -> specnn::Result<_> {
            let r = settings.request(spectra, labels, out.clone())?;
            let mut loaded = (0, Vec::new());
            let o = specnn::workflow::run_train(
                &r,
                epoch_callback(on_epoch, targets, &failed),
                |_, _| {},
                |d| loaded = (d.files.len(), d.refused.clone()),
            )?;
            Ok((o, loaded.0, loaded.1))
        })
        .map_err(py_err)?;
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    summary(&o, &out, used, refused)
}

/// Trains from spectra (lists of 1-D arrays) with labels `y` (`[spectra, targets]`, NaN = unknown).
#[pyfunction]
#[pyo3(signature = (wave, flux, ivar, mask, names, y, out, argv, on_epoch = None))]
#[allow(clippy::too_many_arguments)]
fn train_arrays(
    py: Python<'_>,
    wave: Vec<PyReadonlyArray1<f64>>,
    flux: Vec<PyReadonlyArray1<f64>>,
    ivar: Option<Vec<PyReadonlyArray1<f64>>>,
    mask: Option<Vec<PyReadonlyArray1<bool>>>,
    names: Option<Vec<String>>,
    y: PyReadonlyArray2<f64>,
    out: PathBuf,
    argv: Vec<String>,
    on_epoch: Option<Py<PyAny>>,
) -> PyResult<(String, String, usize, Vec<(String, String)>)> {
    let settings = settings_of(argv)?;
    let targets = settings.targets.clone();
    let yv = y.as_array();
    if yv.ncols() != targets.len() {
        return Err(SpecnnError::new_err(format!(
            "train: labels have {} columns for {} targets ({})",
            yv.ncols(),
            targets.len(),
            targets.join(", ")
        )));
    }
    if yv.nrows() != flux.len() {
        return Err(SpecnnError::new_err(format!("train: {} label rows for {} spectra", yv.nrows(), flux.len())));
    }
    let medium = match settings.read.medium.unwrap_or(Medium::Vacuum) {
        Medium::Air => "air",
        Medium::Vacuum => "vacuum",
    };
    let checked = spectra_of(
        &wave,
        &flux,
        ivar.as_deref(),
        mask.as_deref(),
        names.as_deref(),
        &[medium.to_string()],
        None,
        None,
    )?;
    let yall = ndarray::Array2::from_shape_fn(yv.dim(), |(i, j)| yv[[i, j]]);
    let failed = std::sync::Mutex::new(None);
    let (o, used, refused) = py
        .detach(|| -> specnn::Result<_> {
            let r = settings.request(PathBuf::from("<arrays>"), PathBuf::from("<arrays>"), out.clone())?;
            let prep = specnn::workflow::prep_for(&r)?;
            let (mut good, mut rows, mut refused) = (Vec::new(), Vec::new(), Vec::new());
            for (i, (name, s)) in checked.into_iter().enumerate() {
                match s {
                    Ok(s) => {
                        good.push(s);
                        rows.push(i);
                    }
                    Err(reason) => refused.push((name, reason)),
                }
            }
            let mut data =
                specnn::workflow::Labelled::from_spectra(good, &yall.select(ndarray::Axis(0), &rows), &prep)?;
            refused.append(&mut data.refused);
            let o = specnn::workflow::train_labelled(&r, &data, epoch_callback(on_epoch, targets, &failed), |_, _| {})?;
            Ok((o, data.files.len(), refused))
        })
        .map_err(py_err)?;
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(e);
    }
    summary(&o, &out, used, refused)
}

/// Runs the PyTorch golden-vector cases of `path` on `device` (cpu, gpu or gpu:N); one dict per case.
#[pyfunction]
#[pyo3(signature = (path, device = "cpu"))]
fn audit<'py>(py: Python<'py>, path: PathBuf, device: &str) -> PyResult<Bound<'py, PyList>> {
    must_exist(&path, "file")?;
    let dev = device_of(device)?;
    let cases = py.detach(|| specnn::golden::audit_on(&path, dev.gpu().map(|g| g.as_ref()))).map_err(py_err)?;
    let list = PyList::empty(py);
    for c in cases {
        let d = PyDict::new(py);
        d.set_item("name", c.name)?;
        d.set_item("op", c.op)?;
        d.set_item("shapes", c.shapes)?;
        d.set_item("max_abs", c.max_abs)?;
        d.set_item("max_rel", c.max_rel)?;
        d.set_item("tol_rel", c.tol.rel)?;
        d.set_item("tol_abs", c.tol.abs)?;
        d.set_item("tensors", c.tensors)?;
        d.set_item("passed", c.passed)?;
        d.set_item("reason", c.reason)?;
        list.append(d)?;
    }
    Ok(list)
}

/// An evaluation as a dict: the stars evaluated and refused, whether the data are synthetic, per label
/// the seed's metrics (all stars, VMP, normal), the skill against the median and the coverage of the
/// stated uncertainties, the VMP and CEMP confusion counts, and the label estimates beyond 3 sigmas.
fn evaluation_dict<'py>(py: Python<'py>, e: &specnn::workflow::Evaluation) -> PyResult<Bound<'py, PyDict>> {
    let metrics = |m: &specnn::eval::Metrics| -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("n", m.n)?;
        d.set_item("mae", m.mae)?;
        d.set_item("sd", m.sd)?;
        d.set_item("median", m.median)?;
        Ok(d)
    };
    let confusion = |c: &Option<specnn::eval::Confusion>| -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(c) = c else { return Ok(None) };
        let d = PyDict::new(py);
        d.set_item("tp", c.tp)?;
        d.set_item("fp", c.fp)?;
        d.set_item("fn", c.fn_)?;
        d.set_item("tn", c.tn)?;
        d.set_item("recall", c.recall())?;
        d.set_item("fpr", c.fpr())?;
        Ok(Some(d))
    };
    let labels = PyDict::new(py);
    for (name, all, vmp, normal) in &e.metrics {
        let d = metrics(all)?;
        d.set_item("vmp", metrics(vmp)?)?;
        d.set_item("normal", metrics(normal)?)?;
        if let Some((_, mae_med, skill)) = e.skill.iter().find(|s| &s.0 == name) {
            d.set_item("mae_of_median", mae_med)?;
            d.set_item("skill", skill)?;
        }
        if let Some((_, n, c1, c2)) = e.coverage.iter().find(|c| &c.0 == name) {
            d.set_item("with_sigma", n)?;
            d.set_item("within_1_sigma", c1)?;
            d.set_item("within_2_sigma", c2)?;
        }
        // Crossval only: a calibration fitted on the other folds' out-of-fold stars.
        if let Some((_, _, c1, c2)) = e.cross_fitted.iter().find(|c| &c.0 == name) {
            d.set_item("within_1_sigma_other_folds", c1)?;
            d.set_item("within_2_sigma_other_folds", c2)?;
        }
        if !e.coverage.is_empty() {
            d.set_item("beyond_3_sigma", e.beyond_3_sigma.iter().filter(|m| &m.label == name).count())?;
        }
        labels.set_item(name, d)?;
    }
    let d = PyDict::new(py);
    d.set_item("evaluated", e.evaluated)?;
    d.set_item("refused", e.refused)?;
    d.set_item("synthetic", e.synthetic)?;
    d.set_item("labels", labels)?;
    d.set_item("vmp", confusion(&e.vmp)?)?;
    d.set_item("cemp", confusion(&e.cemp)?)?;
    let far = e
        .beyond_3_sigma
        .iter()
        .map(|m| {
            let f = PyDict::new(py);
            f.set_item("file", &m.file)?;
            f.set_item("label", &m.label)?;
            f.set_item("truth", m.truth)?;
            f.set_item("estimate", m.estimate)?;
            f.set_item("sigma", m.sigma)?;
            f.set_item("z", m.z)?;
            Ok(f)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("beyond_3_sigma", far)?;
    Ok(d)
}

/// Evaluates a model file on labelled spectra, as `specnn evaluate` does: writes the report (markdown
/// and figures) into `report` and returns its figures as a dict.
#[pyfunction]
#[pyo3(signature = (
    model, spectra, labels, report, vmp_feh = -2.0, cemp_cfe = 1.0, medium = None, recursive = false, device = "auto"
))]
#[allow(clippy::too_many_arguments)]
fn evaluate<'py>(
    py: Python<'py>,
    model: PathBuf,
    spectra: PathBuf,
    labels: PathBuf,
    report: PathBuf,
    vmp_feh: f64,
    cemp_cfe: f64,
    medium: Option<&str>,
    recursive: bool,
    device: &str,
) -> PyResult<Bound<'py, PyDict>> {
    for p in [&model, &spectra, &labels] {
        must_exist(p, "file or folder")?;
    }
    let read = ReadOptions { medium: medium.map(medium_of).transpose()?, recursive };
    let dev = device_of(device)?;
    let th = Thresholds { vmp_feh, cemp_cfe };
    let e = py
        .detach(|| specnn::workflow::run_evaluate(&model, &spectra, &labels, &report, &th, &read, &dev))
        .map_err(py_err)?;
    evaluation_dict(py, &e)
}

/// K-fold cross-validation, as `specnn crossval` does: one model per fold into the folder `out`, every
/// star estimated by the model that did not train on it, the report into `report`; returns its figures.
/// `argv` holds the training options (`specnn train`'s); `on_fold(fold, held_out_mae)` sees each fold.
#[pyfunction]
#[pyo3(signature = (spectra, labels, out, report, folds, argv, on_fold = None))]
#[allow(clippy::too_many_arguments)]
fn crossval<'py>(
    py: Python<'py>,
    spectra: PathBuf,
    labels: PathBuf,
    out: PathBuf,
    report: PathBuf,
    folds: usize,
    argv: Vec<String>,
    on_fold: Option<Py<PyAny>>,
) -> PyResult<Bound<'py, PyDict>> {
    for p in [&spectra, &labels] {
        must_exist(p, "file or folder")?;
    }
    let settings = settings_of(argv)?;
    let failed = std::sync::Mutex::new(None::<PyErr>);
    let e = py
        .detach(|| -> specnn::Result<_> {
            let r = settings.request(spectra, labels, out)?;
            specnn::workflow::run_crossval(&r, folds, &report, &Thresholds::default(), |f, _, mae| {
                if let Some(cb) = &on_fold {
                    call_back(&failed, |py| cb.call1(py, (f, mae)).map(|_| ()));
                }
            })
        })
        .map_err(py_err)?;
    if let Some(err) = failed.into_inner().unwrap() {
        return Err(err);
    }
    evaluation_dict(py, &e)
}

/// The main job on built-in SYNTHETIC data, as `specnn demo` does (quietly); returns the summary's path.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(
    signature = (out, n = None, seed = None, channels = None, cnn_epochs = None, ann_epochs = None, device = "auto")
)]
fn demo(
    py: Python<'_>,
    out: PathBuf,
    n: Option<usize>,
    seed: Option<u64>,
    channels: Option<Vec<usize>>,
    cnn_epochs: Option<usize>,
    ann_epochs: Option<usize>,
    device: &str,
) -> PyResult<String> {
    let dev = device_of(device)?;
    let d = specnn::demo::DemoConfig::default();
    let cfg = specnn::demo::DemoConfig {
        out,
        n: n.unwrap_or(d.n),
        seed: seed.unwrap_or(d.seed),
        channels: channels.unwrap_or(d.channels),
        cnn_epochs: cnn_epochs.unwrap_or(d.cnn_epochs),
        ann_epochs: ann_epochs.unwrap_or(d.ann_epochs),
    };
    let readme = py.detach(|| specnn::demo::run_demo(&cfg, &dev, &mut specnn::demo::Quiet)).map_err(py_err)?;
    Ok(readme.display().to_string())
}

/// The GPU adapters wgpu finds (index for `device="gpu:N"`, name, backend, type, hardware or not).
#[pyfunction]
fn devices<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for a in py.detach(specnn::gpu::list_adapters) {
        let d = PyDict::new(py);
        d.set_item("index", a.index)?;
        d.set_item("name", a.name)?;
        d.set_item("backend", a.backend)?;
        d.set_item("type", a.device_type)?;
        d.set_item("hardware", a.hardware)?;
        list.append(d)?;
    }
    Ok(list)
}

/// The label names specnn knows, in the order of the catalogs.
#[pyfunction]
fn labels() -> Vec<&'static str> {
    specnn::data::LABEL_NAMES.to_vec()
}

#[pymodule]
fn _specnn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("SpecnnError", m.py().get_type::<SpecnnError>())?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_function(wrap_pyfunction!(train_files, m)?)?;
    m.add_function(wrap_pyfunction!(train_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(audit, m)?)?;
    m.add_function(wrap_pyfunction!(demo, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(crossval, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_function(wrap_pyfunction!(labels, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
