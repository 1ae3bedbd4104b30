//! Whole training steps (forward, MAE loss, backward, Adam) and inference of the seed's models on the
//! CPU: `cpu_train_{model}` and `cpu_infer_{model}`. The same steps as `specnn bench` and
//! `benches/pytorch_compare.py`; after criterion's report, a table gives each step's GFLOP/s and its
//! fraction of the machine's measured peak (`common::print_summary`). `cargo bench --bench train_step`

#[path = "common/mod.rs"]
mod common;

use criterion::{criterion_group, Criterion, Throughput};
use specnn::bench::{inference, seed_steps, step_flops, train_step, Reps};
use std::time::Duration;

fn steps(c: &mut Criterion) {
    let mut g = c.benchmark_group("cpu_steps");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    for (name, arch, batch, training) in seed_steps() {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("{name}_b{batch}"), |b| {
            // Each call builds its model and optimizer afresh; one untimed step first, so that the
            // first step's allocations (Adam's moments, the pieces' buffers) are not timed.
            b.iter_custom(|iters| {
                let r = if training {
                    train_step(name, &arch, batch, Reps::exactly(1, iters as usize))
                } else {
                    inference(name, &arch, batch, Reps::exactly(1, iters as usize))
                };
                let r = r.expect("benchmark step runs");
                common::record(&format!("cpu_steps/{name}_b{batch}"), step_flops(&arch, batch, training), r.seconds);
                std::time::Duration::from_secs_f64(r.seconds * iters as f64)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, steps);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
    common::print_summary();
}
