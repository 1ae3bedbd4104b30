//! The training options, defined once: clap derives on this struct give the CLI's `train` and
//! `crossval` flags, and the Python package parses its keyword arguments through the same struct, so
//! both take the same options with the same defaults and the same error messages.

use crate::data::ReadOptions;
use crate::error::Result;
use crate::gpu::Device;
use crate::train::{Loss, Recipe, Schedule, TrainOptions};
pub use crate::workflow::{parse_grid, parse_window, InputOptions, NetOptions};
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
    #[command(flatten)]
    pub input: InputOptions,
    #[command(flatten)]
    pub net: NetOptions,
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
    #[command(flatten)]
    pub read: ReadOptions,
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
    /// With --ensemble K: bagging. Each member trains and stops early on its own seeded split, so
    /// the members differ in the stars they learnt from and their spread also says how much an
    /// estimate depends on which stars were seen. The validation stars of one member are training
    /// stars of others, so `train --bag` needs --calibrate-folds.
    #[arg(long)]
    pub bag: bool,
    /// Calibrate the uncertainties on every star's out-of-fold estimate from a K-fold cross-validation
    /// with the same options (K more trainings; fold models in a scratch folder beside --out, removed
    /// after) instead of on the validation stars: more stars, none of which chose an epoch. The
    /// catalogs' ERRCAL card says `crossval K`. `train` only.
    #[arg(long)]
    pub calibrate_folds: Option<usize>,
    /// Start from this trained model (same architecture and targets) and fine-tune it.
    #[arg(long)]
    pub init: Option<PathBuf>,
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
        if self.bag && self.ensemble.unwrap_or(d.ensemble) < 2 {
            return Err(crate::error::Error::invalid("--bag", "bagging needs an ensemble: add --ensemble K (K >= 2)"));
        }
        if self.bag && self.validation.is_some() {
            return Err(crate::error::Error::invalid(
                "--bag",
                "each bagged member draws its own split, so --validation cannot name the validation stars",
            ));
        }
        if self.calibrate_folds.is_some_and(|k| k < 2) {
            return Err(crate::error::Error::invalid("--calibrate-folds", "needs at least 2 folds"));
        }
        let options = TrainOptions {
            log_targets,
            augment,
            ensemble: self.ensemble.unwrap_or(d.ensemble).max(1),
            bag: self.bag,
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
            input: self.input,
            net: self.net,
            resume: self.resume,
            read: self.read,
            stream: self.stream,
            options,
            calibrate_folds: self.calibrate_folds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        input: InputOptions,
        #[command(flatten)]
        net: NetOptions,
        #[command(flatten)]
        read: ReadOptions,
    }

    /// The library's `Default`s (the demo's and the tests' requests) are the CLI's defaults, and the
    /// grouped options parse as flat flags.
    #[test]
    fn grouped_options_default_as_the_cli_does_and_parse_flat() {
        let f = Flags::try_parse_from(["specnn"]).unwrap();
        assert_eq!((f.input, f.net, f.read), (InputOptions::default(), NetOptions::default(), ReadOptions::default()));
        let f = Flags::try_parse_from([
            "specnn",
            "--resolution",
            "200",
            "--window",
            "4000,5500",
            "--channels",
            "4,8",
            "--padding",
            "valid",
            "--medium",
            "air",
            "--recursive",
        ])
        .unwrap();
        assert_eq!((f.input.resolution, f.input.window), (Some(200.0), Some((4000.0, 5500.0))));
        assert_eq!((f.net.channels, f.net.padding), (Some(vec![4, 8]), crate::ops::conv2d::Padding::Valid));
        assert_eq!(f.read, ReadOptions { medium: Some(crate::data::Medium::Air), recursive: true });
    }
}
