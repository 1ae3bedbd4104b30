//! Per-op CPU benchmarks at the seed's shapes: `cpu_{op}_{shape}`. Throughput is reported in
//! "elements" = floating-point operations of the direct algorithm, so Gelem/s reads as effective GFLOP/s;
//! after criterion's report, a table gives each op's GFLOP/s and its fraction of the machine's measured
//! peak (`common::print_summary`). `cargo bench --bench ops`

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, Criterion, Throughput};
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
    let group = "cpu_conv2d";
    let mut g = c.benchmark_group(group);
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
        let f = flops as f64;
        common::bench(&mut g, group, &format!("fwd/{shape}"), f, || {
            ops::conv2d::forward(&x, &w, Some(&b), spec).unwrap()
        });
        common::bench(&mut g, group, &format!("bwd_input/{shape}"), f, || {
            ops::conv2d::backward(&x, &w, &dy, spec, [true, false, false]).unwrap()
        });
        common::bench(&mut g, group, &format!("bwd_weight/{shape}"), f, || {
            ops::conv2d::backward(&x, &w, &dy, spec, [false, true, true]).unwrap()
        });
    }
    g.finish();
}

fn dense_and_elementwise(c: &mut Criterion) {
    let group = "cpu_linear";
    let mut g = c.benchmark_group(group);
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let (x, w, b, dy) = (random(&[128, 512], 1), random(&[512, 512], 2), random(&[512], 3), random(&[128, 512], 4));
    let (fwd, bwd) = (2 * 128 * 512 * 512, 4 * 128 * 512 * 512);
    g.throughput(Throughput::Elements(fwd));
    common::bench(&mut g, group, "fwd/512x512_b128", fwd as f64, || ops::linear::forward(&x, &w, Some(&b)).unwrap());
    g.throughput(Throughput::Elements(bwd));
    common::bench(&mut g, group, "bwd/512x512_b128", bwd as f64, || {
        ops::linear::backward(&x, &w, &dy, [true, true, true]).unwrap()
    });
    g.finish();

    let group = "cpu_elementwise";
    let mut g = c.benchmark_group(group);
    g.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    let a = random(&[32, 64, 64, 64], 5);
    g.throughput(Throughput::Elements(a.len() as u64));
    // Memory-bound: no FLOP count, so no GFLOP/s or fraction of peak in the closing table.
    common::bench(&mut g, group, "maxpool2d_fwd/64x64x64_b32", 0.0, || {
        ops::maxpool2d::forward(&a, Pool2dSpec::square(2)).unwrap()
    });
    common::bench(&mut g, group, "relu_fwd/64x64x64_b32", 0.0, || ops::activation::relu(&a));
    common::bench(&mut g, group, "selu_fwd/64x64x64_b32", 0.0, || ops::activation::selu(&a));
    g.finish();
}

criterion_group!(benches, conv, dense_and_elementwise);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
    common::print_summary();
}
