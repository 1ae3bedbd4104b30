//! `conv2d`: PyTorch's `torch.nn.functional.conv2d` (cross-correlation, zero padding, groups = 1).
//!
//! `x [N, C, H, W]`, `weight [O, C, KH, KW]`, `bias [O]` -> `y [N, O, OH, OW]` with
//! `OH = (H + 2*PH - KH) / SH + 1` (checked: a kernel larger than the padded input is an error).
//! Any kernel size works, 9x9 for the VMP CNN and 1xK for 1-D spectra (StarNet).

use crate::cpu::conv::{self, Algo, ConvGeom};
use crate::cpu::fftconv::{self, WeightSpectra};
use crate::cpu::Float;
use crate::error::{Error, Result};
use crate::tensor::Arr;
use ndarray::Data;
use ndarray::{ArrayD, ArrayView2, IxDyn};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};

/// How a layer pads its input: PyTorch's 'same' (odd kernels, stride 1) or 'valid' (no padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    Same,
    Valid,
}

/// Stride and zero padding (rows, columns) of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dSpec {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Conv2dSpec {
    /// Stride 1 with the given padding mode for a `kh x kw` kernel.
    pub fn new(padding: Padding, kh: usize, kw: usize) -> Result<Self> {
        let padding = match padding {
            Padding::Valid => (0, 0),
            Padding::Same => {
                if kh.is_multiple_of(2) || kw.is_multiple_of(2) {
                    return Err(Error::invalid("conv2d", format!("'same' padding needs an odd kernel, got {kh}x{kw}")));
                }
                (kh / 2, kw / 2)
            }
        };
        Ok(Self { stride: (1, 1), padding })
    }
}

fn out_size(op: &'static str, input: usize, pad: usize, k: usize, stride: usize) -> Result<usize> {
    if stride == 0 {
        return Err(Error::invalid(op, "stride must be at least 1"));
    }
    let padded = input + 2 * pad;
    if k == 0 || k > padded {
        return Err(Error::invalid(
            op,
            format!("kernel {k} is larger than the padded input {padded} ({input} + 2*{pad})"),
        ));
    }
    Ok((padded - k) / stride + 1)
}

/// Checks the shapes and returns the convolution's geometry.
pub fn geometry(x: &[usize], w: &[usize], b: Option<&[usize]>, spec: Conv2dSpec) -> Result<ConvGeom> {
    const OP: &str = "conv2d";
    let shapes: Vec<&[usize]> = [Some(x), Some(w), b].into_iter().flatten().collect();
    if x.len() != 4 || w.len() != 4 {
        return Err(Error::shape(OP, "x must be [N, C, H, W] and weight [O, C, KH, KW]", &shapes));
    }
    if x[1] != w[1] {
        return Err(Error::shape(OP, format!("x has {} channels but weight expects {}", x[1], w[1]), &shapes));
    }
    if let Some(b) = b {
        if b != [w[0]] {
            return Err(Error::shape(OP, format!("bias must be [{}]", w[0]), &shapes));
        }
    }
    if x.iter().chain(w).any(|&d| d == 0) {
        return Err(Error::shape(OP, "no dimension may be zero", &shapes));
    }
    let oh = out_size(OP, x[2], spec.padding.0, w[2], spec.stride.0)?;
    let ow = out_size(OP, x[3], spec.padding.1, w[3], spec.stride.1)?;
    Ok(ConvGeom {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        o: w[0],
        kh: w[2],
        kw: w[3],
        sh: spec.stride.0,
        sw: spec.stride.1,
        ph: spec.padding.0,
        pw: spec.padding.1,
        oh,
        ow,
    })
}

fn weight_matrix<'a, T: Float>(w: &'a [T], g: &ConvGeom) -> ArrayView2<'a, T> {
    ArrayView2::from_shape((g.o, g.c * g.kh * g.kw), w).expect("weight matrix shape")
}

/// Forward pass.
pub fn forward<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    w: &Arr<impl Data<Elem = T>>,
    b: Option<&Arr<impl Data<Elem = T>>>,
    spec: Conv2dSpec,
) -> Result<ArrayD<T>> {
    forward_impl(x, w, b, spec, None)
}

/// `forward`, or with `cache` `forward_cached`.
fn forward_impl<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    w: &Arr<impl Data<Elem = T>>,
    b: Option<&Arr<impl Data<Elem = T>>>,
    spec: Conv2dSpec,
    cache: Option<&SpectraCache<T>>,
) -> Result<ArrayD<T>> {
    let g = geometry(x.shape(), w.shape(), b.map(|b| b.shape()), spec)?;
    let (x, w) = (x.as_standard_layout(), w.as_standard_layout());
    let b = b.map(|b| b.as_standard_layout());
    let mut y = vec![T::zero(); g.n * g.o * g.oh * g.ow];
    let xs = x.as_slice().expect("standard layout");
    let ws = w.as_slice().expect("standard layout");
    let bs = b.as_ref().map(|b| b.as_slice().expect("standard layout"));
    let algo = if cache.is_some() { conv::choose_with_cached_weights(&g) } else { conv::choose(&g) };
    match (algo, cache) {
        (Algo::Im2col, _) => conv::forward(xs, weight_matrix(ws, &g), bs, &g, &mut y),
        (Algo::Fft, None) => fftconv::forward(xs, ws, bs, &g, &mut y),
        (Algo::Fft, Some(c)) => fftconv::forward_with(xs, &c.spectra(ws, &g), bs, &g, &mut y),
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&[g.n, g.o, g.oh, g.ow]), y).expect("output shape"))
}

/// A convolution layer's weight spectra, kept between inference calls so that `forward_cached` does
/// not transform the weights again (they are several times the work of the products at batch 1).
/// The owner (`nn::Conv2d`) empties it whenever its parameters are lent out mutably; as a guard
/// against a weight array replaced some other way, an entry also records the address and length of
/// the weights it came from. A clone starts empty.
#[derive(Debug, Default)]
pub struct SpectraCache<T> {
    entry: Mutex<Option<CachedSpectra<T>>>,
}

/// The address and length of the weights, and their spectra.
type CachedSpectra<T> = (usize, usize, Arc<WeightSpectra<T>>);

impl<T> Clone for SpectraCache<T> {
    fn clone(&self) -> Self {
        Self { entry: Mutex::new(None) }
    }
}

impl<T> SpectraCache<T> {
    /// Forgets the spectra (the weights are about to change).
    pub fn clear(&mut self) {
        *self.entry.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl<T: Float> SpectraCache<T> {
    /// The spectra of the weights `ws` for geometry `g`: the kept ones if they came from these weights
    /// and this input size, else computed and kept.
    fn spectra(&self, ws: &[T], g: &ConvGeom) -> Arc<WeightSpectra<T>> {
        let id = (ws.as_ptr() as usize, ws.len());
        let mut e = self.entry.lock().unwrap_or_else(|e| e.into_inner());
        match e.as_ref() {
            Some((p, n, s)) if (*p, *n) == id && s.key == (g.h, g.w, g.ph, g.pw) => s.clone(),
            _ => {
                let s = Arc::new(fftconv::weight_spectra(ws, g));
                *e = Some((id.0, id.1, s.clone()));
                s
            }
        }
    }
}

/// Forward pass for inference, keeping the weight spectra in `cache` when the FFT algorithm is used
/// (`conv::choose_with_cached_weights`); results equal `forward`'s up to the FFT-versus-im2col
/// rounding of the tolerance table.
pub fn forward_cached<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    w: &Arr<impl Data<Elem = T>>,
    b: Option<&Arr<impl Data<Elem = T>>>,
    spec: Conv2dSpec,
    cache: &SpectraCache<T>,
) -> Result<ArrayD<T>> {
    forward_impl(x, w, b, spec, Some(cache))
}

/// Gradients of x, weight and bias for upstream gradient `dy`; each is computed only when `need` asks.
#[allow(clippy::type_complexity)]
pub fn backward<T: Float>(
    x: &Arr<impl Data<Elem = T>>,
    w: &Arr<impl Data<Elem = T>>,
    dy: &Arr<impl Data<Elem = T>>,
    spec: Conv2dSpec,
    need: [bool; 3],
) -> Result<(Option<ArrayD<T>>, Option<ArrayD<T>>, Option<ArrayD<T>>)> {
    let g = geometry(x.shape(), w.shape(), None, spec)?;
    if dy.shape() != [g.n, g.o, g.oh, g.ow] {
        return Err(Error::shape(
            "conv2d backward",
            "grad_output does not match the output",
            &[dy.shape(), &[g.n, g.o, g.oh, g.ow]],
        ));
    }
    let (x, w, dy) = (x.as_standard_layout(), w.as_standard_layout(), dy.as_standard_layout());
    let (xs, ws, dys) = (x.as_slice().expect("std"), w.as_slice().expect("std"), dy.as_slice().expect("std"));
    let algo = conv::choose(&g);
    let dx = need[0].then(|| {
        let dx = match algo {
            Algo::Im2col => conv::backward_input(weight_matrix(ws, &g), dys, &g),
            Algo::Fft => fftconv::backward_input(ws, dys, &g),
        };
        ArrayD::from_shape_vec(IxDyn(&[g.n, g.c, g.h, g.w]), dx).expect("dx shape")
    });
    let dw = need[1].then(|| {
        let dw = match algo {
            Algo::Im2col => conv::backward_weight(xs, dys, &g),
            Algo::Fft => fftconv::backward_weight(xs, dys, &g),
        };
        ArrayD::from_shape_vec(IxDyn(&[g.o, g.c, g.kh, g.kw]), dw).expect("dw shape")
    });
    let db = need[2].then(|| ArrayD::from_shape_vec(IxDyn(&[g.o]), conv::backward_bias(dys, &g)).expect("db shape"));
    Ok((dx, dw, db))
}
