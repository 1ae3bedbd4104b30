//! Optimizers: Adam (PyTorch's update rule, bias correction included, no weight decay) and plain SGD.
//! Parameters and gradients are matched by their state-dict names.

use crate::error::{Error, Result};
use crate::tensor::Float;
use ndarray::{ArrayD, Zip};
use std::collections::HashMap;

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// Adam's constants for one update number, in the element type.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep<T> {
    pub one_b1: T,
    pub b2: T,
    pub one_b2: T,
    pub step_size: T,
    pub bc2_sqrt: T,
    pub eps: T,
}

impl<T: Float> AdamStep<T> {
    /// The constants of update number `step` (1-based).
    pub fn new(step: u64, c: &AdamConfig) -> Self {
        let bc1 = 1.0 - c.beta1.powf(step as f64);
        let bc2_sqrt = (1.0 - c.beta2.powf(step as f64)).sqrt();
        Self {
            one_b1: T::of(1.0 - c.beta1),
            b2: T::of(c.beta2),
            one_b2: T::of(1.0 - c.beta2),
            step_size: T::of(c.lr / bc1),
            bc2_sqrt: T::of(bc2_sqrt),
            eps: T::of(c.eps),
        }
    }

    /// The rule for one element.
    #[inline(always)]
    pub fn apply(&self, p: &mut T, g: T, m: &mut T, v: &mut T) {
        *m += (g - *m) * self.one_b1; // torch: exp_avg.lerp_(grad, 1 - beta1)
        *v = *v * self.b2 + g * g * self.one_b2;
        let denom = v.sqrt() / self.bc2_sqrt + self.eps;
        *p -= self.step_size * (*m / denom);
    }
}

/// One Adam update of one tensor, as `torch.optim.Adam` does it for update number `step` (1-based):
/// `m = b1 m + (1-b1) g`, `v = b2 v + (1-b2) g^2`,
/// `p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)`.
/// Contiguous tensors go through the element type's slice kernel (f32: vectorised) in parallel chunks.
pub fn adam_update<T: Float>(param: &mut ArrayD<T>, grad: &ArrayD<T>, m: &mut ArrayD<T>, v: &mut ArrayD<T>, step: u64, c: &AdamConfig) {
    adam_update_sum(param, &[grad], m, v, step, c);
}

/// `adam_update` with the gradient `grads[0] + grads[1] + ...` (summed in that order; `grads` must
/// not be empty): the pieces of a batch each give a gradient, and the sum is made chunk by chunk,
/// into a chunk-sized buffer that stays in cache for the chunk's update, instead of in a pass of its
/// own. The gradients are only read.
pub fn adam_update_sum<T: Float>(param: &mut ArrayD<T>, grads: &[&ArrayD<T>], m: &mut ArrayD<T>, v: &mut ArrayD<T>, step: u64, c: &AdamConfig) {
    const CHUNK: usize = 1 << 15;
    assert!(!grads.is_empty(), "adam_update_sum: no gradient");
    let k = AdamStep::<T>::new(step, c);
    let slices: Option<Vec<&[T]>> = grads.iter().map(|g| g.as_slice()).collect();
    if let (Some(p), Some(m), Some(v), Some(gs)) = (param.as_slice_mut(), m.as_slice_mut(), v.as_slice_mut(), slices) {
        let update = |i: usize, p: &mut [T], m: &mut [T], v: &mut [T]| {
            let span = i * CHUNK..i * CHUNK + p.len();
            if let [g] = gs[..] {
                return T::adam_slice(k, p, &g[span], m, v);
            }
            let mut sum = gs[0][span.clone()].to_vec();
            for other in &gs[1..] {
                sum.iter_mut().zip(&other[span.clone()]).for_each(|(s, &o)| *s += o);
            }
            T::adam_slice(k, p, &sum, m, v);
        };
        if p.len() < CHUNK {
            update(0, p, m, v);
        } else {
            use rayon::prelude::*;
            p.par_chunks_mut(CHUNK).zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK))).enumerate().for_each(|(i, (p, (m, v)))| update(i, p, m, v));
        }
        return;
    }
    let mut sum = grads[0].clone();
    for other in &grads[1..] {
        sum += *other;
    }
    Zip::from(param).and(&sum).and(m).and(v).for_each(|p, &g, m, v| k.apply(p, g, m, v));
}

/// The Adam optimizer and its moment estimates.
#[derive(Clone, Debug)]
pub struct Adam<T: Float> {
    pub config: AdamConfig,
    /// The number of updates made so far.
    pub step: u64,
    moments: HashMap<String, (ArrayD<T>, ArrayD<T>)>,
}

impl<T: Float> Adam<T> {
    pub fn new(config: AdamConfig) -> Self {
        Self { config, step: 0, moments: HashMap::new() }
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self, params: Vec<(String, &mut ArrayD<T>)>, grads: Vec<(String, Option<ArrayD<T>>)>) -> Result<()> {
        self.step_summed(params, vec![grads])
    }

    /// One update with the sum of several gradients of each parameter (one list per piece of a
    /// batch, summed in list order).
    pub fn step_summed(&mut self, params: Vec<(String, &mut ArrayD<T>)>, pieces: Vec<Vec<(String, Option<ArrayD<T>>)>>) -> Result<()> {
        let mut grads: HashMap<String, Vec<ArrayD<T>>> = HashMap::new();
        for piece in pieces {
            for (name, g) in piece.into_iter().filter_map(|(n, g)| g.map(|g| (n, g))) {
                grads.entry(name).or_default().push(g);
            }
        }
        self.step += 1;
        for (name, p) in params {
            let Some(gs) = grads.remove(&name) else { continue };
            for g in &gs {
                check_same(&name, p, g)?;
            }
            let gs: Vec<&ArrayD<T>> = gs.iter().collect();
            let (m, v) = self.moments.entry(name).or_insert_with(|| (ArrayD::zeros(p.raw_dim()), ArrayD::zeros(p.raw_dim())));
            adam_update_sum(p, &gs, m, v, self.step, &self.config);
        }
        Ok(())
    }

    /// The moment estimates (`name.m`, `name.v`) for checkpoints.
    pub fn state(&self) -> Vec<(String, &ArrayD<T>)> {
        let mut s: Vec<_> = self.moments.iter().flat_map(|(n, (m, v))| [(format!("{n}.m"), m), (format!("{n}.v"), v)]).collect();
        s.sort_by(|a, b| a.0.cmp(&b.0));
        s
    }

    /// Restores moment estimates saved by `state`.
    pub fn restore(&mut self, step: u64, state: impl IntoIterator<Item = (String, ArrayD<T>)>) -> Result<()> {
        let mut ms: HashMap<String, ArrayD<T>> = HashMap::new();
        let mut vs: HashMap<String, ArrayD<T>> = HashMap::new();
        for (key, a) in state {
            if let Some(n) = key.strip_suffix(".m") {
                ms.insert(n.to_string(), a);
            } else if let Some(n) = key.strip_suffix(".v") {
                vs.insert(n.to_string(), a);
            } else {
                return Err(Error::invalid("adam", format!("unexpected optimizer state `{key}`")));
            }
        }
        self.moments.clear();
        for (n, m) in ms {
            let v = vs.remove(&n).ok_or_else(|| Error::invalid("adam", format!("optimizer state `{n}.v` missing")))?;
            self.moments.insert(n, (m, v));
        }
        self.step = step;
        Ok(())
    }
}

/// Plain stochastic gradient descent: `p -= lr * g`.
#[derive(Clone, Copy, Debug)]
pub struct Sgd {
    pub lr: f64,
}

impl Sgd {
    pub fn step<T: Float>(&self, params: Vec<(String, &mut ArrayD<T>)>, grads: Vec<(String, Option<ArrayD<T>>)>) -> Result<()> {
        let grads = by_name(grads);
        let lr = T::of(self.lr);
        for (name, p) in params {
            let Some(g) = grads.get(&name) else { continue };
            check_same(&name, p, g)?;
            Zip::from(p).and(g).for_each(|p, &g| *p -= lr * g);
        }
        Ok(())
    }
}

fn by_name<T: Float>(grads: Vec<(String, Option<ArrayD<T>>)>) -> HashMap<String, ArrayD<T>> {
    grads.into_iter().filter_map(|(n, g)| g.map(|g| (n, g))).collect()
}

fn check_same<T: Float>(name: &str, p: &ArrayD<T>, g: &ArrayD<T>) -> Result<()> {
    if p.shape() != g.shape() {
        return Err(Error::ModelTensor { name: name.to_string(), msg: format!("gradient shape {:?} differs from parameter shape {:?}", g.shape(), p.shape()) });
    }
    Ok(())
}
