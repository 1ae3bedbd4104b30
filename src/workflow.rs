//! The science workflow behind the CLI verbs `train`, `predict`, `evaluate` and `demo`: folders of
//! spectra and label tables in, model files, catalogs, reports and figures out.

use crate::catalog::Catalog;
use crate::data::dataset::load;
use crate::data::labels::{label_axis, label_symbol, label_unit};
use crate::data::store::{DiskRowsWriter, Rows};
use crate::data::{read_spectrum, Grid, Labels, PrepConfig, ReadOptions, Spectrum, LABEL_NAMES};
use crate::error::{Error, Result};
use crate::eval::{curve, metrics, Confusion, Metrics};
use crate::gpu::Device;
use crate::model_file::Scaling;
use crate::nn::{Activation, Arch};
use crate::ops::conv2d::Padding;
use crate::predict::{catalog, load_trained, predict_files, Row, Thresholds, Trained};
use crate::train::{train, EpochStats, Outcome, Schedule, TrainConfig};
use crate::trust::Calibration;
use ndarray::Array2;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The networks (and baselines) `train` builds (`--arch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    VmpCnn,
    ResAnn,
    Ann,
    #[value(name = "starnet")]
    StarNet,
    /// The Cannon (quadratic in the labels, per pixel; Ness et al. 2015).
    Cannon,
    /// Random-forest regression (smartcore), one forest per label.
    Rf,
    /// Epsilon-SVR with an RBF kernel (smartcore), one per label.
    Svr,
    /// PCA (50 components) + the mean of the 3 nearest training stars: the bar to beat.
    Knn,
}

impl Kind {
    /// The baseline this kind is, if it is not a network.
    pub fn baseline(self) -> Option<crate::baselines::BaselineKind> {
        use crate::baselines::BaselineKind as B;
        match self {
            Kind::Cannon => Some(B::Cannon),
            Kind::Rf => Some(B::Rf),
            Kind::Svr => Some(B::Svr),
            Kind::Knn => Some(B::Knn),
            _ => None,
        }
    }
}

/// How spectra become network inputs: the grid, resolution, window, coverage and continuum options of
/// `specnn train` and `crossval` (clap derives here; Python's keywords parse through the same).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct InputOptions {
    /// Degrade to this resolving power on a CSST-like grid (200 gives 143 pixels).
    #[arg(long)]
    pub resolution: Option<f64>,
    /// Keep only this window, e.g. 4000,5500 (the seed's CH G-band run); other pixels become 0.
    #[arg(long, value_parser = parse_window)]
    pub window: Option<(f64, f64)>,
    /// The wavelength grid every spectrum is resampled onto: START,STEP,N (vacuum Angstrom, linear;
    /// default 4000,1,4096, the seed's; with --resolution the CSST ln-lambda grid unless this is given).
    #[arg(long, value_parser = parse_grid)]
    pub grid: Option<(f64, f64, usize)>,
    /// Smallest fraction of the grid a spectrum must cover (MILES needs 0.8).
    #[arg(long, default_value_t = 0.95)]
    pub min_coverage: f64,
    /// Divide each spectrum by a running-median pseudo-continuum of this many grid pixels before the
    /// min-max normalisation (for use across instruments).
    #[arg(long)]
    pub continuum: Option<usize>,
}

impl Default for InputOptions {
    /// The CLI's defaults.
    fn default() -> Self {
        Self { resolution: None, window: None, grid: None, min_coverage: 0.95, continuum: None }
    }
}

/// The network's shape options of `specnn train` (the rest of the architecture follows `--arch`).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct NetOptions {
    /// CNN channel widths, e.g. 16,32,64 (default 64,128,256).
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// CNN padding.
    #[arg(long, value_enum, default_value = "same")]
    pub padding: Padding,
    /// Hidden layer widths of `--arch ann`, e.g. 256,256 (default 512,512,512).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
}

impl Default for NetOptions {
    /// The CLI's defaults.
    fn default() -> Self {
        Self { channels: None, padding: Padding::Same, hidden: None }
    }
}

/// `LO,HI` in Angstrom.
pub fn parse_window(s: &str) -> std::result::Result<(f64, f64), String> {
    let bad = || format!("`{s}` is not LO,HI in Angstrom (e.g. 4000,5500)");
    let (lo, hi) = s.split_once(',').ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if !(lo < hi) {
        return Err(format!("window {lo},{hi}: LO must be below HI"));
    }
    Ok((lo, hi))
}

/// `START,STEP,N`: a linear grid in Angstrom.
pub fn parse_grid(s: &str) -> std::result::Result<(f64, f64, usize), String> {
    let bad = || format!("`{s}` is not START,STEP,N (e.g. 4000,1,4096)");
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let [start, step, n] = parts[..] else { return Err(bad()) };
    let (start, step, n): (f64, f64, usize) =
        (start.parse().map_err(|_| bad())?, step.parse().map_err(|_| bad())?, n.parse().map_err(|_| bad())?);
    if !(start > 0.0 && step > 0.0 && n >= 2) {
        return Err(format!("grid {s}: START and STEP must be positive and N at least 2"));
    }
    Ok((start, step, n))
}

/// What `specnn train` was asked.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    pub spectra: PathBuf,
    pub labels: PathBuf,
    pub kind: Kind,
    pub targets: Vec<String>,
    pub out: PathBuf,
    /// Epochs, batch, learning rate, split, seed, patience: what `TrainConfig` takes as they are.
    pub schedule: Schedule,
    /// How spectra become inputs: grid, resolution, window, coverage, continuum.
    pub input: InputOptions,
    /// CNN channels and padding, the plain ANN's hidden widths.
    pub net: NetOptions,
    pub resume: bool,
    pub read: ReadOptions,
    /// Where training runs (`--device`).
    pub device: Device,
    /// A file listing the validation stars (`--validation`), instead of the seeded split.
    pub validation: Option<PathBuf>,
    /// Keep the preprocessed training set in a file beside the model (`--stream`) instead of memory.
    pub stream: bool,
    /// Label transforms, augmentation, ensembles, fine-tuning.
    pub options: crate::train::TrainOptions,
    /// `--calibrate-folds K`: calibrate the uncertainties on the out-of-fold estimates of a K-fold
    /// cross-validation with the same options, instead of on the validation stars.
    pub calibrate_folds: Option<usize>,
}

/// The rows of `data` named by a validation list: one spectrum file name (or path) per line; blank
/// lines, `#` comments and a `file` header are skipped. Every name must be a labelled spectrum.
pub fn validation_rows(list: &Path, data: &Labelled) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, f) in data.files.iter().enumerate() {
        by_name.insert(f.display().to_string(), i);
        if let Some(n) = f.file_name() {
            by_name.insert(n.to_string_lossy().into_owned(), i);
        }
    }
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for line in text.lines().map(str::trim) {
        let name = line.split(',').next().unwrap_or("").trim();
        if name.is_empty() || name.starts_with('#') || name == "file" {
            continue;
        }
        let key = Path::new(name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match by_name.get(name).or_else(|| by_name.get(&key)) {
            Some(&r) => rows.push(r),
            None => missing.push(name.to_string()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(Error::file(
            list,
            format!(
                "{} validation stars are not among the labelled spectra: {}{}",
                missing.len(),
                shown.join(", "),
                if missing.len() > 5 { ", ..." } else { "" }
            ),
        ));
    }
    if rows.is_empty() {
        return Err(Error::file(list, "the validation list names no spectrum"));
    }
    rows.sort_unstable();
    rows.dedup();
    Ok(rows)
}

/// The preprocessing a request implies.
pub fn prep_for(r: &TrainRequest) -> Result<PrepConfig> {
    let r = &r.input;
    let mut p = match r.resolution {
        Some(res) => {
            // One pixel per resolution element from 4000 A to ~8136 A (143 pixels at R = 200).
            let n = ((8136.0f64 / 4000.0).ln() * res).round() as usize + 1;
            PrepConfig { grid: Grid::csst(res, n), degrade_to: Some(res), ..PrepConfig::default() }
        }
        None => PrepConfig::default(),
    };
    if let Some((start, step, n)) = r.grid {
        p.grid = Grid { start, step, n, log: false };
    }
    p.window = r.window;
    p.min_coverage = r.min_coverage;
    p.continuum_width = r.continuum;
    Ok(p)
}

/// The architecture a request implies, for `inputs` pixels (None for a baseline, which has none).
pub fn arch_for(r: &TrainRequest, inputs: usize) -> Option<Arch> {
    let outputs = r.targets.len() * r.options.loss.outputs_per_label();
    Some(match r.kind {
        // 4096 pixels fold into 64x64; other grids (143 pixels at R=200) into the smallest square that
        // holds them (12x12), zero-padded (the seed does not say how it folded its R=200 spectra).
        Kind::VmpCnn => Arch::VmpCnn {
            in_side: (inputs as f64).sqrt().ceil() as usize,
            channels: r.net.channels.clone().unwrap_or_else(|| vec![64, 128, 256]),
            kernel: 9,
            padding: r.net.padding,
            activation: Activation::Relu,
            dense: vec![128, 64],
            outputs,
        },
        Kind::ResAnn => Arch::ResAnn { inputs, width: 512, blocks: 3, outputs },
        Kind::Ann => Arch::Ann {
            inputs,
            hidden: r.net.hidden.clone().unwrap_or_else(|| vec![512, 512, 512]),
            activation: Activation::Selu,
            outputs,
        },
        Kind::StarNet => {
            Arch::StarNet { inputs, filters: vec![4, 16], kernel: 8, pool: 4, dense: vec![256, 128], outputs }
        }
        Kind::Cannon | Kind::Rf | Kind::Svr | Kind::Knn => return None,
    })
}

/// Labelled spectra, preprocessed: rows, targets (NaN = unknown), and what was left out.
pub struct Labelled {
    pub files: Vec<PathBuf>,
    pub x: Rows,
    pub y: Array2<f64>,
    pub refused: Vec<(String, String)>,
    pub synthetic: bool,
    /// Each spectrum's header S/N (r band, else g), when it has one.
    pub snr: Vec<Option<f64>>,
    /// Targets the label table has no column for (only with `load_labelled`'s `partial`): NaN for
    /// every star.
    pub missing_targets: Vec<String>,
}

impl Labelled {
    /// Labelled spectra from memory: `spectra` with targets `y` (`[spectra, targets]`, NaN =
    /// unknown), preprocessed with `prep`; the spectra the pipeline refuses are left out with their
    /// reason, as `load_labelled` leaves out files.
    pub fn from_spectra(spectra: Vec<Spectrum>, y: &Array2<f64>, prep: &PrepConfig) -> Result<Labelled> {
        if spectra.len() != y.nrows() {
            return Err(Error::invalid("train", format!("{} spectra and {} label rows", spectra.len(), y.nrows())));
        }
        let (ok, bad) = crate::data::dataset::prepare_spectra(spectra, prep);
        let rows: Vec<usize> = ok.iter().map(|p| p.index).collect();
        Ok(Labelled {
            files: ok.iter().map(|p| p.path.clone()).collect(),
            snr: ok.iter().map(|p| p.meta.snr_catalog()).collect(),
            synthetic: ok.iter().any(|p| p.meta.synthetic),
            x: Rows::Memory(ok.into_iter().map(|p| p.values).collect()),
            y: y.select(ndarray::Axis(0), &rows),
            refused: bad.into_iter().map(|r| (r.file, r.reason)).collect(),
            missing_targets: Vec::new(),
        })
    }

    /// The rows, which callers other than training load into memory (`rows_file` None).
    pub fn in_memory(&self) -> &[Vec<f32>] {
        self.x.in_memory().expect("loaded with rows_file None")
    }
}

/// Files read and preprocessed at a time while loading: memory holds one chunk of spectra.
const LOAD_CHUNK: usize = 1024;

/// Reads the label table, joins it to the folder's spectra, and preprocesses the labelled ones, a
/// chunk of files at a time. With `rows_file`, the preprocessed rows go to that file (`store`) and
/// never all sit in memory; without, they are kept in memory. Every target needs a column, unless
/// `partial` (evaluation), where one is enough and the others are unknown for every star.
pub fn load_labelled(
    spectra: &Path,
    labels: &Path,
    targets: &[String],
    prep: &PrepConfig,
    read: &ReadOptions,
    rows_file: Option<&Path>,
    partial: bool,
) -> Result<Labelled> {
    let table = Labels::read(labels)?;
    known_targets(targets)?;
    let missing_targets: Vec<String> = targets.iter().filter(|t| !table.columns.contains(t)).cloned().collect();
    if !missing_targets.is_empty() && (!partial || missing_targets.len() == targets.len()) {
        return Err(Error::file(
            labels,
            format!("no `{}` column (it has {})", missing_targets.join("`, `"), table.columns.join(", ")),
        ));
    }
    let paths = input_list(&[spectra.to_path_buf()], read.recursive)?;
    let by_file = table.rows.iter().any(|r| r.file.is_some());
    let keys: Vec<(String, Option<i64>)> = if by_file {
        paths
            .iter()
            .map(|p| (p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), None))
            .collect()
    } else {
        paths.iter().map(|p| (String::new(), read_spectrum(p, read).ok().and_then(|s| s.meta.obsid))).collect()
    };
    let joined = table.join(&keys)?;
    let mut disk = rows_file.map(DiskRowsWriter::create).transpose()?;
    let mut memory: Vec<Vec<f32>> = Vec::new();
    let (mut files, mut label_rows, mut refused, mut snr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut synthetic = table.synthetic;
    // `joined[r]` is the spectrum of the table's row `r`.
    for (c, chunk) in joined.chunks(LOAD_CHUNK).enumerate() {
        let chunk_files: Vec<PathBuf> = chunk.iter().map(|&i| paths[i].clone()).collect();
        let (ok, bad) = load(&chunk_files, prep, read);
        let row_of: HashMap<&Path, usize> =
            chunk_files.iter().enumerate().map(|(k, p)| (p.as_path(), c * LOAD_CHUNK + k)).collect();
        for p in ok {
            label_rows.push(row_of[p.path.as_path()]);
            synthetic |= p.meta.synthetic;
            snr.push(p.meta.snr_catalog());
            match disk.as_mut() {
                Some(w) => w.push(&p.values)?,
                None => memory.push(p.values),
            }
            files.push(p.path);
        }
        refused.extend(bad.into_iter().map(|r| (r.file, r.reason)));
    }
    let mut y = Array2::<f64>::from_elem((files.len(), targets.len()), f64::NAN);
    for (i, &row) in label_rows.iter().enumerate() {
        let row = &table.rows[row];
        for (j, t) in targets.iter().enumerate() {
            if let Some(Some(v)) = row.values.get(t) {
                y[[i, j]] = *v;
            }
        }
    }
    let x = match disk {
        Some(w) => Rows::Disk(w.finish()?),
        None => Rows::Memory(memory),
    };
    Ok(Labelled { files, x, y, refused, synthetic, snr, missing_targets })
}

/// An error unless every target is a label specnn knows.
fn known_targets(targets: &[String]) -> Result<()> {
    match targets.iter().find(|t| !LABEL_NAMES.contains(&t.as_str())) {
        Some(t) => {
            Err(Error::invalid("targets", format!("`{t}` is not a label specnn knows ({})", LABEL_NAMES.join(", "))))
        }
        None => Ok(()),
    }
}

/// A hidden file beside `path` for its run's scratch data: `.NAME.SUFFIX-PID`.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "specnn".into());
    dir.join(format!(".{name}{suffix}-{}", std::process::id()))
}

/// Runs `specnn train`.
pub fn run_train(
    r: &TrainRequest,
    on_epoch: impl FnMut(&EpochStats),
    on_batch: impl Fn(usize, f64),
    on_loaded: impl FnOnce(&Labelled),
) -> Result<Outcome> {
    let prep = prep_for(r)?;
    if r.stream && r.kind.baseline().is_some() {
        return Err(Error::invalid(
            "train",
            "--stream is for networks: a baseline fits on the whole training set in memory",
        ));
    }
    let rows_file = r.stream.then(|| sibling(&r.out, ".rows.tmp"));
    let data = load_labelled(&r.spectra, &r.labels, &r.targets, &prep, &r.read, rows_file.as_deref(), false)?;
    on_loaded(&data);
    train_labelled(r, &data, on_epoch, on_batch)
}

/// Trains as `r` asks on spectra already loaded and preprocessed (`r.spectra` and `r.labels` are not
/// read): `run_train`'s second half, and the Python package's `train` from arrays.
pub fn train_labelled(
    r: &TrainRequest,
    data: &Labelled,
    on_epoch: impl FnMut(&EpochStats),
    on_batch: impl Fn(usize, f64),
) -> Result<Outcome> {
    known_targets(&r.targets)?;
    if r.options.bag && r.calibrate_folds.is_none() {
        return Err(Error::invalid(
            "--bag",
            "a bagged member's validation stars are other members' training stars, so they cannot calibrate \
            the uncertainties: add --calibrate-folds K (e.g. 5)",
        ));
    }
    if r.calibrate_folds.is_some() && r.stream {
        return Err(Error::invalid("--calibrate-folds", "cross-validation keeps the set in memory: drop --stream"));
    }
    let mut o = train_one(r, data, on_epoch, on_batch)?;
    if let Some(folds) = r.calibrate_folds {
        calibrate_on_folds(r, data, folds, &mut o)?;
    }
    Ok(o)
}

/// Replaces the calibration of the model `r` trained (`o`, and its file `r.out`) by one fitted on
/// every star's out-of-fold estimate in a `folds`-fold cross-validation of `r` on `data` (fold models
/// in a scratch folder beside `r.out`, removed after).
fn calibrate_on_folds(r: &TrainRequest, data: &Labelled, folds: usize, o: &mut Outcome) -> Result<()> {
    let dir = sibling(&r.out, ".calibration-folds");
    let sub = TrainRequest { calibrate_folds: None, validation: None, resume: false, ..r.clone() };
    let oof = out_of_fold(&sub, data, folds, &dir, |_, _, _| {});
    let _ = std::fs::remove_dir_all(&dir);
    let oof = oof?;
    let rows: Vec<usize> = (0..data.y.nrows()).collect();
    let cal = oof.calibration(&data.y, &rows, &o.scaling);
    crate::train::replace_calibration(&r.out, &cal)?;
    o.calibration = cal;
    Ok(())
}

/// `train_labelled` without the cross-validated calibration.
fn train_one(
    r: &TrainRequest,
    data: &Labelled,
    on_epoch: impl FnMut(&EpochStats),
    on_batch: impl Fn(usize, f64),
) -> Result<Outcome> {
    let prep = prep_for(r)?;
    let validation = r.validation.as_deref().map(|l| validation_rows(l, data)).transpose()?;
    if let Some(kind) = r.kind.baseline() {
        if r.resume {
            return Err(Error::invalid("train", "--resume is for networks: a baseline is fitted in one go"));
        }
        let o = crate::train::train_baseline(
            data.in_memory(),
            &data.y,
            kind,
            &r.targets,
            &r.options.log_targets,
            &prep,
            (r.schedule.split, validation.as_deref()),
            r.schedule.seed,
            &r.out,
            data.synthetic,
        )?;
        let mut on_epoch = on_epoch;
        on_epoch(&o.history.epochs[0]);
        return Ok(o);
    }
    let arch = arch_for(r, prep.grid.n).expect("a network kind has an architecture");
    let cfg = TrainConfig {
        arch,
        targets: r.targets.clone(),
        prep,
        schedule: r.schedule.clone(),
        validation,
        options: r.options.clone(),
    };
    train(&data.x, &data.y, &cfg, &r.out, r.resume, data.synthetic, &r.device, on_epoch, on_batch)
}

/// The spectrum files named by `inputs` (folders are listed), sorted and without repeats: the list
/// that shards slice and `merge` checks against.
pub fn input_list(inputs: &[PathBuf], recursive: bool) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for p in inputs {
        if p.is_dir() {
            paths.extend(crate::data::dataset::list_spectra(p, recursive)?);
        } else if p.is_file() && crate::data::dataset::is_file_list(p) {
            paths.extend(crate::data::dataset::read_file_list(p)?);
        } else if p.exists() {
            paths.push(p.clone());
        } else {
            // A mistyped path is an error, not a catalog of one refused row that a job array would count as done.
            return Err(Error::file(p, "no such file or folder"));
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// Shard `k` of `n` (1-based): a contiguous, deterministic slice of the sorted input list.
pub fn shard(paths: &[PathBuf], k: usize, n: usize) -> Result<Vec<PathBuf>> {
    if n == 0 || k == 0 || k > n {
        return Err(Error::invalid("shard", format!("shard {k}/{n}: K must be between 1 and N")));
    }
    let len = paths.len();
    Ok(paths[(k - 1) * len / n..k * len / n].to_vec())
}

/// Runs `specnn predict`: every spectrum file in `spectra` (folders or files) into a catalog, or with
/// `shard = Some((k, n))` only the k-th of n slices.
#[allow(clippy::too_many_arguments)]
pub fn run_predict(
    model: &Path,
    inputs: &[PathBuf],
    out: &Path,
    th: &Thresholds,
    read: &ReadOptions,
    shard_of: Option<(usize, usize)>,
    device: &Device,
    progress: impl Fn(usize, usize),
) -> Result<(Trained, Vec<Row>, crate::predict::Throughput)> {
    let t = load_trained(model)?;
    let mut paths = input_list(inputs, read.recursive)?;
    if let Some((k, n)) = shard_of {
        paths = shard(&paths, k, n)?;
    }
    let total = paths.len();
    let (rows, tp) = predict_files(&t, &paths, read, 1024, device, |done| progress(done, total))?;
    catalog(&t, &rows, th).write(out)?;
    Ok((t, rows, tp))
}

/// What `evaluate` found.
pub struct Evaluation {
    pub metrics: Vec<(String, Metrics, Metrics, Metrics)>,
    /// Per label: stars with an uncertainty, and the fractions with |error| under 1 and 2 sigma
    /// (empty when the model gives no uncertainties).
    pub coverage: Vec<(String, usize, f64, f64)>,
    /// Crossval only, the same for the sigmas of a calibration fitted on the other folds' stars
    /// ([`OutOfFold::cross_fitted_sigmas`]); empty otherwise.
    pub cross_fitted: Vec<(String, usize, f64, f64)>,
    /// Every label estimate off by more than 3 sigmas (crossval: the other folds' sigmas), worst first.
    pub beyond_3_sigma: Vec<FarMiss>,
    /// Per label: the MAE of predicting the evaluated stars' median, and the skill 1 - MAE / that
    /// (NaN for a label no star has).
    pub skill: Vec<(String, f64, f64)>,
    pub vmp: Option<Confusion>,
    pub cemp: Option<Confusion>,
    pub evaluated: usize,
    pub refused: usize,
    pub synthetic: bool,
}

/// One label estimate whose error exceeds 3 stated sigmas.
#[derive(Clone, Debug, PartialEq)]
pub struct FarMiss {
    /// The spectrum's file name.
    pub file: String,
    pub label: String,
    pub truth: f64,
    pub estimate: f64,
    pub sigma: f64,
    /// |truth - estimate| / sigma.
    pub z: f64,
}

/// Runs `specnn evaluate`: the seed's metrics on a labelled folder, `report.md` and PNG figures.
pub fn run_evaluate(
    model: &Path,
    spectra: &Path,
    labels: &Path,
    report: &Path,
    th: &Thresholds,
    read: &ReadOptions,
    device: &Device,
) -> Result<Evaluation> {
    let t = load_trained(model)?;
    let data = load_labelled(spectra, labels, &t.targets, &t.prep, read, None, true)?;
    if data.x.is_empty() {
        let why = match data.refused.first() {
            Some((f, reason)) => {
                format!("all {} labelled spectra were refused, e.g. {f}: {reason}", data.refused.len())
            }
            None => "no spectrum matches a row of the label table".into(),
        };
        return Err(Error::file(spectra, format!("no labelled spectrum could be used: {why}")));
    }
    let rows: Vec<usize> = (0..data.x.len()).collect();
    let e = t.model.runner(device)?.estimate_rows(data.in_memory(), &rows, &t.scaling, 128)?;
    let sig = t.sigmas(&e);
    let est = &e.mean;
    let header = vec![
        format!("model: `{}` — `{}`", model.display(), t.model.describe()),
        format!(
            "targets: {}; trained {} epochs (best: {}){}",
            t.targets.join(", "),
            t.history.epochs.len(),
            t.history.best_epoch,
            if t.history.stopped_early { ", stopped early" } else { "" }
        ),
        format!("spectra: `{}`, labels: `{}`", spectra.display(), labels.display()),
    ];
    let mut header = header;
    if !data.missing_targets.is_empty() {
        header.push(format!("not scored (the label table has no column): {}", data.missing_targets.join(", ")));
    }
    let ctx = ReportContext {
        header,
        targets: &t.targets,
        prep: &t.prep,
        history: Some(&t.history),
        synthetic: data.synthetic || t.synthetic,
        spread_z: Some(&e.spread_z),
        members_z: Some(&e.members_z),
        fold: None,
        cross_fitted: None,
    };
    write_report(report, &ctx, &data, est, t.calibration.as_ref().map(|_| &sig), th)
}

/// What a report says besides the numbers.
pub struct ReportContext<'a> {
    /// Bullet lines at the top.
    pub header: Vec<String>,
    pub targets: &'a [String],
    pub prep: &'a PrepConfig,
    pub history: Option<&'a crate::train::History>,
    pub synthetic: bool,
    /// Each star's raw model spread (standardised units, before calibration), for `estimates.csv`.
    pub spread_z: Option<&'a Array2<f64>>,
    /// An ensemble's member spread alone (standardised units; NaN for a single estimator), for
    /// `estimates.csv` (which leaves the column out when no star has one).
    pub members_z: Option<&'a Array2<f64>>,
    /// Each star's cross-validation fold (0-based; crossval only), for `estimates.csv` (written 1-based,
    /// as the fold model files are numbered).
    pub fold: Option<&'a [usize]>,
    /// Crossval only: each star's 1-sigma from a calibration fitted on the other folds' out-of-fold
    /// estimates ([`OutOfFold::cross_fitted_sigmas`]), reported beside the fold models' own.
    pub cross_fitted: Option<&'a Array2<f64>>,
}

/// Where reports split the stars into cool and hot (K).
pub const HOT_TEFF: f64 = 8000.0;

/// A value for a report: Teff in whole kelvin, others to 3 decimals; empty for NaN.
/// A fraction as a percentage with `d` decimals; empty when undefined (no star to count).
fn pct(x: f64, d: usize) -> String {
    if x.is_finite() {
        format!("{:.d$}%", 100.0 * x)
    } else {
        String::new()
    }
}

/// `s`, or "undefined (no star)" where it is empty, for prose.
fn or_dash(s: String) -> String {
    if s.is_empty() {
        "undefined (no star to count)".into()
    } else {
        s
    }
}

/// Below this skill (1 - MAE / MAE of predicting the median) a report warns that a label is not learnt.
pub const MIN_SKILL: f64 = 0.1;

pub fn fmt_value(label: &str, v: f64) -> String {
    if !v.is_finite() {
        String::new()
    } else if label == "teff" {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// Writes `estimates.csv`: `file` (and `fold` in cross-validation), then per label `LABEL_true`,
/// `LABEL_est`, `LABEL_err` (the calibrated 1-sigma, when the model has one; in cross-validation the
/// fold model's own, followed by `LABEL_err_other_folds`, the one calibrated on the other folds), `LABEL_spread_z`
/// (the model's raw spread in standardised units, when known) and, for an ensemble, `LABEL_members_z`
/// (its members' spread alone, the same units), one row per star (empty where unknown).
fn write_estimates(
    path: &Path,
    ctx: &ReportContext,
    data: &Labelled,
    est: &Array2<f64>,
    sig: Option<&Array2<f64>>,
) -> Result<()> {
    let targets = ctx.targets;
    // Only an ensemble has a member spread: no empty columns for single estimators.
    let members_z = ctx.members_z.filter(|m| m.iter().any(|v| v.is_finite()));
    let mut out = String::from("file");
    if ctx.fold.is_some() {
        out += ",fold";
    }
    for t in targets {
        let _ = write!(out, ",{t}_true,{t}_est");
        if sig.is_some() {
            let _ = write!(out, ",{t}_err");
        }
        if ctx.cross_fitted.is_some() {
            let _ = write!(out, ",{t}_err_other_folds");
        }
        if ctx.spread_z.is_some() {
            let _ = write!(out, ",{t}_spread_z");
        }
        if members_z.is_some() {
            let _ = write!(out, ",{t}_members_z");
        }
    }
    out.push('\n');
    let num = |v: f64| if v.is_finite() { format!("{v}") } else { String::new() };
    for (i, f) in data.files.iter().enumerate() {
        out += &f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some(fold) = ctx.fold {
            let _ = write!(out, ",{}", fold[i] + 1);
        }
        for j in 0..targets.len() {
            let _ = write!(out, ",{},{}", num(data.y[[i, j]]), num(est[[i, j]]));
            if let Some(s) = sig {
                let _ = write!(out, ",{}", num(s[[i, j]]));
            }
            if let Some(s) = ctx.cross_fitted {
                let _ = write!(out, ",{}", num(s[[i, j]]));
            }
            if let Some(s) = ctx.spread_z {
                let _ = write!(out, ",{}", num(s[[i, j]]));
            }
            if let Some(s) = members_z {
                let _ = write!(out, ",{}", num(s[[i, j]]));
            }
        }
        out.push('\n');
    }
    crate::io::write_atomic(path, out.as_bytes())
}

/// At most this many stars in a report's list of misses beyond 3 sigma.
const FAR_MISSES_LISTED: usize = 30;

/// The report's list of the stars whose error exceeds 3 stated sigmas in some label, worst first: a
/// Gaussian error does that for 0.27% of stars, so these are the estimates (or the labels) to check.
/// Returns every such label estimate, worst first.
fn write_far_misses(
    md: &mut String,
    data: &Labelled,
    est: &Array2<f64>,
    sig: &Array2<f64>,
    targets: &[String],
    cv: bool,
) -> Vec<FarMiss> {
    let z = |i: usize, j: usize| {
        let (e, s) = (data.y[[i, j]] - est[[i, j]], sig[[i, j]]);
        if e.is_finite() && s.is_finite() && s > 0.0 {
            e.abs() / s
        } else {
            f64::NAN
        }
    };
    let file = |i: usize| data.files[i].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // (star, miss) for every label estimate beyond 3 sigma, worst first.
    let mut far: Vec<(usize, FarMiss)> = (0..data.y.nrows())
        .flat_map(|i| {
            (0..targets.len()).filter(move |&j| z(i, j) > 3.0).map(move |j| {
                let miss = FarMiss {
                    file: file(i),
                    label: targets[j].clone(),
                    truth: data.y[[i, j]],
                    estimate: est[[i, j]],
                    sigma: sig[[i, j]],
                    z: z(i, j),
                };
                (i, miss)
            })
        })
        .collect();
    far.sort_by(|a, b| b.1.z.total_cmp(&a.1.z));
    // The stars, each at its worst label's place.
    let mut listed = vec![false; data.y.nrows()];
    let stars: Vec<(usize, f64)> =
        far.iter().filter(|(i, _)| !std::mem::replace(&mut listed[*i], true)).map(|(i, m)| (*i, m.z)).collect();
    let counts: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let scored = (0..data.y.nrows()).filter(|&i| z(i, j).is_finite()).count();
            let beyond = far.iter().filter(|(_, m)| &m.label == name).count();
            format!("{name} {beyond} of {scored} ({})", pct(beyond as f64 / scored.max(1) as f64, 1))
        })
        .collect();
    let whose = if cv { "sigmas calibrated on the other folds" } else { "the stated sigmas" };
    let _ = writeln!(
        md,
        "\n### Stars beyond 3 sigma (estimates or labels to check)\n\nErrors above 3 sigmas ({whose}): {}; \
        Gaussian errors would give 0.3%. {} stars, the worst {} listed (truth -> estimate +- sigma).\n",
        counts.join(", "),
        stars.len(),
        stars.len().min(FAR_MISSES_LISTED)
    );
    if !stars.is_empty() {
        let _ = writeln!(md, "| file | worst | beyond 3 sigma |\n|---|---|---|");
    }
    for &(i, worst) in stars.iter().take(FAR_MISSES_LISTED) {
        // The star's misses in label order.
        let cells: Vec<String> = (0..targets.len())
            .filter_map(|j| far.iter().find(|(r, m)| *r == i && m.label == targets[j]))
            .map(|(_, m)| {
                let t = &m.label;
                let (y, e, s) = (fmt_value(t, m.truth), fmt_value(t, m.estimate), fmt_value(t, m.sigma));
                format!("{t} {y} -> {e} +- {s} ({:.1} sigma)", m.z)
            })
            .collect();
        let _ = writeln!(md, "| {} | {worst:.1} sigma | {} |", file(i), cells.join("; "));
    }
    far.into_iter().map(|(_, m)| m).collect()
}

/// S/N bins of the reports' metrics (header S/N; stars without one are counted apart).
const SNR_BINS: [(f64, f64); 5] = [(0.0, 10.0), (10.0, 20.0), (20.0, 50.0), (50.0, 100.0), (100.0, f64::INFINITY)];

/// Writes `report.md` and the figures for estimates `est` (and 1-sigma uncertainties `sig`, when the
/// model gives them) of the labelled stars `data`.
pub fn write_report(
    report: &Path,
    ctx: &ReportContext,
    data: &Labelled,
    est: &Array2<f64>,
    sig: Option<&Array2<f64>>,
    th: &Thresholds,
) -> Result<Evaluation> {
    std::fs::create_dir_all(report).map_err(|e| Error::io(report, e))?;
    let synthetic = ctx.synthetic;
    let targets = ctx.targets;
    let tag = if synthetic { "SYNTHETIC data: " } else { "" };
    let col = |j: usize| -> (Vec<f64>, Vec<f64>) { (data.y.column(j).to_vec(), est.column(j).to_vec()) };
    let fe = targets.iter().position(|x| x == "feh");
    let cf = targets.iter().position(|x| x == "cfe");
    let true_vmp: Option<Vec<bool>> =
        fe.map(|j| data.y.column(j).iter().map(|v| v.is_finite() && *v < th.vmp_feh).collect());

    let mut md = String::new();
    let _ = writeln!(md, "# specnn evaluation report\n");
    if synthetic {
        let _ = writeln!(
            md,
            "> **SYNTHETIC DATA.** These spectra (or the model's training set) come from specnn's \
            synthetic survey, a physical caricature. Nothing here is a result on real stars.\n"
        );
    }
    for line in &ctx.header {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(
        md,
        "- {} stars evaluated, {} refused by the reader or the preprocessing",
        data.x.len(),
        data.refused.len()
    );
    for (f, why) in data.refused.iter().take(5) {
        let _ = writeln!(md, "  - refused `{f}`: {why}");
    }
    let _ = writeln!(
        md,
        "\n## Metrics (E = truth - estimate; MAE = mean |E|, SD = standard deviation of E, M = median of E)\n"
    );
    let _ = writeln!(
        md,
        "| label | unit | n | MAE | SD | M | MAE of the median | skill | VMP n | VMP MAE | normal n \
        | normal MAE |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let mut all = Vec::new();
    let mut no_skill = Vec::new();
    let mut skills = Vec::new();
    // Figures made, in order, for the list at the end: (alt text, file).
    let mut figs: Vec<(String, String)> = Vec::new();
    for (j, name) in targets.iter().enumerate() {
        let (tr, es) = col(j);
        let m = metrics(&tr, &es);
        if m.n == 0 {
            // No star has this label (a table without its column): nothing to score or draw.
            let _ = writeln!(md, "| {name} | {} | 0 | | | | | | | | | |", label_unit(name));
            all.push((name.clone(), m, m, m));
            skills.push((name.clone(), f64::NAN, f64::NAN));
            continue;
        }
        let pick = |want: bool| -> Metrics {
            match &true_vmp {
                Some(v) => {
                    let (a, b): (Vec<f64>, Vec<f64>) =
                        tr.iter().zip(&es).zip(v).filter(|(_, f)| **f == want).map(|((a, b), _)| (*a, *b)).unzip();
                    metrics(&a, &b)
                }
                None => Metrics { n: 0, mae: f64::NAN, sd: f64::NAN, median: f64::NAN },
            }
        };
        let (mv, mn) = (pick(true), pick(false));
        // The bar every estimate must clear: predicting the median of the evaluated stars' labels.
        let known: Vec<f64> = tr.iter().copied().filter(|v| v.is_finite()).collect();
        let med = crate::trust::quantile(&known, 0.5);
        let mae_med = known.iter().map(|v| (v - med).abs()).sum::<f64>() / known.len().max(1) as f64;
        let skill = 1.0 - m.mae / mae_med;
        skills.push((name.clone(), mae_med, skill));
        if !(skill >= MIN_SKILL) {
            no_skill.push(format!(
                "{} (MAE {} against {} for the median)",
                label_symbol(name),
                fmt_value(name, m.mae),
                fmt_value(name, mae_med)
            ));
        }
        let vmp_cells = |x: &Metrics| {
            if true_vmp.is_some() {
                format!("{} | {}", x.n, fmt_value(name, x.mae))
            } else {
                " | ".into()
            }
        };
        let skill_cell = if skill.is_finite() { format!("{skill:.2}") } else { String::new() };
        let (f, u) = (|v: f64| fmt_value(name, v), label_unit(name));
        let _ = writeln!(
            md,
            "| {name} | {u} | {} | {} | {} | {} | {} | {skill_cell} | {} | {} |",
            m.n,
            f(m.mae),
            f(m.sd),
            f(m.median),
            f(mae_med),
            vmp_cells(&mv),
            vmp_cells(&mn)
        );
        let (axis, sym) = (label_axis(name), label_symbol(name));
        let one = format!("one_to_one_{name}.png");
        crate::plot::one_to_one(
            &report.join(&one),
            &format!("{tag}{sym}: MAE {}, SD {} {u}", f(m.mae), f(m.sd)),
            &axis,
            &tr,
            &es,
        )?;
        figs.push((format!("{name}: estimate against truth"), one));
        let resid: Vec<f64> = tr.iter().zip(&es).map(|(a, b)| a - b).collect();
        let res = format!("residuals_{name}.png");
        crate::plot::residuals(
            &report.join(&res),
            &format!("{tag}{sym} residuals"),
            &format!("true {axis}"),
            &format!("truth - estimate [{u}]"),
            &tr,
            &resid,
        )?;
        figs.push((format!("{name} residuals"), res));
        if let Some(f) = fe.filter(|&f| f != j) {
            let res_feh = format!("residuals_{name}_vs_feh.png");
            crate::plot::residuals(
                &report.join(&res_feh),
                &format!("{tag}{sym} residuals against [Fe/H]"),
                &format!("true {}", label_axis("feh")),
                &format!("{sym} truth - estimate [{u}]"),
                &data.y.column(f).to_vec(),
                &resid,
            )?;
            figs.push((format!("{name} residuals against [Fe/H]"), res_feh));
        }
        all.push((name.clone(), m, mv, mn));
    }
    let _ = writeln!(
        md,
        "\nMAE of the median: the MAE of predicting every star's label as the median of the evaluated \
        stars' labels; skill = 1 - MAE / that (0: no better than the median; 1: perfect). VMP: true [Fe/H] < {}; \
        normal: true [Fe/H] >= {} (columns empty when [Fe/H] is not a target).",
        th.vmp_feh, th.vmp_feh
    );
    if !no_skill.is_empty() {
        let _ = writeln!(
            md,
            "\n> **Little or no skill (below {MIN_SKILL}):** {}. These estimates are barely better \
            than predicting the median; do not use them as results.",
            no_skill.join("; ")
        );
    }
    if let Some(t) = targets.iter().position(|x| x == "teff") {
        // Hot stars are few in most libraries and dominate a Teff MAE in kelvin: show both sides.
        let _ = writeln!(
            md,
            "\n### Below and above Teff = {HOT_TEFF} K (true Teff)\n\n| label | n cool | MAE cool | \
            n hot | MAE hot |\n|---|---|---|---|---|"
        );
        for (j, name) in targets.iter().enumerate() {
            let side = |hot: bool| -> Metrics {
                let (a, b): (Vec<f64>, Vec<f64>) = (0..data.y.nrows())
                    .filter(|&i| data.y[[i, t]].is_finite() && (data.y[[i, t]] >= HOT_TEFF) == hot)
                    .map(|i| (data.y[[i, j]], est[[i, j]]))
                    .unzip();
                metrics(&a, &b)
            };
            let (c, h) = (side(false), side(true));
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} |",
                c.n,
                fmt_value(name, c.mae),
                h.n,
                fmt_value(name, h.mae)
            );
        }
    }
    write_estimates(&report.join("estimates.csv"), ctx, data, est, sig)?;
    let _ = writeln!(md, "\nEvery star's true and estimated labels: `estimates.csv`.");
    // (error, sigma) of label `j` for the stars `rows` that have both.
    let error_sigma = |sig: &Array2<f64>, rows: &mut dyn Iterator<Item = usize>, j: usize| -> Vec<(f64, f64)> {
        rows.filter(|&i| data.y[[i, j]].is_finite() && sig[[i, j]].is_finite())
            .map(|i| (data.y[[i, j]] - est[[i, j]], sig[[i, j]]))
            .collect()
    };
    let mut coverage = Vec::new();
    let mut beyond_3_sigma = Vec::new();
    let mut cross_fitted = Vec::new();
    if let Some(sig) = sig {
        let _ = writeln!(
            md,
            "\n## Uncertainties: are the stated sigmas right?\n\nA calibrated 1-sigma holds 68.3% of \
            the stars within |E| < sigma and 95.4% within 2 sigma."
        );
        if ctx.cross_fitted.is_some() {
            let _ = writeln!(
                md,
                "\nTwo calibrations: each fold model's own (fitted on its inner validation stars, which \
                also chose a network's epoch), and one fitted on the other folds' out-of-fold estimates \
                (every star scored by a calibration that did not see it): what `train --calibrate-folds` \
                gives a model."
            );
        }
        let (extra_head, extra_rule) = match ctx.cross_fitted {
            Some(_) => (
                " median sigma, other folds | within 1 sigma, other folds | within 2 sigma, other folds |",
                "---|---|---|",
            ),
            None => ("", ""),
        };
        let _ = writeln!(
            md,
            "\n| label | n | median sigma | within 1 sigma | within 2 sigma |{extra_head}\n\
            |---|---|---|---|---|{extra_rule}"
        );
        let mut curves = Vec::new();
        for (j, name) in targets.iter().enumerate() {
            // (pairs, within 1 sigma, within 2 sigma, median sigma) of sigmas `s`.
            let summary = |s: &Array2<f64>| {
                let pairs = error_sigma(s, &mut (0..data.y.nrows()), j);
                let (c1, c2) = (crate::trust::coverage(&pairs, 1.0), crate::trust::coverage(&pairs, 2.0));
                let med = crate::trust::quantile(&pairs.iter().map(|p| p.1).collect::<Vec<_>>(), 0.5);
                (pairs, c1, c2, med)
            };
            let (pairs, c1, c2, med) = summary(sig);
            let mut extra = String::new();
            if let Some(cs) = ctx.cross_fitted {
                let (p, x1, x2, m) = summary(cs);
                let _ = write!(extra, " {} | {} | {} |", fmt_value(name, m), pct(x1, 1), pct(x2, 1));
                cross_fitted.push((name.clone(), p.len(), x1, x2));
            }
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} |{extra}",
                pairs.len(),
                fmt_value(name, med),
                pct(c1, 1),
                pct(c2, 1)
            );
            curves.push((
                name.clone(),
                (0..=30)
                    .map(|k| {
                        let k = k as f64 / 10.0;
                        (k, 100.0 * crate::trust::coverage(&pairs, k))
                    })
                    .collect::<Vec<_>>(),
            ));
            coverage.push((name.clone(), pairs.len(), c1, c2));
        }
        curves.push((
            "Gaussian".into(),
            (0..=30)
                .map(|k| {
                    let k = k as f64 / 10.0;
                    (k, 100.0 * (2.0 * crate::trust::normal_cdf(k) - 1.0))
                })
                .collect(),
        ));
        crate::plot::lines(
            &report.join("coverage.png"),
            &format!("{tag}coverage: stars with |error| < k sigma"),
            "k (stated sigmas)",
            "stars within (%)",
            &curves,
            &[],
        )?;
        let _ = writeln!(md, "\n![coverage](coverage.png)");
        figs.push(("coverage".into(), "coverage.png".into()));
        beyond_3_sigma =
            write_far_misses(&mut md, data, est, ctx.cross_fitted.unwrap_or(sig), targets, ctx.cross_fitted.is_some());
    }
    // Metrics by the header's S/N.
    let known: Vec<usize> = (0..data.snr.len()).filter(|&i| data.snr[i].is_some()).collect();
    let _ = writeln!(md, "\n## By S/N (header S/N, r band else g)\n");
    if known.is_empty() {
        let _ = writeln!(md, "No spectrum here carries a S/N in its header, so there are no S/N bins.");
    } else {
        let _ = write!(md, "| S/N | n |");
        for name in targets {
            let _ = write!(
                md,
                " {name} MAE | {name} SD |{}",
                if sig.is_some() { format!(" {name} within 1 sigma |") } else { String::new() }
            );
        }
        let _ = writeln!(
            md,
            "\n|---|---|{}",
            "---|---|".repeat(targets.len())
                + &if sig.is_some() { "---|".repeat(targets.len()) } else { String::new() }
        );
        for (lo, hi) in SNR_BINS {
            let rows: Vec<usize> =
                known.iter().copied().filter(|&i| data.snr[i].is_some_and(|s| s >= lo && s < hi)).collect();
            if rows.is_empty() {
                continue;
            }
            let bin = if hi.is_finite() { format!("{lo:.0}-{hi:.0}") } else { format!(">= {lo:.0}") };
            let _ = write!(md, "| {bin} | {} |", rows.len());
            for (j, name) in targets.iter().enumerate() {
                let (a, b): (Vec<f64>, Vec<f64>) = rows.iter().map(|&i| (data.y[[i, j]], est[[i, j]])).unzip();
                let m = metrics(&a, &b);
                let _ = write!(md, " {} | {} |", fmt_value(name, m.mae), fmt_value(name, m.sd));
                if let Some(sig) = sig {
                    let pairs = error_sigma(sig, &mut rows.iter().copied(), j);
                    let c = crate::trust::coverage(&pairs, 1.0);
                    let _ = write!(md, " {} |", pct(c, 1));
                }
            }
            let _ = writeln!(md);
        }
        if known.len() < data.snr.len() {
            let _ = writeln!(md, "\n{} stars have no header S/N and are in no bin.", data.snr.len() - known.len());
        }
    }

    let mut vmp = None;
    if let Some(j) = fe {
        let (tr, es) = col(j);
        let c = Confusion::from_pairs(
            tr.iter()
                .zip(&es)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(a, b)| (*a < th.vmp_feh, *b < th.vmp_feh)),
        );
        let _ = writeln!(md, "\n## VMP identification (estimated [Fe/H] < {})\n", th.vmp_feh);
        let _ = writeln!(
            md,
            "| estimate \\ truth | [Fe/H] < {0} | [Fe/H] >= {0} |\n|---|---|---|\n| [Fe/H] < {0} | \
            {1} | {2} |\n| [Fe/H] >= {0} | {3} | {4} |",
            th.vmp_feh, c.tp, c.fp, c.fn_, c.tn
        );
        let _ = writeln!(
            md,
            "\nRecall {} ({}/{}); {} of {} normal stars flagged ({}).",
            or_dash(pct(c.recall(), 2)),
            c.tp,
            c.tp + c.fn_,
            c.fp,
            c.fp + c.tn,
            or_dash(pct(c.fpr(), 2))
        );
        crate::plot::confusion(
            &report.join("confusion_vmp.png"),
            &format!("{tag}VMP: estimate (rows) vs truth"),
            ("VMP", "normal"),
            &c,
        )?;
        figs.push(("VMP confusion".into(), "confusion_vmp.png".into()));
        let ths: Vec<f64> = (0..=24).map(|i| th.vmp_feh - 0.6 + 0.05 * i as f64).collect();
        let cv = curve(&tr, &es, th.vmp_feh, &ths);
        let _ = writeln!(
            md,
            "\n### Recall and false-positive rate against the threshold on estimated [Fe/H]\n\n| \
            threshold | recall | false-positive rate |\n|---|---|---|"
        );
        for (t_, r, f) in cv.iter().step_by(4) {
            let mark = if (t_ - th.vmp_feh).abs() < 1e-9 { " (operating point)" } else { "" };
            let _ = writeln!(md, "| {t_:.2}{mark} | {} | {} |", pct(*r, 2), pct(*f, 2));
        }
        let pts: Vec<(f64, f64)> = cv.iter().map(|(_, r, f)| (100.0 * f, 100.0 * r)).collect();
        // Every fourth threshold annotated; the operating point in its words.
        let marks: Vec<((f64, f64), String)> = cv
            .iter()
            .step_by(4)
            .map(|(t_, r, f)| {
                let op = (t_ - th.vmp_feh).abs() < 1e-9;
                (
                    (100.0 * f, 100.0 * r),
                    if op { format!("[Fe/H] < {t_:.2} (operating point)") } else { format!("{t_:.2}") },
                )
            })
            .collect();
        let series = format!("threshold on estimated [Fe/H], {:.2} to {:.2}", ths[0], ths[ths.len() - 1]);
        crate::plot::lines(
            &report.join("vmp_recall_fpr.png"),
            &format!("{tag}VMP flag: recall against false-positive rate"),
            "false-positive rate [%]",
            "recall [%]",
            &[(series, pts)],
            &marks,
        )?;
        figs.push(("VMP recall against false-positive rate".into(), "vmp_recall_fpr.png".into()));
        if let Some(sig) = sig {
            // The same choice over the catalog's p_vmp (from each estimate and its sigma): flag a star
            // when p_vmp >= P.
            let p: Vec<(bool, f64)> = (0..data.y.nrows())
                .filter(|&i| tr[i].is_finite() && es[i].is_finite() && sig[[i, j]].is_finite() && sig[[i, j]] > 0.0)
                .map(|i| (tr[i] < th.vmp_feh, crate::trust::normal_cdf((th.vmp_feh - es[i]) / sig[[i, j]])))
                .collect();
            let levels: Vec<f64> = (1..20).map(|k| k as f64 * 0.05).collect();
            let at = |level: f64| Confusion::from_pairs(p.iter().map(|(t, pv)| (*t, *pv >= level)));
            let _ = writeln!(
                md,
                "\n### Recall and false-positive rate against a threshold on p_vmp\n\nA star is \
                flagged when p_vmp (the catalog's probability of [Fe/H] < {}, from its estimate and calibrated sigma) \
                is at least P.\n\n| P | flagged | recall | false-positive rate |\n|---|---|---|---|",
                th.vmp_feh
            );
            for &level in levels.iter().skip(1).step_by(2) {
                let c = at(level);
                let _ = writeln!(md, "| {level:.2} | {} | {} | {} |", c.tp + c.fp, pct(c.recall(), 2), pct(c.fpr(), 2));
            }
            let pts: Vec<(f64, f64)> = levels
                .iter()
                .map(|&l| {
                    let c = at(l);
                    (100.0 * c.fpr(), 100.0 * c.recall())
                })
                .filter(|(f, r)| f.is_finite() && r.is_finite())
                .collect();
            let marks: Vec<((f64, f64), String)> = [0.1, 0.5, 0.9]
                .iter()
                .map(|&l| {
                    let c = at(l);
                    ((100.0 * c.fpr(), 100.0 * c.recall()), format!("p_vmp >= {l:.1}"))
                })
                .filter(|((f, r), _)| f.is_finite() && r.is_finite())
                .collect();
            if !pts.is_empty() {
                crate::plot::lines(
                    &report.join("vmp_probability_curve.png"),
                    &format!("{tag}VMP by p_vmp: recall against false-positive rate"),
                    "false-positive rate [%]",
                    "recall [%]",
                    &[("threshold P on p_vmp, 0.05 to 0.95".into(), pts)],
                    &marks,
                )?;
                figs.push((
                    "VMP recall against false-positive rate over p_vmp".into(),
                    "vmp_probability_curve.png".into(),
                ));
            }
        }
        vmp = Some(c);
    }
    let mut cemp = None;
    if let (Some(f), Some(k)) = (fe, cf) {
        let pairs = (0..data.x.len())
            .filter(|&i| data.y[[i, f]].is_finite() && data.y[[i, f]] < th.vmp_feh && data.y[[i, k]].is_finite())
            .map(|i| (data.y[[i, k]] > th.cemp_cfe, est[[i, k]] > th.cemp_cfe));
        let c = Confusion::from_pairs(pairs);
        let _ = writeln!(md, "\n## CEMP identification among true VMP stars (estimated [C/Fe] > {})\n", th.cemp_cfe);
        let _ = writeln!(
            md,
            "| estimate \\ truth | [C/Fe] > {0} | [C/Fe] <= {0} |\n|---|---|---|\n| [C/Fe] > {0} | \
            {1} | {2} |\n| [C/Fe] <= {0} | {3} | {4} |",
            th.cemp_cfe, c.tp, c.fp, c.fn_, c.tn
        );
        let _ =
            writeln!(md, "\nRecall {}; false-positive rate {}.", or_dash(pct(c.recall(), 2)), or_dash(pct(c.fpr(), 2)));
        crate::plot::confusion(
            &report.join("confusion_cemp.png"),
            &format!("{tag}CEMP among VMP: estimate vs truth"),
            ("CEMP", "not CEMP"),
            &c,
        )?;
        figs.push(("CEMP confusion".into(), "confusion_cemp.png".into()));
        cemp = Some(c);
    }
    // Training curves and a few spectra.
    if let Some(h) = ctx.history.filter(|h| !h.epochs.is_empty()) {
        let train_pts: Vec<(f64, f64)> = h.epochs.iter().map(|e| (e.epoch as f64, e.train_loss)).collect();
        let val_pts: Vec<(f64, f64)> = h.epochs.iter().map(|e| (e.epoch as f64, e.val_score)).collect();
        let best: Vec<((f64, f64), String)> = h
            .epochs
            .iter()
            .find(|e| e.epoch == h.best_epoch)
            .map(|e| ((e.epoch as f64, e.val_score), format!("best epoch {} (kept)", e.epoch)))
            .into_iter()
            .collect();
        let (title, axis, train_name) = match h.loss {
            crate::train::Loss::Mae => ("training: standardised MAE", "MAE / label SD", "training loss"),
            crate::train::Loss::Nll => (
                "training: Gaussian NLL (training), standardised MAE (validation)",
                "NLL; MAE / label SD",
                "training loss (Gaussian NLL)",
            ),
        };
        crate::plot::lines(
            &report.join("training_curve.png"),
            &format!("{tag}{title}"),
            "epoch",
            axis,
            &[(train_name.into(), train_pts), ("validation MAE".into(), val_pts)],
            &best,
        )?;
        figs.push(("training curve".into(), "training_curve.png".into()));
    }
    let grid = ctx.prep.grid.wavelengths();
    let panels: Vec<(String, Vec<f64>, Vec<f64>)> = (0..data.x.len().min(4))
        .map(|i| {
            let name = data.files[i].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let labels: Vec<String> = targets
                .iter()
                .enumerate()
                .map(|(j, n)| {
                    format!("{} {} (true {})", label_symbol(n), fmt_value(n, est[[i, j]]), fmt_value(n, data.y[[i, j]]))
                })
                .collect();
            (
                format!("{tag}{name}: {}", labels.join(", ")),
                grid.clone(),
                data.in_memory()[i].iter().map(|v| *v as f64).collect(),
            )
        })
        .collect();
    crate::plot::spectra(&report.join("spectra.png"), &panels)?;
    figs.push(("the first spectra as the network sees them".into(), "spectra.png".into()));
    let _ = writeln!(md, "\n## Figures\n");
    for (alt, file) in &figs {
        let _ = writeln!(md, "- {alt}: ![{alt}]({file})");
    }
    crate::io::write_atomic(&report.join("report.md"), md.as_bytes())?;
    Ok(Evaluation {
        metrics: all,
        coverage,
        cross_fitted,
        beyond_3_sigma,
        skill: skills,
        vmp,
        cemp,
        evaluated: data.x.len(),
        refused: data.refused.len(),
        synthetic,
    })
}

/// Writes the VMP (and CEMP) candidates of a prediction run as a catalog.
pub fn candidates(t: &Trained, rows: &[Row], th: &Thresholds, out: &Path) -> Result<usize> {
    let fe = t
        .targets
        .iter()
        .position(|x| x == "feh")
        .ok_or_else(|| Error::invalid("candidates", "the model does not estimate [Fe/H]"))?;
    let picked: Vec<Row> = rows.iter().filter(|r| r.values[fe].is_some_and(|v| v < th.vmp_feh)).cloned().collect();
    let mut c: Catalog = catalog(t, &picked, th);
    c.card("SELECT", format!("[Fe/H] < {}", th.vmp_feh), "VMP candidates");
    c.write(out)?;
    Ok(picked.len())
}

/// Every star's out-of-fold estimate in a k-fold cross-validation.
pub struct OutOfFold {
    pub est: Array2<f64>,
    /// The fold models' own calibrated 1-sigma uncertainties (label units; NaN where none).
    pub sig: Array2<f64>,
    /// The fold models' raw spreads, each in its fold model's standardised units (NaN where none).
    pub spread_z: Array2<f64>,
    /// The fold ensembles' member spreads alone (the same units; NaN for single estimators).
    pub members_z: Array2<f64>,
    /// Each star's fold (0-based).
    pub fold_of: Vec<usize>,
    /// Each fold model's label scaling.
    pub scalings: Vec<Scaling>,
    pub first_history: Option<crate::train::History>,
    /// The first fold model's description.
    pub described: String,
}

/// The k-fold cross-validation of `r` on `data`: stars are dealt into `folds` seeded folds; each
/// fold's model is trained on the other folds (with its own inner split for early stopping, so the
/// held-out fold never chooses the epoch), written to `dir/foldF.safetensors`, and estimates the
/// held-out stars.
pub fn out_of_fold(
    r: &TrainRequest,
    data: &Labelled,
    folds: usize,
    dir: &Path,
    mut on_fold: impl FnMut(usize, &Outcome, f64),
) -> Result<OutOfFold> {
    let prep = prep_for(r)?;
    let n = data.x.len();
    if folds < 2 || n < 4 * folds {
        return Err(Error::invalid(
            "crossval",
            format!("{folds} folds over {n} usable spectra: need at least 2 folds and 4 stars per fold"),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let arch = arch_for(r, prep.grid.n);
    let mut shuffled: Vec<usize> = (0..n).collect();
    {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(r.schedule.seed ^ 0xC0FFEE);
        for i in (1..n).rev() {
            shuffled.swap(i, rng.random_range(0..=i));
        }
    }
    let mut fold_of = vec![0usize; n];
    for (pos, &row) in shuffled.iter().enumerate() {
        fold_of[row] = pos % folds;
    }
    let nan = Array2::<f64>::from_elem((n, r.targets.len()), f64::NAN);
    let mut o = OutOfFold {
        est: nan.clone(),
        sig: nan.clone(),
        spread_z: nan.clone(),
        members_z: nan,
        fold_of,
        scalings: Vec::with_capacity(folds),
        first_history: None,
        described: String::new(),
    };
    for f in 0..folds {
        let train_rows: Vec<usize> = (0..n).filter(|&i| o.fold_of[i] != f).collect();
        let test_rows: Vec<usize> = (0..n).filter(|&i| o.fold_of[i] == f).collect();
        let xs: Vec<Vec<f32>> = train_rows.iter().map(|&i| data.in_memory()[i].clone()).collect();
        let ys = data.y.select(ndarray::Axis(0), &train_rows);
        // Inside a fold the inner split is seeded: a validation list names stars of the whole set.
        let seed = r.schedule.seed + f as u64;
        let out = dir.join(format!("fold{}.safetensors", f + 1));
        let outcome = match (&arch, r.kind.baseline()) {
            (Some(arch), _) => {
                let cfg = TrainConfig {
                    arch: arch.clone(),
                    targets: r.targets.clone(),
                    prep: prep.clone(),
                    schedule: Schedule { seed, ..r.schedule.clone() },
                    validation: None,
                    options: r.options.clone(),
                };
                train(&xs, &ys, &cfg, &out, false, data.synthetic, &r.device, |_| {}, |_, _| {})?
            }
            (None, Some(kind)) => crate::train::train_baseline(
                &xs,
                &ys,
                kind,
                &r.targets,
                &r.options.log_targets,
                &prep,
                (r.schedule.split, None),
                seed,
                &out,
                data.synthetic,
            )?,
            (None, None) => unreachable!("every kind is a network or a baseline"),
        };
        let e = outcome.model.runner(&r.device)?.estimate_rows(data.in_memory(), &test_rows, &outcome.scaling, 128)?;
        let s = crate::predict::sigmas(&outcome.scaling, Some(&outcome.calibration), &e);
        for (k, &row) in test_rows.iter().enumerate() {
            o.est.row_mut(row).assign(&e.mean.row(k));
            o.sig.row_mut(row).assign(&s.row(k));
            o.spread_z.row_mut(row).assign(&e.spread_z.row(k));
            o.members_z.row_mut(row).assign(&e.members_z.row(k));
        }
        let fold_mae = crate::train::label_mae(&data.y, &test_rows, &e.mean, 0).unwrap_or(0.0);
        on_fold(f + 1, &outcome, fold_mae);
        o.scalings.push(outcome.scaling.clone());
        if o.first_history.is_none() {
            o.described = outcome.model.describe();
            o.first_history = Some(outcome.history);
        }
    }
    Ok(o)
}

impl OutOfFold {
    /// The calibration fitted on the out-of-fold estimates of stars `rows`, in the standardised units
    /// of `scaling` (each star's error and spread converted from its fold model's units).
    pub fn calibration(&self, y: &Array2<f64>, rows: &[usize], scaling: &Scaling) -> Calibration {
        let k = y.ncols();
        let (mut err, mut spread) = (vec![Vec::new(); k], vec![Vec::new(); k]);
        for &i in rows {
            let fs = &self.scalings[self.fold_of[i]];
            for j in 0..k {
                err[j].push(scaling.error_z(j, y[[i, j]], self.est[[i, j]]));
                spread[j].push(self.spread_z[[i, j]] * fs.sd[j] / scaling.sd[j]);
            }
        }
        Calibration { source: format!("crossval {}", self.scalings.len()), ..Calibration::fit(&err, &spread) }
    }

    /// Each star's 1-sigma (label units) from a calibration fitted on the other folds' stars only:
    /// what a model calibrated on out-of-fold estimates (`train --calibrate-folds`) states, measured on
    /// stars the calibration did not see.
    pub fn cross_fitted_sigmas(&self, y: &Array2<f64>) -> Array2<f64> {
        let mut sig = Array2::from_elem(self.est.dim(), f64::NAN);
        for (f, fs) in self.scalings.iter().enumerate() {
            let others: Vec<usize> = (0..y.nrows()).filter(|&i| self.fold_of[i] != f).collect();
            let cal = self.calibration(y, &others, fs);
            for i in (0..y.nrows()).filter(|&i| self.fold_of[i] == f) {
                for j in 0..y.ncols() {
                    sig[[i, j]] = crate::model_file::sigma_of(fs, &cal, j, self.est[[i, j]], self.spread_z[[i, j]]);
                }
            }
        }
        sig
    }
}

/// Runs `specnn crossval`: [`out_of_fold`] on the labelled spectra of `r`, fold models in `r.out` (a
/// folder). The report pools the out-of-fold estimates of every star, with the fold models' own
/// uncertainties and, beside them, those of a calibration fitted on the other folds' stars.
pub fn run_crossval(
    r: &TrainRequest,
    folds: usize,
    report: &Path,
    th: &Thresholds,
    on_fold: impl FnMut(usize, &Outcome, f64),
) -> Result<Evaluation> {
    if r.stream {
        return Err(Error::invalid(
            "crossval",
            "--stream is for `train`: cross-validation keeps its (smaller) set in memory",
        ));
    }
    if r.calibrate_folds.is_some() {
        return Err(Error::invalid(
            "crossval",
            "--calibrate-folds is for `train`: crossval's report already gives the coverage of a calibration \
            fitted on the other folds",
        ));
    }
    let prep = prep_for(r)?;
    let data = load_labelled(&r.spectra, &r.labels, &r.targets, &prep, &r.read, None, false)?;
    let o = out_of_fold(r, &data, folds, &r.out, on_fold)?;
    let cross = o.cross_fitted_sigmas(&data.y);
    let header = vec![
        format!(
            "{folds}-fold cross-validation of `{}` (seed {}): every star is estimated by the model that \
            did not train on it",
            o.described, r.schedule.seed
        ),
        format!(
            "each fold trained up to {} epochs with its own {:.0}:{:.0} inner split for early stopping; fold \
            models in `{}`",
            r.schedule.epochs,
            100.0 * r.schedule.split,
            100.0 * (1.0 - r.schedule.split),
            r.out.display()
        ),
        format!("spectra: `{}`, labels: `{}`; training curve below: fold 1", r.spectra.display(), r.labels.display()),
    ];
    let mut header = header;
    if r.options.bag {
        header.push(
            "`--bag`: a fold model's own calibration is fitted on validation stars that its other members \
            trained on, so its sigmas are too small; the columns calibrated on the other folds are the ones to read"
                .into(),
        );
    }
    let ctx = ReportContext {
        header,
        targets: &r.targets,
        prep: &prep,
        history: o.first_history.as_ref(),
        synthetic: data.synthetic,
        spread_z: Some(&o.spread_z),
        members_z: Some(&o.members_z),
        fold: Some(&o.fold_of),
        cross_fitted: Some(&cross),
    };
    write_report(report, &ctx, &data, &o.est, Some(&o.sig), th)
}

/// Runs `specnn merge`: joins shard catalogs (in the order given) into `out`, checking against the
/// input list that every spectrum appears exactly once.
pub fn run_merge(shards: &[PathBuf], inputs: &[PathBuf], recursive: bool, out: &Path) -> Result<usize> {
    let expected: Vec<String> = input_list(inputs, recursive)?
        .iter()
        .map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    let mut merged: Option<Catalog> = None;
    for s in shards {
        let c = Catalog::read(s)?;
        match merged.as_mut() {
            None => merged = Some(c),
            Some(m) => m.append(c, s)?,
        }
    }
    let merged = merged.ok_or_else(|| Error::invalid("merge", "no shard catalog given"))?;
    let files = match merged.columns.iter().find(|c| c.name == "file").map(|c| &c.data) {
        Some(crate::catalog::ColumnData::Str(v)) => v.clone(),
        _ => return Err(Error::invalid("merge", "the shard catalogs have no `file` column")),
    };
    let mut count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for f in &files {
        *count.entry(f.as_str()).or_default() += 1;
    }
    let doubled: Vec<&str> = {
        let mut d: Vec<&str> = count.iter().filter(|(_, n)| **n > 1).map(|(f, _)| *f).collect();
        d.sort();
        d
    };
    let missing: Vec<&str> = expected.iter().filter(|f| !count.contains_key(f.as_str())).map(String::as_str).collect();
    let unknown: Vec<&str> = {
        let want: std::collections::HashSet<&str> = expected.iter().map(String::as_str).collect();
        let mut u: Vec<&str> = count.keys().filter(|f| !want.contains(*f)).copied().collect();
        u.sort();
        u
    };
    let show = |v: &[&str]| {
        let head: Vec<&str> = v.iter().take(10).copied().collect();
        if v.len() > 10 {
            format!("{} and {} more", head.join(", "), v.len() - 10)
        } else {
            head.join(", ")
        }
    };
    if !doubled.is_empty() || !missing.is_empty() || !unknown.is_empty() {
        let mut why = Vec::new();
        if !missing.is_empty() {
            why.push(format!("{} spectra missing: {}", missing.len(), show(&missing)));
        }
        if !doubled.is_empty() {
            why.push(format!("{} spectra in more than one row: {}", doubled.len(), show(&doubled)));
        }
        if !unknown.is_empty() {
            why.push(format!("{} rows for files not among the inputs: {}", unknown.len(), show(&unknown)));
        }
        return Err(Error::invalid("merge", format!("{}; nothing written", why.join("; "))));
    }
    merged.write(out)?;
    Ok(files.len())
}
