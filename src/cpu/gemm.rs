//! Matrix multiplication on all cores.
//!
//! The single-threaded product is `Float::gemm_on_thread`: specnn's own kernels for f32 on CPUs with
//! AVX2 and FMA (`cpu::sgemm`, which also covers a dense layer at batch 1-4 without copying its
//! weights), matrixmultiply otherwise. We split the output into blocks with `rayon::join` so that every
//! core works on one GEMM; the split is along the larger output dimension, and stops when a block is
//! too small to be worth a thread.

use super::float::Float;
pub use super::float::Reused;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};

/// Multiply-adds below which a GEMM is not split further (about 100 microseconds of work).
const MIN_SPLIT_WORK: usize = 1 << 21;

/// `c = alpha * a . b + beta * c`, using every rayon thread.
pub fn gemm<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    let pieces = rayon::current_num_threads();
    split(alpha, a, b, Existing { c, beta }, pieces);
}

/// `c = alpha * a . b + beta * c` on the calling thread alone (for callers that are already parallel).
pub fn gemm_serial<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
    T::gemm_on_thread(alpha, a, b, beta, c);
}

/// `c = alpha * a . b + beta * c` on the calling thread, with a reused `b`.
pub fn gemm_reused_serial<T: Float>(alpha: T, a: ArrayView2<T>, b: &Reused<T>, beta: T, c: ArrayViewMut2<T>) {
    T::gemm_reused_on_thread(alpha, a, b, beta, c);
}

/// `alpha * a . b` as a new array, using every rayon thread. The array is not filled with zeros
/// first: the product writes every element once (a fill would touch every page of fresh memory
/// once more; BENCHMARKS.md has what it cost).
pub fn matmul<T: Float>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>) -> Array2<T> {
    let (m, n) = (a.nrows(), b.ncols());
    assert_eq!(a.ncols(), b.nrows(), "matmul: inner dimensions differ");
    let mut c = Array2::<T>::uninit((m, n));
    let fresh = Fresh { c: c.as_mut_ptr() as *mut T, ldc: n, m, n };
    split(alpha, a, b, fresh, rayon::current_num_threads());
    // SAFETY: `split` hands every row and column of `c` to exactly one `gemm_fresh_on_thread` call,
    // which writes each of its elements.
    unsafe { c.assume_init() }
}

/// Where a product's output goes: a block of it can be cut in two along rows or columns, and a block
/// is computed on the calling thread.
trait Out<T: Float>: Sized + Send {
    fn dim(&self) -> (usize, usize);
    fn split_rows(self, mid: usize) -> (Self, Self);
    fn split_cols(self, mid: usize) -> (Self, Self);
    fn run(self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>);
}

/// An existing array: `c = alpha * a . b + beta * c`.
struct Existing<'a, T> {
    c: ArrayViewMut2<'a, T>,
    beta: T,
}

impl<T: Float> Out<T> for Existing<'_, T> {
    fn dim(&self) -> (usize, usize) {
        self.c.dim()
    }
    fn split_rows(self, mid: usize) -> (Self, Self) {
        let (c1, c2) = self.c.split_at(Axis(0), mid);
        (Existing { c: c1, beta: self.beta }, Existing { c: c2, beta: self.beta })
    }
    fn split_cols(self, mid: usize) -> (Self, Self) {
        let (c1, c2) = self.c.split_at(Axis(1), mid);
        (Existing { c: c1, beta: self.beta }, Existing { c: c2, beta: self.beta })
    }
    fn run(self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>) {
        T::gemm_on_thread(alpha, a, b, self.beta, self.c)
    }
}

/// A block of a new, uninitialised `m x n` output with rows `ldc` apart (`matmul`).
struct Fresh<T> {
    c: *mut T,
    ldc: usize,
    m: usize,
    n: usize,
}

// SAFETY: a `Fresh` is the only handle on its block of the output (`split_*` hands out disjoint
// blocks), so moving it to another thread is like moving a `&mut` to that block.
unsafe impl<T: Send> Send for Fresh<T> {}

impl<T: Float> Out<T> for Fresh<T> {
    fn dim(&self) -> (usize, usize) {
        (self.m, self.n)
    }
    fn split_rows(self, mid: usize) -> (Self, Self) {
        assert!(mid <= self.m);
        // SAFETY: row `mid` is inside (or one past) the block.
        let c2 = unsafe { self.c.add(mid * self.ldc) };
        (Fresh { m: mid, ..self }, Fresh { c: c2, m: self.m - mid, ..self })
    }
    fn split_cols(self, mid: usize) -> (Self, Self) {
        assert!(mid <= self.n);
        // SAFETY: column `mid` is inside (or one past) the block's first row.
        let c2 = unsafe { self.c.add(mid) };
        (Fresh { n: mid, ..self }, Fresh { c: c2, n: self.n - mid, ..self })
    }
    fn run(self, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>) {
        assert_eq!((a.nrows(), b.ncols()), (self.m, self.n));
        // SAFETY: the block is `m x n` with rows `ldc` apart inside the array `matmul` allocated,
        // and only this handle reaches it.
        unsafe { T::gemm_fresh_on_thread(alpha, a, b, self.c, self.ldc) }
    }
}

fn split<T: Float, O: Out<T>>(alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, c: O, pieces: usize) {
    let (m, n) = c.dim();
    let work = m * n * a.ncols();
    if pieces <= 1 || work < 2 * MIN_SPLIT_WORK || (m < 16 && n < 16) {
        c.run(alpha, a, b);
        return;
    }
    let left = pieces / 2;
    let right = pieces - left;
    if m >= n {
        let mid = m * left / pieces;
        let (a1, a2) = a.split_at(Axis(0), mid);
        let (c1, c2) = c.split_rows(mid);
        rayon::join(|| split(alpha, a1, b, c1, left), || split(alpha, a2, b, c2, right));
    } else {
        let mid = n * left / pieces;
        let (b1, b2) = b.split_at(Axis(1), mid);
        let (c1, c2) = c.split_cols(mid);
        rayon::join(|| split(alpha, a, b1, c1, left), || split(alpha, a, b2, c2, right));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn rand<T: Float>(m: usize, n: usize, seed: u64) -> Array2<T> {
        let mut s = seed;
        Array2::from_shape_fn((m, n), |_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            T::of(((s >> 40) as f64 / (1u64 << 24) as f64) - 0.5)
        })
    }

    /// `matmul` (uninitialised output, split across threads) gives the bits of `gemm` into a zeroed
    /// array, for the operand layouts of a dense layer, in both element types, at sizes that are
    /// split and sizes that are not.
    fn matches_gemm<T: Float>() {
        for (m, k, n) in [(1, 3, 2), (5, 143, 40), (64, 512, 512), (512, 64, 143), (130, 300, 7)] {
            let a = rand::<T>(m, k, 1);
            let b = rand::<T>(k, n, 2);
            let (at, bt) = (a.t().to_owned(), b.t().to_owned());
            for (av, bv) in [(a.view(), b.view()), (at.t(), b.view()), (a.view(), bt.t())] {
                let got = matmul(T::of(0.5), av, bv);
                let mut want = Array2::<T>::zeros((m, n));
                gemm(T::of(0.5), av, bv, T::zero(), want.view_mut());
                assert_eq!(got, want, "m {m} k {k} n {n}");
            }
        }
        let empty = matmul(T::one(), rand::<T>(4, 0, 3).view(), rand::<T>(0, 5, 4).view());
        assert!(empty.shape() == [4, 5] && empty.iter().all(|&v| v == T::zero()), "k = 0 gives zeros");
    }

    #[test]
    fn matmul_matches_gemm_f32() {
        matches_gemm::<f32>();
    }

    #[test]
    fn matmul_matches_gemm_f64() {
        matches_gemm::<f64>();
    }
}
