//! The shapes of a convolution and a pooling: what the CPU kernels (`cpu::conv`, `cpu::pool`,
//! `cpu::fftconv`) and the GPU launchers (`gpu::ops`) both need, here so that neither backend imports
//! the other's kernels. `ops::conv2d` and `ops::maxpool2d` validate and build them.

/// The sizes of one convolution, validated by `ops::conv2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl ConvGeom {
    pub(crate) fn ckk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    pub(crate) fn ohw(&self) -> usize {
        self.oh * self.ow
    }
    pub(crate) fn chw(&self) -> usize {
        self.c * self.h * self.w
    }
    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.n * self.o * self.ohw() * self.ckk()
    }
    /// The output columns `[lo, hi)` of a row whose input column `ox*sw + kj - pw` lies inside the
    /// image, for stride 1.
    pub(crate) fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let lo = self.pw.saturating_sub(kj).min(self.ow);
        let hi = (self.w + self.pw).saturating_sub(kj).min(self.ow).max(lo);
        (lo, hi)
    }
}

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
