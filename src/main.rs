//! The `specnn` command line. Thin: it parses arguments, calls the library and prints.

use clap::{Parser, Subcommand, ValueEnum};
use specnn::golden;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc keeps freed pages for reuse; the system allocator returns large blocks to the kernel on
/// every free, so each training step paid again for page faults on its activations (measured: ~15% of
/// an FFT convolution's time in the kernel's page-fault path).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "specnn", version, about = "Stellar labels from spectra with neural networks, audited against PyTorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Device {
    /// The CPU path (f32, every core).
    Cpu,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LayoutArg {
    Image,
    Coadd,
    Mixed,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum MediumArg {
    Air,
    Vacuum,
}

impl From<MediumArg> for specnn::data::Medium {
    fn from(m: MediumArg) -> Self {
        match m {
            MediumArg::Air => specnn::data::Medium::Air,
            MediumArg::Vacuum => specnn::data::Medium::Vacuum,
        }
    }
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
        /// Where to run the cases.
        #[arg(long, value_enum, default_value = "cpu")]
        device: Device,
        /// Print only failing cases and the summary.
        #[arg(long)]
        quiet: bool,
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
        medium: Option<MediumArg>,
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
        /// Run only benchmarks whose name contains this text.
        #[arg(long)]
        only: Option<String>,
        /// The machine's peak GFLOP/s, to print the fraction reached.
        #[arg(long)]
        peak_gflops: Option<f64>,
        /// Print one JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit { golden, device, quiet } => audit(&golden, device, quiet),
        Command::Inspect { files, medium } => inspect(&files, medium),
        Command::Simulate { n, seed, out, layout, grid } => simulate(n, seed, &out, layout, grid),
        Command::Bench { iters, warmup, only, peak_gflops, json } => bench(iters, warmup, only.as_deref(), peak_gflops, json),
    }
}

fn audit(path: &std::path::Path, device: Device, quiet: bool) -> ExitCode {
    let reports = match golden::audit(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("audit of {} on {:?}", path.display(), device);
    println!("{:<38} {:<15} {:>10} {:>10} {:>19}  result  shapes", "case", "op", "max abs", "max rel", "tol (abs, rel)");
    let (mut passed, mut failed) = (0, 0);
    for r in &reports {
        if r.passed {
            passed += 1;
        } else {
            failed += 1;
        }
        if quiet && r.passed {
            continue;
        }
        let tol = format!("{:.1e}, {:.0e}", r.tol.abs, r.tol.rel);
        println!(
            "{:<38} {:<15} {:>10.2e} {:>10.2e} {:>19}  {}  {}",
            r.name,
            r.op,
            r.max_abs,
            r.max_rel,
            tol,
            if r.passed { "pass" } else { "FAIL" },
            r.shapes
        );
        if let Some(why) = r.reason.as_ref().filter(|_| !r.passed) {
            println!("    {why}");
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn bench(iters: usize, warmup: usize, only: Option<&str>, peak: Option<f64>, json: bool) -> ExitCode {
    if !json {
        println!("specnn bench: CPU path, f32, {} threads", rayon::current_num_threads());
        println!("{:<22} {:>6} {:>11} {:>12} {:>9} {:>8}", "step", "batch", "ms/step", "samples/s", "GFLOP/s", "of peak");
    }
    for (name, arch, batch, training) in specnn::bench::seed_steps() {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let r = if training {
            specnn::bench::train_step(name, &arch, batch, warmup, iters)
        } else {
            specnn::bench::inference(name, &arch, batch, warmup, iters)
        };
        match r {
            Ok(r) if json => println!("{}", serde_json::to_string(&r).expect("serialisable")),
            Ok(r) => {
                let frac = peak.map(|p| format!("{:.0}%", 100.0 * r.gflops / p)).unwrap_or_else(|| "-".into());
                println!("{:<22} {:>6} {:>11.2} {:>12.1} {:>9.1} {:>8}", r.name, r.batch, r.seconds * 1e3, r.samples_per_s, r.gflops, frac);
            }
            Err(e) => {
                eprintln!("error: {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn inspect(files: &[PathBuf], medium: Option<MediumArg>) -> ExitCode {
    let opts = specnn::data::ReadOptions { medium: medium.map(Into::into) };
    let mut failed = 0;
    for f in files {
        match specnn::data::read_spectrum(f, &opts) {
            Ok(s) => {
                let n = s.wavelength.len();
                let bad = s.bad.iter().filter(|b| **b).count();
                let m = &s.meta;
                let opt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
                println!(
                    "{}: {:?}, {:?} wavelengths, {n} pixels {:.2}-{:.2} A, {bad} bad; obsid {} ra {} dec {} z {} snr {:?} class {}{}",
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
            println!("wrote {k} SYNTHETIC spectra and labels.csv to {} in {:.1} s", out.display(), t0.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(e) => {
            bar.abandon();
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
