//! A small reverse-mode autograd core: one tape of recorded ops, for every device.
//!
//! A forward pass pushes every value onto the [`Tape`]; an op is *recorded* (kept with its inputs for the
//! backward pass) only when one of its inputs needs a gradient, so an inference pass records nothing.
//! `backward` walks the tape once in reverse and applies each op's backward rule in one exhaustive
//! `match` (a new `Op` variant without a rule does not compile). Gradients add up, so a value used
//! twice (the input of a residual block) gets the sum of both paths.
//!
//! The tape is generic over a [`Backend`]: where values live and which kernels compute them. The CPU
//! backend is the element type itself (`Tape<'a, f32>`, `Tape<'a, f64>`): values are ndarray arrays
//! that borrow parameters instead of copying them (`CowArray`), kernels are `ops`. The GPU backend is
//! `gpu::Gpu` (`gpu::GpuTape`): values are device tensors, kernels are our WGSL. What differs between
//! them is only what a backend hook says: what an op keeps for its backward rule (`ConvSaved`,
//! `PoolSaved`, `LossSaved`), how gradients add (in place on the CPU, out of place on the GPU, where
//! two inputs of an add share one tensor), the CPU's cached weight spectra for inference
//! (`conv2d_cached`), and its deferred dense weight gradients (`Tape::defer_dense_weight_grads`).
//!
//! After `backward`, [`Tape::into_param_grads`] hands the gradients to the optimizer by parameter name.

use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::ops::{
    self, activation, conv2d, conv2d::Conv2dSpec, conv2d::SpectraCache, linear, loss, maxpool2d, maxpool2d::Pool2dSpec,
};
use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};

pub use crate::ops::loss::LossKind;

/// A handle to a value on a tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Var(pub(crate) usize);

/// A loss as a tape records it: one of the plain losses, or the Gaussian negative log-likelihood of
/// means and log-variances (`ops::loss::masked_gaussian_nll_sum` over the mask's sum).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossFn {
    Plain(LossKind),
    GaussianNll { beta: f64 },
}

/// Input, weight and bias gradients of an op with three operands (`None` where not asked for).
pub type Grads3<G> = (Option<G>, Option<G>, Option<G>);

/// Where a tape's values live and which kernels compute them: the forward kernels, the backward rules
/// they need, and the hooks where one device keeps more than another.
///
/// Every function takes the tape's backend state `ctx` (`()`-like for the CPU apart from deferred
/// gradients; the device and its parameter store for the GPU). Shapes are checked by the kernels.
pub trait Backend<'a>: Sized {
    /// The element type of host arrays (parameters, inputs and values read back).
    type Elem: Float;
    /// The tape's state on this backend.
    type Ctx;
    /// A value on the tape.
    type Value;
    /// How a value is read without copying it (CPU: an array view; GPU: the tensor).
    type View<'s>
    where
        Self: 's,
        'a: 's;
    /// A gradient (cloned where an add hands one gradient to two inputs).
    type Grad: Clone;
    /// What a convolution keeps for its backward rule.
    type ConvSaved;
    /// What a pooling keeps for its backward rule (at least the argmax).
    type PoolSaved;
    /// What a loss keeps for its backward rule (the GPU's kernel writes the gradient with the loss).
    type LossSaved;

    fn shape(v: &Self::Value) -> &[usize];
    fn grad_shape(g: &Self::Grad) -> &[usize];
    fn view<'s>(v: &'s Self::Value) -> Self::View<'s>
    where
        'a: 's;
    /// The value of the parameter `name`, whose host copy is `host`.
    fn param(ctx: &Self::Ctx, name: &str, host: &'a ArrayD<Self::Elem>) -> Result<Self::Value>;
    fn from_host(ctx: &Self::Ctx, a: ArrayViewD<'a, Self::Elem>) -> Result<Self::Value>;
    fn grad_from_host(ctx: &Self::Ctx, a: ArrayD<Self::Elem>) -> Result<Self::Grad>;
    fn to_host(ctx: &Self::Ctx, v: &Self::Value) -> Result<ArrayD<Self::Elem>>;
    fn grad_to_host(ctx: &Self::Ctx, g: &Self::Grad) -> Result<ArrayD<Self::Elem>>;

    fn conv2d(
        ctx: &Self::Ctx,
        x: &Self::Value,
        w: &Self::Value,
        b: Option<&Self::Value>,
        spec: Conv2dSpec,
    ) -> Result<(Self::Value, Self::ConvSaved)>;
    /// `conv2d` for an inference pass, which may keep the weight's spectra in `cache` between calls
    /// (CPU); by default plain `conv2d`.
    fn conv2d_cached(
        ctx: &Self::Ctx,
        x: &Self::Value,
        w: &Self::Value,
        b: Option<&Self::Value>,
        spec: Conv2dSpec,
        cache: &'a SpectraCache<Self::Elem>,
    ) -> Result<Self::Value> {
        let _ = cache;
        Ok(Self::conv2d(ctx, x, w, b, spec)?.0)
    }
    fn maxpool2d(ctx: &Self::Ctx, x: &Self::Value, spec: Pool2dSpec) -> Result<(Self::Value, Self::PoolSaved)>;
    fn linear(ctx: &Self::Ctx, x: &Self::Value, w: &Self::Value, b: Option<&Self::Value>) -> Result<Self::Value>;
    fn relu(ctx: &Self::Ctx, x: &Self::Value) -> Result<Self::Value>;
    fn selu(ctx: &Self::Ctx, x: &Self::Value) -> Result<Self::Value>;
    fn add(ctx: &Self::Ctx, a: &Self::Value, b: &Self::Value) -> Result<Self::Value>;
    fn reshape(ctx: &Self::Ctx, x: &Self::Value, shape: &[usize]) -> Result<Self::Value>;
    /// A loss (a 0-d value) and what its backward rule keeps; `want_grad`: a gradient will be asked for.
    fn loss(
        ctx: &Self::Ctx,
        f: LossFn,
        pred: &Self::Value,
        target: &Self::Value,
        mask: Option<&Self::Value>,
        want_grad: bool,
    ) -> Result<(Self::Value, Self::LossSaved)>;

    fn conv2d_backward(
        ctx: &Self::Ctx,
        x: &Self::Value,
        w: &Self::Value,
        dy: &Self::Grad,
        saved: &Self::ConvSaved,
        need: [bool; 3],
    ) -> Result<Grads3<Self::Grad>>;
    fn maxpool2d_backward(
        ctx: &Self::Ctx,
        x: &Self::Value,
        dy: &Self::Grad,
        saved: &Self::PoolSaved,
    ) -> Result<Self::Grad>;
    fn linear_backward(
        ctx: &Self::Ctx,
        x: &Self::Value,
        w: &Self::Value,
        dy: &Self::Grad,
        need: [bool; 3],
    ) -> Result<Grads3<Self::Grad>>;
    fn relu_backward(ctx: &Self::Ctx, x: &Self::Value, dy: Self::Grad) -> Result<Self::Grad>;
    fn selu_backward(ctx: &Self::Ctx, x: &Self::Value, dy: Self::Grad) -> Result<Self::Grad>;
    fn reshape_grad(ctx: &Self::Ctx, dy: Self::Grad, shape: &[usize]) -> Result<Self::Grad>;
    /// The gradient of a loss with respect to its prediction, for upstream gradient `dy` (`None`: 1,
    /// backward from the loss itself).
    fn loss_backward(
        ctx: &Self::Ctx,
        f: LossFn,
        pred: &Self::Value,
        target: &Self::Value,
        mask: Option<&Self::Value>,
        saved: &Self::LossSaved,
        dy: Option<&Self::Grad>,
    ) -> Result<Self::Grad>;
    fn neg(ctx: &Self::Ctx, g: &Self::Grad) -> Result<Self::Grad>;
    /// `acc += g`, or `acc = g` where there is none yet.
    fn accumulate(ctx: &Self::Ctx, acc: &mut Option<Self::Grad>, g: Self::Grad) -> Result<()>;
    /// Whether `backward` leaves dense weight gradients to the caller (`Tape::defer_dense_weight_grads`).
    fn defers_dense(ctx: &Self::Ctx) -> bool {
        let _ = ctx;
        false
    }
    /// Keeps a dense layer's (weight, input, output gradient) for the caller; called only where
    /// `defers_dense` is true.
    fn defer_dense(ctx: &mut Self::Ctx, w: Var, x: Var, dy: Self::Grad) {
        let _ = (ctx, w, x, dy);
    }
}

/// The CPU tape's state: the dense-layer gradients it leaves to the caller.
pub struct CpuState<T> {
    /// Whether `backward` leaves dense weight gradients to the caller (`defer_dense_weight_grads`).
    defer_dense: bool,
    /// What was left: (weight, the layer's input, its output gradient).
    deferred: Vec<(Var, Var, ArrayD<T>)>,
}

/// The CPU backend: the element type itself, with `ops` as kernels.
impl<'a, T: Float> Backend<'a> for T {
    type Elem = T;
    type Ctx = CpuState<T>;
    type Value = CowArray<'a, T, IxDyn>;
    type View<'s>
        = ArrayViewD<'s, T>
    where
        'a: 's;
    type Grad = ArrayD<T>;
    type ConvSaved = Conv2dSpec;
    type PoolSaved = (Pool2dSpec, Vec<u32>);
    type LossSaved = ();

    fn shape(v: &Self::Value) -> &[usize] {
        v.shape()
    }
    fn grad_shape(g: &ArrayD<T>) -> &[usize] {
        g.shape()
    }
    fn view<'s>(v: &'s Self::Value) -> ArrayViewD<'s, T>
    where
        'a: 's,
    {
        v.view()
    }
    fn param(_: &CpuState<T>, _name: &str, host: &'a ArrayD<T>) -> Result<Self::Value> {
        Ok(host.view().into())
    }
    fn from_host(_: &CpuState<T>, a: ArrayViewD<'a, T>) -> Result<Self::Value> {
        Ok(a.into())
    }
    fn grad_from_host(_: &CpuState<T>, a: ArrayD<T>) -> Result<ArrayD<T>> {
        Ok(a)
    }
    fn to_host(_: &CpuState<T>, v: &Self::Value) -> Result<ArrayD<T>> {
        Ok(v.to_owned())
    }
    fn grad_to_host(_: &CpuState<T>, g: &ArrayD<T>) -> Result<ArrayD<T>> {
        Ok(g.clone())
    }

    fn conv2d(
        _: &CpuState<T>,
        x: &Self::Value,
        w: &Self::Value,
        b: Option<&Self::Value>,
        spec: Conv2dSpec,
    ) -> Result<(Self::Value, Conv2dSpec)> {
        Ok((conv2d::forward(x, w, b, spec)?.into(), spec))
    }
    fn conv2d_cached(
        _: &CpuState<T>,
        x: &Self::Value,
        w: &Self::Value,
        b: Option<&Self::Value>,
        spec: Conv2dSpec,
        cache: &'a SpectraCache<T>,
    ) -> Result<Self::Value> {
        Ok(conv2d::forward_cached(x, w, b, spec, cache)?.into())
    }
    fn maxpool2d(_: &CpuState<T>, x: &Self::Value, spec: Pool2dSpec) -> Result<(Self::Value, Self::PoolSaved)> {
        let (y, argmax) = maxpool2d::forward(x, spec)?;
        Ok((y.into(), (spec, argmax)))
    }
    fn linear(_: &CpuState<T>, x: &Self::Value, w: &Self::Value, b: Option<&Self::Value>) -> Result<Self::Value> {
        Ok(linear::forward(x, w, b)?.into())
    }
    fn relu(_: &CpuState<T>, x: &Self::Value) -> Result<Self::Value> {
        Ok(activation::relu(x).into())
    }
    fn selu(_: &CpuState<T>, x: &Self::Value) -> Result<Self::Value> {
        Ok(activation::selu(x).into())
    }
    fn add(_: &CpuState<T>, a: &Self::Value, b: &Self::Value) -> Result<Self::Value> {
        Ok(ops::add(a, b)?.into())
    }
    fn reshape(_: &CpuState<T>, x: &Self::Value, shape: &[usize]) -> Result<Self::Value> {
        Ok(ops::reshape(x, shape)?.into())
    }
    fn loss(
        _: &CpuState<T>,
        f: LossFn,
        pred: &Self::Value,
        target: &Self::Value,
        mask: Option<&Self::Value>,
        _want_grad: bool,
    ) -> Result<(Self::Value, ())> {
        let l = match (f, mask) {
            (LossFn::Plain(LossKind::Mae), _) => loss::mae(pred, target)?,
            (LossFn::Plain(LossKind::Mse), _) => loss::mse(pred, target)?,
            (LossFn::Plain(LossKind::MaskedMae), Some(m)) => loss::masked_mae(pred, target, m)?,
            (LossFn::GaussianNll { beta }, Some(m)) => {
                loss::masked_gaussian_nll_sum(pred, target, m, T::of(beta))? / m.sum()
            }
            (_, None) => return Err(Error::invalid("loss", "this loss takes a mask")),
        };
        Ok((ArrayD::from_elem(IxDyn(&[]), l).into(), ()))
    }

    fn conv2d_backward(
        _: &CpuState<T>,
        x: &Self::Value,
        w: &Self::Value,
        dy: &ArrayD<T>,
        spec: &Conv2dSpec,
        need: [bool; 3],
    ) -> Result<Grads3<ArrayD<T>>> {
        conv2d::backward(x, w, dy, *spec, need)
    }
    fn maxpool2d_backward(
        _: &CpuState<T>,
        x: &Self::Value,
        dy: &ArrayD<T>,
        (spec, argmax): &Self::PoolSaved,
    ) -> Result<ArrayD<T>> {
        maxpool2d::backward(x.shape(), dy, argmax, *spec)
    }
    fn linear_backward(
        _: &CpuState<T>,
        x: &Self::Value,
        w: &Self::Value,
        dy: &ArrayD<T>,
        need: [bool; 3],
    ) -> Result<Grads3<ArrayD<T>>> {
        linear::backward(x, w, dy, need)
    }
    fn relu_backward(_: &CpuState<T>, x: &Self::Value, dy: ArrayD<T>) -> Result<ArrayD<T>> {
        Ok(activation::relu_backward(x, &dy))
    }
    fn selu_backward(_: &CpuState<T>, x: &Self::Value, dy: ArrayD<T>) -> Result<ArrayD<T>> {
        Ok(activation::selu_backward_into(x, dy))
    }
    fn reshape_grad(_: &CpuState<T>, dy: ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>> {
        ops::reshape(&dy, shape)
    }
    fn loss_backward(
        _: &CpuState<T>,
        f: LossFn,
        pred: &Self::Value,
        target: &Self::Value,
        mask: Option<&Self::Value>,
        _: &(),
        dy: Option<&ArrayD<T>>,
    ) -> Result<ArrayD<T>> {
        let g = dy.map_or(T::one(), |g| g.sum());
        Ok(match (f, mask) {
            (LossFn::Plain(LossKind::Mae), _) => loss::mae_backward(pred, target, g),
            (LossFn::Plain(LossKind::Mse), _) => loss::mse_backward(pred, target, g),
            (LossFn::Plain(LossKind::MaskedMae), Some(m)) => loss::masked_mae_backward(pred, target, m, g),
            (LossFn::GaussianNll { beta }, Some(m)) => {
                loss::masked_gaussian_nll_grad(pred, target, m, T::of(beta), g / m.sum())?
            }
            (_, None) => return Err(Error::invalid("loss", "this loss takes a mask")),
        })
    }
    fn neg(_: &CpuState<T>, g: &ArrayD<T>) -> Result<ArrayD<T>> {
        Ok(g.mapv(|v| -v))
    }
    fn accumulate(_: &CpuState<T>, acc: &mut Option<ArrayD<T>>, g: ArrayD<T>) -> Result<()> {
        match acc {
            Some(acc) => *acc += &g,
            slot => *slot = Some(g),
        }
        Ok(())
    }
    fn defers_dense(ctx: &CpuState<T>) -> bool {
        ctx.defer_dense
    }
    fn defer_dense(ctx: &mut CpuState<T>, w: Var, x: Var, dy: ArrayD<T>) {
        ctx.deferred.push((w, x, dy));
    }
}

/// A recorded operation and what its backward rule needs.
enum Op<'a, B: Backend<'a>> {
    /// An input, parameter or constant; also every op none of whose inputs needs a gradient.
    Leaf,
    Conv2d {
        x: Var,
        w: Var,
        b: Option<Var>,
        saved: B::ConvSaved,
    },
    MaxPool2d {
        x: Var,
        saved: B::PoolSaved,
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
    Loss {
        f: LossFn,
        pred: Var,
        target: Var,
        mask: Option<Var>,
        saved: B::LossSaved,
    },
}

struct Node<'a, B: Backend<'a>> {
    value: B::Value,
    requires_grad: bool,
    op: Op<'a, B>,
}

/// The tape: values, recorded ops, and after `backward`, gradients.
pub struct Tape<'a, B: Backend<'a>> {
    ctx: B::Ctx,
    nodes: Vec<Node<'a, B>>,
    grads: Vec<Option<B::Grad>>,
    params: Vec<(String, Var)>,
    grad_enabled: bool,
}

/// Parameter gradients by name, in registration order (`None`: the parameter got none).
pub type ParamGrads<T> = Vec<(String, Option<ArrayD<T>>)>;

/// The operations every tape records, on any backend: a model's forward pass is written once against
/// these (`nn::models`).
impl<'a, B: Backend<'a>> Tape<'a, B> {
    /// An empty tape with backend state `ctx`; `grad_enabled: false` records nothing.
    pub fn with_backend(ctx: B::Ctx, grad_enabled: bool) -> Self {
        Self { ctx, nodes: Vec::new(), grads: Vec::new(), params: Vec::new(), grad_enabled }
    }

    /// The backend state (for a backend's own methods on its tape).
    pub(crate) fn ctx(&self) -> &B::Ctx {
        &self.ctx
    }

    /// An input already in the backend's form; `requires_grad` asks for its gradient.
    pub fn input_value(&mut self, value: B::Value, requires_grad: bool) -> Var {
        self.push(value, requires_grad, Op::Leaf)
    }

    fn push(&mut self, value: B::Value, requires_grad: bool, op: Op<'a, B>) -> Var {
        let requires_grad = requires_grad && self.grad_enabled;
        let op = if requires_grad { op } else { Op::Leaf };
        self.nodes.push(Node { value, requires_grad, op });
        self.grads.push(None);
        Var(self.nodes.len() - 1)
    }

    fn needs(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    fn val(&self, v: Var) -> &B::Value {
        &self.nodes[v.0].value
    }

    /// The value of `v` (CPU: a view of the array; GPU: the device tensor).
    pub fn value(&self, v: Var) -> B::View<'_> {
        B::view(&self.nodes[v.0].value)
    }

    /// The shape of `v`.
    pub fn shape_of(&self, v: Var) -> Vec<usize> {
        B::shape(self.val(v)).to_vec()
    }

    /// The gradient of `v` after `backward` (None when `v` needs none or got none).
    pub fn grad(&self, v: Var) -> Option<&B::Grad> {
        self.grads[v.0].as_ref()
    }

    /// An input from a host array (borrowed on the CPU, uploaded on the GPU).
    pub fn input_host(&mut self, a: ArrayViewD<'a, B::Elem>, requires_grad: bool) -> Result<Var> {
        let v = B::from_host(&self.ctx, a)?;
        Ok(self.push(v, requires_grad, Op::Leaf))
    }

    /// The value of `v`, copied into a host array.
    pub fn value_host(&self, v: Var) -> Result<ArrayD<B::Elem>> {
        B::to_host(&self.ctx, self.val(v))
    }

    /// The gradient of `v` after `backward`, copied into a host array.
    pub fn grad_host(&self, v: Var) -> Result<Option<ArrayD<B::Elem>>> {
        self.grad(v).map(|g| B::grad_to_host(&self.ctx, g)).transpose()
    }

    /// A named parameter, borrowed from its model (the GPU tape looks its value up by name among the
    /// tensors it holds on the device). Its gradient is collected by `into_param_grads`.
    pub fn param(&mut self, name: impl Into<String>, value: &'a ArrayD<B::Elem>) -> Result<Var> {
        let name = name.into();
        let t = B::param(&self.ctx, &name, value)?;
        let v = self.push(t, true, Op::Leaf);
        self.params.push((name, v));
        Ok(v)
    }

    /// 2-D convolution (see `ops::conv2d`).
    pub fn conv2d(&mut self, x: Var, w: Var, b: Option<Var>, spec: Conv2dSpec) -> Result<Var> {
        let (y, saved) = B::conv2d(&self.ctx, self.val(x), self.val(w), b.map(|b| self.val(b)), spec)?;
        let rg = self.needs(x) || self.needs(w) || b.is_some_and(|b| self.needs(b));
        Ok(self.push(y, rg, Op::Conv2d { x, w, b, saved }))
    }

    /// `conv2d` whose weight spectra an inference pass may keep in `cache` between calls (CPU tape
    /// without gradients); tapes that record, and the GPU's, run plain `conv2d`.
    pub fn conv2d_cached(
        &mut self,
        x: Var,
        w: Var,
        b: Option<Var>,
        spec: Conv2dSpec,
        cache: &'a SpectraCache<B::Elem>,
    ) -> Result<Var> {
        if self.grad_enabled {
            return self.conv2d(x, w, b, spec);
        }
        let y = B::conv2d_cached(&self.ctx, self.val(x), self.val(w), b.map(|b| self.val(b)), spec, cache)?;
        Ok(self.push(y, false, Op::Leaf))
    }

    /// Max pooling, keeping the argmax when a gradient will be needed.
    pub fn maxpool2d(&mut self, x: Var, spec: Pool2dSpec) -> Result<Var> {
        let (y, saved) = B::maxpool2d(&self.ctx, self.val(x), spec)?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::MaxPool2d { x, saved }))
    }

    /// `x W^T + b`.
    pub fn linear(&mut self, x: Var, w: Var, b: Option<Var>) -> Result<Var> {
        let y = B::linear(&self.ctx, self.val(x), self.val(w), b.map(|b| self.val(b)))?;
        let rg = self.needs(x) || self.needs(w) || b.is_some_and(|b| self.needs(b));
        Ok(self.push(y, rg, Op::Linear { x, w, b }))
    }

    /// ReLU.
    pub fn relu(&mut self, x: Var) -> Result<Var> {
        let y = B::relu(&self.ctx, self.val(x))?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::Relu { x }))
    }

    /// SELU.
    pub fn selu(&mut self, x: Var) -> Result<Var> {
        let y = B::selu(&self.ctx, self.val(x))?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::Selu { x }))
    }

    /// Elementwise sum of two tensors of the same shape.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = B::add(&self.ctx, self.val(a), self.val(b))?;
        let rg = self.needs(a) || self.needs(b);
        Ok(self.push(y, rg, Op::Add { a, b }))
    }

    /// Reshape (row-major).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = B::reshape(&self.ctx, self.val(x), shape)?;
        let rg = self.needs(x);
        Ok(self.push(y, rg, Op::Reshape { x }))
    }

    /// `[N, ...]` to `[N, prod(...)]`.
    pub fn flatten(&mut self, x: Var) -> Result<Var> {
        let shape = ops::flatten_shape(B::shape(self.val(x)))?;
        self.reshape(x, &shape)
    }

    /// A loss between `pred` and `target` (and `mask` for the masked MAE), a scalar (0-d) value.
    pub fn loss(&mut self, kind: LossKind, pred: Var, target: Var, mask: Option<Var>) -> Result<Var> {
        if (kind == LossKind::MaskedMae) != mask.is_some() {
            return Err(Error::invalid("loss", "the masked MAE takes a mask and the other losses none"));
        }
        self.record_loss(LossFn::Plain(kind), pred, target, mask)
    }

    /// Mean absolute error, a scalar (0-d) value.
    pub fn mae_loss(&mut self, pred: Var, target: Var) -> Result<Var> {
        self.loss(LossKind::Mae, pred, target, None)
    }

    /// Mean squared error, a scalar (0-d) value.
    pub fn mse_loss(&mut self, pred: Var, target: Var) -> Result<Var> {
        self.loss(LossKind::Mse, pred, target, None)
    }

    /// Mean absolute error over the elements where `mask` is 1 (unknown labels masked out).
    pub fn masked_mae_loss(&mut self, pred: Var, target: Var, mask: Var) -> Result<Var> {
        self.loss(LossKind::MaskedMae, pred, target, Some(mask))
    }

    /// The masked Gaussian NLL of `pred` (`[n, 2k]`: means, then log-variances) for `target` and
    /// `mask` (`[n, k]`) over the mask's sum, a scalar, beta-NLL weighted. The target gets no gradient.
    pub fn gaussian_nll(&mut self, pred: Var, target: Var, mask: Var, beta: f64) -> Result<Var> {
        if self.needs(target) {
            return Err(Error::invalid("gaussian_nll_loss", "the Gaussian NLL gives no gradient to its target"));
        }
        self.record_loss(LossFn::GaussianNll { beta }, pred, target, Some(mask))
    }

    fn record_loss(&mut self, f: LossFn, pred: Var, target: Var, mask: Option<Var>) -> Result<Var> {
        // `needs` is already false on a tape that records nothing.
        let want = self.needs(pred) || self.needs(target);
        let (l, saved) = B::loss(&self.ctx, f, self.val(pred), self.val(target), mask.map(|m| self.val(m)), want)?;
        Ok(self.push(l, want, Op::Loss { f, pred, target, mask, saved }))
    }

    /// Backward pass from a scalar `loss` (a loss recorded on this tape starts with gradient 1 and
    /// uploads nothing).
    pub fn backward(&mut self, loss: Var) -> Result<()> {
        if matches!(self.nodes[loss.0].op, Op::Loss { .. }) {
            return self.run_backward(loss, true);
        }
        let shape = B::shape(self.val(loss)).to_vec();
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::shape(
                "backward",
                "backward() needs a scalar; use backward_with for a tensor",
                &[&shape],
            ));
        }
        let seed = B::grad_from_host(&self.ctx, ArrayD::from_elem(IxDyn(&shape), <B::Elem as num_traits::One>::one()))?;
        self.backward_with(loss, seed)
    }

    /// Backward pass from `out` with upstream gradient `grad_output` (of `out`'s shape).
    pub fn backward_with(&mut self, out: Var, grad_output: B::Grad) -> Result<()> {
        let (gs, vs) = (B::grad_shape(&grad_output).to_vec(), B::shape(self.val(out)).to_vec());
        if gs != vs {
            return Err(Error::shape("backward", "grad_output must have the output's shape", &[&gs, &vs]));
        }
        self.accumulate(out, grad_output)?;
        self.run_backward(out, false)
    }

    /// `backward_with` from a host array.
    pub fn backward_with_host(&mut self, out: Var, grad_output: ArrayD<B::Elem>) -> Result<()> {
        let g = B::grad_from_host(&self.ctx, grad_output)?;
        self.backward_with(out, g)
    }

    /// Walks the tape back from `out`; `unit_root`: the root is a loss with upstream gradient 1.
    fn run_backward(&mut self, out: Var, unit_root: bool) -> Result<()> {
        for i in (0..=out.0).rev() {
            if matches!(self.nodes[i].op, Op::Leaf) {
                continue;
            }
            // An intermediate's gradient is used once, here, and then freed.
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

    fn accumulate(&mut self, v: Var, g: B::Grad) -> Result<()> {
        if !self.nodes[v.0].requires_grad {
            return Ok(());
        }
        B::accumulate(&self.ctx, &mut self.grads[v.0], g)
    }

    /// The one backward `match`: each op's rule, from the backend. `g` is None only for a loss at the
    /// root of a backward pass (upstream gradient 1).
    fn backward_node(&mut self, i: usize, g: Option<B::Grad>) -> Result<()> {
        let ctx = &self.ctx;
        let node = &self.nodes[i];
        let mut out: Vec<(Var, B::Grad)> = Vec::with_capacity(3);
        let mut deferred = None;
        let grads3 = |out: &mut Vec<(Var, B::Grad)>, (x, w, b): (Var, Var, Option<Var>), d: Grads3<B::Grad>| {
            out.extend(d.0.map(|d| (x, d)));
            out.extend(d.1.map(|d| (w, d)));
            if let (Some(b), Some(db)) = (b, d.2) {
                out.push((b, db));
            }
        };
        match (&node.op, g) {
            (Op::Leaf, _) => {}
            (Op::Loss { f, pred, target, mask, saved }, g) => {
                let m = mask.map(|m| self.val(m));
                let dp = B::loss_backward(ctx, *f, self.val(*pred), self.val(*target), m, saved, g.as_ref())?;
                if self.needs(*target) {
                    out.push((*target, B::neg(ctx, &dp)?));
                }
                out.push((*pred, dp));
            }
            (_, None) => return Err(Error::invalid("backward", "an intermediate value has no upstream gradient")),
            (Op::Conv2d { x, w, b, saved }, Some(g)) => {
                let need = [self.needs(*x), self.needs(*w), b.is_some_and(|b| self.needs(b))];
                let d = B::conv2d_backward(ctx, self.val(*x), self.val(*w), &g, saved, need)?;
                grads3(&mut out, (*x, *w, *b), d);
            }
            (Op::MaxPool2d { x, saved }, Some(g)) => {
                out.push((*x, B::maxpool2d_backward(ctx, self.val(*x), &g, saved)?));
            }
            (Op::Linear { x, w, b }, Some(g)) => {
                let defer = B::defers_dense(ctx) && self.needs(*w) && self.params.iter().any(|(_, p)| p == w);
                let need = [self.needs(*x), self.needs(*w) && !defer, b.is_some_and(|b| self.needs(b))];
                let d = B::linear_backward(ctx, self.val(*x), self.val(*w), &g, need)?;
                grads3(&mut out, (*x, *w, *b), d);
                if defer {
                    deferred = Some((*w, *x, g));
                }
            }
            (Op::Relu { x }, Some(g)) => out.push((*x, B::relu_backward(ctx, self.val(*x), g)?)),
            (Op::Selu { x }, Some(g)) => out.push((*x, B::selu_backward(ctx, self.val(*x), g)?)),
            (Op::Add { a, b }, Some(g)) => {
                out.push((*a, g.clone()));
                out.push((*b, g));
            }
            (Op::Reshape { x }, Some(g)) => {
                let shape = B::shape(self.val(*x)).to_vec();
                out.push((*x, B::reshape_grad(ctx, g, &shape)?));
            }
        }
        if let Some((w, x, g)) = deferred {
            B::defer_dense(&mut self.ctx, w, x, g);
        }
        for (v, d) in out {
            self.accumulate(v, d)?;
        }
        Ok(())
    }

    /// The gradients of every parameter, by name, in the order they were registered (None where a
    /// parameter got none).
    pub fn into_param_grads(mut self) -> Vec<(String, Option<B::Grad>)> {
        let params = std::mem::take(&mut self.params);
        params.into_iter().map(|(name, v)| (name, self.grads[v.0].take())).collect()
    }

    /// `into_param_grads`, copied into host arrays.
    pub fn into_param_grads_host(self) -> Result<ParamGrads<B::Elem>> {
        let Self { ctx, mut grads, params, .. } = self;
        params
            .into_iter()
            .map(|(name, v)| Ok((name, grads[v.0].take().map(|g| B::grad_to_host(&ctx, &g)).transpose()?)))
            .collect()
    }
}

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

/// The CPU tape's own constructors and inputs.
impl<'a, T: Float> Tape<'a, T> {
    /// A tape for training: parameters need gradients.
    pub fn new() -> Self {
        Self::with_backend(CpuState { defer_dense: false, deferred: Vec::new() }, true)
    }

    /// A training tape whose `backward` does not form the weight gradients of dense layers (a
    /// parameter weight of `linear`): it keeps each layer's input and output gradient for
    /// `into_param_grads_deferred`, so that a caller with several pieces of a batch can form
    /// `sum_p dy_p^T . x_p` block by block and update the weight while the block is in cache
    /// (`optim::Adam::step_deferred`) instead of writing, summing and reading whole gradients.
    pub fn defer_dense_weight_grads() -> Self {
        Self::with_backend(CpuState { defer_dense: true, deferred: Vec::new() }, true)
    }

    /// A tape for inference: nothing is recorded and nothing needs a gradient.
    pub fn inference() -> Self {
        Self::with_backend(CpuState { defer_dense: false, deferred: Vec::new() }, false)
    }

    /// An owned input; `requires_grad` asks for its gradient.
    pub fn input(&mut self, value: ArrayD<T>, requires_grad: bool) -> Var {
        self.push(value.into(), requires_grad, Op::Leaf)
    }

    /// A borrowed input (no copy).
    pub fn input_view(&mut self, value: ArrayViewD<'a, T>, requires_grad: bool) -> Var {
        self.push(value.into(), requires_grad, Op::Leaf)
    }

    /// `into_param_grads`, and the dense weight gradients a `defer_dense_weight_grads` tape left to
    /// the caller (their parameters have no gradient in the first list).
    pub fn into_param_grads_deferred(mut self) -> (ParamGrads<T>, Vec<DeferredDense<T>>) {
        let params = std::mem::take(&mut self.params);
        let deferred = std::mem::take(&mut self.ctx.deferred);
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
