//! Adam divides `sqrt(v)` by `sqrt(1 - beta2^step)` as PyTorch does; specnn multiplies by the
//! reciprocal and corrects once (`AdamStep::over_bc2_sqrt`). These tests check that this gives the
//! division's bits: for every f32 significand, at the divisors of the first steps, of steps far into
//! a run and of other betas, and for square roots of moments from every binade; and for f64 on
//! samples.

use specnn::optim::{AdamConfig, AdamStep};

fn steps_f32() -> Vec<AdamStep<f32>> {
    let mut out = Vec::new();
    for beta2 in [0.999, 0.99, 0.9999, 0.5] {
        let c = AdamConfig { beta2, ..AdamConfig::default() };
        for step in [1u64, 2, 3, 7, 10, 100, 1_000, 12_345, 100_000, 10_000_000] {
            out.push(c.step_constants::<f32>(step));
        }
    }
    out
}

/// Every significand of [1, 2) at each divisor (the correction's result depends on the significands
/// only, away from overflow and underflow), and at each divisor the square roots of moments `v` from
/// every binade, subnormals included: Adam divides `sqrt(v)`, which is never below 2^-75, so the
/// remainder (about 2^-24 of it) never underflows, the one case where the correction can differ.
#[test]
fn over_bc2_sqrt_is_the_f32_division() {
    let steps = steps_f32();
    for k in &steps {
        let mut bad = 0u64;
        for bits in 0x3f80_0000u32..0x4000_0000 {
            let s = f32::from_bits(bits);
            if k.over_bc2_sqrt(s).to_bits() != (s / k.bc2_sqrt).to_bits() {
                bad += 1;
            }
        }
        assert_eq!(bad, 0, "{bad} significands differ from the division by {}", k.bc2_sqrt);
        for bits in (0u32..0x7f80_0000).step_by(4099).chain([1, 0x7f7f_ffff]) {
            let s = f32::from_bits(bits).sqrt();
            let want = s / k.bc2_sqrt;
            assert_eq!(k.over_bc2_sqrt(s).to_bits(), want.to_bits(), "sqrt(v) = {s:e}, divisor {}", k.bc2_sqrt);
        }
    }
    let k = steps[0];
    assert_eq!(k.over_bc2_sqrt(0.0).to_bits(), 0.0f32.to_bits());
    assert!(k.over_bc2_sqrt(f32::NAN).is_nan());
}

#[test]
fn over_bc2_sqrt_is_the_f64_division() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for beta2 in [0.999, 0.99, 0.9999] {
        let c = AdamConfig { beta2, ..AdamConfig::default() };
        for step in [1u64, 2, 10, 1_000, 100_000] {
            let k = c.step_constants::<f64>(step);
            for _ in 0..200_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Significands at random, exponents across the range a square root of a moment takes.
                let s = f64::from_bits((x & ((1 << 52) - 1)) | ((1023 - 40 + (x >> 58)) << 52));
                assert_eq!(
                    k.over_bc2_sqrt(s).to_bits(),
                    (s / k.bc2_sqrt).to_bits(),
                    "s = {s:e}, divisor {}",
                    k.bc2_sqrt
                );
            }
        }
    }
}
