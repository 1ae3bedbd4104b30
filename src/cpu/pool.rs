//! Max pooling on the CPU, keeping the argmax for the backward pass.

use super::float::Float;
use rayon::prelude::*;

pub use crate::geometry::PoolGeom;

/// Forward pass over `planes` planes of `h x w`: writes `y` and, for each output, the index of the
/// winning input within its plane (the first maximum, as PyTorch; NaN wins, as PyTorch).
pub fn forward<T: Float>(x: &[T], g: &PoolGeom, y: &mut [T], argmax: &mut [u32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    x.par_chunks(hw).zip(y.par_chunks_mut(ohw)).zip(argmax.par_chunks_mut(ohw)).for_each(|((xp, yp), ap)| {
        if (g.kh, g.kw, g.sh, g.sw) == (2, 2, 2, 2) {
            pool_2x2_dispatch(xp, g, yp, ap)
        } else {
            pool_any(xp, g, yp, ap)
        }
    });
}

/// `forward` of one plane, any window and stride.
fn pool_any<T: Float>(xp: &[T], g: &PoolGeom, yp: &mut [T], ap: &mut [u32]) {
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let mut best = oy * g.sh * g.w + ox * g.sw;
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let i = (oy * g.sh + ki) * g.w + ox * g.sw + kj;
                    if xp[i] > xp[best] || xp[i].is_nan() && !xp[best].is_nan() {
                        best = i;
                    }
                }
            }
            yp[oy * g.ow + ox] = xp[best];
            ap[oy * g.ow + ox] = best as u32;
        }
    }
}

/// `pool_2x2` compiled for the widest vectors the CPU has (AVX-512 where the GEMM runs on it,
/// `sgemm::wide`; AVX2): a choice, not arithmetic, so every build gives the same outputs.
fn pool_2x2_dispatch<T: Float>(xp: &[T], g: &PoolGeom, yp: &mut [T], ap: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
        unsafe fn wide<T: Float>(xp: &[T], g: &PoolGeom, yp: &mut [T], ap: &mut [u32]) {
            pool_2x2(xp, g, yp, ap)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Float>(xp: &[T], g: &PoolGeom, yp: &mut [T], ap: &mut [u32]) {
            pool_2x2(xp, g, yp, ap)
        }
        if super::features::wide() {
            // SAFETY: the CPU has AVX-512F/DQ, AVX2 and FMA (`sgemm::wide`).
            return unsafe { wide(xp, g, yp, ap) };
        }
        if super::features::has_avx2_fma() {
            // SAFETY: the CPU has AVX2 and FMA.
            return unsafe { avx2(xp, g, yp, ap) };
        }
    }
    pool_2x2(xp, g, yp, ap)
}

/// `forward` of one plane for the seed's 2x2 windows at stride 2: the same choice (the first maximum
/// in the window's row-major order, NaN winning), made without branches on the data, over two input
/// rows at a time, so that the compiler can vectorise it.
#[inline(always)]
fn pool_2x2<T: Float>(xp: &[T], g: &PoolGeom, yp: &mut [T], ap: &mut [u32]) {
    // `a` replaced by `b` where `b` comes later in the window: larger, or NaN over a number.
    #[inline(always)]
    fn later_wins<T: Float>(a: T, b: T) -> bool {
        (b > a) | (b.is_nan() & !a.is_nan())
    }
    for oy in 0..g.oh {
        let base = 2 * oy * g.w;
        let (r0, r1) = (&xp[base..base + 2 * g.ow], &xp[base + g.w..base + g.w + 2 * g.ow]);
        let (yrow, arow) = (&mut yp[oy * g.ow..(oy + 1) * g.ow], &mut ap[oy * g.ow..(oy + 1) * g.ow]);
        for (ox, ((y, a), (p0, p1))) in
            yrow.iter_mut().zip(arow.iter_mut()).zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))).enumerate()
        {
            let i = (base + 2 * ox) as u32;
            let w = g.w as u32;
            let (mut bv, mut bi) = (p0[0], i);
            let t = later_wins(bv, p0[1]);
            (bv, bi) = (if t { p0[1] } else { bv }, if t { i + 1 } else { bi });
            let t = later_wins(bv, p1[0]);
            (bv, bi) = (if t { p1[0] } else { bv }, if t { i + w } else { bi });
            let t = later_wins(bv, p1[1]);
            (bv, bi) = (if t { p1[1] } else { bv }, if t { i + w + 1 } else { bi });
            *y = bv;
            *a = bi;
        }
    }
}

/// Backward pass: scatters `dy` through `argmax` into a zeroed input gradient.
pub fn backward<T: Float>(dy: &[T], argmax: &[u32], g: &PoolGeom) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = vec![T::zero(); g.planes * hw];
    dx.par_chunks_mut(hw).zip(dy.par_chunks(ohw)).zip(argmax.par_chunks(ohw)).for_each(|((dxp, dyp), ap)| {
        for (&a, &d) in ap.iter().zip(dyp) {
            dxp[a as usize] += d;
        }
    });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2x2 path (as dispatched, and its portable build) makes the general loop's choice: values
    /// and argmax, over ties, NaN, infinities and signed zeros in every position, odd sizes (a last
    /// row and column no window covers) and several planes.
    #[test]
    fn pool_2x2_chooses_as_the_general_loop() {
        let pick = [0.0f32, -0.0, 1.0, 1.0, -1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2.5];
        let mut seed = 7u64;
        let mut checked = 0;
        for (h, w) in [(2, 2), (3, 5), (4, 4), (7, 9), (8, 16), (64, 64)] {
            let g = PoolGeom { planes: 1, h, w, kh: 2, kw: 2, sh: 2, sw: 2, oh: h / 2, ow: w / 2 };
            for _ in 0..40 {
                let x: Vec<f32> = (0..h * w)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        pick[(seed >> 33) as usize % pick.len()]
                    })
                    .collect();
                let n = g.oh * g.ow;
                let (mut y0, mut a0) = (vec![0f32; n], vec![0u32; n]);
                pool_any(&x, &g, &mut y0, &mut a0);
                let (mut y1, mut a1) = (vec![0f32; n], vec![0u32; n]);
                pool_2x2_dispatch(&x, &g, &mut y1, &mut a1);
                let (mut y2, mut a2) = (vec![0f32; n], vec![0u32; n]);
                pool_2x2(&x, &g, &mut y2, &mut a2);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!((bits(&y1), &a1), (bits(&y0), &a0), "dispatched 2x2 pooling, {h}x{w}: {x:?}");
                assert_eq!((bits(&y2), &a2), (bits(&y0), &a0), "portable 2x2 pooling, {h}x{w}: {x:?}");
                checked += n;
            }
        }
        assert!(checked > 1000);
    }
}
