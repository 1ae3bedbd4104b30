//! The preprocessing pipeline: one configuration ([`PrepConfig`], stored in model files so that
//! `predict` repeats exactly what training did) applied spectrum by spectrum.
//!
//! 1. wavelengths to vacuum (air spectra, e.g. MILES);
//! 2. shift to the rest frame with the header's Z, or a given radial velocity;
//! 3. optionally degrade the resolution (Gaussian line-spread function in ln lambda, on a uniform
//!    ln-lambda grid at the native sampling), e.g. LAMOST R~1800 to CSST R=200;
//! 4. linear interpolation onto the grid (`prep::resample` can carry the inverse variance along; the
//!    pipeline does not need it); pixels that are bad or outside the spectrum are masked, and a
//!    spectrum covering less than `min_coverage` of the grid is refused;
//! 5. masked pixels filled by interpolation between good neighbours;
//! 6. optionally divided by a pseudo-continuum;
//! 7. min-max normalisation (a flat spectrum is an error);
//! 8. optionally a wavelength window: pixels outside are set to 0.

use super::prep::{
    air_to_vacuum, continuum, degrade_resolution_at, exp_steps, fill_bad, minmax, resample_flux, window_mask, Brackets,
    Grid,
};
use super::spectrum::{Medium, Spectrum};
use crate::error::{Error, Result};
use ndarray::Array2;

/// Speed of light in km/s.
pub const C_KMS: f64 = 299_792.458;

/// How spectra become network inputs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PrepConfig {
    pub grid: Grid,
    /// Shift to the rest frame with the header's Z (when present).
    pub rest_frame: bool,
    /// The smallest fraction of grid pixels the spectrum must cover.
    pub min_coverage: f64,
    /// Resolving power of the input spectra (LAMOST LRS: 1800).
    pub native_resolution: f64,
    /// Degrade to this resolving power before resampling (CSST: 200).
    pub degrade_to: Option<f64>,
    /// Divide by a running-median pseudo-continuum of this many grid pixels before normalising.
    pub continuum_width: Option<usize>,
    /// Keep only this wavelength window (Angstrom); other pixels become 0 after normalisation.
    pub window: Option<(f64, f64)>,
}

impl Default for PrepConfig {
    /// The seed's VMP CNN preprocessing: 4000-8095 Angstrom, 4096 pixels, min-max.
    fn default() -> Self {
        Self {
            grid: Grid::seed(),
            rest_frame: true,
            min_coverage: 0.95,
            native_resolution: 1800.0,
            degrade_to: None,
            continuum_width: None,
            window: None,
        }
    }
}

impl PrepConfig {
    /// The seed's residual-ANN preprocessing: degraded to R=200 on the 143-pixel CSST grid.
    pub fn csst() -> Self {
        Self { grid: Grid::csst(200.0, 143), degrade_to: Some(200.0), ..Self::default() }
    }
}

/// Runs the pipeline on one spectrum; `rv_kms` overrides the header's redshift.
pub fn prepare(spec: &Spectrum, cfg: &PrepConfig, rv_kms: Option<f64>) -> Result<Vec<f64>> {
    let ctx = |e: Error| Error::file(&spec.path, e.to_string().trim_start_matches("data: ").to_string());
    let z = match rv_kms {
        Some(v) => v / C_KMS,
        None if cfg.rest_frame => spec.meta.z.unwrap_or(0.0),
        None => 0.0,
    };
    if z <= -1.0 || !z.is_finite() {
        return Err(ctx(Error::Data(format!("redshift {z} is not physical"))));
    }
    let mut wave: Vec<f64> = spec
        .wavelength
        .iter()
        .map(|&l| if spec.medium == Medium::Air { air_to_vacuum(l) } else { l } / (1.0 + z))
        .collect();
    // The inverse variance is not carried: nothing downstream of `prepare` uses it.
    let mut flux = spec.flux.clone();
    let mut bad = spec.bad.clone();

    let grid = cfg.grid.wavelengths();
    // Where the grid's pixels fall among the wavelengths of the final resampling, when they were
    // already found (below, to smooth only the pixels that resampling reads).
    let mut onto_grid = None;
    if let Some(r) = cfg.degrade_to {
        // Onto a uniform ln-lambda grid at the native sampling, fill bad pixels, smooth (only where
        // the resampling onto the grid below reads the result).
        let n = wave.len();
        let dln = ((wave[n - 1] / wave[0]).ln() / (n - 1) as f64).max(1e-6);
        let m = ((wave[n - 1] / wave[0]).ln() / dln).floor() as usize + 1;
        let uniform: Vec<f64> = exp_steps(dln, m).iter().map(|e| wave[0] * e).collect();
        let mut r0 = resample_flux(&wave, &flux, &bad, &uniform);
        fill_bad(&mut r0.flux, &r0.good).map_err(ctx)?;
        let brackets = Brackets::new(&uniform, &grid);
        flux = degrade_resolution_at(&r0.flux, dln, cfg.native_resolution, r, Some(&brackets.pixels_read()))
            .map_err(ctx)?;
        onto_grid = Some(brackets);
        // Smoothing spreads information: a pixel is trusted when most of its neighbourhood was good.
        bad = r0.good.iter().map(|g| !g).collect();
        wave = uniform;
    }

    let r = onto_grid.unwrap_or_else(|| Brackets::new(&wave, &grid)).resample_flux(&flux, &bad);
    if r.coverage < cfg.min_coverage {
        return Err(Error::file(
            &spec.path,
            format!(
                "covers {:.1}% of the grid {:.0}-{:.0} A (its rest-frame vacuum range is {:.0}-{:.0} A); at least \
                    {:.1}% is required (a model trained with a lower `train --min-coverage` accepts it)",
                100.0 * r.coverage,
                grid[0],
                grid[grid.len() - 1],
                wave[0],
                wave[wave.len() - 1],
                100.0 * cfg.min_coverage
            ),
        ));
    }
    let mut out = r.flux;
    fill_bad(&mut out, &r.good).map_err(ctx)?;
    if let Some(w) = cfg.continuum_width {
        let c = continuum(&out, w);
        if let Some(i) = c.iter().position(|v| *v <= 0.0 || !v.is_finite()) {
            return Err(Error::file(
                &spec.path,
                format!(
                    "the pseudo-continuum is {} at {:.1} A: continuum normalisation needs positive flux",
                    c[i], grid[i]
                ),
            ));
        }
        out.iter_mut().zip(&c).for_each(|(f, c)| *f /= c);
    }
    // Resampling a constant spectrum can leave rounding-level ripples that min-max would blow up
    // into a pattern: a range below 1e-9 of the flux level is flat.
    let (lo, hi) = out.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    if hi - lo <= 1e-9 * lo.abs().max(hi.abs()) {
        return Err(Error::file(
            &spec.path,
            format!(
                "after resampling, the spectrum is flat (every value is {lo:.6e} \
            to within 1e-9): it cannot be normalised"
            ),
        ));
    }
    let row = Array2::from_shape_vec((1, out.len()), out).expect("one row");
    let mut out = minmax(row.view())
        .map_err(|e| Error::file(&spec.path, e.to_string().replace("minmax: row 0", "after resampling, the spectrum")))?
        .into_raw_vec_and_offset()
        .0;
    if let Some((lo, hi)) = cfg.window {
        window_mask(&mut out, &grid, lo, hi);
    }
    Ok(out)
}
