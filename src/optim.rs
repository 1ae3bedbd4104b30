//! Optimizers: Adam (PyTorch's update rule, bias correction included, no weight decay) and plain SGD.
//! Parameters and gradients are matched by their state-dict names.

use crate::autograd::{DeferredDense, ParamGrads};
pub use crate::cpu::adam::AdamStep;
use crate::cpu::gemm::Reused;
use crate::cpu::Float;
use crate::error::{Error, Result};
use ndarray::{s, ArrayD, ArrayView2, Ix2, Zip};
use std::collections::HashMap;

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamConfig {
    /// Adam's constants for update number `step` (1-based), in the element type.
    pub fn step_constants<T: Float>(&self, step: u64) -> AdamStep<T> {
        AdamStep::new(step, self.lr, self.beta1, self.beta2, self.eps)
    }
}

impl Default for AdamConfig {
    /// PyTorch's defaults.
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// One Adam update of one tensor, as `torch.optim.Adam` does it for update number `step` (1-based):
/// `m = b1 m + (1-b1) g`, `v = b2 v + (1-b2) g^2`,
/// `p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps)`.
/// Contiguous tensors go through the element type's slice kernel (f32: vectorised) in parallel chunks.
pub fn adam_update<T: Float>(
    param: &mut ArrayD<T>,
    grad: &ArrayD<T>,
    m: &mut ArrayD<T>,
    v: &mut ArrayD<T>,
    step: u64,
    c: &AdamConfig,
) {
    adam_update_sum(param, &[grad], m, v, step, c);
}

/// `adam_update` with the gradient `grads[0] + grads[1] + ...` (summed in that order; `grads` must
/// not be empty): the pieces of a batch each give a gradient, and the sum is made chunk by chunk,
/// into a chunk-sized buffer that stays in cache for the chunk's update, instead of in a pass of its
/// own. The gradients are only read.
pub fn adam_update_sum<T: Float>(
    param: &mut ArrayD<T>,
    grads: &[&ArrayD<T>],
    m: &mut ArrayD<T>,
    v: &mut ArrayD<T>,
    step: u64,
    c: &AdamConfig,
) {
    const CHUNK: usize = 1 << 15;
    assert!(!grads.is_empty(), "adam_update_sum: no gradient");
    let k = c.step_constants::<T>(step);
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
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
                .enumerate()
                .for_each(|(i, (p, (m, v)))| update(i, p, m, v));
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
    pub fn step(&mut self, params: Vec<(String, &mut ArrayD<T>)>, grads: ParamGrads<T>) -> Result<()> {
        self.step_summed(params, vec![grads])
    }

    /// One update with the sum of several gradients of each parameter (one list per piece of a
    /// batch, summed in list order).
    pub fn step_summed(&mut self, params: Vec<(String, &mut ArrayD<T>)>, pieces: Vec<ParamGrads<T>>) -> Result<()> {
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
            let (m, v) =
                self.moments.entry(name).or_insert_with(|| (ArrayD::zeros(p.raw_dim()), ArrayD::zeros(p.raw_dim())));
            adam_update_sum(p, &gs, m, v, self.step, &self.config);
        }
        Ok(())
    }

    /// `step_summed`, where the weight gradients of dense layers come as the pieces' layer inputs and
    /// output gradients (`autograd::Tape::defer_dense_weight_grads`): each block of a weight's rows
    /// gets its gradient `sum_p dy_p^T . x_p` formed into a cache-sized buffer and is updated at
    /// once, the blocks in parallel. The same products and sums as forming each piece's gradient and
    /// summing them in list order (`tests/batch_pieces.rs`), without writing, summing and reading
    /// back whole gradients.
    pub fn step_deferred(
        &mut self,
        params: Vec<(String, &mut ArrayD<T>)>,
        pieces: Vec<ParamGrads<T>>,
        dense: Vec<Vec<DeferredDense<T>>>,
    ) -> Result<()> {
        // Each piece's `x` is read by every block of the weight's rows: in the form the products read
        // (`Reused`: packed once, on the piece's thread, by the tape), not copied once per block.
        let mut by_name: HashMap<String, Vec<(Reused<'_, T>, ArrayView2<'_, T>)>> = HashMap::new();
        for d in dense.iter().flatten() {
            let (x, dy) = (d.x.view().into_dimensionality::<Ix2>(), d.dy.view().into_dimensionality::<Ix2>());
            let (Ok(x), Ok(dy)) = (x, dy) else {
                return Err(Error::ModelTensor {
                    name: d.name.clone(),
                    msg: "a deferred dense gradient needs 2-D input and output gradient".into(),
                });
            };
            by_name.entry(d.name.clone()).or_default().push((Reused { view: x, packed: d.x_packed.as_ref() }, dy));
        }
        let (mut plain, mut fused) = (Vec::new(), Vec::new());
        for (name, p) in params {
            match by_name.remove(&name) {
                Some(parts) => fused.push((name, p, parts)),
                None => plain.push((name, p)),
            }
        }
        // Checked before anything is updated, so that an error leaves the weights and moments as
        // they were.
        for (name, p, parts) in &fused {
            let (out, inp) = (p.shape()[0], p.shape().get(1).copied().unwrap_or(0));
            if p.ndim() != 2
                || inp == 0
                || !p.is_standard_layout()
                || parts
                    .iter()
                    .any(|(x, dy)| x.view.ncols() != inp || dy.ncols() != out || x.view.nrows() != dy.nrows())
            {
                return Err(Error::ModelTensor {
                    name: name.clone(),
                    msg: format!("deferred gradient shapes do not match the weight {:?}", p.shape()),
                });
            }
            if self.moments.get(name).is_some_and(|(m, v)| {
                m.shape() != p.shape() || v.shape() != p.shape() || !m.is_standard_layout() || !v.is_standard_layout()
            }) {
                return Err(Error::ModelTensor {
                    name: name.clone(),
                    msg: format!("Adam's moments do not have the weight's shape {:?}", p.shape()),
                });
            }
        }
        self.step_summed(plain, pieces)?;
        let k = self.config.step_constants::<T>(self.step);
        // The moments of the fused weights, out of the map while their blocks are updated.
        let mut moments: Vec<(String, ArrayD<T>, ArrayD<T>)> = fused
            .iter()
            .map(|(name, p, _)| {
                let (m, v) = self
                    .moments
                    .remove(name)
                    .unwrap_or_else(|| (ArrayD::zeros(p.raw_dim()), ArrayD::zeros(p.raw_dim())));
                (name.clone(), m, v)
            })
            .collect();
        {
            let mut blocks = Vec::new();
            for ((_, p, parts), (_, m, v)) in fused.iter_mut().zip(moments.iter_mut()) {
                let inp = p.shape()[1];
                // About 128 KiB of f32 gradient a block (in L2 while it is updated), in whole 6-row
                // tiles, and at least 48 rows: each block's product has a fixed cost per strip of
                // `x`, which a very wide layer (the CNN's first dense layer, 16,384 inputs) must
                // share among enough rows (6-row blocks made the CNN step 0.93x, when each block
                // also copied `x`; BENCHMARKS.md).
                let rows = ((1usize << 15) / inp.max(1)).max(48).div_ceil(6) * 6;
                let (p, m, v) = (p.as_slice_mut(), m.as_slice_mut(), v.as_slice_mut());
                let (p, m, v) = (p.expect("checked above"), m.expect("checked above"), v.expect("checked above"));
                for (i, ((p, m), v)) in
                    p.chunks_mut(rows * inp).zip(m.chunks_mut(rows * inp)).zip(v.chunks_mut(rows * inp)).enumerate()
                {
                    blocks.push((i * rows, p, m, v, inp, &*parts));
                }
            }
            use rayon::prelude::*;
            blocks.into_par_iter().for_each(|(r0, p, m, v, inp, parts)| {
                let r1 = r0 + p.len() / inp;
                let ((x0, dy0), rest) = parts.split_first().expect("a deferred weight has at least one piece");
                let mut g = ndarray::Array2::<T>::uninit((r1 - r0, inp));
                // SAFETY: the product writes every element of the (r1 - r0) x inp block, rows inp apart,
                // which only this task holds.
                let mut g = unsafe {
                    T::gemm_reused_fresh_on_thread(
                        T::one(),
                        dy0.slice(s![.., r0..r1]).reversed_axes(),
                        x0,
                        g.as_mut_ptr() as *mut T,
                        inp,
                    );
                    g.assume_init()
                };
                for (x, dy) in rest {
                    crate::cpu::gemm::gemm_reused_serial(
                        T::one(),
                        dy.slice(s![.., r0..r1]).reversed_axes(),
                        x,
                        T::one(),
                        g.view_mut(),
                    );
                }
                T::adam_slice(k, p, g.as_slice().expect("a fresh array is contiguous"), m, v);
            });
        }
        for (name, m, v) in moments {
            self.moments.insert(name, (m, v));
        }
        Ok(())
    }

    /// The moment estimates (`name.m`, `name.v`) for checkpoints.
    pub fn state(&self) -> Vec<(String, &ArrayD<T>)> {
        let mut s: Vec<_> =
            self.moments.iter().flat_map(|(n, (m, v))| [(format!("{n}.m"), m), (format!("{n}.v"), v)]).collect();
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
    pub fn step<T: Float>(&self, params: Vec<(String, &mut ArrayD<T>)>, grads: ParamGrads<T>) -> Result<()> {
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

fn by_name<T: Float>(grads: ParamGrads<T>) -> HashMap<String, ArrayD<T>> {
    grads.into_iter().filter_map(|(n, g)| g.map(|g| (n, g))).collect()
}

fn check_same<T: Float>(name: &str, p: &ArrayD<T>, g: &ArrayD<T>) -> Result<()> {
    if p.shape() != g.shape() {
        return Err(Error::ModelTensor {
            name: name.to_string(),
            msg: format!("gradient shape {:?} differs from parameter shape {:?}", g.shape(), p.shape()),
        });
    }
    Ok(())
}
