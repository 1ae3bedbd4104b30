//! The element type and the tensor type of the CPU path.
//!
//! specnn's CPU tensors are `ndarray` arrays (`ArrayD<T>`, row-major, PyTorch's layouts) over an element
//! type `T: Float`, implemented for `f32` (training and inference) and `f64` (gradient checks). The
//! shapes are PyTorch's: images `[N, C, H, W]`, dense inputs `[N, features]`, conv weights `[O, C, KH, KW]`,
//! dense weights `[O, I]`.

use crate::cpu::gemm::Reused;
use crate::cpu::simd::Rows2;
use crate::ops::activation::{SELU_ALPHA, SELU_SCALE};
use crate::optim::AdamStep;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, LinalgScalar, ScalarOperand};
use std::fmt::{Debug, Display};
use std::mem::MaybeUninit;
use std::ops::{AddAssign, MulAssign, SubAssign};

/// A CPU tensor: an n-dimensional row-major array.
pub type Tensor<T> = ArrayD<T>;

/// The floating-point element types the CPU path is generic over.
pub trait Float:
    num_traits::Float
    + LinalgScalar
    + ScalarOperand
    + AddAssign
    + SubAssign
    + MulAssign
    + std::iter::Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + rustfft::FftNum
    + 'static
{
    /// The safetensors dtype name of this type.
    const DTYPE: safetensors::Dtype;
    /// Converts from f64 (rounding to nearest for f32).
    fn of(x: f64) -> Self;
    /// Widens to f64.
    fn f64(self) -> f64;
    /// Reads one little-endian element.
    fn from_le(bytes: &[u8]) -> Self;
    /// Appends this element in little-endian order.
    fn push_le(self, out: &mut Vec<u8>);
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
    /// `b` in the form that this type's products reuse (`cpu::gemm::Reused`): f32 packs it for
    /// `cpu::sgemm`'s broadcast kernel where that runs; other types read `b` itself.
    fn pack_reused(_b: ArrayView2<Self>) -> Option<crate::cpu::sgemm::PackedB> {
        None
    }
    /// `pack_reused`, only where `gemm_on_thread(a, b)` would copy `b` into those strips itself (f32:
    /// `cpu::sgemm`'s broadcast kernel), so that products with the copy give the same bits as
    /// without it.
    fn pack_reused_for(_a: ArrayView2<Self>, _b: ArrayView2<Self>) -> Option<crate::cpu::sgemm::PackedB> {
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
        let (alpha, scale) = (Self::of(SELU_ALPHA), Self::of(SELU_SCALE));
        for (y, &v) in y.iter_mut().zip(x) {
            y.write(if v > Self::zero() { scale * v } else { scale * alpha * v.exp_m1() });
        }
    }
    /// `d = d * selu'(x)` over contiguous slices, in place (the output gradient in, the input
    /// gradient out).
    fn selu_backward_slice(x: &[Self], d: &mut [Self]) {
        let (alpha, scale) = (Self::of(SELU_ALPHA), Self::of(SELU_SCALE));
        for (d, &v) in d.iter_mut().zip(x) {
            *d = if v > Self::zero() { *d * scale } else { *d * scale * alpha * v.exp() };
        }
    }
    /// One frequency bin of an FFT convolution's forward pass at a small batch (`cpu::simd::xconj_w_body`;
    /// f32: vectorised).
    fn xconj_w(c: usize, x: Rows2<Self>, w: Rows2<Self>, yr: &mut [Self], yi: &mut [Self]) {
        crate::cpu::simd::xconj_w_body(c, x, w, yr, yi)
    }
    /// One Adam update over contiguous slices (f32: vectorised).
    fn adam_slice(k: AdamStep<Self>, p: &mut [Self], g: &[Self], m: &mut [Self], v: &mut [Self]) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            k.apply(p, g, m, v);
        }
    }
}

impl Float for f32 {
    const DTYPE: safetensors::Dtype = safetensors::Dtype::F32;
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn push_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    fn gemm_on_thread(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>) {
        match crate::cpu::sgemm::layout(&a, &b, &c) {
            Some(layout) => crate::cpu::sgemm::gemm(alpha, a, b, beta, c, layout),
            None => general_mat_mul(alpha, &a, &b, beta, &mut c),
        }
    }
    unsafe fn gemm_fresh_on_thread(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, c: *mut f32, ldc: usize) {
        let ((m, k), n) = (a.dim(), b.ncols());
        match crate::cpu::sgemm::layout_rows(&a, &b) {
            Some(layout) if m > 0 && n > 0 => crate::cpu::sgemm::gemm_raw(alpha, a, b, 0.0, c, ldc as isize, layout),
            _ => {
                let (sa, sb) = (a.strides(), b.strides());
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    alpha,
                    a.as_ptr(),
                    sa[0],
                    sa[1],
                    b.as_ptr(),
                    sb[0],
                    sb[1],
                    0.0,
                    c,
                    ldc as isize,
                    1,
                )
            }
        }
    }
    fn pack_reused(b: ArrayView2<f32>) -> Option<crate::cpu::sgemm::PackedB> {
        crate::cpu::sgemm::available().then(|| crate::cpu::sgemm::pack_b(b))
    }
    fn pack_reused_for(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Option<crate::cpu::sgemm::PackedB> {
        use crate::cpu::sgemm;
        (a.nrows() > 0 && b.ncols() > 0 && sgemm::layout_rows(&a, &b) == Some(sgemm::Layout::Packed))
            .then(|| sgemm::pack_b(b))
    }
    fn gemm_reused_on_thread(alpha: f32, a: ArrayView2<f32>, b: &Reused<f32>, beta: f32, c: ArrayViewMut2<f32>) {
        match b.packed() {
            Some(p) if c.ncols() <= 1 || c.strides()[1] == 1 => crate::cpu::sgemm::gemm_packed(alpha, a, p, beta, c),
            _ => Self::gemm_on_thread(alpha, a, b.view, beta, c),
        }
    }
    unsafe fn gemm_reused_fresh_on_thread(alpha: f32, a: ArrayView2<f32>, b: &Reused<f32>, c: *mut f32, ldc: usize) {
        match b.packed() {
            Some(p) if a.nrows() > 0 && p.ncols() > 0 => {
                crate::cpu::sgemm::gemm_packed_raw(alpha, a, p, 0.0, c, ldc as isize)
            }
            _ => Self::gemm_fresh_on_thread(alpha, a, b.view, c, ldc),
        }
    }
    fn selu_slice(x: &[f32], y: &mut [MaybeUninit<f32>]) {
        crate::cpu::simd::selu(x, y)
    }
    fn selu_backward_slice(x: &[f32], d: &mut [f32]) {
        crate::cpu::simd::selu_backward(x, d)
    }
    fn adam_slice(k: AdamStep<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        crate::cpu::simd::adam(k, p, g, m, v)
    }
    fn xconj_w(c: usize, x: Rows2<f32>, w: Rows2<f32>, yr: &mut [f32], yi: &mut [f32]) {
        crate::cpu::simd::xconj_w(c, x, w, yr, yi)
    }
}

impl Float for f64 {
    const DTYPE: safetensors::Dtype = safetensors::Dtype::F64;
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn from_le(b: &[u8]) -> Self {
        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
    fn push_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
    unsafe fn gemm_fresh_on_thread(alpha: f64, a: ArrayView2<f64>, b: ArrayView2<f64>, c: *mut f64, ldc: usize) {
        let ((m, k), n) = (a.dim(), b.ncols());
        let (sa, sb) = (a.strides(), b.strides());
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            0.0,
            c,
            ldc as isize,
            1,
        )
    }
}

/// Converts an array between element types (f32 <-> f64).
pub fn cast<A: Float, B: Float>(a: &ArrayD<A>) -> ArrayD<B> {
    a.mapv(|v| B::of(v.f64()))
}

/// Any n-dimensional array of `T` (owned, view or copy-on-write): what the ops take as input, so that
/// the tape can pass its values without copying them.
pub type Arr<S> = ndarray::ArrayBase<S, ndarray::IxDyn>;
