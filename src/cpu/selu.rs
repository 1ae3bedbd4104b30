//! SELU's constants and its elementwise rules over slices, generic over the element type: the bodies
//! that `Float::selu_slice` and `Float::selu_backward_slice` run (f32 runs `cpu::simd`'s vectorised
//! forms, which use the same constants).

use crate::tensor::Element;
use std::mem::MaybeUninit;

/// SELU's alpha, to full double precision (Klambauer et al. 2017).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_284_817_042_991_671_7;
/// SELU's scale, to full double precision.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_493_419_334_985_294_6;

/// `y = selu(x)`; `y` is only written, so it may be uninitialised memory.
pub fn selu_body<T: Element>(x: &[T], y: &mut [MaybeUninit<T>]) {
    let (alpha, scale) = (T::of(SELU_ALPHA), T::of(SELU_SCALE));
    for (y, &v) in y.iter_mut().zip(x) {
        y.write(if v > T::zero() { scale * v } else { scale * alpha * v.exp_m1() });
    }
}

/// `d = d * selu'(x)` in place (the output gradient in, the input gradient out).
pub fn selu_backward_body<T: Element>(x: &[T], d: &mut [T]) {
    let (alpha, scale) = (T::of(SELU_ALPHA), T::of(SELU_SCALE));
    for (d, &v) in d.iter_mut().zip(x) {
        *d = if v > T::zero() { *d * scale } else { *d * scale * alpha * v.exp() };
    }
}
