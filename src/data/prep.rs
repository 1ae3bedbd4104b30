//! Preprocessing steps of the seed, each a plain function on arrays.

use crate::cpu::Float;
use crate::error::{Error, Result};
use ndarray::{Array2, Array4, ArrayView2, Axis};

/// Per-row min-max normalisation `x' = (x - min) / (max - min)` of `x [N, L]`.
///
/// A row that is flat (max = min) or holds a non-finite value is an error naming the row, never a
/// division by zero.
pub fn minmax<T: Float>(x: ArrayView2<T>) -> Result<Array2<T>> {
    let mut out = x.to_owned();
    for (i, mut row) in out.axis_iter_mut(Axis(0)).enumerate() {
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::Data(format!("minmax: row {i} has a non-finite value at pixel {j}")));
        }
        let (lo, hi) = row.iter().fold((T::infinity(), T::neg_infinity()), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        if !(hi > lo) {
            return Err(Error::Data(format!("minmax: row {i} is flat (every value is {lo}); it cannot be normalised")));
        }
        let range = hi - lo;
        row.mapv_inplace(|v| (v - lo) / range);
    }
    Ok(out)
}

/// The S-shaped fold of `x [N, side*side]` into images `[N, 1, side, side]`: row `k` of the image holds
/// pixels `k*side .. (k+1)*side`, left to right when `k` is even and right to left when `k` is odd, so
/// neighbouring pixels stay neighbours across row ends.
pub fn fold_s<T: Float>(x: ArrayView2<T>, side: usize) -> Result<Array4<T>> {
    let (n, l) = x.dim();
    if side == 0 || l != side * side {
        return Err(Error::shape("fold_s", format!("spectra must have side^2 = {} pixels", side * side), &[x.shape()]));
    }
    let mut out = Array4::<T>::zeros((n, 1, side, side));
    for (s, spec) in x.axis_iter(Axis(0)).enumerate() {
        for k in 0..side {
            for j in 0..side {
                let col = if k % 2 == 0 { j } else { side - 1 - j };
                out[[s, 0, k, col]] = spec[k * side + j];
            }
        }
    }
    Ok(out)
}

/// Vacuum wavelength (Angstrom) of an air wavelength: the IAU standard refractive index of air
/// (Morton 2000, as used by SDSS), inverted by fixed-point iteration (converges to 1e-10 A).
pub fn air_to_vacuum(air: f64) -> f64 {
    let mut vac = air;
    for _ in 0..6 {
        vac = air * refractive_index(vac);
    }
    vac
}

/// Air wavelength (Angstrom) of a vacuum wavelength (Morton 2000).
pub fn vacuum_to_air(vac: f64) -> f64 {
    vac / refractive_index(vac)
}

fn refractive_index(vac: f64) -> f64 {
    let s2 = (1e4 / vac).powi(2);
    1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
}

/// A wavelength grid: `n` pixels from `start` Angstrom, `step` Angstrom apart (linear) or `step` in
/// ln(lambda) apart (logarithmic).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Grid {
    pub start: f64,
    pub step: f64,
    pub n: usize,
    pub log: bool,
}

impl Grid {
    /// The seed's grid: 4000-8095 Angstrom, 4096 pixels 1 Angstrom apart (vacuum).
    pub fn seed() -> Self {
        Self { start: 4000.0, step: 1.0, n: 4096, log: false }
    }

    /// A CSST-like grid at resolution `r`: one pixel per resolution element (step 1/R in ln lambda)
    /// from 4000 Angstrom; R = 200 and 143 pixels reach 8136 Angstrom.
    pub fn csst(r: f64, n: usize) -> Self {
        Self { start: 4000.0, step: 1.0 / r, n, log: true }
    }

    /// The pixel wavelengths.
    pub fn wavelengths(&self) -> Vec<f64> {
        (0..self.n)
            .map(
                |i| {
                    if self.log {
                        self.start * (i as f64 * self.step).exp()
                    } else {
                        self.start + i as f64 * self.step
                    }
                },
            )
            .collect()
    }
}

/// A spectrum interpolated onto a grid.
#[derive(Clone, Debug)]
pub struct Resampled {
    pub flux: Vec<f64>,
    /// Empty from `resample_flux`.
    pub ivar: Vec<f64>,
    /// False where the grid pixel is outside the spectrum or touches a bad pixel.
    pub good: Vec<bool>,
    /// Fraction of grid pixels inside the spectrum's wavelength range.
    pub coverage: f64,
}

/// For each pixel `k` of `grid` inside `wave`'s range (ascending), `(k, j, t)`: it lies at
/// `(1 - t) * wave[j] + t * wave[j + 1]`, `0 <= t <= 1`. What `resample` interpolates from.
fn brackets<'a>(wave: &'a [f64], grid: &'a [f64]) -> impl Iterator<Item = (usize, usize, f64)> + 'a {
    let n = wave.len();
    let mut j = 0usize;
    grid.iter().enumerate().filter_map(move |(k, &l)| {
        if n < 2 || l < wave[0] || l > wave[n - 1] {
            return None;
        }
        while j + 2 < n && wave[j + 1] < l {
            j += 1;
        }
        Some((k, j, ((l - wave[j]) / (wave[j + 1] - wave[j])).clamp(0.0, 1.0)))
    })
}

/// Where the pixels of a grid fall among a spectrum's wavelengths, found once for work that needs
/// it twice: the pipeline asks which pixels the resampling will read (to smooth only those), then
/// resamples.
pub struct Brackets {
    found: Vec<(usize, usize, f64)>,
    wave_len: usize,
    grid_len: usize,
}

impl Brackets {
    pub fn new(wave: &[f64], grid: &[f64]) -> Self {
        Self { found: brackets(wave, grid).collect(), wave_len: wave.len(), grid_len: grid.len() }
    }

    /// The pixels of the wavelengths that the resampling reads (those with a weight above 0).
    pub fn pixels_read(&self) -> Vec<bool> {
        let mut read = vec![false; self.wave_len];
        for &(_, j, t) in &self.found {
            read[j] |= t < 1.0;
            read[j + 1] |= t > 0.0;
        }
        read
    }

    /// `resample_flux` with these brackets (`flux` and `bad` on the wavelengths they were found in).
    pub fn resample_flux(&self, flux: &[f64], bad: &[bool]) -> Resampled {
        resample_with(self.found.iter().copied(), self.grid_len, flux, None, bad)
    }
}

/// The pixels of `wave` that `resample(wave, .., grid)` reads (those with a weight above 0).
pub fn pixels_read(wave: &[f64], grid: &[f64]) -> Vec<bool> {
    Brackets::new(wave, grid).pixels_read()
}

/// Linear interpolation onto `grid` (both in the same wavelength frame). The inverse variance is
/// carried along: with weights `(1-t, t)`, `var = (1-t)^2 var_j + t^2 var_{j+1}`. A grid pixel is bad
/// when it lies outside the spectrum or when a neighbour it draws on (weight > 0) is bad.
pub fn resample(wave: &[f64], flux: &[f64], ivar: &[f64], bad: &[bool], grid: &[f64]) -> Resampled {
    resample_with(brackets(wave, grid), grid.len(), flux, Some(ivar), bad)
}

/// `resample` without the inverse variance (`ivar` of the result is empty): what the pipeline needs,
/// at a fraction of the cost (three divisions a pixel fewer).
pub fn resample_flux(wave: &[f64], flux: &[f64], bad: &[bool], grid: &[f64]) -> Resampled {
    resample_with(brackets(wave, grid), grid.len(), flux, None, bad)
}

/// The resampling onto a grid of `grid_len` pixels, from the brackets of its pixels.
fn resample_with(
    brackets: impl Iterator<Item = (usize, usize, f64)>,
    grid_len: usize,
    flux: &[f64],
    ivar: Option<&[f64]>,
    bad: &[bool],
) -> Resampled {
    let mut out = Resampled {
        flux: vec![0.0; grid_len],
        ivar: vec![0.0; if ivar.is_some() { grid_len } else { 0 }],
        good: vec![false; grid_len],
        coverage: 0.0,
    };
    let mut covered = 0usize;
    for (k, j, t) in brackets {
        covered += 1;
        let (wa, wb) = (1.0 - t, t);
        let bad_a = wa > 0.0 && bad[j];
        let bad_b = wb > 0.0 && bad[j + 1];
        out.flux[k] = wa * flux[j] + wb * flux[j + 1];
        if bad_a || bad_b || !out.flux[k].is_finite() {
            out.flux[k] = 0.0;
            continue;
        }
        if let Some(ivar) = ivar {
            let var =
                (if wa > 0.0 { wa * wa / ivar[j] } else { 0.0 }) + (if wb > 0.0 { wb * wb / ivar[j + 1] } else { 0.0 });
            out.ivar[k] = if var > 0.0 { 1.0 / var } else { f64::INFINITY };
        }
        out.good[k] = true;
    }
    out.coverage = covered as f64 / grid_len.max(1) as f64;
    out
}

/// Replaces bad pixels by linear interpolation between the nearest good ones (the nearest good value
/// beyond either end). An error when no pixel is good.
pub fn fill_bad(flux: &mut [f64], good: &[bool]) -> Result<()> {
    let idx: Vec<usize> = (0..flux.len()).filter(|&i| good[i]).collect();
    let (Some(&first), Some(&last)) = (idx.first(), idx.last()) else {
        return Err(Error::Data("no good pixel left on the grid".into()));
    };
    for i in 0..first {
        flux[i] = flux[first];
    }
    for i in last + 1..flux.len() {
        flux[i] = flux[last];
    }
    for w in idx.windows(2) {
        let (a, b) = (w[0], w[1]);
        for i in a + 1..b {
            let t = (i - a) as f64 / (b - a) as f64;
            flux[i] = (1.0 - t) * flux[a] + t * flux[b];
        }
    }
    Ok(())
}

/// Gaussian sigma in ln(lambda) of a line-spread function of resolving power `r` (FWHM = lambda / R).
pub fn sigma_ln(r: f64) -> f64 {
    1.0 / (r * (8.0 * std::f64::consts::LN_2).sqrt())
}

/// Smooths `flux`, sampled uniformly in ln(lambda) with step `dln`, from resolving power `r_native`
/// to `r_target` with a Gaussian of `sigma = sqrt(sigma_target^2 - sigma_native^2)` (in ln lambda).
/// The ends are padded with the end values. `r_target` must be below `r_native`.
pub fn degrade_resolution(flux: &[f64], dln: f64, r_native: f64, r_target: f64) -> Result<Vec<f64>> {
    degrade_resolution_at(flux, dln, r_native, r_target, None)
}

/// `degrade_resolution` computed only at the pixels where `want` is true (the others are 0), with
/// the same value at each of those: the pipeline needs the smoothed spectrum only where the final
/// resampling onto a coarse grid reads it (2 pixels of ~22 at R=200 from LAMOST's sampling).
pub fn degrade_resolution_at(
    flux: &[f64],
    dln: f64,
    r_native: f64,
    r_target: f64,
    want: Option<&[bool]>,
) -> Result<Vec<f64>> {
    if !(r_target > 0.0 && r_native > r_target && dln > 0.0) {
        return Err(Error::Data(format!(
            "cannot degrade from R={r_native} to R={r_target}: the target must be positive and lower"
        )));
    }
    let sigma = (sigma_ln(r_target).powi(2) - sigma_ln(r_native).powi(2)).sqrt() / dln;
    let half = (4.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-half..=half).map(|k| (-0.5 * (k as f64 / sigma).powi(2)).exp()).collect();
    let norm: f64 = kernel.iter().sum();
    let n = flux.len() as isize;
    let edge = |i: isize| {
        kernel.iter().enumerate().map(|(k, w)| w * flux[(i + k as isize - half).clamp(0, n - 1) as usize]).sum::<f64>()
            / norm
    };
    Ok((0..n)
        .map(|i| {
            if want.is_some_and(|w| !w[i as usize]) {
                0.0
            } else if i >= half && i + half < n {
                // Inside, the window is a plain slice: a dot product with four partial sums, which the
                // compiler vectorises (the clamped indexing of the ends does not).
                dot4(&kernel, &flux[(i - half) as usize..=(i + half) as usize]) / norm
            } else {
                edge(i)
            }
        })
        .collect())
}

/// `exp(i * step)` for `i < n`, from a per-thread cache of the last table asked for: spectra of one
/// survey share their ln-lambda sampling, so the table of the uniform grid under each is made once
/// per thread instead of once per spectrum (thousands of `exp` calls each). The same values as
/// computing them afresh.
pub fn exp_steps(step: f64, n: usize) -> std::rc::Rc<Vec<f64>> {
    use std::cell::RefCell;
    use std::rc::Rc;
    thread_local! {
        static LAST: RefCell<(u64, Rc<Vec<f64>>)> = RefCell::new((0, Rc::new(Vec::new())));
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != step.to_bits() || last.1.len() != n {
            *last = (step.to_bits(), Rc::new((0..n).map(|i| (i as f64 * step).exp()).collect()));
        }
        last.1.clone()
    })
}

/// `sum a[k] b[k]` over equal-length slices, in four partial sums (a fixed order).
fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[2]) + (acc[1] + acc[3]) + tail
}

/// A pseudo-continuum: the running median over `width` pixels, then a running mean over `width / 3`.
pub fn continuum(flux: &[f64], width: usize) -> Vec<f64> {
    let n = flux.len();
    let h = width.max(3) / 2;
    let med: Vec<f64> = (0..n)
        .map(|i| {
            let mut w: Vec<f64> = flux[i.saturating_sub(h)..(i + h + 1).min(n)].to_vec();
            let m = w.len() / 2;
            *w.select_nth_unstable_by(m, |a, b| a.total_cmp(b)).1
        })
        .collect();
    let h2 = (width / 6).max(1);
    (0..n)
        .map(|i| {
            let s = &med[i.saturating_sub(h2)..(i + h2 + 1).min(n)];
            s.iter().sum::<f64>() / s.len() as f64
        })
        .collect()
}

/// Sets every pixel outside `[lo, hi]` Angstrom to 0 (the seed's CH G-band experiment keeps 4000-5500).
pub fn window_mask(values: &mut [f64], wavelengths: &[f64], lo: f64, hi: f64) {
    for (v, &l) in values.iter_mut().zip(wavelengths) {
        if l < lo || l > hi {
            *v = 0.0;
        }
    }
}
