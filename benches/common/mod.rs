//! What the criterion benches share: each benchmark's time per iteration, as its criterion samples
//! measured it, and a closing table of GFLOP/s and the fraction of the machine's measured peak
//! (`specnn::cpu::peak`, the figure `specnn bench` divides by), which criterion's report lacks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The allocator the `specnn` binary uses (`src/main.rs`), so that the benches measure what users
/// run: with the system allocator each step faults its large activations back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Record {
    name: String,
    /// Floating-point operations per iteration (0: not counted, e.g. elementwise ops).
    flops: f64,
    /// Seconds per iteration, one value per call from criterion (warm-up included).
    per_iter: Vec<f64>,
}

static RECORDS: Mutex<Vec<Record>> = Mutex::new(Vec::new());

/// For criterion's `iter_custom`: runs `f` `iters` times, records the time per iteration under
/// `name` with `flops` per iteration, and returns the total.
#[allow(dead_code)] // `benches/train_step.rs` times its steps itself and calls `record`
pub fn timed<R>(name: &str, flops: f64, iters: u64, mut f: impl FnMut() -> R) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(f());
    }
    let d = t.elapsed();
    record(name, flops, d.as_secs_f64() / iters.max(1) as f64);
    d
}

/// `g.bench_function(id, ..)` with `f` timed by `timed`, recorded as `group/id` (criterion's name
/// for it) with `flops` per iteration.
#[allow(dead_code)] // `benches/train_step.rs` times its steps itself and calls `record`
pub fn bench<R>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    id: &str,
    flops: f64,
    mut f: impl FnMut() -> R,
) {
    let name = format!("{group}/{id}");
    g.bench_function(id, |b| b.iter_custom(|n| timed(&name, flops, n, &mut f)));
}

/// Records one sample's seconds per iteration of `name`.
pub fn record(name: &str, flops: f64, seconds: f64) {
    let mut recs = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    match recs.iter_mut().find(|r| r.name == name) {
        Some(r) => r.per_iter.push(seconds),
        None => recs.push(Record { name: name.to_string(), flops, per_iter: vec![seconds] }),
    }
}

/// Prints each benchmark's median time per iteration over its samples, its GFLOP/s and their
/// fraction of the peak of all of rayon's threads, measured now (`cpu::peak::all_threads`, the
/// faster of AVX2 and AVX-512; the benchmarks run on those threads).
pub fn print_summary() {
    let recs = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    if recs.is_empty() {
        return;
    }
    let measured = specnn::cpu::peak::all_threads();
    let peak = measured.map(|(p, _)| p);
    match measured {
        Some((p, what)) => {
            println!("\npeak: {p:.1} GFLOP/s (measured: {what} on {} threads)", rayon::current_num_threads())
        }
        None => println!("\npeak: not measured on this CPU (no AVX2/FMA)"),
    }
    println!("GFLOP/s count the direct algorithm's operations, so an FFT convolution can pass 100%");
    println!("{:58} {:>12} {:>9} {:>8}", "benchmark", "median", "GFLOP/s", "of peak");
    for r in recs.iter() {
        let mut t = r.per_iter.clone();
        t.sort_by(f64::total_cmp);
        let med = t[t.len() / 2];
        let time = if med >= 1e-3 { format!("{:.2} ms", med * 1e3) } else { format!("{:.1} us", med * 1e6) };
        let (gflops, of_peak) = if r.flops > 0.0 {
            let g = r.flops / med / 1e9;
            (format!("{g:.1}"), peak.map_or("-".into(), |p| format!("{:.0}%", 100.0 * g / p)))
        } else {
            ("-".into(), "-".into())
        };
        println!("{:58} {:>12} {:>9} {:>8}", r.name, time, gflops, of_peak);
    }
}
