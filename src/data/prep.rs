//! Preprocessing steps of the seed, each a plain function on arrays.

use crate::error::{Error, Result};
use crate::tensor::Float;
use ndarray::{Array2, Array4, ArrayView2, Axis};

/// Per-row min-max normalisation `x' = (x - min) / (max - min)` of `x [N, L]`.
///
/// A row that is flat (max = min) or holds a non-finite value is an error naming the row, never a
/// division by zero.
pub fn minmax<T: Float>(x: ArrayView2<T>) -> Result<Array2<T>> {
    let mut out = x.to_owned();
    for (i, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!("minmax: row {i} has a non-finite value at pixel {j}")));
        }
        let (lo, hi) = row.iter().fold((T::infinity(), T::neg_infinity()), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if !(hi > lo) {
            return Err(Error::Data(format!("minmax: row {i} is flat (every value is {lo}); it cannot be normalised")));
        }
        let range = hi - lo;
        row.mapv_inplace(|v| (v - lo) / range);
    }
    Ok(out)
}

/// The S-shaped fold of `x [N, side*side]` into images `[N, 1, side, side]`: row `k` of the image holds
/// pixels `k*side .. (k+1)*side`, left to right when `k` is even and right to left when `k` is odd, so
/// neighbouring pixels stay neighbours across row ends.
pub fn fold_s<T: Float>(x: ArrayView2<T>, side: usize) -> Result<Array4<T>> {
    let (n, l) = x.dim();
    if side == 0 || l != side * side {
        return Err(Error::shape("fold_s", format!("spectra must have side^2 = {} pixels", side * side), &[x.shape()]));
    }
    let mut out = Array4::<T>::zeros((n, 1, side, side));
    for (s, spec) in x.axis_iter(Axis(0)).enumerate() {
        for k in 0..side {
            for j in 0..side {
                let col = if k % 2 == 0 { j } else { side - 1 - j };
                out[[s, 0, k, col]] = spec[k * side + j];
            }
        }
    }
    Ok(out)
}
