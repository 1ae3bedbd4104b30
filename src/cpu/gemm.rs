//! Matrix multiplication on all cores.
//!
//! The single-threaded kernel is `matrixmultiply` (through ndarray's `general_mat_mul`), which packs
//! panels and runs AVX2/FMA micro-kernels picked at run time for f32 and f64, in safe code from our side.
//! We split the output into blocks with `rayon::join` so that every core works on one GEMM; the split is
//! along the larger output dimension, and stops when a block is too small to be worth a thread.

use crate::tensor::Float;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// Multiply-adds below which a GEMM is not split further (about 100 microseconds of work).
const MIN_SPLIT_WORK: usize = 1 << 21;

/// `c = alpha * a . b + beta * c`, using every rayon thread.
pub fn gemm<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    if a.nrows() <= SMALL_M {
        if let Some(c) = gemm_small_m(alpha, a, b, beta, c) {
            let pieces = rayon::current_num_threads();
            gemm_split(alpha, a, b, beta, c, pieces);
        }
        return;
    }
    let pieces = rayon::current_num_threads();
    gemm_split(alpha, a, b, beta, c, pieces);
}

/// At most this many rows of `a` (a dense layer at batch 1-4) go to the dot-product path.
const SMALL_M: usize = 4;

/// Dot product with eight partial sums (vectorisable; a fixed order, so results are reproducible).
fn dot<T: Float>(x: &[T], y: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for i in 0..8 {
            acc[i] = acc[i] + xs[i] * ys[i];
        }
    }
    let mut tail = T::zero();
    for (&a, &b) in xr.iter().zip(yr) {
        tail = tail + a * b;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// A dense layer's forward pass at a small batch, `x . W^T` with `b = W^T` (so each output is a dot
/// product of two contiguous rows): no packing of the weight matrix, which matrixmultiply would do on
/// every call and which costs as much as the product itself for one row. Returns `c` back when the
/// operands are not laid out for it.
fn gemm_small_m<'c, T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, mut c: ArrayViewMut2<'c, T>) -> Option<ArrayViewMut2<'c, T>> {
    let k = a.ncols();
    let bt = b.t();
    let (Some(_), Some(_)) = (a.as_slice(), bt.as_slice()) else { return Some(c) };
    let n = c.ncols();
    let work = a.nrows() * n * k;
    let row = |i: usize, j: usize| {
        let ar = a.row(i);
        let wr = bt.row(j);
        dot(ar.as_slice().expect("contiguous"), wr.as_slice().expect("contiguous"))
    };
    for i in 0..a.nrows() {
        let mut ci = c.row_mut(i);
        let update = |j: usize, cj: &mut T| {
            let v = alpha * row(i, j);
            *cj = if beta == T::zero() { v } else { v + beta * *cj };
        };
        match ci.as_slice_mut() {
            Some(cs) if work >= 2 * MIN_SPLIT_WORK => {
                use rayon::prelude::*;
                cs.par_iter_mut().enumerate().for_each(|(j, cj)| update(j, cj));
            }
            Some(cs) => cs.iter_mut().enumerate().for_each(|(j, cj)| update(j, cj)),
            None => ci.iter_mut().enumerate().for_each(|(j, cj)| update(j, cj)),
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::linalg::general_mat_mul;
    use ndarray::Array2;

    /// The small-batch dot-product path equals matrixmultiply's GEMM (f64, 1e-12 relative).
    #[test]
    fn small_m_path_matches_general_gemm() {
        let mut s = 7u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 33) as f64 / (1u64 << 31) as f64 - 0.5
        };
        for (m, k, n) in [(1, 1, 1), (1, 143, 512), (2, 9, 17), (3, 70, 5), (4, 512, 3), (1, 8, 8), (4, 33, 64)] {
            let a = Array2::from_shape_fn((m, k), |_| next());
            let w = Array2::from_shape_fn((n, k), |_| next());
            for beta in [0.0, 1.0] {
                let c0 = Array2::from_shape_fn((m, n), |_| next());
                let (mut fast, mut slow) = (c0.clone(), c0.clone());
                gemm(1.5, a.view(), w.t(), beta, fast.view_mut());
                general_mat_mul(1.5, &a.view(), &w.t(), beta, &mut slow.view_mut());
                for (x, y) in fast.iter().zip(slow.iter()) {
                    assert!((x - y).abs() <= 1e-12 * y.abs().max(1.0), "m {m} k {k} n {n} beta {beta}: {x} vs {y}");
                }
            }
        }
    }
}
