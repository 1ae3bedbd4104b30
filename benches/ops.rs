//! Per-op CPU benchmarks at the seed's shapes: `cpu_{op}_{shape}`. Throughput is reported in
//! "elements" = floating-point operations of the direct algorithm, so Gelem/s reads as effective GFLOP/s.
//! `cargo bench --bench ops`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use rand::{rngs::StdRng, Rng, SeedableRng};
use specnn::ops::{self, conv2d::Conv2dSpec, maxpool2d::Pool2dSpec};
use std::time::Duration;

fn random(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()).unwrap()
}

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_conv2d");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    // The seed's three 9x9 'same' layers, batch 32.
    for (cin, cout, side) in [(1usize, 64usize, 64usize), (64, 128, 32), (128, 256, 16)] {
        let x = random(&[32, cin, side, side], 1);
        let w = random(&[cout, cin, 9, 9], 2);
        let b = random(&[cout], 3);
        let dy = random(&[32, cout, side, side], 4);
        let spec = Conv2dSpec { stride: (1, 1), padding: (4, 4) };
        let shape = format!("{side}x{side}x{cin}-{cout}_b32");
        let flops = 2 * 32 * cout * cin * side * side * 81;
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(BenchmarkId::new("fwd", &shape), |bch| bch.iter(|| ops::conv2d::forward(&x, &w, Some(&b), spec).unwrap()));
        g.bench_function(BenchmarkId::new("bwd_input", &shape), |bch| {
            bch.iter(|| ops::conv2d::backward(&x, &w, &dy, spec, [true, false, false]).unwrap())
        });
        g.bench_function(BenchmarkId::new("bwd_weight", &shape), |bch| {
            bch.iter(|| ops::conv2d::backward(&x, &w, &dy, spec, [false, true, true]).unwrap())
        });
    }
    g.finish();
}

fn dense_and_elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_linear");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let (x, w, b, dy) = (random(&[128, 512], 1), random(&[512, 512], 2), random(&[512], 3), random(&[128, 512], 4));
    g.throughput(Throughput::Elements(2 * 128 * 512 * 512));
    g.bench_function("fwd/512x512_b128", |bch| bch.iter(|| ops::linear::forward(&x, &w, Some(&b)).unwrap()));
    g.throughput(Throughput::Elements(4 * 128 * 512 * 512));
    g.bench_function("bwd/512x512_b128", |bch| bch.iter(|| ops::linear::backward(&x, &w, &dy, [true, true, true]).unwrap()));
    g.finish();

    let mut g = c.benchmark_group("cpu_elementwise");
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let a = random(&[32, 64, 64, 64], 5);
    g.throughput(Throughput::Elements(a.len() as u64));
    g.bench_function("maxpool2d_fwd/64x64x64_b32", |bch| bch.iter(|| ops::maxpool2d::forward(&a, Pool2dSpec::square(2)).unwrap()));
    g.bench_function("relu_fwd/64x64x64_b32", |bch| bch.iter(|| ops::activation::relu(&a)));
    g.bench_function("selu_fwd/64x64x64_b32", |bch| bch.iter(|| ops::activation::selu(&a)));
    g.finish();
}

criterion_group!(benches, conv, dense_and_elementwise);
criterion_main!(benches);
