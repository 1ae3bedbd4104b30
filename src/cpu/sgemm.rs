//! specnn's own f32 GEMM for x86-64 with AVX2 and FMA, on 16-lane AVX-512 registers where the CPU
//! has AVX-512F/DQ (both picked at run time, [`wide`]; other CPUs and f64 use matrixmultiply through
//! `gemm`). The AVX-512 kernels give the AVX2 kernels' bits.
//!
//! Why our own: at the seed's dense-layer sizes (batch 128, 512x512 weights) matrixmultiply spent as
//! long copying operands as multiplying (profile in BENCHMARKS.md), and reading the operands in place
//! is no better: the rows of a 16-column strip of a 512-wide matrix lie 2 KiB apart, which maps them
//! onto two of L1's 64 sets, so they evict each other on every pass. Here:
//!
//! - [`Layout::Packed`] (any strides): each `k` block (`KC`) of `a` is copied once into panels of six
//!   rows, each 16-column strip of `b` once into a contiguous block; a 6x16 register tile (twelve
//!   8-lane accumulators) then broadcasts six elements of the panel and loads sixteen of the strip per
//!   step. `a`'s copy is reused by every strip and a strip by every panel, so the copying is a few
//!   per cent of the products. It serves the two backward products of a dense layer.
//! - [`Layout::Dot`] (rows of `a` and columns of `b` contiguous, and one to four rows of `a` or a depth
//!   of at least `DOT_MIN_K`): a 4x3 tile of dot products, eight lanes each, summed across lanes at the
//!   end, reading both operands in place: the forward `x . W^T` of a dense layer, where copying `W`
//!   (a transpose) would cost as much as the product at small batches.
//!
//! Edges (fewer than a full tile of rows or columns) go through the same kernels on zero-padded or
//! duplicated rows whose results are discarded. `beta == 0` overwrites `c` without reading it (BLAS's
//! rule, so a NaN in uninitialised output cannot leak in). The order of additions is fixed by the shape
//! alone, so results are reproducible run to run; they differ from matrixmultiply's by rounding only
//! (`tests` below, and the tolerance table in the README).

pub use super::features::{available, has_avx2_fma, has_avx512, wide};
use ndarray::{ArrayView2, ArrayViewMut2};

/// Which kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Any strides: panels of `a` and strips of `b` are copied, then a 6x16 broadcast kernel.
    Packed,
    /// `a` with contiguous rows, `b` with contiguous columns (`x . W^T`), and one to four rows of `a`
    /// or a depth of at least `DOT_MIN_K`: dot products where the operands lie, since copying `W`
    /// would cost as much as the product.
    Dot,
}

/// From this depth on, the dot-product kernel's lane sums are a small part of its work, and reading
/// `b = W^T` in place beats copying it into strips: that copy is a transpose, reused by only `m / 6`
/// panels (residual-ANN inference with `Dot` for its 512-deep layers, interleaved A/B: 1.37x faster
/// at batch 32, 1.12x at 128, training 1.04x). Shallower products pack: an FFT bin's product over 128
/// channels ran 13% slower as dot products (VMP CNN inference at batch 128, interleaved A/B).
const DOT_MIN_K: usize = 256;

/// The kernel for these operands, if any: `c` must have contiguous rows.
pub fn layout(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &ArrayViewMut2<f32>) -> Option<Layout> {
    if (c.ncols() > 1 && c.strides()[1] != 1) || c.is_empty() {
        return None;
    }
    layout_rows(a, b)
}

/// The kernel for these operands and a non-empty output with contiguous rows, if any.
pub fn layout_rows(a: &ArrayView2<f32>, b: &ArrayView2<f32>) -> Option<Layout> {
    if !available() {
        return None;
    }
    let (sa, sb) = (a.strides(), b.strides());
    let dot = (a.ncols() == 1 || sa[1] == 1) && (b.nrows() == 1 || sb[0] == 1);
    Some(if dot && (a.nrows() <= 4 || a.ncols() >= DOT_MIN_K) { Layout::Dot } else { Layout::Packed })
}

/// `c = alpha * a . b + beta * c` on the calling thread, with the kernel `layout` returned for these
/// operands (callers check it first).
pub fn gemm(alpha: f32, a: ArrayView2<f32>, b: ArrayView2<f32>, beta: f32, mut c: ArrayViewMut2<f32>, layout: Layout) {
    let ldc = out_rows(&c, a.nrows(), b.ncols());
    // SAFETY: `c` is a live view of the output's shape with contiguous rows `ldc` apart.
    unsafe { run(alpha, a, Right::View(b, layout), beta, c.as_mut_ptr(), ldc) }
}

/// `gemm` into raw output rows: element (i, j) of `c` is at `c + i * ldc + j`. With `beta == 0`,
/// `c` is only written, so it may be uninitialised memory.
///
/// # Safety
/// `c` must be valid for writes (and, if `beta != 0`, reads) of an `a.nrows() x b.ncols()` matrix
/// with rows `ldc` apart that no one else accesses during the call.
pub unsafe fn gemm_raw(
    alpha: f32,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    beta: f32,
    c: *mut f32,
    ldc: isize,
    layout: Layout,
) {
    run(alpha, a, Right::View(b, layout), beta, c, ldc)
}

/// The right-hand operand of a product, and so the kernel that reads it.
#[derive(Clone, Copy)]
enum Right<'a> {
    /// An array, read by the kernel `Layout` names.
    View(ArrayView2<'a, f32>, Layout),
    /// A packed copy, read by the broadcast kernel.
    Packed(&'a PackedB),
}

/// The row stride of output `c` for an `m x n` product, checking its shape and that its rows are
/// contiguous.
fn out_rows(c: &ArrayViewMut2<f32>, m: usize, n: usize) -> isize {
    assert_eq!(c.dim(), (m, n), "sgemm: output shape");
    assert!(c.ncols() <= 1 || c.strides()[1] == 1, "sgemm: output rows must be contiguous");
    if c.nrows() > 1 {
        c.strides()[0]
    } else {
        c.ncols() as isize
    }
}

/// The product behind `gemm_raw` and `gemm_packed_raw`.
///
/// # Safety
/// As for `gemm_raw`.
unsafe fn run(alpha: f32, a: ArrayView2<f32>, b: Right, beta: f32, c: *mut f32, ldc: isize) {
    run_on(alpha, a, b, beta, c, ldc, wide())
}

/// `run` on the AVX-512 kernels (`wide`, where the CPU has them) or the AVX2 ones.
///
/// # Safety
/// As for `gemm_raw`, and `wide` only where `has_avx512()`.
unsafe fn run_on(alpha: f32, a: ArrayView2<f32>, b: Right, beta: f32, c: *mut f32, ldc: isize, wide: bool) {
    let (m, k) = a.dim();
    let (bk, n) = match &b {
        Right::View(b, _) => b.dim(),
        Right::Packed(p) => (p.k, p.n),
    };
    assert_eq!(bk, k, "sgemm: inner dimensions differ");
    assert!(available(), "sgemm: AVX2/FMA kernels called on a CPU without them");
    assert!(!wide || has_avx512(), "sgemm: AVX-512 kernels called on a CPU without them");
    let (bp, rsb, csb) = match &b {
        Right::View(b, _) => (b.as_ptr(), b.strides()[0], b.strides()[1]),
        // The broadcast kernel reads the packed strips, never `op.b`.
        Right::Packed(_) => (std::ptr::null(), 0, 0),
    };
    let op = Operands { a: a.as_ptr(), rsa: a.strides()[0], csa: a.strides()[1], b: bp, rsb, csb, c, ldc, m, n, k };
    if k == 0 {
        scale_c(&op, beta);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (asserted above), and AVX-512F/DQ where `wide`; the pointers
    // and strides come from live ndarray views of the shapes checked above, a packed copy holding
    // every block and strip, and the caller's output, and every access stays inside them.
    unsafe {
        let pre = match b {
            Right::View(_, Layout::Packed) => None,
            Right::View(_, Layout::Dot) => {
                return if wide { x86::dot_zmm(&op, alpha, beta) } else { x86::dot(&op, alpha, beta) };
            }
            Right::Packed(p) => Some(p),
        };
        x86::packed(&op, alpha, beta, pre, wide)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (alpha, b);
        unreachable!("sgemm is only called where `available()`");
    }
}

/// A right-hand operand copied once into the strips the broadcast kernel reads ([`Layout::Packed`]),
/// for products that reuse it: `b`'s rows in blocks of `KC`, each block cut into 16-column strips
/// of `kc x 16` values (columns past `n` are zeros). A product with a `PackedB` skips the copy it
/// would otherwise make of every strip, and gives the same bits as one with `b` itself.
#[derive(Clone, Debug)]
pub struct PackedB {
    data: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Rows (the products' depth).
    pub fn nrows(&self) -> usize {
        self.k
    }
    /// Columns.
    pub fn ncols(&self) -> usize {
        self.n
    }
    /// The strip of columns `j0..j0 + 16` in the `k` block starting at row `k0` (of depth `kc`).
    fn strip(&self, k0: usize, kc: usize, j0: usize) -> *const f32 {
        debug_assert!(k0.is_multiple_of(x86_consts::KC) && j0.is_multiple_of(x86_consts::NR) && j0 < self.n);
        let npad = self.n.div_ceil(x86_consts::NR) * x86_consts::NR;
        self.data[k0 * npad + j0 * kc..].as_ptr()
    }
}

/// `b` as a [`PackedB`] (callers check [`available`] first, as for `gemm`).
pub fn pack_b(b: ArrayView2<f32>) -> PackedB {
    use x86_consts::{KC, NR};
    let (k, n) = b.dim();
    let npad = n.div_ceil(NR) * NR;
    let mut data = Vec::<f32>::with_capacity(k * npad);
    let (rsb, csb) = (b.strides()[0], b.strides()[1]);
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        for j0 in (0..n).step_by(NR) {
            // SAFETY: the strip's rows `k0..k0 + kc` and columns `j0..min(j0 + NR, n)` lie inside `b`;
            // its place in `data`'s allocation, `kc * NR` values from `k0 * npad + j0 * kc`, lies
            // inside the capacity, and `copy_strip` writes all of it (zeros past `n`), so that the
            // strips cover all `k * npad` values once the loops end.
            unsafe {
                let dst = data.as_mut_ptr().add(k0 * npad + j0 * kc);
                copy_strip(
                    b.as_ptr().offset(k0 as isize * rsb + j0 as isize * csb),
                    rsb,
                    csb,
                    kc,
                    NR.min(n - j0),
                    dst,
                    false,
                );
            }
        }
        k0 += kc;
    }
    // SAFETY: every value was written above (blocks of `kc * npad` values tile `k * npad`).
    unsafe { data.set_len(k * npad) };
    PackedB { data, k, n }
}

/// `gemm_raw` with a packed right-hand operand (the broadcast kernel).
///
/// # Safety
/// As for `gemm_raw`.
pub unsafe fn gemm_packed_raw(alpha: f32, a: ArrayView2<f32>, b: &PackedB, beta: f32, c: *mut f32, ldc: isize) {
    run(alpha, a, Right::Packed(b), beta, c, ldc)
}

/// `c = alpha * a . b + beta * c` with a packed `b`, on the calling thread.
pub fn gemm_packed(alpha: f32, a: ArrayView2<f32>, b: &PackedB, beta: f32, mut c: ArrayViewMut2<f32>) {
    let ldc = out_rows(&c, a.nrows(), b.n);
    // SAFETY: `c` is a live view of the output's shape with contiguous rows `ldc` apart.
    unsafe { run(alpha, a, Right::Packed(b), beta, c.as_mut_ptr(), ldc) }
}

/// Seconds for `reps` passes of the broadcast kernel's tile alone over `panels` packed panels of `a`
/// and `strips` packed strips of `b`, each `KC` deep: no copying, no storing to `c`, the operands in
/// cache (the panels in L1 for one or two, in L2 for more). The 6x16 AVX2 tile, or with `wide` the
/// 6x32 AVX-512 tile over pairs of strips (`strips` must then be even). A profiling aid
/// (`examples/gemm_shapes` prints the rate as the kernel's ceiling), not part of the API; `None`
/// where that kernel does not run.
#[doc(hidden)]
pub fn time_tiles(panels: usize, strips: usize, reps: usize, wide: bool) -> Option<f64> {
    use x86_consts::{KC, MR, NR};
    if !available() || (wide && !has_avx512()) {
        return None;
    }
    assert!(!wide || strips.is_multiple_of(2), "time_tiles: the AVX-512 tile reads strips in pairs");
    let a = vec![1e-3f32; panels * MR * KC];
    let b = vec![2e-3f32; strips * KC * NR];
    let start = std::time::Instant::now();
    for _ in 0..reps {
        for s in (0..strips).step_by(if wide { 2 } else { 1 }) {
            for t in 0..panels {
                let (pa, pb) = (a[t * MR * KC..].as_ptr(), b[s * KC * NR..].as_ptr());
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 and FMA (`available`), and AVX-512F where `wide`; each
                // panel holds `MR * KC` values and each strip `KC * NR`, as the tiles read, and
                // with `wide` strip `s + 1` exists (`strips` is even).
                unsafe {
                    if wide {
                        std::hint::black_box(x86::tile_6x32_zmm(KC, pa, pb, b[(s + 1) * KC * NR..].as_ptr()));
                    } else {
                        std::hint::black_box(x86::tile_6x16(KC, pa, pb));
                    }
                }
            }
        }
    }
    Some(start.elapsed().as_secs_f64())
}

/// Writes the `kc x nr` block of `b` at `src` (strides `rsb`, `csb`) as a `kc x 16` strip at `dst`
/// (row `p` at `dst + 16 p`), zeros past `nr`; `prefetch_next` fetches the next strip's rows
/// meanwhile (rows a row of `b` apart are too many streams for the hardware prefetcher to follow; a
/// prefetch never faults).
///
/// # Safety
/// The block must lie inside `b`, and `dst` must be valid for `kc * 16` writes (it may be
/// uninitialised: it is only written).
#[inline(always)]
unsafe fn copy_strip(
    src: *const f32,
    rsb: isize,
    csb: isize,
    kc: usize,
    nr: usize,
    dst: *mut f32,
    prefetch_next: bool,
) {
    const NR: usize = x86_consts::NR;
    if csb == 1 || nr == 1 {
        // Rows of the strip are contiguous: one short copy per row.
        for p in 0..kc {
            let s = src.offset(p as isize * rsb);
            #[cfg(target_arch = "x86_64")]
            if prefetch_next {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(s.add(NR) as *const i8);
            }
            let d = dst.add(p * NR);
            if nr == NR {
                std::ptr::copy_nonoverlapping(s, d, NR);
            } else {
                for j in 0..NR {
                    d.add(j).write(if j < nr { *s.add(j) } else { 0.0 });
                }
            }
        }
    } else {
        // Columns are (`b = w^T` of a row-major `w`): read each along `k`, write across.
        for j in 0..NR {
            if j < nr {
                let s = src.offset(j as isize * csb);
                for p in 0..kc {
                    dst.add(p * NR + j).write(*s.offset(p as isize * rsb));
                }
            } else {
                for p in 0..kc {
                    dst.add(p * NR + j).write(0.0);
                }
            }
        }
    }
}

/// The broadcast kernel's sizes, shared with `PackedB`.
mod x86_consts {
    /// Rows of the broadcast kernel's tile, and its columns (two 8-lane vectors).
    pub const MR: usize = 6;
    pub const NR: usize = 16;
    /// Depth of one `k` block: a packed 256 x 16 strip of `b` is 16 KiB, half of L1.
    pub const KC: usize = 256;
}

/// Raw operands: element (i, j) of `a` is at `a + i*rsa + j*csa`, and so on.
struct Operands {
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    rsb: isize,
    csb: isize,
    c: *mut f32,
    ldc: isize,
    m: usize,
    n: usize,
    k: usize,
}

fn scale_c(op: &Operands, beta: f32) {
    for i in 0..op.m {
        for j in 0..op.n {
            // SAFETY: (i, j) is inside the m x n output.
            unsafe {
                let p = op.c.offset(i as isize * op.ldc + j as isize);
                p.write(if beta == 0.0 { 0.0 } else { beta * p.read() });
            }
        }
    }
}

/// Writes a finished tile value: `c = alpha * acc + beta * c` on the first `k` block (`first`), `c +=
/// alpha * acc` on later ones.
///
/// # Safety
/// `p` must be valid for writes, and for reads unless this is the first block with `beta == 0`
/// (then `p` may be uninitialised).
#[inline(always)]
unsafe fn store(p: *mut f32, acc: f32, alpha: f32, beta: f32, first: bool) {
    p.write(if !first {
        p.read() + alpha * acc
    } else if beta == 0.0 {
        alpha * acc
    } else {
        alpha * acc + beta * p.read()
    });
}

/// Writes the first `mr x nr` values of a tile into `c` at `(i0, j0)` with `store` (edge tiles, and
/// the dot-product kernel's).
///
/// # Safety
/// `(i0 + mr, j0 + nr)` must lie inside `op`'s output.
#[inline(always)]
unsafe fn store_tile<const M: usize, const N: usize>(
    op: &Operands,
    (i0, j0): (usize, usize),
    (mr, nr): (usize, usize),
    acc: &[[f32; N]; M],
    alpha: f32,
    beta: f32,
    first: bool,
) {
    for (r, row) in acc.iter().enumerate().take(mr) {
        let crow = op.c.offset((i0 + r) as isize * op.ldc + j0 as isize);
        for (j, &v) in row.iter().enumerate().take(nr) {
            store(crow.add(j), v, alpha, beta, first);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{store_tile, Operands};
    use crate::cpu::simd::hsum;
    use std::arch::x86_64::*;

    use super::x86_consts::{KC, MR, NR};
    use super::{copy_strip, PackedB};
    use std::cell::RefCell;

    thread_local! {
        /// This thread's copies of `a`'s panels and of one strip of `b`, kept between products: a
        /// fresh zeroed buffer each time was a memset and often a page fault per product.
        static BUFFERS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    }

    /// `c (+)= a . b` for any strides.
    ///
    /// Each `k` block of `a` is copied once into panels of MR rows (element (r, p) of a panel at
    /// `p * MR + r`), and each 16-column strip of `b` once into a contiguous `kc x 16` block, so that
    /// the kernel reads both sequentially: read in place, the rows of a strip lie a row of `b` apart
    /// (2 KiB for 512 columns), which maps them onto two of L1's 64 sets and evicts them constantly.
    /// The copies are small against the products: `a`'s is reused by every strip, a strip by every
    /// panel.
    ///
    /// With `pre`, the strips come from that packed copy of `b` instead (`op.b` is not read). With
    /// `wide` (the CPU has AVX-512F/DQ), two strips at a time go through the 6x32 tile
    /// (`tile_6x32_zmm`), which gives the bits of two 6x16 tiles.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn packed(op: &Operands, alpha: f32, beta: f32, pre: Option<&PackedB>, wide: bool) {
        BUFFERS.with(|bufs| {
            // A product never runs inside another on one thread; if it ever did, it gets its own.
            let mut own = (Vec::new(), Vec::new());
            let mut held = bufs.try_borrow_mut();
            let (apack, bpack) = match held.as_deref_mut() {
                Ok((a, b)) => (a, b),
                Err(_) => (&mut own.0, &mut own.1),
            };
            if wide {
                packed_zmm(op, alpha, beta, pre, apack, bpack)
            } else {
                packed_with::<false>(op, alpha, beta, pre, apack, bpack)
            }
        })
    }

    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn packed_zmm(
        op: &Operands,
        alpha: f32,
        beta: f32,
        pre: Option<&PackedB>,
        apack: &mut Vec<f32>,
        bpack: &mut Vec<f32>,
    ) {
        packed_with::<true>(op, alpha, beta, pre, apack, bpack)
    }

    /// The broadcast kernel's loops; `WIDE` takes strips two at a time through the AVX-512 tile
    /// (inlined into a function with those features).
    #[inline(always)]
    unsafe fn packed_with<const WIDE: bool>(
        op: &Operands,
        alpha: f32,
        beta: f32,
        pre: Option<&PackedB>,
        apack: &mut Vec<f32>,
        bpack: &mut Vec<f32>,
    ) {
        let panels = op.m.div_ceil(MR);
        // Every element of a panel and of a strip is written before it is read, so reused
        // buffers need no clearing.
        let need_a = panels * MR * KC.min(op.k);
        if apack.len() < need_a {
            apack.resize(need_a, 0.0);
        }
        if bpack.len() < 2 * KC * NR {
            bpack.resize(2 * KC * NR, 0.0);
        }
        let mut k0 = 0;
        while k0 < op.k {
            let kc = KC.min(op.k - k0);
            let first = k0 == 0;
            for t in 0..panels {
                let panel = &mut apack[t * MR * kc..(t + 1) * MR * kc];
                if op.rsa == 1 && t * MR + MR <= op.m {
                    // Columns of `a` contiguous (`a = dy^T`): the panel's six rows at one `p` are
                    // adjacent, one short copy per `p` instead of six reads a column apart.
                    let src = op.a.offset((t * MR) as isize + k0 as isize * op.csa);
                    for p in 0..kc {
                        std::ptr::copy_nonoverlapping(
                            src.offset(p as isize * op.csa),
                            panel.as_mut_ptr().add(p * MR),
                            MR,
                        );
                    }
                    continue;
                }
                for r in 0..MR {
                    // Rows past the edge repeat the panel's first row; their results are dropped.
                    let i = if t * MR + r < op.m { t * MR + r } else { t * MR };
                    let src = op.a.offset(i as isize * op.rsa + k0 as isize * op.csa);
                    for p in 0..kc {
                        panel[p * MR + r] = *src.offset(p as isize * op.csa);
                    }
                }
            }
            // Strip `j0`'s values: from the packed copy, or copied into half `h` of `bpack`.
            let strip = |j0: usize, h: usize, bpack: &mut Vec<f32>| match pre {
                Some(pb) => pb.strip(k0, kc, j0),
                None => {
                    let src = op.b.offset(k0 as isize * op.rsb + j0 as isize * op.csb);
                    let dst = bpack[h * KC * NR..h * KC * NR + kc * NR].as_mut_ptr();
                    copy_strip(src, op.rsb, op.csb, kc, NR.min(op.n - j0), dst, j0 + NR < op.n);
                    dst as *const f32
                }
            };
            let mut j0 = 0;
            while j0 < op.n {
                if WIDE && j0 + NR < op.n {
                    // Two strips: columns j0..j0 + nr, nr up to 32.
                    let nr = (2 * NR).min(op.n - j0);
                    let (s0, s1) = (strip(j0, 0, bpack), strip(j0 + NR, 1, bpack));
                    for t in 0..panels {
                        let i0 = t * MR;
                        let mr = MR.min(op.m - i0);
                        let acc = tile_6x32_zmm(kc, apack.as_ptr().add(t * MR * kc), s0, s1);
                        if mr == MR && nr == 2 * NR {
                            for (r, acc) in acc.iter().enumerate() {
                                let c = op.c.offset((i0 + r) as isize * op.ldc + j0 as isize);
                                store_16(c, acc[..NR].try_into().expect("16 values"), alpha, beta, first);
                                store_16(c.add(NR), acc[NR..].try_into().expect("16 values"), alpha, beta, first);
                            }
                        } else {
                            store_tile(op, (i0, j0), (mr, nr), &acc, alpha, beta, first);
                        }
                    }
                    j0 += 2 * NR;
                    continue;
                }
                let nr = NR.min(op.n - j0);
                let s0 = strip(j0, 0, bpack);
                for t in 0..panels {
                    let i0 = t * MR;
                    let mr = MR.min(op.m - i0);
                    let acc = tile_6x16(kc, apack.as_ptr().add(t * MR * kc), s0);
                    if mr == MR && nr == NR {
                        for (r, acc) in acc.iter().enumerate() {
                            store_16(op.c.offset((i0 + r) as isize * op.ldc + j0 as isize), acc, alpha, beta, first);
                        }
                    } else {
                        store_tile(op, (i0, j0), (mr, nr), &acc, alpha, beta, first);
                    }
                }
                j0 += NR;
            }
            k0 += kc;
        }
    }

    /// `store` for sixteen consecutive elements at `c`, with the same arithmetic (no fused multiply-add,
    /// so edge and full tiles round alike).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store_16(c: *mut f32, acc: &[f32; NR], alpha: f32, beta: f32, first: bool) {
        let va = _mm256_set1_ps(alpha);
        for h in 0..2 {
            let (cp, ap) = (c.add(8 * h), acc.as_ptr().add(8 * h));
            let t = _mm256_mul_ps(va, _mm256_loadu_ps(ap));
            let v = if !first {
                _mm256_add_ps(_mm256_loadu_ps(cp), t)
            } else if beta == 0.0 {
                t
            } else {
                _mm256_add_ps(t, _mm256_mul_ps(_mm256_set1_ps(beta), _mm256_loadu_ps(cp)))
            };
            _mm256_storeu_ps(cp, v);
        }
    }

    /// A 6x16 tile of `sum_p a[p][r] * b[p][0..16]` over `kc` steps from a packed panel of `a` and a
    /// packed strip of `b`, in twelve 8-lane accumulators.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_6x16(kc: usize, a: *const f32, b: *const f32) -> [[f32; NR]; MR] {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        for p in 0..kc {
            let (ap, bp) = (a.add(p * MR), b.add(p * NR));
            let (b0, b1) = (_mm256_loadu_ps(bp), _mm256_loadu_ps(bp.add(8)));
            for r in 0..MR {
                let ar = _mm256_broadcast_ss(&*ap.add(r));
                acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
            }
        }
        let mut out = [[0f32; NR]; MR];
        for r in 0..MR {
            _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r][0]);
            _mm256_storeu_ps(out[r].as_mut_ptr().add(8), acc[r][1]);
        }
        out
    }

    /// Two 6x16 tiles side by side, strips `b0` and `b1`, in twelve 16-lane accumulators: each output
    /// is one lane's chain of fused multiply-adds along `p`, as in `tile_6x16`, so the bits are the same.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn tile_6x32_zmm(
        kc: usize,
        a: *const f32,
        b0: *const f32,
        b1: *const f32,
    ) -> [[f32; 2 * NR]; MR] {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..kc {
            let ap = a.add(p * MR);
            let (v0, v1) = (_mm512_loadu_ps(b0.add(p * NR)), _mm512_loadu_ps(b1.add(p * NR)));
            for r in 0..MR {
                let ar = _mm512_set1_ps(*ap.add(r));
                acc[r][0] = _mm512_fmadd_ps(ar, v0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(ar, v1, acc[r][1]);
            }
        }
        let mut out = [[0f32; 2 * NR]; MR];
        for r in 0..MR {
            _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r][0]);
            _mm512_storeu_ps(out[r].as_mut_ptr().add(NR), acc[r][1]);
        }
        out
    }

    /// Rows and columns of the dot-product kernel's tile.
    const DM: usize = 4;
    const DN: usize = 3;
    /// Depth of one `k` block of the dot-product kernel.
    const DKC: usize = 512;
    /// Columns of `c` (rows of `bt`) visited for one tile row of `a`: 48 rows of 512 are 96 KiB (L2).
    const DNB: usize = 48;

    /// `c (+)= a . bt^T` for `a` with contiguous rows (`csa == 1`) and `b = bt^T` with contiguous
    /// columns (`rsb == 1`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(op: &Operands, alpha: f32, beta: f32) {
        dot_with::<DN>(op, alpha, beta, |kc, a, b| tile_dot_4x3(kc, a, b))
    }

    /// `dot` with AVX-512 registers holding two dot products each (`tile_dot_4x6_zmm`): the same bits.
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    pub(super) unsafe fn dot_zmm(op: &Operands, alpha: f32, beta: f32) {
        dot_with::<{ 2 * DN }>(op, alpha, beta, |kc, a, b| tile_dot_4x6_zmm(kc, a, b))
    }

    /// The dot-product kernel's loops over `DM x TN` tiles (inlined into a function with the tile's
    /// features).
    #[inline(always)]
    unsafe fn dot_with<const TN: usize>(
        op: &Operands,
        alpha: f32,
        beta: f32,
        tile: impl Fn(usize, [*const f32; DM], [*const f32; TN]) -> [[f32; TN]; DM],
    ) {
        let mut k0 = 0;
        while k0 < op.k {
            let kc = DKC.min(op.k - k0);
            let first = k0 == 0;
            let mut jb = 0;
            while jb < op.n {
                let jend = (jb + DNB).min(op.n);
                let mut ahead = Ahead::new(op, k0, kc, (jb, jend), TN);
                let mut i0 = 0;
                while i0 < op.m {
                    let mr = DM.min(op.m - i0);
                    let mut arows = [op.a; DM];
                    for (r, row) in arows.iter_mut().enumerate() {
                        let i = if r < mr { i0 + r } else { i0 };
                        *row = op.a.offset(i as isize * op.rsa + k0 as isize);
                    }
                    let mut j0 = jb;
                    while j0 < jend {
                        let nr = TN.min(jend - j0);
                        let mut brows = [op.b; TN];
                        for (s, row) in brows.iter_mut().enumerate() {
                            let j = if s < nr { j0 + s } else { j0 };
                            *row = op.b.offset(j as isize * op.csb + k0 as isize);
                        }
                        ahead.step();
                        let acc = tile(kc, arows, brows);
                        store_tile(op, (i0, j0), (mr, nr), &acc, alpha, beta, first);
                        j0 += TN;
                    }
                    i0 += DM;
                }
                jb = jend;
            }
            k0 += kc;
        }
    }

    /// Fetches the rows of `bt` that the dot-product kernel reads after the current block's (the
    /// next `DNB` weight rows) into L2, a few cache lines before each of the current block's tiles.
    ///
    /// A block's rows are first read by its first group of `a`'s rows. In a training step they
    /// come from L3 or memory, since Adam's update of the whole model has passed through the caches
    /// since the last forward pass, and that first group waited for them. Timed inside the residual
    /// ANN's step (timers around each `x . W^T`, 3,600 products), a 64x512x512 forward product took
    /// 397 us with the weight as it was and 332 us with it read just before; with this prefetch,
    /// 355 us.
    ///
    /// Only where the block has enough tiles to spread the lines thinly (at most `MAX_PER_TILE` a
    /// tile, so pieces of 48 rows and more): for a few rows of `a` the kernel streams the weight at
    /// memory speed anyway, and bursts of prefetches only slowed it (residual-ANN inference at batch
    /// 1 and 32 took 1.25x and 1.3x as long with them).
    struct Ahead {
        /// The next cache line to fetch, and the start of its row of `bt`.
        row: *const i8,
        line: usize,
        /// Cache lines per row, bytes from one row to the next, and bytes of each row to fetch.
        lines_per_row: usize,
        row_stride: isize,
        row_bytes: usize,
        /// Lines still to fetch, and how many to fetch a tile.
        left: usize,
        per_tile: usize,
    }

    impl Ahead {
        const LINE: usize = 64;
        const MAX_PER_TILE: usize = 8;

        /// For the block of `bt`'s rows `jb..jend` at depth `k0..k0 + kc`, visited in tiles `tn` rows
        /// of `bt` wide (the limit on lines a tile scales with it, so that the lines per row of a
        /// tile stay as thin).
        fn new(op: &Operands, k0: usize, kc: usize, (jb, jend): (usize, usize), tn: usize) -> Self {
            let rows = (jend + DNB).min(op.n) - jend;
            let lines_per_row = (kc * 4).div_ceil(Self::LINE);
            let tiles = op.m.div_ceil(DM) * (jend - jb).div_ceil(tn);
            let per_tile = (rows * lines_per_row).div_ceil(tiles.max(1));
            Ahead {
                // Never dereferenced past `bt`'s rows: `left` is 0 when there is no next block.
                row: op.b.wrapping_offset(jend as isize * op.csb + k0 as isize) as *const i8,
                line: 0,
                lines_per_row,
                row_stride: op.csb * 4,
                row_bytes: kc * 4,
                left: if per_tile * DN <= Self::MAX_PER_TILE * tn { rows * lines_per_row } else { 0 },
                per_tile,
            }
        }

        /// One tile's share of the lines.
        #[inline(always)]
        unsafe fn step(&mut self) {
            for _ in 0..self.per_tile.min(self.left) {
                // The row's last line may hold fewer than 16 of its values; stay inside the row.
                let off = (self.line * Self::LINE).min(self.row_bytes - 1);
                _mm_prefetch::<_MM_HINT_T1>(self.row.wrapping_add(off));
                self.left -= 1;
                self.line += 1;
                if self.line == self.lines_per_row {
                    self.line = 0;
                    self.row = self.row.wrapping_offset(self.row_stride);
                }
            }
        }
    }

    /// A 4x3 tile of dot products `a[r][0..kc] . bt[s][0..kc]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_dot_4x3(kc: usize, a: [*const f32; DM], b: [*const f32; DN]) -> [[f32; DN]; DM] {
        let mut acc = [[_mm256_setzero_ps(); DN]; DM];
        let k8 = kc - kc % 8;
        let mut p = 0;
        while p < k8 {
            let bv = [_mm256_loadu_ps(b[0].add(p)), _mm256_loadu_ps(b[1].add(p)), _mm256_loadu_ps(b[2].add(p))];
            for r in 0..DM {
                let av = _mm256_loadu_ps(a[r].add(p));
                for s in 0..DN {
                    acc[r][s] = _mm256_fmadd_ps(av, bv[s], acc[r][s]);
                }
            }
            p += 8;
        }
        let mut out = [[0f32; DN]; DM];
        for r in 0..DM {
            for s in 0..DN {
                let mut t = hsum(acc[r][s]);
                for q in k8..kc {
                    t = (*a[r].add(q)).mul_add(*b[s].add(q), t);
                }
                out[r][s] = t;
            }
        }
        out
    }

    /// `tile_dot_4x3` twice over, for six rows of `bt`, on 16-lane registers that each hold two of
    /// its 8-lane accumulators: rows `2q` and `2q + 1` of `bt` side by side in one register, a row
    /// of `a` in both halves of another. Each half runs `tile_dot_4x3`'s chain for its dot product
    /// and is summed by the same `hsum`, so the bits are the same.
    #[inline]
    #[target_feature(enable = "avx512f,avx512dq,avx2,fma")]
    unsafe fn tile_dot_4x6_zmm(kc: usize, a: [*const f32; DM], b: [*const f32; 2 * DN]) -> [[f32; 2 * DN]; DM] {
        let mut acc = [[_mm512_setzero_ps(); DN]; DM];
        let k8 = kc - kc % 8;
        let mut p = 0;
        while p < k8 {
            let bv: [__m512; DN] = std::array::from_fn(|q| {
                _mm512_insertf32x8::<1>(
                    _mm512_castps256_ps512(_mm256_loadu_ps(b[2 * q].add(p))),
                    _mm256_loadu_ps(b[2 * q + 1].add(p)),
                )
            });
            for r in 0..DM {
                let av = _mm512_broadcast_f32x8(_mm256_loadu_ps(a[r].add(p)));
                for q in 0..DN {
                    acc[r][q] = _mm512_fmadd_ps(av, bv[q], acc[r][q]);
                }
            }
            p += 8;
        }
        let mut out = [[0f32; 2 * DN]; DM];
        for r in 0..DM {
            for q in 0..DN {
                let halves = [_mm512_castps512_ps256(acc[r][q]), _mm512_extractf32x8_ps::<1>(acc[r][q])];
                for (h, v) in halves.into_iter().enumerate() {
                    let s = 2 * q + h;
                    let mut t = hsum(v);
                    for q in k8..kc {
                        t = (*a[r].add(q)).mul_add(*b[s].add(q), t);
                    }
                    out[r][s] = t;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::linalg::general_mat_mul;
    use ndarray::{s, Array2, ShapeBuilder};

    fn rand(m: usize, n: usize, seed: &mut u64) -> Array2<f32> {
        Array2::from_shape_fn((m, n), |_| {
            *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
    }

    /// Compares with matrixmultiply in f64 for every layout a dense layer uses, edge sizes included,
    /// `k` past one block, `beta` 0 (with NaN in `c`, which must not leak) and 1, and strided views.
    #[test]
    fn kernels_match_reference() {
        if !available() {
            eprintln!("no AVX2/FMA: sgemm kernels not exercised on this CPU");
            return;
        }
        let mut seed = 11;
        for (m, k, n) in
            [(1, 1, 1), (5, 7, 3), (6, 16, 16), (7, 9, 17), (128, 143, 512), (13, 600, 35), (3, 1030, 4), (32, 257, 19)]
        {
            let a = rand(m, k, &mut seed);
            let b = rand(k, n, &mut seed);
            let bt = b.t().as_standard_layout().into_owned(); // [n, k] row-major: b = bt^T has contiguous columns
            let at = a.t().as_standard_layout().into_owned(); // [k, m]: at^T is a with column stride m
            let (a64, b64) = (a.mapv(f64::from), b.mapv(f64::from));
            for beta in [0.0f32, 1.0] {
                let c0 = rand(m, n, &mut seed);
                let mut want = c0.mapv(f64::from);
                general_mat_mul(0.5, &a64.view(), &b64.view(), beta as f64, &mut want.view_mut());
                let cases: [(ArrayView2<f32>, ArrayView2<f32>, &str); 4] = [
                    (a.view(), b.view(), "a.b"),
                    (at.t(), b.view(), "at^T.b"),
                    (a.view(), bt.t(), "a.bt^T"),
                    (at.t(), bt.t(), "at^T.bt^T"),
                ];
                for (av, bv, what) in cases {
                    let mut c = if beta == 0.0 { Array2::from_elem((m, n), f32::NAN) } else { c0.clone() };
                    let l = layout(&av, &bv, &c.view_mut()).expect("a kernel fits");
                    gemm(0.5, av, bv, beta, c.view_mut(), l);
                    for (x, y) in c.iter().zip(want.iter()) {
                        let tol = 1e-5 * (k as f64).sqrt() * y.abs().max(1.0);
                        assert!((*x as f64 - y).abs() <= tol, "{what} m {m} k {k} n {n} beta {beta}: {x} vs {y}");
                    }
                }
            }
        }
        // A sub-view of a wider output (row stride larger than n).
        let a = rand(9, 20, &mut seed);
        let b = rand(20, 30, &mut seed);
        let mut big = Array2::<f32>::zeros((9, 40));
        let mut c = big.slice_mut(s![.., 5..35]);
        let l = layout(&a.view(), &b.view(), &c).unwrap();
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut(), l);
        let want = a.mapv(f64::from).dot(&b.mapv(f64::from));
        for (x, y) in big.slice(s![.., 5..35]).iter().zip(want.iter()) {
            assert!((*x as f64 - y).abs() <= 1e-4, "{x} vs {y}");
        }
        assert!(
            big.slice(s![.., ..5]).iter().all(|&v| v == 0.0) && big.slice(s![.., 35..]).iter().all(|&v| v == 0.0),
            "wrote outside the view"
        );
        // Products with a packed `b` give the bits of products with `b` itself (the broadcast
        // kernel), for depths past one block, widths that are not whole strips, `beta` 0 (NaN in
        // `c`) and 1, and a transposed `a`; and the thread's reused buffers hold nothing over from
        // the larger products before.
        for (m, k, n) in [(66, 64, 512), (7, 300, 37), (1, 1, 1), (64, 512, 20), (13, 257, 16)] {
            let (a, b) = (rand(m, k, &mut seed), rand(k, n, &mut seed));
            let at = a.t().as_standard_layout().into_owned();
            let pb = pack_b(b.view());
            assert_eq!((pb.nrows(), pb.ncols()), (k, n));
            for beta in [0.0f32, 1.0] {
                let c0 = rand(m, n, &mut seed);
                for av in [a.view(), at.t()] {
                    let start = if beta == 0.0 { Array2::from_elem((m, n), f32::NAN) } else { c0.clone() };
                    let (mut want, mut got) = (start.clone(), start);
                    gemm(0.5, av, b.view(), beta, want.view_mut(), Layout::Packed);
                    gemm_packed(0.5, av, &pb, beta, got.view_mut());
                    assert!(
                        got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()),
                        "packed b, m {m} k {k} n {n} beta {beta}"
                    );
                }
            }
        }
        // A column-major output is not for these kernels.
        let mut cm = Array2::<f32>::zeros((4, 4).f());
        assert_eq!(layout(&a.slice(s![..4, ..4]), &b.slice(s![..4, ..4]), &cm.view_mut()), None);
    }

    /// The AVX-512 kernels give the AVX2 kernels' bits (so a model's numbers do not depend on the
    /// CPU): both layouts, packed `b`, edge tiles in rows, columns (an odd count of 16-column strips,
    /// and a last strip not whole) and depth (`k` not a multiple of 8, past one block), `beta` 0
    /// (NaN in `c`) and 1, transposed operands and a sub-view of a wider output.
    #[test]
    fn avx512_kernels_give_avx2_bits() {
        if !available() || !has_avx512() {
            eprintln!("no AVX-512F/DQ: the wide kernels are not exercised on this CPU");
            return;
        }
        let mut seed = 5;
        let mut checked = [0usize; 3];
        for (m, k, n) in [
            (1, 1, 1),
            (4, 300, 7),
            (5, 7, 33),
            (6, 16, 32),
            (7, 9, 17),
            (64, 512, 512),
            (128, 143, 512),
            (13, 600, 35),
            (3, 1030, 50),
            (32, 257, 48),
            (66, 64, 80),
        ] {
            let (a, b) = (rand(m, k, &mut seed), rand(k, n, &mut seed));
            let (at, bt) = (a.t().as_standard_layout().into_owned(), b.t().as_standard_layout().into_owned());
            let pb = pack_b(b.view());
            for beta in [0.0f32, 1.0] {
                let c0 = rand(m, n + 3, &mut seed);
                for (av, bv) in [(a.view(), b.view()), (at.t(), b.view()), (a.view(), bt.t()), (at.t(), bt.t())] {
                    let l = layout_rows(&av, &bv).expect("a kernel fits");
                    for right in [Right::View(bv, l), Right::View(bv, Layout::Packed), Right::Packed(&pb)] {
                        let which = match right {
                            Right::View(_, Layout::Dot) => 0,
                            Right::View(_, Layout::Packed) => 1,
                            Right::Packed(_) => 2,
                        };
                        let start = if beta == 0.0 { Array2::from_elem((m, n + 3), f32::NAN) } else { c0.clone() };
                        let mut got = [start.clone(), start];
                        for (c, wide) in got.iter_mut().zip([false, true]) {
                            // SAFETY: `c` is m x (n + 3) with contiguous rows; the product writes
                            // its first n columns; `wide` only where the CPU has AVX-512.
                            unsafe { run_on(0.5, av, right, beta, c.as_mut_ptr(), (n + 3) as isize, wide) };
                        }
                        let same = got[0].iter().zip(got[1].iter()).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "kernel {which} m {m} k {k} n {n} beta {beta}: AVX-512 and AVX2 differ");
                        checked[which] += usize::from(k >= 8);
                    }
                }
            }
        }
        assert!(checked.iter().all(|&c| c > 0), "every kernel compared past one 8-lane step: {checked:?}");
    }
}
