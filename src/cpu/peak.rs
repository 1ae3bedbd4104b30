//! This machine's measured fp32 peak: twelve independent chains of fused multiply-adds per core, in
//! registers, no memory traffic, so nothing but the FMA units limits them. `specnn bench` divides its
//! GFLOP/s by this figure ("of peak"), and BENCHMARKS.md quotes it: a measured peak, not one computed
//! from a nominal clock that turbo and sharing make wrong on most machines.
//!
//! The machine's peak is the faster of AVX2 and AVX-512 chains: on CPUs whose AVX-512 runs on
//! 256-bit pipes (AMD Zen 4) the two are equal, on those with full-width pipes (Zen 5) AVX-512
//! doubles it (BENCHMARKS.md has the figures), and a fraction of the AVX2
//! figure would overstate how much of the machine a step uses. x86-64 only; elsewhere there is no
//! figure and `specnn bench` asks for `--peak-gflops`.

/// FMA steps per chain in one timed run: 192 flops each for AVX2 (12 chains of 8 lanes), a few tens
/// of milliseconds on one core.
const STEPS: usize = 20_000_000;
/// Timed runs; the best is kept (the others lost time to another process or a clock ramping up).
const RUNS: usize = 3;

/// GFLOP/s of one core running AVX2 FMA chains, if the CPU has AVX2 and FMA.
pub fn avx2_one_core() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if super::features::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return Some(best_gflops(8, 1, || unsafe { x86::ymm(std::hint::black_box(STEPS)) }));
    }
    None
}

/// GFLOP/s of one core running AVX-512 FMA chains, if the CPU has AVX-512F.
pub fn avx512_one_core() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return Some(best_gflops(16, 1, || unsafe { x86::zmm(std::hint::black_box(STEPS)) }));
    }
    None
}

/// GFLOP/s of all of rayon's threads running AVX2 FMA chains at once, if the CPU has AVX2 and FMA.
pub fn avx2_all_threads() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if super::features::has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked just above); every thread is on it.
        return Some(on_every_thread(8, || unsafe { x86::ymm(std::hint::black_box(STEPS)) }));
    }
    None
}

/// GFLOP/s of all of rayon's threads running AVX-512 FMA chains at once, if the CPU has AVX-512F.
pub fn avx512_all_threads() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above); every thread is on it.
        return Some(on_every_thread(16, || unsafe { x86::zmm(std::hint::black_box(STEPS)) }));
    }
    None
}

/// `best_gflops` of `chain` (chains of `lanes` lanes) run on each of rayon's threads at once.
fn on_every_thread(lanes: usize, chain: impl Fn() -> f32 + Sync) -> f64 {
    best_gflops(lanes, rayon::current_num_threads(), || rayon::broadcast(|_| chain()).into_iter().sum())
}

/// The machine's peak on all of rayon's threads, with what measured it: the faster of the AVX2
/// and the AVX-512 chains (`None` without AVX2 and FMA).
pub fn all_threads() -> Option<(f64, &'static str)> {
    let avx2 = avx2_all_threads()?;
    Some(match avx512_all_threads() {
        Some(z) if z > avx2 => (z, "AVX-512 FMA chains"),
        _ => (avx2, "AVX2 FMA chains"),
    })
}

/// The best of `RUNS` timings of `run` (which does `STEPS` steps of 12 chains of `lanes` lanes on
/// each of `threads` threads), in GFLOP/s.
fn best_gflops(lanes: usize, threads: usize, run: impl Fn() -> f32) -> f64 {
    let best = (0..RUNS)
        .map(|_| {
            let t = std::time::Instant::now();
            std::hint::black_box(run());
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min);
    (STEPS * 12 * lanes * 2 * threads) as f64 / best / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `steps` rounds of twelve independent 8-lane FMA chains; their sum, so nothing is optimised away.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn ymm(steps: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (a, b) =
            (_mm256_set1_ps(std::hint::black_box(1.000_000_1)), _mm256_set1_ps(std::hint::black_box(0.999_999)));
        for _ in 0..steps {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)));
        out.iter().sum()
    }

    /// `ymm` with 16-lane registers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn zmm(steps: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 12];
        let (a, b) =
            (_mm512_set1_ps(std::hint::black_box(1.000_000_1)), _mm512_set1_ps(std::hint::black_box(0.999_999)));
        for _ in 0..steps {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v)))
    }
}
