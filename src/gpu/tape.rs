//! The GPU tape: the same recording scheme as the CPU [`Tape`](crate::autograd::Tape) (an op is kept
//! only when an input needs a gradient; backward is one exhaustive match; gradients add), with values in
//! GPU memory. Parameters are looked up by name in a [`ParamStore`] that stays on the device between
//! steps. Backward starts from a scalar loss recorded by [`GpuTape::loss`], whose kernel already wrote
//! the loss's gradient with respect to its prediction.

use super::context::Gpu;
use super::ops::{self, LossKind};
use super::tensor::GpuTensor;
use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::geometry::{ConvGeom, PoolGeom};
use crate::ops::conv2d::Conv2dSpec;
use crate::ops::maxpool2d::Pool2dSpec;
use ndarray::{ArrayD, ArrayViewD};
use std::collections::BTreeMap;

/// Named tensors kept on the device (parameters, gradients, Adam's moments).
#[derive(Default)]
pub struct ParamStore {
    pub tensors: BTreeMap<String, GpuTensor>,
}

impl ParamStore {
    /// Uploads named arrays.
    pub fn upload<'x>(gpu: &Gpu, named: impl IntoIterator<Item = (String, &'x ArrayD<f32>)>) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (name, a) in named {
            tensors.insert(name, GpuTensor::upload(gpu, &a.view())?);
        }
        Ok(Self { tensors })
    }

    /// Zeros of the same shapes as `like`.
    pub fn zeros_like(gpu: &Gpu, like: &ParamStore) -> Result<Self> {
        let mut tensors = BTreeMap::new();
        for (name, t) in &like.tensors {
            tensors.insert(name.clone(), GpuTensor::upload(gpu, &ArrayD::<f32>::zeros(t.shape()).view())?);
        }
        Ok(Self { tensors })
    }

    /// Reads every tensor back.
    pub fn download(&self, gpu: &Gpu) -> Result<BTreeMap<String, ArrayD<f32>>> {
        self.tensors.iter().map(|(n, t)| Ok((n.clone(), t.to_array(gpu)?))).collect()
    }
}

enum Op {
    Leaf,
    Conv2d { x: Var, w: Var, b: Option<Var>, geom: ConvGeom },
    MaxPool2d { x: Var, argmax: GpuTensor, geom: PoolGeom },
    Linear { x: Var, w: Var, b: Option<Var> },
    Relu { x: Var },
    Selu { x: Var },
    Add { a: Var, b: Var },
    Reshape { x: Var },
    Loss { pred: Var, target: Var, grad: GpuTensor },
}

struct Node {
    value: GpuTensor,
    requires_grad: bool,
    op: Op,
}

/// A tape whose values live on the GPU.
pub struct GpuTape<'g> {
    gpu: &'g Gpu,
    store: &'g ParamStore,
    nodes: Vec<Node>,
    grads: Vec<Option<GpuTensor>>,
    params: Vec<(String, Var)>,
    grad_enabled: bool,
}

impl<'g> GpuTape<'g> {
    /// A tape for training over the parameters in `store`.
    pub fn new(gpu: &'g Gpu, store: &'g ParamStore) -> Self {
        Self { gpu, store, nodes: Vec::new(), grads: Vec::new(), params: Vec::new(), grad_enabled: true }
    }

    /// A tape for inference: nothing is recorded.
    pub fn inference(gpu: &'g Gpu, store: &'g ParamStore) -> Self {
        Self { grad_enabled: false, ..Self::new(gpu, store) }
    }

    fn push(&mut self, value: GpuTensor, requires_grad: bool, op: Op) -> Var {
        let requires_grad = requires_grad && self.grad_enabled;
        let op = if requires_grad { op } else { Op::Leaf };
        self.nodes.push(Node { value, requires_grad, op });
        self.grads.push(None);
        Var(self.nodes.len() - 1)
    }

    fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    fn val(&self, v: Var) -> &GpuTensor {
        &self.nodes[v.0].value
    }

    /// An input uploaded from the host; `requires_grad` asks for its gradient.
    pub fn input(&mut self, a: ArrayViewD<'_, f32>, requires_grad: bool) -> Result<Var> {
        let t = GpuTensor::upload(self.gpu, &a)?;
        Ok(self.push(t, requires_grad, Op::Leaf))
    }

    /// The gradient of `v` after a backward pass.
    pub fn grad(&self, v: Var) -> Option<&GpuTensor> {
        self.grads[v.0].as_ref()
    }

    /// An input already on the device.
    pub fn input_tensor(&mut self, t: GpuTensor) -> Var {
        self.push(t, false, Op::Leaf)
    }

    /// The GPU this tape records on.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// The value of `v` (on the device).
    pub fn value(&self, v: Var) -> &GpuTensor {
        self.val(v)
    }

    /// A loss between `pred` and `target` (and `mask` for the masked MAE), a scalar. Its kernel also
    /// writes the gradient with respect to `pred`, kept for the backward pass.
    pub fn loss(&mut self, kind: LossKind, pred: Var, target: Var, mask: Option<Var>) -> Result<Var> {
        let want = self.needs(pred) || self.needs(target);
        let (l, grad) = ops::loss(self.gpu, kind, self.val(pred), self.val(target), mask.map(|m| self.val(m)), want)?;
        Ok(self.push(l, want, Op::Loss { pred, target, grad }))
    }

    /// The masked Gaussian NLL of `pred` (`[n, 2k]`: means, then log-variances) for `target` and
    /// `mask` (`[n, k]`), a scalar, beta-NLL weighted; like [`GpuTape::loss`], its kernel writes the
    /// gradient with respect to `pred`. The target gets none.
    pub fn gaussian_nll(&mut self, pred: Var, target: Var, mask: Var, beta: f64) -> Result<Var> {
        if self.needs(target) {
            return Err(Error::invalid("gaussian_nll_loss", "the Gaussian NLL gives no gradient to its target"));
        }
        let want = self.needs(pred);
        let (l, grad) = ops::gaussian_nll_loss(self.gpu, self.val(pred), self.val(target), self.val(mask), beta, want)?;
        Ok(self.push(l, want, Op::Loss { pred, target, grad }))
    }

    /// Backward pass from a scalar `loss` made by [`GpuTape::loss`] (upstream gradient 1, no upload).
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        if !matches!(self.nodes[loss.0].op, Op::Loss { .. }) {
            return Err(Error::invalid(
                "backward",
                "backward() starts from a loss recorded by GpuTape::loss; use backward_with for a tensor",
            ));
        }
        self.run_backward(loss, true)
    }

    /// Backward pass from `out` with upstream gradient `grad_output` (of `out`'s shape).
    pub fn backward_with(&mut self, out: Var, grad_output: GpuTensor) -> Result<()> {
        if grad_output.shape() != self.val(out).shape() {
            return Err(Error::shape(
                "backward",
                "grad_output must have the output's shape",
                &[grad_output.shape(), self.val(out).shape()],
            ));
        }
        self.accumulate(out, grad_output)?;
        self.run_backward(out, false)
    }

    /// Walks the tape back from `out`; `unit_root`: the root is a loss with upstream gradient 1.
    fn run_backward(&mut self, out: Var, unit_root: bool) -> Result<()> {
        for i in (0..=out.0).rev() {
            if matches!(self.nodes[i].op, Op::Leaf) {
                continue;
            }
            // An intermediate's gradient is used once, here, and then freed (back to the pool).
            let g = if unit_root && i == out.0 {
                None
            } else {
                match self.grads[i].take() {
                    Some(g) => Some(g),
                    None => continue,
                }
            };
            self.backward_node(i, g)?;
        }
        Ok(())
    }

    fn accumulate(&mut self, v: Var, g: GpuTensor) -> Result<()> {
        if !self.nodes[v.0].requires_grad {
            return Ok(());
        }
        // Out of place: a gradient tensor may be shared (the two inputs of an add get the same one).
        let sum = match &self.grads[v.0] {
            Some(acc) => ops::add(self.gpu, acc, &g)?,
            None => g,
        };
        self.grads[v.0] = Some(sum);
        Ok(())
    }

    /// The one backward `match`, as on the CPU.
    fn backward_node(&mut self, i: usize, g: Option<GpuTensor>) -> Result<()> {
        let gpu = self.gpu;
        let node = &self.nodes[i];
        let mut out: Vec<(Var, GpuTensor)> = Vec::with_capacity(3);
        let upstream =
            || g.clone().ok_or_else(|| Error::invalid("backward", "an intermediate value has no upstream gradient"));
        match &node.op {
            Op::Leaf => {}
            Op::Loss { pred, target, grad } => {
                // g is None for a unit upstream gradient (backward from the loss itself).
                let dp = match &g {
                    None => grad.clone(),
                    Some(s) => ops::scale(gpu, grad, Some(s), 1.0)?,
                };
                if self.needs(*target) {
                    out.push((*target, ops::scale(gpu, &dp, None, -1.0)?));
                }
                out.push((*pred, dp));
            }
            Op::Conv2d { x, w, b, geom } => {
                let need = [self.needs(*x), self.needs(*w), b.is_some_and(|b| self.needs(b))];
                let (dx, dw, db) = ops::conv2d_backward(gpu, self.val(*x), self.val(*w), &upstream()?, geom, need)?;
                out.extend(dx.map(|d| (*x, d)));
                out.extend(dw.map(|d| (*w, d.reshape(self.val(*w).shape()).expect("same size"))));
                if let (Some(b), Some(db)) = (b, db) {
                    out.push((*b, db));
                }
            }
            Op::MaxPool2d { x, argmax, geom } => {
                out.push((*x, ops::maxpool2d_backward(gpu, &upstream()?, argmax, geom, self.val(*x).shape())?));
            }
            Op::Linear { x, w, b } => {
                let need = [self.needs(*x), self.needs(*w), b.is_some_and(|b| self.needs(b))];
                let (dx, dw, db) = ops::linear_backward(gpu, self.val(*x), self.val(*w), &upstream()?, need)?;
                out.extend(dx.map(|d| (*x, d)));
                out.extend(dw.map(|d| (*w, d)));
                if let (Some(b), Some(db)) = (b, db) {
                    out.push((*b, db));
                }
            }
            Op::Relu { x } => out.push((*x, ops::relu_backward(gpu, self.val(*x), &upstream()?)?)),
            Op::Selu { x } => out.push((*x, ops::selu_backward(gpu, self.val(*x), &upstream()?)?)),
            Op::Add { a, b } => {
                let g = upstream()?;
                out.push((*a, g.clone()));
                out.push((*b, g));
            }
            Op::Reshape { x } => out.push((*x, upstream()?.reshape(self.val(*x).shape())?)),
        }
        for (v, d) in out {
            self.accumulate(v, d)?;
        }
        Ok(())
    }

    /// The gradients of every parameter, by name (None where a parameter got none).
    pub fn into_param_grads(mut self) -> Vec<(String, Option<GpuTensor>)> {
        let params = std::mem::take(&mut self.params);
        params.into_iter().map(|(name, v)| (name, self.grads[v.0].take())).collect()
    }
}

impl<'a, 'g> Graph<'a, f32> for GpuTape<'g> {
    fn param(&mut self, name: String, _host: &'a ArrayD<f32>) -> Result<Var> {
        let t = self.store.tensors.get(&name).cloned().ok_or_else(|| Error::ModelTensor {
            name: name.clone(),
            msg: "is not on the GPU (the parameter store lacks it)".into(),
        })?;
        let v = self.push(t, true, Op::Leaf);
        self.params.push((name, v));
        Ok(v)
    }
    fn shape_of(&self, v: Var) -> Vec<usize> {
        self.val(v).shape().to_vec()
    }
    fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Result<Var> {
        let (y, geom) = ops::conv2d(self.gpu, self.val(x), self.val(w), b.map(|b| self.val(b)), spec)?;
        let rg = self.needs(x) || self.needs(w) || b.is_some_and(|b| self.needs(b));
        Ok(self.push(y, rg, Op::Conv2d { x, w, b, geom }))
    }
    fn maxpool2d(&mut self, x: Var, spec: Pool2dSpec) -> Result<Var> {
        let (y, argmax, geom) = ops::maxpool2d(self.gpu, self.val(x), spec)?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::MaxPool2d { x, argmax, geom }))
    }
    fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let y = ops::linear(self.gpu, self.val(x), self.val(w), b.map(|b| self.val(b)))?;
        let rg = self.needs(x) || self.needs(w) || b.is_some_and(|b| self.needs(b));
        Ok(self.push(y, rg, Op::Linear { x, w, b }))
    }
    fn relu(&mut self, x: Var) -> Result<Var> {
        let y = ops::relu(self.gpu, self.val(x))?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::Relu { x }))
    }
    fn selu(&mut self, x: Var) -> Result<Var> {
        let y = ops::selu(self.gpu, self.val(x))?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::Selu { x }))
    }
    fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = ops::add(self.gpu, self.val(a), self.val(b))?;
        let rg = self.needs(a) || self.needs(b);
        Ok(self.push(y, rg, Op::Add { a, b }))
    }
    fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.val(x).reshape(shape)?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::Reshape { x }))
    }
}
