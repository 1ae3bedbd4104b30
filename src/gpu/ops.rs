//! The GPU ops: each checks shapes with the same functions as the CPU path (`ops::*::geometry`), fills
//! its uniform (`#[repr(C)]`, bytemuck) and records its dispatch. Nothing is read back here.

use super::context::{grid, Gpu};
use super::kernels::{Kernel, TILE_K, TILE_MN, WG};
use super::tensor::GpuTensor;
use crate::error::{Error, Result};
use crate::geometry::{ConvGeom, PoolGeom};
use crate::ops::conv2d::{self, Conv2dSpec};
pub use crate::ops::loss::LossKind;
use crate::ops::maxpool2d::{self, Pool2dSpec};
use crate::optim::AdamConfig;
use bytemuck::{Pod, Zeroable};

fn u(v: usize, op: &'static str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(op, format!("size {v} does not fit the GPU kernels' 32-bit indices")))
}

/// Refuses tensors whose element count does not fit u32 indexing.
fn check_len(op: &'static str, t: &GpuTensor) -> Result<()> {
    u(t.len(), op).map(|_| ())
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    has_bias: u32,
    k_chunk: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvParams {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    o: u32,
    kh: u32,
    kw: u32,
    oh: u32,
    ow: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    has_bias: u32,
    k_chunk: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LenParams {
    len: u32,
    factor: f32,
    use_b: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PoolParams {
    planes: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    outer: u32,
    cols: u32,
    inner: u32,
    splits: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct LossParams {
    len: u32,
    kind: u32,
    want_grad: u32,
    labels: u32,
    beta: f32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamParams {
    len: u32,
    step_size: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc2_sqrt: f32,
    _pad: [u32; 2],
}

fn gemm_groups(m: usize, n: usize, splits: usize) -> [u32; 3] {
    [n.div_ceil(TILE_MN) as u32, m.div_ceil(TILE_MN) as u32, splits as u32]
}

fn round_k(k: usize) -> usize {
    k.div_ceil(TILE_K).max(1) * TILE_K
}

/// `C[M, N] = op(A) op(B) (+ bias[N])`; `trans_a`: A is stored `[K, M]`; `trans_b`: B is stored `[N, K]`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    gpu: &Gpu,
    a: &GpuTensor,
    b: &GpuTensor,
    bias: Option<&GpuTensor>,
    (m, n, k): (usize, usize, usize),
    trans_a: bool,
    trans_b: bool,
    out_shape: &[usize],
) -> Result<GpuTensor> {
    const OP: &str = "matmul";
    if a.len() != m * k
        || b.len() != k * n
        || bias.is_some_and(|x| x.len() != n)
        || out_shape.iter().product::<usize>() != m * n
    {
        return Err(Error::shape(
            OP,
            format!("operands do not fit M={m} N={n} K={k}"),
            &[a.shape(), b.shape(), out_shape],
        ));
    }
    let c = GpuTensor::empty(gpu, out_shape, OP)?;
    let p = MatmulParams {
        m: u(m, OP)?,
        n: u(n, OP)?,
        k: u(k, OP)?,
        trans_a: trans_a as u32,
        trans_b: trans_b as u32,
        has_bias: bias.is_some() as u32,
        k_chunk: u(round_k(k), OP)?,
        _pad: 0,
    };
    let bias_buf = bias.unwrap_or(a).buffer();
    gpu.dispatch(
        OP,
        Kernel::Matmul,
        &[(0, a.buffer()), (1, b.buffer()), (2, bias_buf), (3, c.buffer())],
        4,
        bytemuck::bytes_of(&p),
        gemm_groups(m, n, 1),
    )?;
    Ok(c)
}

/// Dense layer forward: `x [N, I]`, `w [O, I]`, `b [O]` -> `x W^T + b`.
pub fn linear(gpu: &Gpu, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
    let (xs, ws) = (x.shape(), w.shape());
    if xs.len() != 2 || ws.len() != 2 || xs[1] != ws[1] || b.is_some_and(|b| b.shape() != [ws[0]]) {
        let bs = b.map(|b| b.shape().to_vec()).unwrap_or_default();
        return Err(Error::shape("linear", "x must be [N, I], weight [O, I] and bias [O]", &[xs, ws, &bs]));
    }
    let (n, i, o) = (xs[0], xs[1], ws[0]);
    matmul(gpu, x, w, b, (n, o, i), false, true, &[n, o])
}

/// Dense layer backward: `(dx, dw, db)`, each only when `need` asks for it.
pub fn linear_backward(
    gpu: &Gpu,
    x: &GpuTensor,
    w: &GpuTensor,
    dy: &GpuTensor,
    need: [bool; 3],
) -> Result<(Option<GpuTensor>, Option<GpuTensor>, Option<GpuTensor>)> {
    let (n, i, o) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    if dy.shape() != [n, o] {
        return Err(Error::shape("linear_backward", "dy must be [N, O]", &[dy.shape(), x.shape(), w.shape()]));
    }
    let dx = if need[0] { Some(matmul(gpu, dy, w, None, (n, i, o), false, false, &[n, i])?) } else { None };
    let dw = if need[1] { Some(matmul(gpu, dy, x, None, (o, i, n), true, false, &[o, i])?) } else { None };
    let db = if need[2] { Some(bias_grad(gpu, dy, n, o, 1)?) } else { None };
    Ok((dx, dw, db))
}

/// `out[o] = sum over b < outer, j < inner of src[(b * cols + o) * inner + j]`.
pub fn bias_grad(gpu: &Gpu, src: &GpuTensor, outer: usize, cols: usize, inner: usize) -> Result<GpuTensor> {
    const OP: &str = "bias_grad";
    if src.len() != outer * cols * inner {
        return Err(Error::shape(OP, format!("expected {outer} x {cols} x {inner} values"), &[src.shape()]));
    }
    let out = GpuTensor::empty(gpu, &[cols], OP)?;
    let p = ReduceParams { outer: u(outer, OP)?, cols: u(cols, OP)?, inner: u(inner, OP)?, splits: 0 };
    gpu.dispatch(OP, Kernel::BiasGrad, &[(0, src.buffer()), (1, out.buffer())], 2, bytemuck::bytes_of(&p), grid(cols))?;
    Ok(out)
}

fn conv_params(g: &ConvGeom, has_bias: bool, k_chunk: usize) -> Result<ConvParams> {
    const OP: &str = "conv2d";
    Ok(ConvParams {
        n: u(g.n, OP)?,
        c: u(g.c, OP)?,
        h: u(g.h, OP)?,
        w: u(g.w, OP)?,
        o: u(g.o, OP)?,
        kh: u(g.kh, OP)?,
        kw: u(g.kw, OP)?,
        oh: u(g.oh, OP)?,
        ow: u(g.ow, OP)?,
        sh: u(g.sh, OP)?,
        sw: u(g.sw, OP)?,
        ph: u(g.ph, OP)?,
        pw: u(g.pw, OP)?,
        has_bias: has_bias as u32,
        k_chunk: u(k_chunk, OP)?,
        _pad: 0,
    })
}

/// Convolution forward (implicit GEMM); returns the output and the geometry for the backward pass.
pub fn conv2d(
    gpu: &Gpu,
    x: &GpuTensor,
    w: &GpuTensor,
    b: Option<&GpuTensor>,
    spec: Conv2dSpec,
) -> Result<(GpuTensor, ConvGeom)> {
    const OP: &str = "conv2d";
    let g = conv2d::geometry(x.shape(), w.shape(), b.map(|b| b.shape()), spec)?;
    let y = GpuTensor::empty(gpu, &[g.n, g.o, g.oh, g.ow], OP)?;
    check_len(OP, &y)?;
    check_len(OP, x)?;
    let k = g.c * g.kh * g.kw;
    let p = conv_params(&g, b.is_some(), round_k(k))?;
    let bias_buf = b.unwrap_or(w).buffer();
    gpu.dispatch(
        OP,
        Kernel::Conv2dFwd,
        &[(0, x.buffer()), (1, w.buffer()), (2, bias_buf), (3, y.buffer())],
        4,
        bytemuck::bytes_of(&p),
        gemm_groups(g.o, g.n * g.oh * g.ow, 1),
    )?;
    Ok((y, g))
}

/// Convolution input gradient.
pub fn conv2d_backward_input(gpu: &Gpu, w: &GpuTensor, dy: &GpuTensor, g: &ConvGeom) -> Result<GpuTensor> {
    const OP: &str = "conv2d_backward_input";
    let dx = GpuTensor::empty(gpu, &[g.n, g.c, g.h, g.w], OP)?;
    let k = g.o * g.kh * g.kw;
    let p = conv_params(g, false, round_k(k))?;
    gpu.dispatch(
        OP,
        Kernel::Conv2dBwdInput,
        &[(0, dy.buffer()), (1, w.buffer()), (3, dx.buffer())],
        4,
        bytemuck::bytes_of(&p),
        gemm_groups(g.c, g.n * g.h * g.w, 1),
    )?;
    Ok(dx)
}

/// Convolution weight gradient: split-K partial products, then their sum in a fixed order.
pub fn conv2d_backward_weight(gpu: &Gpu, x: &GpuTensor, dy: &GpuTensor, g: &ConvGeom) -> Result<GpuTensor> {
    const OP: &str = "conv2d_backward_weight";
    let (m, n, k) = (g.o, g.c * g.kh * g.kw, g.n * g.oh * g.ow);
    let tiles = m.div_ceil(TILE_MN) * n.div_ceil(TILE_MN);
    // Enough workgroups to fill a large GPU, each chunk at least 256 deep.
    let want = 512usize.div_ceil(tiles).max(1);
    let k_chunk = round_k(k.div_ceil(want).max(256));
    let splits = k.div_ceil(k_chunk).max(1);
    let p = conv_params(g, false, k_chunk)?;
    let shape = [g.o, g.c, g.kh, g.kw];
    if splits == 1 {
        let dw = GpuTensor::empty(gpu, &shape, OP)?;
        gpu.dispatch(
            OP,
            Kernel::Conv2dBwdWeight,
            &[(0, x.buffer()), (1, dy.buffer()), (3, dw.buffer())],
            4,
            bytemuck::bytes_of(&p),
            gemm_groups(m, n, 1),
        )?;
        return Ok(dw);
    }
    let partial = GpuTensor::empty(gpu, &[splits, m * n], OP)?;
    gpu.dispatch(
        OP,
        Kernel::Conv2dBwdWeight,
        &[(0, x.buffer()), (1, dy.buffer()), (3, partial.buffer())],
        4,
        bytemuck::bytes_of(&p),
        gemm_groups(m, n, splits),
    )?;
    let dw = GpuTensor::empty(gpu, &shape, OP)?;
    let rp = ReduceParams { outer: 0, cols: u(m * n, OP)?, inner: 0, splits: u(splits, OP)? };
    gpu.dispatch(
        OP,
        Kernel::SumSplits,
        &[(0, partial.buffer()), (1, dw.buffer())],
        2,
        bytemuck::bytes_of(&rp),
        grid((m * n).div_ceil(WG)),
    )?;
    Ok(dw)
}

/// Convolution backward: `(dx, dw, db)`, each only when `need` asks for it.
pub fn conv2d_backward(
    gpu: &Gpu,
    x: &GpuTensor,
    w: &GpuTensor,
    dy: &GpuTensor,
    g: &ConvGeom,
    need: [bool; 3],
) -> Result<(Option<GpuTensor>, Option<GpuTensor>, Option<GpuTensor>)> {
    if dy.shape() != [g.n, g.o, g.oh, g.ow] {
        return Err(Error::shape("conv2d_backward", "dy must have the output's shape", &[dy.shape()]));
    }
    let dx = if need[0] { Some(conv2d_backward_input(gpu, w, dy, g)?) } else { None };
    let dw = if need[1] { Some(conv2d_backward_weight(gpu, x, dy, g)?) } else { None };
    let db = if need[2] { Some(bias_grad(gpu, dy, g.n, g.o, g.oh * g.ow)?) } else { None };
    Ok((dx, dw, db))
}

fn pool_params(g: &PoolGeom) -> Result<PoolParams> {
    const OP: &str = "maxpool2d";
    Ok(PoolParams {
        planes: u(g.planes, OP)?,
        h: u(g.h, OP)?,
        w: u(g.w, OP)?,
        oh: u(g.oh, OP)?,
        ow: u(g.ow, OP)?,
        kh: u(g.kh, OP)?,
        kw: u(g.kw, OP)?,
        sh: u(g.sh, OP)?,
        sw: u(g.sw, OP)?,
        _pad: [0; 3],
    })
}

/// Max pooling forward: the output and the argmax (indices within each input plane).
pub fn maxpool2d(gpu: &Gpu, x: &GpuTensor, spec: Pool2dSpec) -> Result<(GpuTensor, GpuTensor, PoolGeom)> {
    const OP: &str = "maxpool2d";
    let g = maxpool2d::geometry(x.shape(), spec)?;
    check_len(OP, x)?;
    let s = x.shape();
    let y = GpuTensor::empty(gpu, &[s[0], s[1], g.oh, g.ow], OP)?;
    let argmax = GpuTensor::empty(gpu, y.shape(), OP)?;
    let p = pool_params(&g)?;
    // Binding 1 (argmax_in) is unused by the forward entry point.
    gpu.dispatch(
        OP,
        Kernel::MaxPoolFwd,
        &[(0, x.buffer()), (2, y.buffer()), (3, argmax.buffer())],
        4,
        bytemuck::bytes_of(&p),
        grid(y.len().div_ceil(WG)),
    )?;
    Ok((y, argmax, g))
}

/// Max pooling backward: gathers `dy` through the argmax into `dx` of `x_shape`.
pub fn maxpool2d_backward(
    gpu: &Gpu,
    dy: &GpuTensor,
    argmax: &GpuTensor,
    g: &PoolGeom,
    x_shape: &[usize],
) -> Result<GpuTensor> {
    const OP: &str = "maxpool2d_backward";
    if dy.len() != g.planes * g.oh * g.ow || argmax.len() != dy.len() {
        return Err(Error::shape(OP, "dy and argmax must have the output's shape", &[dy.shape(), argmax.shape()]));
    }
    let dx = GpuTensor::empty(gpu, x_shape, OP)?;
    let p = pool_params(g)?;
    gpu.dispatch(
        OP,
        Kernel::MaxPoolBwd,
        &[(0, dy.buffer()), (1, argmax.buffer()), (2, dx.buffer())],
        4,
        bytemuck::bytes_of(&p),
        grid(dx.len().div_ceil(WG)),
    )?;
    Ok(dx)
}

fn elementwise(gpu: &Gpu, op: &'static str, kernel: Kernel, a: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
    if let Some(b) = b {
        if b.shape() != a.shape() {
            return Err(Error::shape(op, "both operands must have the same shape", &[a.shape(), b.shape()]));
        }
    }
    check_len(op, a)?;
    let out = GpuTensor::empty(gpu, a.shape(), op)?;
    let p = LenParams { len: u(a.len(), op)?, factor: 1.0, use_b: 0, _pad: 0 };
    let mut binds = vec![(0, a.buffer())];
    if let Some(b) = b {
        binds.push((1, b.buffer()));
    }
    binds.push((2, out.buffer()));
    gpu.dispatch(op, kernel, &binds, 3, bytemuck::bytes_of(&p), grid(a.len().div_ceil(WG)))?;
    Ok(out)
}

pub fn relu(gpu: &Gpu, x: &GpuTensor) -> Result<GpuTensor> {
    elementwise(gpu, "relu", Kernel::ReluFwd, x, None)
}
pub fn relu_backward(gpu: &Gpu, x: &GpuTensor, dy: &GpuTensor) -> Result<GpuTensor> {
    elementwise(gpu, "relu_backward", Kernel::ReluBwd, x, Some(dy))
}
pub fn selu(gpu: &Gpu, x: &GpuTensor) -> Result<GpuTensor> {
    elementwise(gpu, "selu", Kernel::SeluFwd, x, None)
}
pub fn selu_backward(gpu: &Gpu, x: &GpuTensor, dy: &GpuTensor) -> Result<GpuTensor> {
    elementwise(gpu, "selu_backward", Kernel::SeluBwd, x, Some(dy))
}
pub fn add(gpu: &Gpu, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
    elementwise(gpu, "add", Kernel::Add, a, Some(b))
}

/// `a * factor * s[0]` (`s` a one-element tensor) or `a * factor`.
pub fn scale(gpu: &Gpu, a: &GpuTensor, s: Option<&GpuTensor>, factor: f32) -> Result<GpuTensor> {
    const OP: &str = "scale";
    if s.is_some_and(|s| s.len() != 1) {
        return Err(Error::shape(OP, "the scale must be a single value", &[s.map(|s| s.shape()).unwrap_or_default()]));
    }
    check_len(OP, a)?;
    let out = GpuTensor::empty(gpu, a.shape(), OP)?;
    let p = LenParams { len: u(a.len(), OP)?, factor, use_b: s.is_some() as u32, _pad: 0 };
    gpu.dispatch(
        OP,
        Kernel::Scale,
        &[(0, a.buffer()), (1, s.unwrap_or(a).buffer()), (2, out.buffer())],
        3,
        bytemuck::bytes_of(&p),
        grid(a.len().div_ceil(WG)),
    )?;
    Ok(out)
}

/// A loss and (when `want_grad`) its gradient with respect to `pred`: `(loss [1], grad)`.
pub fn loss(
    gpu: &Gpu,
    kind: LossKind,
    pred: &GpuTensor,
    target: &GpuTensor,
    mask: Option<&GpuTensor>,
    want_grad: bool,
) -> Result<(GpuTensor, GpuTensor)> {
    const OP: &str = "loss";
    if pred.shape() != target.shape() || mask.is_some_and(|m| m.shape() != pred.shape()) {
        let ms = mask.map(|m| m.shape().to_vec()).unwrap_or_default();
        return Err(Error::shape(
            OP,
            "pred, target and mask must have the same shape",
            &[pred.shape(), target.shape(), &ms],
        ));
    }
    if pred.is_empty() {
        return Err(Error::shape(OP, "the loss of an empty tensor is undefined", &[pred.shape()]));
    }
    if (kind == LossKind::MaskedMae) != mask.is_some() {
        return Err(Error::invalid(OP, "the masked MAE takes a mask and the other losses none"));
    }
    let l = GpuTensor::empty(gpu, &[], OP)?;
    let grad = GpuTensor::empty(gpu, pred.shape(), OP)?;
    let p = LossParams {
        len: u(pred.len(), OP)?,
        kind: kind as u32,
        want_grad: want_grad as u32,
        labels: 0,
        beta: 0.0,
        _pad: [0; 3],
    };
    let mask_buf = mask.unwrap_or(target).buffer();
    gpu.dispatch(
        OP,
        Kernel::Loss,
        &[(0, pred.buffer()), (1, target.buffer()), (2, mask_buf), (3, l.buffer()), (4, grad.buffer())],
        5,
        bytemuck::bytes_of(&p),
        [1, 1, 1],
    )?;
    Ok((l, grad))
}

/// The masked Gaussian NLL (`ops::loss::masked_gaussian_nll_sum` over the mask's sum) of `pred`
/// `[n, 2k]` (k means, then k log-variances) for `target` and `mask` `[n, k]`, and (when `want_grad`)
/// its gradient with respect to `pred`: `(loss [1], grad)`.
pub fn gaussian_nll_loss(
    gpu: &Gpu,
    pred: &GpuTensor,
    target: &GpuTensor,
    mask: &GpuTensor,
    beta: f64,
    want_grad: bool,
) -> Result<(GpuTensor, GpuTensor)> {
    const OP: &str = "gaussian_nll_loss";
    let (n, k) = match (pred.shape(), target.shape()) {
        (&[n, k2], &[nt, k]) if n == nt && k2 == 2 * k && k > 0 => (n, k),
        _ => {
            return Err(Error::shape(
                OP,
                "pred must be [n, 2k] (k means, then k log-variances) for a [n, k] target",
                &[pred.shape(), target.shape()],
            ))
        }
    };
    if mask.shape() != target.shape() || n == 0 {
        return Err(Error::shape(
            OP,
            "mask must have the shape of a non-empty target",
            &[target.shape(), mask.shape()],
        ));
    }
    let l = GpuTensor::empty(gpu, &[], OP)?;
    let grad = GpuTensor::empty(gpu, pred.shape(), OP)?;
    let p = LossParams {
        len: u(target.len(), OP)?,
        kind: 3,
        want_grad: want_grad as u32,
        labels: u(k, OP)?,
        beta: beta as f32,
        _pad: [0; 3],
    };
    gpu.dispatch(
        OP,
        Kernel::Loss,
        &[(0, pred.buffer()), (1, target.buffer()), (2, mask.buffer()), (3, l.buffer()), (4, grad.buffer())],
        5,
        bytemuck::bytes_of(&p),
        [1, 1, 1],
    )?;
    Ok((l, grad))
}

/// One Adam update of `param` (and its moments `m`, `v`) in place, for update number `step` (1-based).
pub fn adam(
    gpu: &Gpu,
    param: &GpuTensor,
    grad: &GpuTensor,
    m: &GpuTensor,
    v: &GpuTensor,
    step: u64,
    c: &AdamConfig,
) -> Result<()> {
    const OP: &str = "adam";
    if grad.len() != param.len() || m.len() != param.len() || v.len() != param.len() {
        return Err(Error::shape(
            OP,
            "param, grad and moments must have the same size",
            &[param.shape(), grad.shape(), m.shape(), v.shape()],
        ));
    }
    let bc1 = 1.0 - c.beta1.powf(step as f64);
    let bc2_sqrt = (1.0 - c.beta2.powf(step as f64)).sqrt();
    let p = AdamParams {
        len: u(param.len(), OP)?,
        step_size: (c.lr / bc1) as f32,
        beta1: c.beta1 as f32,
        beta2: c.beta2 as f32,
        eps: c.eps as f32,
        bc2_sqrt: bc2_sqrt as f32,
        _pad: [0; 2],
    };
    gpu.dispatch(
        OP,
        Kernel::Adam,
        &[(0, grad.buffer()), (1, param.buffer()), (2, m.buffer()), (3, v.buffer())],
        4,
        bytemuck::bytes_of(&p),
        grid(param.len().div_ceil(WG)),
    )
}
