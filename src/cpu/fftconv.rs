//! 2-D convolution by FFT, for stride-1 convolutions with large kernels (the seed's 9x9).
//!
//! With the input zero-padded to `HP x WP` (`HP = H + 2*PH`), every pass is a product of 2-D spectra,
//! summed over channels, one small complex GEMM per frequency bin:
//!
//! * forward (cross-correlation): `Y_f[n, o]  = sum_c X_f[n, c] * conj(W_f[o, c])`, keep `[0, OH) x [0, OW)`;
//! * input gradient (convolution): `DX_f[n, c] = sum_o DY_f[n, o] * W_f[o, c]`, keep `[PH, PH+H) x [PW, PW+W)`;
//! * weight gradient (correlation): `DW_f[o, c] = sum_n X_f[n, c] * conj(DY_f[n, o])`, keep `[0, KH) x [0, KW)`.
//!
//! The transforms are `HP x WP`, so the circular products wrap nowhere inside the kept regions. A 9x9
//! kernel on a 32x32 map costs 81 multiply-adds per output pixel and channel pair directly, and about
//! 4 x 840 / 1024 ~ 3.3 here (real GEMMs on 40x21 bins), plus the transforms, which are shared by all
//! channel pairs.
//!
//! Spectra are kept as separate real and imaginary arrays laid out `[group][bin][plane]`, where a group
//! is a sample (its channels are the planes) or an output channel (its input channels are the planes).
//! A transform task owns one group and transposes its planes' spectra inside its own, cache-resident
//! chunk; each bin's GEMM then reads matrices whose rows are contiguous, and writes its output bin
//! through a disjoint strided view. Bins are ordered column-major (`[WP/2+1][HP]`), the order the
//! column transforms produce.

use super::conv::ConvGeom;
use super::float::Float;
use super::gemm::{gemm_reused_serial, Reused};
use super::simd::Rows2;
use ndarray::{Array3, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use rustfft::{num_complex::Complex, Fft, FftPlanner};
use std::sync::Arc;

/// 2-D transforms of real planes of one size. Rows are transformed as complex FFTs in one batched call
/// per plane (only the rows that hold data; a real row's spectrum is Hermitian, so only its first
/// `WP/2+1` bins are kept), then columns, also batched.
struct Plan2d<T: Float> {
    hp: usize,
    wp: usize,
    wc: usize,
    row_fwd: Arc<dyn Fft<T>>,
    row_inv: Arc<dyn Fft<T>>,
    col_fwd: Arc<dyn Fft<T>>,
    col_inv: Arc<dyn Fft<T>>,
}

/// Per-task buffers.
struct Scratch<T> {
    rows: Vec<Complex<T>>,
    cols: Vec<Complex<T>>,
    fft: Vec<Complex<T>>,
}

impl<T: Float> Plan2d<T> {
    fn new(hp: usize, wp: usize) -> Self {
        let mut planner = FftPlanner::<T>::new();
        Self {
            hp,
            wp,
            wc: wp / 2 + 1,
            row_fwd: planner.plan_fft_forward(wp),
            row_inv: planner.plan_fft_inverse(wp),
            col_fwd: planner.plan_fft_forward(hp),
            col_inv: planner.plan_fft_inverse(hp),
        }
    }

    fn bins(&self) -> usize {
        self.hp * self.wc
    }

    fn scratch(&self) -> Scratch<T> {
        let zero = Complex::new(T::zero(), T::zero());
        let fft = [&self.row_fwd, &self.row_inv, &self.col_fwd, &self.col_inv]
            .iter()
            .map(|f| f.get_inplace_scratch_len())
            .max()
            .unwrap_or(0);
        Scratch { rows: vec![zero; self.hp * self.wp], cols: vec![zero; self.bins()], fft: vec![zero; fft] }
    }

    /// The spectrum of an `h x w` block placed at `(r0, c0)` in a zero `HP x WP` plane, into `re`/`im`.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        block: &[T],
        h: usize,
        w: usize,
        r0: usize,
        c0: usize,
        re: &mut [T],
        im: &mut [T],
        s: &mut Scratch<T>,
    ) {
        let (hp, wp, wc) = (self.hp, self.wp, self.wc);
        let zero = Complex::new(T::zero(), T::zero());
        let rows = &mut s.rows[..h * wp];
        rows.fill(zero);
        for r in 0..h {
            for (d, &v) in rows[r * wp + c0..r * wp + c0 + w].iter_mut().zip(&block[r * w..(r + 1) * w]) {
                d.re = v;
            }
        }
        self.row_fwd.process_with_scratch(rows, &mut s.fft);
        // Columns: rows outside the block are zero; transpose the kept bins to [wc][hp].
        s.cols.fill(zero);
        for r in 0..h {
            for j in 0..wc {
                s.cols[j * hp + r0 + r] = rows[r * wp + j];
            }
        }
        self.col_fwd.process_with_scratch(&mut s.cols, &mut s.fft);
        for (k, c) in s.cols.iter().enumerate() {
            re[k] = c.re;
            im[k] = c.im;
        }
    }

    /// The inverse transform of the spectrum `spec(k) = (re, im)`, scaled by `1/(HP*WP)`; writes rows
    /// `[r0, r0+h)` and columns `[c0, c0+w)` of the real plane into `out` (`h x w`).
    #[allow(clippy::too_many_arguments)]
    fn inverse(
        &self,
        spec: impl Fn(usize) -> (T, T),
        h: usize,
        w: usize,
        r0: usize,
        c0: usize,
        out: &mut [T],
        s: &mut Scratch<T>,
    ) {
        let (hp, wp, wc) = (self.hp, self.wp, self.wc);
        for (k, c) in s.cols.iter_mut().enumerate() {
            let (re, im) = spec(k);
            *c = Complex::new(re, im);
        }
        self.col_inv.process_with_scratch(&mut s.cols, &mut s.fft);
        // Rebuild the needed rows in full from their Hermitian halves, then one batched inverse.
        let rows = &mut s.rows[..h * wp];
        for r in 0..h {
            let i = r0 + r;
            let row = &mut rows[r * wp..(r + 1) * wp];
            for j in 0..wc {
                row[j] = s.cols[j * hp + i];
            }
            for j in wc..wp {
                row[j] = s.cols[(wp - j) * hp + i].conj();
            }
        }
        self.row_inv.process_with_scratch(rows, &mut s.fft);
        let scale = T::one() / T::of((hp * wp) as f64);
        for r in 0..h {
            for (o, v) in out[r * w..(r + 1) * w].iter_mut().zip(&rows[r * wp + c0..r * wp + c0 + w]) {
                *o = v.re * scale;
            }
        }
    }

    /// Spectra of `groups x planes` blocks of `h x w` (contiguous in `data`, group-major) placed at
    /// `(r0, c0)`, as `[groups][bins][planes]`: one task per group, which transposes its own chunk,
    /// `plane_block` planes at a time.
    fn spectra(&self, data: &[T], groups: usize, h: usize, w: usize, r0: usize, c0: usize) -> (Array3<T>, Array3<T>) {
        let planes = data.len() / (groups * h * w);
        self.spectra_in_blocks(data, groups, (h, w, r0, c0), plane_block::<T>(self.bins(), planes))
    }

    /// `spectra`, `pb` planes at a time.
    fn spectra_in_blocks(
        &self,
        data: &[T],
        groups: usize,
        (h, w, r0, c0): (usize, usize, usize, usize),
        pb: usize,
    ) -> (Array3<T>, Array3<T>) {
        let bins = self.bins();
        let planes = data.len() / (groups * h * w);
        let mut re = Array3::<T>::zeros((groups, bins, planes));
        let mut im = Array3::<T>::zeros((groups, bins, planes));
        (re.axis_iter_mut(Axis(0)), im.axis_iter_mut(Axis(0)), data.par_chunks(planes * h * w))
            .into_par_iter()
            .for_each_init(
                || (self.scratch(), vec![T::zero(); pb * bins], vec![T::zero(); pb * bins]),
                |(s, pr, pi), (mut gr, mut gi, blocks)| {
                    let (gr, gi) = (
                        gr.as_slice_mut().expect("a fresh array's chunk"),
                        gi.as_slice_mut().expect("a fresh array's chunk"),
                    );
                    for (b, chunk) in blocks.chunks(pb * h * w).enumerate() {
                        let nb = chunk.len() / (h * w);
                        for (q, block) in chunk.chunks(h * w).enumerate() {
                            self.forward(
                                block,
                                h,
                                w,
                                r0,
                                c0,
                                &mut pr[q * bins..(q + 1) * bins],
                                &mut pi[q * bins..(q + 1) * bins],
                                s,
                            );
                        }
                        for k in 0..bins {
                            let row = k * planes + b * pb;
                            for q in 0..nb {
                                gr[row + q] = pr[q * bins + k];
                                gi[row + q] = pi[q * bins + k];
                            }
                        }
                    }
                },
            );
        (re, im)
    }

    /// Inverse transforms of `[groups][bins][planes]` spectra into `out` (group-major), one `h x w`
    /// crop at `(r0, c0)` per plane; one task per group, which reads `plane_block` planes' spectra at
    /// a time.
    #[allow(clippy::too_many_arguments)]
    fn crops(&self, re: &Array3<T>, im: &Array3<T>, h: usize, w: usize, r0: usize, c0: usize, out: &mut [T]) {
        let pb = plane_block::<T>(re.shape()[1], re.shape()[2]);
        self.crops_in_blocks(re, im, (h, w, r0, c0), out, pb)
    }

    /// `crops`, `pb` planes at a time.
    fn crops_in_blocks(
        &self,
        re: &Array3<T>,
        im: &Array3<T>,
        (h, w, r0, c0): (usize, usize, usize, usize),
        out: &mut [T],
        pb: usize,
    ) {
        let (bins, planes) = (re.shape()[1], re.shape()[2]);
        (re.axis_iter(Axis(0)), im.axis_iter(Axis(0)), out.par_chunks_mut(planes * h * w))
            .into_par_iter()
            .for_each_init(
                || (self.scratch(), vec![T::zero(); pb * bins], vec![T::zero(); pb * bins]),
                |(s, tr, ti), (gr, gi, o)| {
                    let (gr, gi) = (
                        gr.as_slice().expect("a standard-layout array's chunk"),
                        gi.as_slice().expect("a standard-layout array's chunk"),
                    );
                    for (b, outs) in o.chunks_mut(pb * h * w).enumerate() {
                        let nb = outs.len() / (h * w);
                        for k in 0..bins {
                            let row = k * planes + b * pb;
                            for q in 0..nb {
                                tr[q * bins + k] = gr[row + q];
                                ti[q * bins + k] = gi[row + q];
                            }
                        }
                        for (q, plane) in outs.chunks_mut(h * w).enumerate() {
                            let (qr, qi) = (&tr[q * bins..(q + 1) * bins], &ti[q * bins..(q + 1) * bins]);
                            self.inverse(|k| (qr[k], qi[k]), h, w, r0, c0, plane, s);
                        }
                    }
                },
            );
    }
}

/// Planes whose spectra a transform task writes into (or reads from) its group's `[bins][planes]`
/// chunk together: sixteen f32 values of a bin's row are one cache line, written or read whole
/// instead of one value per plane (a plane's bins lie a row apart, and a group's chunk, 0.9 MB for
/// 128 planes of 40x21 bins, does not stay in L2 between planes).
const PLANE_BLOCK: usize = 16;

/// Planes a task transforms together for a group of `planes` spectra of `bins` bins: `PLANE_BLOCK`
/// where the group's chunk is larger than 256 KiB, one plane at a time otherwise (blocks for every
/// chunk made the 'valid' CNN's training step 0.92-0.94x, and this rule 1.0x, with the 'same' one's
/// 1.04x going to 1.09x: BENCHMARKS.md).
fn plane_block<T>(bins: usize, planes: usize) -> usize {
    if bins * planes * std::mem::size_of::<T>() > 256 << 10 {
        PLANE_BLOCK.min(planes)
    } else {
        1
    }
}

/// Runs `mul(f, out_re, out_im)` for every bin `f` in parallel, into `[groups][bins][planes]` outputs.
fn per_bin<T: Float>(
    groups: usize,
    bins: usize,
    planes: usize,
    mul: impl Fn(usize, ArrayViewMut2<T>, ArrayViewMut2<T>) + Sync,
) -> (Array3<T>, Array3<T>) {
    let mut cr = Array3::<T>::zeros((groups, bins, planes));
    let mut ci = Array3::<T>::zeros((groups, bins, planes));
    (cr.axis_iter_mut(Axis(1)), ci.axis_iter_mut(Axis(1)))
        .into_par_iter()
        .enumerate()
        .for_each(|(f, (r, i))| mul(f, r, i));
    (cr, ci)
}

/// Bin `f` of `[groups][bins][planes]` spectra, as a `[groups][planes]` matrix (rows contiguous).
fn at<T: Float>(spec: &Array3<T>, f: usize) -> ArrayView2<'_, T> {
    spec.index_axis(Axis(1), f)
}

/// A bin's right-hand matrix (the real or the imaginary part), read by two of the bin's four real
/// products: copied once into the GEMM kernel's strips where each product would copy it
/// (`Float::pack_reused_for`, decided for left-hand operands laid out like `a`), so the same bits.
struct Rhs<'a, T: Float> {
    view: ArrayView2<'a, T>,
    packed: Option<crate::cpu::sgemm::PackedB>,
}

impl<'a, T: Float> Rhs<'a, T> {
    fn new(a: &ArrayView2<T>, b: ArrayView2<'a, T>) -> Self {
        Self { packed: T::pack_reused_for(a.view(), b.view()), view: b }
    }

    /// `c = alpha * a . b + beta * c` on the calling thread.
    fn mul(&self, alpha: T, a: ArrayView2<T>, beta: T, c: ArrayViewMut2<T>) {
        gemm_reused_serial(alpha, a, &Reused { view: self.view.view(), packed: self.packed.as_ref() }, beta, c);
    }
}

/// Batches up to this size multiply each bin with `Float::xconj_w` (dot products over the weight
/// spectra where they lie) instead of four GEMMs.
const SMALL_BATCH: usize = 4;

/// The real and imaginary `[rows][planes]` matrices of one bin as `Rows2` (planes contiguous).
fn rows2<'a, T: Float>(re: &'a ArrayView2<'a, T>, im: &'a ArrayView2<'a, T>) -> Rows2<'a, T> {
    let (m, c) = re.dim();
    assert!(re.strides()[1] == 1 && im.strides() == re.strides(), "bin matrices have contiguous rows");
    let ld = re.strides()[0] as usize;
    let len = if m == 0 { 0 } else { (m - 1) * ld + c };
    // SAFETY: the views' elements lie in [ptr, ptr + (m-1)*ld + c) (row stride ld, unit column
    // stride, checked above), all inside the arrays they borrow, for the borrow's lifetime.
    let (r, i) =
        unsafe { (std::slice::from_raw_parts(re.as_ptr(), len), std::slice::from_raw_parts(im.as_ptr(), len)) };
    Rows2 { re: r, im: i, m, ld }
}

fn plan<T: Float>(g: &ConvGeom) -> Plan2d<T> {
    Plan2d::new(g.h + 2 * g.ph, g.w + 2 * g.pw)
}

/// The spectra of a convolution's weight planes for one input size, `[O][bins][C]`: what `forward`
/// computes on every call, kept by `ops::conv2d::SpectraCache` between inference calls (at batch 1
/// these transforms cost several times the products).
#[derive(Debug)]
pub struct WeightSpectra<T> {
    /// The input plane size and padding the spectra are for: `(h, w, ph, pw)`.
    pub key: (usize, usize, usize, usize),
    re: Array3<T>,
    im: Array3<T>,
}

/// The weight spectra `forward` needs for geometry `g`.
pub fn weight_spectra<T: Float>(w: &[T], g: &ConvGeom) -> WeightSpectra<T> {
    let (re, im) = plan::<T>(g).spectra(w, g.o, g.kh, g.kw, 0, 0);
    WeightSpectra { key: (g.h, g.w, g.ph, g.pw), re, im }
}

/// Forward pass (stride 1): `x [N, C, H, W]`, `w [O, C, KH, KW]` into `y [N, O, OH, OW]`.
pub fn forward<T: Float>(x: &[T], w: &[T], bias: Option<&[T]>, g: &ConvGeom, y: &mut [T]) {
    forward_with(x, &weight_spectra(w, g), bias, g, y)
}

/// `forward` with the weight spectra already computed (for the same geometry).
pub fn forward_with<T: Float>(x: &[T], ws: &WeightSpectra<T>, bias: Option<&[T]>, g: &ConvGeom, y: &mut [T]) {
    let p = plan::<T>(g);
    assert_eq!(ws.key, (g.h, g.w, g.ph, g.pw), "weight spectra of another input size");
    assert_eq!(ws.re.shape(), [g.o, p.bins(), g.c], "weight spectra of another layer");
    let (xr, xi) = p.spectra(x, g.n, g.h, g.w, g.ph, g.pw);
    let (wr, wi) = (&ws.re, &ws.im);
    let (one, neg) = (T::one(), -T::one());
    let (yr, yi) = per_bin(g.n, p.bins(), g.o, |f, mut r, mut i| {
        let (ar, ai, br, bi) = (at(&xr, f), at(&xi, f), at(wr, f), at(wi, f));
        if g.n <= SMALL_BATCH {
            // One pass over the weight spectra for both parts; a GEMM would pack them per call. A
            // sample at a time, straight into its output row (contiguous; the bin's rows are not).
            for n in 0..g.n {
                let (xr, xi) = (ar.row(n), ai.row(n));
                let x = Rows2 {
                    re: xr.as_slice().expect("contiguous row"),
                    im: xi.as_slice().expect("contiguous row"),
                    m: 1,
                    ld: g.c,
                };
                let (mut yr, mut yi) = (r.row_mut(n), i.row_mut(n));
                T::xconj_w(
                    g.c,
                    x,
                    rows2(&br, &bi),
                    yr.as_slice_mut().expect("contiguous row"),
                    yi.as_slice_mut().expect("contiguous row"),
                );
            }
            return;
        }
        // X conj(W): re = Xr Wr^T + Xi Wi^T, im = Xi Wr^T - Xr Wi^T
        let (br, bi) = (Rhs::new(&ar, br.t()), Rhs::new(&ar, bi.t()));
        br.mul(one, ar, T::zero(), r.view_mut());
        bi.mul(one, ai, one, r.view_mut());
        br.mul(one, ai, T::zero(), i.view_mut());
        bi.mul(neg, ar, one, i.view_mut());
    });
    p.crops(&yr, &yi, g.oh, g.ow, 0, 0, y);
    if let Some(b) = bias {
        y.par_chunks_mut(g.oh * g.ow).enumerate().for_each(|(p, plane)| {
            let bo = b[p % g.o];
            plane.iter_mut().for_each(|v| *v += bo);
        });
    }
}

/// Input gradient (stride 1): `dx [N, C, H, W]` from `w` and `dy [N, O, OH, OW]`.
pub fn backward_input<T: Float>(w: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let p = plan::<T>(g);
    let (dr, di) = p.spectra(dy, g.n, g.oh, g.ow, 0, 0);
    let (wr, wi) = p.spectra(w, g.o, g.kh, g.kw, 0, 0);
    let (one, neg) = (T::one(), -T::one());
    let (xr, xi) = per_bin(g.n, p.bins(), g.c, |f, mut r, mut i| {
        let (ar, ai, br, bi) = (at(&dr, f), at(&di, f), at(&wr, f), at(&wi, f));
        // DY W: re = DYr Wr - DYi Wi, im = DYr Wi + DYi Wr
        let (br, bi) = (Rhs::new(&ar, br), Rhs::new(&ar, bi));
        br.mul(one, ar, T::zero(), r.view_mut());
        bi.mul(neg, ai, one, r.view_mut());
        bi.mul(one, ar, T::zero(), i.view_mut());
        br.mul(one, ai, one, i.view_mut());
    });
    let mut dx = vec![T::zero(); g.n * g.c * g.h * g.w];
    p.crops(&xr, &xi, g.h, g.w, g.ph, g.pw, &mut dx);
    dx
}

/// Weight gradient (stride 1): `dw [O, C, KH, KW]` from `x` and `dy`.
pub fn backward_weight<T: Float>(x: &[T], dy: &[T], g: &ConvGeom) -> Vec<T> {
    let p = plan::<T>(g);
    let (xr, xi) = p.spectra(x, g.n, g.h, g.w, g.ph, g.pw);
    let (dr, di) = p.spectra(dy, g.n, g.oh, g.ow, 0, 0);
    let (one, neg) = (T::one(), -T::one());
    let (wr, wi) = per_bin(g.o, p.bins(), g.c, |f, mut r, mut i| {
        let (ar, ai, br, bi) = (at(&dr, f), at(&di, f), at(&xr, f), at(&xi, f));
        // conj(DY)^T X: re = DYr^T Xr + DYi^T Xi, im = DYr^T Xi - DYi^T Xr
        let (br, bi) = (Rhs::new(&ar.t(), br), Rhs::new(&ar.t(), bi));
        br.mul(one, ar.t(), T::zero(), r.view_mut());
        bi.mul(one, ai.t(), one, r.view_mut());
        bi.mul(one, ar.t(), T::zero(), i.view_mut());
        br.mul(neg, ai.t(), one, i.view_mut());
    });
    let mut dw = vec![T::zero(); g.o * g.c * g.kh * g.kw];
    p.crops(&wr, &wi, g.kh, g.kw, 0, 0, &mut dw);
    dw
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Transforming planes in blocks moves values only: spectra and crops give the same bits one
    /// plane at a time and in blocks (a plane count that is not a multiple of the block, padding and
    /// an offset crop), in f32 and f64.
    #[test]
    fn plane_blocks_move_values_only() {
        fn check<T: Float>() {
            let (groups, planes, h, w) = (3, 37, 11, 13);
            let p = Plan2d::<T>::new(h + 4, w + 6);
            let data: Vec<T> =
                (0..groups * planes * h * w).map(|i| T::of(((i * 7919) % 1013) as f64 / 1013.0 - 0.5)).collect();
            let one = p.spectra_in_blocks(&data, groups, (h, w, 2, 3), 1);
            for pb in [PLANE_BLOCK, 5] {
                let blocked = p.spectra_in_blocks(&data, groups, (h, w, 2, 3), pb);
                assert!(blocked.0 == one.0 && blocked.1 == one.1, "spectra in blocks of {pb}");
                let (mut a, mut b) = (vec![T::zero(); data.len()], vec![T::zero(); data.len()]);
                p.crops_in_blocks(&one.0, &one.1, (h, w, 2, 3), &mut a, 1);
                p.crops_in_blocks(&one.0, &one.1, (h, w, 2, 3), &mut b, pb);
                assert!(a == b, "crops in blocks of {pb}");
                let err = a.iter().zip(&data).map(|(x, y)| (x.f64() - y.f64()).abs()).fold(0.0, f64::max);
                assert!(err < 1e-5, "the round trip gives the planes back ({err})");
            }
        }
        check::<f32>();
        check::<f64>();
    }
}
