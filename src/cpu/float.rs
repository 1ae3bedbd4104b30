//! The element trait of the CPU kernels: [`Float`], an [`Element`] (the type and its conversions) with
//! hooks for the kernels that differ by type (f32's packed GEMM and vectorised SELU and Adam loops;
//! f64 runs the generic bodies), and [`Reused`], the right-hand operand form its products share.

use super::adam::AdamStep;
use super::sgemm::PackedB;
use super::simd::Rows2;
use crate::tensor::Element;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use std::mem::MaybeUninit;

pub use super::selu::{SELU_ALPHA, SELU_SCALE};

/// A right-hand operand that several products read (a piece's layer input in
/// `Adam::step_deferred`, read by every block of the weight's rows): the array, and where
/// `cpu::sgemm`'s broadcast kernel runs (f32 with AVX2 and FMA), its copy in that kernel's strips
/// ([`PackedB`], made once by `Float::pack_reused`), which the products
/// read instead of copying each strip themselves. Same bits either way. Built only inside the crate,
/// from an array and the copy made from it (`autograd::DeferredDense` keeps the two together), so
/// that they cannot differ.
#[derive(Clone, Copy)]
pub struct Reused<'a, T> {
    pub(crate) view: ArrayView2<'a, T>,
    pub(crate) packed: Option<&'a PackedB>,
}

impl<'a, T> Reused<'a, T> {
    /// The packed copy, if there is one of the array's shape.
    pub(crate) fn packed(&self) -> Option<&'a PackedB> {
        self.packed.filter(|p| (p.nrows(), p.ncols()) == self.view.dim())
    }
}

/// The floating-point element types the CPU path is generic over: an [`Element`] with the kernels it runs.
/// Each hook has a plain generic body; f32 overrides the ones it has vectorised or packed kernels for.
pub trait Float: Element {
    /// `c = alpha * a . b + beta * c` on the calling thread: matrixmultiply, unless the type has kernels
    /// of its own for these operands (f32: `cpu::sgemm`).
    fn gemm_on_thread(alpha: Self, a: ArrayView2<Self>, b: ArrayView2<Self>, beta: Self, mut c: ArrayViewMut2<Self>) {
        general_mat_mul(alpha, &a, &b, beta, &mut c);
    }
    /// `c = alpha * a . b` on the calling thread into raw output rows (element (i, j) at
    /// `c + i * ldc + j`) that are written, never read, so they may be uninitialised memory:
    /// matrixmultiply's rule for `beta = 0`, and `cpu::sgemm`'s.
    ///
    /// # Safety
    /// `c` must be valid for writes of an `a.nrows() x b.ncols()` matrix with rows `ldc` apart that
    /// no one else accesses during the call.
    unsafe fn gemm_fresh_on_thread(alpha: Self, a: ArrayView2<Self>, b: ArrayView2<Self>, c: *mut Self, ldc: usize);
    /// `b` in the form that this type's products reuse ([`Reused`]): f32 packs it for
    /// `cpu::sgemm`'s broadcast kernel where that runs; other types read `b` itself.
    fn pack_reused(_b: ArrayView2<Self>) -> Option<PackedB> {
        None
    }
    /// `pack_reused`, only where `gemm_on_thread(a, b)` would copy `b` into those strips itself (f32:
    /// `cpu::sgemm`'s broadcast kernel), so that products with the copy give the same bits as
    /// without it.
    fn pack_reused_for(_a: ArrayView2<Self>, _b: ArrayView2<Self>) -> Option<PackedB> {
        None
    }
    /// `gemm_on_thread` with a reused right-hand operand.
    fn gemm_reused_on_thread(alpha: Self, a: ArrayView2<Self>, b: &Reused<Self>, beta: Self, c: ArrayViewMut2<Self>) {
        Self::gemm_on_thread(alpha, a, b.view, beta, c)
    }
    /// `gemm_fresh_on_thread` with a reused right-hand operand.
    ///
    /// # Safety
    /// As for `gemm_fresh_on_thread`.
    unsafe fn gemm_reused_fresh_on_thread(
        alpha: Self,
        a: ArrayView2<Self>,
        b: &Reused<Self>,
        c: *mut Self,
        ldc: usize,
    ) {
        Self::gemm_fresh_on_thread(alpha, a, b.view, c, ldc)
    }
    /// `y = selu(x)` over contiguous slices (f32: vectorised, `cpu::simd`); `y` is only written, so
    /// it may be uninitialised memory.
    fn selu_slice(x: &[Self], y: &mut [MaybeUninit<Self>]) {
        super::selu::selu_body(x, y)
    }
    /// `d = d * selu'(x)` over contiguous slices, in place (the output gradient in, the input
    /// gradient out).
    fn selu_backward_slice(x: &[Self], d: &mut [Self]) {
        super::selu::selu_backward_body(x, d)
    }
    /// One frequency bin of an FFT convolution's forward pass at a small batch (`cpu::simd::xconj_w_body`;
    /// f32: vectorised).
    fn xconj_w(c: usize, x: Rows2<Self>, w: Rows2<Self>, yr: &mut [Self], yi: &mut [Self]) {
        super::simd::xconj_w_body(c, x, w, yr, yi)
    }
    /// One Adam update over contiguous slices (f32: vectorised).
    fn adam_slice(k: AdamStep<Self>, p: &mut [Self], g: &[Self], m: &mut [Self], v: &mut [Self]) {
        super::adam::adam_body(k, p, g, m, v)
    }
}

impl Float for f32 {
    fn gemm_on_thread(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
        match super::sgemm::layout(&a, &b, &c) {
            Some(layout) => super::sgemm::gemm(alpha, a, b, beta, c, layout),
            None => general_mat_mul(alpha, &a, &b, beta, &mut c),
        }
    }
    unsafe fn gemm_fresh_on_thread(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, c: *mut f32, ldc: usize) {
        let (m, n) = (a.nrows(), b.ncols());
        match super::sgemm::layout_rows(&a, &b) {
            Some(layout) if m > 0 && n > 0 => super::sgemm::gemm_raw(alpha, a, b, 0.0, c, ldc as isize, layout),
            _ => fresh_by(matrixmultiply::sgemm, alpha, a, b, c, ldc),
        }
    }
    fn pack_reused(b: ArrayView2<f32>) -> Option<PackedB> {
        super::sgemm::available().then(|| super::sgemm::pack_b(b))
    }
    fn pack_reused_for(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Option<PackedB> {
        use super::sgemm;
        (a.nrows() > 0 && b.ncols() > 0 && sgemm::layout_rows(&a, &b) == Some(sgemm::Layout::Packed))
            .then(|| sgemm::pack_b(b))
    }
    fn gemm_reused_on_thread(alpha: f32, a: ArrayView2<f32>, b: &Reused<f32>, beta: f32, c: ArrayViewMut2<f32>) {
        match b.packed() {
            Some(p) if c.ncols() <= 1 || c.strides()[1] == 1 => super::sgemm::gemm_packed(alpha, a, p, beta, c),
            _ => Self::gemm_on_thread(alpha, a, b.view, beta, c),
        }
    }
    unsafe fn gemm_reused_fresh_on_thread(alpha: f32, a: ArrayView2<f32>, b: &Reused<f32>, c: *mut f32, ldc: usize) {
        match b.packed() {
            Some(p) if a.nrows() > 0 && p.ncols() > 0 => {
                super::sgemm::gemm_packed_raw(alpha, a, p, 0.0, c, ldc as isize)
            }
            _ => Self::gemm_fresh_on_thread(alpha, a, b.view, c, ldc),
        }
    }
    fn selu_slice(x: &[f32], y: &mut [MaybeUninit<f32>]) {
        super::simd::selu(x, y)
    }
    fn selu_backward_slice(x: &[f32], d: &mut [f32]) {
        super::simd::selu_backward(x, d)
    }
    fn adam_slice(k: AdamStep<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        super::simd::adam(k, p, g, m, v)
    }
    fn xconj_w(c: usize, x: Rows2<f32>, w: Rows2<f32>, yr: &mut [f32], yi: &mut [f32]) {
        super::simd::xconj_w(c, x, w, yr, yi)
    }
}

impl Float for f64 {
    unsafe fn gemm_fresh_on_thread(alpha: f64, a: ArrayView2<f64>, b: ArrayView2<f64>, c: *mut f64, ldc: usize) {
        fresh_by(matrixmultiply::dgemm, alpha, a, b, c, ldc)
    }
}

/// matrixmultiply's `sgemm` or `dgemm` (one signature): `m, k, n, alpha, a, a's strides, b, b's
/// strides, beta, c, c's strides`.
type RawGemm<T> =
    unsafe fn(usize, usize, usize, T, *const T, isize, isize, *const T, isize, isize, T, *mut T, isize, isize);

/// `c = alpha * a . b` by matrixmultiply's kernel `f` into raw output rows `ldc` apart (beta 0: `c`
/// is written, never read).
///
/// # Safety
/// As for `Float::gemm_fresh_on_thread`.
unsafe fn fresh_by<T: Element>(f: RawGemm<T>, alpha: T, a: ArrayView2<T>, b: ArrayView2<T>, c: *mut T, ldc: usize) {
    let ((m, k), n) = (a.dim(), b.ncols());
    let (sa, sb) = (a.strides(), b.strides());
    f(m, k, n, alpha, a.as_ptr(), sa[0], sa[1], b.as_ptr(), sb[0], sb[1], T::zero(), c, ldc as isize, 1)
}
