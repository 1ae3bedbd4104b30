//! Time of Adam's vectorised update (`cpu::simd::adam`) on one thread over 1.65 million parameters
//! (the residual ANN's), with its four arrays in cache (32,768 elements updated 50 times over) and
//! not (one pass over all of them, 26 MB).
//!
//! ```sh
//! cargo run --release --example adam_kernel
//! ```
//! A profiling aid: the figures are this machine's, best of 50 repetitions.

use specnn::optim::AdamConfig;
use std::time::Instant;

const PARAMS: usize = 1_650_000;

fn main() {
    let k = AdamConfig::default().step_constants::<f32>(10);
    for (n, what) in [(1usize << 15, "in cache"), (PARAMS, "from memory")] {
        let mut p = vec![0.1f32; n];
        let g: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
        let (mut m, mut v) = (vec![1e-3f32; n], vec![1e-4f32; n]);
        let mut best = f64::MAX;
        for _ in 0..50 {
            let t = Instant::now();
            for _ in 0..PARAMS / n {
                specnn::cpu::simd::adam(k, &mut p, &g, &mut m, &mut v);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{what:12} {:.3} ms per {PARAMS} parameters ({:.2} ns each)", best * 1e3, best * 1e9 / PARAMS as f64);
    }
}
