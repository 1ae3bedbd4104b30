//! What the CPU can run, checked once: AVX2 and FMA, AVX-512, and whether `cpu::sgemm`'s kernels and
//! their 16-lane forms are on (`SPECNN_GEMM` turns them off for comparisons). Every vectorised
//! kernel (`sgemm`, `simd`, `pool`, `peak`) asks here.

/// Whether these kernels run: the CPU has AVX2 and FMA, and `SPECNN_GEMM=matrixmultiply` (for
/// comparisons) is not set. Checked once.
pub fn available() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SPECNN_GEMM").is_none_or(|v| v != "matrixmultiply") && has_avx2_fma())
}

/// Whether the kernels run on 16-lane AVX-512 registers: the CPU has AVX-512F and DQ (besides AVX2
/// and FMA), and `SPECNN_GEMM=avx2` (for comparisons) is not set. Checked once.
///
/// The AVX-512 kernels give the same bits as the AVX2 ones: the broadcast kernel's 6x32 tile is two
/// 6x16 tiles side by side, each output still one lane's chain of fused multiply-adds along `k`, and
/// the dot-product kernel keeps AVX2's eight lanes per dot product, two dot products a register
/// (`x86::tile_dot_4x6_zmm`). So a model gives the same numbers on either kind of CPU. Where AVX-512
/// runs on 256-bit pipes (AMD Zen 4) the wider tiles run as fast as the AVX2 ones; on full-width
/// pipes (Zen 5) up to twice as fast (BENCHMARKS.md).
pub fn wide() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| available() && std::env::var_os("SPECNN_GEMM").is_none_or(|v| v != "avx2") && has_avx512())
}

/// Whether this CPU has AVX-512F and AVX-512DQ (x86-64 only), checked once.
pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| {
            has_avx2_fma() && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX2 and FMA (x86-64 only), checked once.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
