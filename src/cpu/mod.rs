//! CPU kernels, generic over `f32` and `f64`: plain safe Rust, parallel with rayon where it counts.
//! Shapes are validated by `crate::ops` before a kernel is called.

pub mod adam;
pub mod conv;
pub mod features;
pub mod fftconv;
pub mod float;
pub mod gemm;
pub mod peak;
pub mod pool;
pub mod selu;
pub mod sgemm;
pub mod simd;

pub use float::Float;

/// Runs `f` on one of rayon's worker threads and waits for it.
///
/// A parallel op called from a thread outside the pool (the program's main thread) is handed to the
/// pool and the caller sleeps until it is done: two thread wake-ups per op, and the pool's threads
/// spin in `sched_yield` between ops while the caller does the serial parts. Inside a worker, ops
/// fork from where they are. For compute that does not wait on other threads: a worker blocked on a
/// channel fed by rayon work would hold one of the pool's threads.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::scope(|_| f())
}
