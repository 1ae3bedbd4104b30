//! `maxpool2d`: PyTorch's `max_pool2d` in floor mode, no padding. The forward pass returns the argmax
//! (index of the winner inside its `H x W` plane) and the backward pass scatters through it.

use crate::cpu::pool::{self, PoolGeom};
use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::tensor::Arr;
use ndarray::Data;
use ndarray::{ArrayD, IxDyn};

/// Window and stride (rows, columns).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dSpec {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
}

impl Pool2dSpec {
    /// A square `k x k` window with stride `k` (2x2 stride 2 in the VMP CNN).
    pub fn square(k: usize) -> Self {
        Self { kernel: (k, k), stride: (k, k) }
    }
}

/// Checks the shape and returns the pooling geometry.
pub fn geometry(x: &[usize], spec: Pool2dSpec) -> Result<PoolGeom> {
    const OP: &str = "maxpool2d";
    if x.len() != 4 || x.contains(&0) {
        return Err(Error::shape(OP, "x must be [N, C, H, W] with no zero dimension", &[x]));
    }
    let (kh, kw) = spec.kernel;
    let (sh, sw) = spec.stride;
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
        return Err(Error::invalid(OP, "kernel and stride must be at least 1"));
    }
    if kh > x[2] || kw > x[3] {
        return Err(Error::invalid(OP, format!("window {kh}x{kw} is larger than the input {}x{}", x[2], x[3])));
    }
    Ok(PoolGeom {
        planes: x[0] * x[1],
        h: x[2],
        w: x[3],
        kh,
        kw,
        sh,
        sw,
        oh: (x[2] - kh) / sh + 1,
        ow: (x[3] - kw) / sw + 1,
    })
}

/// Forward pass: the pooled tensor and the argmax of every output.
pub fn forward<T: Float>(x: &Arr<impl Data<Elem = T>>, spec: Pool2dSpec) -> Result<(ArrayD<T>, Vec<u32>)> {
    let g = geometry(x.shape(), spec)?;
    let x = x.as_standard_layout();
    let n_out = g.planes * g.oh * g.ow;
    let (mut y, mut argmax) = (vec![T::zero(); n_out], vec![0u32; n_out]);
    pool::forward(x.as_slice().expect("std"), &g, &mut y, &mut argmax);
    let shape = [x.shape()[0], x.shape()[1], g.oh, g.ow];
    Ok((ArrayD::from_shape_vec(IxDyn(&shape), y).expect("pool shape"), argmax))
}

/// Backward pass through the argmax of the forward pass.
pub fn backward<T: Float>(
    x_shape: &[usize],
    dy: &Arr<impl Data<Elem = T>>,
    argmax: &[u32],
    spec: Pool2dSpec,
) -> Result<ArrayD<T>> {
    let g = geometry(x_shape, spec)?;
    if dy.len() != g.planes * g.oh * g.ow || argmax.len() != dy.len() {
        return Err(Error::shape("maxpool2d backward", "grad_output does not match the output", &[dy.shape()]));
    }
    let dy = dy.as_standard_layout();
    let dx = pool::backward(dy.as_slice().expect("std"), argmax, &g);
    Ok(ArrayD::from_shape_vec(IxDyn(x_shape), dx).expect("dx shape"))
}
