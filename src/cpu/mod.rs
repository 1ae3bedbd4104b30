//! CPU kernels, generic over `f32` and `f64`: plain safe Rust, parallel with rayon where it counts.
//! Shapes are validated by `crate::ops` before a kernel is called.

pub mod conv;
pub mod fftconv;
pub mod gemm;
pub mod pool;
pub mod sgemm;
pub mod simd;
