//! Max pooling on the CPU, keeping the argmax for the backward pass.

use crate::tensor::Float;
use rayon::prelude::*;

/// The sizes of one pooling, validated by `ops::maxpool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub oh: usize,
    pub ow: usize,
}

/// Forward pass over `planes` planes of `h x w`: writes `y` and, for each output, the index of the
/// winning input within its plane (the first maximum, as PyTorch; NaN wins, as PyTorch).
pub fn forward<T: Float>(x: &[T], g: &PoolGeom, y: &mut [T], argmax: &mut [u32]) {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    x.par_chunks(hw)
        .zip(y.par_chunks_mut(ohw))
        .zip(argmax.par_chunks_mut(ohw))
        .for_each(|((xp, yp), ap)| {
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
        });
}

/// Backward pass: scatters `dy` through `argmax` into a zeroed input gradient.
pub fn backward<T: Float>(dy: &[T], argmax: &[u32], g: &PoolGeom) -> Vec<T> {
    let (hw, ohw) = (g.h * g.w, g.oh * g.ow);
    let mut dx = vec![T::zero(); g.planes * hw];
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw))
        .zip(argmax.par_chunks(ohw))
        .for_each(|((dxp, dyp), ap)| {
            for (&a, &d) in ap.iter().zip(dyp) {
                dxp[a as usize] += d;
            }
        });
    dx
}
