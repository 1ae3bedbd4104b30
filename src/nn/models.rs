//! The seed's networks and baselines, described by an [`Arch`] (the JSON stored in model files under
//! `specnn-arch`) and built from the layers of `nn::layers`.
//!
//! - `vmp_cnn`: input `[N, 1, S, S]` (S = 64: the S-folded spectrum). Per channel width a KxK conv +
//!   activation + 2x2 max-pool; flatten; dense layers + activation; linear out. Parameters
//!   `conv1.* conv2.* ... fc1.* fc2.* ... out.*`.
//! - `res_ann`: input `[N, inputs]` (143 pixels at R=200). selu(input); residual blocks
//!   `selu(x + fc2(selu(fc1(x))))`; linear out. Parameters `input.* blocks.K.fc1.* blocks.K.fc2.* out.*`.
//! - `ann`: input `[N, inputs]`. Dense layers + activation; linear out. Parameters `fc1.* fc2.* ... out.*`.
//! - `star_net`: input `[N, inputs]`. StarNet (Fabbro et al. 2018): 1-D conv of 4 then 16 filters of
//!   width 8 (valid) + ReLU, max-pool 4, dense 256 and 128 + ReLU, linear out. Parameters
//!   `conv1.* conv2.* fc1.* fc2.* out.*`, conv weights `[O, C, K]` as PyTorch's `Conv1d`.

use super::layers::{Activation, Conv2d, Dense, MaxPool2d, ResidualBlock};
use crate::autograd::{Backend, Tape, Var};
use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::ops::conv2d::Padding;
use crate::ops::maxpool2d::Pool2dSpec;
use ndarray::{ArrayD, ArrayViewD, Axis, Slice};
use rand::{rngs::StdRng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The fewest rows a thread takes of a dense network's batch in `Model::predict`.
pub const PREDICT_PIECE_ROWS: usize = 16;

fn selu() -> Activation {
    Activation::Selu
}
fn starnet_filters() -> Vec<usize> {
    vec![4, 16]
}
fn starnet_kernel() -> usize {
    8
}
fn starnet_pool() -> usize {
    4
}
fn starnet_dense() -> Vec<usize> {
    vec![256, 128]
}

/// A network architecture (serialised as in `golden-vectors.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arch {
    /// The seed's 2-D CNN on S-folded spectra.
    VmpCnn {
        in_side: usize,
        channels: Vec<usize>,
        kernel: usize,
        padding: Padding,
        #[serde(default)]
        activation: Activation,
        dense: Vec<usize>,
        outputs: usize,
    },
    /// The seed's dense network with residual blocks.
    ResAnn { inputs: usize, width: usize, blocks: usize, outputs: usize },
    /// A plain dense network (baseline).
    Ann {
        inputs: usize,
        hidden: Vec<usize>,
        #[serde(default = "selu")]
        activation: Activation,
        outputs: usize,
    },
    /// StarNet (baseline).
    StarNet {
        inputs: usize,
        #[serde(default = "starnet_filters")]
        filters: Vec<usize>,
        #[serde(default = "starnet_kernel")]
        kernel: usize,
        #[serde(default = "starnet_pool")]
        pool: usize,
        #[serde(default = "starnet_dense")]
        dense: Vec<usize>,
        outputs: usize,
    },
}

impl Arch {
    /// The seed's VMP CNN (table 1 of the talk): 64x64 input, 9x9 convs of 64/128/256, dense 128/64.
    pub fn vmp_cnn(outputs: usize) -> Self {
        Arch::VmpCnn {
            in_side: 64,
            channels: vec![64, 128, 256],
            kernel: 9,
            padding: Padding::Same,
            activation: Activation::Relu,
            dense: vec![128, 64],
            outputs,
        }
    }

    /// The seed's residual ANN: 143 inputs (R=200), 512 wide, 3 residual blocks.
    pub fn res_ann(outputs: usize) -> Self {
        Arch::ResAnn { inputs: 143, width: 512, blocks: 3, outputs }
    }

    /// Parses the JSON form.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::invalid("arch", format!("not a valid architecture: {e}")))
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an Arch always serialises")
    }

    /// The number of outputs (labels).
    pub fn outputs(&self) -> usize {
        match self {
            Arch::VmpCnn { outputs, .. }
            | Arch::ResAnn { outputs, .. }
            | Arch::Ann { outputs, .. }
            | Arch::StarNet { outputs, .. } => *outputs,
        }
    }

    /// The input shape for a batch of `n`.
    pub fn input_shape(&self, n: usize) -> Vec<usize> {
        match self {
            Arch::VmpCnn { in_side, .. } => vec![n, 1, *in_side, *in_side],
            Arch::ResAnn { inputs, .. } | Arch::Ann { inputs, .. } | Arch::StarNet { inputs, .. } => vec![n, *inputs],
        }
    }

    /// Checks that every size is positive and that the feature maps do not vanish; returns the number of
    /// features that reach the first dense layer.
    pub fn flat_features(&self) -> Result<usize> {
        let bad = |msg: String| Error::invalid("arch", msg);
        let positive = |what: &str, v: &[usize]| {
            if v.contains(&0) {
                Err(bad(format!("{what} must be positive, got {v:?}")))
            } else {
                Ok(())
            }
        };
        match self {
            Arch::VmpCnn { in_side, channels, kernel, padding, dense, outputs, .. } => {
                positive("in_side, kernel and outputs", &[*in_side, *kernel, *outputs])?;
                positive("channels", channels)?;
                positive("dense", dense)?;
                if channels.is_empty() {
                    return Err(bad("a vmp_cnn needs at least one convolution".into()));
                }
                let mut side = *in_side;
                for (i, _) in channels.iter().enumerate() {
                    if *padding == Padding::Valid {
                        if *kernel > side {
                            return Err(bad(format!(
                                "conv{}: kernel {kernel} is larger than its {side}x{side} input",
                                i + 1
                            )));
                        }
                        side = side - kernel + 1;
                    } else if kernel % 2 == 0 {
                        return Err(bad(format!("'same' padding needs an odd kernel, got {kernel}")));
                    }
                    if side < 2 {
                        return Err(bad(format!("conv{}: a {side}x{side} map cannot be max-pooled 2x2", i + 1)));
                    }
                    side /= 2;
                }
                Ok(channels[channels.len() - 1] * side * side)
            }
            Arch::ResAnn { inputs, width, outputs, .. } => {
                positive("inputs, width and outputs", &[*inputs, *width, *outputs])?;
                Ok(*inputs)
            }
            Arch::Ann { inputs, hidden, outputs, .. } => {
                positive("inputs and outputs", &[*inputs, *outputs])?;
                positive("hidden", hidden)?;
                Ok(*inputs)
            }
            Arch::StarNet { inputs, filters, kernel, pool, dense, outputs } => {
                positive("inputs, kernel, pool and outputs", &[*inputs, *kernel, *pool, *outputs])?;
                positive("filters", filters)?;
                positive("dense", dense)?;
                if filters.is_empty() {
                    return Err(bad("a star_net needs at least one convolution".into()));
                }
                let mut len = *inputs;
                for i in 0..filters.len() {
                    if *kernel > len {
                        return Err(bad(format!("conv{}: kernel {kernel} is longer than its input of {len}", i + 1)));
                    }
                    len = len - kernel + 1;
                }
                if len < *pool {
                    return Err(bad(format!("max-pool {pool} is longer than its input of {len}")));
                }
                Ok(filters[filters.len() - 1] * (len / pool))
            }
        }
    }
}

/// The layers of one network.
#[derive(Clone, Debug)]
enum Body<T: Float> {
    Cnn { convs: Vec<Conv2d<T>>, pool: MaxPool2d, dense: Vec<Dense<T>>, out: Dense<T>, act: Activation },
    Res { input: Dense<T>, blocks: Vec<ResidualBlock<T>>, out: Dense<T> },
    Ann { hidden: Vec<Dense<T>>, out: Dense<T>, act: Activation },
    StarNet { convs: Vec<Conv2d<T>>, pool: MaxPool2d, dense: Vec<Dense<T>>, out: Dense<T> },
}

/// A network: its architecture and its parameters.
#[derive(Clone, Debug)]
pub struct Model<T: Float> {
    arch: Arch,
    body: Body<T>,
}

fn dense_stack<T: Float>(inputs: usize, widths: &[usize], rng: &mut StdRng) -> (Vec<Dense<T>>, usize) {
    let mut prev = inputs;
    let layers = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let d = Dense::new(&format!("fc{}", i + 1), prev, w, rng);
            prev = w;
            d
        })
        .collect();
    (layers, prev)
}

impl<T: Float> Model<T> {
    /// A freshly initialised network (PyTorch's default initialisation, seeded).
    pub fn new(arch: &Arch, seed: u64) -> Result<Self> {
        let flat = arch.flat_features()?;
        let mut rng = StdRng::seed_from_u64(seed);
        let body = match arch {
            Arch::VmpCnn { channels, kernel, padding, activation, dense, outputs, .. } => {
                let mut c = 1;
                let convs = channels
                    .iter()
                    .enumerate()
                    .map(|(i, &o)| {
                        let l = Conv2d::new(&format!("conv{}", i + 1), c, o, (*kernel, *kernel), *padding, &mut rng);
                        c = o;
                        l
                    })
                    .collect();
                let (dense, last) = dense_stack(flat, dense, &mut rng);
                let out = Dense::new("out", last, *outputs, &mut rng);
                Body::Cnn { convs, pool: MaxPool2d { spec: Pool2dSpec::square(2) }, dense, out, act: *activation }
            }
            Arch::ResAnn { inputs, width, blocks, outputs } => Body::Res {
                input: Dense::new("input", *inputs, *width, &mut rng),
                blocks: (0..*blocks).map(|i| ResidualBlock::new(&format!("blocks.{i}"), *width, &mut rng)).collect(),
                out: Dense::new("out", *width, *outputs, &mut rng),
            },
            Arch::Ann { inputs, hidden, activation, outputs } => {
                let (hidden, last) = dense_stack(*inputs, hidden, &mut rng);
                Body::Ann { hidden, out: Dense::new("out", last, *outputs, &mut rng), act: *activation }
            }
            Arch::StarNet { filters, kernel, pool, dense, outputs, .. } => {
                let mut c = 1;
                let convs = filters
                    .iter()
                    .enumerate()
                    .map(|(i, &o)| {
                        let l = Conv2d::new_1d(&format!("conv{}", i + 1), c, o, *kernel, Padding::Valid, &mut rng);
                        c = o;
                        l
                    })
                    .collect();
                let (dense, last) = dense_stack(flat, dense, &mut rng);
                let out = Dense::new("out", last, *outputs, &mut rng);
                Body::StarNet {
                    convs,
                    pool: MaxPool2d { spec: Pool2dSpec { kernel: (1, *pool), stride: (1, *pool) } },
                    dense,
                    out,
                }
            }
        };
        Ok(Self { arch: arch.clone(), body })
    }

    /// A network with the given parameters (a PyTorch state dict): every name of the architecture must
    /// be present with its exact shape, and no other name may appear.
    pub fn from_tensors(arch: &Arch, mut tensors: BTreeMap<String, ArrayD<T>>) -> Result<Self> {
        let mut model = Self::new(arch, 0)?;
        for (name, slot) in model.params_mut() {
            let t = tensors.remove(&name).ok_or_else(|| Error::ModelTensor {
                name: name.clone(),
                msg: format!("missing (the architecture {} needs it)", arch.to_json()),
            })?;
            if t.shape() != slot.shape() {
                return Err(Error::ModelTensor {
                    name,
                    msg: format!("has shape {:?} but the architecture needs {:?}", t.shape(), slot.shape()),
                });
            }
            *slot = t;
        }
        if let Some(name) = tensors.keys().next() {
            return Err(Error::ModelTensor {
                name: name.clone(),
                msg: format!("is not a parameter of the architecture {}", arch.to_json()),
            });
        }
        Ok(model)
    }

    /// The architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Forward pass of a batch `x` (shape `arch.input_shape(N)`), on `tape`.
    pub fn forward<'a, B: Backend<'a, Elem = T>>(&'a self, tape: &mut Tape<'a, B>, x: Var) -> Result<Var> {
        let shape = tape.shape_of(x);
        let want = self.arch.input_shape(shape.first().copied().unwrap_or(0));
        if shape != want || shape[0] == 0 {
            return Err(Error::shape(
                "model",
                format!("input must be {:?} with N >= 1", self.arch.input_shape(1)).replace("[1,", "[N,"),
                &[&shape],
            ));
        }
        match &self.body {
            Body::Cnn { convs, pool, dense, out, act } => {
                let mut h = x;
                for conv in convs {
                    h = conv.forward(tape, h)?;
                    h = act.apply(tape, h)?;
                    h = pool.forward(tape, h)?;
                }
                h = tape.flatten(h)?;
                for fc in dense {
                    h = fc.forward(tape, h)?;
                    h = act.apply(tape, h)?;
                }
                out.forward(tape, h)
            }
            Body::Res { input, blocks, out } => {
                let h = input.forward(tape, x)?;
                let mut h = tape.selu(h)?;
                for block in blocks {
                    h = block.forward(tape, h)?;
                }
                out.forward(tape, h)
            }
            Body::Ann { hidden, out, act } => {
                let mut h = x;
                for fc in hidden {
                    h = fc.forward(tape, h)?;
                    h = act.apply(tape, h)?;
                }
                out.forward(tape, h)
            }
            Body::StarNet { convs, pool, dense, out } => {
                let mut h = tape.reshape(x, &[shape[0], 1, 1, shape[1]])?;
                for conv in convs {
                    h = conv.forward(tape, h)?;
                    h = tape.relu(h)?;
                }
                h = pool.forward(tape, h)?;
                h = tape.flatten(h)?;
                for fc in dense {
                    h = fc.forward(tape, h)?;
                    h = tape.relu(h)?;
                }
                out.forward(tape, h)
            }
        }
    }

    /// Inference on a batch (nothing recorded).
    ///
    /// A dense network's batch is cut into one piece per rayon thread (at least
    /// `PREDICT_PIECE_ROWS` rows each), and each thread runs a whole pass on its piece, instead of all
    /// threads waking for every matrix product. A sample's outputs do not depend on the cut: the
    /// matrix products compute every row alone, with the same kernels for any piece of five rows or
    /// more. Convolutional networks run whole: their convolutions share work across the batch.
    pub fn predict(&self, x: &ArrayD<T>) -> Result<ArrayD<T>> {
        let n = x.shape().first().copied().unwrap_or(0);
        let pieces = match self.body {
            Body::Res { .. } | Body::Ann { .. } => (n / PREDICT_PIECE_ROWS).clamp(1, rayon::current_num_threads()),
            Body::Cnn { .. } | Body::StarNet { .. } => 1,
        };
        if pieces == 1 {
            return self.predict_whole(x.view());
        }
        crate::cpu::on_pool(|| {
            let outs = (0..pieces)
                .into_par_iter()
                .map(|i| self.predict_whole(x.slice_axis(Axis(0), Slice::from(i * n / pieces..(i + 1) * n / pieces))))
                .collect::<Result<Vec<_>>>()?;
            let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
            Ok(ndarray::concatenate(Axis(0), &views).expect("pieces of one output shape"))
        })
    }

    fn predict_whole<'a>(&'a self, x: ArrayViewD<'a, T>) -> Result<ArrayD<T>> {
        let mut tape = Tape::inference();
        let xv = tape.input_view(x, false);
        let y = self.forward(&mut tape, xv)?;
        Ok(tape.value(y).to_owned())
    }

    /// Every parameter with its state-dict name, in PyTorch's order.
    pub fn params(&self) -> Vec<(String, &ArrayD<T>)> {
        let mut p = Vec::new();
        match &self.body {
            Body::Cnn { convs, dense, out, .. } | Body::StarNet { convs, dense, out, .. } => {
                convs.iter().for_each(|l| p.extend(l.params()));
                dense.iter().for_each(|l| p.extend(l.params()));
                p.extend(out.params());
            }
            Body::Res { input, blocks, out } => {
                p.extend(input.params());
                blocks.iter().for_each(|b| p.extend(b.params()));
                p.extend(out.params());
            }
            Body::Ann { hidden, out, .. } => {
                hidden.iter().for_each(|l| p.extend(l.params()));
                p.extend(out.params());
            }
        }
        p
    }

    /// Every parameter, mutable, in the order of `params`.
    pub fn params_mut(&mut self) -> Vec<(String, &mut ArrayD<T>)> {
        let mut p = Vec::new();
        match &mut self.body {
            Body::Cnn { convs, dense, out, .. } | Body::StarNet { convs, dense, out, .. } => {
                convs.iter_mut().for_each(|l| p.extend(l.params_mut()));
                dense.iter_mut().for_each(|l| p.extend(l.params_mut()));
                p.extend(out.params_mut());
            }
            Body::Res { input, blocks, out } => {
                p.extend(input.params_mut());
                blocks.iter_mut().for_each(|b| p.extend(b.params_mut()));
                p.extend(out.params_mut());
            }
            Body::Ann { hidden, out, .. } => {
                hidden.iter_mut().for_each(|l| p.extend(l.params_mut()));
                p.extend(out.params_mut());
            }
        }
        p
    }

    /// The number of trainable values.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|(_, p)| p.len()).sum()
    }
}
