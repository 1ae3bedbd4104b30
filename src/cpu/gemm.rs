//! Matrix multiplication on all cores.
//!
//! The single-threaded product is `Float::gemm_on_thread`: specnn's own kernels for f32 on CPUs with
//! AVX2 and FMA (`cpu::sgemm`, which also covers a dense layer at batch 1-4 without copying its
//! weights), matrixmultiply otherwise. We split the output into blocks with `rayon::join` so that every
//! core works on one GEMM; the split is along the larger output dimension, and stops when a block is
//! too small to be worth a thread.

use crate::tensor::Float;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// Multiply-adds below which a GEMM is not split further (about 100 microseconds of work).
const MIN_SPLIT_WORK: usize = 1 << 21;

/// `c = alpha * a . b + beta * c`, using every rayon thread.
pub fn gemm<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    let pieces = rayon::current_num_threads();
    gemm_split(alpha, a, b, beta, c, pieces);
}

/// `c = alpha * a . b + beta * c` on the calling thread alone (for callers that are already parallel).
pub fn gemm_serial<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    T::gemm_on_thread(alpha, a, b, beta, c);
}

fn gemm_split<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>, pieces: usize) {
    let (m, n) = c.dim();
    let work = m * n * a.ncols();
    if pieces <= 1 || work < 2 * MIN_SPLIT_WORK || (m < 16 && n < 16) {
        T::gemm_on_thread(alpha, a, b, beta, c);
        return;
    }
    let left = pieces / 2;
    let right = pieces - left;
    if m >= n {
        let mid = m * left / pieces;
        let (a1, a2) = a.split_at(Axis(0), mid);
        let (c1, c2) = c.split_at(Axis(0), mid);
        rayon::join(
            || gemm_split(alpha, a1, b, beta, c1, left),
            || gemm_split(alpha, a2, b, beta, c2, right),
        );
    } else {
        let mid = n * left / pieces;
        let (b1, b2) = b.split_at(Axis(1), mid);
        let (c1, c2) = c.split_at(Axis(1), mid);
        rayon::join(
            || gemm_split(alpha, a, b1, beta, c1, left),
            || gemm_split(alpha, a, b2, beta, c2, right),
        );
    }
}
