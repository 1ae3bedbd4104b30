//! A small reverse-mode autograd core: a tape of recorded ops.
//!
//! A forward pass pushes every value onto the [`Tape`]; an op is *recorded* (kept with its inputs for the
//! backward pass) only when one of its inputs needs a gradient, so an inference pass records nothing.
//! `backward` walks the tape once in reverse and applies each op's backward rule in one exhaustive
//! `match` (a new `Op` variant without a rule does not compile). Gradients accumulate with `+=`, so a
//! value used twice (the input of a residual block) gets the sum of both paths.
//!
//! The tape borrows parameters instead of copying them (`CowArray`), so a model's weights stay where
//! they are during a step; after `backward`, [`Tape::into_param_grads`] hands the gradients to the
//! optimizer by parameter name.

use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::ops::{
    self, activation, conv2d, conv2d::Conv2dSpec, conv2d::SpectraCache, linear, loss, maxpool2d, maxpool2d::Pool2dSpec,
};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};

/// A handle to a value on a tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) usize);

/// What a model's forward pass needs from a tape, on any device: the CPU [`Tape`] and the GPU's
/// `gpu::GpuTape` both implement it, so a model is written once (`nn::models`).
pub trait Graph<'a, T: Float> {
    /// A named parameter (the GPU tape looks it up by name among the values it holds on the device).
    fn param(&mut self, name: String, value: &'a ArrayD<T>) -> Result<Var>;
    /// The shape of `v`.
    fn shape_of(&self, v: Var) -> Vec<usize>;
    fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Result<Var>;
    /// `conv2d` whose weight spectra an inference pass may keep in `cache` between calls (CPU tape
    /// without gradients); tapes that record, and the GPU's, run plain `conv2d`.
    fn conv2d_cached(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        cache: &'a SpectraCache<T>,
    ) -> Result<Var> {
        let _ = cache;
        self.conv2d(x, w, b, spec)
    }
    fn maxpool2d(&mut self, x: Var, spec: Pool2dSpec) -> Result<Var>;
    fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var>;
    fn relu(&mut self, x: Var) -> Result<Var>;
    fn selu(&mut self, x: Var) -> Result<Var>;
    fn add(&mut self, a: Var, b: Var) -> Result<Var>;
    fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var>;
    /// `[N, ...]` to `[N, prod(...)]`.
    fn flatten(&mut self, x: Var) -> Result<Var> {
        let shape = ops::flatten_shape(&self.shape_of(x))?;
        self.reshape(x, &shape)
    }
}

impl<'a, T: Float> Graph<'a, T> for Tape<'a, T> {
    fn param(&mut self, name: String, value: &'a ArrayD<T>) -> Result<Var> {
        Ok(Tape::param(self, name, value))
    }
    fn shape_of(&self, v: Var) -> Vec<usize> {
        self.nodes[v.0].value.shape().to_vec()
    }
    fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Result<Var> {
        Tape::conv2d(self, x, w, b, spec)
    }
    fn conv2d_cached(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        cache: &'a SpectraCache<T>,
    ) -> Result<Var> {
        if self.grad_enabled {
            return Tape::conv2d(self, x, w, b, spec);
        }
        let y = conv2d::forward_cached(self.val(x), self.val(w), b.map(|b| self.val(b)), spec, cache)?;
        Ok(self.push(y.into(), false, Op::Leaf))
    }
    fn maxpool2d(&mut self, x: Var, spec: Pool2dSpec) -> Result<Var> {
        Tape::maxpool2d(self, x, spec)
    }
    fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        Tape::linear(self, x, w, b)
    }
    fn relu(&mut self, x: Var) -> Result<Var> {
        Ok(Tape::relu(self, x))
    }
    fn selu(&mut self, x: Var) -> Result<Var> {
        Ok(Tape::selu(self, x))
    }
    fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        Tape::add(self, a, b)
    }
    fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        Tape::reshape(self, x, shape)
    }
}

/// A recorded operation and what its backward rule needs.
#[derive(Debug)]
enum Op {
    /// An input, parameter or constant; also every op none of whose inputs needs a gradient.
    Leaf,
    Conv2d {
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
    },
    MaxPool2d {
        x: Var,
        spec: Pool2dSpec,
        argmax: Vec<u32>,
    },
    Linear {
        x: Var,
        w: Var,
        b: Option<Var>,
    },
    Relu {
        x: Var,
    },
    Selu {
        x: Var,
    },
    Add {
        a: Var,
        b: Var,
    },
    Reshape {
        x: Var,
    },
    MaeLoss {
        pred: Var,
        target: Var,
    },
    MseLoss {
        pred: Var,
        target: Var,
    },
    MaskedMaeLoss {
        pred: Var,
        target: Var,
        mask: Var,
    },
}

struct Node<'a, T: Float> {
    value: CowArray<'a, T, IxDyn>,
    requires_grad: bool,
    op: Op,
}

/// The tape: values, recorded ops, and after `backward`, gradients.
pub struct Tape<'a, T: Float> {
    nodes: Vec<Node<'a, T>>,
    grads: Vec<Option<ArrayD<T>>>,
    params: Vec<(String, Var)>,
    grad_enabled: bool,
    /// Whether `backward` leaves dense weight gradients to the caller (`defer_dense_weight_grads`).
    defer_dense: bool,
    /// What was left: (weight, the layer's input, its output gradient).
    deferred: Vec<(Var, Var, ArrayD<T>)>,
}

/// Parameter gradients by name, in registration order (`None`: the parameter got none).
pub type ParamGrads<T> = Vec<(String, Option<ArrayD<T>>)>;

/// A dense layer's weight gradient left to the caller: `dW = dy^T . x`.
#[derive(Debug)]
pub struct DeferredDense<T> {
    /// The weight's parameter name.
    pub name: String,
    /// The layer's input, `[N, in]`.
    pub x: ArrayD<T>,
    /// The gradient of the layer's output, `[N, out]`.
    pub dy: ArrayD<T>,
    /// `x` in the form the weight-gradient products read (`Float::pack_reused`; f32 with AVX2:
    /// `cpu::sgemm`'s strips), made with `x` so that the two cannot differ; `None` where the
    /// products read `x` itself.
    pub(crate) x_packed: Option<crate::cpu::sgemm::PackedB>,
}

impl<T: Float> DeferredDense<T> {
    /// The deferred gradient of weight `name` for layer input `x` and output gradient `dy`; a 2-D
    /// `x` is packed here, on the calling thread (each piece's own, in `train::piece_gradients`).
    pub fn new(name: String, x: ArrayD<T>, dy: ArrayD<T>) -> Self {
        let x_packed = x.view().into_dimensionality::<ndarray::Ix2>().ok().and_then(|x2| T::pack_reused(x2));
        Self { name, x, dy, x_packed }
    }
}

impl<'a, T: Float> Default for Tape<'a, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a, T: Float> Tape<'a, T> {
    /// A tape for training: parameters need gradients.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            grads: Vec::new(),
            params: Vec::new(),
            grad_enabled: true,
            defer_dense: false,
            deferred: Vec::new(),
        }
    }

    /// A training tape whose `backward` does not form the weight gradients of dense layers (a
    /// parameter weight of `linear`): it keeps each layer's input and output gradient for
    /// `into_param_grads_deferred`, so that a caller with several pieces of a batch can form
    /// `sum_p dy_p^T . x_p` block by block and update the weight while the block is in cache
    /// (`optim::Adam::step_deferred`) instead of writing, summing and reading whole gradients.
    pub fn defer_dense_weight_grads() -> Self {
        Self { defer_dense: true, ..Self::new() }
    }

    /// A tape for inference: nothing is recorded and nothing needs a gradient.
    pub fn inference() -> Self {
        Self { grad_enabled: false, ..Self::new() }
    }

    fn push(&mut self, value: CowArray<'a, T, IxDyn>, requires_grad: bool, op: Op) -> Var {
        let requires_grad = requires_grad && self.grad_enabled;
        let op = if requires_grad { op } else { Op::Leaf };
        self.nodes.push(Node { value, requires_grad, op });
        self.grads.push(None);
        Var(self.nodes.len() - 1)
    }

    fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// An owned input; `requires_grad` asks for its gradient.
    pub fn input(&mut self, value: ArrayD<T>, requires_grad: bool) -> Var {
        self.push(value.into(), requires_grad, Op::Leaf)
    }

    /// A borrowed input (no copy).
    pub fn input_view(&mut self, value: ArrayViewD<'a, T>, requires_grad: bool) -> Var {
        self.push(value.into(), requires_grad, Op::Leaf)
    }

    /// A named parameter, borrowed from its model. Its gradient is collected by `into_param_grads`.
    pub fn param(&mut self, name: impl Into<String>, value: &'a ArrayD<T>) -> Var {
        let v = self.push(value.view().into(), true, Op::Leaf);
        self.params.push((name.into(), v));
        v
    }

    /// The value of `v`.
    pub fn value(&self, v: Var) -> ArrayViewD<'_, T> {
        self.nodes[v.0].value.view()
    }

    /// The gradient of `v` after `backward` (None when `v` needs none or got none).
    pub fn grad(&self, v: Var) -> Option<&ArrayD<T>> {
        self.grads[v.0].as_ref()
    }

    fn val(&self, v: Var) -> &CowArray<'a, T, IxDyn> {
        &self.nodes[v.0].value
    }

    /// 2-D convolution (see `ops::conv2d`).
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Result<Var> {
        let y = conv2d::forward(self.val(x), self.val(w), b.map(|b| self.val(b)), spec)?;
        let rg = self.needs(x) || self.needs(w) || b.is_some_and(|b| self.needs(b));
        Ok(self.push(y.into(), rg, Op::Conv2d { x, w, b, spec }))
    }

    /// Max pooling, keeping the argmax when a gradient will be needed.
    pub fn maxpool2d(&mut self, x: Var, spec: Pool2dSpec) -> Result<Var> {
        let (y, argmax) = maxpool2d::forward(self.val(x), spec)?;
        let rg = self.needs(x);
        Ok(self.push(y.into(), rg, Op::MaxPool2d { x, spec, argmax }))
    }

    /// `x W^T + b`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let y = linear::forward(self.val(x), self.val(w), b.map(|b| self.val(b)))?;
        let rg = self.needs(x) || self.needs(w) || b.is_some_and(|b| self.needs(b));
        Ok(self.push(y.into(), rg, Op::Linear { x, w, b }))
    }

    /// ReLU.
    pub fn relu(&mut self, x: Var) -> Var {
        let y = activation::relu(self.val(x));
        let rg = self.needs(x);
        self.push(y.into(), rg, Op::Relu { x })
    }

    /// SELU.
    pub fn selu(&mut self, x: Var) -> Var {
        let y = activation::selu(self.val(x));
        let rg = self.needs(x);
        self.push(y.into(), rg, Op::Selu { x })
    }

    /// Elementwise sum of two tensors of the same shape.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = ops::add(self.val(a), self.val(b))?;
        let rg = self.needs(a) || self.needs(b);
        Ok(self.push(y.into(), rg, Op::Add { a, b }))
    }

    /// Reshape (row-major).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = ops::reshape(self.val(x), shape)?;
        let rg = self.needs(x);
        Ok(self.push(y.into(), rg, Op::Reshape { x }))
    }

    /// `[N, ...]` to `[N, prod(...)]`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let shape = ops::flatten_shape(self.val(x).shape())?;
        self.reshape(x, &shape)
    }

    /// Mean absolute error, a scalar (0-d) value.
    pub fn mae_loss(&mut self, pred: Var, target: Var) -> Result<Var> {
        let l = loss::mae(self.val(pred), self.val(target))?;
        let rg = self.needs(pred) || self.needs(target);
        Ok(self.push(ArrayD::from_elem(IxDyn(&[]), l).into(), rg, Op::MaeLoss { pred, target }))
    }

    /// Mean squared error, a scalar (0-d) value.
    pub fn mse_loss(&mut self, pred: Var, target: Var) -> Result<Var> {
        let l = loss::mse(self.val(pred), self.val(target))?;
        let rg = self.needs(pred) || self.needs(target);
        Ok(self.push(ArrayD::from_elem(IxDyn(&[]), l).into(), rg, Op::MseLoss { pred, target }))
    }

    /// Mean absolute error over the elements where `mask` is 1 (unknown labels masked out).
    pub fn masked_mae_loss(&mut self, pred: Var, target: Var, mask: Var) -> Result<Var> {
        let l = loss::masked_mae(self.val(pred), self.val(target), self.val(mask))?;
        let rg = self.needs(pred) || self.needs(target);
        Ok(self.push(ArrayD::from_elem(IxDyn(&[]), l).into(), rg, Op::MaskedMaeLoss { pred, target, mask }))
    }

    /// Backward pass from a scalar `loss`.
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        if self.nodes[loss.0].value.len() != 1 {
            return Err(Error::shape(
                "backward",
                "backward() needs a scalar; use backward_with for a tensor",
                &[self.nodes[loss.0].value.shape()],
            ));
        }
        let seed = ArrayD::from_elem(self.nodes[loss.0].value.raw_dim(), T::one());
        self.backward_with(loss, seed)
    }

    /// Backward pass from `out` with upstream gradient `grad_output` (of `out`'s shape).
    pub fn backward_with(&mut self, out: Var, grad_output: ArrayD<T>) -> Result<()> {
        if grad_output.shape() != self.nodes[out.0].value.shape() {
            return Err(Error::shape(
                "backward",
                "grad_output must have the output's shape",
                &[grad_output.shape(), self.nodes[out.0].value.shape()],
            ));
        }
        self.accumulate(out, grad_output);
        for i in (0..=out.0).rev() {
            if matches!(self.nodes[i].op, Op::Leaf) {
                continue;
            }
            // An intermediate's gradient is used once, here, and then freed.
            let Some(g) = self.grads[i].take() else { continue };
            self.backward_node(i, g)?;
        }
        Ok(())
    }

    fn accumulate(&mut self, v: Var, g: ArrayD<T>) {
        if !self.nodes[v.0].requires_grad {
            return;
        }
        match &mut self.grads[v.0] {
            Some(acc) => *acc += &g,
            slot => *slot = Some(g),
        }
    }

    /// The one backward `match`: each op's rule, from `ops`.
    fn backward_node(&mut self, i: usize, g: ArrayD<T>) -> Result<()> {
        let node = &self.nodes[i];
        let mut out: Vec<(Var, ArrayD<T>)> = Vec::with_capacity(3);
        match &node.op {
            Op::Leaf => {}
            Op::Conv2d { x, w, b, spec } => {
                let need = [self.needs(*x), self.needs(*w), b.is_some_and(|b| self.needs(b))];
                let (dx, dw, db) = conv2d::backward(self.val(*x), self.val(*w), &g, *spec, need)?;
                out.extend(dx.map(|d| (*x, d)));
                out.extend(dw.map(|d| (*w, d)));
                if let (Some(b), Some(db)) = (b, db) {
                    out.push((*b, db));
                }
            }
            Op::MaxPool2d { x, spec, argmax } => {
                out.push((*x, maxpool2d::backward(self.val(*x).shape(), &g, argmax, *spec)?));
            }
            Op::Linear { x, w, b } => {
                let defer = self.defer_dense && self.needs(*w) && self.params.iter().any(|(_, p)| p == w);
                let need = [self.needs(*x), self.needs(*w) && !defer, b.is_some_and(|b| self.needs(b))];
                let (dx, dw, db) = linear::backward(self.val(*x), self.val(*w), &g, need)?;
                out.extend(dx.map(|d| (*x, d)));
                out.extend(dw.map(|d| (*w, d)));
                if let (Some(b), Some(db)) = (b, db) {
                    out.push((*b, db));
                }
                if defer {
                    let (x, w) = (*x, *w);
                    self.deferred.push((w, x, g));
                }
            }
            Op::Relu { x } => out.push((*x, activation::relu_backward(self.val(*x), &g))),
            Op::Selu { x } => out.push((*x, activation::selu_backward_into(self.val(*x), g))),
            Op::Add { a, b } => {
                out.push((*a, g.clone()));
                out.push((*b, g));
            }
            Op::Reshape { x } => {
                let shape = self.val(*x).shape().to_vec();
                out.push((*x, ops::reshape(&g, &shape)?));
            }
            Op::MaeLoss { pred, target } => {
                let gp = loss::mae_backward(self.val(*pred), self.val(*target), g.sum());
                out.push((*target, gp.mapv(|v| -v)));
                out.push((*pred, gp));
            }
            Op::MaskedMaeLoss { pred, target, mask } => {
                let gp = loss::masked_mae_backward(self.val(*pred), self.val(*target), self.val(*mask), g.sum());
                out.push((*target, gp.mapv(|v| -v)));
                out.push((*pred, gp));
            }
            Op::MseLoss { pred, target } => {
                let gp = loss::mse_backward(self.val(*pred), self.val(*target), g.sum());
                out.push((*target, gp.mapv(|v| -v)));
                out.push((*pred, gp));
            }
        }
        for (v, d) in out {
            self.accumulate(v, d);
        }
        Ok(())
    }

    /// The gradients of every parameter, by name, in the order they were registered.
    pub fn into_param_grads(self) -> ParamGrads<T> {
        self.into_param_grads_deferred().0
    }

    /// `into_param_grads`, and the dense weight gradients a `defer_dense_weight_grads` tape left to
    /// the caller (their parameters have no gradient in the first list).
    pub fn into_param_grads_deferred(mut self) -> (ParamGrads<T>, Vec<DeferredDense<T>>) {
        let params = std::mem::take(&mut self.params);
        let deferred = std::mem::take(&mut self.deferred);
        let name_of = |w: Var| {
            params.iter().find(|(_, p)| *p == w).map(|(n, _)| n.clone()).expect("a deferred weight is a parameter")
        };
        let dense: Vec<DeferredDense<T>> = deferred
            .into_iter()
            .map(|(w, x, dy)| {
                // A layer input used by one dense layer is moved out of the tape, not copied.
                let uses = self.nodes.iter().filter(|n| matches!(n.op, Op::Linear { x: u, .. } if u == x)).count();
                let x = if uses == 1 {
                    std::mem::replace(&mut self.nodes[x.0].value, CowArray::from(ArrayD::zeros(IxDyn(&[0]))))
                        .into_owned()
                } else {
                    self.nodes[x.0].value.to_owned()
                };
                DeferredDense::new(name_of(w), x, dy)
            })
            .collect();
        let grads = params.iter().map(|(name, v)| (name.clone(), self.grads[v.0].take())).collect();
        (grads, dense)
    }
}
