//! The GPU backend of the one autograd [`Tape`]: values in GPU memory, kernels from `gpu::ops`, and
//! parameters looked up by name in a [`ParamStore`] that stays on the device between steps. A loss's
//! kernel writes its gradient with the loss, so backward from a loss uploads nothing.

use super::context::Gpu;
use super::ops;
use super::tensor::GpuTensor;
use crate::autograd::{Backend, Grads3, LossFn, Tape, Var};
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

/// A tape whose values live on the GPU.
pub type GpuTape<'g> = Tape<'g, Gpu>;

/// The GPU tape's state: the device and the parameters on it.
pub struct GpuState<'g> {
    gpu: &'g Gpu,
    store: &'g ParamStore,
}

impl<'g> Backend<'g> for Gpu {
    type Elem = f32;
    type Ctx = GpuState<'g>;
    type Value = GpuTensor;
    type View<'s>
        = &'s GpuTensor
    where
        'g: 's;
    type Grad = GpuTensor;
    type ConvSaved = ConvGeom;
    type PoolSaved = (GpuTensor, PoolGeom);
    /// The gradient with respect to the prediction, written by the loss's kernel.
    type LossSaved = GpuTensor;

    fn shape(v: &GpuTensor) -> &[usize] {
        v.shape()
    }
    fn grad_shape(g: &GpuTensor) -> &[usize] {
        g.shape()
    }
    fn view<'s>(v: &'s GpuTensor) -> &'s GpuTensor
    where
        'g: 's,
    {
        v
    }
    fn param(ctx: &GpuState<'g>, name: &str, _host: &'g ArrayD<f32>) -> Result<GpuTensor> {
        ctx.store.tensors.get(name).cloned().ok_or_else(|| Error::ModelTensor {
            name: name.to_string(),
            msg: "is not on the GPU (the parameter store lacks it)".into(),
        })
    }
    fn from_host(ctx: &GpuState<'g>, a: ArrayViewD<'g, f32>) -> Result<GpuTensor> {
        GpuTensor::upload(ctx.gpu, &a)
    }
    fn grad_from_host(ctx: &GpuState<'g>, a: ArrayD<f32>) -> Result<GpuTensor> {
        GpuTensor::upload(ctx.gpu, &a.view())
    }
    fn to_host(ctx: &GpuState<'g>, v: &GpuTensor) -> Result<ArrayD<f32>> {
        v.to_array(ctx.gpu)
    }
    fn grad_to_host(ctx: &GpuState<'g>, g: &GpuTensor) -> Result<ArrayD<f32>> {
        g.to_array(ctx.gpu)
    }

    fn conv2d(
        ctx: &GpuState<'g>,
        x: &GpuTensor,
        w: &GpuTensor,
        b: Option<&GpuTensor>,
        spec: Conv2dSpec,
    ) -> Result<(GpuTensor, ConvGeom)> {
        ops::conv2d(ctx.gpu, x, w, b, spec)
    }
    fn maxpool2d(ctx: &GpuState<'g>, x: &GpuTensor, spec: Pool2dSpec) -> Result<(GpuTensor, (GpuTensor, PoolGeom))> {
        let (y, argmax, geom) = ops::maxpool2d(ctx.gpu, x, spec)?;
        Ok((y, (argmax, geom)))
    }
    fn linear(ctx: &GpuState<'g>, x: &GpuTensor, w: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor> {
        ops::linear(ctx.gpu, x, w, b)
    }
    fn relu(ctx: &GpuState<'g>, x: &GpuTensor) -> Result<GpuTensor> {
        ops::relu(ctx.gpu, x)
    }
    fn selu(ctx: &GpuState<'g>, x: &GpuTensor) -> Result<GpuTensor> {
        ops::selu(ctx.gpu, x)
    }
    fn add(ctx: &GpuState<'g>, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        ops::add(ctx.gpu, a, b)
    }
    fn reshape(_: &GpuState<'g>, x: &GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
        x.reshape(shape)
    }
    fn loss(
        ctx: &GpuState<'g>,
        f: LossFn,
        pred: &GpuTensor,
        target: &GpuTensor,
        mask: Option<&GpuTensor>,
        want_grad: bool,
    ) -> Result<(GpuTensor, GpuTensor)> {
        match (f, mask) {
            (LossFn::Plain(kind), mask) => ops::loss(ctx.gpu, kind, pred, target, mask, want_grad),
            (LossFn::GaussianNll { beta }, Some(m)) => {
                ops::gaussian_nll_loss(ctx.gpu, pred, target, m, beta, want_grad)
            }
            (LossFn::GaussianNll { .. }, None) => Err(Error::invalid("gaussian_nll_loss", "the loss takes a mask")),
        }
    }

    fn conv2d_backward(
        ctx: &GpuState<'g>,
        x: &GpuTensor,
        w: &GpuTensor,
        dy: &GpuTensor,
        geom: &ConvGeom,
        need: [bool; 3],
    ) -> Result<Grads3<GpuTensor>> {
        let (dx, dw, db) = ops::conv2d_backward(ctx.gpu, x, w, dy, geom, need)?;
        Ok((dx, dw.map(|d| d.reshape(w.shape())).transpose()?, db))
    }
    fn maxpool2d_backward(
        ctx: &GpuState<'g>,
        x: &GpuTensor,
        dy: &GpuTensor,
        (argmax, geom): &(GpuTensor, PoolGeom),
    ) -> Result<GpuTensor> {
        ops::maxpool2d_backward(ctx.gpu, dy, argmax, geom, x.shape())
    }
    fn linear_backward(
        ctx: &GpuState<'g>,
        x: &GpuTensor,
        w: &GpuTensor,
        dy: &GpuTensor,
        need: [bool; 3],
    ) -> Result<Grads3<GpuTensor>> {
        ops::linear_backward(ctx.gpu, x, w, dy, need)
    }
    fn relu_backward(ctx: &GpuState<'g>, x: &GpuTensor, dy: GpuTensor) -> Result<GpuTensor> {
        ops::relu_backward(ctx.gpu, x, &dy)
    }
    fn selu_backward(ctx: &GpuState<'g>, x: &GpuTensor, dy: GpuTensor) -> Result<GpuTensor> {
        ops::selu_backward(ctx.gpu, x, &dy)
    }
    fn reshape_grad(_: &GpuState<'g>, dy: GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
        dy.reshape(shape)
    }
    fn loss_backward(
        ctx: &GpuState<'g>,
        _f: LossFn,
        _pred: &GpuTensor,
        _target: &GpuTensor,
        _mask: Option<&GpuTensor>,
        grad: &GpuTensor,
        dy: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        match dy {
            None => Ok(grad.clone()),
            Some(s) => ops::scale(ctx.gpu, grad, Some(s), 1.0),
        }
    }
    fn neg(ctx: &GpuState<'g>, g: &GpuTensor) -> Result<GpuTensor> {
        ops::scale(ctx.gpu, g, None, -1.0)
    }
    fn accumulate(ctx: &GpuState<'g>, acc: &mut Option<GpuTensor>, g: GpuTensor) -> Result<()> {
        // Out of place: a gradient tensor may be shared (the two inputs of an add get the same one).
        *acc = Some(match acc.take() {
            Some(a) => ops::add(ctx.gpu, &a, &g)?,
            None => g,
        });
        Ok(())
    }
}

/// The GPU tape's own constructors and inputs.
impl<'g> Tape<'g, Gpu> {
    /// A tape for training over the parameters in `store`.
    pub fn on(gpu: &'g Gpu, store: &'g ParamStore) -> Self {
        Tape::with_backend(GpuState { gpu, store }, true)
    }

    /// A tape for inference: nothing is recorded.
    pub fn inference_on(gpu: &'g Gpu, store: &'g ParamStore) -> Self {
        Tape::with_backend(GpuState { gpu, store }, false)
    }

    /// An input uploaded from the host (of any lifetime); `requires_grad` asks for its gradient.
    pub fn upload(&mut self, a: ArrayViewD<'_, f32>, requires_grad: bool) -> Result<Var> {
        let t = GpuTensor::upload(self.ctx().gpu, &a)?;
        Ok(self.input_value(t, requires_grad))
    }

    /// An input already on the device.
    pub fn input_tensor(&mut self, t: GpuTensor) -> Var {
        self.input_value(t, false)
    }

    /// The GPU this tape records on.
    pub fn gpu(&self) -> &'g Gpu {
        self.ctx().gpu
    }
}
