//! Vectorised f32 loops for the elementwise work of a training step: SELU forward and backward, and
//! Adam's update.
//!
//! The release build targets plain x86-64 (SSE2), so the compiler cannot use AVX2 or FMA in ordinary
//! code. Each loop here is written once as scalar Rust that the compiler can vectorise, and compiled
//! three times: inside a `#[target_feature(enable = "avx512f,avx512dq,avx2,fma")]` function picked at
//! run time where the GEMM runs on AVX-512 (`sgemm::wide`), inside an `avx2,fma` one where the CPU
//! has those, and as is otherwise. Each element's operations are the same whatever the vector width
//! (no reassociation, no contraction of a multiply and an add), so the AVX-512 and AVX2 builds give
//! the same bits (`tests`). SELU needs `exp`, which libm only offers one element at a time, so
//! `exp_parts` is a polynomial that vectorises (Cody-Waite range reduction to |r| <= ln2/2, a degree-8
//! Taylor polynomial for expm1(r), and 2^n built from its bits): within 2 ulp of libm's `expm1f` on the
//! tested range (`tests`), well inside the tolerance table's 1e-5.

use super::adam::AdamStep;
use super::features::has_avx2_fma;
use super::selu::{SELU_ALPHA, SELU_SCALE};
use crate::tensor::Element;
use std::mem::MaybeUninit;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in a part exact in few bits and the rest (Cody and Waite), so `x - n ln2` is exact.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// Below this, exp(x) is under f32's smallest normal number and expm1(x) is -1.
const EXP_MIN: f32 = -87.0;

/// `(s, p)` with `exp(x) = s * (1 + p)` and `expm1(x) = s * p + (s - 1)`, for `EXP_MIN <= x <= 0` (NaN
/// propagates through `p`). Branch-free so that it vectorises.
#[inline(always)]
fn exp_parts(x: f32) -> (f32, f32) {
    // n = round(x / ln 2) by the 1.5 * 2^23 trick (round to nearest even, no float-to-int conversion).
    const ROUND: f32 = 12_582_912.0;
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = r
        * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0))))))));
    // 2^n for -126 <= n <= 0: exponent field n + 127; n + 127 + 2^23 has it in its low mantissa bits.
    let e = (n + (8_388_608.0 + 127.0)).to_bits() & 0x7f_ffff;
    let s = f32::from_bits(e << 23);
    (s, p)
}

/// x clamped into `[EXP_MIN, 0]`, NaN kept.
#[inline(always)]
fn clamp_neg(v: f32) -> f32 {
    v.clamp(EXP_MIN, 0.0)
}

const SCALE: f32 = SELU_SCALE as f32;
/// SELU's scale times alpha, rounded once.
const SCALE_ALPHA: f32 = (SELU_SCALE * SELU_ALPHA) as f32;

/// `y = selu(x)`; `y` may be uninitialised memory (it is only written).
#[inline(always)]
fn selu_body(x: &[f32], y: &mut [MaybeUninit<f32>]) {
    for (y, &v) in y.iter_mut().zip(x) {
        let (s, p) = exp_parts(clamp_neg(v));
        let em1 = s * p + (s - 1.0);
        y.write(if v > 0.0 { SCALE * v } else { SCALE_ALPHA * em1 });
    }
}

/// `d *= selu'(x)`, in place: `d` holds the output gradient and becomes the input gradient.
#[inline(always)]
fn selu_backward_body(x: &[f32], d: &mut [f32]) {
    for (d, &v) in d.iter_mut().zip(x) {
        let (s, p) = exp_parts(clamp_neg(v));
        let e = s + s * p;
        *d = if v > 0.0 { *d * SCALE } else { *d * SCALE_ALPHA * e };
    }
}

#[inline(always)]
fn adam_body(c: AdamStep<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        c.apply(p, g, m, v);
    }
}

/// Operands of [`xconj_w_body`]: `m` rows of `c` values at row stride `ld` (real and imaginary parts).
#[derive(Clone, Copy, Debug)]
pub struct Rows2<'a, T> {
    pub re: &'a [T],
    pub im: &'a [T],
    pub m: usize,
    pub ld: usize,
}

/// `yr[n][o] = sum_c xr[n][c] wr[o][c] + xi[n][c] wi[o][c]` and `yi[n][o] = sum_c xi[n][c] wr[o][c] -
/// xr[n][c] wi[o][c]` (`X conj(W)` for one frequency bin of an FFT convolution), with `c` values a
/// row; `y*` are `x.m x w.m`, row-major. Eight partial sums per output, in a fixed order.
#[inline(always)]
pub fn xconj_w_body<T: Element>(c: usize, x: Rows2<T>, w: Rows2<T>, yr: &mut [T], yi: &mut [T]) {
    let c8 = c - c % 8;
    for n in 0..x.m {
        let (ar, ai) = (&x.re[n * x.ld..n * x.ld + c], &x.im[n * x.ld..n * x.ld + c]);
        for j in 0..w.m {
            let (br, bi) = (&w.re[j * w.ld..j * w.ld + c], &w.im[j * w.ld..j * w.ld + c]);
            let mut re = [T::zero(); 8];
            let mut im = [T::zero(); 8];
            for k in (0..c8).step_by(8) {
                for l in 0..8 {
                    re[l] = re[l] + ar[k + l] * br[k + l] + ai[k + l] * bi[k + l];
                    im[l] = im[l] + ai[k + l] * br[k + l] - ar[k + l] * bi[k + l];
                }
            }
            let sum = |v: [T; 8]| ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
            let (mut sr, mut si) = (sum(re), sum(im));
            for k in c8..c {
                sr = sr + ar[k] * br[k] + ai[k] * bi[k];
                si = si + ai[k] * br[k] - ar[k] * bi[k];
            }
            yr[n * w.m + j] = sr;
            yi[n * w.m + j] = si;
        }
    }
}

/// Sum of the eight lanes of `v` in a fixed order (shared with `sgemm`'s dot-product kernel).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn hsum(v: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s)))
}

/// `xconj_w_body` for f32 with AVX2 and FMA: four outputs at a time, eight accumulators, each
/// weight row loaded once per step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn xconj_w_x86(c: usize, x: Rows2<f32>, w: Rows2<f32>, yr: &mut [f32], yi: &mut [f32]) {
    use std::arch::x86_64::*;
    let c8 = c - c % 8;
    for n in 0..x.m {
        let (ar, ai) = (&x.re[n * x.ld..n * x.ld + c], &x.im[n * x.ld..n * x.ld + c]);
        let mut j0 = 0;
        while j0 < w.m {
            let nj = 4.min(w.m - j0);
            let mut rows = [0usize; 4];
            for (q, r) in rows.iter_mut().enumerate() {
                *r = (j0 + q.min(nj - 1)) * w.ld;
            }
            let mut re = [_mm256_setzero_ps(); 4];
            let mut im = [_mm256_setzero_ps(); 4];
            let mut k = 0;
            while k < c8 {
                let (xa, xb) = (_mm256_loadu_ps(ar.as_ptr().add(k)), _mm256_loadu_ps(ai.as_ptr().add(k)));
                for q in 0..4 {
                    let br = _mm256_loadu_ps(w.re.as_ptr().add(rows[q] + k));
                    let bi = _mm256_loadu_ps(w.im.as_ptr().add(rows[q] + k));
                    re[q] = _mm256_fmadd_ps(xb, bi, _mm256_fmadd_ps(xa, br, re[q]));
                    im[q] = _mm256_fnmadd_ps(xa, bi, _mm256_fmadd_ps(xb, br, im[q]));
                }
                k += 8;
            }
            for q in 0..nj {
                let (mut sr, mut si) = (hsum(re[q]), hsum(im[q]));
                let (br, bi) = (&w.re[rows[q]..rows[q] + c], &w.im[rows[q]..rows[q] + c]);
                for k in c8..c {
                    sr += ar[k] * br[k] + ai[k] * bi[k];
                    si += ai[k] * br[k] - ar[k] * bi[k];
                }
                yr[n * w.m + j0 + q] = sr;
                yi[n * w.m + j0 + q] = si;
            }
            j0 += 4;
        }
    }
}

/// `xconj_w_body` for f32 (intrinsics where the CPU has AVX2 and FMA).
pub fn xconj_w(c: usize, x: Rows2<f32>, w: Rows2<f32>, yr: &mut [f32], yi: &mut [f32]) {
    assert!(
        x.re.len() >= (x.m.max(1) - 1) * x.ld + c && w.re.len() >= (w.m.max(1) - 1) * w.ld + c,
        "xconj_w: rows out of range"
    );
    assert!(
        x.im.len() == x.re.len() && w.im.len() == w.re.len() && yr.len() >= x.m * w.m && yi.len() >= x.m * w.m,
        "xconj_w: operand sizes"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA; every load reads inside the rows checked above.
        return unsafe { xconj_w_x86(c, x, w, yr, yi) };
    }
    xconj_w_body(c, x, w, yr, yi)
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $avx:ident, $avx512:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if super::features::wide() {
                // SAFETY: the CPU has AVX-512F/DQ, AVX2 and FMA (`sgemm::wide`).
                return unsafe { $avx512($($arg),*) };
            }
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { $avx($($arg),*) };
            }
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn $avx512($($arg: $ty),*) {
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

dispatch!(
    /// `y = selu(x)` (lengths must match); `y` is only written, so it may be uninitialised.
    selu, selu_avx2, selu_avx512, selu_body, (x: &[f32], y: &mut [MaybeUninit<f32>])
);
dispatch!(
    /// `d = d * selu'(x)` in place: the output gradient in, the input gradient out (lengths must match).
    selu_backward, selu_backward_avx2, selu_backward_avx512, selu_backward_body, (x: &[f32], d: &mut [f32])
);
dispatch!(
    /// One Adam update of parameters `p` with gradients `g` and moments `m`, `v` (lengths must match).
    adam, adam_avx2, adam_avx512, adam_body, (c: AdamStep<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32])
);

#[cfg(test)]
mod tests {
    use super::*;

    fn as_uninit(y: &mut [f32]) -> &mut [MaybeUninit<f32>] {
        // SAFETY: MaybeUninit<f32> has f32's layout, and the kernels only write initialised values.
        unsafe { &mut *(y as *mut [f32] as *mut [MaybeUninit<f32>]) }
    }

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// The f32 bin product (intrinsics where available) against the generic body in f64, for row
    /// lengths and counts that are not multiples of the vector width or the four-output block.
    #[test]
    fn xconj_w_matches_f64() {
        let mut seed = 5u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        for (m, o, c, ld) in [(1, 1, 1, 1), (1, 7, 13, 20), (3, 9, 64, 70), (4, 128, 64, 64), (2, 5, 131, 140)] {
            let (xr, xi): (Vec<f32>, Vec<f32>) = (0..m * ld).map(|_| (next(), next())).unzip();
            let (wr, wi): (Vec<f32>, Vec<f32>) = (0..o * ld).map(|_| (next(), next())).unzip();
            let (mut yr, mut yi) = (vec![0f32; m * o], vec![0f32; m * o]);
            xconj_w(c, Rows2 { re: &xr, im: &xi, m, ld }, Rows2 { re: &wr, im: &wi, m: o, ld }, &mut yr, &mut yi);
            let f = |v: &[f32]| v.iter().map(|&a| a as f64).collect::<Vec<f64>>();
            let (xr64, xi64, wr64, wi64) = (f(&xr), f(&xi), f(&wr), f(&wi));
            let (mut zr, mut zi) = (vec![0f64; m * o], vec![0f64; m * o]);
            xconj_w_body(
                c,
                Rows2 { re: &xr64, im: &xi64, m, ld },
                Rows2 { re: &wr64, im: &wi64, m: o, ld },
                &mut zr,
                &mut zi,
            );
            for k in 0..m * o {
                let tol = 1e-6 * (c as f64).sqrt();
                assert!(
                    (yr[k] as f64 - zr[k]).abs() <= tol && (yi[k] as f64 - zi[k]).abs() <= tol,
                    "m {m} o {o} c {c}: ({}, {}) vs ({}, {})",
                    yr[k],
                    yi[k],
                    zr[k],
                    zi[k]
                );
            }
        }
    }

    /// SELU's forward and backward against the libm formulas: within 2 ulp (or 1e-7 absolute near
    /// zero) over [-90, 5], with NaN kept and the branches at 0 as PyTorch takes them.
    #[test]
    fn selu_matches_libm() {
        let xs: Vec<f32> = (0..200_000)
            .map(|i| -90.0 + 95.0 * i as f32 / 200_000.0)
            .chain([0.0, -0.0, 1e-30, -1e-30, -1e-7, f32::MIN_POSITIVE, -88.5, -200.0, 30.0])
            .collect();
        let mut y = vec![0.0; xs.len()];
        selu(&xs, as_uninit(&mut y));
        let dy: Vec<f32> = xs.iter().map(|&v| 0.5 + v.abs().sin()).collect();
        let mut dx = dy.clone();
        selu_backward(&xs, &mut dx);
        let (a, s) = (SELU_ALPHA, SELU_SCALE);
        for ((&v, &got), (&d, &gd)) in xs.iter().zip(&y).zip(dy.iter().zip(&dx)) {
            let v64 = v as f64;
            let want = if v > 0.0 { s * v64 } else { s * a * v64.exp_m1() } as f32;
            assert!(ulps(got, want) <= 2 || (got - want).abs() <= 1e-7, "selu({v}) = {got}, libm {want}");
            let wd = if v > 0.0 { d as f64 * s } else { d as f64 * s * a * v64.exp() } as f32;
            assert!(ulps(gd, wd) <= 3 || (gd - wd).abs() <= 1e-7, "selu'({v}) = {gd}, libm {wd}");
        }
        let mut y = [0.0];
        selu(&[f32::NAN], as_uninit(&mut y));
        assert!(y[0].is_nan(), "NaN must propagate through selu");
        let mut d = [1.0];
        selu_backward(&[f32::NAN], &mut d);
        assert!(d[0].is_nan(), "NaN must propagate through selu's gradient");
    }

    /// The AVX-512 builds of SELU (forward and backward) and Adam give the AVX2 builds' bits, over
    /// lengths that are not multiples of either width, NaN included.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_loops_give_avx2_bits() {
        if !super::super::features::has_avx512() {
            eprintln!("no AVX-512F/DQ: the wide loops are not exercised on this CPU");
            return;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        for n in [1usize, 7, 33, 1000, 4099] {
            let xs: Vec<f32> = (0..n)
                .map(|i| if i == 5 { f32::NAN } else { -30.0 + 37.0 * ((i * 7919) % 1009) as f32 / 1009.0 })
                .collect();
            let dy: Vec<f32> = xs.iter().map(|&v| 0.5 + (v * 3.0).sin()).collect();
            let (mut y2, mut y5) = (vec![0f32; n], vec![0f32; n]);
            let (mut d2, mut d5) = (dy.clone(), dy.clone());
            // SAFETY: the CPU has AVX-512F/DQ (checked above), and with it AVX2 and FMA.
            unsafe {
                selu_avx2(&xs, as_uninit(&mut y2));
                selu_avx512(&xs, as_uninit(&mut y5));
                selu_backward_avx2(&xs, &mut d2);
                selu_backward_avx512(&xs, &mut d5);
            }
            assert_eq!(bits(&y2), bits(&y5), "selu, n {n}");
            assert_eq!(bits(&d2), bits(&d5), "selu', n {n}");
            for step in [1u64, 10, 10_000] {
                let c = AdamStep::<f32>::new(step, 0.01, 0.9, 0.999, 1e-8);
                let g: Vec<f32> = dy.iter().map(|&v| v - 0.9).collect();
                let m0: Vec<f32> = g.iter().map(|&v| 0.3 * v).collect();
                let v0: Vec<f32> = g.iter().map(|&v| 0.01 * v * v + 1e-9).collect();
                let mut a = (xs.clone(), m0.clone(), v0.clone());
                let mut b = (xs.clone(), m0, v0);
                // SAFETY: as above.
                unsafe {
                    adam_avx2(c, &mut a.0, &g, &mut a.1, &mut a.2);
                    adam_avx512(c, &mut b.0, &g, &mut b.1, &mut b.2);
                }
                assert!(
                    bits(&a.0) == bits(&b.0) && bits(&a.1) == bits(&b.1) && bits(&a.2) == bits(&b.2),
                    "adam, n {n}, step {step}"
                );
            }
        }
    }
}
