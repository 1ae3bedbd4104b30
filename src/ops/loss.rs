//! Losses: mean absolute error (the seed's training loss) and mean squared error, averaged over all
//! elements, with PyTorch's gradient conventions (the derivative of |0| is 0).

use crate::error::{Error, Result};
use crate::tensor::{Arr, Float};
use ndarray::Data;
use ndarray::{ArrayD, Zip};

fn check<T: Float>(op: &'static str, pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>) -> Result<()> {
    if pred.shape() != target.shape() {
        return Err(Error::shape(op, "pred and target must have the same shape", &[pred.shape(), target.shape()]));
    }
    if pred.is_empty() {
        return Err(Error::shape(op, "the loss of an empty tensor is undefined", &[pred.shape()]));
    }
    Ok(())
}

/// `mean |pred - target|`.
pub fn mae<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>) -> Result<T> {
    check("mae_loss", pred, target)?;
    let sum = Zip::from(pred).and(target).fold(T::zero(), |acc, &p, &t| acc + (p - t).abs());
    Ok(sum / T::of(pred.len() as f64))
}

/// Gradient of `mae` with respect to `pred` for upstream scalar `g` (the target's is its negative).
pub fn mae_backward<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>, g: T) -> ArrayD<T> {
    let k = g / T::of(pred.len() as f64);
    Zip::from(pred).and(target).map_collect(|&p, &t| {
        let d = p - t;
        if d > T::zero() {
            k
        } else if d < T::zero() {
            -k
        } else {
            T::zero()
        }
    })
}

/// `mean (pred - target)^2`.
pub fn mse<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>) -> Result<T> {
    check("mse_loss", pred, target)?;
    let sum = Zip::from(pred).and(target).fold(T::zero(), |acc, &p, &t| acc + (p - t) * (p - t));
    Ok(sum / T::of(pred.len() as f64))
}

/// Gradient of `mse` with respect to `pred` for upstream scalar `g`.
pub fn mse_backward<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>, g: T) -> ArrayD<T> {
    let k = T::of(2.0) * g / T::of(pred.len() as f64);
    Zip::from(pred).and(target).map_collect(|&p, &t| k * (p - t))
}

/// `sum(mask |pred - target|) / sum(mask)`: the MAE over the elements whose target is known (mask 1),
/// so that a star with an unknown label is skipped for that label. An error when nothing is known.
pub fn masked_mae<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>, mask: &Arr<impl Data<Elem = T>>) -> Result<T> {
    let sum = masked_abs_sum(pred, target, mask)?;
    let count = mask.sum();
    if !(count > T::zero()) {
        return Err(Error::invalid("masked_mae_loss", "every target is masked: no label to learn from"));
    }
    Ok(sum / count)
}

/// Gradient of `masked_mae` with respect to `pred` for upstream scalar `g`.
pub fn masked_mae_backward<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>, mask: &Arr<impl Data<Elem = T>>, g: T) -> ArrayD<T> {
    masked_mae_grad(pred, target, mask, g / mask.sum())
}

/// `k * mask * sign(pred - target)`: the gradient of `k * sum mask |pred - target|` with respect to
/// `pred` (0 where the difference is 0, as in PyTorch).
pub fn masked_mae_grad<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>, mask: &Arr<impl Data<Elem = T>>, k: T) -> ArrayD<T> {
    Zip::from(pred).and(target).and(mask).map_collect(|&p, &t, &m| {
        let d = p - t;
        if m <= T::zero() || d == T::zero() {
            T::zero()
        } else if d > T::zero() {
            k * m
        } else {
            -k * m
        }
    })
}

/// `sum mask |pred - target|` over the elements where `mask` is positive (`masked_mae` before the
/// division by the mask's sum).
pub fn masked_abs_sum<T: Float>(pred: &Arr<impl Data<Elem = T>>, target: &Arr<impl Data<Elem = T>>, mask: &Arr<impl Data<Elem = T>>) -> Result<T> {
    check("masked_mae_loss", pred, target)?;
    if mask.shape() != pred.shape() {
        return Err(Error::shape("masked_mae_loss", "mask must have the shape of pred", &[pred.shape(), mask.shape()]));
    }
    Ok(Zip::from(pred).and(target).and(mask).fold(T::zero(), |acc, &p, &t, &m| if m > T::zero() { acc + m * (p - t).abs() } else { acc }))
}
