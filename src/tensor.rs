//! The element type and the tensor type of the CPU path.
//!
//! specnn's CPU tensors are `ndarray` arrays (`ArrayD<T>`, row-major, PyTorch's layouts) over an element
//! type: [`Element`] (the type and its conversions, here) with the kernels of [`crate::cpu::Float`],
//! implemented for `f32` (training and inference) and `f64` (gradient checks). The shapes are PyTorch's:
//! images `[N, C, H, W]`, dense inputs `[N, features]`, conv weights `[O, C, KH, KW]`, dense weights `[O, I]`.

use ndarray::{ArrayD, LinalgScalar, ScalarOperand};
use std::fmt::{Debug, Display};
use std::ops::{AddAssign, MulAssign, SubAssign};

/// A CPU tensor: an n-dimensional row-major array.
pub type Tensor<T> = ArrayD<T>;

/// The floating-point element types of the CPU path, as data: the type, its safetensors name and its
/// conversions. The kernels each type runs (`cpu::Float`) build on it.
pub trait Element:
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
}

impl Element for f32 {
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
}

impl Element for f64 {
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
}

/// Converts an array between element types (f32 <-> f64).
pub fn cast<A: Element, B: Element>(a: &ArrayD<A>) -> ArrayD<B> {
    a.mapv(|v| B::of(v.f64()))
}

/// Any n-dimensional array of `T` (owned, view or copy-on-write): what the ops take as input, so that
/// the tape can pass its values without copying them.
pub type Arr<S> = ndarray::ArrayBase<S, ndarray::IxDyn>;
