//! Vectorised f32 loops for the elementwise work of a training step: SELU forward and backward, and
//! Adam's update.
//!
//! The release build targets plain x86-64 (SSE2), so the compiler cannot use AVX2 or FMA in ordinary
//! code. Each loop here is written once as scalar Rust that the compiler can vectorise, and compiled
//! twice: inside a `#[target_feature(enable = "avx2,fma")]` function picked at run time when the CPU
//! has them, and as is otherwise. SELU needs `exp`, which libm only offers one element at a time, so
//! [`exp_parts`] is a polynomial that vectorises (Cody-Waite range reduction to |r| <= ln2/2, a degree-8
//! Taylor polynomial for expm1(r), and 2^n built from its bits): within 2 ulp of libm's `expm1f` on the
//! tested range (`tests`), well inside the tolerance table's 1e-5.

use super::sgemm::available as has_avx2_fma;
use crate::optim::AdamStep;

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
    let p = r * (1.0
        + r * (1.0 / 2.0
            + r * (1.0 / 6.0
                + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0 + r * (1.0 / 40320.0))))))));
    // 2^n for -126 <= n <= 0: exponent field n + 127; n + 127 + 2^23 has it in its low mantissa bits.
    let e = (n + (8_388_608.0 + 127.0)).to_bits() & 0x7f_ffff;
    let s = f32::from_bits(e << 23);
    (s, p)
}

/// x clamped into `[EXP_MIN, 0]`, NaN kept.
#[inline(always)]
fn clamp_neg(v: f32) -> f32 {
    if v > 0.0 {
        0.0
    } else if v < EXP_MIN {
        EXP_MIN
    } else {
        v
    }
}

const SCALE: f32 = crate::ops::activation::SELU_SCALE as f32;
/// SELU's scale times alpha, rounded once.
const SCALE_ALPHA: f32 = (crate::ops::activation::SELU_SCALE * crate::ops::activation::SELU_ALPHA) as f32;

#[inline(always)]
fn selu_body(x: &[f32], y: &mut [f32]) {
    for (y, &v) in y.iter_mut().zip(x) {
        let (s, p) = exp_parts(clamp_neg(v));
        let em1 = s * p + (s - 1.0);
        *y = if v > 0.0 { SCALE * v } else { SCALE_ALPHA * em1 };
    }
}

#[inline(always)]
fn selu_backward_body(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((dx, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
        let (s, p) = exp_parts(clamp_neg(v));
        let e = s + s * p;
        *dx = if v > 0.0 { d * SCALE } else { d * SCALE_ALPHA * e };
    }
}

#[inline(always)]
fn adam_body(c: AdamStep<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        c.apply(p, g, m, v);
    }
}

macro_rules! dispatch {
    ($(#[$doc:meta])* $name:ident, $avx:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn $avx($($arg: $ty),*) {
                    $body($($arg),*)
                }
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { $avx($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

dispatch!(
    /// `y = selu(x)` (lengths must match).
    selu, selu_avx2, selu_body, (x: &[f32], y: &mut [f32])
);
dispatch!(
    /// `dx = dy * selu'(x)` (lengths must match).
    selu_backward, selu_backward_avx2, selu_backward_body, (x: &[f32], dy: &[f32], dx: &mut [f32])
);
dispatch!(
    /// One Adam update of parameters `p` with gradients `g` and moments `m`, `v` (lengths must match).
    adam, adam_avx2, adam_body, (c: AdamStep<f32>, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32])
);

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// SELU's forward and backward against the libm formulas: within 2 ulp (or 1e-7 absolute near
    /// zero) over [-90, 5], with NaN kept and the branches at 0 as PyTorch takes them.
    #[test]
    fn selu_matches_libm() {
        let xs: Vec<f32> = (0..200_000).map(|i| -90.0 + 95.0 * i as f32 / 200_000.0).chain([0.0, -0.0, 1e-30, -1e-30, -1e-7, f32::MIN_POSITIVE, -88.5, -200.0, 30.0]).collect();
        let mut y = vec![0.0; xs.len()];
        selu(&xs, &mut y);
        let dy: Vec<f32> = xs.iter().map(|&v| 0.5 + v.abs().sin()).collect();
        let mut dx = vec![0.0; xs.len()];
        selu_backward(&xs, &dy, &mut dx);
        let (a, s) = (crate::ops::activation::SELU_ALPHA, crate::ops::activation::SELU_SCALE);
        for ((&v, &got), (&d, &gd)) in xs.iter().zip(&y).zip(dy.iter().zip(&dx)) {
            let v64 = v as f64;
            let want = if v > 0.0 { s * v64 } else { s * a * v64.exp_m1() } as f32;
            assert!(ulps(got, want) <= 2 || (got - want).abs() <= 1e-7, "selu({v}) = {got}, libm {want}");
            let wd = if v > 0.0 { d as f64 * s } else { d as f64 * s * a * v64.exp() } as f32;
            assert!(ulps(gd, wd) <= 3 || (gd - wd).abs() <= 1e-7, "selu'({v}) = {gd}, libm {wd}");
        }
        let mut y = [0.0];
        selu(&[f32::NAN], &mut y);
        assert!(y[0].is_nan(), "NaN must propagate through selu");
        selu_backward(&[f32::NAN], &[1.0], &mut y);
        assert!(y[0].is_nan(), "NaN must propagate through selu's gradient");
    }
}
