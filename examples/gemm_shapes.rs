//! GFLOP/s of `cpu::sgemm` on one thread at the matrix products of a residual-ANN training step
//! (forward `x . W^T`, input gradient `dy . W`, weight gradient `dy^T . x`, for the 143-wide first
//! layer and the 512-wide ones), at a piece of 64 rows and a batch of 128.
//!
//! ```sh
//! cargo run --release --example gemm_shapes
//! ```
//! A profiling aid: the numbers are this machine's, on operands that stay in cache between
//! repetitions (a training step's do not), median and best of 200 products. First it prints the
//! ceiling: the broadcast kernel's tile alone on packed operands (`sgemm::time_tiles`; the 6x16 AVX2
//! tile, and the 6x32 AVX-512 one where the CPU has it), with one panel of `a` in L1 and with the
//! eleven panels of a 64-row product streaming from L2; what a product loses below it goes to
//! copying operands and storing results.

use ndarray::{Array2, ArrayView2};
use specnn::cpu::sgemm;
use std::time::Instant;

fn main() {
    if !sgemm::available() {
        eprintln!("no AVX2/FMA on this CPU: sgemm's kernels do not run here");
        return;
    }
    for (wide, tile) in [(false, "6x16 AVX2"), (true, "6x32 AVX-512")] {
        for (panels, strips, what) in
            [(1, 2, "one panel, two strips (L1)"), (11, 32, "11 panels x 32 strips (panels in L2)")]
        {
            let reps = 400_000 / (panels * strips);
            let Some(best) = (0..5).filter_map(|_| sgemm::time_tiles(panels, strips, reps, wide)).reduce(f64::min)
            else {
                println!("tile alone  {tile}: not on this CPU");
                break;
            };
            let flops = 2.0 * (6 * 16 * 256 * panels * strips * reps) as f64;
            println!("tile alone  {tile}, {what}: {:.1} GFLOP/s", flops / best / 1e9);
        }
    }
    println!(
        "products on the {} kernels (SPECNN_GEMM=avx2 for the AVX2 ones):",
        if sgemm::wide() { "AVX-512" } else { "AVX2" }
    );
    let r = |m: usize, n: usize| Array2::<f32>::from_shape_fn((m, n), |(i, j)| ((i * 7 + j * 13) % 17) as f32 * 0.01);
    for rows in [64usize, 128] {
        let (x, w, dy, x1, w1) = (r(rows, 512), r(512, 512), r(rows, 512), r(rows, 143), r(512, 143));
        let cases: [(&str, ArrayView2<f32>, ArrayView2<f32>); 5] = [
            ("x.W^T", x.view(), w.t()),
            ("dy.W", dy.view(), w.view()),
            ("dy^T.x", dy.t(), x.view()),
            ("x1.W1^T", x1.view(), w1.t()),
            ("dy^T.x1", dy.t(), x1.view()),
        ];
        for (name, a, b) in cases {
            let mut c = Array2::<f32>::zeros((a.nrows(), b.ncols()));
            let layout = sgemm::layout(&a, &b, &c.view_mut()).expect("contiguous output rows");
            let flops = 2.0 * (a.nrows() * a.ncols() * b.ncols()) as f64;
            let mut times: Vec<f64> = (0..200)
                .map(|_| {
                    let t = Instant::now();
                    sgemm::gemm(1.0, a, b, 0.0, c.view_mut(), layout);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "{rows:>3} rows  {name:8} {layout:?}  {}x{}x{}: median {:.1}, best {:.1} GFLOP/s",
                a.nrows(),
                a.ncols(),
                b.ncols(),
                flops / times[100] / 1e9,
                flops / times[0] / 1e9
            );
        }
    }
}
