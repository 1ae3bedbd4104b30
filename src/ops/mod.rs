//! The operations of the engine. Each file validates shapes (a typed error on misuse, never a panic),
//! runs the forward pass on the CPU kernels of `crate::cpu`, and holds the op's backward rule. The
//! autograd tape (`crate::autograd`) calls these; so do tests and the golden-vector audit.
//!
//! Adding an op: write `ops/<name>.rs` with `forward` and `backward`, add a variant to
//! `autograd::Op` (the compiler then points at the one `match` in `Tape::backward_node` that needs its
//! rule), a recording method on `Tape` and the kernel calls on `autograd::Backend` (DEVELOPERS.md,
//! "Adding an op"), a gradient check in `tests/gradcheck.rs`, and a case to the audit if PyTorch golden
//! vectors exist for it.

pub mod activation;
pub mod conv2d;
pub mod linear;
pub mod loss;
pub mod maxpool2d;

use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::tensor::Arr;
use ndarray::Data;
use ndarray::{ArrayD, IxDyn};

/// Elementwise `a + b` of two tensors of the same shape (residual shortcuts).
pub fn add<T: Float>(a: &Arr<impl Data<Elem = T>>, b: &Arr<impl Data<Elem = T>>) -> Result<ArrayD<T>> {
    if a.shape() != b.shape() {
        return Err(Error::shape("add", "operands must have the same shape", &[a.shape(), b.shape()]));
    }
    Ok(a + b)
}

/// Reshape to `shape` (row-major, PyTorch's order); the element count must not change.
pub fn reshape<T: Float>(x: &Arr<impl Data<Elem = T>>, shape: &[usize]) -> Result<ArrayD<T>> {
    if shape.iter().product::<usize>() != x.len() {
        return Err(Error::shape(
            "reshape",
            format!("cannot reshape {} elements into {shape:?}", x.len()),
            &[x.shape()],
        ));
    }
    Ok(x.as_standard_layout().into_owned().into_shape_with_order(IxDyn(shape)).expect("checked element count"))
}

/// `[N, ...]` to `[N, prod(...)]`: C then H then W, as `torch.flatten(x, 1)`.
pub fn flatten_shape(shape: &[usize]) -> Result<[usize; 2]> {
    match shape.split_first() {
        Some((&n, rest)) => Ok([n, rest.iter().product()]),
        None => Err(Error::shape("flatten", "a scalar has no batch dimension", &[shape])),
    }
}
