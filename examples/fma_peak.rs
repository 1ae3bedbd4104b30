//! This CPU's fp32 peak (`specnn::cpu::peak`): twelve independent chains of 8-lane fused
//! multiply-adds (AVX2) on one core, of 16-lane ones (AVX-512) where the CPU has them, and both on all
//! of rayon's threads at once (the faster is the figure `specnn bench` divides by). No memory traffic.
//!
//! ```sh
//! cargo run --release --example fma_peak
//! ```

use specnn::cpu::peak;

fn main() {
    let mut any = false;
    if let Some(g) = peak::avx2_one_core() {
        println!("AVX2 FMA:    {g:.1} GFLOP/s on one core");
        any = true;
    }
    if let Some(g) = peak::avx512_one_core() {
        println!("AVX-512 FMA: {g:.1} GFLOP/s on one core");
    }
    if let Some(g) = peak::avx2_all_threads() {
        println!("AVX2 FMA:    {g:.1} GFLOP/s on all {} threads at once", rayon::current_num_threads());
    }
    if let Some(g) = peak::avx512_all_threads() {
        println!("AVX-512 FMA: {g:.1} GFLOP/s on all {} threads at once", rayon::current_num_threads());
    }
    if let Some((g, what)) = peak::all_threads() {
        println!("peak for `specnn bench`: {g:.1} GFLOP/s ({what})");
    }
    if !any {
        println!("no AVX2/FMA on this CPU (x86-64 only): no measured peak");
    }
}
