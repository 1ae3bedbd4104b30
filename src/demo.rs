//! The main job on built-in SYNTHETIC data (`specnn demo`): simulate a LAMOST-like survey and a
//! separate test survey, train the residual ANN (R=200; [C/Fe], [Mg/Fe], [N/Fe]) and a VMP CNN (Teff,
//! log g, [Fe/H], [C/Fe]), predict and evaluate both on the test survey, search VMP and CEMP
//! candidates, and write catalogs, reports and a summary (`README.md` in the output folder).
//!
//! The logic is here; a front end supplies a [`DemoUi`] for what it shows while the demo runs (the
//! CLI: progress bars and printed lines; [`Quiet`]: nothing). Every number is on synthetic spectra,
//! and the summary says so.

use crate::data::labels::label_unit;
use crate::data::write::LamostLayout;
use crate::error::Result;
use crate::gpu::Device;
use crate::predict::{Row, Thresholds, Trained};
use crate::simulate::{simulate, SimulateConfig};
use crate::train::Schedule;
use crate::workflow::{self, fmt_value, Evaluation, InputOptions, Kind, NetOptions, TrainRequest, MIN_SKILL};
use std::path::{Path, PathBuf};

/// What the demo does: sizes, seed, the CNN's widths and the epochs of both networks; the options of
/// `specnn demo`, whose defaults are also [`DemoConfig::default`]'s (and Python's `specnn.demo`).
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct DemoConfig {
    /// The output folder (surveys, models, catalogs, reports, `README.md`).
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Training stars (the test survey has a quarter as many, at least 8).
    #[arg(long, default_value_t = 4000)]
    pub n: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// CNN channel widths (the seed's are 64,128,256; the demo's default is smaller to fit ten minutes
    /// on 2 cores).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64")]
    pub channels: Vec<usize>,
    #[arg(long, default_value_t = 30)]
    pub cnn_epochs: usize,
    #[arg(long, default_value_t = 40)]
    pub ann_epochs: usize,
}

impl Default for DemoConfig {
    /// `specnn demo`'s defaults, from its clap attributes (one definition).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            cfg: DemoConfig,
        }
        <Flags as clap::Parser>::parse_from(["demo"]).cfg
    }
}

/// What a front end does at each stage of the demo. Training and prediction go through it so that
/// the CLI can show its progress bars; the defaults run them quietly.
pub trait DemoUi: Sync {
    /// A line of news.
    fn say(&mut self, line: &str);
    /// Stars simulated so far into the survey being written (called from the simulator's threads).
    fn simulated_one(&self) {}
    /// Before a survey of `total` stars is simulated, and after (`done`).
    fn survey(&mut self, total: usize, done: bool) {
        let _ = (total, done);
    }
    /// Trains one network.
    fn train(&mut self, req: &TrainRequest) -> Result<()> {
        workflow::run_train(req, |_| {}, |_, _| {}, |_| {}).map(|_| ())
    }
    /// Predicts `spectra` with the model file `model` into the catalog `out`.
    fn predict(
        &mut self,
        model: &Path,
        spectra: &[PathBuf],
        out: &Path,
        th: &Thresholds,
        device: &Device,
    ) -> Result<(Trained, Vec<Row>)> {
        let (t, rows, _) =
            workflow::run_predict(model, spectra, out, th, &Default::default(), None, device, |_, _| {})?;
        Ok((t, rows))
    }
    /// An evaluation written into `dir`.
    fn evaluated(&mut self, e: &Evaluation, dir: &Path) {
        let _ = (e, dir);
    }
}

/// A front end that shows nothing.
pub struct Quiet;

impl DemoUi for Quiet {
    fn say(&mut self, _line: &str) {}
}

/// The two training requests: the residual ANN, then the VMP CNN, each with its name.
pub fn requests(cfg: &DemoConfig, device: &Device) -> [(&'static str, TrainRequest); 2] {
    let train_dir = cfg.out.join("survey-train");
    let ann = TrainRequest {
        spectra: train_dir.clone(),
        labels: train_dir.join("labels.csv"),
        kind: Kind::ResAnn,
        targets: vec!["cfe".into(), "mgfe".into(), "nfe".into()],
        out: cfg.out.join("res_ann.safetensors"),
        schedule: Schedule { epochs: cfg.ann_epochs, batch: 128, lr: 1e-3, split: 0.7, seed: cfg.seed, patience: 6 },
        input: InputOptions { resolution: Some(200.0), ..Default::default() },
        net: NetOptions::default(),
        resume: false,
        read: Default::default(),
        device: device.clone(),
        validation: None,
        stream: false,
        options: Default::default(),
        calibrate_folds: None,
    };
    let cnn = TrainRequest {
        kind: Kind::VmpCnn,
        targets: vec!["teff".into(), "logg".into(), "feh".into(), "cfe".into()],
        out: cfg.out.join("vmp_cnn.safetensors"),
        schedule: Schedule { epochs: cfg.cnn_epochs, batch: 32, patience: 5, ..ann.schedule.clone() },
        input: InputOptions::default(),
        net: NetOptions { channels: Some(cfg.channels.clone()), ..Default::default() },
        ..ann.clone()
    };
    [("res_ann", ann), ("vmp_cnn", cnn)]
}

/// Runs the demo; returns the summary's path (`out/README.md`).
pub fn run_demo(cfg: &DemoConfig, device: &Device, ui: &mut impl DemoUi) -> Result<PathBuf> {
    let t0 = std::time::Instant::now();
    let out = &cfg.out;
    ui.say("specnn demo: everything below is on SYNTHETIC spectra from specnn's simulator, not on real stars.");
    let test_dir = out.join("survey-test");
    let layouts = vec![LamostLayout::Image, LamostLayout::Coadd];
    let surveys =
        [(out.join("survey-train"), cfg.n, cfg.seed), (test_dir.clone(), (cfg.n / 4).max(8), cfg.seed + 1000)];
    for (dir, k, s) in &surveys {
        ui.survey(*k, false);
        let ui_ref = &*ui;
        simulate(&SimulateConfig { n: *k, seed: *s, layouts: layouts.clone(), grid: false }, dir, |_| {
            ui_ref.simulated_one()
        })?;
        ui.survey(*k, true);
        ui.say(&format!(
            "simulated {k} SYNTHETIC spectra into {} ({:.0} s)",
            dir.display(),
            t0.elapsed().as_secs_f64()
        ));
    }
    let th = Thresholds::default();
    let mut summary = String::from(
        "# specnn demo (SYNTHETIC data)\n\n> Every number here is on SYNTHETIC spectra \
        from specnn's simulator (a physical caricature), not on real stars.\n\n",
    );
    for (name, req) in &requests(cfg, device) {
        ui.say(&format!("training {name} on {} ...", req.targets.join(", ")));
        ui.train(req)?;
        let cat = out.join(format!("catalog_{name}.fits"));
        let (trained, rows) = ui.predict(&req.out, std::slice::from_ref(&test_dir), &cat, &th, device)?;
        let dir = out.join(format!("report_{name}"));
        let e = workflow::run_evaluate(
            &req.out,
            &test_dir,
            &test_dir.join("labels.csv"),
            &dir,
            &th,
            &Default::default(),
            device,
        )?;
        ui.evaluated(&e, &dir);
        summary += &section(name, req, cfg, &e);
        if *name == "vmp_cnn" {
            let k = workflow::candidates(&trained, &rows, &th, &out.join("vmp_candidates.fits"))?;
            summary += &candidates_note(cfg, &th, k, &e);
        }
        summary += "\n";
    }
    summary += &format!("Total time: {:.0} s.\n", t0.elapsed().as_secs_f64());
    let readme = out.join("README.md");
    crate::io::write_atomic(&readme, summary.as_bytes())?;
    ui.say(&format!("demo finished in {:.0} s; summary in {}", t0.elapsed().as_secs_f64(), readme.display()));
    Ok(readme)
}

/// The summary's section for one network: what it was trained and evaluated on, and its metrics.
fn section(name: &str, req: &TrainRequest, cfg: &DemoConfig, e: &Evaluation) -> String {
    let mut s = format!(
        "## {name}: {}\n\nTrained on {} SYNTHETIC stars (70% train, 30% validation); evaluated on \
        {} held-out SYNTHETIC stars. Report: `report_{name}/report.md`; catalog: `catalog_{name}.fits`.\n\n| label \
        | unit | MAE | SD | M | MAE of the median | skill |\n\
        |---|---|---|---|---|---|---|\n",
        req.targets.join(", "),
        cfg.n,
        e.evaluated
    );
    for ((l, m, _, _), (_, mae_med, skill)) in e.metrics.iter().zip(&e.skill) {
        s += &format!(
            "| {l} | {} | {} | {} | {} | {} | {skill:.2} |\n",
            label_unit(l),
            fmt_value(l, m.mae),
            fmt_value(l, m.sd),
            fmt_value(l, m.median),
            fmt_value(l, *mae_med)
        );
    }
    let weak: Vec<&str> = e.skill.iter().filter(|s| !(s.2 >= MIN_SKILL)).map(|s| s.0.as_str()).collect();
    if !weak.is_empty() {
        s += &format!(
            "\n**Little or no skill** (below {MIN_SKILL} against predicting the median): {}. Not \
            a result, even on synthetic data.\n",
            weak.join(", ")
        );
    }
    s
}

/// The CNN's note: its widths, the VMP candidates found, and the VMP and CEMP recall.
fn candidates_note(cfg: &DemoConfig, th: &Thresholds, k: usize, e: &Evaluation) -> String {
    let mut s = format!(
        "\nThe CNN here uses channel widths {:?} instead of the seed's [64, 128, 256], to fit \
        the demo into about ten minutes on 2 CPU cores.\n\nVMP candidates ([Fe/H] < {}): {k}, in \
        `vmp_candidates.fits` (with the CEMP flag).\n",
        cfg.channels, th.vmp_feh
    );
    if let Some(c) = e.vmp {
        s += &format!("VMP recall {:.2}%, false-positive rate {:.2}%.\n", 100.0 * c.recall(), 100.0 * c.fpr());
    }
    if let Some(c) = e.cemp {
        s += &format!(
            "CEMP (among true VMP) recall {:.2}%, false-positive rate {:.2}%.\n",
            100.0 * c.recall(),
            100.0 * c.fpr()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::DemoConfig;

    /// The library's default is the CLI's, as `specnn demo --help` and the README give it.
    #[test]
    fn the_default_is_specnn_demos() {
        let d = DemoConfig::default();
        assert_eq!((d.out.to_str(), d.n, d.seed), (Some("demo"), 4000, 1));
        assert_eq!((d.channels, d.cnn_epochs, d.ann_epochs), (vec![16, 32, 64], 30, 40));
    }
}
