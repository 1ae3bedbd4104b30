//! A whole training step on the device: forward, loss (masked MAE or Gaussian NLL), backward and Adam, with the
//! parameters and Adam's moments resident in GPU memory. The only readback in a step is the loss, and
//! only when asked for. Inference ([`GpuNet`]) holds the parameters alone; its batches stay on the
//! device too (only the predictions come back).

use super::context::Gpu;
use super::ops::{self, LossKind};
use super::tape::{GpuTape, ParamStore};
use super::tensor::GpuTensor;
use crate::error::{Error, Result};
use crate::nn::Model;
use crate::ops::loss::Objective;
use crate::optim::{Adam, AdamConfig};
use ndarray::ArrayD;
use std::sync::Arc;

/// A network whose parameters are on a GPU, for inference (nothing else is allocated).
pub struct GpuNet {
    gpu: Arc<Gpu>,
    /// The host copy: its architecture drives the forward pass; its values are refreshed by
    /// `GpuTrainer::sync`.
    model: Model<f32>,
    params: ParamStore,
}

impl GpuNet {
    /// Uploads `model`'s parameters.
    pub fn new(gpu: Arc<Gpu>, model: Model<f32>) -> Result<Self> {
        let params = ParamStore::upload(&gpu, model.params())?;
        Ok(Self { gpu, model, params })
    }

    /// The GPU.
    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// Predictions for a batch (nothing recorded; only the output is read back).
    pub fn predict(&self, x: &ArrayD<f32>) -> Result<ArrayD<f32>> {
        let mut tape = GpuTape::inference_on(&self.gpu, &self.params);
        let xv = tape.upload(x.view(), false)?;
        let y = self.model.forward(&mut tape, xv)?;
        tape.value(y).to_array(&self.gpu)
    }
}

/// A model being trained on a GPU: its parameters (a [`GpuNet`]) and Adam's moments on the device.
pub struct GpuTrainer {
    net: GpuNet,
    m: ParamStore,
    v: ParamStore,
    pub config: AdamConfig,
    /// Adam updates made so far.
    pub step: u64,
    /// What a step minimises (the masked MAE unless `with_objective` says otherwise).
    objective: Objective,
}

impl GpuTrainer {
    /// Uploads `model` and `adam`'s state (zeros where it has none yet).
    pub fn new(gpu: Arc<Gpu>, model: Model<f32>, adam: &Adam<f32>) -> Result<Self> {
        let net = GpuNet::new(gpu, model)?;
        let (gpu, params) = (&net.gpu, &net.params);
        let state: std::collections::HashMap<String, &ArrayD<f32>> = adam.state().into_iter().collect();
        let mut m = ParamStore::zeros_like(gpu, params)?;
        let mut v = ParamStore::zeros_like(gpu, params)?;
        for (name, p) in &params.tensors {
            if let (Some(ms), Some(vs)) = (state.get(&format!("{name}.m")), state.get(&format!("{name}.v"))) {
                if ms.shape() != p.shape() || vs.shape() != p.shape() {
                    return Err(Error::ModelTensor {
                        name: name.clone(),
                        msg: "Adam's saved moments do not have the parameter's shape".into(),
                    });
                }
                m.tensors.insert(name.clone(), GpuTensor::upload(gpu, &ms.view())?);
                v.tensors.insert(name.clone(), GpuTensor::upload(gpu, &vs.view())?);
            }
        }
        Ok(Self { net, m, v, config: adam.config, step: adam.step, objective: Objective::MaskedMae })
    }

    /// The trainer minimising `objective` instead of the masked MAE.
    pub fn with_objective(mut self, objective: Objective) -> Self {
        self.objective = objective;
        self
    }

    /// The network as it stands on the device (for validation between epochs).
    pub fn net(&self) -> &GpuNet {
        &self.net
    }

    /// One training step on a batch: `x` (the model's input shape), standardised `target` and `mask`
    /// (1 where the label is known). Returns the loss when `want_loss` (the step's only readback).
    pub fn step(
        &mut self,
        x: &ArrayD<f32>,
        target: &ArrayD<f32>,
        mask: &ArrayD<f32>,
        want_loss: bool,
    ) -> Result<Option<f32>> {
        if !(mask.sum() > 0.0) {
            return Err(Error::invalid("masked_mae_loss", "every target is masked: no label to learn from"));
        }
        let net = &self.net;
        let gpu = &*net.gpu;
        let (loss_t, grads) = {
            let mut tape = GpuTape::on(gpu, &net.params);
            let xv = tape.upload(x.view(), false)?;
            let tv = tape.upload(target.view(), false)?;
            let mv = tape.upload(mask.view(), false)?;
            let pred = net.model.forward(&mut tape, xv)?;
            let loss = match self.objective {
                Objective::MaskedMae => tape.loss(LossKind::MaskedMae, pred, tv, Some(mv))?,
                Objective::GaussianNll { beta } => tape.gaussian_nll(pred, tv, mv, beta)?,
            };
            tape.backward(loss)?;
            let l = tape.value(loss).clone();
            (l, tape.into_param_grads())
        };
        self.step += 1;
        for (name, g) in grads {
            let Some(g) = g else { continue };
            let (p, m, v) = (&net.params.tensors[&name], &self.m.tensors[&name], &self.v.tensors[&name]);
            ops::adam(gpu, p, &g, m, v, self.step, &self.config)?;
        }
        if want_loss {
            Ok(Some(loss_t.to_array(gpu)?.iter().copied().next().unwrap_or(f32::NAN)))
        } else {
            gpu.flush()?;
            Ok(None)
        }
    }

    /// Copies the device's parameters into the host model and returns it with Adam's state.
    pub fn sync(&mut self) -> Result<(&Model<f32>, Adam<f32>)> {
        let net = &mut self.net;
        let values = net.params.download(&net.gpu)?;
        for (name, slot) in net.model.params_mut() {
            *slot = values[&name].clone();
        }
        let mut adam = Adam::new(self.config);
        let mut state = Vec::new();
        for (name, t) in self.m.download(&net.gpu)? {
            state.push((format!("{name}.m"), t));
        }
        for (name, t) in self.v.download(&net.gpu)? {
            state.push((format!("{name}.v"), t));
        }
        if self.step > 0 {
            adam.restore(self.step, state)?;
        }
        Ok((&net.model, adam))
    }
}
