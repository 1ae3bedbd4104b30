//! The `specnn` command line. Thin: it parses arguments, calls the library and prints.

use clap::{Parser, Subcommand, ValueEnum};
use specnn::golden;
use std::path::PathBuf;
use std::process::ExitCode;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Audit { golden, device, quiet } => audit(&golden, device, quiet),
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
