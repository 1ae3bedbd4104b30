//! The GPU kernels at the seed's shapes, and whole training steps of both seed models on the GPU:
//! `gpu_{op}_{shape}` and `gpu_train_{model}`. Each iteration waits for the queue to be idle, so the
//! time is the kernels' (criterion's `iter_custom`). Throughput is set to the FLOPs of the op, so the
//! "elem/s" criterion prints is FLOP/s (Gelem/s = GFLOP/s).
//!
//! Needs a wgpu adapter (`specnn devices`); SPECNN_BENCH_ADAPTER=N picks adapter N (default 0).
//! SPECNN_BENCH_BATCH=B sets the batch of the convolution and training benches (default the seed's 32;
//! lavapipe needs a smaller one to finish in minutes) and SPECNN_BENCH_STEPS=0 skips the training steps.
//! On lavapipe (a CPU Vulkan device) the figures only show that the path works: never compare them with
//! the CPU path. `cargo bench --bench gpu` (add `-- --sample-size 10` on slow devices).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use specnn::gpu::{ops, Gpu, GpuTensor};
use specnn::ops::conv2d::Conv2dSpec;
use specnn::ops::maxpool2d::Pool2dSpec;
use specnn::optim::AdamConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn open() -> Option<Arc<Gpu>> {
    let i: usize = std::env::var("SPECNN_BENCH_ADAPTER").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    match Gpu::open(i) {
        Ok(g) => {
            eprintln!("gpu benches on gpu:{i} {} ({}, {})", g.summary.name, g.summary.backend, g.summary.device_type);
            Some(Arc::new(g))
        }
        Err(e) => {
            eprintln!("SKIPPED gpu benches: {e}");
            None
        }
    }
}

fn batch() -> usize {
    std::env::var("SPECNN_BENCH_BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

fn tensor(g: &Gpu, shape: &[usize]) -> GpuTensor {
    let n: usize = shape.iter().product();
    let a = ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect())
        .unwrap();
    GpuTensor::upload(g, &a.view()).unwrap()
}

/// Times `iters` runs of `f`, waiting for the queue after each.
fn timed(g: &Gpu, iters: u64, mut f: impl FnMut()) -> Duration {
    f();
    g.wait().unwrap();
    let t0 = Instant::now();
    for _ in 0..iters {
        f();
        g.wait().unwrap();
    }
    t0.elapsed()
}

fn kernels(c: &mut Criterion) {
    let Some(g) = open() else { return };
    let mut grp = c.benchmark_group("gpu_ops");
    grp.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    // The VMP CNN's three 9x9 'same' convolutions at batch 32 (64x64x1->64, 32x32x64->128, 16x16x128->256).
    for (c_in, side, o) in [(1usize, 64usize, 64usize), (64, 32, 128), (128, 16, 256)] {
        let n = batch();
        let (x, w, b) = (tensor(&g, &[n, c_in, side, side]), tensor(&g, &[o, c_in, 9, 9]), tensor(&g, &[o]));
        let spec = Conv2dSpec { stride: (1, 1), padding: (4, 4) };
        let flops = 2.0 * (n * side * side * o * c_in * 81) as f64;
        let shape = format!("b{n}_c{c_in}_{side}x{side}_o{o}_k9");
        let (y, geom) = ops::conv2d(&g, &x, &w, Some(&b), spec).unwrap();
        grp.throughput(Throughput::Elements(flops as u64));
        grp.bench_function(format!("gpu_conv2d_fwd_{shape}"), |bch| {
            bch.iter_custom(|it| timed(&g, it, || drop(ops::conv2d(&g, &x, &w, Some(&b), spec).unwrap())))
        });
        if c_in > 1 {
            grp.bench_function(format!("gpu_conv2d_bwd_input_{shape}"), |bch| {
                bch.iter_custom(|it| timed(&g, it, || drop(ops::conv2d_backward_input(&g, &w, &y, &geom).unwrap())))
            });
        }
        grp.bench_function(format!("gpu_conv2d_bwd_weight_{shape}"), |bch| {
            bch.iter_custom(|it| timed(&g, it, || drop(ops::conv2d_backward_weight(&g, &x, &y, &geom).unwrap())))
        });
    }
    // The residual ANN's 512x512 layers at batch 128, forward and both gradients.
    let (x, w, b) = (tensor(&g, &[128, 512]), tensor(&g, &[512, 512]), tensor(&g, &[512]));
    grp.throughput(Throughput::Elements(2 * 128 * 512 * 512));
    grp.bench_function("gpu_linear_fwd_b128_512x512", |bch| {
        bch.iter_custom(|it| timed(&g, it, || drop(ops::linear(&g, &x, &w, Some(&b)).unwrap())))
    });
    grp.throughput(Throughput::Elements(2 * 2 * 128 * 512 * 512));
    grp.bench_function("gpu_linear_bwd_b128_512x512", |bch| {
        bch.iter_custom(|it| timed(&g, it, || drop(ops::linear_backward(&g, &x, &w, &x, [true, true, true]).unwrap())))
    });
    // Elementwise and pooling at the first CNN layer's activation size (32x64x64x64 = 8.4M values).
    let act = tensor(&g, &[32, 64, 64, 64]);
    grp.throughput(Throughput::Elements(act.len() as u64));
    grp.bench_function("gpu_relu_fwd_b32_c64_64x64", |bch| {
        bch.iter_custom(|it| timed(&g, it, || drop(ops::relu(&g, &act).unwrap())))
    });
    grp.bench_function("gpu_selu_bwd_b32_c64_64x64", |bch| {
        bch.iter_custom(|it| timed(&g, it, || drop(ops::selu_backward(&g, &act, &act).unwrap())))
    });
    grp.bench_function("gpu_maxpool_fwd_b32_c64_64x64", |bch| {
        bch.iter_custom(|it| timed(&g, it, || drop(ops::maxpool2d(&g, &act, Pool2dSpec::square(2)).unwrap())))
    });
    let (pooled, argmax, pg) = ops::maxpool2d(&g, &act, Pool2dSpec::square(2)).unwrap();
    grp.bench_function("gpu_maxpool_bwd_b32_c64_64x64", |bch| {
        bch.iter_custom(|it| {
            timed(&g, it, || drop(ops::maxpool2d_backward(&g, &pooled, &argmax, &pg, act.shape()).unwrap()))
        })
    });
    // Adam over the VMP CNN's largest weight (conv3: 256x128x9x9 = 2.65M values).
    let (p, m, v, gr) = (
        tensor(&g, &[256 * 128 * 81]),
        tensor(&g, &[256 * 128 * 81]),
        tensor(&g, &[256 * 128 * 81]),
        tensor(&g, &[256 * 128 * 81]),
    );
    grp.throughput(Throughput::Elements(p.len() as u64));
    grp.bench_function("gpu_adam_2654208", |bch| {
        bch.iter_custom(|it| timed(&g, it, || ops::adam(&g, &p, &gr, &m, &v, 1, &AdamConfig::default()).unwrap()))
    });
    grp.finish();
}

fn steps(c: &mut Criterion) {
    if std::env::var("SPECNN_BENCH_STEPS").as_deref() == Ok("0") {
        return;
    }
    let Some(g) = open() else { return };
    let device = specnn::gpu::Device::Gpu(g);
    let mut grp = c.benchmark_group("gpu_steps");
    grp.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    for (name, arch, seed_batch, training) in specnn::bench::seed_steps() {
        if !training {
            continue;
        }
        let batch = if name.contains("cnn") { batch() } else { seed_batch };
        grp.throughput(Throughput::Elements(specnn::bench::step_flops(&arch, batch, true) as u64));
        grp.bench_function(format!("gpu_{name}_b{batch}"), |b| {
            b.iter_custom(|iters| {
                let r = specnn::bench::train_step_on(
                    &device,
                    name,
                    &arch,
                    batch,
                    specnn::bench::Reps::exactly(0, iters as usize),
                )
                .expect("benchmark step runs");
                Duration::from_secs_f64(r.seconds * iters as f64)
            })
        });
    }
    grp.finish();
}

criterion_group!(benches, kernels, steps);
criterion_main!(benches);
