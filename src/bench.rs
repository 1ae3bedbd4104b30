//! Throughput of whole training and inference steps, for `specnn bench` and the PyTorch comparison
//! (`benches/pytorch_compare.py`). Benchmarks measure; tests never time.

use crate::error::Result;
use crate::gpu::{Device, GpuNet, GpuTrainer};
use crate::nn::{Arch, Model};
use crate::ops::conv2d::Padding;
use crate::optim::{Adam, AdamConfig};
use ndarray::{ArrayD, IxDyn};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

/// What one benchmark measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchResult {
    pub name: String,
    pub batch: usize,
    /// Median seconds per step.
    pub seconds: f64,
    pub samples_per_s: f64,
    pub gflops: f64,
    /// `gflops` over the machine's peak (`specnn bench` fills it in: measured on the CPU by
    /// `cpu::peak`, or given with `--peak-gflops`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of_peak: Option<f64>,
}

/// Multiply-adds of one forward pass of one sample, per layer: (macs, is_first_layer_with_input).
fn layer_macs(arch: &Arch) -> Vec<(f64, bool)> {
    let mut out = Vec::new();
    match arch {
        Arch::VmpCnn { in_side, channels, kernel, padding, dense, outputs, .. } => {
            let (mut side, mut c) = (*in_side, 1);
            for (i, &o) in channels.iter().enumerate() {
                let os = if *padding == Padding::Same { side } else { side + 1 - kernel };
                out.push(((os * os * o * c * kernel * kernel) as f64, i == 0));
                side = os / 2;
                c = o;
            }
            let mut prev = c * side * side;
            for &d in dense.iter().chain([outputs]) {
                out.push(((prev * d) as f64, false));
                prev = d;
            }
        }
        Arch::ResAnn { inputs, width, blocks, outputs } => {
            out.push(((inputs * width) as f64, true));
            for _ in 0..2 * blocks {
                out.push(((width * width) as f64, false));
            }
            out.push(((width * outputs) as f64, false));
        }
        Arch::Ann { inputs, hidden, outputs, .. } => {
            let mut prev = *inputs;
            for (i, &d) in hidden.iter().chain([outputs]).enumerate() {
                out.push(((prev * d) as f64, i == 0));
                prev = d;
            }
        }
        Arch::StarNet { inputs, filters, kernel, pool, dense, outputs } => {
            let (mut len, mut c) = (*inputs, 1);
            for (i, &o) in filters.iter().enumerate() {
                len = len + 1 - kernel;
                out.push(((len * o * c * kernel) as f64, i == 0));
                c = o;
            }
            let mut prev = c * (len / pool);
            for &d in dense.iter().chain([outputs]) {
                out.push(((prev * d) as f64, false));
                prev = d;
            }
        }
    }
    out
}

/// Floating-point operations of one step on a batch: 2 per multiply-add; a training step adds the
/// weight gradient (same count) and the input gradient (same count, skipped for the first layer,
/// whose input needs none).
pub fn step_flops(arch: &Arch, batch: usize, training: bool) -> f64 {
    let per_sample: f64 =
        layer_macs(arch).iter().map(|&(m, first)| if training { m * if first { 2.0 } else { 3.0 } } else { m }).sum();
    2.0 * per_sample * batch as f64
}

fn random_batch(arch: &Arch, batch: usize, seed: u64) -> (ArrayD<f32>, ArrayD<f32>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shape = arch.input_shape(batch);
    let n: usize = shape.iter().product();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), (0..n).map(|_| rng.random_range(0.0..1.0)).collect()).expect("shape");
    let k = arch.outputs();
    let y = ArrayD::from_shape_vec(IxDyn(&[batch, k]), (0..batch * k).map(|_| rng.random_range(-1.0..1.0)).collect())
        .expect("shape");
    (x, y)
}

/// How many steps to time: `warmup` untimed, then at least `iters` timed and, past that, more until
/// `min_seconds` of timed steps have passed (a 1 ms step timed five times says little on a shared
/// machine; the median of a second's worth does).
#[derive(Clone, Copy, Debug)]
pub struct Reps {
    pub warmup: usize,
    pub iters: usize,
    pub min_seconds: f64,
}

impl Reps {
    /// Exactly `iters` timed steps after `warmup`.
    pub fn exactly(warmup: usize, iters: usize) -> Self {
        Self { warmup, iters, min_seconds: 0.0 }
    }
}

/// The median time of `step` over the repetitions `r`.
fn time_steps(r: Reps, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..r.warmup {
        step()?;
    }
    let (mut times, mut total) = (Vec::new(), 0.0);
    while times.len() < r.iters.max(1) || total < r.min_seconds {
        let t0 = Instant::now();
        step()?;
        let t = t0.elapsed().as_secs_f64();
        times.push(t);
        total += t;
    }
    Ok(median(times))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Times training steps on `device`; on a GPU each step is timed until the queue is idle (the
/// parameters and Adam's state stay on the device; nothing is read back).
pub fn train_step_on(device: &Device, name: &str, arch: &Arch, batch: usize, reps: Reps) -> Result<BenchResult> {
    let Some(gpu) = device.gpu() else { return train_step(name, arch, batch, reps) };
    let mut t = GpuTrainer::new(gpu.clone(), Model::<f32>::new(arch, 0)?, &Adam::new(AdamConfig::default()))?;
    let (x, y) = random_batch(arch, batch, 1);
    let mask = ArrayD::<f32>::ones(y.raw_dim());
    let secs = time_steps(reps, || {
        t.step(&x, &y, &mask, false)?;
        gpu.wait()
    })?;
    Ok(result(name, arch, batch, secs, true))
}

/// Times inference passes on `device` (on a GPU: upload, forward, readback of the outputs).
pub fn inference_on(device: &Device, name: &str, arch: &Arch, batch: usize, reps: Reps) -> Result<BenchResult> {
    let Some(gpu) = device.gpu() else { return inference(name, arch, batch, reps) };
    let t = GpuNet::new(gpu.clone(), Model::<f32>::new(arch, 0)?)?;
    let (x, _) = random_batch(arch, batch, 1);
    let secs = time_steps(reps, || {
        std::hint::black_box(t.predict(&x)?);
        Ok(())
    })?;
    Ok(result(name, arch, batch, secs, false))
}

/// Times training steps (forward, MAE loss, backward, Adam: `train::cpu_step`), on a pool thread as
/// training runs them.
pub fn train_step(name: &str, arch: &Arch, batch: usize, reps: Reps) -> Result<BenchResult> {
    crate::cpu::on_pool(|| {
        let mut model = Model::<f32>::new(arch, 0)?;
        let mut adam = Adam::new(AdamConfig::default());
        let (x, y) = random_batch(arch, batch, 1);
        let mask = ArrayD::<f32>::ones(y.raw_dim());
        let secs = time_steps(reps, || {
            crate::train::cpu_step(&mut model, &mut adam, x.view(), y.view(), mask.view()).map(drop)
        })?;
        Ok(result(name, arch, batch, secs, true))
    })
}

/// Times inference passes (`Model::predict`, as `predict` runs it: weight spectra kept between
/// calls, as they are between the batches of a catalog).
pub fn inference(name: &str, arch: &Arch, batch: usize, reps: Reps) -> Result<BenchResult> {
    let model = Model::<f32>::new(arch, 0)?;
    let (x, _) = random_batch(arch, batch, 1);
    let secs = time_steps(reps, || {
        std::hint::black_box(model.predict(&x)?);
        Ok(())
    })?;
    Ok(result(name, arch, batch, secs, false))
}

fn result(name: &str, arch: &Arch, batch: usize, seconds: f64, training: bool) -> BenchResult {
    BenchResult {
        name: name.to_string(),
        batch,
        seconds,
        samples_per_s: batch as f64 / seconds,
        gflops: step_flops(arch, batch, training) / seconds / 1e9,
        of_peak: None,
    }
}

/// The seed's steps as `specnn bench` runs them: (name, arch, batch, training).
pub fn seed_steps() -> Vec<(&'static str, Arch, usize, bool)> {
    let valid = match Arch::vmp_cnn(4) {
        Arch::VmpCnn { in_side, channels, kernel, activation, dense, outputs, .. } => {
            Arch::VmpCnn { in_side, channels, kernel, padding: Padding::Valid, activation, dense, outputs }
        }
        other => other,
    };
    let mut steps = vec![
        ("train_vmp_cnn_same", Arch::vmp_cnn(4), 32, true),
        ("train_vmp_cnn_valid", valid.clone(), 32, true),
        ("train_res_ann", Arch::res_ann(3), 128, true),
    ];
    for b in [1, 32, 128] {
        steps.push(("infer_vmp_cnn_same", Arch::vmp_cnn(4), b, false));
    }
    for b in [1, 32, 128] {
        steps.push(("infer_res_ann", Arch::res_ann(3), b, false));
    }
    steps
}

/// The peak GFLOP/s that `of_peak` divides by, and where it came from: `given` (`--peak-gflops`), else
/// measured on the CPU (`cpu::peak`, a fraction of a second); a GPU's is not known.
pub fn peak_for(device: &Device, given: Option<f64>) -> (Option<f64>, String) {
    match (given, device) {
        (Some(p), _) => (Some(p), "given with --peak-gflops".to_string()),
        (None, Device::Cpu) => match crate::cpu::peak::all_threads() {
            Some((p, what)) => (Some(p), format!("measured: {what} on every thread")),
            None => (None, String::new()),
        },
        (None, _) => (None, String::new()),
    }
}

/// Runs the seed's steps (`seed_steps`) whose name contains `only` (all without it) on `device`, each
/// result with its fraction of `peak`, handed to `each` as it comes; stops at the first error, naming
/// the step.
pub fn run_steps(
    device: &Device,
    reps: Reps,
    only: Option<&str>,
    peak: Option<f64>,
    mut each: impl FnMut(&BenchResult),
) -> Result<()> {
    for (name, arch, batch, training) in seed_steps() {
        if only.is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let r = if training {
            train_step_on(device, name, &arch, batch, reps)
        } else {
            inference_on(device, name, &arch, batch, reps)
        };
        let mut r = r.map_err(|e| crate::Error::invalid("bench", format!("{name}: {e}")))?;
        r.of_peak = peak.map(|p| r.gflops / p);
        each(&r);
    }
    Ok(())
}
