//! Adam's per-element step (PyTorch's rule, bias correction included): the constants of one update
//! and the rule for one element, run over slices by `adam_body` (f32: `cpu::simd::adam`).

use crate::tensor::Element;

/// Adam's constants for one update number, in the element type.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep<T> {
    pub one_b1: T,
    pub b2: T,
    pub one_b2: T,
    pub step_size: T,
    pub bc2_sqrt: T,
    /// `1 / bc2_sqrt`, correctly rounded: see [`AdamStep::over_bc2_sqrt`].
    pub inv_bc2_sqrt: T,
    pub eps: T,
}

impl<T: Element> AdamStep<T> {
    /// The constants of update number `step` (1-based) for learning rate `lr`, `beta1`, `beta2` and
    /// `eps` (`optim::AdamConfig::step_constants`).
    pub fn new(step: u64, lr: f64, beta1: f64, beta2: f64, eps: f64) -> Self {
        let bc1 = 1.0 - beta1.powf(step as f64);
        let bc2_sqrt = (1.0 - beta2.powf(step as f64)).sqrt();
        Self {
            one_b1: T::of(1.0 - beta1),
            b2: T::of(beta2),
            one_b2: T::of(1.0 - beta2),
            step_size: T::of(lr / bc1),
            bc2_sqrt: T::of(bc2_sqrt),
            inv_bc2_sqrt: T::one() / T::of(bc2_sqrt),
            eps: T::of(eps),
        }
    }

    /// `s / bc2_sqrt`, correctly rounded, without a division: the quotient through the rounded
    /// reciprocal, then one correction with the exact remainder (Markstein's theorem: with `r` the
    /// correctly rounded `1/c` and `q` within an ulp of `s/c`, `q + r (s - q c)` rounded once is the
    /// correctly rounded `s/c`; the remainder is exact in a fused multiply-add unless it underflows,
    /// which needs `s` below about 2^-100, and a square root of a moment is at least 2^-75). The same
    /// bits as the division PyTorch does (`tests/adam_division.rs` checks every significand against
    /// it), without one of the loop's three divider operations (two divisions and a square root),
    /// which bound it when its data are in cache.
    #[inline(always)]
    pub fn over_bc2_sqrt(&self, s: T) -> T {
        let q = s * self.inv_bc2_sqrt;
        let rem = (-q).mul_add(self.bc2_sqrt, s);
        rem.mul_add(self.inv_bc2_sqrt, q)
    }

    /// The rule for one element.
    #[inline(always)]
    pub fn apply(&self, p: &mut T, g: T, m: &mut T, v: &mut T) {
        *m += (g - *m) * self.one_b1; // torch: exp_avg.lerp_(grad, 1 - beta1)
        *v = *v * self.b2 + g * g * self.one_b2;
        let denom = self.over_bc2_sqrt(v.sqrt()) + self.eps;
        *p -= self.step_size * (*m / denom);
    }
}

/// One Adam update over contiguous slices, element by element: `Float::adam_slice`'s generic body
/// (f32 runs `cpu::simd::adam`, the same rule vectorised).
pub fn adam_body<T: Element>(k: AdamStep<T>, p: &mut [T], g: &[T], m: &mut [T], v: &mut [T]) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        k.apply(p, g, m, v);
    }
}
