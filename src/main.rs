//! The `specnn` command line. Thin: it parses arguments, calls the library and prints.

use clap::{Parser, Subcommand, ValueEnum};
use specnn::golden;
use specnn::options::TrainSettings;
use specnn::predict::Thresholds;
use specnn::workflow::TrainRequest;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc keeps freed pages for reuse; the system allocator returns large blocks to the kernel on
/// every free, so each training step would pay again for page faults on its activations (the measured
/// cost is in BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "specnn",
    version,
    about = "Stellar labels from spectra with neural networks, audited against PyTorch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Opens `--device`, printing which device was taken (on stderr, so catalogs on stdout stay clean).
fn open_device(spec: &str) -> specnn::Result<specnn::gpu::Device> {
    let d = specnn::gpu::Device::open(spec)?;
    eprintln!("device: {}", d.describe());
    Ok(d)
}

/// Flag thresholds and the wavelength medium, shared by predict and evaluate.
#[derive(clap::Args, Debug)]
struct FlagArgs {
    /// VMP flag: estimated [Fe/H] below this.
    #[arg(long, default_value_t = -2.0, allow_hyphen_values = true)]
    vmp_feh: f64,
    /// CEMP flag: VMP and estimated [C/Fe] above this.
    #[arg(long, default_value_t = 1.0)]
    cemp_cfe: f64,
    #[command(flatten)]
    read: specnn::data::ReadOptions,
    /// Where the network runs: auto (the first hardware GPU, else the CPU), cpu, gpu (the first adapter
    /// of any kind, a CPU Vulkan device included) or gpu:N (adapter N of `specnn devices`).
    #[arg(long, default_value = "auto")]
    device: String,
}

impl FlagArgs {
    fn thresholds(&self) -> Thresholds {
        Thresholds { vmp_feh: self.vmp_feh, cemp_cfe: self.cemp_cfe }
    }
    fn read(&self) -> specnn::data::ReadOptions {
        self.read
    }
}

/// `specnn train`'s inputs and output; every other option is the library's [`TrainSettings`].
#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// Folder of spectra (FITS or CSV; --recursive for its subfolders too), or a .txt list of files.
    #[arg(long)]
    spectra: PathBuf,
    /// CSV or FITS table with a `file` (or `obsid`) column and label columns.
    #[arg(long)]
    labels: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    settings: TrainSettings,
}

impl TrainArgs {
    fn request(self) -> specnn::Result<TrainRequest> {
        let r = self.settings.request(self.spectra, self.labels, self.out)?;
        eprintln!("device: {}", r.device.describe());
        Ok(r)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LayoutArg {
    Image,
    Coadd,
    Mixed,
}

#[derive(Subcommand)]
enum Command {
    /// Run every case of a PyTorch golden-vector file through specnn and compare.
    ///
    /// Prints one row per case (op, input shapes, max abs and rel error, tolerance, pass/fail) and ends
    /// with `N passed, N failed`. Exit status 1 when a case fails or the file is malformed.
    ///
    /// Example: specnn audit --golden ../shared/data/golden/public.safetensors
    Audit {
        /// The golden-vector safetensors file.
        #[arg(long)]
        golden: PathBuf,
        /// Where to run the cases: cpu, gpu, gpu:N, or all (the CPU and every GPU adapter, side by side).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Print only failing cases and the summary.
        #[arg(long)]
        quiet: bool,
    },
    /// List every GPU adapter wgpu finds: index (for --device gpu:N), backend, type, name and the
    /// limits that matter to specnn, and which one --device auto would take.
    ///
    /// Example: specnn devices
    Devices,
    /// Train a network on a folder of spectra and a label table.
    ///
    /// Preprocessing as configured (stored in the model file so `predict` repeats it), a seeded split
    /// (7:3 by default), label standardisation, MAE loss skipping unknown labels, Adam, early stopping
    /// on the validation MAE, and a checkpoint (MODEL.ckpt) after every epoch for --resume.
    ///
    /// Example: specnn train --spectra survey/ --labels survey/labels.csv --arch res-ann
    /// --resolution 200 --targets cfe,mgfe,nfe --out res.safetensors
    Train(TrainArgs),
    /// k-fold cross-validation: every star estimated by a network that did not train on it.
    ///
    /// Takes the options of `train`; --out is a folder for the fold models. Writes report.md and
    /// figures (the seed's metrics on the pooled out-of-fold estimates) to --report.
    ///
    /// Example: specnn crossval --spectra ../shared/data/miles --labels ../shared/data/miles/labels.csv
    /// --arch vmp-cnn --channels 16,32,64 --targets teff,logg,feh --min-coverage 0.8 --folds 5
    /// --out cv-models --report cv-report
    Crossval {
        #[command(flatten)]
        train: TrainArgs,
        #[arg(long, default_value_t = 5)]
        folds: usize,
        #[arg(long)]
        report: PathBuf,
    },
    /// Estimate labels for spectrum files with a trained model, into a FITS or CSV catalog.
    ///
    /// One row per file: file, obsid, ra, dec, snr, each label the model estimates, the VMP flag
    /// ([Fe/H] < --vmp-feh) and CEMP flag (VMP and [C/Fe] > --cemp-cfe) where those labels exist, and
    /// a reason for files that could not be read or were refused.
    ///
    /// Example: specnn predict --model vmp.safetensors --spectra survey/ --out catalog.fits
    Predict {
        #[arg(long)]
        model: PathBuf,
        /// Folders (--recursive: with their subfolders), files, and .txt lists of files (one per line).
        #[arg(long, required = true, num_args = 1..)]
        spectra: Vec<PathBuf>,
        /// Catalog: .fits or .csv.
        #[arg(long)]
        out: PathBuf,
        /// Process only slice K of N of the sorted input list (e.g. 3/16), for job arrays; join the
        /// shard catalogs with `specnn merge`.
        #[arg(long)]
        shard: Option<String>,
        #[command(flatten)]
        flags: FlagArgs,
    },
    /// Join shard catalogs (from `predict --shard K/N`) into one, checking against the same inputs that
    /// no spectrum is missing or doubled. Nothing is written when a check fails.
    ///
    /// Example: specnn merge --spectra survey/ --out all.fits shard-1.fits shard-2.fits shard-3.fits
    Merge {
        /// The shard catalogs, in shard order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// The inputs given to predict (folders and/or files).
        #[arg(long, required = true, num_args = 1..)]
        spectra: Vec<PathBuf>,
        /// As given to predict: folders searched with their subfolders.
        #[arg(long)]
        recursive: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// The seed's metrics on a labelled folder: report.md and PNG figures.
    ///
    /// MAE, SD and M (median of truth - estimate) per label, VMP against normal stars, the VMP and CEMP
    /// confusion matrices with recall and false-positive rate, the recall/false-positive curve,
    /// training curves and a few spectra with their estimates.
    ///
    /// Example: specnn evaluate --model vmp.safetensors --spectra test/ --labels test/labels.csv --report report/
    Evaluate {
        #[arg(long)]
        model: PathBuf,
        /// Folder of spectra (--recursive: with its subfolders), or a .txt list of files.
        #[arg(long)]
        spectra: PathBuf,
        #[arg(long)]
        labels: PathBuf,
        #[arg(long)]
        report: PathBuf,
        #[command(flatten)]
        flags: FlagArgs,
    },
    /// The main job on built-in SYNTHETIC data: simulate a survey, train the residual ANN (R=200;
    /// [C/Fe], [Mg/Fe], [N/Fe]) and a VMP CNN (Teff, log g, [Fe/H], [C/Fe]), evaluate both on a separate
    /// synthetic test survey, search VMP and CEMP candidates, and write catalogs, figures and reports.
    ///
    /// Example: specnn demo --out demo/
    Demo {
        #[command(flatten)]
        cfg: specnn::demo::DemoConfig,
        /// Where the networks train and run (auto, cpu, gpu, gpu:N).
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Write a SYNTHETIC survey: LAMOST-format FITS spectra made from labels, and labels.csv.
    ///
    /// The spectra come from specnn's physical caricature of stellar spectra (see the `data::synth`
    /// module docs): they are synthetic, say so in every header (SYNTHETI = 'T') and in labels.csv,
    /// and results on them are never results on real stars. Deterministic for a seed.
    ///
    /// Example: specnn simulate --n 5000 --seed 1 --out survey/
    Simulate {
        /// Number of stars (with --grid: 0 = every grid point, else a random subset).
        #[arg(long, default_value_t = 5000)]
        n: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// LAMOST layout of the files: the DR1-7 primary image, the DR8+ COADD table, or both alternately.
        #[arg(long, value_enum, default_value = "mixed")]
        layout: LayoutArg,
        /// Noise-free spectra on the MARCS grid steps (the seed's experiment 3) instead of a survey.
        #[arg(long)]
        grid: bool,
    },
    /// Read spectrum files and print what specnn found in each: layout, medium, pixels, wavelength
    /// range, bad pixels and header facts. A file that cannot be read prints its error.
    ///
    /// Example: specnn inspect ../shared/data/lamost/*/*.fits*
    Inspect {
        /// Spectrum files (FITS, gzipped FITS or CSV).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Take wavelengths as air or vacuum whatever the file says.
        #[arg(long, value_enum)]
        medium: Option<specnn::data::Medium>,
    },
    /// Time whole training and inference steps of the seed's models (samples/s, GFLOP/s).
    ///
    /// Runs on random data of the seed's shapes: the VMP CNN ('same' and 'valid', batch 32), the
    /// residual ANN (batch 128), and inference at batch 1, 32 and 128.
    ///
    /// Example: specnn bench --iters 5 --only train_res_ann
    Bench {
        /// Timed steps per benchmark (the median is reported).
        #[arg(long, default_value_t = 5)]
        iters: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// Keep timing past --iters until this many seconds of steps are measured (short steps
        /// need many repetitions for a stable median on a shared machine).
        #[arg(long, default_value_t = 1.0)]
        min_time: f64,
        /// Run only benchmarks whose name contains this text.
        #[arg(long)]
        only: Option<String>,
        /// The machine's peak GFLOP/s, to print the fraction reached (on the CPU it is measured when
        /// not given: `examples/fma_peak`).
        #[arg(long)]
        peak_gflops: Option<f64>,
        /// Print one JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Where to run: cpu (default), gpu, gpu:N or auto. GPU steps are timed until the queue is idle.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn main() -> ExitCode {
    // Mesa's lavapipe (a CPU Vulkan device) warns on stderr when XDG_RUNTIME_DIR is unset; any folder
    // silences it. Set here, before any thread starts, never from library code.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Audit { golden, device, quiet } => audit(&golden, &device, quiet),
        Command::Inspect { files, medium } => inspect(&files, medium),
        Command::Devices => devices(),
        Command::Train(args) => report(args.request().and_then(|r| cli_train(&r))),
        Command::Crossval { train, folds, report: dir } => {
            let req = match train.request() {
                Ok(r) => r,
                Err(e) => return report(Err(e)),
            };
            let t0 = std::time::Instant::now();
            let r = specnn::workflow::run_crossval(&req, folds, &dir, &Thresholds::default(), |f, o, mae| {
                println!(
                    "fold {f}/{folds}: best epoch {} of {}, held-out {} MAE {mae:.4} ({:.0} s)",
                    o.history.best_epoch,
                    o.history.epochs.len(),
                    req.targets[0],
                    t0.elapsed().as_secs_f64()
                );
            });
            report(r.map(|e| print_evaluation(&e, &dir)))
        }
        Command::Predict { model, spectra, out, shard, flags } => {
            let shard = match shard.as_deref().map(parse_shard).transpose() {
                Ok(s) => s,
                Err(e) => return report(Err(e)),
            };
            report(
                open_device(&flags.device)
                    .and_then(|d| cli_predict(&model, &spectra, &out, &flags.thresholds(), &flags.read(), shard, &d))
                    .map(|_| ()),
            )
        }
        Command::Merge { shards, spectra, recursive, out } => report(
            specnn::workflow::run_merge(&shards, &spectra, recursive, &out)
                .map(|n| println!("wrote {n} rows to {}", out.display())),
        ),
        Command::Evaluate { model, spectra, labels, report: dir, flags } => report(
            open_device(&flags.device)
                .and_then(|d| {
                    specnn::workflow::run_evaluate(
                        &model,
                        &spectra,
                        &labels,
                        &dir,
                        &flags.thresholds(),
                        &flags.read(),
                        &d,
                    )
                })
                .map(|e| print_evaluation(&e, &dir)),
        ),
        Command::Demo { cfg, device } => {
            let run = |d: specnn::gpu::Device| specnn::demo::run_demo(&cfg, &d, &mut CliDemo { bar: None }).map(|_| ());
            report(open_device(&device).and_then(run))
        }
        Command::Simulate { n, seed, out, layout, grid } => simulate(n, seed, &out, layout, grid),
        Command::Bench { iters, warmup, min_time, only, peak_gflops, json, device } => match open_device(&device) {
            Ok(d) => bench(
                specnn::bench::Reps { warmup, iters, min_seconds: min_time },
                only.as_deref(),
                peak_gflops,
                json,
                &d,
            ),
            Err(e) => report(Err(e)),
        },
    }
}

fn devices() -> ExitCode {
    let all = specnn::gpu::list_adapters();
    if all.is_empty() {
        println!(
            "no GPU adapter found: --device auto runs on the CPU (install a Vulkan driver for the GPU path; \
            mesa-vulkan-drivers gives a CPU one for testing)"
        );
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<6} {:<8} {:<14} {:<44} {:>14} {:>16} {:>10} {:>8}",
        "device", "backend", "type", "name", "max buffer", "max binding", "wg memory", "wg size"
    );
    for a in &all {
        println!(
            "{:<6} {:<8} {:<14} {:<44} {:>11} MiB {:>13} MiB {:>6} KiB {:>8}",
            format!("gpu:{}", a.index),
            a.backend,
            a.device_type,
            a.name,
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup
        );
        if !a.driver.is_empty() {
            println!("       driver: {}", a.driver);
        }
    }
    match all.iter().find(|a| a.hardware) {
        Some(a) => println!("--device auto takes gpu:{} ({})", a.index, a.name),
        None => println!(
            "--device auto takes the CPU: no hardware GPU (a CPU-emulated Vulkan device is slower than \
            the CPU path; use --device gpu to run on it anyway)"
        ),
    }
    ExitCode::SUCCESS
}

fn audit(path: &std::path::Path, device: &str, quiet: bool) -> ExitCode {
    match golden::audit_devices(path, device) {
        Ok(runs) => {
            let (table, failed_any) = golden::audit_table(path, &runs, quiet);
            print!("{table}");
            if failed_any {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bench(
    reps: specnn::bench::Reps,
    only: Option<&str>,
    peak: Option<f64>,
    json: bool,
    device: &specnn::gpu::Device,
) -> ExitCode {
    let (peak, source) = specnn::bench::peak_for(device, peak);
    if !json {
        println!("specnn bench: f32 on {}", device.describe());
        match peak {
            Some(p) => println!(
                "peak: {p:.1} GFLOP/s ({source}); GFLOP/s count a direct convolution's operations, so \
                the FFT-convolved CNN can pass 100%"
            ),
            None => println!("peak: unknown (give --peak-gflops for the 'of peak' column)"),
        }
        println!(
            "{:<22} {:>6} {:>11} {:>12} {:>9} {:>8}",
            "step", "batch", "ms/step", "samples/s", "GFLOP/s", "of peak"
        );
    }
    report(specnn::bench::run_steps(device, reps, only, peak, |r| {
        if json {
            println!("{}", serde_json::to_string(r).expect("serialisable"));
        } else {
            let frac = r.of_peak.map(|f| format!("{:.0}%", 100.0 * f)).unwrap_or_else(|| "-".into());
            println!(
                "{:<22} {:>6} {:>11.2} {:>12.1} {:>9.1} {:>8}",
                r.name,
                r.batch,
                r.seconds * 1e3,
                r.samples_per_s,
                r.gflops,
                frac
            );
        }
    }))
}

fn inspect(files: &[PathBuf], medium: Option<specnn::data::Medium>) -> ExitCode {
    let opts = specnn::data::ReadOptions { medium, recursive: false };
    let mut failed = 0;
    for f in files {
        match specnn::data::read_spectrum(f, &opts) {
            Ok(s) => {
                let n = s.wavelength.len();
                let bad = s.bad.iter().filter(|b| **b).count();
                let m = &s.meta;
                let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
                println!(
                    "{}: {:?}, {:?} wavelengths, {n} pixels {:.2}-{:.2} A, {bad} bad; obsid {} ra {} dec {} z {} snr \
                        {:?} class {}{}",
                    f.display(),
                    s.layout,
                    s.medium,
                    s.wavelength[0],
                    s.wavelength[n - 1],
                    m.obsid.map(|o| o.to_string()).unwrap_or_else(|| "-".into()),
                    opt(m.ra),
                    opt(m.dec),
                    opt(m.z),
                    m.snr,
                    m.class.as_deref().unwrap_or("-"),
                    if m.synthetic { " [SYNTHETIC]" } else { "" }
                );
            }
            Err(e) => {
                failed += 1;
                println!("{}: error: {e}", f.display());
            }
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn simulate(n: usize, seed: u64, out: &std::path::Path, layout: LayoutArg, grid: bool) -> ExitCode {
    use specnn::data::write::LamostLayout;
    use specnn::simulate::{simulate, star_labels, SimulateConfig};
    let layouts = match layout {
        LayoutArg::Image => vec![LamostLayout::Image],
        LayoutArg::Coadd => vec![LamostLayout::Coadd],
        LayoutArg::Mixed => vec![LamostLayout::Image, LamostLayout::Coadd],
    };
    let cfg = SimulateConfig { n, seed, layouts, grid };
    let total = star_labels(&cfg).len();
    let bar = indicatif::ProgressBar::new(total as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} spectra, {per_sec}, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(if grid { "SYNTHETIC grid" } else { "SYNTHETIC survey" });
    let t0 = std::time::Instant::now();
    match simulate(&cfg, out, |_| bar.inc(1)) {
        Ok(k) => {
            bar.finish();
            println!(
                "wrote {k} SYNTHETIC spectra and labels.csv to {} in {:.1} s",
                out.display(),
                t0.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(r: specnn::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(len);
    b.set_style(indicatif::ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    b
}

fn cli_train(req: &TrainRequest) -> specnn::Result<()> {
    let t0 = std::time::Instant::now();
    let pb = std::cell::RefCell::new(None::<indicatif::ProgressBar>);
    let outcome = specnn::workflow::run_train(
        req,
        |e| {
            if let Some(b) = pb.borrow().as_ref() {
                let maes: Vec<String> =
                    req.targets.iter().zip(&e.val_mae).map(|(t, m)| format!("{t} {m:.3}")).collect();
                let line = format!(
                    "epoch {:>3}: train loss {:.4}, validation MAE {}, {:.0} samples/s",
                    e.epoch,
                    e.train_loss,
                    maes.join(", "),
                    e.samples_per_s
                );
                if b.is_hidden() {
                    println!("{line}");
                } else {
                    b.println(line);
                }
                b.set_position(0);
            }
        },
        |n, loss| {
            if let Some(b) = pb.borrow().as_ref() {
                b.inc(n as u64);
                b.set_message(format!("loss {loss:.4}"));
            }
        },
        |data| {
            println!(
                "{} labelled spectra ({} refused){}",
                data.x.len(),
                data.refused.len(),
                if data.synthetic { "; SYNTHETIC data" } else { "" }
            );
            for (f, why) in data.refused.iter().take(5) {
                println!("  refused {f}: {why}");
            }
            if let specnn::data::store::Rows::Disk(d) = &data.x {
                println!(
                    "streaming the preprocessed set from {} ({:.1} MB; removed at the end)",
                    d.path().display(),
                    d.bytes() as f64 / 1e6
                );
            }
            if let Some(k) = req.calibrate_folds {
                println!(
                    "after training, a {k}-fold cross-validation with the same options calibrates the uncertainties \
                    ({k} more trainings, without progress lines)"
                );
            }
            let n_train = ((data.x.len() as f64) * req.schedule.split).round() as u64;
            *pb.borrow_mut() = Some(bar(n_train, "  [{bar:30}] {pos}/{len} {msg} {per_sec}"));
        },
    )?;
    if let Some(b) = pb.borrow().as_ref() {
        b.finish_and_clear();
    }
    let h = &outcome.history;
    println!(
        "wrote {} (best epoch {} of {}{}) in {:.1} s",
        req.out.display(),
        h.best_epoch,
        h.epochs.len(),
        if h.stopped_early { ", stopped early" } else { "" },
        t0.elapsed().as_secs_f64()
    );
    let c = &outcome.calibration;
    if c.source != specnn::trust::VALIDATION {
        let n: Vec<String> = req.targets.iter().zip(&c.n).map(|(t, n)| format!("{t} {n}")).collect();
        println!("uncertainties calibrated on out-of-fold estimates ({}): {} stars", c.source, n.join(", "));
    }
    Ok(())
}

fn parse_shard(s: &str) -> specnn::Result<(usize, usize)> {
    let bad = || specnn::Error::Invalid { op: "shard", msg: format!("`{s}` is not K/N (e.g. 3/16)") };
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    Ok((k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?))
}

/// Runs predict with a progress bar; returns the model and the rows it wrote.
fn cli_predict(
    model: &std::path::Path,
    spectra: &[PathBuf],
    out: &std::path::Path,
    th: &Thresholds,
    read: &specnn::data::ReadOptions,
    shard: Option<(usize, usize)>,
    device: &specnn::gpu::Device,
) -> specnn::Result<(specnn::predict::Trained, Vec<specnn::predict::Row>)> {
    let t0 = std::time::Instant::now();
    let b = bar(0, "  [{bar:30}] {pos}/{len} spectra {per_sec}");
    let (t, rows, tp) = specnn::workflow::run_predict(model, spectra, out, th, read, shard, device, |done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    })?;
    b.finish_and_clear();
    let refused = rows.iter().filter(|r| !r.reason.is_empty()).count();
    println!(
        "wrote {} rows to {} ({} refused) in {:.1} s",
        rows.len(),
        out.display(),
        refused,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "  {:.0} spectra/s; reading {:.1} s and preprocessing {:.1} s (CPU time over {} threads, overlapped with the \
            model), model {:.1} s, wall {:.1} s",
        tp.spectra as f64 / tp.wall_s.max(1e-9),
        tp.read_s,
        tp.prep_s,
        rayon::current_num_threads(),
        tp.model_s,
        tp.wall_s
    );
    use specnn::trust::{FLAG_DOCS, FLAG_SYNTHETIC_MODEL};
    let synth = rows.iter().filter(|r| r.flags.is_some_and(|f| f & FLAG_SYNTHETIC_MODEL != 0)).count();
    if synth > 0 {
        eprintln!(
            "WARNING: {} was trained on SYNTHETIC spectra and {synth} of these spectra are real: their labels \
            are not to be trusted (flags bit {FLAG_SYNTHETIC_MODEL})",
            model.display()
        );
    }
    for (bit, what) in FLAG_DOCS.iter().filter(|(b, _)| *b != FLAG_SYNTHETIC_MODEL) {
        let n = rows.iter().filter(|r| r.flags.is_some_and(|f| f & bit != 0)).count();
        if n > 0 {
            eprintln!("  flagged {n} of {} rows: {what} (flags bit {bit})", rows.len());
        }
    }
    Ok((t, rows))
}

fn print_evaluation(e: &specnn::workflow::Evaluation, dir: &std::path::Path) {
    if e.synthetic {
        println!("SYNTHETIC data: not a result on real stars");
    }
    println!("{} stars evaluated ({} refused)", e.evaluated, e.refused);
    println!("{:<6} {:>6} {:>10} {:>10} {:>10}", "label", "n", "MAE", "SD", "M");
    for (name, m, _, _) in &e.metrics {
        println!("{:<6} {:>6} {:>10.4} {:>10.4} {:>10.4}", name, m.n, m.mae, m.sd, m.median);
    }
    for (name, n, c1, c2) in &e.coverage {
        println!(
            "{name:<6} uncertainties: {n} stars, {:.1}% within 1 sigma, {:.1}% within 2 sigma",
            100.0 * c1,
            100.0 * c2
        );
    }
    if let Some(c) = &e.vmp {
        println!(
            "VMP: recall {:.2}% ({}/{}), false positives {:.2}% ({}/{})",
            100.0 * c.recall(),
            c.tp,
            c.tp + c.fn_,
            100.0 * c.fpr(),
            c.fp,
            c.fp + c.tn
        );
    }
    if let Some(c) = &e.cemp {
        println!(
            "CEMP among VMP: recall {:.2}% ({}/{}), false positives {:.2}%",
            100.0 * c.recall(),
            c.tp,
            c.tp + c.fn_,
            100.0 * c.fpr()
        );
    }
    println!("report: {}", dir.join("report.md").display());
}

/// The demo's front end: progress bars for simulating, training and predicting, lines on stdout.
struct CliDemo {
    bar: Option<indicatif::ProgressBar>,
}

impl specnn::demo::DemoUi for CliDemo {
    fn say(&mut self, line: &str) {
        println!("{line}");
    }
    fn simulated_one(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
    fn survey(&mut self, total: usize, done: bool) {
        match (done, self.bar.take()) {
            (false, _) => self.bar = Some(bar(total as u64, "  simulating [{bar:30}] {pos}/{len}")),
            (true, Some(b)) => b.finish_and_clear(),
            (true, None) => {}
        }
    }
    fn train(&mut self, req: &TrainRequest) -> specnn::Result<()> {
        cli_train(req)
    }
    fn predict(
        &mut self,
        model: &std::path::Path,
        spectra: &[PathBuf],
        out: &std::path::Path,
        th: &Thresholds,
        device: &specnn::gpu::Device,
    ) -> specnn::Result<(specnn::predict::Trained, Vec<specnn::predict::Row>)> {
        cli_predict(model, spectra, out, th, &Default::default(), None, device)
    }
    fn evaluated(&mut self, e: &specnn::workflow::Evaluation, dir: &std::path::Path) {
        print_evaluation(e, dir);
    }
}
