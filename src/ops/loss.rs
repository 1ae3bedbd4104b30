//! Losses: mean absolute error (the seed's training loss) and mean squared error, averaged over all
//! elements, with PyTorch's gradient conventions (the derivative of |0| is 0); and the Gaussian
//! negative log-likelihood of a network that predicts a mean and a log-variance per label
//! (`train --loss nll`).

use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::tensor::Arr;
use ndarray::Data;
use ndarray::{ArrayD, Zip};

/// Which plain loss a tape records (`autograd::Tape::loss`); the discriminant selects the GPU kernel's
/// branch (`shaders/loss.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    Mae = 0,
    Mse = 1,
    MaskedMae = 2,
}

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
pub fn masked_mae<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
) -> Result<T> {
    let sum = masked_abs_sum(pred, target, mask)?;
    let count = mask.sum();
    if !(count > T::zero()) {
        return Err(Error::invalid("masked_mae_loss", "every target is masked: no label to learn from"));
    }
    Ok(sum / count)
}

/// Gradient of `masked_mae` with respect to `pred` for upstream scalar `g`.
pub fn masked_mae_backward<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
    g: T,
) -> ArrayD<T> {
    masked_mae_grad(pred, target, mask, g / mask.sum())
}

/// `k * mask * sign(pred - target)`: the gradient of `k * sum mask |pred - target|` with respect to
/// `pred` (0 where the difference is 0, as in PyTorch).
pub fn masked_mae_grad<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
    k: T,
) -> ArrayD<T> {
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
pub fn masked_abs_sum<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
) -> Result<T> {
    check("masked_mae_loss", pred, target)?;
    if mask.shape() != pred.shape() {
        return Err(Error::shape("masked_mae_loss", "mask must have the shape of pred", &[pred.shape(), mask.shape()]));
    }
    Ok(Zip::from(pred)
        .and(target)
        .and(mask)
        .fold(T::zero(), |acc, &p, &t, &m| if m > T::zero() { acc + m * (p - t).abs() } else { acc }))
}

/// What one training step minimises, over the labels whose mask is positive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// The mean absolute error (prediction `[n, k]`).
    MaskedMae,
    /// The mean Gaussian NLL (prediction `[n, 2k]`: means, then log-variances), beta-NLL weighted.
    GaussianNll { beta: f64 },
}

/// The predicted log-variance is clamped to +-this inside the Gaussian NLL (standardised units: a
/// sigma between e^-6 and e^6 label SDs). Its gradient is taken at the clamped value and passed
/// through, so that a log-variance that overshoots is pulled back instead of being left without a
/// gradient for good.
pub const LOG_VAR_LIMIT: f64 = 12.0;

/// The Gaussian NLL terms of one known label: `(w, d, e)` with `d = mu - target`, `e = exp(-s)` for the
/// clamped log-variance `s`, and the beta-NLL weight `w = exp(beta s)` (Seitzer et al. 2022; 1 for
/// beta = 0), which is held constant in the gradient.
fn nll_terms<T: Float>(mu: T, s: T, t: T, beta: T) -> (T, T, T, T) {
    let lim = T::of(LOG_VAR_LIMIT);
    let s = s.max(-lim).min(lim);
    let w = if beta == T::zero() { T::one() } else { (beta * s).exp() };
    (w, mu - t, (-s).exp(), s)
}

fn nll_check<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
) -> Result<usize> {
    const OP: &str = "gaussian_nll_loss";
    let (n, k) = match (pred.shape(), target.shape()) {
        (&[n, k2], &[nt, k]) if n == nt && k2 == 2 * k => (n, k),
        _ => {
            return Err(Error::shape(
                OP,
                "pred must be [n, 2k] (k means, then k log-variances) for a [n, k] target",
                &[pred.shape(), target.shape()],
            ))
        }
    };
    if mask.shape() != target.shape() {
        return Err(Error::shape(OP, "mask must have the shape of target", &[target.shape(), mask.shape()]));
    }
    if n * k == 0 {
        return Err(Error::shape(OP, "the loss of an empty tensor is undefined", &[pred.shape()]));
    }
    Ok(k)
}

/// `sum over known labels of w (s + (mu - target)^2 e^-s) / 2`: the Gaussian negative
/// log-likelihood (without its constant, as PyTorch's `GaussianNLLLoss(full=False)`) of targets
/// `[n, k]` under a prediction `[n, 2k]` whose row holds k means `mu` then k log-variances `s`, over
/// the elements where `mask` is positive; `w = exp(beta s)` is beta-NLL's weight (1 for beta = 0).
pub fn masked_gaussian_nll_sum<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
    beta: T,
) -> Result<T> {
    let k = nll_check(pred, target, mask)?;
    let half = T::of(0.5);
    let mut sum = T::zero();
    for ((p, t), m) in pred.outer_iter().zip(target.outer_iter()).zip(mask.outer_iter()) {
        for j in 0..k {
            if m[j] > T::zero() {
                let (w, d, e, s) = nll_terms(p[j], p[k + j], t[j], beta);
                sum += m[j] * w * half * (s + d * d * e);
            }
        }
    }
    Ok(sum)
}

/// `k_scale` times the gradient of `masked_gaussian_nll_sum` with respect to `pred` (`[n, 2k]`):
/// `w d e` for a mean, `w (1 - d^2 e) / 2` for a log-variance (at the clamped value where it is
/// clamped: `LOG_VAR_LIMIT`), 0 where the label is unknown.
pub fn masked_gaussian_nll_grad<T: Float>(
    pred: &Arr<impl Data<Elem = T>>,
    target: &Arr<impl Data<Elem = T>>,
    mask: &Arr<impl Data<Elem = T>>,
    beta: T,
    k_scale: T,
) -> Result<ArrayD<T>> {
    let k = nll_check(pred, target, mask)?;
    let half = T::of(0.5);
    let mut g = ArrayD::<T>::zeros(pred.raw_dim());
    for (((p, t), m), mut gr) in
        pred.outer_iter().zip(target.outer_iter()).zip(mask.outer_iter()).zip(g.outer_iter_mut())
    {
        for j in 0..k {
            if m[j] > T::zero() {
                let (w, d, e, _) = nll_terms(p[j], p[k + j], t[j], beta);
                let c = k_scale * m[j] * w;
                gr[j] = c * d * e;
                gr[k + j] = c * half * (T::one() - d * d * e);
            }
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    /// The NLL's gradient against central differences in f64, with a masked label, a clamped
    /// log-variance (passed through), and beta 0 and 0.5 (the weight held constant: differenced with
    /// it frozen).
    #[test]
    fn gaussian_nll_gradient_matches_finite_differences() {
        let pred: ArrayD<f64> = ArrayD::from_shape_vec(
            IxDyn(&[3, 4]),
            vec![0.3, -1.2, 0.1, -0.4, 1.5, 0.2, -0.7, 0.9, -0.2, 0.8, 13.0, -0.3],
        )
        .unwrap();
        let target = ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![0.0, -1.0, 1.1, 0.5, 0.4, -0.6]).unwrap();
        let mask = ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![1.0, 1.0, 0.0, 1.0, 1.0, 1.0]).unwrap();
        for beta in [0.0f64, 0.5] {
            let g = masked_gaussian_nll_grad(&pred, &target, &mask, beta, 1.0).unwrap();
            // beta-NLL's weight at the unperturbed log-variances, frozen for the differences.
            let w: Vec<f64> = (0..3)
                .flat_map(|i| (0..2).map(move |j| (i, j)))
                .map(|(i, j)| (beta * pred[[i, 2 + j]].clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT)).exp())
                .collect();
            let frozen = |p: &ArrayD<f64>| -> f64 {
                let mut s = 0.0;
                for i in 0..3 {
                    for j in 0..2 {
                        if mask[[i, j]] > 0.0 {
                            let lv = p[[i, 2 + j]].clamp(-LOG_VAR_LIMIT, LOG_VAR_LIMIT);
                            s += w[i * 2 + j] * 0.5 * (lv + (p[[i, j]] - target[[i, j]]).powi(2) * (-lv).exp());
                        }
                    }
                }
                s
            };
            assert!((frozen(&pred) - masked_gaussian_nll_sum(&pred, &target, &mask, beta).unwrap()).abs() < 1e-12);
            // Element 10 is the clamped log-variance (13 > 12), where the function is flat: its gradient
            // is passed through from the limit (checked below) instead.
            for idx in (0..pred.len()).filter(|&i| i != 10) {
                let h = 1e-6;
                let (mut a, mut b) = (pred.clone(), pred.clone());
                a.as_slice_mut().unwrap()[idx] += h;
                b.as_slice_mut().unwrap()[idx] -= h;
                let fd = (frozen(&a) - frozen(&b)) / (2.0 * h);
                let got = g.as_slice().unwrap()[idx];
                assert!((fd - got).abs() < 1e-6 * (1.0 + fd.abs()), "beta {beta}, element {idx}: {got} vs {fd}");
            }
            // The masked label gets no gradient; the clamped log-variance gets the limit's, which pulls
            // it back down (positive: its error is far below e^12).
            assert_eq!((g[[1, 0]], g[[1, 2]]), (0.0, 0.0));
            let d: f64 = pred[[2, 0]] - target[[2, 0]];
            let want = w[4] * 0.5 * (1.0 - d * d * (-LOG_VAR_LIMIT).exp());
            assert!((g[[2, 2]] - want).abs() < 1e-12 && want > 0.0, "{} vs {want}", g[[2, 2]]);
        }
    }

    /// The NLL is lowest where the predicted variance is the squared error: e^s = d^2.
    #[test]
    fn gaussian_nll_is_lowest_at_the_squared_error() {
        let target = ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![0.0]).unwrap();
        let mask = ArrayD::from_elem(IxDyn(&[1, 1]), 1.0);
        let at = |s: f64| {
            masked_gaussian_nll_sum(&ArrayD::from_shape_vec(IxDyn(&[1, 2]), vec![0.5, s]).unwrap(), &target, &mask, 0.0)
                .unwrap()
        };
        let best = 0.25f64.ln();
        assert!(at(best) < at(best - 0.1) && at(best) < at(best + 0.1));
        assert!(masked_gaussian_nll_sum(
            &ArrayD::<f64>::zeros(IxDyn(&[2, 3])),
            &ArrayD::zeros(IxDyn(&[2, 2])),
            &ArrayD::zeros(IxDyn(&[2, 2])),
            0.0
        )
        .is_err());
    }
}
