//! Layers: each holds its parameters (PyTorch layouts) and its state-dict name prefix, and its
//! `forward` pushes ops onto a tape. Initialisation is PyTorch's default for `nn.Linear` and `nn.Conv2d`
//! (Kaiming-uniform with a = sqrt(5), i.e. weight and bias uniform in +-1/sqrt(fan_in)), drawn from a
//! seeded `rand` generator so that a model is reproducible bit for bit.

use crate::autograd::{Backend, Tape, Var};
use crate::cpu::Float;
use crate::error::Result;
use crate::ops::conv2d::{Conv2dSpec, Padding, SpectraCache};
use crate::ops::maxpool2d::Pool2dSpec;
use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Uniform values in `[-bound, bound)` of the given shape.
pub fn uniform<T: Float>(rng: &mut impl Rng, shape: &[usize], bound: f64) -> ArrayD<T> {
    let n = shape.iter().product();
    let v: Vec<T> = (0..n).map(|_| T::of(rng.random_range(-bound..bound))).collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape matches length")
}

/// The activation between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    #[default]
    Relu,
    Selu,
}

impl Activation {
    /// Applies the activation on the tape.
    pub fn apply<'a, B: Backend<'a>>(self, tape: &mut Tape<'a, B>, x: Var) -> Result<Var> {
        match self {
            Activation::Relu => tape.relu(x),
            Activation::Selu => tape.selu(x),
        }
    }
}

/// A fully connected layer: `name.weight [O, I]`, `name.bias [O]`.
#[derive(Clone, Debug)]
pub struct Dense<T: Float> {
    pub name: String,
    pub weight: ArrayD<T>,
    pub bias: ArrayD<T>,
}

impl<T: Float> Dense<T> {
    pub fn new(name: &str, inputs: usize, outputs: usize, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / (inputs as f64).sqrt();
        let weight = uniform(rng, &[outputs, inputs], bound);
        let bias = uniform(rng, &[outputs], bound);
        Self { name: name.to_string(), weight, bias }
    }
    pub fn forward<'a, B: Backend<'a, Elem = T>>(&'a self, tape: &mut Tape<'a, B>, x: Var) -> Result<Var> {
        let w = tape.param(format!("{}.weight", self.name), &self.weight)?;
        let b = tape.param(format!("{}.bias", self.name), &self.bias)?;
        tape.linear(x, w, Some(b))
    }
    pub fn params(&self) -> Vec<(String, &ArrayD<T>)> {
        vec![(format!("{}.weight", self.name), &self.weight), (format!("{}.bias", self.name), &self.bias)]
    }
    pub fn params_mut(&mut self) -> Vec<(String, &mut ArrayD<T>)> {
        vec![(format!("{}.weight", self.name), &mut self.weight), (format!("{}.bias", self.name), &mut self.bias)]
    }
}

/// A 2-D convolution: `name.weight [O, C, KH, KW]` (or `[O, C, K]` for a 1-D convolution, PyTorch's
/// `Conv1d` layout, run as a `1 x K` kernel), `name.bias [O]`.
///
/// Inference keeps the weight's FFT spectra in `spectra` between calls; `params_mut` empties it, so
/// change the weights through `params_mut` (or build a new layer), not by writing the fields.
#[derive(Clone, Debug)]
pub struct Conv2d<T: Float> {
    pub name: String,
    pub weight: ArrayD<T>,
    pub bias: ArrayD<T>,
    pub padding: Padding,
    pub spectra: SpectraCache<T>,
}

impl<T: Float> Conv2d<T> {
    /// A `kh x kw` convolution from `c` to `o` channels.
    pub fn new(name: &str, c: usize, o: usize, (kh, kw): (usize, usize), padding: Padding, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / ((c * kh * kw) as f64).sqrt();
        let weight = uniform(rng, &[o, c, kh, kw], bound);
        let bias = uniform(rng, &[o], bound);
        Self { name: name.to_string(), weight, bias, padding, spectra: SpectraCache::default() }
    }
    /// A 1-D convolution of width `k` (weight `[O, C, K]`), applied to `[N, C, 1, L]` tensors.
    pub fn new_1d(name: &str, c: usize, o: usize, k: usize, padding: Padding, rng: &mut impl Rng) -> Self {
        let bound = 1.0 / ((c * k) as f64).sqrt();
        let weight = uniform(rng, &[o, c, k], bound);
        let bias = uniform(rng, &[o], bound);
        Self { name: name.to_string(), weight, bias, padding, spectra: SpectraCache::default() }
    }
    fn kernel(&self) -> (usize, usize) {
        let s = self.weight.shape();
        if s.len() == 3 {
            (1, s[2])
        } else {
            (s[2], s[3])
        }
    }
    pub fn forward<'a, B: Backend<'a, Elem = T>>(&'a self, tape: &mut Tape<'a, B>, x: Var) -> Result<Var> {
        let (kh, kw) = self.kernel();
        let mut w = tape.param(format!("{}.weight", self.name), &self.weight)?;
        if self.weight.ndim() == 3 {
            let s = self.weight.shape();
            w = tape.reshape(w, &[s[0], s[1], 1, s[2]])?;
        }
        let b = tape.param(format!("{}.bias", self.name), &self.bias)?;
        let spec = Conv2dSpec::new(self.padding, kh, kw)?;
        tape.conv2d_cached(x, w, Some(b), spec, &self.spectra)
    }
    pub fn params(&self) -> Vec<(String, &ArrayD<T>)> {
        vec![(format!("{}.weight", self.name), &self.weight), (format!("{}.bias", self.name), &self.bias)]
    }
    pub fn params_mut(&mut self) -> Vec<(String, &mut ArrayD<T>)> {
        self.spectra.clear();
        vec![(format!("{}.weight", self.name), &mut self.weight), (format!("{}.bias", self.name), &mut self.bias)]
    }
}

/// Max pooling (no parameters).
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    pub spec: Pool2dSpec,
}

impl MaxPool2d {
    pub fn forward<'a, B: Backend<'a>>(&self, tape: &mut Tape<'a, B>, x: Var) -> Result<Var> {
        tape.maxpool2d(x, self.spec)
    }
}

/// The residual block of the seed's ANN: `y = selu(x + fc2(selu(fc1(x))))`, both layers `D x D`,
/// parameters `name.fc1.*` and `name.fc2.*`.
#[derive(Clone, Debug)]
pub struct ResidualBlock<T: Float> {
    pub fc1: Dense<T>,
    pub fc2: Dense<T>,
}

impl<T: Float> ResidualBlock<T> {
    pub fn new(name: &str, width: usize, rng: &mut impl Rng) -> Self {
        Self {
            fc1: Dense::new(&format!("{name}.fc1"), width, width, rng),
            fc2: Dense::new(&format!("{name}.fc2"), width, width, rng),
        }
    }
    pub fn forward<'a, B: Backend<'a, Elem = T>>(&'a self, tape: &mut Tape<'a, B>, x: Var) -> Result<Var> {
        let h = self.fc1.forward(tape, x)?;
        let h = tape.selu(h)?;
        let h = self.fc2.forward(tape, h)?;
        let s = tape.add(x, h)?;
        tape.selu(s)
    }
    pub fn params(&self) -> Vec<(String, &ArrayD<T>)> {
        [self.fc1.params(), self.fc2.params()].concat()
    }
    pub fn params_mut(&mut self) -> Vec<(String, &mut ArrayD<T>)> {
        let mut p = self.fc1.params_mut();
        p.extend(self.fc2.params_mut());
        p
    }
}
