//! 2-D convolution on the CPU: im2col + GEMM, one sample per task.
//!
//! For one sample, `cols` is the `[C*KH*KW, OH*OW]` matrix whose row `(c, ki, kj)` holds the input pixels
//! that tap `(ki, kj)` of channel `c` sees at every output position (zeros in the padding). Then
//!
//! * forward:         `Y_n[O, OH*OW]    = W[O, C*KH*KW] . cols`            (+ bias)
//! * weight gradient: `dW[O, C*KH*KW]  += dY_n[O, OH*OW] . cols^T`
//! * input gradient:  `dcols           = W^T . dY_n`, scattered back by col2im.
//!
//! `W` is PyTorch's `[O, C, KH, KW]` layout read as a matrix, and `Y_n` is already NCHW. `cols` is rebuilt
//! in the backward pass instead of being stored (it is 81x the input for a 9x9 kernel). Samples run in
//! parallel, each task with its own `cols` buffer; with fewer samples than threads, the GEMMs themselves
//! are split instead.

use super::float::Float;
use super::gemm::{gemm, gemm_serial};
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

pub use crate::geometry::ConvGeom;

/// Fills `cols` (`[C*KH*KW, OH*OW]`, row-major) from one sample `x` (`[C, H, W]`).
pub fn im2col<T: Float>(x: &[T], g: &ConvGeom, cols: &mut [T]) {
    let (ohw, ow) = (g.ohw(), g.ow);
    for c in 0..g.c {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = ((c * g.kh + ki) * g.kw + kj) * ohw;
                for oy in 0..g.oh {
                    let dst = &mut cols[row + oy * ow..row + (oy + 1) * ow];
                    let iy = (oy * g.sh + ki) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.sw == 1 {
                        let (lo, hi) = g.valid_cols(kj);
                        dst[..lo].fill(T::zero());
                        dst[hi..].fill(T::zero());
                        if hi > lo {
                            dst[lo..hi].copy_from_slice(&src[lo + kj - g.pw..hi + kj - g.pw]);
                        }
                    } else {
                        for (ox, d) in dst.iter_mut().enumerate() {
                            let ix = (ox * g.sw + kj) as isize - g.pw as isize;
                            *d = if ix >= 0 && ix < g.w as isize { src[ix as usize] } else { T::zero() };
                        }
                    }
                }
            }
        }
    }
}

/// Adds `cols` (`[C*KH*KW, OH*OW]`) back into one sample's input gradient `dx` (`[C, H, W]`).
pub fn col2im<T: Float>(cols: &[T], g: &ConvGeom, dx: &mut [T]) {
    let (ohw, ow) = (g.ohw(), g.ow);
    for c in 0..g.c {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let row = ((c * g.kh + ki) * g.kw + kj) * ohw;
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + ki) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let src = &cols[row + oy * ow..row + (oy + 1) * ow];
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    if g.sw == 1 {
                        let (lo, hi) = g.valid_cols(kj);
                        if hi == lo {
                            continue;
                        }
                        for (d, s) in dst[lo + kj - g.pw..hi + kj - g.pw].iter_mut().zip(&src[lo..hi]) {
                            *d += *s;
                        }
                    } else {
                        for (ox, s) in src.iter().enumerate() {
                            let ix = (ox * g.sw + kj) as isize - g.pw as isize;
                            if ix >= 0 && ix < g.w as isize {
                                dst[ix as usize] += *s;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How a convolution is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    /// im2col + GEMM (this module): any stride, best for small kernels.
    Im2col,
    /// Products of 2-D spectra (`cpu::fftconv`): stride 1 only, far fewer operations for large kernels.
    Fft,
}

/// The algorithm for a convolution: FFT for stride-1 kernels of 5x5 (25 taps) or more with at least 4
/// input channels and 4 samples, im2col otherwise. With one input channel the per-bin products have no
/// reduction to amortise the transforms over, and with very few samples the transforms of the O x C
/// weight planes cost more than im2col's direct products (measured with `examples/conv_profile.rs`).
/// The environment variable `SPECNN_CONV=im2col|fft` overrides the choice (FFT only where stride is 1),
/// for benchmarks and comparisons.
pub fn choose(g: &ConvGeom) -> Algo {
    decide(g, 4)
}

/// The algorithm for an inference pass whose weight spectra are kept between calls
/// (`ops::conv2d::forward_cached`): then the weight transforms cost nothing per call, and FFT wins
/// at any batch size for a large kernel over several input channels.
pub fn choose_with_cached_weights(g: &ConvGeom) -> Algo {
    decide(g, 1)
}

/// `choose`'s rule, with FFT from `min_batch` samples on.
fn decide(g: &ConvGeom, min_batch: usize) -> Algo {
    static FORCED: std::sync::OnceLock<Option<Algo>> = std::sync::OnceLock::new();
    let forced = *FORCED.get_or_init(|| match std::env::var("SPECNN_CONV").as_deref() {
        Ok("im2col") => Some(Algo::Im2col),
        Ok("fft") => Some(Algo::Fft),
        _ => None,
    });
    let fft_possible = g.sh == 1 && g.sw == 1;
    match forced {
        Some(Algo::Im2col) => Algo::Im2col,
        Some(Algo::Fft) if fft_possible => Algo::Fft,
        _ if fft_possible && g.kh * g.kw >= 25 && g.c >= 4 && g.n >= min_batch => Algo::Fft,
        _ => Algo::Im2col,
    }
}

/// Whether to run samples in parallel (each with a serial GEMM) rather than one parallel GEMM at a time.
fn per_sample_parallel(n: usize) -> bool {
    n >= rayon::current_num_threads()
}

/// Forward pass: `x` `[N, C, H, W]` and `w` `[O, C*KH*KW]` (both contiguous) into `y` `[N, O, OH*OW]`.
pub fn forward<T: Float>(x: &[T], w: ArrayView2<T>, bias: Option<&[T]>, g: &ConvGeom, y: &mut [T]) {
    let (ckk, ohw, chw) = (g.ckk(), g.ohw(), g.chw());
    let one_sample = |xn: &[T], yn: &mut [T], cols: &mut Vec<T>, parallel_gemm: bool| {
        cols.resize(ckk * ohw, T::zero());
        im2col(xn, g, cols);
        let a = ArrayView2::from_shape((ckk, ohw), &cols[..]).expect("cols shape");
        let mut out = ArrayViewMut2::from_shape((g.o, ohw), yn).expect("output shape");
        if let Some(b) = bias {
            for (mut row, &bo) in out.rows_mut().into_iter().zip(b) {
                row.fill(bo);
            }
        } else {
            out.fill(T::zero());
        }
        if parallel_gemm {
            gemm(T::one(), w, a, T::one(), out);
        } else {
            gemm_serial(T::one(), w, a, T::one(), out);
        }
    };
    if per_sample_parallel(g.n) {
        x.par_chunks(chw)
            .zip(y.par_chunks_mut(g.o * ohw))
            .for_each_init(Vec::new, |cols, (xn, yn)| one_sample(xn, yn, cols, false));
    } else {
        let mut cols = Vec::new();
        for (xn, yn) in x.chunks(chw).zip(y.chunks_mut(g.o * ohw)) {
            one_sample(xn, yn, &mut cols, true);
        }
    }
}

/// Weight gradient: returns `dW` `[O, C*KH*KW]` from `x` `[N, C, H, W]` and `dy` `[N, O, OH*OW]`.
pub fn backward_weight<T: Float>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let (ckk, ohw, chw) = (g.ckk(), g.ohw(), g.chw());
    let accumulate = |xn: &[T], dyn_: &[T], dw: &mut [T], cols: &mut Vec<T>, parallel_gemm: bool| {
        cols.resize(ckk * ohw, T::zero());
        im2col(xn, g, cols);
        let a = ArrayView2::from_shape((ckk, ohw), &cols[..]).expect("cols shape");
        let d = ArrayView2::from_shape((g.o, ohw), dyn_).expect("dy shape");
        let out = ArrayViewMut2::from_shape((g.o, ckk), dw).expect("dw shape");
        if parallel_gemm {
            gemm(T::one(), d, a.t(), T::one(), out);
        } else {
            gemm_serial(T::one(), d, a.t(), T::one(), out);
        }
    };
    if per_sample_parallel(g.n) {
        // Fixed chunks of samples, partial sums added in chunk order: the result does not depend on
        // how rayon schedules the chunks (training is reproducible bit for bit).
        const CHUNK: usize = 4;
        let partials: Vec<Vec<T>> = x
            .par_chunks(CHUNK * chw)
            .zip(dy.par_chunks(CHUNK * g.o * ohw))
            .map(|(xc, dyc)| {
                let (mut dw, mut cols) = (vec![T::zero(); g.o * ckk], Vec::new());
                for (xn, dyn_) in xc.chunks(chw).zip(dyc.chunks(g.o * ohw)) {
                    accumulate(xn, dyn_, &mut dw, &mut cols, false);
                }
                dw
            })
            .collect();
        let mut dw = vec![T::zero(); g.o * ckk];
        for p in partials {
            dw.iter_mut().zip(&p).for_each(|(a, b)| *a += *b);
        }
        dw
    } else {
        let mut dw = vec![T::zero(); g.o * ckk];
        let mut cols = Vec::new();
        for (xn, dyn_) in x.chunks(chw).zip(dy.chunks(g.o * ohw)) {
            accumulate(xn, dyn_, &mut dw, &mut cols, true);
        }
        dw
    }
}

/// Input gradient: returns `dx` `[N, C, H, W]` from `w` `[O, C*KH*KW]` and `dy` `[N, O, OH*OW]`.
pub fn backward_input<T: Float>(w: ArrayView2<T>, dy: &[T], g: &ConvGeom) -> Vec<T> {
    let (ckk, ohw, chw) = (g.ckk(), g.ohw(), g.chw());
    let mut dx = vec![T::zero(); g.n * chw];
    let one_sample = |dyn_: &[T], dxn: &mut [T], cols: &mut Vec<T>, parallel_gemm: bool| {
        cols.resize(ckk * ohw, T::zero());
        let d = ArrayView2::from_shape((g.o, ohw), dyn_).expect("dy shape");
        let out = ArrayViewMut2::from_shape((ckk, ohw), &mut cols[..]).expect("cols shape");
        if parallel_gemm {
            gemm(T::one(), w.t(), d, T::zero(), out);
        } else {
            gemm_serial(T::one(), w.t(), d, T::zero(), out);
        }
        col2im(cols, g, dxn);
    };
    if per_sample_parallel(g.n) {
        dy.par_chunks(g.o * ohw)
            .zip(dx.par_chunks_mut(chw))
            .for_each_init(Vec::new, |cols, (dyn_, dxn)| one_sample(dyn_, dxn, cols, false));
    } else {
        let mut cols = Vec::new();
        for (dyn_, dxn) in dy.chunks(g.o * ohw).zip(dx.chunks_mut(chw)) {
            one_sample(dyn_, dxn, &mut cols, true);
        }
    }
    dx
}

/// Bias gradient: the sum of `dy` `[N, O, OH*OW]` over samples and pixels.
pub fn backward_bias<T: Float>(dy: &[T], g: &ConvGeom) -> Vec<T> {
    let ohw = g.ohw();
    let mut db = vec![T::zero(); g.o];
    for sample in dy.chunks(g.o * ohw) {
        for (o, plane) in sample.chunks(ohw).enumerate() {
            db[o] += plane.iter().copied().sum::<T>();
        }
    }
    db
}
