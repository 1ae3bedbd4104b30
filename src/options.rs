//! The training options, defined once: clap derives on this struct give the CLI's `train` and
//! `crossval` flags, and the Python package parses its keyword arguments through the same struct, so
//! both take the same options with the same defaults and the same error messages.

use crate::data::{Medium, ReadOptions};
use crate::error::Result;
use crate::gpu::Device;
use crate::ops::conv2d::Padding;
use crate::train::{Loss, Recipe, Schedule, TrainOptions};
use crate::workflow::{Kind, TrainRequest};
use std::path::PathBuf;

/// Every option of `specnn train` but the inputs and the output (`--spectra`, `--labels`, `--out`).
#[derive(clap::Args, Clone, Debug)]
pub struct TrainSettings {
    #[arg(long, value_enum)]
    pub arch: Kind,
    /// Comma-separated labels: teff, logg, feh, cfe, nfe, mgfe, ofe, afe.
    #[arg(long, value_delimiter = ',', required = true)]
    pub targets: Vec<String>,
    /// Most epochs [default: 30; --recipe small-real: 300].
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Adam's learning rate [default: 1e-3; --recipe small-real: 5e-5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Fraction of stars used for training; the rest validate.
    #[arg(long, default_value_t = 0.7)]
    pub split: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Epochs without improvement before stopping [default: 5; --recipe small-real: 30].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Degrade to this resolving power on a CSST-like grid (200 gives 143 pixels).
    #[arg(long)]
    pub resolution: Option<f64>,
    /// CNN channel widths, e.g. 16,32,64 (default 64,128,256).
    #[arg(long, value_delimiter = ',')]
    pub channels: Option<Vec<usize>>,
    /// CNN padding.
    #[arg(long, value_enum, default_value = "same")]
    pub padding: Padding,
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
    /// Continue from MODEL.ckpt.
    #[arg(long)]
    pub resume: bool,
    /// Validate on the stars this file lists (one spectrum file name per line) instead of a seeded
    /// --split; the rest train.
    #[arg(long)]
    pub validation: Option<PathBuf>,
    /// Keep the preprocessed training set in a scratch file beside --out (removed at the end) and
    /// read each batch from it, instead of holding every spectrum in memory: for training sets
    /// larger than memory. Networks only.
    #[arg(long)]
    pub stream: bool,
    /// Take wavelengths as air or vacuum whatever the files say.
    #[arg(long, value_enum)]
    pub medium: Option<Medium>,
    /// Search the --spectra folder with all its subfolders (LAMOST's date/plan folders).
    #[arg(long)]
    pub recursive: bool,
    /// Where the network runs: auto (the first hardware GPU, else the CPU), cpu, gpu (the first adapter
    /// of any kind, a CPU Vulkan device included) or gpu:N (adapter N of `specnn devices`).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// A set of defaults for a kind of training set: `small-real` (a few hundred to ~2,000 real
    /// stars, e.g. MILES): README, "Training recipes". Options given explicitly win.
    #[arg(long, value_enum)]
    pub recipe: Option<Recipe>,
    /// Targets learnt as their log10, e.g. teff (for a 2,800-36,000 K range); `none` for none.
    #[arg(long, value_delimiter = ',')]
    pub log_targets: Option<Vec<String>>,
    /// Augment every training batch, seeded: comma-separated snr=LO:HI (noise at a S/N drawn
    /// log-uniform in LO..HI), rv=KMS (shifts up to +-KMS), tilt=FRAC (flux-calibration tilts up to
    /// +-FRAC at the ends), mask=RUNSxLEN (masked pixel runs), or none. E.g. snr=30:300,rv=30,tilt=0.05.
    #[arg(long)]
    pub augment: Option<String>,
    /// Train K networks from different seeds on the same split into one model file; predictions are
    /// their average, and their spread is reported.
    #[arg(long)]
    pub ensemble: Option<usize>,
    /// Start from this trained model (same architecture and targets) and fine-tune it.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Divide each spectrum by a running-median pseudo-continuum of this many grid pixels before the
    /// min-max normalisation (for use across instruments).
    #[arg(long)]
    pub continuum: Option<usize>,
    /// Train a dense network (ann, res-ann) on inputs standardised pixel by pixel; the model file
    /// holds the equivalent network on the pipeline's inputs (folded into the first layer).
    #[arg(long)]
    pub standardise_inputs: bool,
    /// What training minimises: `mae` (the seed's), or `nll`: a heteroscedastic head, the Gaussian
    /// negative log-likelihood of a predicted mean and log-variance per label; the predicted variance
    /// joins the ensemble's spread in each star's uncertainty. Networks only.
    #[arg(long, value_enum, default_value = "mae")]
    pub loss: Loss,
    /// With --loss nll: beta of beta-NLL (Seitzer et al. 2022), each star's term weighted by its
    /// predicted variance to the power beta; 0 is the plain Gaussian NLL.
    #[arg(long, default_value_t = 0.0)]
    pub nll_beta: f64,
    /// Hidden layer widths of `--arch ann`, e.g. 256,256 (default 512,512,512).
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
}

impl TrainSettings {
    /// The request these settings make for spectra `spectra` labelled by `labels`, written to `out`:
    /// a recipe's defaults filled in where an option was not given, the device opened.
    pub fn request(self, spectra: PathBuf, labels: PathBuf, out: PathBuf) -> Result<TrainRequest> {
        let kind = self.arch;
        let dense = matches!(kind, Kind::Ann | Kind::ResAnn);
        let d = self.recipe.map(|r| r.defaults(&self.targets, dense)).unwrap_or_default();
        let loop_d = self.recipe.map(|r| r.loop_defaults()).unwrap_or_default();
        let log_targets = match self.log_targets {
            Some(v) if v.iter().any(|t| t == "none") => Vec::new(),
            Some(v) => v,
            None => d.log_targets,
        };
        let augment = match &self.augment {
            Some(a) => crate::augment::Augment::parse(a)?,
            None => d.augment,
        };
        if !(0.0..=1.0).contains(&self.nll_beta) {
            return Err(crate::error::Error::invalid(
                "--nll-beta",
                format!("{} is not between 0 and 1", self.nll_beta),
            ));
        }
        if self.loss == Loss::Nll && kind.baseline().is_some() {
            return Err(crate::error::Error::invalid(
                "--loss",
                "`nll` trains a network's variance head; the baselines take no loss",
            ));
        }
        let options = TrainOptions {
            log_targets,
            augment,
            ensemble: self.ensemble.unwrap_or(d.ensemble).max(1),
            init: self.init.clone(),
            standardise_inputs: self.standardise_inputs || d.standardise_inputs,
            loss: self.loss,
            nll_beta: self.nll_beta,
        };
        Ok(TrainRequest {
            device: Device::open(&self.device)?,
            validation: self.validation,
            spectra,
            labels,
            kind,
            targets: self.targets,
            out,
            schedule: Schedule {
                epochs: self.epochs.unwrap_or(loop_d.epochs),
                batch: self.batch,
                lr: self.lr.unwrap_or(loop_d.lr),
                split: self.split,
                seed: self.seed,
                patience: self.patience.unwrap_or(loop_d.patience),
            },
            resolution: self.resolution,
            channels: self.channels,
            padding: self.padding,
            window: self.window,
            grid: self.grid,
            min_coverage: self.min_coverage,
            resume: self.resume,
            read: ReadOptions { medium: self.medium, recursive: self.recursive },
            stream: self.stream,
            options,
            continuum: self.continuum,
            hidden: self.hidden,
        })
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
