//! Elementwise activations: ReLU and SELU, with PyTorch's conventions at the kinks (the gradient of
//! ReLU at 0 is 0; SELU uses the `x > 0` branch only for strictly positive x).

use crate::cpu::Float;
use crate::tensor::Arr;
use ndarray::Data;
use ndarray::{ArrayD, Zip};
use rayon::prelude::*;

/// SELU's constants live beside the CPU kernels that use them; re-exported here for the ops.
pub use crate::cpu::selu::{SELU_ALPHA, SELU_SCALE};

/// Arrays smaller than this are mapped on one thread.
const PAR_MIN: usize = 1 << 15;

fn map<T: Float>(x: &Arr<impl Data<Elem = T>>, f: impl Fn(T) -> T + Sync + Send) -> ArrayD<T> {
    if x.len() < PAR_MIN {
        x.mapv(f)
    } else {
        Zip::from(x).par_map_collect(|&v| f(v))
    }
}

fn map2<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    dy: &Arr<impl Data<Elem = T>>,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> ArrayD<T> {
    if x.len() < PAR_MIN {
        Zip::from(x).and(dy).map_collect(|&v, &d| f(v, d))
    } else {
        Zip::from(x).and(dy).par_map_collect(|&v, &d| f(v, d))
    }
}

/// `max(x, 0)`.
pub fn relu<T: Float>(x: &Arr<impl Data<Elem = T>>) -> ArrayD<T> {
    map(x, |v| if v > T::zero() { v } else { T::zero() })
}

/// `dy` where `x > 0`, else 0.
pub fn relu_backward<T: Float>(x: &Arr<impl Data<Elem = T>>, dy: &Arr<impl Data<Elem = T>>) -> ArrayD<T> {
    map2(x, dy, |v, d| if v > T::zero() { d } else { T::zero() })
}

/// Elements per parallel chunk of the slice-wise activations.
const CHUNK: usize = 1 << 14;

/// `scale * x` for `x > 0`, `scale * alpha * (exp(x) - 1)` otherwise (the slice kernel of `T`, in
/// parallel chunks).
pub fn selu<T: Float>(x: &Arr<impl Data<Elem = T>>) -> ArrayD<T> {
    // Written, never read, so not cleared first (the clearing was a memset of every activation).
    let mut y = ArrayD::<T>::uninit(x.raw_dim());
    match (x.as_slice(), y.as_slice_mut()) {
        (Some(xs), Some(ys)) if xs.len() < PAR_MIN => T::selu_slice(xs, ys),
        (Some(xs), Some(ys)) => {
            ys.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(y, x)| T::selu_slice(x, y))
        }
        _ => Zip::from(&mut y).and(x).for_each(|y, &v| T::selu_slice(&[v], std::slice::from_mut(y))),
    }
    // SAFETY: every element was written above (the slices cover the array; the Zip visits each).
    unsafe { y.assume_init() }
}

/// `dy * scale` for `x > 0`, `dy * scale * alpha * exp(x)` otherwise.
pub fn selu_backward<T: Float>(x: &Arr<impl Data<Elem = T>>, dy: &Arr<impl Data<Elem = T>>) -> ArrayD<T> {
    selu_backward_into(x, dy.to_owned())
}

/// `selu_backward` written over `dy`, which it consumes (the tape's gradients, used once): no new
/// array to allocate and clear.
pub fn selu_backward_into<T: Float>(x: &Arr<impl Data<Elem = T>>, mut dy: ArrayD<T>) -> ArrayD<T> {
    assert_eq!(x.shape(), dy.shape(), "selu_backward: x and dy differ in shape");
    match (x.as_slice(), dy.as_slice_mut()) {
        (Some(xs), Some(ds)) if xs.len() < PAR_MIN => T::selu_backward_slice(xs, ds),
        (Some(xs), Some(ds)) => {
            ds.par_chunks_mut(CHUNK).zip(xs.par_chunks(CHUNK)).for_each(|(d, x)| T::selu_backward_slice(x, d))
        }
        _ => Zip::from(&mut dy).and(x).for_each(|d, &v| T::selu_backward_slice(&[v], std::slice::from_mut(d))),
    }
    dy
}
