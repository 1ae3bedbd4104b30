//! Elementwise activations: ReLU and SELU, with PyTorch's conventions at the kinks (the gradient of
//! ReLU at 0 is 0; SELU uses the `x > 0` branch only for strictly positive x).

use crate::tensor::{Arr, Float};
use ndarray::Data;
use ndarray::{ArrayD, Zip};

/// SELU's alpha, to full double precision (Klambauer et al. 2017).
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_284_817_042_991_671_7;
/// SELU's scale, to full double precision.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_493_419_334_985_294_6;

/// Arrays smaller than this are mapped on one thread.
const PAR_MIN: usize = 1 << 15;

fn map<T: Float>(x: &Arr<impl Data<Elem = T>>, f: impl Fn(T) -> T + Sync + Send) -> ArrayD<T> {
    if x.len() < PAR_MIN {
        x.mapv(f)
    } else {
        Zip::from(x).par_map_collect(|&v| f(v))
    }
}

fn map2<T: Float>(x: &Arr<impl Data<Elem = T>>, dy: &Arr<impl Data<Elem = T>>, f: impl Fn(T, T) -> T + Sync + Send) -> ArrayD<T> {
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

/// `scale * x` for `x > 0`, `scale * alpha * (exp(x) - 1)` otherwise.
pub fn selu<T: Float>(x: &Arr<impl Data<Elem = T>>) -> ArrayD<T> {
    let (alpha, scale) = (T::of(SELU_ALPHA), T::of(SELU_SCALE));
    map(x, move |v| if v > T::zero() { scale * v } else { scale * alpha * v.exp_m1() })
}

/// `dy * scale` for `x > 0`, `dy * scale * alpha * exp(x)` otherwise.
pub fn selu_backward<T: Float>(x: &Arr<impl Data<Elem = T>>, dy: &Arr<impl Data<Elem = T>>) -> ArrayD<T> {
    let (alpha, scale) = (T::of(SELU_ALPHA), T::of(SELU_SCALE));
    map2(x, dy, move |v, d| if v > T::zero() { d * scale } else { d * scale * alpha * v.exp() })
}
