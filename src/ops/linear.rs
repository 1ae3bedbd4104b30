//! `linear`: `y = x W^T + b` with `x [N, I]`, `weight [O, I]`, `bias [O]` (PyTorch's `nn.Linear`).

use crate::cpu::gemm::matmul;
use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::tensor::Arr;
use ndarray::Data;
use ndarray::{ArrayD, Axis, Ix2};

fn check(x: &[usize], w: &[usize], b: Option<&[usize]>) -> Result<()> {
    let shapes: Vec<&[usize]> = [Some(x), Some(w), b].into_iter().flatten().collect();
    if x.len() != 2 || w.len() != 2 {
        return Err(Error::shape("linear", "x must be [N, I] and weight [O, I]", &shapes));
    }
    if x[1] != w[1] {
        return Err(Error::shape("linear", format!("x has {} features but weight expects {}", x[1], w[1]), &shapes));
    }
    if let Some(b) = b {
        if b != [w[0]] {
            return Err(Error::shape("linear", format!("bias must be [{}]", w[0]), &shapes));
        }
    }
    Ok(())
}

fn as2<T: Float>(a: &Arr<impl Data<Elem = T>>) -> ndarray::ArrayView2<'_, T> {
    a.view().into_dimensionality::<Ix2>().expect("checked 2-D")
}

/// Forward pass.
pub fn forward<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    w: &Arr<impl Data<Elem = T>>,
    b: Option<&Arr<impl Data<Elem = T>>>,
) -> Result<ArrayD<T>> {
    check(x.shape(), w.shape(), b.map(|b| b.shape()))?;
    let mut y = matmul(T::one(), as2(x), as2(w).t());
    if let Some(b) = b {
        let b = b.view().into_shape_with_order(w.shape()[0]).expect("bias 1-D");
        y.rows_mut().into_iter().for_each(|mut r| r += &b);
    }
    Ok(y.into_dyn())
}

/// Gradients of x, weight and bias for upstream gradient `dy [N, O]`.
#[allow(clippy::type_complexity)]
pub fn backward<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    w: &Arr<impl Data<Elem = T>>,
    dy: &Arr<impl Data<Elem = T>>,
    need: [bool; 3],
) -> Result<(Option<ArrayD<T>>, Option<ArrayD<T>>, Option<ArrayD<T>>)> {
    check(x.shape(), w.shape(), None)?;
    if dy.shape() != [x.shape()[0], w.shape()[0]] {
        return Err(Error::shape("linear backward", "grad_output does not match the output", &[dy.shape()]));
    }
    let (x2, w2, dy2) = (as2(x), as2(w), as2(dy));
    let dx = need[0].then(|| matmul(T::one(), dy2, w2).into_dyn());
    let dw = need[1].then(|| matmul(T::one(), dy2.t(), x2).into_dyn());
    let db = need[2].then(|| dy2.sum_axis(Axis(0)).into_dyn());
    Ok((dx, dw, db))
}
