//! This CPU's fp32 peak on one core: twelve independent chains of 8-lane fused multiply-adds (AVX2),
//! and of 16-lane ones (AVX-512) where the CPU has them, no memory traffic. The figure BENCHMARKS.md
//! gives as the machine's peak.
//!
//! ```sh
//! cargo run --release --example fma_peak
//! ```

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn ymm(n: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(0.0); 12];
        let (a, b) = (_mm256_set1_ps(std::hint::black_box(1.000_000_1)), _mm256_set1_ps(std::hint::black_box(0.999_999)));
        for _ in 0..n {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v)));
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn zmm(n: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(0.0); 12];
        let (a, b) = (_mm512_set1_ps(std::hint::black_box(1.000_000_1)), _mm512_set1_ps(std::hint::black_box(0.999_999)));
        for _ in 0..n {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v)))
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        use std::time::Instant;
        let n = std::hint::black_box(20_000_000usize);
        let time = |lanes: usize, f: &dyn Fn() -> f32| {
            let best = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(f());
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::MAX, f64::min);
            (n * 12 * lanes * 2) as f64 / best / 1e9
        };
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            println!("AVX2 FMA:    {:.1} GFLOP/s on one core", time(8, &|| unsafe { x86::ymm(n) }));
        }
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            println!("AVX-512 FMA: {:.1} GFLOP/s on one core", time(16, &|| unsafe { x86::zmm(n) }));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("x86-64 only");
}
